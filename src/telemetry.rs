//! Request log records and their formats (text, JSON), field names in one place, and the
//! bounded batches the event loop fills: one for stderr, handed to the log writer
//! thread, and one for the plane, handed to the agent. The loop never writes a record
//! itself, so a slow log reader cannot stall traffic; when stderr falls behind, records
//! are dropped and counted.
//! Must not touch: sockets, files; subscription keys never enter a record (URLs are
//! redacted with the runtime's `Redaction`).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::settings::LogFormat;

/// Field names of a request record, shared by the text and JSON formats.
pub mod field {
    pub const TIME: &str = "time";
    pub const REQUEST_ID: &str = "requestId";
    pub const CLIENT_IP: &str = "clientIp";
    pub const METHOD: &str = "method";
    pub const URL: &str = "url";
    pub const API: &str = "apiId";
    pub const OPERATION: &str = "operationId";
    pub const SUBSCRIPTION: &str = "subscriptionId";
    pub const STATUS: &str = "responseCode";
    pub const BACKEND_STATUS: &str = "backendResponseCode";
    pub const BYTES_IN: &str = "requestSize";
    pub const BYTES_OUT: &str = "responseSize";
    pub const TOTAL_MS: &str = "totalTimeMs";
    pub const BACKEND_MS: &str = "backendTimeMs";
    pub const ERROR: &str = "errorReason";
    pub const TRACES: &str = "traces";
}

/// One call, as logged.
pub struct Record<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a str,
    pub url: &'a str,
    pub api: &'a str,
    pub operation: &'a str,
    pub subscription: &'a str,
    pub status: u16,
    pub backend_status: Option<u16>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub total_ms: f64,
    pub backend_ms: Option<f64>,
    pub error: Option<&'a str>,
    /// A health probe of the gateway itself: logged locally, not uploaded.
    pub probe: bool,
    /// What `<trace>` policies wrote during the call.
    pub traces: &'a [Trace],
}

/// One `<emit-metric>` of a call: a value under a namespace and a name, with dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomMetric {
    pub namespace: String,
    pub name: String,
    pub value: f64,
    pub dimensions: Vec<(String, String)>,
}

/// One `<trace>` of a call: its source, severity, message and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub source: String,
    /// `verbose`, `information` or `error`.
    pub severity: &'static str,
    pub message: String,
    pub metadata: Vec<(String, String)>,
}

/// Most bytes of records buffered on the loop before new ones are dropped.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// The loop's side of request logging.
pub struct RequestLog {
    pub format: LogFormat,
    pub batch: String,
    pub dropped: u64,
    /// JSON records for the management plane (service mode with
    /// `telemetry.metrics.cloud`); `None` when records are not uploaded.
    pub cloud: Option<String>,
    pub cloud_dropped: u64,
}

impl RequestLog {
    pub fn new(format: LogFormat, cloud: bool) -> Self {
        RequestLog {
            format,
            batch: String::new(),
            dropped: 0,
            cloud: cloud.then(String::new),
            cloud_dropped: 0,
        }
    }
    /// Whether calls are recorded at all (for stderr or for the plane).
    pub fn enabled(&self) -> bool {
        self.format != LogFormat::None || self.cloud.is_some()
    }
    pub fn push(&mut self, rec: &Record) {
        if self.format != LogFormat::None {
            if self.batch.len() >= MAX_BATCH_BYTES {
                self.dropped += 1;
            } else {
                format_record(&mut self.batch, rec, self.format);
            }
        }
        if let Some(cloud) = self.cloud.as_mut().filter(|_| !rec.probe) {
            if cloud.len() >= MAX_BATCH_BYTES {
                self.cloud_dropped += 1;
            } else {
                format_record(cloud, rec, LogFormat::Json);
            }
        }
    }
    pub fn take(&mut self) -> Option<String> {
        (!self.batch.is_empty()).then(|| std::mem::take(&mut self.batch))
    }
    /// The records for the plane gathered so far, and how many were dropped meanwhile.
    pub fn take_cloud(&mut self) -> Option<(String, u64)> {
        let cloud = self.cloud.as_mut()?;
        if cloud.is_empty() && self.cloud_dropped == 0 {
            return None;
        }
        Some((
            std::mem::take(cloud),
            std::mem::take(&mut self.cloud_dropped),
        ))
    }
    /// Puts back a batch the agent could not take (ahead of newer records).
    pub fn restore_cloud(&mut self, mut batch: String, dropped: u64) {
        if let Some(cloud) = self.cloud.as_mut() {
            batch.push_str(cloud);
            *cloud = batch;
            self.cloud_dropped += dropped;
        }
    }
}

pub fn format_record(out: &mut String, r: &Record, format: LogFormat) {
    let opt_num = |v: Option<u16>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    match format {
        LogFormat::None => {}
        LogFormat::Text => {
            let _ = writeln!(
                out,
                "{} request {}={} {}={} {}={} {}={} {}={} {}={} {}={} {}={} {}={} {}={} {}={} {}={:.3} {}={} {}={}",
                rfc3339(r.time),
                field::REQUEST_ID,
                r.request_id,
                field::CLIENT_IP,
                r.client_ip,
                field::METHOD,
                r.method,
                field::URL,
                r.url,
                field::API,
                dash(r.api),
                field::OPERATION,
                dash(r.operation),
                field::SUBSCRIPTION,
                dash(r.subscription),
                field::STATUS,
                r.status,
                field::BACKEND_STATUS,
                opt_num(r.backend_status),
                field::BYTES_IN,
                r.bytes_in,
                field::BYTES_OUT,
                r.bytes_out,
                field::TOTAL_MS,
                r.total_ms,
                field::BACKEND_MS,
                r.backend_ms.map_or_else(|| "-".to_string(), |v| format!("{v:.3}")),
                field::ERROR,
                r.error.unwrap_or("-"),
            );
            for t in r.traces {
                let _ = write!(
                    out,
                    "{} trace {}={} source={} severity={} message=",
                    rfc3339(r.time),
                    field::REQUEST_ID,
                    r.request_id,
                    t.source,
                    t.severity
                );
                push_json_str(out, &t.message);
                for (k, v) in &t.metadata {
                    let _ = write!(out, " {k}=");
                    push_json_str(out, v);
                }
                out.push('\n');
            }
        }
        LogFormat::Json => {
            out.push('{');
            let mut first = true;
            let mut key = |out: &mut String, k: &str| {
                if !first {
                    out.push(',');
                }
                first = false;
                push_json_str(out, k);
                out.push(':');
            };
            key(out, field::TIME);
            push_json_str(out, &rfc3339(r.time));
            key(out, field::REQUEST_ID);
            push_json_str(out, r.request_id);
            key(out, field::CLIENT_IP);
            push_json_str(out, &r.client_ip.to_string());
            key(out, field::METHOD);
            push_json_str(out, r.method);
            key(out, field::URL);
            push_json_str(out, r.url);
            key(out, field::API);
            push_json_str(out, r.api);
            key(out, field::OPERATION);
            push_json_str(out, r.operation);
            key(out, field::SUBSCRIPTION);
            push_json_str(out, r.subscription);
            key(out, field::STATUS);
            let _ = write!(out, "{}", r.status);
            key(out, field::BACKEND_STATUS);
            match r.backend_status {
                Some(s) => {
                    let _ = write!(out, "{s}");
                }
                None => out.push_str("null"),
            }
            key(out, field::BYTES_IN);
            let _ = write!(out, "{}", r.bytes_in);
            key(out, field::BYTES_OUT);
            let _ = write!(out, "{}", r.bytes_out);
            key(out, field::TOTAL_MS);
            let _ = write!(out, "{:.3}", r.total_ms);
            key(out, field::BACKEND_MS);
            match r.backend_ms {
                Some(v) => {
                    let _ = write!(out, "{v:.3}");
                }
                None => out.push_str("null"),
            }
            key(out, field::ERROR);
            match r.error {
                Some(e) => push_json_str(out, e),
                None => out.push_str("null"),
            }
            if !r.traces.is_empty() {
                key(out, field::TRACES);
                out.push('[');
                for (i, t) in r.traces.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str("{\"source\":");
                    push_json_str(out, &t.source);
                    out.push_str(",\"severity\":");
                    push_json_str(out, t.severity);
                    out.push_str(",\"message\":");
                    push_json_str(out, &t.message);
                    out.push_str(",\"metadata\":{");
                    for (j, (k, v)) in t.metadata.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_json_str(out, k);
                        out.push(':');
                        push_json_str(out, v);
                    }
                    out.push_str("}}");
                }
                out.push(']');
            }
            out.push_str("}\n");
        }
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Appends `s` as a JSON string literal, escaped as Newtonsoft.Json escapes by default
/// (so policy expressions print JSON as APIM does): quotes, backslashes, control
/// characters and U+0085, U+2028, U+2029; everything else as it is.
pub fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // the common case: printable ASCII without a quote or backslash, copied whole (a
    // loop without an early exit, which the compiler turns into a few wide compares)
    let plain = !s.bytes().fold(false, |stop, c| {
        stop | !(0x20..0x80).contains(&c) | (c == b'"') | (c == b'\\')
    });
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    let b = s.as_bytes();
    let mut plain = 0;
    for (i, &c) in b.iter().enumerate() {
        // bytes that may need an escape: quotes, backslashes, controls, and the lead
        // bytes of U+0085 (C2 85) and U+2028 / U+2029 (E2 80 A8 / A9)
        if c != b'"' && c != b'\\' && c >= 0x20 && c != 0xC2 && c != 0xE2 {
            continue;
        }
        let escape: Option<&str> = match c {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0xC2 if b.get(i + 1) == Some(&0x85) => Some("\\u0085"),
            0xE2 if b.get(i + 1) == Some(&0x80) && b.get(i + 2) == Some(&0xA8) => Some("\\u2028"),
            0xE2 if b.get(i + 1) == Some(&0x80) && b.get(i + 2) == Some(&0xA9) => Some("\\u2029"),
            0xC2 | 0xE2 => None,
            _ => {
                out.push_str(&s[plain..i]);
                let _ = write!(out, "\\u{:04x}", c);
                plain = i + 1;
                continue;
            }
        };
        let Some(escape) = escape else { continue };
        out.push_str(&s[plain..i]);
        out.push_str(escape);
        // the escaped character's own bytes are skipped
        plain = i + match c {
            0xC2 => 2,
            0xE2 => 3,
            _ => 1,
        };
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// `2026-11-26T12:00:00.123Z`
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch for `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        text.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?
            .parse::<i64>()
            .ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = &text[19..text.len() - 1];
    if !(frac.is_empty()
        || (frac.starts_with('.')
            && frac.len() > 1
            && frac[1..].bytes().all(|c| c.is_ascii_digit())))
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs).ok()
}

/// Which query parameters carry keys or tokens, decided once per config: the
/// well-known names, each API's subscription-key parameter and every parameter a
/// policy reads a token from. Every path that logs a URL (records on stderr and those
/// uploaded to the plane) goes through `redact`.
#[derive(Debug, Clone)]
pub struct Redaction {
    params: Vec<Box<str>>,
}

/// Query parameters redacted whatever the config says (matched without regard to case).
pub const SECRET_QUERY_PARAMS: &[&str] = &[
    "subscription-key",
    "access_token",
    "id_token",
    "refresh_token",
    "client_secret",
    "api-key",
    "api_key",
    "apikey",
    "token",
    "sig",
    "password",
];

impl Default for Redaction {
    fn default() -> Self {
        Redaction::with(std::iter::empty::<&str>())
    }
}

impl Redaction {
    /// The well-known names plus `more`.
    pub fn with<'a>(more: impl IntoIterator<Item = &'a str>) -> Redaction {
        let mut params: Vec<Box<str>> = SECRET_QUERY_PARAMS.iter().map(|p| Box::from(*p)).collect();
        for p in more {
            if !p.is_empty() && !params.iter().any(|q| q.eq_ignore_ascii_case(p)) {
                params.push(Box::from(p));
            }
        }
        Redaction { params }
    }

    fn secret(&self, name: &str) -> bool {
        let hit = |n: &str| self.params.iter().any(|p| p.eq_ignore_ascii_case(n));
        hit(name) || (name.contains('%') && hit(&percent_decoded(name)))
    }

    /// `query` with the value of every secret parameter replaced by `***`.
    pub fn redact<'q>(&self, query: &'q str) -> std::borrow::Cow<'q, str> {
        let secret_pair = |pair: &str| {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            pair.contains('=') && self.secret(name)
        };
        if !query.split('&').any(secret_pair) {
            return std::borrow::Cow::Borrowed(query);
        }
        let mut out = String::with_capacity(query.len());
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if self.secret(k) => {
                    out.push_str(k);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// `path` and `query` as a log line shows them.
    pub fn url(&self, path: &str, query: Option<&str>) -> String {
        match query {
            Some(q) => format!("{path}?{}", self.redact(q)),
            None => path.to_string(),
        }
    }
}

/// `%XX` sequences decoded (invalid ones kept): parameter names, admin query values,
/// JSON pointer tokens.
pub fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_strings_escape_as_newtonsoft_does() {
        let mut out = String::new();
        push_json_str(
            &mut out,
            "a\"b\\c\n\t\u{1}é€\u{85}\u{2028}\u{2029}\u{8}\u{c}z",
        );
        assert_eq!(out, r#""a\"b\\c\n\t\u0001é€\u0085\u2028\u2029\b\fz""#);
        let v: miniserde::json::Value = miniserde::json::from_str(&out).unwrap();
        assert!(
            matches!(v, miniserde::json::Value::String(s) if s == "a\"b\\c\n\t\u{1}é€\u{85}\u{2028}\u{2029}\u{8}\u{c}z")
        );
    }

    use super::*;
    use std::time::Duration;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_694_400_123)),
            "2026-11-26T12:00:00.123Z"
        );
    }

    #[test]
    fn parses_what_it_formats() {
        for secs in [0u64, 951_782_400, 1_795_694_400, 4_102_444_799] {
            let text = rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(parse_rfc3339(&text), Some(secs), "{text}");
        }
        assert_eq!(parse_rfc3339("2026-12-31T00:00:00Z"), Some(1_798_675_200));
        for bad in [
            "2026-12-31",
            "2026-12-31T00:00:00+01:00",
            "2026-13-01T00:00:00Z",
            "2026-12-31T00:00:00.Z",
            "x026-12-31T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn redaction_and_escaping() {
        let r = Redaction::with(["my-key", "jwt"]);
        assert_eq!(
            r.redact("a=1&subscription-key=s3cret&b"),
            "a=1&subscription-key=***&b"
        );
        assert_eq!(
            r.redact("jwt=eyJ.x.y&My-Key=k&access_token=t&subscription%2Dkey=s&keep=1"),
            "jwt=***&My-Key=***&access_token=***&subscription%2Dkey=***&keep=1"
        );
        assert!(matches!(r.redact("a=1&b=2"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(r.url("/p", Some("token=x")), "/p?token=***");
        assert_eq!(Redaction::default().redact("my-key=v"), "my-key=v");
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\\n\u{1}");
        assert_eq!(s, r#""a\"b\\\n\u0001""#);
    }

    #[test]
    fn json_record_parses() {
        let rec = Record {
            time: UNIX_EPOCH,
            request_id: "r1",
            client_ip: "127.0.0.1".parse().unwrap(),
            method: "GET",
            url: "/x?\"",
            api: "a",
            operation: "o",
            subscription: "",
            status: 200,
            backend_status: Some(200),
            bytes_in: 1,
            bytes_out: 2,
            total_ms: 1.5,
            backend_ms: None,
            error: None,
            probe: false,
            traces: &[],
        };
        let mut s = String::new();
        format_record(&mut s, &rec, LogFormat::Json);
        let v: miniserde::json::Value = miniserde::json::from_str(s.trim()).unwrap();
        let miniserde::json::Value::Object(o) = v else {
            panic!()
        };
        assert!(matches!(o.get("url"), Some(miniserde::json::Value::String(u)) if u == "/x?\""));
        let mut t = String::new();
        format_record(&mut t, &rec, LogFormat::Text);
        assert!(t.starts_with(
            "1970-01-01T00:00:00.000Z request requestId=r1 clientIp=127.0.0.1 method=GET"
        ));
    }
}

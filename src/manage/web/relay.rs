//! The portal's try-it relay: the browser posts the call to the portal (same origin, so
//! no CORS preflight and no gateway CORS policy needed) and the plane makes it to the
//! configured gateway with the developer's subscription key added here, so the key is
//! never put into the page or the form. Only the configured gateway's base URL is ever
//! called (the visitor chooses the path and query under it, not the host); redirects
//! are not followed; the answer is cut at `MAX_ANSWER` bytes; every phase has a timeout.
//! Must not touch: the store, sessions (portal.rs decides who may call what).

use std::io::Read;
use std::time::{Duration, Instant};

/// Longest a relayed call may take, end to end.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of an answer shown.
pub const MAX_ANSWER: usize = 256 * 1024;
/// Most bytes of a request body relayed.
pub const MAX_BODY: usize = 1024 * 1024;

/// Request headers the visitor may not set: the relay owns the connection, the host and
/// the subscription key.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// A call to make through the gateway.
pub struct TryCall<'a> {
    pub method: &'a str,
    /// The gateway's base URL (a setting), then the API's path and the operation's.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// The subscription key header and value (never shown back).
    pub key: Option<(String, String)>,
}

/// What came back.
pub struct TryAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub truncated: bool,
    pub elapsed: Duration,
}

/// `Name: value` lines of the try-it form, the headers a visitor may set.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("'{line}' is not a 'Name: value' header line"));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(format!("'{name}' is not a header name"));
        }
        if HOP_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(format!("{name} is set by the relay"));
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
    if out.len() > 32 {
        return Err("at most 32 headers".into());
    }
    Ok(out)
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(TIMEOUT))
        .user_agent(format!("edgegate-portal/{}", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Makes the call; the error is a sentence for the page.
pub fn relay(call: &TryCall) -> Result<TryAnswer, String> {
    let started = Instant::now();
    let mut builder = ureq::http::Request::builder()
        .method(call.method)
        .uri(&call.url);
    for (k, v) in &call.headers {
        if call
            .key
            .as_ref()
            .is_some_and(|(kh, _)| kh.eq_ignore_ascii_case(k))
        {
            continue;
        }
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Some((k, v)) = &call.key {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let agent = agent();
    let sent = if call.body.is_empty() {
        builder
            .body(())
            .map_err(|e| format!("cannot build the call: {e}"))
            .and_then(|r| agent.run(r).map_err(|e| e.to_string()))
    } else {
        builder
            .body(call.body)
            .map_err(|e| format!("cannot build the call: {e}"))
            .and_then(|r| agent.run(r).map_err(|e| e.to_string()))
    };
    let response = sent.map_err(|e| format!("The gateway could not be reached: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut bytes = Vec::new();
    let mut reader = response
        .into_body()
        .into_reader()
        .take(MAX_ANSWER as u64 + 1);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| format!("The answer could not be read: {e}"))?;
    let truncated = bytes.len() > MAX_ANSWER;
    bytes.truncate(MAX_ANSWER);
    Ok(TryAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        truncated,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_are_checked_and_hop_headers_refused() {
        assert_eq!(
            parse_headers("Accept: application/json\n\n X-Trace : 1 ").unwrap(),
            [
                ("Accept".to_string(), "application/json".to_string()),
                ("X-Trace".to_string(), "1".to_string())
            ]
        );
        assert!(parse_headers("Host: evil.example").is_err());
        assert!(parse_headers("no colon").is_err());
        assert!(parse_headers("Bad Name: x").is_err());
    }
}

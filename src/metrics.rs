//! Request metrics and their Prometheus text exposition: requests by API, operation
//! (and, when asked, product and subscription), status class and error reason; total,
//! backend, client and gateway duration histograms; gauges for the config, the plane
//! link, the backup store and open connections.
//!
//! The event loop only counts: each second it hands what it counted (`take`) to the
//! agent, which adds it to the cumulative copy (`merge`) that `/metrics` scrapes and
//! uploads render from, off the loop. Series keys are built in a reused scratch string,
//! so counting a request allocates only the first time a series appears in a second;
//! the number of series is bounded.
//! Must not touch: sockets, the agent.

use std::fmt::Write as _;

use crate::route::FnvMap;

/// Histogram bucket bounds, in milliseconds.
pub const BUCKETS_MS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];
/// Most distinct series kept; requests of further ones are counted under `overflow`.
pub const MAX_SERIES: usize = 10_000;

pub const REQUESTS: &str = "edgegate_requests_total";
/// `<emit-metric>` values: their sum and how many there were, per series.
pub const CUSTOM_SUM: &str = "edgegate_custom_metric_sum";
pub const CUSTOM_COUNT: &str = "edgegate_custom_metric_count";
/// Most distinct custom series kept; emissions of further ones are only counted.
pub const MAX_CUSTOM_SERIES: usize = 1_000;
pub const DURATION: &str = "edgegate_request_duration_milliseconds";
pub const BACKEND_DURATION: &str = "edgegate_backend_duration_milliseconds";
pub const CLIENT_DURATION: &str = "edgegate_client_duration_milliseconds";
pub const GATEWAY_DURATION: &str = "edgegate_gateway_duration_milliseconds";

/// Where one call's time went, in milliseconds (as APIM's TotalTime, BackendTime and
/// ClientTime): `client` is waiting on the client (the request body coming in, the
/// response going out after the backend's last byte), `gateway` the rest that is not
/// the backend's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub total: f64,
    pub backend: Option<f64>,
    pub client: f64,
    pub gateway: f64,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS_MS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    fn observe(&mut self, ms: f64) {
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += ms;
    }
}

#[derive(Default, Clone)]
struct Series {
    total: Histogram,
    backend: Histogram,
    client: Histogram,
    gateway: Histogram,
}

impl Series {
    fn add(&mut self, other: &Series) {
        self.total.add(&other.total);
        self.backend.add(&other.backend);
        self.client.add(&other.client);
        self.gateway.add(&other.gateway);
    }
}

/// The gauges as the loop saw them at its last hand-over (owned, for another thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GaugeValues {
    pub config_version: Option<String>,
    pub config_age_seconds: u64,
    pub plane_connected: Option<bool>,
    pub backup_versions: Option<u32>,
    pub connections_open: usize,
    pub log_records_dropped: u64,
    pub cache: CacheStats,
    pub one_way: OneWayStats,
    pub external_up: Option<bool>,
    pub external_dropped: u64,
}

/// What `send-one-way-request` did since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OneWayStats {
    /// Sent and answered (any status).
    pub sent: u64,
    /// Sent, and no response came (connect failure, timeout, bad response).
    pub failed: u64,
    /// Not sent: the outbox or the in-flight set was full.
    pub dropped: u64,
    /// The part of `dropped` the in-flight set refused.
    pub dropped_in_flight: u64,
}

impl GaugeValues {
    pub fn of(g: &Gauges) -> GaugeValues {
        GaugeValues {
            config_version: g.config_version.map(str::to_string),
            config_age_seconds: g.config_age_seconds,
            plane_connected: g.plane_connected,
            backup_versions: g.backup_versions,
            connections_open: g.connections_open,
            log_records_dropped: g.log_records_dropped,
            cache: g.cache,
            one_way: g.one_way,
            external_up: g.external_up,
            external_dropped: g.external_dropped,
        }
    }

    pub fn gauges(&self) -> Gauges<'_> {
        Gauges {
            config_version: self.config_version.as_deref(),
            config_age_seconds: self.config_age_seconds,
            plane_connected: self.plane_connected,
            backup_versions: self.backup_versions,
            connections_open: self.connections_open,
            log_records_dropped: self.log_records_dropped,
            cache: self.cache,
            one_way: self.one_way,
            external_up: self.external_up,
            external_dropped: self.external_dropped,
        }
    }
}

/// How much of the exposition to render: everything, or (for an upload that would
/// otherwise exceed its bound) the counters and histogram sums and counts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Full,
    Counts,
}

/// What the loop knows at render time.
pub struct Gauges<'a> {
    pub config_version: Option<&'a str>,
    pub config_age_seconds: u64,
    pub plane_connected: Option<bool>,
    /// Versions in the backup store, when backups are on.
    pub backup_versions: Option<u32>,
    pub connections_open: usize,
    /// Request records the loop could not hand to the log writer (stderr too slow).
    pub log_records_dropped: u64,
    /// What the built-in cache has done and holds.
    pub cache: CacheStats,
    /// What send-one-way-request did.
    pub one_way: OneWayStats,
    /// Whether the external cache answers (none: no external cache).
    pub external_up: Option<bool>,
    /// Commands for it that found a queue full and were not sent, since the start.
    pub external_dropped: u64,
}

impl<'a> Gauges<'a> {
    /// The gauges for the running config and sync state.
    pub fn of(
        runtime: Option<&'a crate::config::Runtime>,
        sync: &crate::status::SyncState,
        service_mode: bool,
        connections_open: usize,
    ) -> Gauges<'a> {
        Gauges {
            config_version: runtime.map(|r| r.version.as_str()),
            config_age_seconds: runtime.map_or(0, |r| {
                std::time::SystemTime::now()
                    .duration_since(r.applied_at)
                    .unwrap_or_default()
                    .as_secs()
            }),
            plane_connected: service_mode.then_some(sync.offline_since.is_none()),
            backup_versions: sync.backup_versions,
            connections_open,
            log_records_dropped: 0,
            cache: CacheStats::default(),
            one_way: OneWayStats::default(),
            external_up: None,
            external_dropped: 0,
        }
    }
}

pub use crate::policy::cache::CacheStats;
pub use crate::settings::{LabelSet, LABELS};

/// One answered call, as metrics label it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub api: &'a str,
    pub operation: &'a str,
    pub product: &'a str,
    pub subscription: &'a str,
    pub status: u16,
    pub reason: Option<&'a str>,
}

#[derive(Default)]
pub struct Metrics {
    labels: LabelSet,
    series: FnvMap<Box<str>, Series>,
    scratch: String,
    overflow: u64,
    /// `<emit-metric>` series: key (namespace, name, dimension pairs) -> (sum, count).
    custom: FnvMap<Box<str>, (f64, u64)>,
    custom_dropped: u64,
}

fn class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// A Prometheus label name for a dimension (`API ID` -> `API_ID`).
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

impl Metrics {
    /// The `<emit-metric>` series: a sum and a count each.
    fn render_custom(&self, out: &mut String) {
        if self.custom.is_empty() && self.custom_dropped == 0 {
            return;
        }
        let mut keys: Vec<&Box<str>> = self.custom.keys().collect();
        keys.sort();
        for (metric, pick) in [(CUSTOM_SUM, 0), (CUSTOM_COUNT, 1)] {
            let _ = writeln!(out, "# TYPE {metric} counter");
            for key in &keys {
                let mut parts = key.split('\u{1f}');
                let namespace = parts.next().unwrap_or("");
                let name = parts.next().unwrap_or("");
                out.push_str(metric);
                out.push_str("{namespace=\"");
                escape(out, namespace);
                out.push_str("\",metric=\"");
                escape(out, name);
                out.push('"');
                for pair in parts.filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('\u{1e}').unwrap_or((pair, ""));
                    let _ = write!(out, ",{}=\"", label_name(k));
                    escape(out, v);
                    out.push('"');
                }
                let (sum, count) = self.custom[*key];
                if pick == 0 {
                    let _ = writeln!(out, "}} {sum}");
                } else {
                    let _ = writeln!(out, "}} {count}");
                }
            }
        }
        if self.custom_dropped > 0 {
            let _ = writeln!(
                out,
                "edgegate_custom_metric_dropped_total {}",
                self.custom_dropped
            );
        }
    }
}

fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Metrics {
    pub fn new(labels: LabelSet) -> Metrics {
        Metrics {
            labels,
            ..Metrics::default()
        }
    }

    /// What was counted since the last `take`; counting starts afresh.
    pub fn take(&mut self) -> Metrics {
        Metrics {
            labels: self.labels,
            series: std::mem::take(&mut self.series),
            scratch: String::new(),
            overflow: std::mem::take(&mut self.overflow),
            custom: std::mem::take(&mut self.custom),
            custom_dropped: std::mem::take(&mut self.custom_dropped),
        }
    }

    /// Counts one `<emit-metric>` value; a series beyond `MAX_CUSTOM_SERIES` is dropped
    /// (and counted as dropped).
    pub fn custom(&mut self, m: &crate::telemetry::CustomMetric) {
        self.scratch.clear();
        for part in [m.namespace.as_str(), m.name.as_str()] {
            self.scratch.push_str(part);
            self.scratch.push('\u{1f}');
        }
        for (k, v) in &m.dimensions {
            self.scratch.push_str(k);
            self.scratch.push('\u{1e}');
            self.scratch.push_str(v);
            self.scratch.push('\u{1f}');
        }
        let room = self.custom.len() < MAX_CUSTOM_SERIES;
        match self.custom.get_mut(self.scratch.as_str()) {
            Some(s) => {
                s.0 += m.value;
                s.1 += 1;
            }
            None if room => {
                self.custom
                    .insert(self.scratch.as_str().into(), (m.value, 1));
            }
            None => self.custom_dropped += 1,
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
            && self.overflow == 0
            && self.custom.is_empty()
            && self.custom_dropped == 0
    }

    /// Adds `other`'s counts (series beyond `MAX_SERIES` count as unlabelled).
    pub fn merge(&mut self, other: Metrics) {
        self.overflow += other.overflow;
        self.custom_dropped += other.custom_dropped;
        for (key, (sum, count)) in other.custom {
            let room = self.custom.len() < MAX_CUSTOM_SERIES;
            match self.custom.get_mut(&key) {
                Some(mine) => {
                    mine.0 += sum;
                    mine.1 += count;
                }
                None if room => {
                    self.custom.insert(key, (sum, count));
                }
                None => self.custom_dropped += count,
            }
        }
        for (key, series) in other.series {
            let room = self.series.len() < MAX_SERIES;
            match self.series.get_mut(&key) {
                Some(mine) => mine.add(&series),
                None if room => {
                    self.series.insert(key, series);
                }
                None => self.overflow += series.total.count,
            }
        }
    }

    pub fn observe(&mut self, call: &Call, t: Timings) {
        self.scratch.clear();
        let values = [call.api, call.operation, call.product, call.subscription];
        for (value, on) in values.iter().zip(self.labels.enabled()) {
            if on {
                self.scratch.push_str(value);
            }
            self.scratch.push('\u{1f}');
        }
        for part in [class(call.status), call.reason.unwrap_or("")] {
            self.scratch.push_str(part);
            self.scratch.push('\u{1f}');
        }
        if !self.series.contains_key(self.scratch.as_str()) {
            if self.series.len() >= MAX_SERIES {
                self.overflow += 1;
                return;
            }
            self.series
                .insert(self.scratch.clone().into_boxed_str(), Series::default());
        }
        let Some(series) = self.series.get_mut(self.scratch.as_str()) else {
            return;
        };
        series.total.observe(t.total);
        if let Some(b) = t.backend {
            series.backend.observe(b);
        }
        series.client.observe(t.client);
        series.gateway.observe(t.gateway);
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        self.render_with(g, Detail::Full)
    }

    /// The exposition at `detail`: `Counts` leaves out the histogram buckets.
    pub fn render_with(&self, g: &Gauges, detail: Detail) -> String {
        let mut out = String::with_capacity(4096);
        let mut keys: Vec<&Box<str>> = self.series.keys().collect();
        keys.sort();
        let enabled = self.labels.enabled();
        let labels = |out: &mut String, key: &str| {
            let mut parts = key.split('\u{1f}');
            let mut first = true;
            let names = LABELS
                .iter()
                .zip(enabled)
                .map(|(n, on)| (*n, on))
                .chain([("status_class", true), ("error_reason", true)]);
            for (name, on) in names {
                let value = parts.next().unwrap_or("");
                if !on {
                    continue;
                }
                let _ = write!(out, "{}{name}=\"", if first { "" } else { "," });
                first = false;
                escape(out, value);
                out.push('"');
            }
        };
        let _ = writeln!(out, "# HELP {REQUESTS} Requests answered, by API, operation, status class and error reason.");
        let _ = writeln!(out, "# TYPE {REQUESTS} counter");
        for key in &keys {
            out.push_str(REQUESTS);
            out.push('{');
            labels(&mut out, key);
            let _ = writeln!(out, "}} {}", self.series[*key].total.count);
        }
        self.render_custom(&mut out);
        if self.overflow > 0 {
            let _ = writeln!(out, "edgegate_requests_unlabelled_total {}", self.overflow);
        }
        type Pick = fn(&Series) -> &Histogram;
        let histograms: [(&str, &str, Pick); 4] = [
            (
                DURATION,
                "Time from the request head to the last response byte.",
                |s| &s.total,
            ),
            (
                BACKEND_DURATION,
                "Time from connecting to the backend to the last response byte.",
                |s| &s.backend,
            ),
            (
                CLIENT_DURATION,
                "Time spent waiting on the client: the request body in, the response out after the backend's last byte.",
                |s| &s.client,
            ),
            (
                GATEWAY_DURATION,
                "Time neither the backend's nor the client's: routing, policies, queueing.",
                |s| &s.gateway,
            ),
        ];
        for (name, help, pick) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for key in &keys {
                let h = pick(&self.series[*key]);
                if h.count == 0 {
                    continue;
                }
                let mut cumulative = 0;
                for (i, bound) in BUCKETS_MS.iter().enumerate() {
                    if detail == Detail::Counts {
                        break;
                    }
                    cumulative += h.buckets[i];
                    let _ = write!(out, "{name}_bucket{{");
                    labels(&mut out, key);
                    let _ = writeln!(out, ",le=\"{bound}\"}} {cumulative}");
                }
                if detail == Detail::Full {
                    let _ = write!(out, "{name}_bucket{{");
                    labels(&mut out, key);
                    let _ = writeln!(out, ",le=\"+Inf\"}} {}", h.count);
                }
                for (suffix, value) in [
                    ("sum", format!("{:.3}", h.sum)),
                    ("count", h.count.to_string()),
                ] {
                    let _ = write!(out, "{name}_{suffix}{{");
                    labels(&mut out, key);
                    let _ = writeln!(out, "}} {value}");
                }
            }
        }
        let _ = writeln!(out, "# TYPE edgegate_config_info gauge");
        if let Some(v) = g.config_version {
            out.push_str("edgegate_config_info{version=\"");
            escape(&mut out, v);
            out.push_str("\"} 1\n");
        }
        let _ = writeln!(
            out,
            "# TYPE edgegate_config_age_seconds gauge\nedgegate_config_age_seconds {}",
            g.config_age_seconds
        );
        if let Some(c) = g.plane_connected {
            let _ = writeln!(
                out,
                "# TYPE edgegate_plane_connected gauge\nedgegate_plane_connected {}",
                u8::from(c)
            );
        }
        if let Some(n) = g.backup_versions {
            let _ = writeln!(
                out,
                "# TYPE edgegate_backup_versions gauge\nedgegate_backup_versions {n}"
            );
        }
        let _ = writeln!(
            out,
            "# TYPE edgegate_connections_open gauge\nedgegate_connections_open {}",
            g.connections_open
        );
        let _ = writeln!(
            out,
            "# TYPE edgegate_log_records_dropped_total counter\nedgegate_log_records_dropped_total {}",
            g.log_records_dropped
        );
        policy_gauges(&mut out, g);
        out
    }
}

/// What the built-in and external caches and send-one-way-request did.
fn policy_gauges(out: &mut String, g: &Gauges) {
    if let Some(up) = g.external_up {
        let _ = writeln!(
            out,
            "# TYPE edgegate_external_cache_up gauge\nedgegate_external_cache_up {}",
            u8::from(up)
        );
        let _ = writeln!(
            out,
            "# TYPE edgegate_external_cache_dropped_total counter\nedgegate_external_cache_dropped_total {}",
            g.external_dropped
        );
    }
    {
        let c = &g.cache;
        for (name, kind, value) in [
            ("hits_total", "counter", c.hits),
            ("misses_total", "counter", c.misses),
            ("stores_total", "counter", c.stores),
            ("stores_refused_total", "counter", c.refused),
            ("evictions_total", "counter", c.evictions),
            ("bytes", "gauge", c.bytes as u64),
            ("entries", "gauge", c.entries as u64),
        ] {
            let _ = writeln!(
                out,
                "# TYPE edgegate_cache_{name} {kind}\nedgegate_cache_{name} {value}"
            );
        }
        let w = &g.one_way;
        for (name, value) in [
            ("sent", w.sent),
            ("failed", w.failed),
            ("dropped", w.dropped),
        ] {
            let _ = writeln!(
                out,
                "# TYPE edgegate_one_way_requests_{name}_total counter\nedgegate_one_way_requests_{name}_total {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(
        api: &'a str,
        operation: &'a str,
        status: u16,
        reason: Option<&'a str>,
    ) -> Call<'a> {
        Call {
            api,
            operation,
            product: "gold",
            subscription: "sub-1",
            status,
            reason,
        }
    }

    #[test]
    fn counts_histograms_and_exposition() {
        let mut m = Metrics::default();
        let t = |total, backend, client, gateway| Timings {
            total,
            backend,
            client,
            gateway,
        };
        m.observe(&call("echo", "get", 200, None), t(3.0, Some(2.0), 0.5, 0.5));
        m.observe(
            &call("echo", "get", 200, None),
            t(30.0, Some(29.0), 0.7, 0.3),
        );
        m.observe(
            &call("", "", 404, Some("operation_not_found")),
            t(0.1, None, 0.0, 0.1),
        );
        let text = m.render(&Gauges {
            config_version: Some("v\"1"),
            config_age_seconds: 7,
            plane_connected: Some(false),
            backup_versions: Some(4),
            connections_open: 3,
            log_records_dropped: 7,
            cache: CacheStats {
                hits: 5,
                evictions: 2,
                bytes: 1234,
                ..CacheStats::default()
            },
            one_way: OneWayStats {
                sent: 3,
                dropped: 1,
                ..OneWayStats::default()
            },
            external_up: Some(false),
            external_dropped: 2,
        });
        for line in [
            "edgegate_requests_total{api=\"echo\",operation=\"get\",status_class=\"2xx\",error_reason=\"\"} 2",
            "edgegate_requests_total{api=\"\",operation=\"\",status_class=\"4xx\",error_reason=\"operation_not_found\"} 1",
            "edgegate_request_duration_milliseconds_bucket{api=\"echo\",operation=\"get\",status_class=\"2xx\",error_reason=\"\",le=\"5\"} 1",
            "edgegate_request_duration_milliseconds_bucket{api=\"echo\",operation=\"get\",status_class=\"2xx\",error_reason=\"\",le=\"50\"} 2",
            "edgegate_request_duration_milliseconds_count{api=\"echo\",operation=\"get\",status_class=\"2xx\",error_reason=\"\"} 2",
            "edgegate_backend_duration_milliseconds_sum{api=\"echo\",operation=\"get\",status_class=\"2xx\",error_reason=\"\"} 31.000",
            "edgegate_config_info{version=\"v\\\"1\"} 1",
            "edgegate_config_age_seconds 7",
            "edgegate_one_way_requests_sent_total 3",
            "edgegate_one_way_requests_failed_total 0",
            "edgegate_one_way_requests_dropped_total 1",
            "edgegate_external_cache_up 0",
            "edgegate_external_cache_dropped_total 2",
            "edgegate_client_duration_milliseconds_sum{api=\"echo\",operation=\"get\",status_class=\"2xx\",error_reason=\"\"} 1.200",
            "edgegate_gateway_duration_milliseconds_bucket{api=\"echo\",operation=\"get\",status_class=\"2xx\",error_reason=\"\",le=\"1\"} 2",
            "edgegate_plane_connected 0",
            "edgegate_backup_versions 4",
            "edgegate_connections_open 3",
            "edgegate_log_records_dropped_total 7",
            "edgegate_cache_hits_total 5",
            "edgegate_cache_misses_total 0",
            "edgegate_cache_evictions_total 2",
            "edgegate_cache_bytes 1234",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert!(
            !text.contains("edgegate_backend_duration_milliseconds_count{api=\"\""),
            "no backend series without backend time"
        );
    }

    #[test]
    fn series_are_bounded() {
        let mut m = Metrics::default();
        for i in 0..MAX_SERIES + 5 {
            m.observe(
                &call(&format!("api-{i}"), "op", 200, None),
                Timings::default(),
            );
        }
        assert_eq!(m.series.len(), MAX_SERIES);
        assert!(m
            .render(&GaugeValues::default().gauges())
            .contains("edgegate_requests_unlabelled_total 5"));
    }

    /// The loop hands over what it counted each second; the agent's copy adds it up.
    #[test]
    fn intervals_merge_into_the_cumulative_copy() {
        let mut lp = Metrics::default();
        let mut mirror = Metrics::default();
        lp.observe(
            &call("echo", "get", 200, None),
            Timings {
                total: 3.0,
                ..Timings::default()
            },
        );
        mirror.merge(lp.take());
        assert!(lp.is_empty());
        lp.observe(
            &call("echo", "get", 200, None),
            Timings {
                total: 30.0,
                ..Timings::default()
            },
        );
        mirror.merge(lp.take());
        let g = GaugeValues::default();
        let text = mirror.render(&g.gauges());
        let want = r#"edgegate_requests_total{api="echo",operation="get",status_class="2xx",error_reason=""} 2"#;
        assert!(text.lines().any(|l| l == want), "{text}");
        assert!(text.contains(r#"edgegate_request_duration_milliseconds_sum{api="echo",operation="get",status_class="2xx",error_reason=""} 33.000"#));
        let counts = mirror.render_with(&g.gauges(), Detail::Counts);
        assert!(
            !counts.contains("_bucket{") && counts.contains("_count{"),
            "{counts}"
        );
    }

    /// Who was throttled shows: product and subscription labels when asked for.
    #[test]
    fn labels_are_chosen_by_the_setting() {
        assert_eq!(
            LabelSet::parse("api, subscription").map(|l| l.enabled()),
            Some([true, false, false, true])
        );
        assert_eq!(
            LabelSet::parse("none").map(|l| l.enabled()),
            Some([false; 4])
        );
        assert_eq!(LabelSet::parse("api,tenant"), None);
        let mut m = Metrics::new(LabelSet::parse("api,product,subscription").unwrap());
        m.observe(
            &call("echo", "get", 429, Some("rate_limit_exceeded")),
            Timings::default(),
        );
        let text = m.render(&GaugeValues::default().gauges());
        let want = r#"edgegate_requests_total{api="echo",product="gold",subscription="sub-1",status_class="4xx",error_reason="rate_limit_exceeded"} 1"#;
        assert!(text.lines().any(|l| l == want), "{text}");
    }
}

//! The contract between a federated gateway and the management plane, in one place:
//! the token format (`token`), the paths and header names of the gateway API, and the
//! JSON shape of a heartbeat. The gateway's agent writes these and the plane reads
//! them; both import this module and neither imports the other.
//! Must not touch: sockets, storage, either program's state.

pub mod token;

use miniserde::json::{self, Number, Object, Value};

/// `GET`: the gateway's config document (`ETag`, `If-None-Match`, `?wait=N` long poll).
pub const CONFIG_PATH: &str = "/gateway/config";
/// `POST`: a heartbeat (JSON, [`Heartbeat`]).
pub const HEARTBEAT_PATH: &str = "/gateway/heartbeat";
/// `POST`: request records (NDJSON), with [`DROPPED_HEADER`].
pub const TELEMETRY_PATH: &str = "/gateway/telemetry";
/// `POST`: an instance's cumulative metrics (Prometheus text), with [`INSTANCE_HEADER`].
pub const METRICS_PATH: &str = "/gateway/metrics";

/// How many request records the gateway had to drop since its last upload.
pub const DROPPED_HEADER: &str = "X-Dropped-Records";
/// The instance a metrics upload belongs to.
pub const INSTANCE_HEADER: &str = "X-Instance-Id";
/// Longest instance id the plane accepts.
pub const INSTANCE_ID_MAX: usize = 128;

/// What a gateway instance says about itself, every `config.service.heartbeat.interval`,
/// at once after a config is applied, and one last time when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// Stable across restarts of one installation (kept in the backup store).
    pub instance_id: String,
    pub hostname: String,
    /// edgegate's version.
    pub version: String,
    pub config_version: String,
    /// `service`, `backup` or `local`.
    pub config_source: String,
    pub config_applied_at: String,
    pub uptime_seconds: u64,
    /// The last time a config check reached the plane (RFC 3339).
    pub last_sync_at: Option<String>,
    pub last_sync_error: Option<String>,
    /// A state of its config that is not an error (a pin in force, a start from backup).
    pub sync_note: Option<String>,
    /// The last outage this instance saw, reported once it is over: (from, until).
    pub last_outage: Option<(String, String)>,
    pub token_expiry: Option<String>,
    pub heartbeat_interval_seconds: u64,
    /// Why backups are off, when they are (`None`: on).
    pub backups_off: Option<String>,
    /// The instance is stopping: this is its last heartbeat.
    pub stopping: bool,
    /// When this run of the process started (unix milliseconds) and which of its
    /// reports this is (counted from 1): the plane keeps the newest, so a report that
    /// was in flight when a later one (the last, say) arrived does not replace it.
    pub started_at_ms: u64,
    pub sequence: u64,
}

/// JSON field names of a heartbeat.
pub mod field {
    pub const INSTANCE_ID: &str = "instanceId";
    pub const HOSTNAME: &str = "hostname";
    pub const VERSION: &str = "version";
    pub const CONFIG_VERSION: &str = "configVersion";
    pub const CONFIG_SOURCE: &str = "configSource";
    pub const CONFIG_APPLIED_AT: &str = "configAppliedAt";
    pub const UPTIME_SECONDS: &str = "uptimeSeconds";
    pub const LAST_SYNC_AT: &str = "lastSyncAt";
    pub const LAST_SYNC_ERROR: &str = "lastSyncError";
    pub const SYNC_NOTE: &str = "syncNote";
    pub const LAST_OUTAGE: &str = "lastOutage";
    pub const TOKEN_EXPIRY: &str = "tokenExpiry";
    pub const HEARTBEAT_INTERVAL_SECONDS: &str = "heartbeatIntervalSeconds";
    pub const BACKUPS_OFF: &str = "backupsOff";
    pub const STOPPING: &str = "stopping";
    pub const STARTED_AT_MS: &str = "startedAtMs";
    pub const SEQUENCE: &str = "sequence";
}

impl Heartbeat {
    pub fn to_json(&self) -> String {
        let mut o = Object::new();
        let s = |v: &str| Value::String(v.to_string());
        let opt = |v: &Option<String>| v.as_deref().map_or(Value::Null, s);
        o.insert(field::INSTANCE_ID.into(), s(&self.instance_id));
        o.insert(field::HOSTNAME.into(), s(&self.hostname));
        o.insert(field::VERSION.into(), s(&self.version));
        o.insert(field::CONFIG_VERSION.into(), s(&self.config_version));
        o.insert(field::CONFIG_SOURCE.into(), s(&self.config_source));
        o.insert(field::CONFIG_APPLIED_AT.into(), s(&self.config_applied_at));
        o.insert(
            field::UPTIME_SECONDS.into(),
            Value::Number(Number::U64(self.uptime_seconds)),
        );
        o.insert(field::LAST_SYNC_AT.into(), opt(&self.last_sync_at));
        o.insert(field::LAST_SYNC_ERROR.into(), opt(&self.last_sync_error));
        o.insert(field::SYNC_NOTE.into(), opt(&self.sync_note));
        o.insert(
            field::LAST_OUTAGE.into(),
            match &self.last_outage {
                Some((from, until)) => {
                    let mut outage = Object::new();
                    outage.insert("from".into(), s(from));
                    outage.insert("until".into(), s(until));
                    Value::Object(outage)
                }
                None => Value::Null,
            },
        );
        o.insert(field::TOKEN_EXPIRY.into(), opt(&self.token_expiry));
        o.insert(
            field::HEARTBEAT_INTERVAL_SECONDS.into(),
            Value::Number(Number::U64(self.heartbeat_interval_seconds.max(1))),
        );
        o.insert(field::BACKUPS_OFF.into(), opt(&self.backups_off));
        o.insert(field::STOPPING.into(), Value::Bool(self.stopping));
        o.insert(
            field::STARTED_AT_MS.into(),
            Value::Number(Number::U64(self.started_at_ms)),
        );
        o.insert(
            field::SEQUENCE.into(),
            Value::Number(Number::U64(self.sequence)),
        );
        json::to_string(&Value::Object(o))
    }
}

/// The instance id of a heartbeat report, if it is one the plane accepts.
pub fn instance_id_of(report: &Object) -> Option<&str> {
    match report.get(field::INSTANCE_ID) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= INSTANCE_ID_MAX => Some(s),
        _ => None,
    }
}

/// The heartbeat period an instance announced (seconds, at least 1; 60 when absent).
pub fn interval_of(report: &Object) -> u64 {
    match report.get(field::HEARTBEAT_INTERVAL_SECONDS) {
        Some(Value::Number(Number::U64(n))) => (*n).max(1),
        _ => 60,
    }
}

/// Whether a report is an instance's last one (it stopped).
pub fn is_stopping(report: &Object) -> bool {
    matches!(report.get(field::STOPPING), Some(Value::Bool(true)))
}

/// Where a report stands among an instance's reports: (process start, sequence);
/// (0, 0) for one that does not say (an older gateway).
pub fn order_of(report: &Object) -> (u64, u64) {
    let number = |key: &str| match report.get(key) {
        Some(Value::Number(Number::U64(n))) => *n,
        _ => 0,
    };
    (number(field::STARTED_AT_MS), number(field::SEQUENCE))
}

/// Whether `incoming` was sent before `stored` (both from one instance): a late
/// report, which must not replace the newer one.
pub fn is_older(incoming: &Object, stored: &Object) -> bool {
    let (new, old) = (order_of(incoming), order_of(stored));
    new != (0, 0) && new < old
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_reads_back_as_the_plane_sees_it() {
        let beat = Heartbeat {
            instance_id: "a1b2".into(),
            hostname: "edge-7".into(),
            version: "0.1.0".into(),
            config_version: "42".into(),
            config_source: "service".into(),
            config_applied_at: "2026-12-05T10:00:00.000Z".into(),
            uptime_seconds: 9,
            last_outage: Some((
                "2026-12-05T10:01:00.000Z".into(),
                "2026-12-05T10:02:00.000Z".into(),
            )),
            heartbeat_interval_seconds: 0,
            stopping: true,
            ..Heartbeat::default()
        };
        let text = beat.to_json();
        let Value::Object(o) = json::from_str::<Value>(&text).unwrap() else {
            panic!("{text}")
        };
        assert_eq!(instance_id_of(&o), Some("a1b2"));
        assert_eq!(interval_of(&o), 1, "at least one second");
        assert!(is_stopping(&o));
        assert!(text.contains(r#""lastOutage":{"from":"2026-12-05T10:01:00.000Z","until":"2026-12-05T10:02:00.000Z"}"#), "{text}");
        assert!(text.contains(r#""lastSyncError":null"#), "{text}");
    }
}

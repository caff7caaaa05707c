//! What the gateway says about itself: the state of its config sync (kept by the loop,
//! updated by messages from the agent) and the JSON body of
//! `/status-0123456789abcdef`. 200 when a config is loaded, 503 before.
//! Must not touch: sockets, the agent's internals.

use std::time::SystemTime;

use crate::config::Runtime;
use crate::telemetry::{push_json_str, rfc3339};

pub const STATUS_PATHS: [&str; 2] = [
    "/status-0123456789abcdef",
    "/internal-status-0123456789abcdef",
];

/// The outcome of the most recent attempt to load or fetch a config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// When the last attempt was made (whatever its result).
    pub last_sync_at: Option<SystemTime>,
    /// `None` = the last attempt succeeded.
    pub last_error: Option<String>,
    /// A state worth saying that is not an error: a pin in force, a start from backup
    /// while the plane is asked.
    pub note: Option<String>,
    pub offline_since: Option<SystemTime>,
    pub token_expiry: Option<String>,
    /// Versions in the backup store after the last apply (for metrics), when backups are on.
    pub backup_versions: Option<u32>,
    /// `context.Deployment.GatewayId`: the id in the gateway's token (federated mode;
    /// follows a rotated token file), `None` in local mode.
    pub gateway_id: Option<String>,
    /// Whether the external cache (Redis) answers; `None` without one. The loop's own
    /// view, kept across the agent's sync states.
    pub external_cache_up: Option<bool>,
}

impl SyncState {
    /// `context.Deployment.GatewayId` as policies see it.
    pub fn gateway_id(&self) -> &str {
        self.gateway_id.as_deref().unwrap_or("local")
    }
}

pub fn render(runtime: Option<&Runtime>, sync: &SyncState, now: SystemTime) -> (u16, String) {
    let mut s = String::with_capacity(256);
    s.push('{');
    match runtime {
        Some(rt) => {
            s.push_str("\"status\": \"ok\", \"configVersion\": ");
            push_json_str(&mut s, &rt.version);
            s.push_str(", \"configSource\": ");
            push_json_str(&mut s, rt.source.as_str());
            s.push_str(", \"configAppliedAt\": ");
            push_json_str(&mut s, &rfc3339(rt.applied_at));
            let age = now
                .duration_since(rt.applied_at)
                .unwrap_or_default()
                .as_secs();
            s.push_str(&format!(
                ", \"configAgeSeconds\": {age}, \"apis\": {}",
                rt.apis.len()
            ));
        }
        None => s.push_str("\"status\": \"no configuration\", \"configVersion\": null"),
    }
    s.push_str(", \"lastSync\": {\"at\": ");
    match sync.last_sync_at {
        Some(t) => push_json_str(&mut s, &rfc3339(t)),
        None => s.push_str("null"),
    }
    s.push_str(", \"result\": ");
    match &sync.last_error {
        None => s.push_str("\"ok\", \"error\": null"),
        Some(e) => {
            s.push_str("\"error\", \"error\": ");
            push_json_str(&mut s, e);
        }
    }
    s.push_str(", \"note\": ");
    match &sync.note {
        Some(n) => push_json_str(&mut s, n),
        None => s.push_str("null"),
    }
    s.push_str("}, \"offlineSince\": ");
    match sync.offline_since {
        Some(t) => push_json_str(&mut s, &rfc3339(t)),
        None => s.push_str("null"),
    }
    s.push_str(", \"gatewayId\": ");
    match &sync.gateway_id {
        Some(id) => push_json_str(&mut s, id),
        None => s.push_str("null"),
    }
    s.push_str(", \"tokenExpiry\": ");
    match &sync.token_expiry {
        Some(t) => push_json_str(&mut s, t),
        None => s.push_str("null"),
    }
    // an unreachable external cache: values miss and limits count locally
    s.push_str(", \"externalCache\": ");
    match sync.external_cache_up {
        Some(true) => s.push_str("\"up\""),
        Some(false) => s.push_str("\"down\""),
        None => s.push_str("null"),
    }
    s.push('}');
    (if runtime.is_some() { 200 } else { 503 }, s)
}

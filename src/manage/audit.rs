//! The plane's audit trail: one JSON line per admin call that changes something or
//! reads a secret (PUT, POST, DELETE): when, who (the client address and a fingerprint
//! of the admin token, never the token), what (method and path) and how it ended. No
//! body is ever recorded, so keys, secret values and private keys stay out. Lines go
//! to the log and, with `manage.audit.path`, are appended to that file (created 0600).
//! Must not touch: what requests mean (api.rs), storage.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use super::http::Request;
use crate::telemetry::{push_json_str, rfc3339};

pub struct Audit {
    file: Option<Mutex<std::fs::File>>,
}

/// A short, stable, non-reversible name for a bearer token: who acted, without the
/// token itself.
pub fn token_fingerprint(token: &str) -> String {
    crate::sqlite::sha256_hex(token.as_bytes())[..12].to_string()
}

impl Audit {
    /// Appends to `path` when given (created mode 0600); the log always gets the line.
    pub fn open(path: Option<&Path>) -> Result<Audit, String> {
        let file = match path {
            None => None,
            Some(p) => {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)
                    .map_err(|e| format!("cannot open manage.audit.path {}: {e}", p.display()))?;
                Some(Mutex::new(f))
            }
        };
        Ok(Audit { file })
    }

    /// Whether a call is audited: anything but a plain read.
    pub fn audited(method: &str) -> bool {
        matches!(method, "PUT" | "POST" | "DELETE" | "PATCH")
    }

    pub fn line(req: &Request, actor: &str, status: u16, at: SystemTime) -> String {
        let mut line = String::with_capacity(160);
        line.push_str("{\"time\":");
        push_json_str(&mut line, &rfc3339(at));
        line.push_str(",\"clientIp\":");
        push_json_str(&mut line, &req.peer);
        line.push_str(",\"actor\":");
        push_json_str(&mut line, actor);
        line.push_str(",\"method\":");
        push_json_str(&mut line, &req.method);
        line.push_str(",\"path\":");
        push_json_str(&mut line, &req.path);
        line.push_str(&format!(",\"status\":{status}}}"));
        line
    }

    pub fn record(&self, req: &Request, actor: &str, status: u16) {
        let line = Audit::line(req, actor, status, SystemTime::now());
        log::info!("audit {line}");
        if let Some(file) = &self.file {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = writeln!(f, "{line}") {
                log::error!("audit line not written to manage.audit.path: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_actor_by_fingerprint_and_hold_no_body() {
        let req = Request {
            method: "PUT".into(),
            path: "/admin/named-values/db-password".into(),
            query: String::new(),
            headers: vec![("Authorization".into(), "Bearer s3cret-admin-token".into())],
            body: br#"{"value": "hunter2", "secret": true}"#.to_vec(),
            peer: "127.0.0.1".into(),
        };
        let actor = format!("admin:{}", token_fingerprint("s3cret-admin-token"));
        let line = Audit::line(&req, &actor, 201, SystemTime::UNIX_EPOCH);
        assert_eq!(
            line,
            format!(
                r#"{{"time":"1970-01-01T00:00:00.000Z","clientIp":"127.0.0.1","actor":"{actor}","method":"PUT","path":"/admin/named-values/db-password","status":201}}"#
            )
        );
        assert!(!line.contains("hunter2") && !line.contains("s3cret"));
        assert!(Audit::audited("DELETE") && Audit::audited("POST") && !Audit::audited("GET"));
    }
}

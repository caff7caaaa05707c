//! The gateway's client to the management plane (ureq, blocking, rustls/ring): config
//! fetches with ETag and long poll, heartbeats, uploads. Trusts `config.service.ca` when
//! set (a private CA on an air-gapped site), Mozilla's roots otherwise. The token is read
//! from `config.service.auth` on every call, so a rotated `@file` takes effect at once.
//! Every call has a connect timeout of its own (`CONNECT_TIMEOUT`, a plane that does not
//! accept is noticed at once) and a response timeout: the long-poll wait plus
//! `config.service.integration.timeout` for config polls, the integration timeout for
//! the rest. Used by the plane caller threads (`caller`), never by the event loop.
//! Must not touch: the loop, the backup store.

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::GatewaySettings;

/// Largest config document accepted from the plane.
pub const MAX_DOCUMENT: u64 = 64 * 1024 * 1024;

/// Longest wait for the plane to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub enum Auth {
    Inline(String),
    File(PathBuf),
}

#[derive(Clone)]
pub struct PlaneClient {
    agent: ureq::Agent,
    endpoint: String,
    auth: Auth,
    /// `config.service.integration.timeout`: how long one answer may take.
    answer_timeout: Duration,
}

/// What a config fetch found.
pub enum Fetched {
    Document { text: String, etag: Option<String> },
    NotModified,
}

/// Why a call failed. `Unreachable` = no HTTP answer at all (offline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The token could not be read (`config.service.auth=@FILE`); nothing was sent.
    NoToken(String),
    Unreachable(String),
    Unauthorized(String),
    Status(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoToken(e) => f.write_str(e),
            CallError::Unreachable(e) => write!(f, "management plane unreachable: {e}"),
            CallError::Unauthorized(m) => write!(f, "token rejected by the management plane: {m}"),
            CallError::Status(s, m) => write!(f, "management plane answered {s}: {m}"),
        }
    }
}

/// The `message` of a JSON error body, or the body itself.
fn message_of(body: &str) -> String {
    match miniserde::json::from_str::<miniserde::json::Value>(body) {
        Ok(miniserde::json::Value::Object(o)) => match o.get("message") {
            Some(miniserde::json::Value::String(m)) => m.clone(),
            _ => body.chars().take(200).collect(),
        },
        _ => body.chars().take(200).collect(),
    }
}

impl PlaneClient {
    pub fn new(settings: &GatewaySettings) -> Result<PlaneClient, String> {
        let endpoint = settings
            .service_endpoint
            .clone()
            .ok_or("config.service.endpoint is not set")?;
        let auth = match settings.service_auth.as_ref().map(|s| s.0.as_str()) {
            Some(a) => match a.strip_prefix('@') {
                Some(path) => Auth::File(PathBuf::from(path)),
                None => Auth::Inline(a.to_string()),
            },
            None => {
                return Err("config.service.auth is required with config.service.endpoint".into())
            }
        };
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &settings.service_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read config.service.ca {}: {e}", ca.display()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!(
                    "config.service.ca {}: no certificate found",
                    ca.display()
                ));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT.min(settings.integration_timeout)))
            .timeout_resolve(Some(CONNECT_TIMEOUT.min(settings.integration_timeout)))
            .timeout_send_request(Some(settings.integration_timeout))
            .timeout_send_body(Some(settings.integration_timeout))
            .timeout_recv_response(Some(settings.integration_timeout))
            .timeout_recv_body(Some(settings.integration_timeout))
            .tls_config(tls.build())
            .user_agent(format!("edgegate/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(PlaneClient {
            agent: ureq::Agent::new_with_config(config),
            endpoint,
            auth,
            answer_timeout: settings.integration_timeout,
        })
    }

    /// The gateway id named in the token (`GatewayKey <id>&…`), read as `token` does.
    pub fn gateway_id(&self) -> Option<String> {
        let token = self.token().ok()?;
        crate::federation::token::parse(&token)
            .ok()
            .map(|t| t.gateway_id.to_string())
    }

    /// The `Authorization` value to present (re-read from the file each call).
    pub fn token(&self) -> Result<String, String> {
        match &self.auth {
            Auth::Inline(t) => Ok(t.clone()),
            Auth::File(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|e| {
                    format!(
                        "cannot read config.service.auth file {}: {e}",
                        path.display()
                    )
                }),
        }
    }

    /// `GET /gateway/config`, holding up to `wait` for a change when `etag` is known.
    pub fn fetch_config(&self, etag: Option<&str>, wait: Duration) -> Result<Fetched, CallError> {
        let token = self.token().map_err(CallError::NoToken)?;
        let url = format!(
            "{}{}?wait={}",
            self.endpoint,
            crate::federation::CONFIG_PATH,
            wait.as_secs()
        );
        let mut req = self
            .agent
            .get(&url)
            .config()
            .timeout_recv_response(Some(wait + self.answer_timeout))
            .build()
            .header("Authorization", &token);
        if let Some(tag) = etag {
            req = req.header("If-None-Match", &format!("\"{tag}\""));
        }
        let resp = req
            .call()
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().trim_matches('"').to_string());
        let body = resp
            .into_body()
            .into_with_config()
            .limit(MAX_DOCUMENT)
            .read_to_string()
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        match status {
            200 => Ok(Fetched::Document { text: body, etag }),
            304 => Ok(Fetched::NotModified),
            401 | 403 => Err(CallError::Unauthorized(message_of(&body))),
            s => Err(CallError::Status(s, message_of(&body))),
        }
    }

    /// `POST /gateway/heartbeat` with a JSON report.
    pub fn heartbeat(&self, report: &str) -> Result<(), CallError> {
        self.post(
            crate::federation::HEARTBEAT_PATH,
            "application/json",
            report,
            None,
            None,
        )
    }

    /// A heartbeat that gives up after `limit` in every phase (the last one, sent while
    /// the process stops).
    pub fn heartbeat_within(&self, report: &str, limit: Duration) -> Result<(), CallError> {
        self.post(
            crate::federation::HEARTBEAT_PATH,
            "application/json",
            report,
            None,
            Some(limit),
        )
    }

    /// `POST /gateway/telemetry`: NDJSON request records, and how many records were
    /// dropped before they could be sent (`X-Dropped-Records`).
    pub fn telemetry(&self, ndjson: &str, dropped: u64) -> Result<(), CallError> {
        self.post(
            crate::federation::TELEMETRY_PATH,
            "application/x-ndjson",
            ndjson,
            Some((crate::federation::DROPPED_HEADER, dropped.to_string())),
            None,
        )
    }

    /// `telemetry` giving up after `limit` in every phase (while the process stops).
    pub fn telemetry_within(
        &self,
        ndjson: &str,
        dropped: u64,
        limit: Duration,
    ) -> Result<(), CallError> {
        self.post(
            crate::federation::TELEMETRY_PATH,
            "application/x-ndjson",
            ndjson,
            Some((crate::federation::DROPPED_HEADER, dropped.to_string())),
            Some(limit),
        )
    }

    /// `POST /gateway/metrics`: the instance's cumulative metrics (Prometheus text).
    pub fn metrics(&self, instance_id: &str, text: &str) -> Result<(), CallError> {
        self.post(
            crate::federation::METRICS_PATH,
            "text/plain; version=0.0.4",
            text,
            Some((crate::federation::INSTANCE_HEADER, instance_id.to_string())),
            None,
        )
    }

    fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        header: Option<(&str, String)>,
        limit: Option<Duration>,
    ) -> Result<(), CallError> {
        let token = self.token().map_err(CallError::NoToken)?;
        let mut req = self.agent.post(&format!("{}{path}", self.endpoint));
        if let Some(limit) = limit {
            req = req
                .config()
                .timeout_connect(Some(limit))
                .timeout_send_body(Some(limit))
                .timeout_recv_response(Some(limit))
                .build();
        }
        let mut req = req.header("Authorization", &token);
        if let Some((name, value)) = header {
            req = req.header(name, &value);
        }
        let resp = req
            .content_type(content_type)
            .send(body)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = resp
            .into_body()
            .into_with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        match status {
            401 | 403 => Err(CallError::Unauthorized(message_of(&body))),
            s => Err(CallError::Status(s, message_of(&body))),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

//! The config pipeline: JSON text → `compile` (validate everything, with JSON paths) →
//! `Runtime`, an immutable value the event loop reads through an `Arc` and swaps whole.
//! A request keeps the `Arc` it started with, so a reload never changes a request in
//! flight. Backend addresses are resolved by `resolve`, which may block on DNS and so
//! runs only on the agent thread or before the loop starts — never on the loop.
//! Must not touch: sockets of the proxy, the loop's state, files (callers read them).

pub mod compile;
pub mod json;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::SystemTime;

use crate::route::{ApiTable, OpTable};

pub use compile::compile;

/// One problem in a config document, at a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Where the running config came from (status, heartbeat, backups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Local,
    Service,
    Backup,
}

impl ConfigSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigSource::Local => "local",
            ConfigSource::Service => "service",
            ConfigSource::Backup => "backup",
        }
    }
}

/// A backend origin: where to connect and what to call it.
#[derive(Debug, Clone)]
pub struct Backend {
    pub host: String,
    pub port: u16,
    /// The `Host` header value sent to the backend (`host` or `host:port`).
    pub authority: String,
    /// serviceUrl's path without a trailing '/'; may be empty.
    pub base_path: String,
    /// Filled by `resolve`; empty when the name did not resolve (requests get 502).
    pub addrs: Vec<SocketAddr>,
}

impl Backend {
    /// The host as an IP address, when it is one (no DNS needed).
    pub fn ip_literal(&self) -> Option<std::net::IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub method: String,
    pub url_template: String,
}

pub struct Api {
    pub id: String,
    /// Normalised: no leading or trailing '/'.
    pub path: String,
    pub hostnames: Vec<String>,
    pub http: bool,
    pub https: bool,
    pub subscription_required: bool,
    /// Lower-cased header name for the subscription key.
    pub key_header: String,
    pub key_query: String,
    pub backend: Backend,
    pub operations: Vec<Operation>,
    pub op_table: OpTable,
}

/// Everything the loop needs to serve one config version.
pub struct Runtime {
    pub version: String,
    pub source: ConfigSource,
    pub applied_at: SystemTime,
    pub apis: Vec<Api>,
    pub api_table: ApiTable,
}

impl Runtime {
    /// Resolves every backend host name with the system resolver. Blocking (DNS): agent
    /// thread or startup only. Returns the hosts that did not resolve (their requests get
    /// 502).
    pub fn resolve(&mut self) -> Vec<String> {
        self.resolve_with(|host, port| {
            (host, port)
                .to_socket_addrs()
                .map(|a| a.collect())
                .unwrap_or_default()
        })
    }

    /// `resolve` with a given resolver (each distinct host:port is asked once).
    pub fn resolve_with(&mut self, lookup: impl Fn(&str, u16) -> Vec<SocketAddr>) -> Vec<String> {
        let mut cache: Vec<(String, u16, Vec<SocketAddr>)> = Vec::new();
        let mut failed = Vec::new();
        for api in &mut self.apis {
            let b = &mut api.backend;
            if let Some(ip) = b.ip_literal() {
                b.addrs = vec![SocketAddr::new(ip, b.port)];
                continue;
            }
            if let Some((_, _, addrs)) = cache.iter().find(|(h, p, _)| *h == b.host && *p == b.port)
            {
                b.addrs = addrs.clone();
                continue;
            }
            let addrs = lookup(&b.host, b.port);
            if addrs.is_empty() && !failed.contains(&b.host) {
                failed.push(b.host.clone());
            }
            cache.push((b.host.clone(), b.port, addrs.clone()));
            b.addrs = addrs;
        }
        failed
    }

    /// Whether any backend is named by a host name (so DNS can change under it).
    pub fn uses_host_names(&self) -> bool {
        self.apis.iter().any(|a| a.backend.ip_literal().is_none())
    }

    /// The backend addresses of every API, in order.
    pub fn backend_addresses(&self) -> Vec<&[SocketAddr]> {
        self.apis
            .iter()
            .map(|a| a.backend.addrs.as_slice())
            .collect()
    }
}

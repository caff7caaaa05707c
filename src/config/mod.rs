//! The config pipeline: JSON text → `compile` (validate everything, with JSON paths) →
//! `Runtime`, an immutable value the event loop reads through an `Arc` and swaps whole.
//! A request keeps the `Arc` it started with, so a reload never changes a request in
//! flight. Backend addresses are resolved by `resolve`, which may block on DNS and so
//! runs only on the agent thread or before the loop starts — never on the loop.
//! Must not touch: sockets of the proxy, the loop's state, files (callers read them).

pub mod compile;
pub mod contract;
pub mod entities;
pub mod json;
pub mod pkcs12;
pub mod tls;
pub mod users;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::SystemTime;

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::Plan;
use crate::route::{ApiTable, OpTable, Template};

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
#[derive(Debug, Clone, Default)]
pub struct Backend {
    pub host: String,
    pub port: u16,
    /// The `Host` header value sent to the backend (`host` or `host:port`).
    pub authority: String,
    /// serviceUrl's path without a trailing '/'; may be empty.
    pub base_path: String,
    /// Filled by `resolve`; empty when the name did not resolve (requests get 502).
    pub addrs: Vec<SocketAddr>,
    /// `https://`: the name the backend's certificate must carry (and the SNI sent).
    /// Shared, so that a call and the connection pool take it without a copy.
    pub tls: Option<Arc<rustls_pki_types::ServerName<'static>>>,
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

/// One documented response of an operation (mock-response answers from its examples).
#[derive(Debug, Clone)]
pub struct ResponseExample {
    pub status: u16,
    /// (content type, example body)
    pub representations: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    /// `displayName`, when it differs from the id (`name()` reads either).
    pub display_name: Option<Box<str>>,
    /// The method, or `*`; the usual ones are static text (no allocation per operation).
    pub method: std::borrow::Cow<'static, str>,
    /// The `urlTemplate`, parsed (its text is `template.text()`).
    pub template: Template,
    pub responses: Vec<ResponseExample>,
    /// What the API's definition says of the operation (validate-* policies).
    pub contract: crate::policy::schema::Contract,
    /// The effective pipeline for calls without a product (first) and for each product
    /// that includes the API: (product index, plan). Plans are shared where equal.
    pub plans: Vec<(Option<u32>, Arc<Plan>)>,
}

impl Operation {
    /// The display name (the id when none was given).
    pub fn name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }

    /// `method` as static text when it is one of the usual ones.
    pub fn method_text(method: &str) -> std::borrow::Cow<'static, str> {
        const USUAL: [&str; 9] = [
            "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "*",
        ];
        match USUAL.iter().find(|m| **m == method) {
            Some(m) => std::borrow::Cow::Borrowed(m),
            None => std::borrow::Cow::Owned(method.to_string()),
        }
    }

    /// The plan for calls made under `product` (or none).
    pub fn plan(&self, product: Option<u32>) -> Option<&Arc<Plan>> {
        self.plans
            .iter()
            .find(|(p, _)| *p == product)
            .or(self.plans.first())
            .map(|(_, plan)| plan)
    }
}

/// A product: a set of APIs that subscriptions can be scoped to, with its own policies.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub apis: Vec<u32>,
    pub subscription_required: bool,
    pub published: bool,
    /// The groups it is visible to (indexes into `Runtime::groups`).
    pub groups: Vec<u32>,
}

/// A group of users (APIM's groups; the three system groups are always there).
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
}

/// A user: a developer account that subscriptions may belong to.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub note: Option<String>,
    /// Registration time, Unix seconds.
    pub registered: Option<u64>,
    /// (provider, id) pairs.
    pub identities: Vec<(String, String)>,
    /// Indexes into `Runtime::groups`; always holds developers.
    pub groups: Vec<u32>,
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionScope {
    AllApis,
    Api(u32),
    Product(u32),
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub name: String,
    pub scope: SubscriptionScope,
    /// Active, and its owner (if any) too.
    pub active: bool,
    /// The user it belongs to (an index into `Runtime::users`).
    pub owner: Option<u32>,
    /// `context.Subscription.PrimaryKey` / `SecondaryKey`.
    pub primary_key: Option<Box<str>>,
    pub secondary_key: Option<Box<str>>,
}

pub struct Api {
    pub id: String,
    pub name: String,
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
    /// The API's schemas (`schemas`), compiled.
    pub schemas: Arc<crate::policy::schema::SchemaSet>,
    /// Products that include this API.
    pub products: Vec<u32>,
    /// The published product without subscription requirement that includes this API,
    /// if any: its policies apply to calls made without a key.
    pub open_product: Option<u32>,
}

/// Everything the loop needs to serve one config version.
pub struct Runtime {
    pub version: String,
    pub source: ConfigSource,
    pub applied_at: SystemTime,
    pub apis: Vec<Api>,
    pub api_table: ApiTable,
    pub products: Vec<Product>,
    pub subscriptions: Vec<Subscription>,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// Subscription key → subscription index (primary and secondary keys alike).
    pub keys: HashMap<Box<str>, u32>,
    /// Named backends and the literal base-urls of set-backend-service policies.
    pub backends: Vec<Backend>,
    /// A named backend's index in `backends` by its id (set-backend-service with a
    /// computed backend-id).
    pub backend_ids: HashMap<String, u32>,
    /// Whether any operation has a non-trivial plan (policies are in use).
    pub policies: bool,
    /// The HTTPS listener's TLS, when the document has `certificates`.
    pub tls: Option<Arc<tls::ListenerTls>>,
    /// The document's certificates with their keys (authentication-certificate).
    pub client_keys: Vec<Arc<tls::ClientKey>>,
    /// The CA certificates client certificates are checked against.
    pub client_trust: Option<Arc<tls::ClientTrust>>,
    /// How `https://` backends are checked, when the document has any (set by the agent
    /// with `attach_backend_tls`).
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    /// What a request that matches no API runs: an API without a path or backend whose
    /// one operation carries the global plan, when that has an on-error section.
    pub unmatched: Option<Box<Api>>,
    /// What each policy document refers to, as the compiler resolved it.
    pub references: References,
    /// The query parameters that carry keys or tokens, redacted wherever a URL is logged.
    pub redaction: crate::telemetry::Redaction,
}

/// What each policy document of a config refers to, keyed by its owner ("global",
/// "product:{id}", "api:{id}", "operation:{api}/{op}"). The management plane builds a
/// gateway's document and refuses deletions from it, so both agree with the compiler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub by_owner: std::collections::BTreeMap<String, crate::policy::parse::Uses>,
}

impl References {
    /// Every named value any document uses.
    pub fn named_values(&self) -> impl Iterator<Item = &str> {
        self.by_owner
            .values()
            .flat_map(|u| u.named_values.iter().map(String::as_str))
    }
    /// Every backend id any document uses.
    pub fn backends(&self) -> impl Iterator<Item = &str> {
        self.by_owner
            .values()
            .flat_map(|u| u.backends.iter().map(String::as_str))
    }
    /// Every OpenID configuration whose keys a policy checks tokens with (sorted, once
    /// each).
    pub fn openid_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .by_owner
            .values()
            .flat_map(|u| u.openid.iter().cloned())
            .collect();
        urls.sort_unstable();
        urls.dedup();
        urls
    }
    /// Every resource the gateway's identity gets tokens for (sorted, once each).
    pub fn identity_resources(&self) -> Vec<String> {
        let mut r: Vec<String> = self
            .by_owner
            .values()
            .flat_map(|u| u.identities.iter().cloned())
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    }
    /// Every query parameter a policy reads a token from.
    pub fn token_query_params(&self) -> impl Iterator<Item = &str> {
        self.by_owner
            .values()
            .flat_map(|u| u.token_query_params.iter().map(String::as_str))
    }
}

/// The API index that names `Runtime::unmatched`.
pub const UNMATCHED_API: u32 = u32::MAX;

impl Api {
    /// The stand-in for requests that match no API (ids and names empty).
    pub fn unmatched(plan: Arc<Plan>) -> Api {
        Api {
            id: String::new(),
            name: String::new(),
            path: String::new(),
            hostnames: Vec::new(),
            http: true,
            https: true,
            subscription_required: false,
            key_header: String::new(),
            key_query: String::new(),
            backend: Backend::default(),
            operations: vec![Operation {
                id: String::new(),
                display_name: None,
                method: std::borrow::Cow::Borrowed(""),
                template: Template::default(),
                responses: Vec::new(),
                contract: Default::default(),
                plans: vec![(None, plan)],
            }],
            op_table: OpTable::default(),
            schemas: Arc::default(),
            products: Vec::new(),
            open_product: None,
        }
    }
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
        let all = self
            .apis
            .iter_mut()
            .map(|a| &mut a.backend)
            .chain(self.backends.iter_mut());
        for b in all {
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
    /// Gives the runtime the client config for its `https://` backends, if it has any
    /// (built the first time; reads `net.backend.tls.ca`): agent only.
    pub fn attach_backend_tls(&mut self) -> Result<(), String> {
        // policies may call https:// URLs themselves (send-request)
        let any = self.apis.iter().any(|a| a.backend.tls.is_some())
            || self.backends.iter().any(|b| b.tls.is_some())
            || self.policies;
        if any {
            self.backend_tls = Some(tls::backend_client_config()?);
        }
        if self.policies {
            for key in &self.client_keys {
                key.attach()?;
            }
        }
        Ok(())
    }

    /// An address the agent resolved for `host` (a backend's or a policy's), if any.
    pub fn known_address(&self, host: &str) -> Option<std::net::IpAddr> {
        self.apis
            .iter()
            .map(|a| &a.backend)
            .chain(self.backends.iter())
            .filter(|b| b.host.eq_ignore_ascii_case(host))
            .find_map(|b| b.addrs.first())
            .map(SocketAddr::ip)
    }

    pub fn uses_host_names(&self) -> bool {
        self.apis.iter().any(|a| a.backend.ip_literal().is_none())
            || self.backends.iter().any(|b| b.ip_literal().is_none())
    }

    /// The backend addresses of every API, in order.
    pub fn backend_addresses(&self) -> Vec<&[SocketAddr]> {
        self.apis
            .iter()
            .map(|a| a.backend.addrs.as_slice())
            .chain(self.backends.iter().map(|b| b.addrs.as_slice()))
            .collect()
    }
}

//! Gateway settings: built-in defaults < settings file < environment < `--set` flags
//! (the README's Settings tables). Owns key names, value syntax (durations, sizes, addresses) and the
//! error that names the offending key. Pure: the caller passes file text and the
//! environment in, so it is tested without touching the process.
//! Must not touch: sockets, the config document, logging setup.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where request log records and events go on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    None,
    Text,
    Json,
}

/// Local metrics exposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalMetrics {
    None,
    Prometheus,
}

/// Which labels request metrics carry (`telemetry.metrics.labels`), besides the status
/// class and error reason. Each one multiplies the series; all stay within `MAX_SERIES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSet {
    pub api: bool,
    pub operation: bool,
    pub product: bool,
    pub subscription: bool,
}

impl Default for LabelSet {
    fn default() -> Self {
        LabelSet {
            api: true,
            operation: true,
            product: false,
            subscription: false,
        }
    }
}

/// Label names in key order.
/// Defaults of `limits.expressions.steps.max` and `limits.expressions.memory.max`:
/// what policy expressions may spend per request.
pub const EXPRESSION_STEPS_DEFAULT: u64 = 200_000;
pub const EXPRESSION_MEMORY_DEFAULT: u64 = 16 * 1024 * 1024;
/// Default of `net.azure-ad.authority`: Microsoft's global cloud.
pub const AZURE_AD_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Default of `cache.memory.max`: the built-in cache's byte budget.
pub const CACHE_MEMORY_DEFAULT: usize = 32 * 1024 * 1024;

pub const LABELS: [&str; 4] = ["api", "operation", "product", "subscription"];

impl LabelSet {
    /// `api,operation,product,subscription` (any of them, comma separated; `none`).
    pub fn parse(text: &str) -> Option<LabelSet> {
        let mut set = LabelSet {
            api: false,
            operation: false,
            product: false,
            subscription: false,
        };
        if text.trim() == "none" {
            return Some(set);
        }
        for name in text.split(',').map(str::trim) {
            match name {
                "api" => set.api = true,
                "operation" => set.operation = true,
                "product" => set.product = true,
                "subscription" => set.subscription = true,
                _ => return None,
            }
        }
        Some(set)
    }

    pub fn enabled(self) -> [bool; 4] {
        [self.api, self.operation, self.product, self.subscription]
    }
}

/// Everything `edgegate gateway` can be told. Field names follow the setting keys.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    pub service_endpoint: Option<String>,
    /// Secret: never printed (see the `Debug` caveat on [`Secret`]).
    pub service_auth: Option<Secret>,
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    pub integration_timeout: Duration,
    pub service_ca: Option<PathBuf>,
    /// PEM CA certificates trusted for `https://` backends, besides the bundled roots.
    pub backend_ca: Option<PathBuf>,
    /// Where validate-azure-ad-token finds a tenant's OpenID configuration
    /// (`net.azure-ad.authority`; a sovereign cloud's, or a local stand-in).
    pub azure_ad_authority: String,
    pub local_path: Option<PathBuf>,
    pub backup_enabled: bool,
    pub backup_path: PathBuf,
    pub backup_versions: u32,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    pub forwarded_proto_enabled: bool,
    pub logs_std: LogFormat,
    pub log_level: log::LevelFilter,
    pub metrics_local: LocalMetrics,
    pub prometheus_listen: SocketAddr,
    pub metrics_cloud: bool,
    pub head_max: usize,
    /// 0 = no limit.
    pub body_max: u64,
    pub client_header_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub backend_connect_timeout: Duration,
    pub backend_response_timeout: Duration,
    pub connections_max: usize,
    pub shutdown_timeout: Duration,
    /// Byte budget of the loop's buffer pool; when spent, new requests get 503.
    pub buffers_max: usize,
    /// What policy expressions may spend per request: steps and bytes
    /// (`limits.expressions.*`).
    pub expression_steps_max: u64,
    pub expression_memory_max: u64,
    /// Bytes the built-in cache may hold (`cache.memory.max`; 0 turns it off).
    pub cache_memory_max: usize,
    /// The external cache (`cache.external.url`, redis://…).
    pub cache_external: Option<RedisUrl>,
    /// Rate limits count in the external cache, shared by every gateway using it
    /// (`limits.counters.external`).
    pub counters_external: bool,
    /// The gateway's own identity (authentication-managed-identity): an OAuth 2.0
    /// client that gets tokens with the client-credentials flow.
    pub identity: Identity,
    /// Which labels request metrics carry.
    pub metrics_labels: LabelSet,
}

/// A value that must never reach a log line; `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every key `edgegate gateway` accepts, in the README's order.
pub const GATEWAY_KEYS: &[&str] = &[
    "config.service.endpoint",
    "config.service.auth",
    "config.service.poll.interval",
    "config.service.heartbeat.interval",
    "config.service.integration.timeout",
    "config.service.ca",
    "config.local.path",
    "config.backup.enabled",
    "config.backup.path",
    "config.backup.versions",
    "net.server.http.listen",
    "net.server.https.listen",
    "net.server.http.forwarded.proto.enabled",
    "net.backend.tls.ca",
    "net.azure-ad.authority",
    "telemetry.logs.std",
    "telemetry.logs.std.level",
    "telemetry.metrics.local",
    "telemetry.metrics.local.prometheus.listen",
    "telemetry.metrics.cloud",
    "telemetry.metrics.labels",
    "limits.request.head.max",
    "limits.request.body.max",
    "limits.client.header.timeout",
    "limits.client.idle.timeout",
    "limits.backend.connect.timeout",
    "limits.backend.response.timeout",
    "limits.connections.max",
    "limits.shutdown.timeout",
    "limits.buffers.max",
    "limits.expressions.steps.max",
    "limits.expressions.memory.max",
    "cache.memory.max",
    "cache.external.url",
    "limits.counters.external",
    "identity.token.url",
    "identity.tenant",
    "identity.client.id",
    "identity.client.secret",
    "identity.client.assertion.file",
    "identity.client.certificate",
    "identity.client.key",
];

/// Keys of `edgegate manage`; a gateway ignores them in the environment.
pub const MANAGE_KEYS: &[&str] = &[
    "manage.listen",
    "manage.db.path",
    "manage.admin.token",
    "manage.tls.cert",
    "manage.tls.key",
    "manage.listen.insecure",
    "manage.instances.prune.after",
    "manage.audit.path",
    "manage.portal.gateway.url",
    "manage.portal.url",
    "manage.portal.oidc.issuer",
    "manage.portal.oidc.client.id",
    "manage.portal.oidc.client.secret",
];

/// The gateway's OAuth 2.0 client identity (`identity.*`).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The token endpoint (`identity.token.url`), or an Entra tenant's
    /// (`identity.tenant` at `net.azure-ad.authority`).
    pub token_url: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    /// Inline, or `@/path/file` read at each fetch (a rotated file takes effect).
    pub client_secret: Option<Secret>,
    /// A client assertion read from this file at each fetch (a workload identity's
    /// federated token, as Azure's `AZURE_FEDERATED_TOKEN_FILE`).
    pub client_assertion_file: Option<PathBuf>,
    /// A certificate (PEM) and its private key (PEM) that sign a client assertion.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Identity {
    /// The token endpoint, if one is configured.
    pub fn endpoint(&self, authority: &str) -> Option<String> {
        match (&self.token_url, &self.tenant) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(t)) => Some(format!("{authority}/{t}/oauth2/v2.0/token")),
            (None, None) => None,
        }
    }
}

/// Where the external cache is: `redis://[[user]:password@]host[:port][/db]`, or
/// `rediss://…` for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://`: TLS, checked with the backends' trust (Mozilla's roots and
    /// `net.backend.tls.ca`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err("expected redis[s]://[:password@]host[:port][/db]".into()),
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => {
                (h, d.parse().map_err(|_| "the database must be a number")?)
            }
            Some((h, _)) => (h, 0),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => (h, p.parse().map_err(|_| "bad port")?),
            _ => (hostport, 6379),
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some(("", p)) => (None, Some(Secret(p.to_string()))),
                Some((u, p)) => (Some(u.to_string()), Some(Secret(p.to_string()))),
                None => (None, Some(Secret(a.to_string()))),
            },
        };
        Ok(RedisUrl {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            user,
            password,
            db,
        })
    }
}

/// A setting that could not be applied. Display is the one line the user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingError {
    UnknownKey {
        key: String,
        origin: String,
    },
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
        origin: String,
    },
    BadLine {
        line: usize,
        origin: String,
    },
    Unreadable {
        path: String,
        reason: String,
    },
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingError::UnknownKey { key, origin } => {
                write!(f, "unknown setting '{key}' ({origin})")
            }
            SettingError::BadValue {
                key,
                value,
                expected,
                origin,
            } => {
                write!(
                    f,
                    "setting '{key}' ({origin}): invalid value '{value}', expected {expected}"
                )
            }
            SettingError::BadLine { line, origin } => {
                write!(f, "{origin} line {line}: expected 'key = value'")
            }
            SettingError::Unreadable { path, reason } => {
                write!(f, "cannot read settings file {path}: {reason}")
            }
        }
    }
}

impl std::error::Error for SettingError {}

fn default_backup_path(is_root: bool) -> PathBuf {
    if is_root {
        PathBuf::from("/var/lib/edgegate/backup.db")
    } else {
        PathBuf::from("./edgegate-backup.db")
    }
}

impl GatewaySettings {
    /// The built-in defaults (the README's Settings table).
    pub fn defaults(is_root: bool) -> Self {
        GatewaySettings {
            service_endpoint: None,
            service_auth: None,
            poll_interval: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(60),
            integration_timeout: Duration::from_secs(100),
            service_ca: None,
            backend_ca: None,
            azure_ad_authority: AZURE_AD_AUTHORITY.to_string(),
            local_path: None,
            backup_enabled: true,
            backup_path: default_backup_path(is_root),
            backup_versions: 10,
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            https_listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            forwarded_proto_enabled: false,
            logs_std: LogFormat::Text,
            log_level: log::LevelFilter::Info,
            metrics_local: LocalMetrics::None,
            prometheus_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            metrics_cloud: true,
            head_max: 32 * 1024,
            body_max: 0,
            client_header_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(60),
            backend_connect_timeout: Duration::from_secs(5),
            backend_response_timeout: Duration::from_secs(300),
            connections_max: 10_000,
            shutdown_timeout: Duration::from_secs(30),
            buffers_max: 128 << 20,
            expression_steps_max: EXPRESSION_STEPS_DEFAULT,
            expression_memory_max: EXPRESSION_MEMORY_DEFAULT,
            cache_memory_max: CACHE_MEMORY_DEFAULT,
            cache_external: None,
            counters_external: false,
            identity: Identity::default(),
            metrics_labels: LabelSet::default(),
        }
    }

    /// Applies one `key = value`. `origin` says where it came from, for the error line.
    pub fn apply(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SettingError> {
        let value = value.trim();
        let bad =
            |expected: &'static str| bad_value(key, value, "config.service.auth", expected, origin);
        match key {
            "config.service.endpoint" => {
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(bad("an http:// or https:// URL"));
                }
                self.service_endpoint = Some(value.trim_end_matches('/').to_string());
            }
            "config.service.auth" => {
                if value.is_empty() {
                    return Err(bad("'GatewayKey …' or '@/path/file'"));
                }
                self.service_auth = Some(Secret(value.to_string()));
            }
            "config.service.poll.interval" => {
                self.poll_interval = parse_duration(value).ok_or_else(|| bad(DURATION))?
            }
            "config.service.heartbeat.interval" => {
                self.heartbeat_interval = parse_duration(value).ok_or_else(|| bad(DURATION))?
            }
            "config.service.integration.timeout" => {
                self.integration_timeout = parse_duration(value).ok_or_else(|| bad(DURATION))?
            }
            "config.service.ca" => {
                self.service_ca = Some(parse_path(value).ok_or_else(|| bad(PATH))?)
            }
            "net.backend.tls.ca" => {
                self.backend_ca = Some(parse_path(value).ok_or_else(|| bad(PATH))?)
            }
            "cache.external.url" => {
                self.cache_external = Some(
                    RedisUrl::parse(value)
                        .map_err(|_| bad("redis[s]://[[user]:password@]host[:port][/db]"))?,
                );
            }
            "limits.counters.external" => {
                self.counters_external = parse_bool(value).ok_or_else(|| bad(BOOL))?
            }
            _ if key.starts_with("identity.") => return self.apply_identity(key, value, origin),
            "net.azure-ad.authority" => {
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(bad("an http:// or https:// URL"));
                }
                self.azure_ad_authority = value.trim_end_matches('/').to_string();
            }
            "config.local.path" => {
                self.local_path = Some(parse_path(value).ok_or_else(|| bad(PATH))?)
            }
            "config.backup.enabled" => {
                self.backup_enabled = parse_bool(value).ok_or_else(|| bad(BOOL))?
            }
            "config.backup.path" => {
                self.backup_path = parse_path(value).ok_or_else(|| bad(PATH))?
            }
            "config.backup.versions" => {
                self.backup_versions = value
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("a whole number ≥ 1"))?
            }
            "net.server.http.listen" => self.http_listen = value.parse().map_err(|_| bad(ADDR))?,
            "net.server.https.listen" => {
                self.https_listen = value.parse().map_err(|_| bad(ADDR))?
            }
            "net.server.http.forwarded.proto.enabled" => {
                self.forwarded_proto_enabled = parse_bool(value).ok_or_else(|| bad(BOOL))?
            }
            "telemetry.logs.std" => {
                self.logs_std = match value {
                    "none" => LogFormat::None,
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(bad("none, text or json")),
                }
            }
            "telemetry.logs.std.level" => {
                self.log_level = match value {
                    "debug" => log::LevelFilter::Debug,
                    "info" => log::LevelFilter::Info,
                    "warn" => log::LevelFilter::Warn,
                    "error" => log::LevelFilter::Error,
                    _ => return Err(bad("debug, info, warn or error")),
                }
            }
            "telemetry.metrics.local" => {
                self.metrics_local = match value {
                    "none" => LocalMetrics::None,
                    "prometheus" => LocalMetrics::Prometheus,
                    _ => return Err(bad("none or prometheus")),
                }
            }
            "telemetry.metrics.local.prometheus.listen" => {
                self.prometheus_listen = value.parse().map_err(|_| bad(ADDR))?
            }
            "telemetry.metrics.cloud" => {
                self.metrics_cloud = parse_bool(value).ok_or_else(|| bad(BOOL))?
            }
            "telemetry.metrics.labels" => {
                self.metrics_labels = LabelSet::parse(value).ok_or_else(|| {
                    bad("a list of api, operation, product, subscription (or none)")
                })?
            }
            _ if key.starts_with("limits.") || key.starts_with("cache.") => {
                return self.apply_limit(key, value, origin)
            }
            _ => {
                return Err(SettingError::UnknownKey {
                    key: key.to_string(),
                    origin: origin.to_string(),
                })
            }
        }
        Ok(())
    }

    /// The `identity.*` keys: the gateway's OAuth 2.0 client.
    fn apply_identity(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SettingError> {
        let bad = |expected: &'static str| {
            bad_value(key, value, "identity.client.secret", expected, origin)
        };
        match key {
            "identity.token.url" => {
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(bad("an http:// or https:// URL"));
                }
                self.identity.token_url = Some(value.to_string());
            }
            "identity.tenant" => {
                if value.is_empty()
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(bad("a tenant id or domain"));
                }
                self.identity.tenant = Some(value.to_string());
            }
            "identity.client.id" => {
                if value.is_empty() {
                    return Err(bad("a client id"));
                }
                self.identity.client_id = Some(value.to_string());
            }
            "identity.client.secret" => {
                if value.is_empty() {
                    return Err(bad("a secret or '@/path/file'"));
                }
                self.identity.client_secret = Some(Secret(value.to_string()));
            }
            "identity.client.assertion.file" => {
                self.identity.client_assertion_file =
                    Some(parse_path(value).ok_or_else(|| bad(PATH))?);
            }
            "identity.client.certificate" => {
                self.identity.client_certificate =
                    Some(parse_path(value).ok_or_else(|| bad(PATH))?);
            }
            "identity.client.key" => {
                self.identity.client_key = Some(parse_path(value).ok_or_else(|| bad(PATH))?);
            }
            _ => {
                return Err(SettingError::UnknownKey {
                    key: key.to_string(),
                    origin: origin.to_string(),
                })
            }
        }
        Ok(())
    }

    /// The `limits.*` and `cache.*` keys.
    fn apply_limit(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SettingError> {
        let bad =
            |expected: &'static str| bad_value(key, value, "config.service.auth", expected, origin);
        match key {
            "limits.request.head.max" => {
                self.head_max = parse_size(value)
                    .filter(|n| (1024..=1024 * 1024).contains(n))
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| bad("a size from 1KiB to 1MiB"))?
            }
            "limits.expressions.steps.max" => {
                self.expression_steps_max = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1000..=100_000_000).contains(n))
                    .ok_or_else(|| bad("a number of steps from 1000 to 100000000"))?
            }
            "limits.expressions.memory.max" => {
                self.expression_memory_max = parse_size(value)
                    .filter(|n| (64 * 1024..=1024 * 1024 * 1024).contains(n))
                    .ok_or_else(|| bad("a size from 64KiB to 1GiB"))?
            }
            "cache.memory.max" => {
                self.cache_memory_max = parse_size(value)
                    .filter(|n| *n <= 64 * 1024 * 1024 * 1024)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| bad("a size up to 64GiB (0 turns the cache off)"))?
            }
            "limits.request.body.max" => {
                self.body_max = parse_size(value).ok_or_else(|| bad(SIZE))?
            }
            "limits.client.header.timeout" => {
                self.client_header_timeout = parse_duration(value)
                    .filter(nonzero)
                    .ok_or_else(|| bad(DURATION))?
            }
            "limits.client.idle.timeout" => {
                self.client_idle_timeout = parse_duration(value)
                    .filter(nonzero)
                    .ok_or_else(|| bad(DURATION))?
            }
            "limits.backend.connect.timeout" => {
                self.backend_connect_timeout = parse_duration(value)
                    .filter(nonzero)
                    .ok_or_else(|| bad(DURATION))?
            }
            "limits.backend.response.timeout" => {
                self.backend_response_timeout = parse_duration(value)
                    .filter(nonzero)
                    .ok_or_else(|| bad(DURATION))?
            }
            "limits.connections.max" => {
                self.connections_max = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| bad("a whole number from 1 to 1000000"))?
            }
            "limits.shutdown.timeout" => {
                self.shutdown_timeout = parse_duration(value).ok_or_else(|| bad(DURATION))?
            }
            "limits.buffers.max" => {
                // at least what one request with the largest head needs
                let floor = (self.head_max + 64 * 1024) as u64;
                self.buffers_max = parse_size(value)
                    .filter(|n| *n >= floor)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        bad("a size of at least limits.request.head.max + 64KiB, such as 128MiB")
                    })?
            }
            _ => {
                return Err(SettingError::UnknownKey {
                    key: key.to_string(),
                    origin: origin.to_string(),
                })
            }
        }
        Ok(())
    }
}

/// The layering shared by `gateway` and `manage`: `key = value` files, then `EDGEGATE_*`
/// variables, then flags, each through `apply`.
pub trait Layered {
    /// The keys this command owns.
    const KEYS: &'static [&'static str];
    /// Keys of the other command: ignored in the environment (both may share one).
    const OTHER_KEYS: &'static [&'static str];

    fn apply(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SettingError>;

    /// Applies a settings file's text: `key = value` lines, `#` comments, blank lines.
    fn apply_file_text(&mut self, text: &str, origin: &str) -> Result<(), SettingError> {
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or(SettingError::BadLine {
                line: index + 1,
                origin: origin.to_string(),
            })?;
            self.apply(key.trim(), value, &format!("{origin} line {}", index + 1))?;
        }
        Ok(())
    }

    /// Applies `EDGEGATE_*` variables. A variable that matches no key of either command
    /// is an error that names it, so a typo never goes unnoticed.
    fn apply_env<'a>(
        &mut self,
        vars: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), SettingError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if let Some(key) = Self::KEYS.iter().find(|k| env_suffix(k) == rest) {
                self.apply(key, value, &format!("environment {name}"))?;
            } else if !Self::OTHER_KEYS.iter().any(|k| env_suffix(k) == rest) {
                return Err(SettingError::UnknownKey {
                    key: name.to_string(),
                    origin: "environment".into(),
                });
            }
        }
        Ok(())
    }
}

impl Layered for GatewaySettings {
    const KEYS: &'static [&'static str] = GATEWAY_KEYS;
    const OTHER_KEYS: &'static [&'static str] = MANAGE_KEYS;
    fn apply(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SettingError> {
        GatewaySettings::apply(self, key, value, origin)
    }
}

/// Everything `edgegate manage` can be told.
#[derive(Clone, Debug)]
pub struct ManageSettings {
    pub listen: SocketAddr,
    pub db_path: PathBuf,
    /// The admin bearer token, or `@/path` to a file holding it. Secret.
    pub admin_token: Option<Secret>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Allow a listener other than loopback without TLS (tokens and keys then cross
    /// the network in clear text).
    pub listen_insecure: bool,
    /// Gateway instances not heard from for this long are forgotten (with their metrics).
    pub instances_prune_after: Duration,
    /// A file the audit trail is appended to (it always goes to the log too).
    pub audit_path: Option<PathBuf>,
    /// The gateway the developer portal's try-it console relays calls to.
    pub portal_gateway_url: Option<String>,
    /// The portal's public base URL (OpenID Connect redirects); else from `Host`.
    pub portal_url: Option<String>,
    /// OpenID Connect sign-in: the provider's issuer URL, this client's id and secret.
    pub portal_oidc_issuer: Option<String>,
    pub portal_oidc_client_id: Option<String>,
    pub portal_oidc_client_secret: Option<Secret>,
}

impl ManageSettings {
    pub fn defaults(is_root: bool) -> Self {
        ManageSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            db_path: if is_root {
                PathBuf::from("/var/lib/edgegate/manage.db")
            } else {
                PathBuf::from("./edgegate-manage.db")
            },
            admin_token: None,
            tls_cert: None,
            tls_key: None,
            listen_insecure: false,
            instances_prune_after: Duration::from_secs(7 * 86_400),
            audit_path: None,
            portal_gateway_url: None,
            portal_url: None,
            portal_oidc_issuer: None,
            portal_oidc_client_id: None,
            portal_oidc_client_secret: None,
        }
    }
}

impl Layered for ManageSettings {
    const KEYS: &'static [&'static str] = MANAGE_KEYS;
    const OTHER_KEYS: &'static [&'static str] = GATEWAY_KEYS;
    fn apply(&mut self, key: &str, value: &str, origin: &str) -> Result<(), SettingError> {
        let value = value.trim();
        let bad =
            |expected: &'static str| bad_value(key, value, "manage.admin.token", expected, origin);
        match key {
            "manage.listen" => self.listen = value.parse().map_err(|_| bad(ADDR))?,
            "manage.db.path" => self.db_path = parse_path(value).ok_or_else(|| bad(PATH))?,
            "manage.admin.token" => {
                if value.len() < 16 && !value.starts_with('@') {
                    return Err(bad("a token of at least 16 characters, or @/path/file"));
                }
                self.admin_token = Some(Secret(value.to_string()));
            }
            "manage.tls.cert" => self.tls_cert = Some(parse_path(value).ok_or_else(|| bad(PATH))?),
            "manage.tls.key" => self.tls_key = Some(parse_path(value).ok_or_else(|| bad(PATH))?),
            "manage.listen.insecure" => {
                self.listen_insecure = parse_bool(value).ok_or_else(|| bad(BOOL))?
            }
            "manage.instances.prune.after" => {
                self.instances_prune_after = parse_duration(value)
                    .filter(nonzero)
                    .ok_or_else(|| bad(DURATION))?
            }
            "manage.audit.path" => {
                self.audit_path = Some(parse_path(value).ok_or_else(|| bad(PATH))?)
            }
            "manage.portal.gateway.url" | "manage.portal.url" | "manage.portal.oidc.issuer" => {
                let ok = (value.starts_with("http://") || value.starts_with("https://"))
                    && !value.contains(['?', '#', ' ']);
                if !ok {
                    return Err(bad("an http:// or https:// base URL without query"));
                }
                let url = Some(value.trim_end_matches('/').to_string());
                match key {
                    "manage.portal.gateway.url" => self.portal_gateway_url = url,
                    "manage.portal.url" => self.portal_url = url,
                    _ => self.portal_oidc_issuer = url,
                }
            }
            "manage.portal.oidc.client.id" => {
                if value.is_empty() {
                    return Err(bad("a client id"));
                }
                self.portal_oidc_client_id = Some(value.to_string());
            }
            "manage.portal.oidc.client.secret" => {
                if value.is_empty() {
                    return Err(bad("a client secret, or @/path/file"));
                }
                self.portal_oidc_client_secret = Some(Secret(value.to_string()));
            }
            _ => {
                return Err(SettingError::UnknownKey {
                    key: key.to_string(),
                    origin: origin.to_string(),
                })
            }
        }
        Ok(())
    }
}

const DURATION: &str = "a duration such as 500ms, 10s or 5m";
const SIZE: &str = "a size such as 512, 32KiB or 1MiB";
const BOOL: &str = "true or false";
const ADDR: &str = "an address such as 0.0.0.0:8080";
const PATH: &str = "a file path";
pub const ENV_PREFIX: &str = "EDGEGATE_";

fn nonzero(d: &Duration) -> bool {
    !d.is_zero()
}

/// The error for a value that does not parse; the value of `secret_key` is masked.
fn bad_value(
    key: &str,
    value: &str,
    secret_key: &str,
    expected: &'static str,
    origin: &str,
) -> SettingError {
    SettingError::BadValue {
        key: key.to_string(),
        value: if key == secret_key {
            "***".into()
        } else {
            value.to_string()
        },
        expected,
        origin: origin.to_string(),
    }
}

/// `config.service.poll.interval` → `CONFIG_SERVICE_POLL_INTERVAL`.
pub fn env_suffix(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c == '.' || c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

fn parse_path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `500ms`, `10s`, `5m`, `1h`. A unit is required.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// `512`, `32KiB`, `1MiB`, `2GiB` (binary units).
pub fn parse_size(value: &str) -> Option<u64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("32KiB"), Some(32768));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("1kb"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn layering_file_then_env_then_flag() {
        let mut s = GatewaySettings::defaults(false);
        s.apply_file_text(
            "# c\nlimits.client.idle.timeout = 5s\n\nnet.server.http.listen=127.0.0.1:1\n",
            "f",
        )
        .unwrap();
        assert_eq!(s.client_idle_timeout, Duration::from_secs(5));
        s.apply_env(
            [
                ("EDGEGATE_LIMITS_CLIENT_IDLE_TIMEOUT", "7s"),
                ("PATH", "/bin"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(s.client_idle_timeout, Duration::from_secs(7));
        s.apply("limits.client.idle.timeout", "9s", "--set")
            .unwrap();
        assert_eq!(s.client_idle_timeout, Duration::from_secs(9));
        assert_eq!(s.http_listen, "127.0.0.1:1".parse().unwrap());
    }

    #[test]
    fn errors_name_the_key() {
        let mut s = GatewaySettings::defaults(false);
        let e = s.apply("limits.nope", "1", "--set").unwrap_err();
        assert_eq!(e.to_string(), "unknown setting 'limits.nope' (--set)");
        let e = s
            .apply("limits.client.idle.timeout", "ten", "--set")
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("setting 'limits.client.idle.timeout' (--set): invalid value 'ten'"));
        let e = s
            .apply_env([("EDGEGATE_LIMITS_NOPE", "1")].into_iter())
            .unwrap_err();
        assert!(e.to_string().contains("EDGEGATE_LIMITS_NOPE"));
        assert!(s
            .apply_env([("EDGEGATE_MANAGE_ADMIN_TOKEN", "x")].into_iter())
            .is_ok());
        let e = s.apply_file_text("garbage\n", "s.conf").unwrap_err();
        assert_eq!(e.to_string(), "s.conf line 1: expected 'key = value'");
        let e = s.apply("config.service.auth", "", "--set").unwrap_err();
        assert!(!e.to_string().contains("GatewayKey x"));
    }

    /// Every key the tables list is accepted with a value of its kind (a key listed
    /// but not handled would be "unknown" to the user).
    #[test]
    fn expression_budgets_have_bounds() {
        let mut s = GatewaySettings::defaults(false);
        assert_eq!(s.expression_steps_max, 200_000);
        assert_eq!(s.expression_memory_max, 16 << 20);
        s.apply("limits.expressions.steps.max", "5000", "--set")
            .unwrap();
        s.apply("limits.expressions.memory.max", "1MiB", "--set")
            .unwrap();
        assert_eq!(
            (s.expression_steps_max, s.expression_memory_max),
            (5000, 1 << 20)
        );
        for (key, value) in [
            ("limits.expressions.steps.max", "10"),
            ("limits.expressions.steps.max", "lots"),
            ("limits.expressions.memory.max", "1KiB"),
        ] {
            let e = s.apply(key, value, "--set").unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn every_listed_key_is_handled() {
        let sample = |key: &str| match key {
            k if k.ends_with(".endpoint") => "http://127.0.0.1:7070",
            k if k.ends_with(".auth") => "GatewayKey g&209901010000&c2ln",
            k if k.ends_with("interval") || k.ends_with("timeout") || k.ends_with(".after") => {
                "10s"
            }
            k if k.ends_with(".enabled") || k.ends_with(".cloud") || k.ends_with(".insecure") => {
                "true"
            }
            k if k.ends_with(".versions") || k.ends_with("connections.max") => "5",
            "limits.buffers.max" => "128MiB",
            "limits.expressions.steps.max" => "50000",
            "limits.expressions.memory.max" => "4MiB",
            "cache.memory.max" => "8MiB",
            k if k.starts_with("limits.request") => "64KiB",
            k if k.ends_with("listen") => "127.0.0.1:0",
            "telemetry.logs.std" => "json",
            "telemetry.metrics.labels" => "api,product,subscription",
            "telemetry.logs.std.level" => "warn",
            "telemetry.metrics.local" => "prometheus",
            "manage.admin.token" => "a-token-of-enough-length",
            "manage.portal.gateway.url" | "manage.portal.url" => "http://127.0.0.1:8080",
            "manage.portal.oidc.issuer" => "https://idp.example",
            "manage.portal.oidc.client.id" => "portal",
            "net.azure-ad.authority" => "https://login.microsoftonline.us",
            "cache.external.url" => "redis://127.0.0.1:6379",
            "identity.token.url" => "https://login.example/token",
            "identity.tenant" => "contoso.onmicrosoft.com",
            "identity.client.id" => "gateway-client",
            "limits.counters.external" => "true",
            _ => "/tmp/some-file",
        };
        let mut g = GatewaySettings::defaults(false);
        for key in GATEWAY_KEYS {
            g.apply(key, sample(key), "test")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut m = ManageSettings::defaults(false);
        for key in MANAGE_KEYS {
            m.apply(key, sample(key), "test")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(m.listen_insecure && m.audit_path.is_some());
        assert_eq!(m.instances_prune_after, Duration::from_secs(10));
    }

    /// The README's settings tables and the keys the code accepts are the same, so the
    /// reference cannot drift.
    #[test]
    fn the_readme_documents_exactly_the_keys_accepted() {
        let readme = include_str!("../README.md");
        let documented: Vec<&str> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once("` |").map(|(k, _)| k))
            .filter(|k| {
                [
                    "config.",
                    "net.",
                    "telemetry.",
                    "limits.",
                    "cache.",
                    "identity.",
                    "manage.",
                ]
                .iter()
                .any(|p| k.starts_with(p))
                    && !k.contains(' ')
            })
            .collect();
        for key in GATEWAY_KEYS.iter().chain(MANAGE_KEYS) {
            assert!(
                documented.contains(key),
                "{key} is not in the README's settings tables"
            );
        }
        for key in &documented {
            assert!(
                GATEWAY_KEYS.contains(key) || MANAGE_KEYS.contains(key),
                "the README documents {key}, which the code does not accept"
            );
        }
    }

    #[test]
    fn secret_is_not_printed() {
        let mut s = GatewaySettings::defaults(false);
        s.apply("config.service.auth", "GatewayKey sekrit", "--set")
            .unwrap();
        assert!(!format!("{s:?}").contains("sekrit"));
    }

    #[test]
    fn redis_urls() {
        let u = RedisUrl::parse("redis://:s3cret@cache.internal:6380/2").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.db, u.user.as_deref()),
            ("cache.internal", 6380, 2, None)
        );
        assert_eq!(u.password.map(|p| p.0), Some("s3cret".to_string()));
        let u = RedisUrl::parse("redis://edge:pw@[::1]").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_deref()),
            ("::1", 6379, Some("edge"))
        );
        assert_eq!(RedisUrl::parse("redis://127.0.0.1/").unwrap().db, 0);
        let u = RedisUrl::parse("rediss://cache.example:6380").unwrap();
        assert!(u.tls && u.port == 6380);
        assert!(!RedisUrl::parse("redis://cache.example").unwrap().tls);
        for bad in ["http://x", "redis://", "redis://h:port", "redis://h/x"] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
        // the password never reaches a log line
        let s = format!("{:?}", RedisUrl::parse("redis://:hidden@h").unwrap());
        assert!(!s.contains("hidden"), "{s}");
    }
}

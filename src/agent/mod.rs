//! The agent: the gateway's background coordinator. It does the work that may take
//! time so the event loop never does: getting configs (a file in local mode, the
//! management plane in service mode), compiling and validating them, backing them up,
//! resolving backend host names (DNS), batching request records for the plane, keeping
//! quota counters, and freeing retired configs. It hands a finished `Arc<Runtime>` to
//! the loop through a channel plus the `mio::Waker`. Where configs come from is a
//! `Syncer`; the thread loop here is the same for both modes.
//!
//! It never waits on the network or on stderr: plane calls run on the two callers
//! (`caller`), whose replies arrive in the same inbox as the loop's messages, and log
//! lines go through the log writer (`crate::log_writer`). So a black-holed plane or a
//! stuck stderr never delays a SIGHUP reload, a pin, or the records of other requests.
//!
//! ```text
//!   loop ──try_send──▶ inbox ◀──send── poller / sender (plane calls)
//!                        │
//!                      agent ──Apply/Rejected/Status + wake──▶ loop
//! ```
//! Must not touch: sockets of the data plane, the loop's state.

pub mod caller;
pub mod client;
pub mod compiler;
pub mod fetch;
pub mod identity;
pub mod keys;
pub mod local;
pub mod openid;
pub mod outbox;
pub mod redis;
pub mod resolver;
pub mod scrape;
pub mod service;
pub mod store;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;

use self::store::Store;

use crate::config::{self, ConfigError, ConfigSource, Runtime};
use crate::policy::limits::QuotaCell;

/// Loop → agent (and the plane callers' replies). Bounded: the loop only ever
/// `try_send`s. A reload is also flagged in `Agent::reload`, so it is never lost when
/// the queue is full.
pub enum ToAgent {
    Reload,
    /// Request records (JSON lines) for the management plane, and how many the loop had
    /// to drop since the last batch.
    Telemetry(String, u64),
    /// What the loop counted since its last hand-over, and the gauges now.
    Metrics(Box<scrape::MetricsDelta>),
    /// Quota counters changed since the last snapshot, to persist.
    Quotas(Vec<QuotaCell>),
    /// A replaced runtime: freeing a large config takes milliseconds, so the agent keeps
    /// it until it holds the last reference and frees it here, off the loop.
    Retire(Arc<Runtime>),
    /// A plane call came back (service mode).
    Plane(caller::Reply),
    /// The OpenID key fetcher fetched (or failed to fetch) a configuration.
    Keys(openid::Fetched),
    /// The loop met a token whose key id no key set of this configuration has.
    RefreshKeys(String),
    /// The identity's token fetcher got (or failed to get) a token.
    Token(identity::Fetched),
    /// The loop has no access token for this resource.
    WantToken(String),
    Shutdown,
}

/// Agent → loop.
pub enum ToLoop {
    /// A config to serve; `problem` (an error, for status) or `note` (a state that is
    /// not one) says why it is not the latest source's; `backup_versions`: how many the
    /// backup store holds now (for metrics).
    Apply {
        runtime: Arc<Runtime>,
        problem: Option<String>,
        note: Option<String>,
        backup_versions: Option<u32>,
    },
    /// A config was refused; the running one stays. The text is for status.
    Rejected(String),
    /// The sync state changed (service mode): replaces what status shows.
    Status(crate::status::SyncState),
    /// How many versions the backup store holds after a backup (for metrics).
    Backups(Option<u32>),
    /// The newest signing keys of an OpenID configuration (fetched, or kept from an
    /// earlier run).
    Keys(String, Arc<crate::policy::keyring::KeySet>),
    /// A fresh access token of the gateway's identity for a resource.
    Token(String, Arc<crate::policy::tokens::Token>),
}

/// Longest the process waits for the agent thread when exiting.
pub const AGENT_STOP_WAIT: Duration = Duration::from_secs(3);

/// Queue depth loop → agent (each record batch is at most `telemetry::MAX_BATCH_BYTES`).
pub const AGENT_QUEUE: usize = 64;

/// Reads, compiles and resolves a config file. Blocking: never call on the loop.
/// Returns the runtime and the text it was compiled from.
pub fn load_config_file(
    path: &Path,
    source: ConfigSource,
) -> Result<(Runtime, String), Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    let runtime = compile_and_resolve(&text, source)?;
    Ok((runtime, text))
}

/// Compiles `text` and resolves its backend host names (blocking DNS), on a compile
/// worker (see `compiler`: a replaced runtime's memory goes back to the system).
pub fn compile_and_resolve(text: &str, source: ConfigSource) -> Result<Runtime, Vec<ConfigError>> {
    compiler::in_turn(text, source, compile_and_resolve_here)
}

fn compile_and_resolve_here(text: &str, source: ConfigSource) -> Result<Runtime, Vec<ConfigError>> {
    let mut runtime = config::compile(text, source)?;
    if let Err(e) = runtime.attach_backend_tls() {
        log::error!("https backends get 502 until this is fixed: {e}");
    }
    for host in runtime.resolve() {
        log::warn!("backend host '{host}' does not resolve; its requests get 502 until it does");
    }
    Ok(runtime)
}

/// How often backend host names of the running config are resolved again.
pub const DNS_REFRESH: Duration = Duration::from_secs(30);

/// A DNS refresh of the running config: its text compiled and resolved again with
/// `lookup`; `Some` only when a backend address changed.
pub fn refresh_addresses(
    running: &Runtime,
    text: &str,
    lookup: impl Fn(&str, u16) -> Vec<std::net::SocketAddr>,
) -> Option<Runtime> {
    if !running.uses_host_names() {
        return None;
    }
    let mut fresh = config::compile(text, running.source).ok()?;
    fresh.backend_tls.clone_from(&running.backend_tls);
    // the same text: the same certificates, whose client configs are already built
    fresh.client_keys.clone_from(&running.client_keys);
    fresh.resolve_with(lookup);
    (fresh.backend_addresses() != running.backend_addresses()).then_some(fresh)
}

/// A config ready to hand to the loop.
pub struct Loaded {
    pub runtime: Runtime,
    pub text: String,
    /// Why this is not the latest config of its source (for status), when it is not.
    pub problem: Option<String>,
    /// What status should say about it that is not an error (a pin in force, a start
    /// from backup while the plane is asked).
    pub note: Option<String>,
    /// Back `text` up once the loop has it (a new version from the plane: the durable
    /// write is then not on the way to serving). Otherwise it was backed up, or is one.
    pub backup: bool,
}

/// What a `Syncer` tells the agent loop.
#[allow(clippy::large_enum_variant)] // one per config apply; boxing buys nothing
pub enum Update {
    Apply(Loaded),
    Rejected(String),
    Status(crate::status::SyncState),
    /// Signing keys of an OpenID configuration for the loop.
    Keys(String, Arc<crate::policy::keyring::KeySet>),
    /// An access token of the gateway's identity for the loop.
    Token(String, Arc<crate::policy::tokens::Token>),
}

/// Where configs come from: a file (local mode) or the management plane (service mode).
pub trait Syncer: Send + 'static {
    /// Starts what the syncer needs beside the agent (the plane callers), replying into
    /// the agent's inbox.
    fn attach(&mut self, _inbox: &SyncSender<ToAgent>) -> std::io::Result<()> {
        Ok(())
    }
    /// SIGHUP.
    fn reload(&mut self) -> Vec<Update>;
    /// Periodic work (starting due calls, sealing batches); `running` is the config the
    /// loop serves. Never waits on the network.
    fn tick(&mut self, running: &Runtime) -> Vec<Update>;
    /// A plane call came back.
    fn on_plane(&mut self, _reply: caller::Reply, _running: &Runtime) -> Vec<Update> {
        Vec::new()
    }
    /// When `tick` wants to run next.
    fn next_tick(&self) -> Instant;
    /// Request records for the plane (service mode); dropped elsewhere.
    fn telemetry(&mut self, _records: String, _dropped: u64) {}
    /// The latest metrics snapshot for the plane (service mode).
    fn metrics(&mut self, _text: String) {}
    /// Whether `metrics` is wanted (request metrics go to the plane).
    fn uploads_metrics(&self) -> bool {
        false
    }
    /// The process is stopping: keep what must survive (send or spool records).
    fn shutdown(&mut self, _running: &Runtime) {}
    /// The backup store, when backups are on (quota counters live there too).
    fn store(&mut self) -> Option<&mut Store>;
}

/// Most quota cells restored at start (the loop's counter maps hold no more).
pub const QUOTA_CELLS_MAX: usize = 100_000;

fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The quota counters persisted by an earlier run, for the loop to start from.
pub fn saved_quotas(syncer: &mut dyn Syncer) -> Vec<QuotaCell> {
    let Some(store) = syncer.store() else {
        return Vec::new();
    };
    match store.load_quotas(unix_now_s(), QUOTA_CELLS_MAX) {
        Ok(cells) => cells,
        Err(e) => {
            log::warn!("quota counters not restored: {e}");
            Vec::new()
        }
    }
}

/// How many versions the backup store holds, when backups are on.
pub fn backup_versions(syncer: &mut dyn Syncer) -> Option<u32> {
    syncer.store().and_then(|s| s.count().ok())
}

fn save_quotas(syncer: &mut dyn Syncer, cells: &[QuotaCell]) {
    if let Some(store) = syncer.store() {
        if let Err(e) = store.save_quotas(cells, unix_now_s()) {
            log::warn!("quota counters not persisted: {e}");
        }
    }
}

pub struct Agent {
    pub sender: SyncSender<ToAgent>,
    /// Set by the loop on SIGHUP; the agent clears it when it reloads.
    pub reload: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Agent {
    /// Starts the agent thread; the receiver is the loop's end. `applied` is the config
    /// the loop starts with and its text (kept for DNS refreshes).
    /// `client`: the gateway's identity, when `identity.*` is configured.
    pub fn spawn(
        syncer: Box<dyn Syncer>,
        mirror: Option<scrape::SharedMirror>,
        applied: (Arc<Runtime>, String),
        waker: Arc<Waker>,
        client: Option<identity::Client>,
    ) -> std::io::Result<(Agent, Receiver<ToLoop>)> {
        let mut syncer = syncer;
        let (sender, inbox) = mpsc::sync_channel(AGENT_QUEUE);
        syncer.attach(&sender)?;
        let helpers = Helpers {
            mirror,
            openid: Some(openid::spawn(sender.clone())?),
            identity: match client {
                Some(c) => Some(identity::spawn(c, sender.clone())?),
                None => None,
            },
        };
        let (outbox, receiver) = mpsc::channel();
        let reload = Arc::new(AtomicBool::new(false));
        let flag = reload.clone();
        let handle = std::thread::Builder::new()
            .name("edgegate-agent".into())
            .spawn(move || run(syncer, helpers, applied, &inbox, &flag, &outbox, &waker))?;
        Ok((
            Agent {
                sender,
                reload,
                handle,
            },
            receiver,
        ))
    }

    /// Asks the agent to finish (after writing what it holds) and waits for it, at most
    /// `AGENT_STOP_WAIT`: an agent stuck on a full stderr or a slow plane call must not
    /// keep the process from exiting.
    pub fn stop(self) {
        let _ = self.sender.try_send(ToAgent::Shutdown);
        let deadline = Instant::now() + AGENT_STOP_WAIT;
        while !self.handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.handle.is_finished() {
            let _ = self.handle.join();
        }
    }
}

fn system_lookup(host: &str, port: u16) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default()
}

/// The agent thread's state between messages.
struct Coordinator {
    syncer: Box<dyn Syncer>,
    /// Replaced runtimes, freed here once the loop's last request on them is done.
    retired: Vec<Arc<Runtime>>,
    /// The running config as the agent knows it: the runtime (for addresses) and its text.
    running: Arc<Runtime>,
    running_text: String,
    next_dns: Instant,
    outbox: Sender<ToLoop>,
    /// The cumulative request metrics (scrapes and uploads render from it).
    mirror: Option<scrape::SharedMirror>,
    next_metrics_upload: Instant,
    /// The OpenID key fetcher, and the configuration URLs it was last told.
    openid: Option<openid::Fetcher>,
    openid_urls: Vec<String>,
    /// The first config's URLs were handed to the fetcher (its kept keys were restored
    /// at start).
    keys_started: bool,
    /// The gateway identity's token fetcher (with `identity.*`), and the resources it
    /// was last told.
    identity: Option<identity::Fetcher>,
    identity_resources: Vec<String>,
}

/// How often the cumulative metrics are rendered for the plane.
const METRICS_UPLOAD_EVERY: Duration = Duration::from_secs(5);
/// Largest metrics upload: beyond it the histogram buckets are left out (the plane
/// takes at most 16 MiB).
pub const METRICS_UPLOAD_MAX: usize = 8 << 20;

/// What handling one inbox message asks of the thread loop.
enum Flow {
    Continue,
    Stop,
}

impl Coordinator {
    fn handle(&mut self, msg: ToAgent, updates: &mut Vec<Update>) -> Flow {
        match msg {
            ToAgent::Retire(runtime) => self.retired.push(runtime),
            ToAgent::Telemetry(records, dropped) => self.syncer.telemetry(records, dropped),
            ToAgent::Metrics(delta) => {
                if let Some(mirror) = &self.mirror {
                    mirror
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .apply(*delta);
                }
            }
            ToAgent::Quotas(cells) => save_quotas(self.syncer.as_mut(), &cells),
            ToAgent::Plane(reply) => updates.extend(self.syncer.on_plane(reply, &self.running)),
            ToAgent::Keys(fetched) => self.keys_fetched(fetched, updates),
            ToAgent::RefreshKeys(url) => self.refresh_keys(url),
            ToAgent::Token(fetched) => self.token_fetched(fetched, updates),
            ToAgent::WantToken(resource) => self.fetch_token(resource),
            ToAgent::Reload => {}
            ToAgent::Shutdown => return Flow::Stop,
        }
        Flow::Continue
    }

    /// Renders the cumulative metrics for the plane (bounded), when it wants them.
    fn upload_metrics(&mut self) {
        let Some(mirror) = self
            .mirror
            .as_ref()
            .filter(|_| self.syncer.uploads_metrics())
        else {
            return;
        };
        let text = {
            let m = mirror.lock().unwrap_or_else(|p| p.into_inner());
            let full = m.render(crate::metrics::Detail::Full);
            if full.len() <= METRICS_UPLOAD_MAX {
                full
            } else {
                m.render(crate::metrics::Detail::Counts)
            }
        };
        if text.len() > METRICS_UPLOAD_MAX {
            log::warn!(
                "metrics snapshot of {} KiB exceeds {} KiB even without histogram buckets; not uploaded (fewer labels in telemetry.metrics.labels make it smaller)",
                text.len() / 1024,
                METRICS_UPLOAD_MAX / 1024
            );
            return;
        }
        self.syncer.metrics(text);
    }

    /// Timed work: reloads, the syncer's tick, DNS refreshes.
    fn periodic(&mut self, reload: &AtomicBool, updates: &mut Vec<Update>) {
        if Instant::now() >= self.next_metrics_upload {
            self.next_metrics_upload = Instant::now() + METRICS_UPLOAD_EVERY;
            self.upload_metrics();
        }
        // Requests in flight may still hold a retired runtime; free it once they are done.
        // The workers that built them then give the freed memory back to the system.
        let before = self.retired.len();
        self.retired.retain(|r| Arc::strong_count(r) > 1);
        if self.retired.len() < before {
            compiler::trim();
        }
        if reload.swap(false, Ordering::SeqCst) {
            updates.extend(self.syncer.reload());
        }
        if Instant::now() >= self.syncer.next_tick() {
            updates.extend(self.syncer.tick(&self.running));
        }
        if Instant::now() >= self.next_dns {
            self.next_dns = Instant::now() + DNS_REFRESH;
            if let Some(fresh) = refresh_addresses(&self.running, &self.running_text, system_lookup)
            {
                log::info!(
                    "backend addresses changed in DNS; config version {} re-applied",
                    fresh.version
                );
                updates.push(Update::Apply(Loaded {
                    runtime: fresh,
                    text: self.running_text.clone(),
                    problem: None,
                    note: None,
                    backup: false,
                }));
            }
        }
    }

    /// Hands updates to the loop; false when the loop is gone.
    fn deliver(&mut self, updates: Vec<Update>, waker: &Waker) -> bool {
        for update in updates {
            let mut back_up = false;
            let msg = match update {
                Update::Apply(loaded) => {
                    let runtime = Arc::new(loaded.runtime);
                    self.running = Arc::clone(&runtime);
                    self.running_text = loaded.text;
                    back_up = loaded.backup;
                    ToLoop::Apply {
                        runtime,
                        problem: loaded.problem,
                        note: loaded.note,
                        backup_versions: backup_versions(self.syncer.as_mut()),
                    }
                }
                Update::Rejected(reason) => ToLoop::Rejected(reason),
                Update::Status(state) => ToLoop::Status(state),
                Update::Keys(url, set) => ToLoop::Keys(url, set),
                Update::Token(resource, token) => ToLoop::Token(resource, token),
            };
            if self.outbox.send(msg).is_err() {
                return false;
            }
            let _ = waker.wake();
            if back_up {
                let started = Instant::now();
                local::record(self.syncer.store(), &self.running, &self.running_text);
                log::info!(
                    "config version {} backed up in {} ms",
                    self.running.version,
                    started.elapsed().as_millis()
                );
                let count = backup_versions(self.syncer.as_mut());
                if self.outbox.send(ToLoop::Backups(count)).is_err() {
                    return false;
                }
                let _ = waker.wake();
            }
        }
        true
    }
}

/// Most inbox messages handled before timed work gets its turn.
const INBOX_BURST: usize = 256;

/// The threads the agent works with besides its callers: the metrics mirror (when
/// metrics are on) and the OpenID key fetcher.
struct Helpers {
    mirror: Option<scrape::SharedMirror>,
    openid: Option<openid::Fetcher>,
    identity: Option<identity::Fetcher>,
}

fn run(
    syncer: Box<dyn Syncer>,
    helpers: Helpers,
    applied: (Arc<Runtime>, String),
    inbox: &Receiver<ToAgent>,
    reload: &AtomicBool,
    outbox: &Sender<ToLoop>,
    waker: &Waker,
) {
    let (running, running_text) = applied;
    let Helpers {
        mirror,
        openid,
        identity,
    } = helpers;
    let mut agent = Coordinator {
        syncer,
        retired: Vec::new(),
        running,
        running_text,
        next_dns: Instant::now() + DNS_REFRESH,
        outbox: outbox.clone(),
        mirror,
        next_metrics_upload: Instant::now() + METRICS_UPLOAD_EVERY,
        openid,
        openid_urls: Vec::new(),
        keys_started: false,
        identity,
        identity_resources: Vec::new(),
    };
    loop {
        let due = agent.syncer.next_tick().min(agent.next_dns);
        let wait = due
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        let mut updates = Vec::new();
        let first = match inbox.recv_timeout(wait) {
            Ok(msg) => Some(msg),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(ToAgent::Shutdown),
        };
        // take everything waiting (bounded), so records never queue behind timed work
        let mut stop = false;
        for msg in first.into_iter().chain(inbox.try_iter().take(INBOX_BURST)) {
            if let Flow::Stop = agent.handle(msg, &mut updates) {
                stop = true;
                break;
            }
        }
        if stop {
            // what the loop counted last goes with the rest
            agent.upload_metrics();
            let running = Arc::clone(&agent.running);
            agent.syncer.shutdown(&running);
            return;
        }
        agent.periodic(reload, &mut updates);
        if !agent.deliver(updates, waker) {
            return;
        }
        // the running config (the first, or one just applied) may name other OpenID
        // configurations
        let mut keys = Vec::new();
        agent.want_keys(&mut keys);
        agent.want_tokens();
        if !agent.deliver(keys, waker) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const DOC: &str = r#"{"schemaVersion": 1, "version": "d", "apis": [
        {"id": "a", "path": "a", "serviceUrl": "http://orders.internal:8000", "subscriptionRequired": false},
        {"id": "b", "path": "b", "serviceUrl": "http://10.0.0.9:80", "subscriptionRequired": false}]}"#;

    fn at(ip: &'static str) -> impl Fn(&str, u16) -> Vec<SocketAddr> {
        move |_, port| vec![SocketAddr::new(ip.parse().unwrap(), port)]
    }

    #[test]
    fn dns_refresh_reapplies_only_on_change() {
        let mut running = config::compile(DOC, ConfigSource::Local).unwrap();
        running.resolve_with(at("192.0.2.1"));
        assert!(
            refresh_addresses(&running, DOC, at("192.0.2.1")).is_none(),
            "unchanged"
        );
        let fresh = refresh_addresses(&running, DOC, at("192.0.2.2")).expect("changed");
        assert_eq!(
            fresh.apis[0].backend.addrs,
            vec!["192.0.2.2:8000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            fresh.apis[1].backend.addrs,
            vec!["10.0.0.9:80".parse::<SocketAddr>().unwrap()]
        );
        // a name that stops resolving is a change too (its requests then get 502)
        assert!(refresh_addresses(&running, DOC, |_, _| Vec::new()).is_some());
    }

    #[test]
    fn ip_only_configs_are_never_refreshed() {
        let doc = DOC.replace("orders.internal", "127.0.0.1");
        let mut running = config::compile(&doc, ConfigSource::Local).unwrap();
        running.resolve();
        assert!(refresh_addresses(&running, &doc, at("192.0.2.7")).is_none());
    }
}

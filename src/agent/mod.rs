//! The agent: the gateway's one background thread. It does everything that may block
//! so the event loop never does: reading the config file, compiling and validating it,
//! resolving backend host names (DNS), and writing request-log batches to stderr. It
//! hands a finished `Arc<Runtime>` to the loop through a channel plus the `mio::Waker`.
//! In local mode it acts on SIGHUP (forwarded by the loop as `ToAgent::Reload`).
//! Must not touch: sockets of the data plane, the loop's state.

pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Waker;

use crate::config::{self, ConfigError, ConfigSource, Runtime};
use store::Store;

/// Loop → agent. Bounded: the loop only ever `try_send`s. A reload is also flagged in
/// `Agent::reload`, so it is never lost when the queue is full of log batches.
pub enum ToAgent {
    Reload,
    Logs(String),
    /// A replaced runtime: freeing a large config takes milliseconds, so the agent keeps
    /// it until it holds the last reference and frees it here, off the loop.
    Retire(Arc<Runtime>),
    Shutdown,
}

/// Agent → loop.
pub enum ToLoop {
    /// A config to serve; `note` (for status) says why it is not the latest source's.
    Apply {
        runtime: Arc<Runtime>,
        note: Option<String>,
    },
    /// A config was refused; the running one stays. The text is for status.
    Rejected(String),
}

/// Queue depth loop → agent (each log batch is at most `telemetry::MAX_BATCH_BYTES`).
pub const AGENT_QUEUE: usize = 16;

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

/// Compiles `text` and resolves its backend host names (blocking DNS).
pub fn compile_and_resolve(text: &str, source: ConfigSource) -> Result<Runtime, Vec<ConfigError>> {
    let mut runtime = config::compile(text, source)?;
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
    fresh.resolve_with(lookup);
    (fresh.backend_addresses() != running.backend_addresses()).then_some(fresh)
}

/// Where local mode gets its config, in order: a pinned backup (`edgegate backups
/// rollback`), the config file (each new document recorded in the backup store before it
/// is applied), and, only at start when the file cannot be used, the newest good backup.
pub struct LocalConfig {
    pub path: PathBuf,
    pub store: Option<Store>,
}

/// A config ready to hand to the loop.
pub struct Loaded {
    pub runtime: Runtime,
    pub text: String,
    /// Why this is not the file's config (for status), when it is not.
    pub problem: Option<String>,
}

impl LocalConfig {
    /// Opens the backup store when enabled; a store that cannot be opened is logged and
    /// the gateway runs without backups rather than not at all.
    pub fn new(path: PathBuf, backup: Option<(&Path, u32)>) -> LocalConfig {
        let store = backup.and_then(|(file, keep)| match Store::open(file, keep) {
            Ok((store, note)) => {
                if let Some(note) = note {
                    log::error!("{note}");
                }
                Some(store)
            }
            Err(e) => {
                log::error!("{e}; running without config backups");
                None
            }
        });
        LocalConfig { path, store }
    }

    fn pinned(&self) -> Option<Loaded> {
        let stored = match self.store.as_ref()?.pinned() {
            Ok(s) => s?,
            Err(e) => {
                log::error!("{e}");
                return None;
            }
        };
        let label = format!(
            "pinned backup #{} (version {})",
            stored.entry.seq, stored.entry.version
        );
        if !stored.entry.intact {
            log::error!("{label}: checksum mismatch; pin ignored");
            return None;
        }
        match compile_and_resolve(&stored.document, ConfigSource::Backup) {
            Ok(runtime) => Some(Loaded {
                runtime,
                text: stored.document,
                problem: Some(format!(
                    "{label} is in force; {} is not read until the pin is cleared",
                    self.path.display()
                )),
            }),
            Err(errors) => {
                log::error!(
                    "{label} is invalid ({}); pin ignored",
                    errors.first().map(ToString::to_string).unwrap_or_default()
                );
                None
            }
        }
    }

    /// Records a document read from the file, unless it is the newest one already stored.
    fn record(&mut self, runtime: &Runtime, text: &str) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let sha = store::sha256_hex(text.as_bytes());
        let newest = store.list().ok().and_then(|l| l.into_iter().next());
        if newest.is_some_and(|e| e.sha256 == sha && e.intact) {
            return;
        }
        if let Err(e) = store.save(&runtime.version, ConfigSource::Local, text) {
            log::error!(
                "config version {} applied but not backed up: {e}",
                runtime.version
            );
        }
    }

    /// The config to start with. `Err` carries every problem, for the exit message.
    pub fn initial(&mut self) -> Result<Loaded, Vec<String>> {
        if let Some(pinned) = self.pinned() {
            return Ok(pinned);
        }
        let file_errors = match load_config_file(&self.path, ConfigSource::Local) {
            Ok((runtime, text)) => {
                self.record(&runtime, &text);
                return Ok(Loaded {
                    runtime,
                    text,
                    problem: None,
                });
            }
            Err(errors) => errors,
        };
        let mut problems: Vec<String> = file_errors
            .iter()
            .map(|e| format!("{}: {e}", self.path.display()))
            .collect();
        let Some(store) = self.store.as_ref() else {
            return Err(problems);
        };
        let usable = |doc: &str| {
            config::compile(doc, ConfigSource::Backup)
                .map(drop)
                .map_err(|e| e.first().map(ToString::to_string).unwrap_or_default())
        };
        match store.newest_good(usable) {
            Ok((Some(stored), skipped)) => {
                for s in skipped {
                    log::error!("{s}");
                }
                for p in &problems {
                    log::error!("config rejected: {p}");
                }
                let runtime = compile_and_resolve(&stored.document, ConfigSource::Backup)
                    .map_err(|_| problems.clone())?;
                log::warn!(
                    "starting from backup #{} (version {}) because {} cannot be used",
                    stored.entry.seq,
                    stored.entry.version,
                    self.path.display()
                );
                let problem = Some(format!(
                    "{} rejected ({} error(s)); serving backup version {}",
                    self.path.display(),
                    problems.len(),
                    stored.entry.version
                ));
                Ok(Loaded {
                    runtime,
                    text: stored.document,
                    problem,
                })
            }
            Ok((None, skipped)) => {
                problems.extend(skipped);
                problems.push("and no usable backup".into());
                Err(problems)
            }
            Err(e) => {
                problems.push(e.to_string());
                Err(problems)
            }
        }
    }

    /// SIGHUP: the pin if one is set, else the file. A bad file is rejected and the
    /// running config stays (no fallback to older backups while running).
    pub fn reload(&mut self) -> Result<Loaded, Vec<String>> {
        if let Some(pinned) = self.pinned() {
            return Ok(pinned);
        }
        match load_config_file(&self.path, ConfigSource::Local) {
            Ok((runtime, text)) => {
                self.record(&runtime, &text);
                Ok(Loaded {
                    runtime,
                    text,
                    problem: None,
                })
            }
            Err(errors) => Err(errors.iter().map(ToString::to_string).collect()),
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
    /// Starts the agent thread for local mode; the receiver is the loop's end. `applied`
    /// is the config the loop starts with and its text (kept for DNS refreshes).
    pub fn spawn_local(
        source: LocalConfig,
        applied: (Arc<Runtime>, String),
        waker: Arc<Waker>,
    ) -> std::io::Result<(Agent, Receiver<ToLoop>)> {
        let (sender, inbox) = mpsc::sync_channel(AGENT_QUEUE);
        let (outbox, receiver) = mpsc::channel();
        let reload = Arc::new(AtomicBool::new(false));
        let flag = reload.clone();
        let handle = std::thread::Builder::new()
            .name("edgegate-agent".into())
            .spawn(move || run_local(source, applied, &inbox, &flag, &outbox, &waker))?;
        Ok((
            Agent {
                sender,
                reload,
                handle,
            },
            receiver,
        ))
    }

    /// Asks the agent to finish (after writing what it holds) and waits for it.
    pub fn stop(self) {
        let _ = self.sender.send(ToAgent::Shutdown);
        let _ = self.handle.join();
    }
}

fn run_local(
    mut source: LocalConfig,
    applied: (Arc<Runtime>, String),
    inbox: &Receiver<ToAgent>,
    reload: &AtomicBool,
    outbox: &Sender<ToLoop>,
    waker: &Waker,
) {
    let mut stderr = std::io::stderr();
    let mut retired: Vec<Arc<Runtime>> = Vec::new();
    // The running config as the agent knows it: its text, and the runtime (for addresses).
    let (mut running, mut running_text) = applied;
    let mut next_dns = std::time::Instant::now() + DNS_REFRESH;
    loop {
        match inbox.recv_timeout(Duration::from_secs(1)) {
            Ok(ToAgent::Logs(batch)) => {
                let _ = stderr.write_all(batch.as_bytes());
            }
            Ok(ToAgent::Retire(runtime)) => retired.push(runtime),
            Ok(ToAgent::Reload) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(ToAgent::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Requests in flight may still hold a retired runtime; free it once they are done.
        retired.retain(|r| Arc::strong_count(r) > 1);
        let mut msg = None;
        if reload.swap(false, Ordering::SeqCst) {
            log::info!("reloading {}", source.path.display());
            msg = Some(match source.reload() {
                Ok(loaded) => {
                    running_text = loaded.text;
                    if let Some(p) = &loaded.problem {
                        log::warn!("{p}");
                    }
                    ToLoop::Apply {
                        runtime: Arc::new(loaded.runtime),
                        note: loaded.problem,
                    }
                }
                Err(errors) => {
                    for e in &errors {
                        log::error!("config rejected, running config kept: {e}");
                    }
                    let first = errors.first().cloned().unwrap_or_default();
                    ToLoop::Rejected(format!(
                        "{} error(s) in {}; first: {first}",
                        errors.len(),
                        source.path.display()
                    ))
                }
            });
        } else if std::time::Instant::now() >= next_dns {
            next_dns = std::time::Instant::now() + DNS_REFRESH;
            let system = |host: &str, port: u16| {
                use std::net::ToSocketAddrs;
                (host, port)
                    .to_socket_addrs()
                    .map(|a| a.collect())
                    .unwrap_or_default()
            };
            if let Some(fresh) = refresh_addresses(&running, &running_text, system) {
                log::info!(
                    "backend addresses changed in DNS; config version {} re-applied",
                    fresh.version
                );
                msg = Some(ToLoop::Apply {
                    runtime: Arc::new(fresh),
                    note: None,
                });
            }
        }
        if let Some(msg) = msg {
            if let ToLoop::Apply { runtime, .. } = &msg {
                running = Arc::clone(runtime);
            }
            if outbox.send(msg).is_err() {
                return;
            }
            let _ = waker.wake();
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

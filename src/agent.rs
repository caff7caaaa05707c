//! The agent: the gateway's one background thread. It does everything that may block
//! so the event loop never does: reading the config file, compiling and validating it,
//! resolving backend host names (DNS), and writing request-log batches to stderr. It
//! hands a finished `Arc<Runtime>` to the loop through a channel plus the `mio::Waker`.
//! In local mode it acts on SIGHUP (forwarded by the loop as `ToAgent::Reload`).
//! Must not touch: sockets of the data plane, the loop's state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Waker;

use crate::config::{self, ConfigError, ConfigSource, Runtime};

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
    Apply(Arc<Runtime>),
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
        config_path: PathBuf,
        applied: (Arc<Runtime>, String),
        waker: Arc<Waker>,
    ) -> std::io::Result<(Agent, Receiver<ToLoop>)> {
        let (sender, inbox) = mpsc::sync_channel(AGENT_QUEUE);
        let (outbox, receiver) = mpsc::channel();
        let reload = Arc::new(AtomicBool::new(false));
        let flag = reload.clone();
        let handle = std::thread::Builder::new()
            .name("edgegate-agent".into())
            .spawn(move || run_local(&config_path, applied, &inbox, &flag, &outbox, &waker))?;
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
    path: &Path,
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
            log::info!("reloading {}", path.display());
            msg = Some(match load_config_file(path, ConfigSource::Local) {
                Ok((rt, text)) => {
                    running_text = text;
                    ToLoop::Apply(Arc::new(rt))
                }
                Err(errors) => {
                    for e in &errors {
                        log::error!("config rejected, running config kept: {e}");
                    }
                    let first = errors.first().map(ToString::to_string).unwrap_or_default();
                    ToLoop::Rejected(format!(
                        "{} error(s) in {}; first: {first}",
                        errors.len(),
                        path.display()
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
                msg = Some(ToLoop::Apply(Arc::new(fresh)));
            }
        }
        if let Some(msg) = msg {
            if let ToLoop::Apply(rt) = &msg {
                running = Arc::clone(rt);
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

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
pub fn load_config_file(path: &Path, source: ConfigSource) -> Result<Runtime, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    let mut runtime = config::compile(&text, source)?;
    for host in runtime.resolve() {
        log::warn!("backend host '{host}' does not resolve; its requests get 502 until a reload resolves it");
    }
    Ok(runtime)
}

pub struct Agent {
    pub sender: SyncSender<ToAgent>,
    /// Set by the loop on SIGHUP; the agent clears it when it reloads.
    pub reload: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Agent {
    /// Starts the agent thread for local mode; the receiver is the loop's end.
    pub fn spawn_local(
        config_path: PathBuf,
        waker: Arc<Waker>,
    ) -> std::io::Result<(Agent, Receiver<ToLoop>)> {
        let (sender, inbox) = mpsc::sync_channel(AGENT_QUEUE);
        let (outbox, receiver) = mpsc::channel();
        let reload = Arc::new(AtomicBool::new(false));
        let flag = reload.clone();
        let handle = std::thread::Builder::new()
            .name("edgegate-agent".into())
            .spawn(move || run_local(&config_path, &inbox, &flag, &outbox, &waker))?;
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
    inbox: &Receiver<ToAgent>,
    reload: &AtomicBool,
    outbox: &Sender<ToLoop>,
    waker: &Waker,
) {
    let mut stderr = std::io::stderr();
    let mut retired: Vec<Arc<Runtime>> = Vec::new();
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
        if reload.swap(false, Ordering::SeqCst) {
            {
                log::info!("reloading {}", path.display());
                let msg = match load_config_file(path, ConfigSource::Local) {
                    Ok(rt) => ToLoop::Apply(Arc::new(rt)),
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
                };
                if outbox.send(msg).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        }
    }
}

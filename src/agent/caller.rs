//! The plane callers: two small threads that make the blocking calls to the management
//! plane so that the agent never waits on the network. The *poller* holds the config
//! long poll; the *sender* sends heartbeats and uploads request records and metrics.
//! Each takes one `Call` at a time and posts its `Reply` into the agent's inbox; a black-
//! holed plane then stalls only its caller, while logs, reloads and the other caller go
//! on. The agent keeps at most one call outstanding per caller, so the call queues hold
//! at most one entry and need no bound of their own.
//! Must not touch: the backup store, the loop, config semantics.

use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{CallError, Fetched, PlaneClient};
use super::ToAgent;

/// One call to the plane.
pub enum Call {
    Config {
        etag: Option<String>,
        wait: Duration,
    },
    Heartbeat(String),
    /// NDJSON records (shared with the agent, which keeps them until the reply).
    Telemetry {
        body: Arc<str>,
        dropped: u64,
    },
    Metrics {
        instance: String,
        text: Arc<str>,
    },
}

/// What a call came back with.
pub enum Reply {
    /// `held`: how long the plane took (a plane that holds long polls takes ~`wait`).
    Config {
        result: Result<Fetched, CallError>,
        held: Duration,
    },
    Heartbeat(Result<(), CallError>),
    Telemetry(Result<(), CallError>),
    Metrics(Result<(), CallError>),
}

/// Which caller a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Poller,
    Sender,
}

impl Call {
    pub fn lane(&self) -> Lane {
        match self {
            Call::Config { .. } => Lane::Poller,
            _ => Lane::Sender,
        }
    }
}

fn perform(client: &PlaneClient, call: Call) -> Reply {
    match call {
        Call::Config { etag, wait } => {
            let started = Instant::now();
            let result = client.fetch_config(etag.as_deref(), wait);
            Reply::Config {
                result,
                held: started.elapsed(),
            }
        }
        Call::Heartbeat(report) => Reply::Heartbeat(client.heartbeat(&report)),
        Call::Telemetry { body, dropped } => Reply::Telemetry(client.telemetry(&body, dropped)),
        Call::Metrics { instance, text } => Reply::Metrics(client.metrics(&instance, &text)),
    }
}

/// The two callers' queues. Dropping it ends both threads once their call returns.
pub struct Callers {
    poller: Sender<Call>,
    sender: Sender<Call>,
}

impl Callers {
    /// Starts both threads; their replies go to `inbox`.
    pub fn spawn(client: &PlaneClient, inbox: &SyncSender<ToAgent>) -> std::io::Result<Callers> {
        Ok(Callers {
            poller: spawn_one("edgegate-poll", client.clone(), inbox.clone())?,
            sender: spawn_one("edgegate-send", client.clone(), inbox.clone())?,
        })
    }

    /// Hands `call` to its caller. False when that caller is gone.
    pub fn start(&self, call: Call) -> bool {
        match call.lane() {
            Lane::Poller => self.poller.send(call).is_ok(),
            Lane::Sender => self.sender.send(call).is_ok(),
        }
    }
}

fn spawn_one(
    name: &str,
    client: PlaneClient,
    inbox: SyncSender<ToAgent>,
) -> std::io::Result<Sender<Call>> {
    let (calls, queue) = mpsc::channel::<Call>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Ok(call) = queue.recv() {
                if inbox.send(ToAgent::Plane(perform(&client, call))).is_err() {
                    return;
                }
            }
        })?;
    Ok(calls)
}

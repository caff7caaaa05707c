//! Service mode: configs come from the management plane. The agent drives two plane
//! callers (`caller`) and never waits on the network itself:
//!
//! ```text
//!   poller lane:  Config(long poll) ──reply──▶ apply / reject / 304 ──▶ next poll
//!   sender lane:  Heartbeat | Telemetry(spooled, then memory) | Metrics ──reply──▶ next
//! ```
//!
//! Each new valid document is backed up and applied; an invalid one is rejected whole
//! (the running config stays; the error shows in status and the heartbeat). When the
//! plane is unreachable the gateway keeps its config ("fails static"), records since when,
//! moves request records to the spool in the backup file, and retries with jittered
//! backoff capped at the poll interval. A pin set with `edgegate backups rollback` (or
//! cleared with `unpin`) is noticed within a second, without a signal.
//!
//! At start it needs no network when a backup exists: a pinned version, else the newest
//! good backup is served at once and the first poll brings it up to date. Without a
//! backup it asks the plane once and refuses to start if that fails.
//! Must not touch: the loop, sockets of the data plane.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::caller::{Call, Callers, Reply};
use super::client::{CallError, Fetched, PlaneClient};
use super::local::{newest_good, open_store, pinned, record};
use super::outbox::{Batch, Outbox};
use super::store::Store;
use super::{compile_and_resolve, Loaded, Syncer, ToAgent, Update};
use crate::config::{ConfigSource, Runtime};
use crate::federation::Heartbeat;
use crate::settings::GatewaySettings;
use crate::status::SyncState;
use crate::telemetry::rfc3339;

/// How long one config poll may be held by the plane (a change still arrives at once:
/// the held poll returns).
pub const LONG_POLL_WAIT: Duration = Duration::from_secs(10);
/// First retry delay after a failed call; doubles up to the poll interval.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How often the cumulative metrics are uploaded.
pub const METRICS_EVERY: Duration = Duration::from_secs(5);
/// How often the pin in the backup store is checked.
const PIN_CHECK_EVERY: Duration = Duration::from_secs(1);
/// What a stopping gateway may spend on its last heartbeat and uploads.
const STOP_BUDGET: Duration = Duration::from_secs(2);

/// What the sender lane is doing.
enum Sending {
    Heartbeat,
    /// A spooled telemetry batch (its spool row), with the dropped count it reports.
    Spooled(i64, u64),
    /// The outbox's batch in flight, with the dropped count it reports.
    Memory(u64),
    /// An instance's spooled metrics snapshot.
    SpooledMetrics(String),
    Metrics(Arc<str>),
}

pub struct ServiceSync {
    client: PlaneClient,
    callers: Option<Callers>,
    store: Option<Store>,
    poll_interval: Duration,
    heartbeat_interval: Duration,
    etag: Option<String>,
    state: SyncState,
    polling: bool,
    next_poll: Instant,
    backoff: Duration,
    sending: Option<Sending>,
    next_heartbeat: Instant,
    next_metrics: Instant,
    next_pin_check: Instant,
    /// The pin (backup seq) in force, if one is.
    applied_pin: Option<i64>,
    /// The last outage, reported in heartbeats once it is over.
    last_outage: Option<(SystemTime, SystemTime)>,
    outbox: Outbox,
    /// The newest metrics snapshot not yet uploaded (cumulative: only the newest counts).
    metrics: Option<Arc<str>>,
    instance_id: String,
    /// This run of the instance: metrics are cumulative per run, so each run uploads
    /// its own series (`<instance>.<run>`) and a restart never overwrites the last
    /// run's counts on the plane.
    run_id: String,
    /// `telemetry.metrics.cloud`: request metrics go to the plane.
    upload_metrics: bool,
    hostname: String,
    started: Instant,
    /// This run's start (unix ms) and the reports made so far: the plane orders an
    /// instance's heartbeats by them.
    started_at_ms: u64,
    reports: std::cell::Cell<u64>,
    jitter_seed: u64,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The expiry written in a `GatewayKey` token, as RFC 3339.
fn token_expiry(token: &str) -> Option<String> {
    let presented = crate::federation::token::parse(token).ok()?;
    let secs = crate::federation::token::parse_expiry(presented.expiry)?;
    Some(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
}

fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl ServiceSync {
    pub fn new(settings: &GatewaySettings) -> Result<ServiceSync, String> {
        let client = PlaneClient::new(settings)?;
        let backup = settings
            .backup_enabled
            .then_some((settings.backup_path.as_path(), settings.backup_versions));
        let mut store = open_store(backup)?;
        let instance_id = match store.as_mut() {
            Some(s) => s.instance_id(random_id).map_err(|e| e.to_string())?,
            None => random_id(),
        };
        let jitter_seed = instance_id.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) | 1;
        let now = Instant::now();
        let mut sync = ServiceSync {
            client,
            callers: None,
            store,
            poll_interval: settings.poll_interval,
            heartbeat_interval: settings.heartbeat_interval,
            etag: None,
            state: SyncState::default(),
            polling: false,
            next_poll: now,
            backoff: FIRST_BACKOFF,
            sending: None,
            next_heartbeat: now,
            next_metrics: now + METRICS_EVERY,
            next_pin_check: now + PIN_CHECK_EVERY,
            applied_pin: None,
            last_outage: None,
            outbox: Outbox::default(),
            metrics: None,
            instance_id,
            run_id: random_id(),
            upload_metrics: settings.metrics_cloud,
            hostname: hostname(),
            started: now,
            started_at_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            reports: std::cell::Cell::new(0),
            jitter_seed,
        };
        sync.read_token();
        Ok(sync)
    }

    pub fn state(&self) -> SyncState {
        self.state.clone()
    }

    /// Token expiry and gateway id, as the token (file) says now.
    fn read_token(&mut self) {
        let token = self.client.token().ok();
        self.state.token_expiry = token.as_deref().and_then(token_expiry);
        self.state.gateway_id = self.client.gateway_id();
    }

    /// The config to start with; `Err` is the one line to exit with.
    pub fn initial(&mut self) -> Result<Loaded, String> {
        self.state.last_sync_at = Some(SystemTime::now());
        let ignored = "the management plane's config is not applied";
        if let Some(loaded) = pinned(self.store.as_ref(), ignored) {
            self.applied_pin = self.pin_seq();
            self.state.note = loaded.note.clone();
            return Ok(loaded);
        }
        if let Some(store) = self.store.as_ref() {
            if let Some((mut loaded, seq)) = newest_good(store)? {
                log::info!(
                    "starting from backup #{seq} (version {}) without waiting for the network; syncing with {}",
                    loaded.runtime.version,
                    self.client.endpoint()
                );
                loaded.note = Some(format!(
                    "started from backup version {}; syncing with {}",
                    loaded.runtime.version,
                    self.client.endpoint()
                ));
                self.state.note = loaded.note.clone();
                return Ok(loaded);
            }
        }
        let reason = match self.client.fetch_config(None, Duration::ZERO) {
            Ok(Fetched::Document { text, etag }) => {
                match compile_and_resolve(&text, ConfigSource::Service) {
                    Ok(runtime) => {
                        record(self.store.as_mut(), &runtime, &text);
                        self.etag = etag;
                        return Ok(Loaded {
                            runtime,
                            text,
                            problem: None,
                            note: None,
                            backup: false,
                        });
                    }
                    Err(errors) => format!(
                        "the management plane sent an invalid config ({})",
                        errors.first().map(ToString::to_string).unwrap_or_default()
                    ),
                }
            }
            Ok(Fetched::NotModified) => {
                "the management plane answered 304 to a first request".into()
            }
            Err(e) => e.to_string(),
        };
        let backups = if self.store.is_some() {
            "no usable backup"
        } else {
            "config backups are off"
        };
        Err(format!(
            "cannot start: {reason}, and {backups} (config.backup.enabled)"
        ))
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        // xorshift; ±20 %
        let mut x = self.jitter_seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_seed = x;
        let factor = 0.8 + (x % 1000) as f64 / 2500.0;
        d.mul_f64(factor)
    }

    fn pin_seq(&self) -> Option<i64> {
        // checked every second: the pin row only, not the document and its checksum
        self.store
            .as_ref()
            .and_then(|s| s.pinned_seq().ok().flatten())
    }

    /// The plane answered (whatever it said): an outage, if there was one, is over.
    fn reachable(&mut self) {
        if let Some(since) = self.state.offline_since.take() {
            let now = SystemTime::now();
            let secs = now.duration_since(since).unwrap_or_default().as_secs();
            log::info!("management plane reachable again after {secs} s offline");
            self.last_outage = Some((since, now));
            // what was spooled meanwhile goes up next; the heartbeat says so at once
            self.next_heartbeat = Instant::now();
        }
        self.backoff = FIRST_BACKOFF;
    }

    /// No answer at all: offline from now (if not already), records to the spool.
    fn unreachable(&mut self, e: &CallError, running: &Runtime) {
        if self.state.offline_since.is_none() {
            log::warn!(
                "{e}; serving config version {} until it returns",
                running.version
            );
            self.state.offline_since = Some(SystemTime::now());
        }
        self.spool_outbox();
    }

    fn failed(&mut self, now: Instant) {
        let delay = self.jittered(self.backoff.min(self.poll_interval));
        self.next_poll = now + delay;
        self.backoff = (self.backoff * 2).min(self.poll_interval);
    }

    /// Moves every record held in memory to the spool.
    fn spool_outbox(&mut self) {
        let all = self.outbox.take_all();
        self.spool(all);
    }

    /// Puts batches in the spool, oldest first (or counts their records as dropped
    /// without a backup store).
    fn spool(&mut self, batches: Vec<Batch>) {
        for batch in batches {
            let spooled = self.store.as_mut().is_some_and(|s| {
                s.spool_push(&batch.body, batch.records, super::store::SPOOL_MAX_BYTES)
                    .is_ok()
            });
            if !spooled {
                self.outbox.dropped += batch.records;
            }
        }
    }

    fn on_config(
        &mut self,
        result: Result<Fetched, CallError>,
        held: Duration,
        running: &Runtime,
        out: &mut Vec<Update>,
    ) {
        self.polling = false;
        let now = Instant::now();
        self.state.last_sync_at = Some(SystemTime::now());
        self.read_token();
        match result {
            Ok(Fetched::Document { text, etag }) => {
                self.reachable();
                self.next_poll = now;
                self.etag = etag;
                self.take_document(text, running, out);
            }
            Ok(Fetched::NotModified) => {
                self.reachable();
                // a plane that answers at once does not hold requests: poll on the interval
                let held_long = held >= LONG_POLL_WAIT / 2;
                self.next_poll = if held_long {
                    now
                } else {
                    now + self.poll_interval
                };
                self.state.last_error = None;
                if self.applied_pin.is_none() {
                    self.state.note = None;
                }
            }
            Err(e @ (CallError::Unauthorized(_) | CallError::NoToken(_))) => {
                if matches!(e, CallError::Unauthorized(_)) {
                    self.reachable();
                }
                log::warn!("{e}; serving config version {} meanwhile", running.version);
                self.state.last_error = Some(e.to_string());
                self.next_poll = now + self.poll_interval;
            }
            Err(e @ CallError::Status(..)) => {
                self.reachable();
                self.state.last_error = Some(e.to_string());
                self.failed(now);
            }
            Err(e @ CallError::Unreachable(_)) => {
                self.unreachable(&e, running);
                self.state.last_error = Some(e.to_string());
                self.failed(now);
            }
        }
    }

    /// A document from the plane: compiled, then applied, kept out by a pin, or rejected.
    fn take_document(&mut self, text: String, running: &Runtime, out: &mut Vec<Update>) {
        let compiling = Instant::now();
        let runtime = match compile_and_resolve(&text, ConfigSource::Service) {
            Ok(runtime) => runtime,
            Err(errors) => {
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                let reason = format!(
                    "config from the management plane rejected ({} error(s)); first: {first}",
                    errors.len()
                );
                for e in &errors {
                    log::error!(
                        "config from the management plane rejected, running config kept: {e}"
                    );
                }
                self.state.last_error = Some(reason.clone());
                out.push(Update::Rejected(reason));
                return;
            }
        };
        let compiled = compiling.elapsed();
        if let Some(pin) = self.store.as_ref().and_then(|s| s.pinned().ok().flatten()) {
            // the pin holds until the plane sends a version not seen before
            let seen = self
                .store
                .as_ref()
                .and_then(|s| s.get(&runtime.version).ok())
                .is_some();
            if seen {
                self.state.last_error = None;
                self.state.note = Some(format!(
                    "pinned backup version {} is in force",
                    pin.entry.version
                ));
                return;
            }
            if let Some(store) = self.store.as_mut() {
                let _ = store.unpin();
            }
            self.applied_pin = None;
            log::info!(
                "config version {} from the plane replaces pinned version {}",
                runtime.version,
                pin.entry.version
            );
        }
        self.state.last_error = None;
        self.state.note = None;
        if runtime.version == running.version && running.source == ConfigSource::Service {
            return;
        }
        log::info!(
            "config version {} from the plane ({} apis, {} KiB): compiled in {} ms",
            runtime.version,
            runtime.apis.len(),
            text.len() / 1024,
            compiled.as_millis(),
        );
        // backed up once the loop has it: the durable write is not on the way to serving
        out.push(Update::Apply(Loaded {
            runtime,
            text,
            problem: None,
            note: None,
            backup: true,
        }));
    }

    /// A pin set or cleared with `edgegate backups` since the last check takes effect.
    fn check_pin(&mut self, out: &mut Vec<Update>) {
        let current = self.pin_seq();
        if current == self.applied_pin {
            return;
        }
        match current {
            Some(_) => {
                let ignored = "the management plane's config is not applied";
                if let Some(loaded) = pinned(self.store.as_ref(), ignored) {
                    log::info!("{}", loaded.note.as_deref().unwrap_or("pin applied"));
                    self.state.note = loaded.note.clone();
                    out.push(Update::Apply(loaded));
                }
                self.applied_pin = current;
            }
            None => {
                self.applied_pin = None;
                self.state.note = None;
                // back to the plane's newest document: the newest backup now, and a
                // fresh fetch (no ETag) to confirm it
                self.etag = None;
                self.next_poll = Instant::now();
                if let Some(store) = self.store.as_ref() {
                    match newest_good(store) {
                        Ok(Some((loaded, seq))) => {
                            log::info!(
                                "pin cleared; serving backup #{seq} (version {}) until the plane confirms it",
                                loaded.runtime.version
                            );
                            out.push(Update::Apply(loaded));
                        }
                        Ok(None) => {}
                        Err(e) => log::error!("pin cleared, but no backup is usable: {e}"),
                    }
                }
            }
        }
    }

    fn report(&self, running: &Runtime, stopping: bool) -> String {
        self.reports.set(self.reports.get() + 1);
        Heartbeat {
            instance_id: self.instance_id.clone(),
            hostname: self.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            config_version: running.version.clone(),
            config_source: running.source.as_str().into(),
            config_applied_at: rfc3339(running.applied_at),
            uptime_seconds: self.started.elapsed().as_secs(),
            last_sync_at: self.state.last_sync_at.map(rfc3339),
            last_sync_error: self.state.last_error.clone(),
            sync_note: self.state.note.clone(),
            last_outage: self.last_outage.map(|(a, b)| (rfc3339(a), rfc3339(b))),
            token_expiry: self.state.token_expiry.clone(),
            heartbeat_interval_seconds: self.heartbeat_interval.as_secs(),
            backups_off: self
                .store
                .is_none()
                .then(|| "config.backup.enabled=false".to_string()),
            stopping,
            started_at_ms: self.started_at_ms,
            sequence: self.reports.get(),
        }
        .to_json()
    }

    /// Starts what is due on an idle lane.
    fn dispatch(&mut self, running: &Runtime) {
        let now = Instant::now();
        let Some(callers) = self.callers.as_ref() else {
            return;
        };
        if !self.polling && now >= self.next_poll {
            self.polling = callers.start(Call::Config {
                etag: self.etag.clone(),
                wait: LONG_POLL_WAIT,
            });
        }
        if self.sending.is_some() {
            return;
        }
        let next = self.next_send(running, now);
        if let Some((call, sending)) = next {
            let Some(callers) = self.callers.as_ref() else {
                return;
            };
            if callers.start(call) {
                self.sending = Some(sending);
            }
        }
    }

    /// The sender lane's next call, by priority: a due heartbeat, spooled records,
    /// records in memory, spooled metrics, then the current metrics when due. Only
    /// heartbeats while offline.
    fn next_send(&mut self, running: &Runtime, now: Instant) -> Option<(Call, Sending)> {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.heartbeat_interval;
            return Some((
                Call::Heartbeat(self.report(running, false)),
                Sending::Heartbeat,
            ));
        }
        if self.state.offline_since.is_some() {
            return None;
        }
        let spooled = self
            .store
            .as_ref()
            .and_then(|s| s.spool_oldest().ok().flatten());
        if let Some((seq, body, _)) = spooled {
            let dropped = self.take_dropped();
            let call = Call::Telemetry {
                body: Arc::from(body),
                dropped,
            };
            return Some((call, Sending::Spooled(seq, dropped)));
        }
        if let Some(body) = self.outbox.start_upload() {
            let dropped = self.take_dropped();
            return Some((Call::Telemetry { body, dropped }, Sending::Memory(dropped)));
        }
        if self.outbox.dropped > 0 {
            let dropped = self.take_dropped();
            let call = Call::Telemetry {
                body: Arc::from(""),
                dropped,
            };
            return Some((call, Sending::Memory(dropped)));
        }
        let other_instance = self
            .store
            .as_ref()
            .and_then(|s| s.spooled_metrics().ok())
            .and_then(|mut all| all.pop());
        if let Some((instance, body)) = other_instance {
            let call = Call::Metrics {
                instance: instance.clone(),
                text: Arc::from(body),
            };
            return Some((call, Sending::SpooledMetrics(instance)));
        }
        if now >= self.next_metrics {
            if let Some(text) = self.metrics.take() {
                self.next_metrics = now + METRICS_EVERY;
                let call = Call::Metrics {
                    instance: self.metrics_instance(),
                    text: Arc::clone(&text),
                };
                return Some((call, Sending::Metrics(text)));
            }
        }
        None
    }

    /// Records dropped so far (in memory and counted in the spool), to report now.
    fn take_dropped(&mut self) -> u64 {
        let spooled = self
            .store
            .as_mut()
            .and_then(|s| s.take_dropped().ok())
            .unwrap_or(0);
        std::mem::take(&mut self.outbox.dropped) + spooled
    }

    fn on_sent(&mut self, reply: Reply, running: &Runtime) {
        let Some(sending) = self.sending.take() else {
            return;
        };
        let result = match &reply {
            Reply::Heartbeat(r) | Reply::Telemetry(r) | Reply::Metrics(r) => r.clone(),
            Reply::Config { .. } => return,
        };
        match &result {
            Ok(()) | Err(CallError::Status(..) | CallError::Unauthorized(_)) => self.reachable(),
            Err(e @ CallError::Unreachable(_)) => self.unreachable(e, running),
            Err(CallError::NoToken(_)) => {}
        }
        if let Err(e) = &result {
            if !matches!(e, CallError::Unreachable(_)) {
                log::warn!("{e}");
            }
        }
        let ok = result.is_ok();
        match sending {
            Sending::Heartbeat => {}
            Sending::Spooled(seq, dropped) => {
                if ok {
                    if let Some(store) = self.store.as_mut() {
                        let _ = store.spool_remove(seq);
                    }
                } else {
                    self.outbox.dropped += dropped;
                }
            }
            Sending::Memory(dropped) => {
                if ok {
                    self.outbox.uploaded();
                } else {
                    self.outbox.failed();
                    self.outbox.dropped += dropped;
                    if self.state.offline_since.is_some() {
                        self.spool_outbox();
                    }
                }
            }
            Sending::SpooledMetrics(instance) => {
                if ok {
                    if let Some(store) = self.store.as_mut() {
                        let _ = store.unspool_metrics(&instance);
                    }
                }
            }
            Sending::Metrics(text) => {
                if !ok && self.metrics.is_none() {
                    self.metrics = Some(text);
                }
            }
        }
    }

    /// The name this run's metrics are uploaded under.
    fn metrics_instance(&self) -> String {
        format!("{}.{}", self.instance_id, self.run_id)
    }

    fn spool_metrics(&mut self, text: &str) {
        let instance = self.metrics_instance();
        if let Some(store) = self.store.as_mut() {
            let _ = store.spool_metrics(&instance, text);
        }
    }
}

impl Syncer for ServiceSync {
    fn attach(&mut self, inbox: &SyncSender<ToAgent>) -> std::io::Result<()> {
        self.callers = Some(Callers::spawn(&self.client, inbox)?);
        Ok(())
    }

    fn reload(&mut self) -> Vec<Update> {
        // SIGHUP in service mode: look at the pin now, and poll at once when idle
        self.next_poll = Instant::now();
        self.next_pin_check = Instant::now();
        let mut out = Vec::new();
        self.check_pin(&mut out);
        out.push(Update::Status(self.state()));
        out
    }

    fn tick(&mut self, running: &Runtime) -> Vec<Update> {
        let before = self.state.clone();
        let mut out = Vec::new();
        let now = Instant::now();
        if now >= self.next_pin_check {
            self.next_pin_check = now + PIN_CHECK_EVERY;
            self.check_pin(&mut out);
        }
        self.outbox.seal_due(now);
        let overflow = self.outbox.overflow();
        self.spool(overflow);
        if self.state.offline_since.is_some() && self.outbox.has_sealed() {
            self.spool_outbox();
        }
        self.dispatch(running);
        if self.state != before || out.iter().any(|u| matches!(u, Update::Apply(_))) {
            out.push(Update::Status(self.state()));
        }
        out
    }

    fn on_plane(&mut self, reply: Reply, running: &Runtime) -> Vec<Update> {
        let before = self.state.clone();
        let mut out = Vec::new();
        match reply {
            Reply::Config { result, held } => self.on_config(result, held, running, &mut out),
            other => self.on_sent(other, running),
        }
        // a new config is reported at once rather than at the next interval
        if out.iter().any(|u| matches!(u, Update::Apply(_))) {
            self.next_heartbeat = Instant::now();
        }
        let applied = out.iter().rev().find_map(|u| match u {
            Update::Apply(l) => Some(&l.runtime),
            _ => None,
        });
        let serving = applied.unwrap_or(running);
        // a heartbeat should say what will run, not what ran: dispatch after the apply
        if applied.is_none() {
            self.dispatch(serving);
        }
        if self.state != before || applied.is_some() {
            out.push(Update::Status(self.state()));
        }
        out
    }

    fn next_tick(&self) -> Instant {
        let mut due = self.next_pin_check;
        if !self.polling {
            due = due.min(self.next_poll);
        }
        if self.sending.is_none() {
            due = due.min(self.next_heartbeat);
            if self.outbox.has_sealed() && self.state.offline_since.is_none() {
                due = Instant::now();
            }
        }
        if let Some(seal) = self.outbox.next_seal() {
            due = due.min(seal);
        }
        due
    }

    fn telemetry(&mut self, records: String, dropped: u64) {
        self.outbox.push(&records, dropped, Instant::now());
    }

    fn uploads_metrics(&self) -> bool {
        self.upload_metrics
    }

    fn metrics(&mut self, text: String) {
        if self.state.offline_since.is_some() {
            // kept in the backup file, so a stop or crash while offline loses nothing
            self.spool_metrics(&text);
        }
        self.metrics = Some(Arc::from(text));
    }

    fn store(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }

    /// The last heartbeat (saying it stops) and the records still held go to the plane
    /// within `STOP_BUDGET`; what does not get through waits in the spool for the next
    /// start.
    fn shutdown(&mut self, running: &Runtime) {
        let deadline = Instant::now() + STOP_BUDGET;
        let online = self.state.offline_since.is_none();
        let mut batches = self.outbox.take_all();
        if online {
            let _ = self
                .client
                .heartbeat_within(&self.report(running, true), STOP_BUDGET / 2);
            let mut dropped = self.take_dropped();
            while let Some(batch) = batches.first() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if self
                    .client
                    .telemetry_within(&batch.body, dropped, left)
                    .is_err()
                {
                    break;
                }
                dropped = 0;
                batches.remove(0);
            }
            self.outbox.dropped += dropped;
        }
        self.spool(batches);
        let dropped = std::mem::take(&mut self.outbox.dropped);
        if let Some(store) = self.store.as_mut() {
            let _ = store.restore_dropped(dropped);
        }
        if let Some(text) = self.metrics.take() {
            self.spool_metrics(&text);
        }
    }
}

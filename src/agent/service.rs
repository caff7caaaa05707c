//! Service mode: configs come from the management plane. The agent long-polls
//! `/gateway/config` (falling back to plain polling every `config.service.poll.interval`
//! when the plane does not hold requests), backs up and applies each new valid document,
//! rejects an invalid one whole (the running config stays; the error shows in status and
//! the heartbeat), and sends a heartbeat every `config.service.heartbeat.interval`.
//! When the plane is unreachable it keeps the running config ("fails static"), records
//! since when it is offline, and retries with jittered backoff capped at the poll
//! interval, so a returning plane is noticed within one interval.
//!
//! At start it needs no network when a backup exists: a pinned version, else the newest
//! good backup is served at once and the first poll brings it up to date. Without a
//! backup it asks the plane once and refuses to start if that fails.
//! Must not touch: the loop, sockets of the data plane.

use std::time::{Duration, Instant, SystemTime};

use miniserde::json::{self, Number, Object, Value};

use super::client::{CallError, Fetched, PlaneClient};
use super::local::{newest_good, open_store, pinned, record};
use super::store::Store;
use super::{compile_and_resolve, Loaded, Syncer, Update};
use crate::config::{ConfigSource, Runtime};
use crate::settings::GatewaySettings;
use crate::status::SyncState;
use crate::telemetry::rfc3339;

/// How long one config poll may be held by the plane. Short, because the same thread
/// writes request logs; a change still arrives at once (the held poll returns).
pub const LONG_POLL_WAIT: Duration = Duration::from_secs(2);
/// First retry delay after a failed call; doubles up to the poll interval.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How often request records are uploaded.
pub const TELEMETRY_EVERY: Duration = Duration::from_secs(5);
/// Most bytes of records held in memory before they go to the spool.
const PENDING_MAX: usize = 4 * 1024 * 1024;

pub struct ServiceSync {
    client: PlaneClient,
    store: Option<Store>,
    poll_interval: Duration,
    heartbeat_interval: Duration,
    etag: Option<String>,
    state: SyncState,
    next_poll: Instant,
    next_heartbeat: Instant,
    backoff: Duration,
    instance_id: String,
    hostname: String,
    started: Instant,
    jitter_seed: u64,
    /// Request records not yet uploaded (NDJSON), their count, and records dropped
    /// before they reached this thread.
    pending: String,
    pending_records: u64,
    pending_dropped: u64,
    next_upload: Instant,
    /// The newest metrics snapshot not yet uploaded (only the newest matters: counters
    /// are cumulative).
    metrics: Option<String>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The expiry written in a `GatewayKey` token, as RFC 3339.
fn token_expiry(token: &str) -> Option<String> {
    let presented = crate::manage::token::parse(token).ok()?;
    let secs = crate::manage::token::parse_expiry(presented.expiry)?;
    Some(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
}

impl ServiceSync {
    pub fn new(settings: &GatewaySettings) -> Result<ServiceSync, String> {
        let client = PlaneClient::new(settings)?;
        let backup = settings
            .backup_enabled
            .then_some((settings.backup_path.as_path(), settings.backup_versions));
        let store = open_store(backup)?;
        let instance_id = {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 8];
            let _ = ring::rand::SystemRandom::new().fill(&mut b);
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        };
        let jitter_seed =
            u64::from_str_radix(&instance_id, 16).unwrap_or(0x9e37_79b9_7f4a_7c15) | 1;
        let now = Instant::now();
        let state = SyncState {
            token_expiry: client.token().ok().and_then(|t| token_expiry(&t)),
            ..SyncState::default()
        };
        Ok(ServiceSync {
            client,
            store,
            poll_interval: settings.poll_interval,
            heartbeat_interval: settings.heartbeat_interval,
            etag: None,
            state,
            next_poll: now,
            next_heartbeat: now,
            backoff: FIRST_BACKOFF,
            instance_id,
            hostname: hostname(),
            started: now,
            jitter_seed,
            pending: String::new(),
            pending_records: 0,
            pending_dropped: 0,
            next_upload: now + TELEMETRY_EVERY,
            metrics: None,
        })
    }

    pub fn state(&self) -> SyncState {
        self.state.clone()
    }

    /// The config to start with; `Err` is the one line to exit with.
    pub fn initial(&mut self) -> Result<Loaded, String> {
        let ignored = "the management plane's config is not applied";
        if let Some(loaded) = pinned(self.store.as_ref(), ignored) {
            return Ok(loaded);
        }
        if let Some(store) = self.store.as_ref() {
            if let Some(mut loaded) = newest_good(store)? {
                loaded.problem = Some(format!(
                    "started from backup version {}; syncing with {}",
                    loaded.runtime.version,
                    self.client.endpoint()
                ));
                self.state.last_error = loaded.problem.clone();
                return Ok(loaded);
            }
        }
        let reason = match self.client.fetch_config(None, Duration::ZERO) {
            Ok(Fetched::Document { text, etag }) => {
                match compile_and_resolve(&text, ConfigSource::Service) {
                    Ok(runtime) => {
                        record(self.store.as_mut(), &runtime, &text);
                        self.etag = etag;
                        self.state.last_sync_at = Some(SystemTime::now());
                        return Ok(Loaded {
                            runtime,
                            text,
                            problem: None,
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

    fn reachable(&mut self) {
        self.state.offline_since = None;
        self.backoff = FIRST_BACKOFF;
    }

    fn failed(&mut self, now: Instant) {
        let delay = self.jittered(self.backoff.min(self.poll_interval));
        self.next_poll = now + delay;
        self.backoff = (self.backoff * 2).min(self.poll_interval);
    }

    fn poll(&mut self, running: &Runtime, out: &mut Vec<Update>) {
        let started = Instant::now();
        let result = self
            .client
            .fetch_config(self.etag.as_deref(), LONG_POLL_WAIT);
        let now = Instant::now();
        self.state.token_expiry = self.client.token().ok().and_then(|t| token_expiry(&t));
        match result {
            Ok(Fetched::Document { text, etag }) => {
                self.reachable();
                self.state.last_sync_at = Some(SystemTime::now());
                self.next_poll = now;
                self.etag = etag;
                let compiling = Instant::now();
                match compile_and_resolve(&text, ConfigSource::Service) {
                    Ok(runtime) => {
                        let compiled = compiling.elapsed();
                        let pin = self.store.as_ref().and_then(|s| s.pinned().ok().flatten());
                        if let Some(pin) = pin {
                            // the pin holds until the plane sends a version not seen before
                            let seen = self
                                .store
                                .as_ref()
                                .and_then(|s| s.get(&runtime.version).ok())
                                .is_some();
                            if seen {
                                self.state.last_error = Some(format!(
                                    "pinned backup version {} is in force",
                                    pin.entry.version
                                ));
                                return;
                            }
                            if let Some(store) = self.store.as_mut() {
                                let _ = store.unpin();
                            }
                            log::info!(
                                "config version {} from the plane replaces pinned version {}",
                                runtime.version,
                                pin.entry.version
                            );
                        }
                        self.state.last_error = None;
                        if runtime.version == running.version
                            && running.source == ConfigSource::Service
                        {
                            return;
                        }
                        let backing_up = Instant::now();
                        record(self.store.as_mut(), &runtime, &text);
                        log::info!(
                            "config version {} from the plane ({} apis, {} KiB): compiled in {} ms, backed up in {} ms",
                            runtime.version,
                            runtime.apis.len(),
                            text.len() / 1024,
                            compiled.as_millis(),
                            backing_up.elapsed().as_millis()
                        );
                        out.push(Update::Apply(Loaded {
                            runtime,
                            text,
                            problem: None,
                        }));
                    }
                    Err(errors) => {
                        let first = errors.first().map(ToString::to_string).unwrap_or_default();
                        let reason = format!("config from the management plane rejected ({} error(s)); first: {first}", errors.len());
                        for e in &errors {
                            log::error!("config from the management plane rejected, running config kept: {e}");
                        }
                        self.state.last_error = Some(reason.clone());
                        out.push(Update::Rejected(reason));
                    }
                }
            }
            Ok(Fetched::NotModified) => {
                self.reachable();
                self.state.last_sync_at = Some(SystemTime::now());
                // a plane that answers at once does not hold requests: poll on the interval
                let held = now.duration_since(started) >= LONG_POLL_WAIT / 2;
                self.next_poll = if held { now } else { now + self.poll_interval };
                if self.state.last_error.as_deref().is_some_and(|e| {
                    e.starts_with("started from backup")
                        || e.starts_with("management plane")
                        || e.starts_with("token")
                }) {
                    self.state.last_error = None;
                }
            }
            Err(CallError::Unauthorized(m)) => {
                self.reachable();
                self.state.last_error =
                    Some(format!("token rejected by the management plane: {m}"));
                self.next_poll = now + self.poll_interval;
            }
            Err(e @ CallError::Status(..)) => {
                self.reachable();
                self.state.last_error = Some(e.to_string());
                self.failed(now);
            }
            Err(e @ CallError::Unreachable(_)) => {
                if self.state.offline_since.is_none() {
                    log::warn!(
                        "{e}; serving config version {} until it returns",
                        running.version
                    );
                    self.state.offline_since = Some(SystemTime::now());
                }
                self.state.last_error = Some(e.to_string());
                self.failed(now);
            }
        }
    }

    /// Moves the pending records to the spool (or counts them as dropped without one).
    fn spool_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let body = std::mem::take(&mut self.pending);
        let n = std::mem::take(&mut self.pending_records);
        let spooled = self.store.as_mut().is_some_and(|s| {
            s.spool_push(&body, n, super::store::SPOOL_MAX_BYTES)
                .is_ok()
        });
        if !spooled {
            self.pending_dropped += n;
        }
    }

    fn spool_metrics(&mut self, text: &str) {
        if let Some(store) = self.store.as_mut() {
            let _ = store.spool_metrics(&self.instance_id, text);
        }
    }

    /// Uploads spooled batches (oldest first), then the pending ones. While the plane is
    /// unreachable, everything goes to the spool instead.
    fn upload(&mut self) {
        if self.state.offline_since.is_some() {
            self.spool_pending();
            return;
        }
        while let Some((seq, body, _)) = self
            .store
            .as_ref()
            .and_then(|s| s.spool_oldest().ok().flatten())
        {
            if self.client.telemetry(&body, 0).is_err() {
                self.spool_pending();
                return;
            }
            if let Some(store) = self.store.as_mut() {
                let _ = store.spool_remove(seq);
            }
        }
        // snapshots of earlier runs (or of this one, made while offline) first
        let spooled = self
            .store
            .as_ref()
            .and_then(|s| s.spooled_metrics().ok())
            .unwrap_or_default();
        for (instance, body) in spooled {
            if self.client.metrics(&instance, &body).is_err() {
                return;
            }
            if let Some(store) = self.store.as_mut() {
                let _ = store.unspool_metrics(&instance);
            }
        }
        if let Some(text) = self.metrics.take() {
            if self.client.metrics(&self.instance_id, &text).is_err() {
                self.metrics = Some(text);
            }
        }
        let from_spool = self
            .store
            .as_mut()
            .and_then(|s| s.take_dropped().ok())
            .unwrap_or(0);
        let dropped = self.pending_dropped + from_spool;
        if self.pending.is_empty() && dropped == 0 {
            return;
        }
        match self.client.telemetry(&self.pending, dropped) {
            Ok(()) => {
                self.pending.clear();
                self.pending_records = 0;
                self.pending_dropped = 0;
            }
            Err(_) => {
                self.pending_dropped = dropped;
                self.spool_pending();
            }
        }
    }

    fn report(&self, running: &Runtime) -> String {
        let mut o = Object::new();
        let s = |v: &str| Value::String(v.to_string());
        let opt = |v: Option<String>| v.map_or(Value::Null, Value::String);
        o.insert("instanceId".into(), s(&self.instance_id));
        o.insert("hostname".into(), s(&self.hostname));
        o.insert("version".into(), s(env!("CARGO_PKG_VERSION")));
        o.insert("configVersion".into(), s(&running.version));
        o.insert("configSource".into(), s(running.source.as_str()));
        o.insert("configAppliedAt".into(), s(&rfc3339(running.applied_at)));
        o.insert(
            "uptimeSeconds".into(),
            Value::Number(Number::U64(self.started.elapsed().as_secs())),
        );
        o.insert(
            "offlineSince".into(),
            opt(self.state.offline_since.map(rfc3339)),
        );
        o.insert("lastSyncError".into(), opt(self.state.last_error.clone()));
        o.insert("tokenExpiry".into(), opt(self.state.token_expiry.clone()));
        o.insert(
            "heartbeatIntervalSeconds".into(),
            Value::Number(Number::U64(self.heartbeat_interval.as_secs().max(1))),
        );
        json::to_string(&Value::Object(o))
    }

    fn heartbeat(&mut self, running: &Runtime) {
        match self.client.heartbeat(&self.report(running)) {
            Ok(()) => {}
            Err(CallError::Unreachable(_)) => {
                if self.state.offline_since.is_none() {
                    self.state.offline_since = Some(SystemTime::now());
                }
            }
            Err(e) => log::warn!("heartbeat: {e}"),
        }
    }
}

impl Syncer for ServiceSync {
    fn reload(&mut self) -> Vec<Update> {
        // SIGHUP in service mode: honour a pin set with `edgegate backups rollback`, and
        // poll at once.
        self.next_poll = Instant::now();
        match pinned(
            self.store.as_ref(),
            "the management plane's config is not applied",
        ) {
            Some(loaded) => {
                self.state.last_error = loaded.problem.clone();
                vec![Update::Apply(loaded), Update::Status(self.state())]
            }
            None => Vec::new(),
        }
    }

    fn tick(&mut self, running: &Runtime) -> Vec<Update> {
        let before = self.state.clone();
        let mut out = Vec::new();
        // a due heartbeat goes first: a long poll may hold the thread for a while
        if Instant::now() >= self.next_heartbeat {
            self.next_heartbeat = Instant::now() + self.heartbeat_interval;
            self.heartbeat(running);
        }
        if Instant::now() >= self.next_poll {
            self.poll(running, &mut out);
            // a new config is reported at once rather than at the next interval
            let applied = out.iter().rev().find_map(|u| match u {
                Update::Apply(l) => Some(&l.runtime),
                _ => None,
            });
            if let Some(runtime) = applied {
                self.next_heartbeat = Instant::now() + self.heartbeat_interval;
                self.heartbeat(runtime);
            }
        }
        if Instant::now() >= self.next_upload {
            self.next_upload = Instant::now() + TELEMETRY_EVERY;
            self.upload();
        }
        if self.state != before || out.iter().any(|u| matches!(u, Update::Apply(_))) {
            out.push(Update::Status(self.state()));
        }
        out
    }

    fn next_tick(&self) -> Instant {
        self.next_poll
            .min(self.next_heartbeat)
            .min(self.next_upload)
    }

    fn telemetry(&mut self, records: String, dropped: u64) {
        self.pending_dropped += dropped;
        if self.pending.len() + records.len() > PENDING_MAX {
            self.spool_pending();
        }
        self.pending_records += records.lines().count() as u64;
        self.pending.push_str(&records);
    }

    fn metrics(&mut self, text: String) {
        if self.state.offline_since.is_some() {
            // kept in the backup file, so a stop or crash while offline loses nothing
            self.spool_metrics(&text);
        }
        self.metrics = Some(text);
    }

    fn store(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }
    fn shutdown(&mut self) {
        // what could not be sent yet waits in the spool for the next start
        self.spool_pending();
        if let Some(text) = self.metrics.take() {
            self.spool_metrics(&text);
        }
    }
}

//! The event loop. Owns the poll, the listener, the client and backend slabs, the buffer
//! pool and the running `Arc<Runtime>`. Routes readiness events to connections, accepts
//! up to `limits.connections.max` (then pauses accepting until a slot frees), swaps in
//! configs handed over by the agent between events (replaced ones go back to it to be
//! freed), sweeps deadlines every 100 ms, hands request-log batches to the log writer and
//! record batches, quota cells and metric counts to the agent, and drains on
//! SIGTERM/SIGINT.
//! Must not touch: disk, DNS, blocking channel operations (only `try_send`/`try_recv`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use super::backend::Backends;
use super::buffer::Pool;
use super::conn::{Client, Ctx, Limits, Outcome, Ready};
use super::external::ExternalLink;
use super::names::Names;
use super::one_way::{OneWay, ONE_WAY_OWNER};
use super::sub::Net;
use super::token::{self, Kind};
use super::transport::{Hello, Transport};
use crate::agent::{ToAgent, ToLoop};
use crate::config::Runtime;
use crate::log_writer::LogSender;
use crate::metrics::Metrics;
use crate::policy::limits::Counters;
use crate::settings::GatewaySettings;
use crate::status::SyncState;
use crate::telemetry::RequestLog;

const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Request-log batches go to the agent at this size, or at the next sweep.
const LOG_FLUSH_BYTES: usize = 32 * 1024;
/// How often what the loop counted goes to the agent (scrapes and uploads render there).
const METRICS_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often changed quota counters go to the agent to be persisted (a crash loses at
/// most this much counting).
const QUOTA_SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// Bytes the loop's policy counters may hold in all (rate-limit windows, quota cells,
/// concurrency keys, verified tokens); beyond it old keys make room for new ones.
pub const COUNTER_BYTES_MAX: usize = 64 << 20;

/// The loop's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    Http,
    Https,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    listener_ready: bool,
    clients: Slab<Client>,
    backends: Backends,
    pool: Pool,
    runtime: Option<Arc<Runtime>>,
    sync: SyncState,
    limits: Limits,
    log: RequestLog,
    seq: u64,
    id_prefix: u32,
    max_clients: usize,
    from_agent: Receiver<ToLoop>,
    to_agent: SyncSender<ToAgent>,
    reload: Arc<AtomicBool>,
    signals: Signals,
    shutdown_deadline: Option<Instant>,
    shutdown_timeout: Duration,
    again: Vec<usize>,
    now: Instant,
    /// Request metrics counted since the last hand-over to the agent, when enabled.
    metrics: Option<Metrics>,
    /// The HTTPS listener, bound once a config with certificates is applied.
    https_listener: Option<TcpListener>,
    https_ready: bool,
    https_addr: std::net::SocketAddr,
    next_snapshot: Instant,
    next_quota_snapshot: Instant,
    /// systemd's notification socket (readiness, status, watchdog), when started by it.
    notifier: Option<crate::notify::Notifier>,
    next_watchdog: Instant,
    /// Policy counters (rate limits, quotas, concurrency, verified tokens).
    counters: Counters,
    /// send-one-way-request's requests in flight (owned by the loop, not a client).
    one_way: OneWay,
    /// Host names policies' requests learned at request time, and the resolver
    /// thread's answers.
    names: Names,
    resolved: Option<Receiver<(String, Vec<std::net::IpAddr>)>>,
    /// The external cache (Redis), when `cache.external.url` is set.
    external: Option<ExternalLink>,
    /// Wall clock (ms since the epoch), read once per loop turn.
    wall_ms: u64,
    /// Where request records and the loop's own log lines go (the log writer thread).
    logs: LogSender,
    /// Replaced runtimes the agent could not take yet (its queue was full); they go at
    /// the next sweep, so a large config is never freed on the loop.
    retiring: Vec<Arc<Runtime>>,
}

impl Server {
    /// Builds the loop around an already bound listener and an already registered waker
    /// (the agent holds the waker). `runtime` is the config loaded at start, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        settings: &GatewaySettings,
        runtime: Option<Arc<Runtime>>,
        sync: SyncState,
        from_agent: Receiver<ToLoop>,
        to_agent: SyncSender<ToAgent>,
        reload: Arc<AtomicBool>,
        logs: LogSender,
    ) -> io::Result<Server> {
        poll.registry()
            .register(&mut listener, token::HTTP_LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        poll.registry()
            .register(&mut signals, token::SIGNALS, Interest::READABLE)?;
        let limits = Limits {
            head_max: settings.head_max,
            body_max: settings.body_max,
            header_timeout: settings.client_header_timeout,
            idle_timeout: settings.client_idle_timeout,
            connect_timeout: settings.backend_connect_timeout,
            response_timeout: settings.backend_response_timeout,
            trust_forwarded_proto: settings.forwarded_proto_enabled,
            service_mode: settings.service_endpoint.is_some(),
            expression_steps: settings.expression_steps_max,
            expression_bytes: settings.expression_memory_max,
        };
        let max = settings.connections_max;
        let now = Instant::now();
        let id_prefix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ std::process::id().rotate_left(16);
        Ok(Server {
            poll,
            listener: Some(listener),
            listener_ready: false,
            clients: Slab::with_capacity(64),
            backends: Backends::new(max * 2),
            pool: Pool::new(settings.head_max, settings.buffers_max),
            runtime,
            sync,
            limits,
            log: RequestLog::new(
                settings.logs_std,
                settings.metrics_cloud && settings.service_endpoint.is_some(),
            ),
            seq: 0,
            id_prefix,
            max_clients: max,
            from_agent,
            to_agent,
            reload,
            signals,
            shutdown_deadline: None,
            shutdown_timeout: settings.shutdown_timeout,
            again: Vec::new(),
            now,
            // scraped locally or uploaded to the plane: counted here, rendered elsewhere
            metrics: (settings.metrics_local == crate::settings::LocalMetrics::Prometheus
                || (settings.metrics_cloud && settings.service_endpoint.is_some()))
            .then(|| Metrics::new(settings.metrics_labels)),
            https_listener: None,
            https_ready: false,
            https_addr: settings.https_listen,
            next_snapshot: now + METRICS_FLUSH_EVERY,
            next_quota_snapshot: now + QUOTA_SNAPSHOT_EVERY,
            notifier: crate::notify::Notifier::from_env(),
            next_watchdog: now,
            one_way: OneWay::default(),
            names: Names::default(),
            resolved: None,
            external: None,
            counters: Counters::new(COUNTER_BYTES_MAX)
                .with_cache(crate::policy::cache::Cache::new(settings.cache_memory_max)),
            wall_ms: wall_ms(),
            logs,
            retiring: Vec::new(),
        })
    }

    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Runs until drained after SIGTERM/SIGINT. Log records from this thread are
    /// buffered and written by the agent (see `sys`).
    pub fn run(mut self) -> io::Result<()> {
        crate::sys::mark_loop_thread();
        self.ensure_https();
        if let Some(n) = &self.notifier {
            let version = self.runtime.as_ref().map_or("none", |r| r.version.as_str());
            // EDGEGATE_LISTEN: where it listens (an ephemeral port included), for whoever
            // started it; systemd ignores the field
            let listen = self
                .listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map_or(String::new(), |a| format!("\nEDGEGATE_LISTEN=http://{a}"));
            n.send(&format!(
                "READY=1\nSTATUS=serving config version {version}{listen}"
            ));
        }
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let timeout = if !self.again.is_empty() || (self.listener_ready && self.can_accept()) {
                Duration::ZERO
            } else if self.clients.is_empty() && self.shutdown_deadline.is_none() {
                // idle: wake once a second, or for the next watchdog ping if sooner
                let watchdog = self.notifier.as_ref().and_then(|n| n.watchdog_every());
                match watchdog {
                    Some(_) => Duration::from_secs(1)
                        .min(self.next_watchdog.saturating_duration_since(Instant::now()))
                        .max(SWEEP_EVERY),
                    None => Duration::from_secs(1),
                }
            } else {
                SWEEP_EVERY
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.now = Instant::now();
            self.wall_ms = wall_ms();
            for event in events.iter() {
                match event.token() {
                    token::HTTP_LISTENER => self.listener_ready = true,
                    token::HTTPS_LISTENER => self.https_ready = true,
                    token::WAKER => self.take_agent_messages(),
                    token::SIGNALS => self.take_signals(),
                    t => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        let writable =
                            event.is_writable() || event.is_write_closed() || event.is_error();
                        match token::kind(t) {
                            Kind::Client(k) => {
                                if let Some(c) = self.clients.get_mut(k) {
                                    c.readable |= readable;
                                    c.writable |= writable;
                                    self.drive(k, false);
                                }
                            }
                            Kind::Backend(b) => {
                                let closed = event.is_read_closed() || event.is_error();
                                let ready = Ready {
                                    readable,
                                    writable,
                                    closed,
                                };
                                self.backend_event(b, ready);
                            }
                        }
                    }
                }
            }
            if self.listener_ready {
                self.accept_on(Listener::Http);
            }
            if self.https_ready {
                self.accept_on(Listener::Https);
            }
            for k in std::mem::take(&mut self.again) {
                self.drive(k, false);
            }
            self.policies_turn();
            if self.now >= next_sweep {
                next_sweep = self.now + SWEEP_EVERY;
                self.sweep();
                self.flush_logs();
                if self.now >= self.next_snapshot {
                    self.next_snapshot = self.now + METRICS_FLUSH_EVERY;
                    self.flush_metrics();
                }
                if self.now >= self.next_quota_snapshot {
                    self.next_quota_snapshot = self.now + QUOTA_SNAPSHOT_EVERY;
                    self.snapshot_quotas();
                }
                // the loop itself pings: if it stops turning, systemd restarts us
                if let Some((n, every)) = self
                    .notifier
                    .as_ref()
                    .and_then(|n| n.watchdog_every().map(|e| (n, e)))
                {
                    if self.now >= self.next_watchdog {
                        self.next_watchdog = self.now + every;
                        n.send("WATCHDOG=1");
                    }
                }
            }
            // request records go in batches; the loop's own events (rare) at once
            if self.log.batch.len() >= LOG_FLUSH_BYTES || crate::sys::loop_logs_pending() {
                self.flush_logs();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.clients.is_empty() || self.now >= deadline {
                    if !self.clients.is_empty() {
                        log::warn!(
                            "shutdown deadline reached with {} connections open; closing them",
                            self.clients.len()
                        );
                    }
                    break;
                }
            }
        }
        // Leaving the loop: the last lines go to the agent if it can take them. It may be
        // stuck on a full stderr, and exiting must not wait for that, so this thread keeps
        // buffering to the end.
        if self.log.dropped > 0 {
            log::warn!(
                "{} request log records were dropped because stderr was too slow",
                self.log.dropped
            );
        }
        log::info!("stopped");
        self.snapshot_quotas();
        self.flush_metrics();
        if let Some((records, dropped)) = self.log.take_cloud() {
            let _ = self.to_agent.try_send(ToAgent::Telemetry(records, dropped));
        }
        let mut last = self.log.take().unwrap_or_default();
        last.push_str(&crate::sys::take_loop_logs());
        if !last.is_empty() {
            let _ = self.logs.try_send(last);
        }
        Ok(())
    }

    fn can_accept(&self) -> bool {
        self.listener.is_some() && self.clients.len() < self.max_clients
    }

    /// Binds the HTTPS listener when the running config has certificates and it is not
    /// bound yet (bind and listen are immediate; nothing here waits).
    fn ensure_https(&mut self) {
        let wanted = self.runtime.as_ref().is_some_and(|r| r.tls.is_some());
        if !wanted || self.https_listener.is_some() || self.shutdown_deadline.is_some() {
            return;
        }
        match TcpListener::bind(self.https_addr) {
            Ok(mut l) => {
                let registered = self.poll.registry().register(
                    &mut l,
                    token::HTTPS_LISTENER,
                    Interest::READABLE,
                );
                match (registered, l.local_addr()) {
                    (Ok(()), Ok(addr)) => {
                        log::info!("serving HTTPS on https://{addr}");
                        self.https_listener = Some(l);
                        self.https_ready = true;
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        log::error!("cannot serve HTTPS on {}: {e}", self.https_addr);
                    }
                }
            }
            Err(e) => log::error!("cannot listen on {} for HTTPS: {e}", self.https_addr),
        }
    }

    /// Accepts what `which` holds, up to the connection limit. HTTPS connections start
    /// a TLS handshake with the running config's certificates; metrics connections
    /// answer `/metrics` only.
    fn accept_on(&mut self, which: Listener) {
        while self.clients.len() < self.max_clients {
            let listener = match which {
                Listener::Http => self.listener.as_ref(),
                Listener::Https => self.https_listener.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((sock, peer)) => self.admit(sock, peer, which),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *match which {
                        Listener::Http => &mut self.listener_ready,
                        Listener::Https => &mut self.https_ready,
                    } = false;
                    return;
                }
                Err(e) => {
                    // e.g. EMFILE: the connection stays queued; retry on the next turn.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Registers an accepted connection and adds its client.
    fn admit(&mut self, sock: TcpStream, peer: std::net::SocketAddr, which: Listener) {
        let _ = sock.set_nodelay(true);
        let mut transport = match which {
            Listener::Https => {
                let Some(tls) = self.runtime.as_ref().and_then(|r| r.tls.clone()) else {
                    // the config lost its certificates: no handshake to offer
                    return;
                };
                match tls.single() {
                    Some(config) => match rustls::ServerConnection::new(Arc::clone(config)) {
                        Ok(conn) => {
                            Transport::Tls(sock, Box::new(rustls::Connection::Server(conn)))
                        }
                        Err(_) => return,
                    },
                    // SNI decides whether to ask for a client certificate
                    None => Transport::Accepting(Box::new(Hello::new(sock, tls))),
                }
            }
            Listener::Http => Transport::Plain(sock),
        };
        let entry = self.clients.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if transport
            .register(self.poll.registry(), token::client(entry.key()), interest)
            .is_ok()
        {
            entry.insert(Client::new(transport, peer, self.now, &self.limits));
        }
    }

    fn backend_event(&mut self, key: usize, ready: Ready) {
        let Some(owner) = self
            .backends
            .on_event(key, ready.readable, self.poll.registry())
        else {
            return;
        };
        if owner == ONE_WAY_OWNER {
            self.one_way_turn(Some((key, (ready.readable, ready.writable, ready.closed))));
            return;
        }
        let taken = self
            .clients
            .get_mut(owner)
            .is_some_and(|c| c.backend_ready(key, ready));
        if taken {
            self.drive(owner, false);
        }
    }

    fn drive(&mut self, key: usize, timed_out: bool) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let mut ctx = Ctx {
            now: self.now,
            registry: self.poll.registry(),
            backends: &mut self.backends,
            client: key,
            pool: &mut self.pool,
            runtime: self.runtime.as_ref(),
            sync: &self.sync,
            limits: &self.limits,
            log: &mut self.log,
            draining: self.shutdown_deadline.is_some(),
            seq: &mut self.seq,
            id_prefix: self.id_prefix,
            metrics: self.metrics.as_mut(),
            counters: &mut self.counters,
            wall_ms: self.wall_ms,
            gateway_id: self.sync.gateway_id(),
            names: &mut self.names,
            external: self.external.as_mut(),
        };
        let outcome = if timed_out {
            client.on_timeout(&mut ctx)
        } else {
            client.drive(&mut ctx)
        };
        match outcome {
            Outcome::Close => {
                let mut c = self.clients.remove(key);
                c.transport.deregister(self.poll.registry());
            }
            Outcome::Again => self.again.push(key),
            Outcome::Open => {}
        }
    }

    fn sweep(&mut self) {
        let now = self.now;
        let expired: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            self.drive(key, true);
        }
        self.one_way_turn(None);
        self.backends.sweep(now, self.poll.registry());
        self.pool.trim();
        self.counters.sweep(self.wall_ms);
        self.retire();
    }

    /// What the policies left for after the turn: one-way requests, the external
    /// cache's commands, and what they asked the agent for (OpenID configurations whose
    /// keys a token missed, resources without an access token).
    fn policies_turn(&mut self) {
        self.one_way_turn(None);
        self.external_turn();
        for url in self.counters.keys.take_wanted() {
            let _ = self.to_agent.try_send(ToAgent::RefreshKeys(url));
        }
        for resource in self.counters.tokens.take_wanted() {
            let _ = self.to_agent.try_send(ToAgent::WantToken(resource));
        }
    }

    /// Moves the one-way requests: readiness of one of their connections, or (`None`)
    /// the outbox's new ones and the timeouts and answers of the rest.
    fn one_way_turn(&mut self, ready: Option<(usize, (bool, bool, bool))>) {
        let mut net = Net {
            backends: &mut self.backends,
            names: &mut self.names,
            registry: self.poll.registry(),
            owner: ONE_WAY_OWNER,
            now: self.now,
        };
        match ready {
            Some((key, ready)) => {
                self.one_way.ready(key, ready, &mut net);
            }
            None => {
                let rt = self.runtime.as_deref();
                self.one_way
                    .take_from(&mut self.counters.outbox, rt, &mut net);
                self.one_way.sweep(&mut net);
            }
        }
    }

    /// The external cache's worker; `counters`: limits count in it.
    pub fn attach_external(&mut self, link: crate::agent::redis::RedisLink, counters: bool) {
        self.external = Some(ExternalLink::new(link));
        self.counters.external.configured = true;
        self.counters.external.counters = counters;
    }

    /// The external cache's answers go to the clients waiting for them; what the
    /// policies send without waiting goes to it; its state is refreshed.
    fn external_turn(&mut self) {
        let Some(ext) = self.external.as_mut() else {
            return;
        };
        self.counters.external.up = ext.up();
        self.sync.external_cache_up = Some(self.counters.external.up);
        for command in self.counters.external.take() {
            ext.send(command);
        }
        let answers = ext.answers();
        for (ticket, answer) in answers {
            let waits = self
                .clients
                .get_mut(ticket.owner)
                .is_some_and(|c| c.external_answer(ticket.id, answer));
            if waits {
                self.drive(ticket.owner, false);
            }
        }
    }

    /// Names policies compute at request time are looked up by `resolver`'s thread.
    pub fn attach_resolver(&mut self, resolver: crate::agent::resolver::Resolver) {
        self.names = Names::with_resolver(resolver.asks);
        self.resolved = Some(resolver.answers);
    }

    /// The resolver's answers: kept, and whoever waited is driven.
    fn take_resolved(&mut self) {
        let mut owners = Vec::new();
        while let Some(Ok((host, ips))) = self.resolved.as_ref().map(Receiver::try_recv) {
            owners.extend(self.names.answered(host, ips, self.now));
        }
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            if owner == ONE_WAY_OWNER {
                self.one_way_turn(None);
            } else {
                self.drive(owner, false);
            }
        }
    }

    fn take_agent_messages(&mut self) {
        self.take_resolved();
        self.external_turn();
        while let Ok(msg) = self.from_agent.try_recv() {
            match msg {
                ToLoop::Apply {
                    runtime: rt,
                    problem,
                    note,
                    backup_versions,
                } => {
                    log::info!(
                        "config version {} ({}) applied, {} apis",
                        rt.version,
                        rt.source.as_str(),
                        rt.apis.len()
                    );
                    if let Some(n) = &self.notifier {
                        n.send(&format!("STATUS=serving config version {}", rt.version));
                    }
                    if let Some(old) = self.runtime.replace(rt) {
                        self.retiring.push(old);
                    }
                    self.retire();
                    self.ensure_https();
                    // verified tokens were checked against the old config's keys
                    self.counters.forget_tokens();
                    self.sync.last_sync_at = Some(SystemTime::now());
                    self.sync.last_error = problem;
                    self.sync.note = note;
                    self.sync.backup_versions = backup_versions;
                }
                ToLoop::Backups(count) => self.sync.backup_versions = count,
                ToLoop::Keys(url, set) => self.counters.keys.insert(url, set),
                ToLoop::Token(resource, token) => self.counters.tokens.insert(resource, token),
                ToLoop::Status(state) => {
                    // the agent's sync view; the backup count comes with applies
                    let versions = self.sync.backup_versions;
                    let external = self.sync.external_cache_up;
                    self.sync = state;
                    self.sync.backup_versions = versions;
                    self.sync.external_cache_up = external;
                }
                ToLoop::Rejected(reason) => {
                    self.sync.last_sync_at = Some(SystemTime::now());
                    self.sync.last_error = Some(reason);
                }
            }
        }
    }

    /// Hands replaced runtimes to the agent, which frees each once no request holds it
    /// (freeing a 10,000-API config takes tens of milliseconds). A full queue keeps them
    /// here for the next sweep.
    fn retire(&mut self) {
        while let Some(old) = self.retiring.pop() {
            match self.to_agent.try_send(ToAgent::Retire(old)) {
                Ok(()) => {}
                Err(TrySendError::Full(ToAgent::Retire(old))) => {
                    self.retiring.push(old);
                    return;
                }
                // the agent is gone (the process is stopping): nothing left to spare
                Err(_) => return,
            }
        }
    }

    fn take_signals(&mut self) {
        let mut reload = false;
        let mut stop = false;
        for signal in self.signals.pending() {
            match signal {
                SIGHUP => reload = true,
                SIGTERM | SIGINT => stop = true,
                _ => {}
            }
        }
        if reload {
            // The flag is what counts; the message only wakes an idle agent.
            self.reload.store(true, Ordering::SeqCst);
            let _ = self.to_agent.try_send(ToAgent::Reload);
        }
        if stop && self.shutdown_deadline.is_none() {
            self.begin_shutdown();
        }
    }

    fn begin_shutdown(&mut self) {
        if let Some(n) = &self.notifier {
            n.send("STOPPING=1\nSTATUS=draining");
        }
        log::info!(
            "shutting down: no new connections, draining {} open ones",
            self.clients.len()
        );
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if let Some(mut l) = self.https_listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shutdown_deadline = Some(self.now + self.shutdown_timeout);
        let idle: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.is_idle())
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            let mut c = self.clients.remove(key);
            c.transport.deregister(self.poll.registry());
        }
    }

    /// Hands what was counted since the last flush, and the gauges now, to the agent;
    /// if it cannot take them now, they are added to the next flush.
    fn flush_metrics(&mut self) {
        let Some(metrics) = self.metrics.as_mut() else {
            return;
        };
        let gauges = crate::metrics::Gauges {
            log_records_dropped: self.log.dropped,
            cache: self.counters.cache.stats(),
            one_way: self.one_way.stats(),
            external_up: self.external.as_ref().map(ExternalLink::up),
            external_dropped: self.counters.external.dropped
                + self.external.as_ref().map_or(0, |e| e.dropped),
            ..crate::metrics::Gauges::of(
                self.runtime.as_deref(),
                &self.sync,
                self.limits.service_mode,
                self.clients.len(),
            )
        };
        let delta = Box::new(crate::agent::scrape::MetricsDelta {
            counted: metrics.take(),
            gauges: crate::metrics::GaugeValues::of(&gauges),
        });
        if let Err(
            TrySendError::Full(ToAgent::Metrics(delta))
            | TrySendError::Disconnected(ToAgent::Metrics(delta)),
        ) = self.to_agent.try_send(ToAgent::Metrics(delta))
        {
            metrics.merge(delta.counted);
        }
    }

    /// Hands the quota counters changed since the last snapshot to the agent, which
    /// persists them in the backup store; if it cannot take them now, they go next time.
    fn snapshot_quotas(&mut self) {
        let cells = self.counters.export_quotas();
        if cells.is_empty() {
            return;
        }
        if let Err(
            TrySendError::Full(ToAgent::Quotas(cells))
            | TrySendError::Disconnected(ToAgent::Quotas(cells)),
        ) = self.to_agent.try_send(ToAgent::Quotas(cells))
        {
            self.counters.unexport_quotas(&cells);
        }
    }

    /// Starts the quota counters from what an earlier run persisted.
    /// Signing keys kept from an earlier run (validate-jwt openid-config).
    pub fn restore_keys(&mut self, sets: Vec<(String, Arc<crate::policy::keyring::KeySet>)>) {
        for (url, set) in sets {
            self.counters.keys.insert(url, set);
        }
    }

    pub fn restore_quotas(&mut self, cells: Vec<crate::policy::limits::QuotaCell>) {
        let n = cells.len();
        self.counters.import_quotas(cells, self.wall_ms / 1000);
        if n > 0 {
            log::info!("{n} quota counters restored from the backup store");
        }
    }

    fn flush_logs(&mut self) {
        let events = crate::sys::take_loop_logs();
        if !events.is_empty() {
            self.log.batch.push_str(&events);
        }
        if let Some((records, dropped)) = self.log.take_cloud() {
            if let Err(
                TrySendError::Full(ToAgent::Telemetry(records, dropped))
                | TrySendError::Disconnected(ToAgent::Telemetry(records, dropped)),
            ) = self.to_agent.try_send(ToAgent::Telemetry(records, dropped))
            {
                self.log.restore_cloud(records, dropped);
            }
        }
        if let Some(batch) = self.log.take() {
            if let Err(batch) = self.logs.try_send(batch) {
                // keep it for the next turn; RequestLog bounds the batch
                self.log.batch = batch;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn runtime(version: &str) -> Arc<Runtime> {
        let doc = format!(
            r#"{{"schemaVersion": 1, "version": "{version}", "apis": [{{"id": "a", "path": "a", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false}}]}}"#
        );
        Arc::new(crate::config::compile(&doc, crate::config::ConfigSource::Local).unwrap())
    }

    /// Before, `ToAgent::Retire` was declared but never sent: a replaced runtime was
    /// freed on the loop (tens of milliseconds for a large config).
    #[test]
    fn a_replaced_runtime_is_handed_to_the_agent_to_free() {
        let poll = Poll::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let settings = GatewaySettings::defaults(false);
        let (to_loop, from_agent) = mpsc::channel();
        let (to_agent, agent_inbox) = mpsc::sync_channel(4);
        let writer = crate::log_writer::LogWriter::spawn(Box::new(std::io::sink())).unwrap();
        let first = runtime("v1");
        let mut server = Server::new(
            poll,
            listener,
            &settings,
            Some(Arc::clone(&first)),
            SyncState::default(),
            from_agent,
            to_agent,
            Arc::new(AtomicBool::new(false)),
            writer.sender(),
        )
        .unwrap();
        let second = runtime("v2");
        to_loop
            .send(ToLoop::Apply {
                runtime: Arc::clone(&second),
                problem: None,
                note: None,
                backup_versions: None,
            })
            .unwrap();
        server.take_agent_messages();
        assert!(server
            .runtime
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &second)));
        match agent_inbox.try_recv() {
            Ok(ToAgent::Retire(old)) => assert!(Arc::ptr_eq(&old, &first)),
            _ => panic!("the old runtime was not handed over"),
        }
        // only this test and nothing on the loop holds the old one now
        assert_eq!(Arc::strong_count(&first), 1);
        writer.stop(Duration::from_secs(1));
    }
}

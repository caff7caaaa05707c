//! One client connection and the exchange it may be running with a backend. The loop
//! calls `drive` after readiness events (and `on_timeout` when the deadline passes);
//! `drive` moves bytes until it is blocked and returns whether the connection stays
//! open. Readiness is tracked per socket (mio is edge-triggered): a flag is set by an
//! event and cleared by WouldBlock or a short read/write.
//!
//! ```text
//!            ┌────────── keep-alive ◀──────────────────────────┐
//!            ▼                                                 │
//!  Waiting ──bytes──▶ Head ──parsed──▶ Proxy(Exchange) ──done──┤
//!     │                 │ error / status / 404 ──▶ Reply ──────┘ (or close)
//!     └─ idle timeout ──┴─ head timeout (408) ──▶ Reply ──▶ close
//!
//!  Exchange: connect ─▶ send head ─▶ [100 Continue] ─▶ stream request body
//!            ─▶ await response head (1xx skipped) ─▶ send head ─▶ stream body ─▶ done
//!            failure before the response head went out ─▶ Reply (502/504/…)
//!            failure after it ─▶ close (the client sees a truncated body)
//! ```
//! Invariants: bytes of the next pipelined request are never forwarded with the current
//! one (bodies are counted exactly); buffers are held only while data is in flight.
//! Must not touch: listeners, the poll (except register/deregister through Backends),
//! config loading, disk.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::Registry;

use super::backend::Backends;
use super::buffer::{Buf, Class, Pool};
use super::gate::{self, Call};
use super::transport::{Transport, Wire};
use crate::config::Runtime;
use crate::http::chunked::ChunkedDecoder;
use crate::http::failure::{failure_body, render, JSON};
use crate::http::forward::{self, BackendRequest, ClientFraming, SliceWriter};
use crate::http::request::{self, BodyKind, MAX_HEADERS};
use crate::http::response::{self, ResponseBody, MAX_RESPONSE_HEADERS};
use crate::http::Failure;
use crate::metrics::Metrics;
use crate::pipeline::exec::{
    self, Flow, HeaderSrc, OwnedRequest, RequestView, ResponseView, Target,
};
use crate::policy::limits::Counters;
use crate::policy::Retry;
use crate::status::{self, SyncState};
use crate::telemetry::{Record, Redaction, RequestLog};
use rustls_pki_types::ServerName;

/// Limits the connection obeys (from settings).
#[derive(Clone, Debug)]
pub struct Limits {
    pub head_max: usize,
    pub body_max: u64,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub trust_forwarded_proto: bool,
    /// Federated to a management plane (metrics say whether it is reachable).
    pub service_mode: bool,
}

/// What `drive` may use besides the connection itself.
pub struct Ctx<'a> {
    pub now: Instant,
    pub registry: &'a Registry,
    pub backends: &'a mut Backends,
    pub pool: &'a mut Pool,
    pub runtime: Option<&'a Arc<Runtime>>,
    pub sync: &'a SyncState,
    pub limits: &'a Limits,
    pub log: &'a mut RequestLog,
    pub draining: bool,
    pub seq: &'a mut u64,
    pub id_prefix: u32,
    /// Request metrics counted since the last hand-over, when metrics are on.
    pub metrics: Option<&'a mut Metrics>,
    /// Rate limits, quotas, concurrency slots and verified tokens (policies).
    pub counters: &'a mut Counters,
    /// Wall clock in milliseconds since the epoch (policies' windows and token times).
    pub wall_ms: u64,
    /// `context.Deployment.GatewayId`.
    pub gateway_id: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Open,
    /// The drive stopped at its step bound with work left: drive again soon.
    Again,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Progress,
    Blocked,
    Close,
}

/// Most state transitions per `drive` call, so one busy connection cannot starve others.
const MAX_STEPS: usize = 64;

pub struct Client {
    /// Plain TCP, or TLS on the HTTPS listener.
    pub transport: Transport,
    pub peer: SocketAddr,
    /// `peer.ip()` as text, for X-Forwarded-For (formatted once per connection).
    peer_ip: Box<str>,
    pub readable: bool,
    pub writable: bool,
    eof: bool,
    inbuf: Option<Buf>,
    phase: Phase,
    pub deadline: Instant,
    phase_since: Instant,
    /// When the first byte of the current request arrived (its total time starts here).
    request_started: Instant,
    /// The client connection closes once the current answer is written.
    close_after: bool,
    /// The client sent bytes of a next request while this one is answered; they wait in
    /// the socket (no more peeking) until the exchange ends.
    pipelined: bool,
    /// A plan needs the whole request body: the head buffer grows to this size.
    want_capacity: usize,
    /// The interim 100 Continue while the body is gathered for a plan.
    interim: Interim,
}

/// A `100 Continue` the gateway answers itself (a plan reads the body before the
/// backend is asked): written like any other bytes, so a short write or TLS back-
/// pressure finishes it before anything else goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interim {
    NotSent,
    /// Bytes of `CONTINUE` still to write.
    Pending(usize),
    Sent,
}

enum Phase {
    /// Between requests. `fresh`: no request seen on this connection yet.
    Waiting {
        fresh: bool,
    },
    /// Some head bytes have arrived.
    Head,
    /// An answer from the gateway itself.
    Reply {
        out: ReplyBytes,
    },
    Proxy(Box<Exchange>),
    /// Nothing more can be said on this connection; the next drive closes it.
    Closing,
}

/// The bytes of a gateway answer being written.
enum ReplyBytes {
    Pooled(Buf),
    Owned { data: Vec<u8>, sent: usize },
}

impl ReplyBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            ReplyBytes::Pooled(b) => b.bytes(),
            ReplyBytes::Owned { data, sent } => &data[*sent..],
        }
    }
    fn consume(&mut self, n: usize) {
        match self {
            ReplyBytes::Pooled(b) => b.consume(n),
            ReplyBytes::Owned { data, sent } => *sent = (*sent + n).min(data.len()),
        }
    }
    fn len(&self) -> usize {
        self.bytes().len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn release(self, pool: &mut Pool) {
        if let ReplyBytes::Pooled(b) = self {
            pool.put(b);
        }
    }
}

/// Log fields captured when logging is on (no allocation otherwise).
struct Trace {
    id: String,
    method: String,
    url: String,
    wall: SystemTime,
}

enum ReqBody {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

enum RespBody {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    Dechunk(ChunkedDecoder),
    UntilClose,
}

enum Resp {
    AwaitHead,
    SendHead { body: RespBody, reusable: bool },
    Body { body: RespBody, reusable: bool },
}

struct Exchange {
    rt: Arc<Runtime>,
    api: u32,
    op: u32,
    backend: usize,
    addr: SocketAddr,
    retried: bool,
    retryable: bool,
    /// Request head for the backend; after the response head arrives, the response head
    /// for the client.
    head: Option<Buf>,
    head_sent: usize,
    continue_left: usize,
    req: ReqBody,
    req_sendable: usize,
    resp_buf: Option<Buf>,
    resp: Resp,
    resp_sendable: usize,
    backend_eof: bool,
    http10: bool,
    is_head: bool,
    started: Instant,
    connect_started: Instant,
    backend_started: Option<Instant>,
    last_client: Instant,
    last_backend: Instant,
    status: u16,
    backend_status: Option<u16>,
    bytes_in: u64,
    bytes_out: u64,
    /// Head bytes: the client's request head, and the response head written to it
    /// (logged sizes are head and body, as APIM's RequestSize and ResponseSize).
    client_head: u64,
    response_head_out: u64,
    trace: Option<Box<Trace>>,
    /// Policy state, when the operation's plan does anything.
    call: Option<Box<Call>>,
    /// forward-request's timeout, replacing the response timeout.
    timeout: Option<Duration>,
    /// The caller's subscription (index into the runtime's), for the log.
    subscription: Option<u32>,
    /// `<retry>`: attempts sent again so far, and when the next one starts (between
    /// attempts the exchange holds no backend connection).
    retries: u32,
    retry_at: Option<Instant>,
    /// When the whole request had been read from the client.
    request_read: Option<Instant>,
    /// `https://` backend: the name its certificate must carry.
    tls: Option<Arc<ServerName<'static>>>,
}

impl Exchange {
    /// The TLS to speak to the backend, for `https://`. An error when the runtime has no
    /// client config for it (the agent logged why): never a plain connection instead.
    fn backend_tls(
        &self,
    ) -> io::Result<Option<(&Arc<ServerName<'static>>, &Arc<rustls::ClientConfig>)>> {
        match (&self.tls, &self.rt.backend_tls) {
            (None, _) => Ok(None),
            (Some(name), Some(config)) => Ok(Some((name, config))),
            (Some(_), None) => Err(io::Error::other("no TLS client config for https backends")),
        }
    }

    /// Takes a backend connection (pooled or new) for the next attempt.
    fn attach_backend(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        let key = ctx
            .backends
            .checkout(self.addr, self.backend_tls()?, false, ctx.registry)?;
        self.backend = key;
        self.connect_started = ctx.now;
        self.last_backend = ctx.now;
        if ctx.backends.slab.get(key).is_some_and(|b| b.connected) {
            self.backend_started = Some(ctx.now);
        }
        Ok(())
    }
}

/// An answer the gateway gave itself, as the request log and metrics record it.
struct LocalAnswer<'a> {
    status: u16,
    api: &'a str,
    op: &'a str,
    product: &'a str,
    subscription: &'a str,
    error: Option<&'a str>,
    method: &'a str,
    url: &'a str,
    /// context.RequestId when policies ran (their answer carries it).
    request_id: Option<String>,
    /// Request bytes read (head and body).
    bytes_in: u64,
}

impl<'a> LocalAnswer<'a> {
    /// A refusal before anything about the request is known.
    fn refusal(f: Failure) -> LocalAnswer<'a> {
        LocalAnswer {
            status: f.status(),
            api: "",
            op: "",
            product: "",
            subscription: "",
            error: Some(f.reason()),
            method: "-",
            url: "-",
            request_id: None,
            bytes_in: 0,
        }
    }
}

/// Why a backend connection could not be started: the loop's own slots ran out, or
/// the connect itself failed.
fn connect_failure(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::OutOfMemory {
        Failure::Exhausted(BACKEND_SLOTS_EXHAUSTED)
    } else {
        Failure::BackendConnect
    }
}

/// Log reasons of local exhaustion and internal errors.
const BACKEND_SLOTS_EXHAUSTED: &str = "backend_connections_exhausted";
const BUFFERS_EXHAUSTED: &str = "buffers_exhausted";
const NO_CALL: &str = "internal_no_policy_state";
const STALE_IDS: &str = "internal_stale_route";

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Advances an interim 100 Continue on `wire`. `None` = nothing (more) to write;
/// `Some` = the step to stop with (blocked until writable, or the client is gone).
fn write_interim(interim: &mut Interim, wire: &mut impl Wire, writable: &mut bool) -> Option<Step> {
    let Interim::Pending(left) = *interim else {
        return None;
    };
    if !*writable {
        return Some(Step::Blocked);
    }
    match write_some(wire, &CONTINUE[CONTINUE.len() - left..], writable) {
        Io::Done(n) if n >= left => {
            *interim = Interim::Sent;
            None
        }
        Io::Done(n) => {
            *interim = Interim::Pending(left - n);
            Some(Step::Progress)
        }
        Io::Blocked => Some(Step::Blocked),
        Io::Eof | Io::Failed => Some(Step::Close),
    }
}

enum Io {
    Done(usize),
    Eof,
    Blocked,
    Failed,
}

/// Whether the client hung up while its request is being answered. Peeks, so that
/// pipelined bytes stay in the socket for later (`pipelined` then says so).
fn client_gone(sock: &mut Transport, readable: &mut bool, pipelined: &mut bool) -> bool {
    if !*readable || *pipelined {
        return false;
    }
    let mut probe = [0u8; 1];
    match sock.peek(&mut probe) {
        Ok(0) => true,
        Ok(_) => {
            *pipelined = true;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            *readable = false;
            false
        }
        Err(e) => e.kind() != io::ErrorKind::Interrupted,
    }
}

/// Reads into `buf`; a short read clears the readiness flag (edge-triggered epoll
/// reports new data with a new event).
fn read_some(sock: &mut impl Wire, buf: &mut Buf, ready: &mut bool) -> Io {
    let space = buf.space();
    let want = space.len();
    if want == 0 {
        return Io::Blocked;
    }
    loop {
        match sock.read(space) {
            Ok(0) => return Io::Eof,
            Ok(n) => {
                if n < want && sock.short_io_is_final() {
                    *ready = false;
                }
                buf.filled(n);
                return Io::Done(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                return Io::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Io::Failed,
        }
    }
}

fn write_some(sock: &mut impl Wire, data: &[u8], ready: &mut bool) -> Io {
    loop {
        match sock.write(data) {
            Ok(0) => return Io::Failed,
            Ok(n) => {
                if n < data.len() && sock.short_io_is_final() {
                    *ready = false;
                }
                return Io::Done(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                return Io::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Io::Failed,
        }
    }
}

/// Writes `first` then `second` with one `writev`, so a head and the body bytes already
/// at hand leave in one segment.
fn write_pair(sock: &mut impl Wire, first: &[u8], second: &[u8], ready: &mut bool) -> Io {
    if second.is_empty() {
        return write_some(sock, first, ready);
    }
    let total = first.len() + second.len();
    loop {
        match sock.write_vectored(&[io::IoSlice::new(first), io::IoSlice::new(second)]) {
            Ok(0) => return Io::Failed,
            Ok(n) => {
                if n < total && sock.short_io_is_final() {
                    *ready = false;
                }
                return Io::Done(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *ready = false;
                return Io::Blocked;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Io::Failed,
        }
    }
}

/// Marks the next run of request body bytes at the front of `inbuf` as sendable,
/// validating chunked framing and the body limit on the way.
fn refill_request(
    req: &mut ReqBody,
    inbuf: &Buf,
    sendable: &mut usize,
    body_max: u64,
) -> Result<(), Failure> {
    match req {
        ReqBody::Length(rem) => {
            let n = (*rem).min(inbuf.len() as u64);
            *rem -= n;
            *sendable = n as usize;
        }
        ReqBody::Chunked(dec) => {
            let step = dec
                .feed(inbuf.bytes())
                .map_err(|e| Failure::BadRequest(e.reason()))?;
            if body_max > 0 && dec.payload > body_max {
                return Err(Failure::BodyTooLarge);
            }
            *sendable = step.consumed;
        }
        ReqBody::Done => {}
    }
    Ok(())
}

/// Marks the next run of response bytes at the front of `rbuf` as sendable (for a
/// de-chunked body, framing bytes are dropped first). `Err` = the backend broke framing.
fn refill_response(
    body: &mut RespBody,
    reusable: &mut bool,
    rbuf: &mut Buf,
    sendable: &mut usize,
) -> Result<(), ()> {
    match body {
        RespBody::Done => {
            // bytes after a complete response: the backend is confused
            *reusable = false;
        }
        RespBody::Length(rem) => {
            let n = (*rem).min(rbuf.len() as u64);
            *rem -= n;
            *sendable = n as usize;
        }
        RespBody::Chunked(dec) => *sendable = dec.feed(rbuf.bytes()).map_err(|_| ())?.consumed,
        RespBody::Dechunk(dec) => {
            let s = dec.feed(rbuf.bytes()).map_err(|_| ())?;
            rbuf.consume(s.data.0);
            *sendable = s.data.1 - s.data.0;
        }
        RespBody::UntilClose => *sendable = rbuf.len(),
    }
    Ok(())
}

/// Moves a full buffer to the next class up (head → data → large); false at the top.
fn grow_full(pool: &mut Pool, buf: &mut Buf) -> bool {
    if buf.capacity() < pool.size_of(Class::Data) {
        pool.grow(buf, Class::Data)
    } else {
        pool.grow(buf, Class::Large)
    }
}

/// Writes a head with `write` into `out` (a `Class::Head` buffer), moving to a
/// `Class::Large` buffer when it does not fit. `Err` = too large even for that.
fn write_head(
    pool: &mut Pool,
    out: &mut Buf,
    write: impl Fn(&mut SliceWriter) -> Result<(), forward::Full>,
) -> Result<(), forward::Full> {
    loop {
        let mut w = SliceWriter::new(out.whole_mut());
        match write(&mut w) {
            Ok(()) => {
                let len = w.len;
                out.filled(len);
                return Ok(());
            }
            Err(full) => {
                if !pool.grow(out, Class::Large) {
                    return Err(full);
                }
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Client {
    pub fn new(transport: Transport, peer: SocketAddr, now: Instant, limits: &Limits) -> Client {
        Client {
            transport,
            peer,
            peer_ip: peer.ip().to_string().into_boxed_str(),
            readable: false,
            writable: false,
            eof: false,
            inbuf: None,
            phase: Phase::Waiting { fresh: true },
            deadline: now + limits.header_timeout,
            phase_since: now,
            request_started: now,
            close_after: false,
            pipelined: false,
            want_capacity: 0,
            interim: Interim::NotSent,
        }
    }

    /// True when no request is in progress and nothing is buffered (shutdown closes it).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. })
            && self.inbuf.as_ref().is_none_or(Buf::is_empty)
            && !self.transport.has_pending_output()
    }

    /// The backend this connection is using, if any (to route backend events).
    pub fn backend(&self) -> Option<usize> {
        match &self.phase {
            Phase::Proxy(x) => Some(x.backend),
            _ => None,
        }
    }

    /// Returns every buffer and closes the backend; call before dropping the client.
    pub fn release(&mut self, ctx: &mut Ctx) {
        self.release_because(ctx, "client_closed_or_aborted");
    }

    /// `release`, logging an unfinished exchange with `reason`.
    fn release_because(&mut self, ctx: &mut Ctx, reason: &str) {
        ctx.pool.put_opt(&mut self.inbuf);
        match std::mem::replace(&mut self.phase, Phase::Waiting { fresh: false }) {
            Phase::Reply { out } => out.release(ctx.pool),
            Phase::Proxy(mut x) => {
                if x.status == 0 {
                    x.status = 499;
                }
                end_call(&mut x, ctx);
                log_exchange(&x, self.peer, ctx, Some(reason));
                ctx.pool.put_opt(&mut x.head);
                ctx.pool.put_opt(&mut x.resp_buf);
                ctx.backends.remove(x.backend, ctx.registry);
            }
            _ => {}
        }
    }

    pub fn drive(&mut self, ctx: &mut Ctx) -> Outcome {
        // TLS records the socket could not take last time go first
        if self.writable && self.transport.has_pending_output() {
            match self.transport.flush_pending() {
                Ok(true) => {}
                Ok(false) => self.writable = false,
                Err(_) => {
                    self.release(ctx);
                    return Outcome::Close;
                }
            }
        }
        for _ in 0..MAX_STEPS {
            let step = match self.phase {
                Phase::Waiting { .. } | Phase::Head => self.read_head(ctx),
                Phase::Reply { .. } => self.write_reply(ctx),
                Phase::Proxy(_) => self.step_exchange(ctx),
                // waiting for the last TLS records to leave
                Phase::Closing if self.transport.has_pending_output() => Step::Blocked,
                Phase::Closing => Step::Close,
            };
            match step {
                Step::Progress => continue,
                Step::Blocked => {
                    self.update_deadline(ctx);
                    return Outcome::Open;
                }
                Step::Close if self.transport.has_pending_output() => {
                    // an answer still in TLS records: close once they are out (or at
                    // the idle timeout)
                    self.release(ctx);
                    self.set_phase(Phase::Closing, ctx.now);
                    self.update_deadline(ctx);
                    return Outcome::Open;
                }
                Step::Close => {
                    self.release(ctx);
                    self.transport.close();
                    return Outcome::Close;
                }
            }
        }
        self.update_deadline(ctx);
        Outcome::Again
    }

    /// The deadline passed: answer 408/502/504 where an answer is still possible.
    pub fn on_timeout(&mut self, ctx: &mut Ctx) -> Outcome {
        if matches!(&self.phase, Phase::Proxy(x) if x.retry_at.is_some()) {
            // not a timeout: the wait before a <retry> attempt is over
            return self.drive(ctx);
        }
        let failure = match &self.phase {
            Phase::Waiting { .. } | Phase::Reply { .. } | Phase::Closing => None,
            Phase::Head => Some(Failure::HeadTimeout),
            Phase::Proxy(x) => {
                let head_out = !matches!(x.resp, Resp::AwaitHead);
                let connected = ctx
                    .backends
                    .slab
                    .get(x.backend)
                    .is_some_and(|b| b.connected);
                if head_out {
                    None
                } else if !connected {
                    Some(Failure::BackendConnectTimeout)
                } else if self.waiting_on_client_body() {
                    Some(Failure::BodyTimeout)
                } else {
                    Some(Failure::BackendTimeout)
                }
            }
        };
        match failure {
            None => {
                self.release_because(ctx, "client_timeout");
                Outcome::Close
            }
            Some(f) => {
                if let Phase::Proxy(_) = self.phase {
                    self.fail_exchange(f, ctx);
                } else {
                    self.start_reply(f.status(), &failure_body(f), true, false, ctx);
                    self.log_local(LocalAnswer::refusal(f), ctx);
                }
                self.drive(ctx)
            }
        }
    }

    fn waiting_on_client_body(&self) -> bool {
        match &self.phase {
            Phase::Proxy(x) => !matches!(x.req, ReqBody::Done) && x.req_sendable == 0,
            _ => false,
        }
    }

    fn update_deadline(&mut self, ctx: &Ctx) {
        let l = ctx.limits;
        self.deadline = match &self.phase {
            Phase::Waiting { fresh: true } => self.phase_since + l.header_timeout,
            Phase::Waiting { fresh: false } => self.phase_since + l.idle_timeout,
            Phase::Head => self.phase_since + l.header_timeout,
            Phase::Reply { .. } | Phase::Closing => self.phase_since + l.idle_timeout,
            Phase::Proxy(x) => {
                let connected = ctx
                    .backends
                    .slab
                    .get(x.backend)
                    .is_some_and(|b| b.connected);
                if let Some(at) = x.retry_at {
                    at
                } else if !connected {
                    x.connect_started + l.connect_timeout
                } else if self.waiting_on_client_body() || x.resp_sendable > 0 {
                    x.last_client + l.idle_timeout
                } else {
                    x.last_backend + x.timeout.unwrap_or(l.response_timeout)
                }
            }
        };
    }

    fn set_phase(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.phase_since = now;
    }

    // ------------------------------------------------------------------ head reading

    /// Writes what is left of an interim 100 Continue. `Some` = stop here (blocked on
    /// the client, or it is gone).
    fn flush_interim(&mut self) -> Option<Step> {
        write_interim(&mut self.interim, &mut self.transport, &mut self.writable)
    }

    /// The buffer budget is spent: 503 and close (the request is not read further).
    fn refuse_exhausted(&mut self, ctx: &mut Ctx) -> Step {
        let f = Failure::Exhausted(BUFFERS_EXHAUSTED);
        ctx.pool.put_opt(&mut self.inbuf);
        self.start_reply(f.status(), &failure_body(f), true, false, ctx);
        self.log_local(LocalAnswer::refusal(f), ctx);
        Step::Progress
    }

    fn read_head(&mut self, ctx: &mut Ctx) -> Step {
        if let Some(step) = self.flush_interim() {
            return step;
        }
        if self.inbuf.as_ref().is_some_and(|b| !b.is_empty()) {
            if let Some(step) = self.dispatch(ctx) {
                return step;
            }
        }
        if !self.readable {
            if self.eof {
                return Step::Close;
            }
            if self.inbuf.as_ref().is_some_and(Buf::is_empty) {
                ctx.pool.put_opt(&mut self.inbuf);
            }
            return Step::Blocked;
        }
        if self.inbuf.is_none() {
            match ctx.pool.get(Class::Head) {
                Some(b) => self.inbuf = Some(b),
                None => return self.refuse_exhausted(ctx),
            }
        }
        let Some(buf) = self.inbuf.as_mut() else {
            return Step::Close;
        };
        // a head that does not fit yet: a larger buffer, up to limits.request.head.max
        // (or the size a plan needs to hold the whole body)
        if !buf.has_space() {
            let grown = if self.want_capacity > buf.capacity() {
                ctx.pool.grow_exact(buf, self.want_capacity)
            } else {
                grow_full(ctx.pool, buf)
            };
            if !grown && self.want_capacity > buf.capacity() {
                // a plan needs the whole body and the budget cannot hold it now
                return self.refuse_exhausted(ctx);
            }
            if !grown {
                return Step::Close;
            }
        }
        match read_some(&mut self.transport, buf, &mut self.readable) {
            Io::Done(_) => {
                if let Phase::Waiting { .. } = self.phase {
                    self.set_phase(Phase::Head, ctx.now);
                    self.request_started = Instant::now();
                }
                Step::Progress
            }
            Io::Blocked => Step::Progress,
            Io::Eof | Io::Failed => Step::Close,
        }
    }

    /// Parses the buffered head and starts the answer. `None` = need more bytes.
    fn dispatch(&mut self, ctx: &mut Ctx) -> Option<Step> {
        let inbuf = self.inbuf.as_ref()?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match request::parse(inbuf.bytes(), &mut headers, ctx.limits.head_max) {
            Ok(None) => return None,
            Ok(Some(h)) => h,
            Err(f) => {
                self.start_reply(f.status(), &failure_body(f), true, false, ctx);
                self.log_local(LocalAnswer::refusal(f), ctx);
                return Some(Step::Progress);
            }
        };
        let head_len = head.head_len;
        let has_body = head.body != BodyKind::None;
        let close = !head.keep_alive || ctx.draining;
        let is_head = head.is_head();
        let expect_continue = head.expect_continue;
        let decision = decide(
            &head,
            &inbuf.bytes()[head_len..],
            &self.peer_ip,
            self.transport.is_tls(),
            ctx,
        );
        if let Decision::NeedBody(want) = decision {
            self.want_capacity = want;
            if expect_continue && self.interim == Interim::NotSent {
                // the client waits for this before it sends the body the plan needs
                self.interim = Interim::Pending(CONTINUE.len());
                return self.flush_interim();
            }
            return None;
        }
        self.want_capacity = 0;
        self.interim = Interim::NotSent;
        match decision {
            Decision::NeedBody(_) => return None,
            Decision::Raw {
                bytes,
                status,
                consumed,
                close,
                method,
                url,
                api,
                op,
                request_id,
                reason,
                subscription,
                product,
            } => {
                if let Some(b) = self.inbuf.as_mut() {
                    b.consume(head_len + consumed);
                }
                self.start_reply_bytes(bytes, close, ctx);
                let error = reason.as_deref();
                self.log_local(
                    LocalAnswer {
                        status,
                        api,
                        op,
                        product: &product,
                        subscription: &subscription,
                        error,
                        method: &method,
                        url: &url,
                        request_id: Some(request_id),
                        bytes_in: (head_len + consumed) as u64,
                    },
                    ctx,
                );
            }
            Decision::Reply {
                status,
                content_type,
                body,
                failure,
                method,
                url,
                api,
            } => {
                if let Some(b) = self.inbuf.as_mut() {
                    b.consume(head_len);
                }
                // A body we will not read makes the connection unusable.
                let close = close || has_body || failure.is_some_and(Failure::closes_connection);
                self.start_reply_as(status, content_type, &body, close, is_head, ctx);
                self.log_local(
                    LocalAnswer {
                        status,
                        api,
                        op: "",
                        product: "",
                        subscription: "",
                        error: failure.map(Failure::reason),
                        method: &method,
                        url: &url,
                        request_id: None,
                        bytes_in: head_len as u64,
                    },
                    ctx,
                );
            }
            Decision::Proxy(mut x, consumed) => {
                if let Some(b) = self.inbuf.as_mut() {
                    b.consume(head_len + consumed);
                }
                self.close_after = close;
                match x.attach_backend(ctx) {
                    Ok(()) => self.set_phase(Phase::Proxy(x), ctx.now),
                    Err(e) => {
                        ctx.pool.put_opt(&mut x.head);
                        let f = connect_failure(&e);
                        x.status = f.status();
                        log_exchange(&x, self.peer, ctx, Some(f.reason()));
                        self.start_reply(
                            f.status(),
                            &failure_body(f),
                            close || has_body,
                            is_head,
                            ctx,
                        );
                    }
                }
            }
        }
        Some(Step::Progress)
    }

    fn start_reply(
        &mut self,
        status: u16,
        body: &str,
        close: bool,
        head_only: bool,
        ctx: &mut Ctx,
    ) {
        self.start_reply_as(status, JSON, body, close, head_only, ctx);
    }

    /// Queues a complete answer from the gateway itself. Small ones (nearly all) go in a
    /// pooled buffer; a large one (metrics) in its own allocation, freed once written.
    fn start_reply_as(
        &mut self,
        status: u16,
        content_type: &str,
        body: &str,
        close: bool,
        head_only: bool,
        ctx: &mut Ctx,
    ) {
        let mut bytes = Vec::with_capacity(160 + body.len());
        render(status, content_type, body, close, head_only, &mut bytes);
        self.start_reply_bytes(bytes, close, ctx);
    }

    /// Queues a rendered answer (head and body).
    fn start_reply_bytes(&mut self, bytes: Vec<u8>, close: bool, ctx: &mut Ctx) {
        let out = if bytes.len() <= ctx.pool.size_of(Class::Data) {
            let class = if bytes.len() <= ctx.pool.size_of(Class::Head) {
                Class::Head
            } else {
                Class::Data
            };
            match ctx.pool.get(class) {
                Some(mut buf) => {
                    buf.whole_mut()[..bytes.len()].copy_from_slice(&bytes);
                    buf.filled(bytes.len());
                    ReplyBytes::Pooled(buf)
                }
                // the budget is spent: this answer (a 503, most likely) still goes out,
                // in its own small allocation
                None => ReplyBytes::Owned {
                    data: bytes,
                    sent: 0,
                },
            }
        } else {
            ReplyBytes::Owned {
                data: bytes,
                sent: 0,
            }
        };
        self.close_after = close;
        if let Phase::Reply { out } = std::mem::replace(&mut self.phase, Phase::Head) {
            out.release(ctx.pool);
        }
        self.set_phase(Phase::Reply { out }, ctx.now);
    }

    #[allow(clippy::too_many_arguments)]
    /// Logs an answer the gateway gave itself (its size is what is queued to write).
    fn log_local(&self, answer: LocalAnswer, ctx: &mut Ctx) {
        let LocalAnswer {
            status,
            api,
            op,
            product,
            subscription,
            error,
            method,
            url,
            request_id: given_id,
            bytes_in,
        } = answer;
        let probe = crate::status::STATUS_PATHS.contains(&url);
        let total = ms(Instant::now().saturating_duration_since(self.request_started));
        if let Some(m) = ctx.metrics.as_deref_mut().filter(|_| !probe) {
            let call = crate::metrics::Call {
                api,
                operation: op,
                product,
                subscription,
                status,
                reason: error,
            };
            let timings = crate::metrics::Timings {
                total,
                gateway: total,
                ..crate::metrics::Timings::default()
            };
            m.observe(&call, timings);
        }
        if !ctx.log.enabled() {
            return;
        }
        let id = match given_id {
            Some(id) => id,
            None => {
                *ctx.seq += 1;
                request_id(ctx.id_prefix, *ctx.seq)
            }
        };
        ctx.log.push(&Record {
            time: SystemTime::now(),
            request_id: &id,
            client_ip: self.peer.ip(),
            method,
            url,
            api,
            operation: op,
            subscription,
            status,
            backend_status: None,
            bytes_in,
            // head and body, as for proxied answers
            bytes_out: match &self.phase {
                Phase::Reply { out } => out.len() as u64,
                _ => 0,
            },
            total_ms: total,
            backend_ms: None,
            error,
            probe,
        });
    }

    fn write_reply(&mut self, ctx: &mut Ctx) -> Step {
        let Phase::Reply { out } = &mut self.phase else {
            return Step::Close;
        };
        if !out.is_empty() {
            if !self.writable {
                return Step::Blocked;
            }
            match write_some(&mut self.transport, out.bytes(), &mut self.writable) {
                Io::Done(n) => {
                    out.consume(n);
                    return Step::Progress;
                }
                Io::Blocked => return Step::Blocked,
                Io::Eof | Io::Failed => return Step::Close,
            }
        }
        if self.close_after {
            return Step::Close;
        }
        if let Phase::Reply { out } =
            std::mem::replace(&mut self.phase, Phase::Waiting { fresh: false })
        {
            out.release(ctx.pool);
        }
        self.phase_since = ctx.now;
        Step::Progress
    }

    // ------------------------------------------------------------------ the exchange

    fn step_exchange(&mut self, ctx: &mut Ctx) -> Step {
        let Phase::Proxy(x) = &mut self.phase else {
            return Step::Close;
        };
        // 0. <retry>: the next attempt starts when its wait is over (unless the client
        // left meanwhile)
        if let Some(at) = x.retry_at {
            if client_gone(&mut self.transport, &mut self.readable, &mut self.pipelined) {
                return Step::Close;
            }
            if ctx.now < at {
                return Step::Blocked;
            }
            x.retry_at = None;
            if let Err(e) = x.attach_backend(ctx) {
                self.fail_exchange(connect_failure(&e), ctx);
                return Step::Progress;
            }
        }
        let Some(b) = ctx.backends.slab.get_mut(x.backend) else {
            return Step::Close;
        };
        let mut progress = false;

        // 1. connection established?
        if !b.connected {
            if !b.writable {
                return Step::Blocked;
            }
            let ok = match b.transport.sock().take_error() {
                Ok(None) => match b.transport.sock().peer_addr() {
                    Ok(_) => true,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        b.writable = false;
                        return Step::Blocked;
                    }
                    Err(_) => false,
                },
                _ => false,
            };
            if !ok {
                self.fail_exchange(Failure::BackendConnect, ctx);
                return Step::Progress;
            }
            b.connected = true;
            x.backend_started = Some(ctx.now);
            x.last_backend = ctx.now;
        }

        // 2. request head to the backend, with the body bytes already buffered
        if let (Resp::AwaitHead, Some(head)) = (&x.resp, x.head.as_ref()) {
            if x.head_sent < head.len() {
                if !b.writable {
                    return Step::Blocked;
                }
                if x.req_sendable == 0 && x.continue_left == 0 {
                    if let Some(inbuf) = self.inbuf.as_ref().filter(|b| !b.is_empty()) {
                        if let Err(f) = refill_request(
                            &mut x.req,
                            inbuf,
                            &mut x.req_sendable,
                            ctx.limits.body_max,
                        ) {
                            self.fail_exchange(f, ctx);
                            return Step::Progress;
                        }
                    }
                }
                let head_rest = &head.bytes()[x.head_sent..];
                let body = match self.inbuf.as_ref() {
                    Some(inbuf) => &inbuf.bytes()[..x.req_sendable],
                    None => &[],
                };
                let head_len = head_rest.len();
                match write_pair(&mut b.transport, head_rest, body, &mut b.writable) {
                    Io::Done(n) => {
                        let h = n.min(head_len);
                        x.head_sent += h;
                        if n > h {
                            if let Some(inbuf) = self.inbuf.as_mut() {
                                inbuf.consume(n - h);
                            }
                            x.req_sendable -= n - h;
                            x.bytes_in += (n - h) as u64;
                        }
                        x.last_backend = ctx.now;
                        progress = true;
                    }
                    Io::Blocked => return Step::Blocked,
                    Io::Eof | Io::Failed => return self.backend_broke(ctx),
                }
                if x.head_sent < head.len() {
                    return if progress {
                        Step::Progress
                    } else {
                        Step::Blocked
                    };
                }
            }
        }

        // 3. 100 Continue to the client, once the request is on its way
        if x.continue_left > 0 && self.writable {
            let from = CONTINUE.len() - x.continue_left;
            match write_some(&mut self.transport, &CONTINUE[from..], &mut self.writable) {
                Io::Done(n) => {
                    x.continue_left -= n;
                    progress = true;
                }
                Io::Blocked => {}
                Io::Eof | Io::Failed => return Step::Close,
            }
        }

        // 4. request body
        if !matches!(x.req, ReqBody::Done) {
            if self.inbuf.is_none() {
                self.inbuf = ctx.pool.get(Class::Head);
            }
            let Some(inbuf) = self.inbuf.as_mut() else {
                return Step::Close;
            };
            if x.req_sendable == 0 && !inbuf.is_empty() {
                if let Err(f) =
                    refill_request(&mut x.req, inbuf, &mut x.req_sendable, ctx.limits.body_max)
                {
                    self.fail_exchange(f, ctx);
                    return Step::Progress;
                }
            }
            if x.req_sendable > 0 && b.writable {
                match write_some(
                    &mut b.transport,
                    &inbuf.bytes()[..x.req_sendable],
                    &mut b.writable,
                ) {
                    Io::Done(n) => {
                        inbuf.consume(n);
                        x.req_sendable -= n;
                        x.bytes_in += n as u64;
                        x.last_backend = ctx.now;
                        progress = true;
                    }
                    Io::Blocked => {}
                    Io::Eof | Io::Failed => return self.backend_broke(ctx),
                }
            }
            let body_complete = match &x.req {
                ReqBody::Length(0) => true,
                ReqBody::Chunked(d) => d.is_done(),
                _ => false,
            };
            if body_complete && x.req_sendable == 0 {
                x.req = ReqBody::Done;
                x.request_read = Some(ctx.now);
                progress = true;
            } else if x.req_sendable == 0 && self.readable {
                // a body that fills the small buffer streams on through a data-sized one
                if !inbuf.has_space() && inbuf.capacity() < ctx.pool.size_of(Class::Data) {
                    ctx.pool.grow(inbuf, Class::Data);
                }
                match read_some(&mut self.transport, inbuf, &mut self.readable) {
                    Io::Done(_) => {
                        x.last_client = ctx.now;
                        progress = true;
                    }
                    Io::Blocked => {}
                    // the client went away mid-body
                    Io::Eof | Io::Failed => return Step::Close,
                }
            }
        }

        // 4b. a client that goes away while its request is being answered aborts it (as
        // nginx does)
        if matches!(x.req, ReqBody::Done)
            && client_gone(&mut self.transport, &mut self.readable, &mut self.pipelined)
        {
            return Step::Close;
        }

        // 5. response from the backend
        if x.resp_buf.is_none() {
            x.resp_buf = ctx.pool.get(Class::Head);
        }
        let Some(rbuf) = x.resp_buf.as_mut() else {
            return Step::Close;
        };
        // a response that fills its small buffer streams on through a data-sized one
        if !rbuf.has_space() && rbuf.capacity() < ctx.pool.size_of(Class::Data) {
            ctx.pool.grow(rbuf, Class::Data);
        }
        if b.readable && !x.backend_eof && rbuf.has_space() && x.resp_sendable == 0 {
            match read_some(&mut b.transport, rbuf, &mut b.readable) {
                Io::Done(_) => {
                    x.last_backend = ctx.now;
                    progress = true;
                }
                Io::Blocked => {}
                Io::Eof => {
                    x.backend_eof = true;
                    progress = true;
                }
                Io::Failed => {
                    if matches!(x.resp, Resp::AwaitHead) {
                        return self.backend_broke(ctx);
                    }
                    return Step::Close;
                }
            }
        }

        match &mut x.resp {
            Resp::AwaitHead => {
                let head_sent = x.head.as_ref().is_none_or(|h| x.head_sent >= h.len());
                if !head_sent {
                    return if progress {
                        Step::Progress
                    } else {
                        Step::Blocked
                    };
                }
                let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
                let parsed = response::parse(
                    rbuf.bytes(),
                    &mut headers,
                    x.is_head,
                    ctx.pool.size_of(Class::Data),
                );
                match parsed {
                    Ok(None) => {
                        if x.backend_eof {
                            if rbuf.is_empty() {
                                return self.backend_broke(ctx);
                            }
                            self.fail_exchange(
                                Failure::BackendBadResponse("backend_truncated_head"),
                                ctx,
                            );
                            return Step::Progress;
                        }
                    }
                    Err(f) => {
                        self.fail_exchange(f, ctx);
                        return Step::Progress;
                    }
                    Ok(Some(r)) if (100..200).contains(&r.status) => {
                        let n = r.head_len;
                        let switching = r.status == 101;
                        if switching {
                            self.fail_exchange(
                                Failure::BackendBadResponse("backend_upgrade_unsupported"),
                                ctx,
                            );
                            return Step::Progress;
                        }
                        rbuf.consume(n);
                        return Step::Progress;
                    }
                    Ok(Some(r)) => {
                        // <retry>: this answer may call for another attempt
                        let retry = retry_plan(x.call.as_deref(), x.retries, &x.req);
                        if let (Some(retry), Some(call)) = (retry, x.call.as_deref()) {
                            if wants_retry(retry, &x.rt, call, r.status, r.reason, r.headers, ctx) {
                                let delay = retry_wait(retry, x.retries, ctx);
                                schedule_retry(x, delay, ctx);
                                return Step::Progress;
                            }
                        }
                        // policies: outbound runs on the response head (and on the whole
                        // body when a policy needs it)
                        let mut status = r.status;
                        let mut reason_override: Option<String> = None;
                        let mut edits = None;
                        if x.call.is_some() {
                            let close =
                                self.close_after || ctx.draining || !matches!(x.req, ReqBody::Done);
                            let call = x.call.as_deref_mut();
                            match outbound(
                                &x.rt,
                                call,
                                x.is_head,
                                x.backend_eof,
                                &r,
                                rbuf.bytes(),
                                close,
                                ctx,
                            ) {
                                Outbound::NeedBody => {
                                    let want = (rbuf.capacity() * 2)
                                        .clamp(64 * 1024, gate::BUFFERED_BODY_MAX + 64 * 1024);
                                    if !rbuf.has_space() && !ctx.pool.grow_exact(rbuf, want) {
                                        let f = if want > rbuf.capacity() {
                                            // the size is allowed: the budget is spent
                                            Failure::Exhausted(BUFFERS_EXHAUSTED)
                                        } else {
                                            Failure::BackendBadResponse(
                                                "backend_body_too_large_for_policy",
                                            )
                                        };
                                        self.fail_exchange(f, ctx);
                                        return Step::Progress;
                                    }
                                    return if progress {
                                        Step::Progress
                                    } else {
                                        Step::Blocked
                                    };
                                }
                                Outbound::Failed(f) => {
                                    self.fail_exchange(f, ctx);
                                    return Step::Progress;
                                }
                                Outbound::Answer {
                                    bytes,
                                    status,
                                    consumed,
                                } => {
                                    let backend_status = r.status;
                                    let reusable =
                                        consumed.is_some_and(|n| n == rbuf.len()) && r.reusable;
                                    return self.answer_exchange(
                                        bytes,
                                        status,
                                        backend_status,
                                        reusable,
                                        close,
                                        ctx,
                                    );
                                }
                                Outbound::Stream {
                                    status: s,
                                    reason,
                                    headers,
                                } => {
                                    status = s;
                                    reason_override = reason;
                                    edits = Some(headers);
                                }
                            }
                        }
                        let dechunk = x.http10 && r.body == ResponseBody::Chunked;
                        let close = self.close_after
                            || ctx.draining
                            || dechunk
                            || (r.body == ResponseBody::UntilClose)
                            || !matches!(x.req, ReqBody::Done);
                        self.close_after = close;
                        let connection = if close {
                            Some("close")
                        } else if x.http10 {
                            Some("keep-alive")
                        } else {
                            None
                        };
                        let framing = if dechunk {
                            ClientFraming::Dechunk
                        } else {
                            ClientFraming::AsIs
                        };
                        let Some(out) = x.head.as_mut() else {
                            return Step::Close;
                        };
                        let reason = reason_override.as_deref().unwrap_or(if status == r.status {
                            r.reason
                        } else {
                            crate::http::failure::reason_phrase(status)
                        });
                        let edits = edits.as_ref().filter(|e| !e.is_empty());
                        let wrote = write_head(ctx.pool, out, |w| {
                            forward::write_client_response(
                                w, status, reason, r.headers, framing, connection, edits,
                            )
                        });
                        if wrote.is_err() {
                            self.fail_exchange(
                                Failure::BackendBadResponse("backend_head_too_large"),
                                ctx,
                            );
                            return Step::Progress;
                        }
                        x.head_sent = 0;
                        x.status = status;
                        x.backend_status = Some(r.status);
                        let body = match r.body {
                            ResponseBody::None => RespBody::Done,
                            ResponseBody::Length(0) => RespBody::Done,
                            ResponseBody::Length(n) => RespBody::Length(n),
                            ResponseBody::Chunked if dechunk => {
                                RespBody::Dechunk(ChunkedDecoder::new())
                            }
                            ResponseBody::Chunked => RespBody::Chunked(ChunkedDecoder::new()),
                            ResponseBody::UntilClose => RespBody::UntilClose,
                        };
                        let reusable = r.reusable;
                        let n = r.head_len;
                        rbuf.consume(n);
                        x.resp = Resp::SendHead { body, reusable };
                        return Step::Progress;
                    }
                }
            }
            Resp::SendHead { body, reusable } => {
                if x.resp_sendable == 0
                    && !rbuf.is_empty()
                    && refill_response(body, reusable, rbuf, &mut x.resp_sendable).is_err()
                {
                    return Step::Close;
                }
                let Some(out) = x.head.as_mut() else {
                    return Step::Close;
                };
                if x.head_sent < out.len() {
                    if !self.writable {
                        return Step::Blocked;
                    }
                    let head_rest = &out.bytes()[x.head_sent..];
                    let head_len = head_rest.len();
                    match write_pair(
                        &mut self.transport,
                        head_rest,
                        &rbuf.bytes()[..x.resp_sendable],
                        &mut self.writable,
                    ) {
                        Io::Done(n) => {
                            let h = n.min(head_len);
                            x.head_sent += h;
                            x.response_head_out += h as u64;
                            if n > h {
                                rbuf.consume(n - h);
                                x.resp_sendable -= n - h;
                                x.bytes_out += (n - h) as u64;
                            }
                            x.last_client = ctx.now;
                            progress = true;
                        }
                        Io::Blocked => return Step::Blocked,
                        Io::Eof | Io::Failed => return Step::Close,
                    }
                }
                if x.head_sent >= out.len() {
                    ctx.pool.put_opt(&mut x.head);
                    if let Resp::SendHead { body, reusable } = std::mem::replace(
                        &mut x.resp,
                        Resp::Body {
                            body: RespBody::Done,
                            reusable: false,
                        },
                    ) {
                        x.resp = Resp::Body { body, reusable };
                    }
                    progress = true;
                }
            }
            Resp::Body { body, reusable } => {
                if x.resp_sendable == 0 && !rbuf.is_empty() {
                    let before = rbuf.len();
                    if refill_response(body, reusable, rbuf, &mut x.resp_sendable).is_err() {
                        return Step::Close;
                    }
                    progress |= rbuf.len() != before;
                }
                if x.resp_sendable > 0 && self.writable {
                    match write_some(
                        &mut self.transport,
                        &rbuf.bytes()[..x.resp_sendable],
                        &mut self.writable,
                    ) {
                        Io::Done(n) => {
                            rbuf.consume(n);
                            x.resp_sendable -= n;
                            x.bytes_out += n as u64;
                            x.last_client = ctx.now;
                            progress = true;
                        }
                        Io::Blocked => {}
                        Io::Eof | Io::Failed => return Step::Close,
                    }
                }
                let complete = x.resp_sendable == 0
                    && match body {
                        RespBody::Done | RespBody::Length(0) => true,
                        RespBody::Chunked(d) | RespBody::Dechunk(d) => d.is_done(),
                        RespBody::UntilClose => x.backend_eof && rbuf.is_empty(),
                        RespBody::Length(_) => false,
                    };
                if complete {
                    let reusable = *reusable && rbuf.is_empty() && !x.backend_eof;
                    return self.finish_exchange(reusable, ctx);
                }
                if x.backend_eof && x.resp_sendable == 0 && rbuf.is_empty() {
                    // truncated body: the client must not take it as complete
                    return Step::Close;
                }
            }
        }
        if progress {
            Step::Progress
        } else {
            Step::Blocked
        }
    }

    /// The backend failed before answering: retry once on a fresh connection when that is
    /// safe (reused connection, idempotent request without body), else 502.
    fn backend_broke(&mut self, ctx: &mut Ctx) -> Step {
        let Phase::Proxy(x) = &mut self.phase else {
            return Step::Close;
        };
        let was_reused = ctx.backends.slab.get(x.backend).is_some_and(|b| b.reused);
        let nothing_received = x.resp_buf.as_ref().is_none_or(Buf::is_empty);
        if was_reused
            && x.retryable
            && !x.retried
            && nothing_received
            && matches!(x.resp, Resp::AwaitHead)
        {
            ctx.backends.remove(x.backend, ctx.registry);
            let fresh = x
                .backend_tls()
                .and_then(|tls| ctx.backends.checkout(x.addr, tls, true, ctx.registry));
            if let Ok(key) = fresh {
                x.backend = key;
                x.retried = true;
                x.head_sent = 0;
                x.backend_eof = false;
                x.connect_started = ctx.now;
                x.last_backend = ctx.now;
                return Step::Progress;
            }
        }
        let (connected, handshaking) = ctx
            .backends
            .slab
            .get(x.backend)
            .map_or((false, false), |b| {
                (b.connected, b.transport.is_handshaking())
            });
        self.fail_exchange(
            match (connected, handshaking) {
                (true, true) => Failure::BackendTls,
                (true, false) => Failure::BackendReset,
                _ => Failure::BackendConnect,
            },
            ctx,
        );
        Step::Progress
    }

    /// Ends the exchange with a gateway answer when none of the response went out yet;
    /// otherwise the connection closes.
    fn fail_exchange(&mut self, failure: Failure, ctx: &mut Ctx) {
        // <retry> sees a backend that could not be reached or did not answer as the
        // gateway's 502 / 504
        if let (Phase::Proxy(x), true) = (&mut self.phase, failure.is_backend_transport()) {
            let retry = retry_plan(x.call.as_deref(), x.retries, &x.req);
            if let (Some(retry), Some(call)) = (retry, x.call.as_deref()) {
                let status = failure.status();
                let reason = crate::http::failure::reason_phrase(status);
                if matches!(x.resp, Resp::AwaitHead)
                    && wants_retry(retry, &x.rt, call, status, reason, &[], ctx)
                {
                    let delay = retry_wait(retry, x.retries, ctx);
                    schedule_retry(x, delay, ctx);
                    return;
                }
            }
        }
        let Some(mut x) = self.take_exchange(false, ctx) else {
            return;
        };
        self.resume_pipeline();
        x.status = failure.status();
        let answered = matches!(x.resp, Resp::AwaitHead);
        let close =
            self.close_after || !matches!(x.req, ReqBody::Done) || failure.closes_connection();
        // on-error runs with the failure as context.LastError
        let rt = Arc::clone(&x.rt);
        let policy_answer = match x.call.as_mut() {
            Some(call) if answered && !call.plan.on_error.is_empty() => {
                call.on_failure(failure, &rt, ctx.gateway_id, ctx.counters, ctx.wall_ms);
                x.status = call.st.resp.status.unwrap_or(x.status);
                Some(gate::render_response(
                    &call.st,
                    x.status,
                    "",
                    &[],
                    close,
                    x.is_head,
                ))
            }
            _ => None,
        };
        end_call(&mut x, ctx);
        log_exchange(&x, self.peer, ctx, Some(failure.reason()));
        if !answered {
            self.phase = Phase::Closing;
            return;
        }
        if let Some(bytes) = policy_answer {
            self.start_reply_bytes(bytes, close, ctx);
            return;
        }
        self.start_reply(
            failure.status(),
            &failure_body(failure),
            close,
            x.is_head,
            ctx,
        );
    }

    /// Takes the exchange out of the connection: its backend connection goes back to the
    /// pool (`reusable`) or is closed, its buffers back to the pool.
    fn take_exchange(&mut self, reusable: bool, ctx: &mut Ctx) -> Option<Box<Exchange>> {
        let Phase::Proxy(mut x) =
            std::mem::replace(&mut self.phase, Phase::Waiting { fresh: false })
        else {
            return None;
        };
        if reusable {
            ctx.backends.checkin(x.backend, ctx.now, ctx.registry);
        } else {
            ctx.backends.remove(x.backend, ctx.registry);
        }
        ctx.pool.put_opt(&mut x.head);
        ctx.pool.put_opt(&mut x.resp_buf);
        Some(x)
    }

    /// Ends the exchange with a response the policies made after the backend answered.
    fn answer_exchange(
        &mut self,
        bytes: Vec<u8>,
        status: u16,
        backend_status: u16,
        reusable: bool,
        close: bool,
        ctx: &mut Ctx,
    ) -> Step {
        let Some(mut x) = self.take_exchange(reusable, ctx) else {
            return Step::Close;
        };
        x.status = status;
        x.backend_status = Some(backend_status);
        x.bytes_out = bytes.len() as u64;
        end_call(&mut x, ctx);
        log_exchange(&x, self.peer, ctx, None);
        self.resume_pipeline();
        self.start_reply_bytes(bytes, close, ctx);
        Step::Progress
    }

    /// After an exchange: bytes of the next request that were left in the socket may have
    /// arrived without a new readiness event, so read them now.
    fn resume_pipeline(&mut self) {
        if self.pipelined {
            self.pipelined = false;
            self.readable = true;
        }
    }

    fn finish_exchange(&mut self, reusable: bool, ctx: &mut Ctx) -> Step {
        let request_done = matches!(&self.phase, Phase::Proxy(x) if matches!(x.req, ReqBody::Done));
        let Some(mut x) = self.take_exchange(reusable && request_done, ctx) else {
            return Step::Close;
        };
        end_call(&mut x, ctx);
        log_exchange(&x, self.peer, ctx, None);
        self.phase_since = ctx.now;
        self.resume_pipeline();
        if self.close_after || !matches!(x.req, ReqBody::Done) {
            return Step::Close;
        }
        Step::Progress
    }
}

/// What outbound decided about a backend response.
enum Outbound {
    /// A policy needs the whole body: keep reading.
    NeedBody,
    Failed(Failure),
    /// Send this complete response instead (`consumed`: response bytes it used up, when
    /// the whole body was read).
    Answer {
        bytes: Vec<u8>,
        status: u16,
        consumed: Option<usize>,
    },
    /// Stream the backend's body with this head.
    Stream {
        status: u16,
        reason: Option<String>,
        headers: forward::HeaderEdits,
    },
}

/// Runs the backend-after and outbound steps on a response head.
#[allow(clippy::too_many_arguments)]
fn outbound(
    rt: &Arc<Runtime>,
    call: Option<&mut Call>,
    is_head: bool,
    eof: bool,
    r: &response::ResponseHead,
    rbytes: &[u8],
    close: bool,
    ctx: &mut Ctx,
) -> Outbound {
    let Some(call) = call else {
        return Outbound::Failed(Failure::Internal(NO_CALL));
    };
    let plan = Arc::clone(&call.plan);
    let mut consumed = None;
    if plan.outbound_needs_body && !is_head {
        match gate::whole_response_body(r.body, &rbytes[r.head_len..], eof) {
            Ok(Some((body, used))) => {
                consumed = Some(r.head_len + used);
                call.st.resp.body = Some(body);
            }
            Ok(None) => return Outbound::NeedBody,
            Err(f) => return Outbound::Failed(f),
        }
    }
    let Some(who) = gate::who(rt, call.ids, &call.key, ctx.gateway_id) else {
        return Outbound::Failed(Failure::Internal(STALE_IDS));
    };
    let copy = call.st.request_copy.take();
    let empty = gate::empty_request();
    let req = match &copy {
        Some(c) => c.view(),
        None => empty,
    };
    let rv = ResponseView {
        status: r.status,
        reason: r.reason,
        headers: HeaderSrc::Parsed(r.headers),
    };
    let mut io = exec::Io {
        counters: &mut *ctx.counters,
        now_ms: ctx.wall_ms,
        runtime: rt,
    };
    let st = &mut call.st;
    let flow = exec::run(
        &plan.outbound,
        exec::Phase::Response,
        &req,
        Some(&rv),
        &who,
        st,
        &mut io,
    );
    if flow == Flow::Error {
        exec::run(
            &plan.on_error,
            exec::Phase::Response,
            &req,
            Some(&rv),
            &who,
            st,
            &mut io,
        );
    }
    exec::settle(&req, Some(&rv), &who, st, &mut io);
    let result = if flow != Flow::Continue || st.resp.body.is_some() {
        // the backend's headers stay only when its response is kept (set-body on it)
        let base: &[httparse::Header] = if flow == Flow::Continue {
            r.headers
        } else {
            &[]
        };
        Outbound::Answer {
            bytes: gate::render_response(st, r.status, r.reason, base, close, is_head),
            status: st.resp.status.unwrap_or(r.status),
            consumed,
        }
    } else {
        Outbound::Stream {
            status: st.resp.status.unwrap_or(r.status),
            reason: st.resp.reason.take().filter(|r| !r.is_empty()),
            headers: std::mem::take(&mut st.resp.headers),
        }
    };
    st.request_copy = copy;
    result
}

/// The `<retry>` around this call's forward-request, while it may still send the request
/// again: attempts are left and the request went out whole from the head buffer (a
/// retried request's body is always read whole first).
fn retry_plan<'c>(call: Option<&'c Call>, done: u32, req: &ReqBody) -> Option<&'c Retry> {
    let retry = call?.plan.forward.as_ref()?.retry.as_ref()?;
    (done < retry.count && matches!(req, ReqBody::Done)).then_some(retry)
}

/// Whether `<retry>`'s condition holds for an attempt that ended with this response.
fn wants_retry(
    retry: &Retry,
    rt: &Arc<Runtime>,
    call: &Call,
    status: u16,
    reason: &str,
    headers: &[httparse::Header],
    ctx: &Ctx,
) -> bool {
    let Some(who) = gate::who(rt, call.ids, &call.key, ctx.gateway_id) else {
        return false;
    };
    let empty = gate::empty_request();
    let req = call
        .st
        .request_copy
        .as_ref()
        .map_or(empty, OwnedRequest::view);
    let resp = ResponseView {
        status,
        reason,
        headers: HeaderSrc::Parsed(headers),
    };
    exec::retry_wanted(retry, &req, &resp, &who, &call.st)
}

/// The wait before the next attempt (the jitter of the exponential form comes from the
/// clock's milliseconds).
fn retry_wait(retry: &Retry, done: u32, ctx: &Ctx) -> Duration {
    let jitter = 0.8 + (ctx.wall_ms % 401) as f64 / 1000.0;
    exec::retry_delay(retry, done + 1, jitter)
}

/// Drops the attempt's backend connection (its answer is not read further) and
/// schedules the next attempt: the request is still whole in the head buffer.
fn schedule_retry(x: &mut Exchange, delay: Duration, ctx: &mut Ctx) {
    ctx.backends.remove(x.backend, ctx.registry);
    x.backend = usize::MAX;
    x.retries += 1;
    x.retry_at = Some(ctx.now + delay);
    x.head_sent = 0;
    x.backend_eof = false;
    x.resp_sendable = 0;
    if let Some(b) = x.resp_buf.as_mut() {
        b.clear();
    }
}

/// Counts the finished call against its quotas and frees its concurrency slots.
fn end_call(x: &mut Exchange, ctx: &mut Ctx) {
    if let Some(c) = x.call.as_mut() {
        exec::finish(
            &mut c.st,
            ctx.counters,
            x.bytes_in + x.bytes_out,
            ctx.wall_ms,
        );
    }
}

fn log_exchange(x: &Exchange, peer: SocketAddr, ctx: &mut Ctx, error: Option<&str>) {
    let api = x.rt.apis.get(x.api as usize);
    let api_id = api.map_or("", |a| a.id.as_str());
    let operation = api
        .and_then(|a| a.operations.get(x.op as usize))
        .map_or("", |o| o.id.as_str());
    let total_ms = ms(ctx.now.duration_since(x.started));
    let backend_ms = x.backend_started.map(|s| ms(ctx.now.duration_since(s)));
    if let Some(m) = ctx.metrics.as_deref_mut() {
        // waiting on the client: its request body, then the response after the
        // backend's last byte
        let upload = x
            .request_read
            .map_or(total_ms, |t| ms(t.duration_since(x.started)));
        let download = match x.backend_started {
            Some(_) => ms(ctx.now.duration_since(x.last_backend)),
            None => 0.0,
        };
        let timings = crate::metrics::Timings {
            total: total_ms,
            backend: backend_ms,
            client: (upload + download).min(total_ms),
            gateway: (total_ms - backend_ms.unwrap_or(0.0) - upload).max(0.0),
        };
        let subscription = x
            .subscription
            .and_then(|s| x.rt.subscriptions.get(s as usize));
        let product = subscription.and_then(|s| match s.scope {
            crate::config::SubscriptionScope::Product(p) => x.rt.products.get(p as usize),
            _ => None,
        });
        let call = crate::metrics::Call {
            api: api_id,
            operation,
            product: product.map_or("", |p| p.id.as_str()),
            subscription: subscription.map_or("", |s| s.id.as_str()),
            status: x.status,
            reason: error,
        };
        m.observe(&call, timings);
    }
    let Some(t) = x.trace.as_ref() else { return };
    ctx.log.push(&Record {
        time: t.wall,
        request_id: &t.id,
        client_ip: peer.ip(),
        method: &t.method,
        url: &t.url,
        api: api_id,
        operation,
        subscription: x
            .subscription
            .and_then(|s| x.rt.subscriptions.get(s as usize))
            .map_or("", |s| s.id.as_str()),
        status: x.status,
        backend_status: x.backend_status,
        bytes_in: x.client_head + x.bytes_in,
        bytes_out: x.response_head_out + x.bytes_out,
        total_ms,
        backend_ms,
        error,
        probe: false,
    });
}

/// APIM's error reasons (`RateLimitExceeded`) as the log names its own
/// (`rate_limit_exceeded`).
fn snake_case(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len() + 4);
    for (i, c) in reason.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn request_id(prefix: u32, seq: u64) -> String {
    format!("{prefix:08x}-{seq:016x}")
}

enum Decision<'h> {
    Reply {
        status: u16,
        content_type: &'static str,
        body: String,
        failure: Option<Failure>,
        method: String,
        url: String,
        api: &'h str,
    },
    /// A complete answer made by policies (already rendered).
    Raw {
        bytes: Vec<u8>,
        status: u16,
        /// Body bytes after the head that were read for the plan (consumed with it).
        consumed: usize,
        close: bool,
        method: String,
        url: String,
        api: &'h str,
        op: &'h str,
        /// context.RequestId, logged as the record's id.
        request_id: String,
        /// Why the answer is not a success, if it is not (for the log): the gateway's
        /// failure, or context.LastError's reason (a throttled call says so).
        reason: Option<std::borrow::Cow<'static, str>>,
        /// The calling subscription's id, and its product, when there are.
        subscription: String,
        product: String,
    },
    /// The plan needs the whole request body first: grow the buffer to this size.
    NeedBody(usize),
    /// The exchange, and the body bytes after the head already folded into its head.
    Proxy(Box<Exchange>, usize),
}

/// A request that matches no API or operation, under `stand_in` (the global plan):
/// on-error runs from the 404 with LastError Source `configuration`, Reason
/// `OperationNotFound`, and may change the answer.
#[allow(clippy::too_many_arguments)]
fn unmatched<'h>(
    stand_in: &crate::config::Api,
    head: &request::RequestHead,
    peer_ip: &str,
    https: bool,
    rt: &Arc<Runtime>,
    ctx: &mut Ctx<'h>,
    url: String,
    method: String,
) -> Decision<'h> {
    let failure = Failure::OperationNotFound;
    let Some(plan) = stand_in.operations.first().and_then(|o| o.plan(None)) else {
        return Decision::Reply {
            status: failure.status(),
            content_type: JSON,
            body: failure_body(failure),
            failure: Some(failure),
            method,
            url,
            api: "",
        };
    };
    let view = RequestView {
        method: head.method,
        path: head.path,
        rest: head.path,
        host: head.host,
        query: head.query,
        headers: HeaderSrc::Parsed(head.headers),
        ip: peer_ip,
        https,
    };
    let ids = gate::Ids {
        api: crate::config::UNMATCHED_API,
        op: 0,
        product: None,
        subscription: None,
    };
    through_on_error(
        plan,
        ids,
        failure,
        &view,
        head,
        rt,
        ctx,
        (url, method, "", ""),
    )
}

/// Answers a failure outside the policies (a refused key, no matching operation) the way
/// `plan`'s on-error makes it, starting from the gateway's own answer. `logged`: the
/// request log's url, method, API and operation.
#[allow(clippy::too_many_arguments)]
fn through_on_error<'h>(
    plan: &Arc<crate::policy::Plan>,
    ids: gate::Ids,
    failure: Failure,
    view: &RequestView,
    head: &request::RequestHead,
    rt: &Arc<Runtime>,
    ctx: &mut Ctx<'h>,
    logged: (String, String, &'h str, &'h str),
) -> Decision<'h> {
    let (url, method, api, op) = logged;
    *ctx.seq += 1;
    let id = request_id(ctx.id_prefix, *ctx.seq);
    let mut c = Call::start(plan, ids, "", id, view);
    c.on_failure(failure, rt, ctx.gateway_id, ctx.counters, ctx.wall_ms);
    let close = !head.keep_alive || ctx.draining || head.body != BodyKind::None;
    let st = &c.st;
    Decision::Raw {
        status: st.resp.status.unwrap_or(failure.status()),
        bytes: gate::render_response(st, failure.status(), "", &[], close, head.is_head()),
        consumed: 0,
        close,
        method,
        url,
        api,
        op,
        request_id: st.request_id.clone(),
        reason: Some(failure.reason().into()),
        subscription: String::new(),
        product: String::new(),
    }
}

fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// Routing and admission for one parsed head: a gateway answer or a ready exchange.
fn decide<'h>(
    head: &request::RequestHead,
    body_bytes: &[u8],
    peer_ip: &str,
    https: bool,
    ctx: &mut Ctx<'h>,
) -> Decision<'h> {
    let logging = ctx.log.enabled();
    static NO_CONFIG: std::sync::OnceLock<Redaction> = std::sync::OnceLock::new();
    let redaction = match ctx.runtime {
        Some(rt) => &rt.redaction,
        None => NO_CONFIG.get_or_init(Redaction::default),
    };
    // the URL for the request log, redacted as the runtime says (whatever the answer)
    let url_of = || {
        if logging {
            redaction.url(head.path, head.query)
        } else {
            String::new()
        }
    };
    // the method for the request log, only when it is written
    let logged_method = || {
        if logging {
            head.method.to_string()
        } else {
            String::new()
        }
    };
    let reply = |f: Failure, api: &'h str, url: String| Decision::Reply {
        status: f.status(),
        content_type: JSON,
        body: failure_body(f),
        failure: Some(f),
        method: logged_method(),
        url,
        api,
    };
    if status::STATUS_PATHS.contains(&head.path) {
        let (code, body) = status::render(ctx.runtime.map(|r| &**r), ctx.sync, SystemTime::now());
        return Decision::Reply {
            status: code,
            content_type: JSON,
            body,
            failure: None,
            method: head.method.to_string(),
            url: head.path.to_string(),
            api: "",
        };
    }
    let Some(rt) = ctx.runtime else {
        return reply(Failure::NoConfig, "", url_of());
    };
    // no API or no operation: the global on-error, when there is one (as in APIM)
    let not_found = |ctx: &mut Ctx<'h>, url: String| match &rt.unmatched {
        Some(u) => unmatched(u, head, peer_ip, https, rt, ctx, url, logged_method()),
        None => reply(Failure::OperationNotFound, "", url),
    };
    let Some(found) = rt.api_table.find(head.path, head.host_name(), https) else {
        return not_found(ctx, url_of());
    };
    let Some(api) = rt.apis.get(found.api as usize) else {
        return not_found(ctx, url_of());
    };
    let rest = &head.path[found.rest_offset..];
    let Some(op) = api.op_table.find(rest, head.method) else {
        return not_found(ctx, url_of());
    };
    let view = RequestView {
        method: head.method,
        path: head.path,
        rest,
        host: head.host,
        query: head.query,
        headers: HeaderSrc::Parsed(head.headers),
        ip: peer_ip,
        https,
    };
    let admitted = match gate::admit(rt, found.api, api, head) {
        Ok(a) => a,
        Err(f) => {
            // as in APIM, a refused key goes through on-error (Source "authorization")
            let on_error = api
                .operations
                .get(op as usize)
                .and_then(|o| o.plan(None))
                .filter(|p| !p.trivial && !p.on_error.is_empty());
            let Some(plan) = on_error else {
                return reply(f, &api.id, url_of());
            };
            let ids = gate::Ids {
                api: found.api,
                op,
                product: None,
                subscription: None,
            };
            let op_id = api
                .operations
                .get(op as usize)
                .map_or("", |o| o.id.as_str());
            let (url, method) = (url_of(), logged_method());
            return through_on_error(
                plan,
                ids,
                f,
                &view,
                head,
                rt,
                ctx,
                (url, method, &api.id, op_id),
            );
        }
    };
    if let BodyKind::Length(n) = head.body {
        if ctx.limits.body_max > 0 && n > ctx.limits.body_max {
            return reply(Failure::BodyTooLarge, "", url_of());
        }
    }
    let Some(operation) = api.operations.get(op as usize) else {
        return reply(Failure::OperationNotFound, "", url_of());
    };
    let plan = operation
        .plan(admitted.product)
        .filter(|p| !p.trivial)
        .map(Arc::clone);
    let mut call: Option<Box<Call>> = None;
    // body bytes after the head that the plan read whole
    let mut consumed = 0;
    if let Some(plan) = plan {
        let mut collected = None;
        if plan.inbound_needs_body && head.body != BodyKind::None {
            match gate::whole_body(head.body, body_bytes) {
                Ok(Some((body, used))) => {
                    consumed = used;
                    collected = Some(body);
                }
                Ok(None) => {
                    let want = match head.body {
                        BodyKind::Length(n) => head.head_len + n as usize,
                        _ => (head.head_len + body_bytes.len() * 2)
                            .max(64 * 1024)
                            .min(head.head_len + gate::BUFFERED_BODY_MAX + 64 * 1024),
                    };
                    return Decision::NeedBody(want);
                }
                Err(f) => return reply(f, &api.id, url_of()),
            }
        }
        *ctx.seq += 1;
        let ids = gate::Ids {
            api: found.api,
            op,
            product: admitted.product,
            subscription: admitted.subscription,
        };
        let id = request_id(ctx.id_prefix, *ctx.seq);
        let mut c = Box::new(Call::start(&plan, ids, admitted.key, id, &view));
        c.st.req.body = collected;
        let Some(who) = gate::who(rt, ids, admitted.key, ctx.gateway_id) else {
            return reply(Failure::OperationNotFound, "", url_of());
        };
        let mut io = exec::Io {
            counters: &mut *ctx.counters,
            now_ms: ctx.wall_ms,
            runtime: rt,
        };
        let st = &mut c.st;
        let mut flow = exec::run(
            &plan.inbound,
            exec::Phase::Request,
            &view,
            None,
            &who,
            st,
            &mut io,
        );
        if flow == Flow::Continue {
            match &plan.forward {
                None => {
                    // no forward-request: APIM answers an empty 200, through outbound
                    st.resp.status.get_or_insert(200);
                    st.resp.body.get_or_insert_with(Vec::new);
                    flow = exec::run(
                        &plan.outbound,
                        exec::Phase::Response,
                        &view,
                        None,
                        &who,
                        st,
                        &mut io,
                    );
                    if flow == Flow::Continue {
                        flow = Flow::Respond;
                    }
                }
                Some(fwd) => {
                    if let Some((key, max, counter)) = &fwd.concurrency {
                        flow = exec::acquire_forward_slot(
                            key, *max, *counter, &view, &who, st, &mut io,
                        );
                    }
                }
            }
        }
        if flow == Flow::Error {
            exec::run(
                &plan.on_error,
                exec::Phase::Response,
                &view,
                None,
                &who,
                st,
                &mut io,
            );
        }
        if flow != Flow::Continue {
            exec::settle(&view, None, &who, st, &mut io);
            exec::finish(st, io.counters, 0, ctx.wall_ms);
            let close =
                !head.keep_alive || ctx.draining || (head.body != BodyKind::None && consumed == 0);
            let bytes = gate::render_response(st, 200, "", &[], close, head.is_head());
            return Decision::Raw {
                status: st.resp.status.unwrap_or(200),
                bytes,
                consumed,
                close,
                method: logged_method(),
                url: url_of(),
                api: &api.id,
                op: &operation.id,
                request_id: st.request_id.clone(),
                reason: st.last_error.as_ref().map(|e| snake_case(&e.reason).into()),
                subscription: who.subscription.map_or(String::new(), |s| s.id.clone()),
                product: who.product.map_or(String::new(), |p| p.id.clone()),
            };
        }
        call = Some(c);
    }
    let edits = call.as_ref().map(|c| &c.st.req);
    type Chosen<'c> = (
        &'c [SocketAddr],
        &'c str,
        &'c str,
        Option<&'c Arc<ServerName<'static>>>,
    );
    let (addrs, authority, base_path, tls): Chosen = match edits.and_then(|e| e.target.as_ref()) {
        Some(&Target::Backend(i)) => match rt.backends.get(i as usize) {
            Some(b) => (&b.addrs, &b.authority, &b.base_path, b.tls.as_ref()),
            None => (&[], "", "", None),
        },
        Some(Target::Addr {
            ref addr,
            ref authority,
            ref base_path,
            ref tls,
        }) => (
            std::slice::from_ref(addr),
            authority.as_str(),
            base_path.as_str(),
            tls.as_ref(),
        ),
        None => (
            &api.backend.addrs,
            &api.backend.authority,
            &api.backend.base_path,
            api.backend.tls.as_ref(),
        ),
    };
    let tls = tls.cloned();
    if addrs.is_empty() {
        return reply(Failure::BackendUnresolved, "", url_of());
    }
    if call.is_none() {
        *ctx.seq += 1;
    }
    let addr = addrs[(*ctx.seq as usize) % addrs.len()];
    let Some(mut out) = ctx.pool.get(Class::Head) else {
        return reply(Failure::Exhausted(BUFFERS_EXHAUSTED), "", url_of());
    };
    let new_query = edits
        .and_then(|e| e.query.as_ref())
        .map(|q| exec::join_query(q));
    let body_override = edits.and_then(|e| e.body.as_deref());
    let backend_req = BackendRequest {
        method: edits
            .and_then(|e| e.method.as_deref())
            .unwrap_or(head.method),
        base_path,
        rest: edits.and_then(|e| e.rest.as_deref()).unwrap_or(rest),
        query: match &new_query {
            Some(q) if q.is_empty() => None,
            Some(q) => Some(q.as_str()),
            None => head.query,
        },
        authority,
        client_ip: peer_ip,
        proto: if https { "https" } else { "http" },
        original_host: head.host,
        chunked: head.body == BodyKind::Chunked && body_override.is_none(),
        length: match body_override {
            Some(b) => Some(b.len() as u64),
            None => head.body.content_length(),
        },
        edits: edits.map(|e| &e.headers).filter(|h| !h.is_empty()),
    };
    let trust = ctx.limits.trust_forwarded_proto;
    let written = write_head(ctx.pool, &mut out, |w| {
        forward::write_backend_request(w, &backend_req, head.headers, trust)
    });
    if written.is_err() || body_override.is_some_and(|b| !append(ctx.pool, &mut out, b)) {
        ctx.pool.put(out);
        return reply(Failure::HeadTooLarge, "", url_of());
    }
    let trace = logging.then(|| {
        Box::new(Trace {
            // the id policies saw as context.RequestId, when they ran
            id: call.as_ref().map_or_else(
                || request_id(ctx.id_prefix, *ctx.seq),
                |c| c.st.request_id.clone(),
            ),
            method: head.method.to_string(),
            url: url_of(),
            wall: SystemTime::now(),
        })
    });
    let req = match head.body {
        _ if body_override.is_some() => ReqBody::Done,
        BodyKind::None => ReqBody::Done,
        BodyKind::Length(n) => ReqBody::Length(n),
        BodyKind::Chunked => ReqBody::Chunked(ChunkedDecoder::new()),
    };
    let timeout = call
        .as_ref()
        .and_then(|c| c.plan.forward.as_ref())
        .and_then(|f| f.timeout_secs)
        .map(Duration::from_secs);
    let request_read = matches!(req, ReqBody::Done).then_some(ctx.now);
    let retryable = is_idempotent(backend_req.method)
        && (head.body == BodyKind::None || body_override.is_some());
    Decision::Proxy(
        Box::new(Exchange {
            rt: Arc::clone(rt),
            api: found.api,
            op,
            backend: usize::MAX,
            addr,
            retried: false,
            retryable,
            head: Some(out),
            head_sent: 0,
            continue_left: if head.expect_continue && head.body != BodyKind::None && consumed == 0 {
                CONTINUE.len()
            } else {
                0
            },
            req,
            req_sendable: 0,
            resp_buf: None,
            resp: Resp::AwaitHead,
            resp_sendable: 0,
            backend_eof: false,
            http10: head.minor == 0,
            is_head: head.is_head(),
            started: ctx.now,
            connect_started: ctx.now,
            backend_started: None,
            last_client: ctx.now,
            last_backend: ctx.now,
            status: 0,
            backend_status: None,
            bytes_in: 0,
            bytes_out: 0,
            client_head: head.head_len as u64,
            response_head_out: 0,
            trace,
            call,
            timeout,
            subscription: admitted.subscription,
            retries: 0,
            retry_at: None,
            request_read,
            tls,
        }),
        consumed,
    )
}

/// Appends `bytes` after the head in `out` (a request body a policy set or read whole).
fn append(pool: &mut Pool, out: &mut Buf, bytes: &[u8]) -> bool {
    let need = out.len() + bytes.len();
    if out.capacity() < need && !pool.grow_exact(out, need) {
        return false;
    }
    let space = out.space();
    if space.len() < bytes.len() {
        return false;
    }
    space[..bytes.len()].copy_from_slice(bytes);
    out.filled(bytes.len());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::{Read, Write};

    /// An in-memory client socket: each write takes at most the next scripted amount
    /// (0 = WouldBlock), and what it took is kept.
    struct ScriptedWire {
        takes: VecDeque<usize>,
        written: Vec<u8>,
    }

    impl Read for ScriptedWire {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl Write for ScriptedWire {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            match self.takes.pop_front() {
                Some(0) | None => Err(io::ErrorKind::WouldBlock.into()),
                Some(n) => {
                    let n = n.min(data.len());
                    self.written.extend_from_slice(&data[..n]);
                    Ok(n)
                }
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Wire for ScriptedWire {
        fn short_io_is_final(&self) -> bool {
            true
        }
    }

    /// Before: the result of writing 100 Continue was ignored, so a short write or a
    /// full socket lost it (and the client waited for it forever).
    #[test]
    fn an_interim_continue_survives_short_writes_and_a_full_socket() {
        let mut wire = ScriptedWire {
            takes: VecDeque::from([5, 0, 7, 100]),
            written: Vec::new(),
        };
        let mut interim = Interim::Pending(CONTINUE.len());
        let mut writable = true;
        // 5 bytes, then the socket is full until the next writable event
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Progress)
        );
        assert_eq!(interim, Interim::Pending(CONTINUE.len() - 5));
        assert!(!writable);
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Blocked)
        );
        writable = true;
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Blocked)
        );
        assert!(!writable);
        writable = true;
        assert_eq!(
            write_interim(&mut interim, &mut wire, &mut writable),
            Some(Step::Progress)
        );
        writable = true;
        assert_eq!(write_interim(&mut interim, &mut wire, &mut writable), None);
        assert_eq!(interim, Interim::Sent);
        assert_eq!(wire.written, CONTINUE);
        // sent once: nothing more
        assert_eq!(write_interim(&mut interim, &mut wire, &mut writable), None);
        assert_eq!(wire.written, CONTINUE);
    }
}

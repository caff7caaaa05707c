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
//!  Exchange (exchange::Stage): Detached ─▶ Connecting ─▶ SendingRequest ─▶ AwaitingHead
//!            (1xx skipped) ─▶ SendingHead ─▶ Streaming ─▶ done; [100 Continue] and the
//!            request body stream beside the stages; a <retry> goes back to Detached
//!            failure before the response head went out ─▶ Reply (502/504/…)
//!            failure after it ─▶ close (the client sees a truncated body)
//! ```
//! Why a connection closes is a `CloseReason` value (`close.rs`), named in the debug log;
//! why a backend connection is not pooled, a `backend::CloseReason`.
//! Invariants: bytes of the next pipelined request are never forwarded with the current
//! one (bodies are counted exactly); buffers are held only while data is in flight.
//! Must not touch: listeners, the poll (except register/deregister through Backends),
//! config loading, disk.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::Registry;

use super::backend::{self, Backends, Release};
use super::buffer::{Buf, Class, Pool};
use super::gate;
use super::sub::Sub;
use super::transport::{Connect, Transport, Wire};
use crate::config::Runtime;
use crate::http::chunked::ChunkedDecoder;
use crate::http::failure::{failure_body, render, JSON};
use crate::http::forward::{self, BackendRequest, ClientFraming, SliceWriter};
use crate::http::request::{self, BodyKind, MAX_HEADERS};
use crate::http::response::{self, ResponseBody, MAX_RESPONSE_HEADERS};
use crate::http::Failure;
use crate::metrics::Metrics;
use crate::pipeline::exec::{Flow, HeaderSrc, RequestView, ResponseView, Target};
use crate::pipeline::{Inbound, Pipeline};
use crate::policy::limits::Counters;
use crate::policy::outgoing::{Outcome as SubOutcome, ReplyTo};
use crate::policy::RetryTerms;
use crate::status::{self, SyncState};
use crate::telemetry::{Record, Redaction, RequestLog};
use crate::x509::Presented;
use rustls_pki_types::ServerName;

mod again;
mod calling;
mod close;
mod decide;
mod exchange;
mod failing;
mod record;
mod respond;
#[cfg(test)]
mod tests;
mod wire;

use again::*;
use calling::Waits;
pub use close::CloseReason;
use decide::*;
use exchange::*;
use record::*;
use respond::*;
use wire::*;

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
    /// Each request's expression budget: steps and bytes.
    pub expression_steps: u64,
    pub expression_bytes: u64,
}

/// What `drive` may use besides the connection itself.
pub struct Ctx<'a> {
    pub now: Instant,
    pub registry: &'a Registry,
    pub backends: &'a mut Backends,
    /// The key of the client being driven (owner of the backend connections it checks out).
    pub client: usize,
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
    /// Host names learned at request time (policies' requests).
    pub names: &'a mut crate::proxy::names::Names,
    /// The external cache, when one is configured.
    pub external: Option<&'a mut crate::proxy::external::ExternalLink>,
}

impl Ctx<'_> {
    /// What the pipeline needs from the loop for one call under `rt`.
    /// The same context under `rt` (a suspended call resumes under its own runtime).
    fn with_runtime<'b>(&'b mut self, rt: &'b Arc<Runtime>) -> Ctx<'b> {
        Ctx {
            now: self.now,
            registry: self.registry,
            backends: &mut *self.backends,
            client: self.client,
            pool: &mut *self.pool,
            runtime: Some(rt),
            sync: self.sync,
            limits: self.limits,
            log: &mut *self.log,
            draining: self.draining,
            seq: &mut *self.seq,
            id_prefix: self.id_prefix,
            metrics: self.metrics.as_deref_mut(),
            counters: &mut *self.counters,
            wall_ms: self.wall_ms,
            gateway_id: self.gateway_id,
            names: &mut *self.names,
            external: self.external.as_deref_mut(),
        }
    }

    /// What this client's policy requests need from the loop.
    fn net(&mut self) -> crate::proxy::sub::Net<'_> {
        crate::proxy::sub::Net {
            backends: &mut *self.backends,
            names: &mut *self.names,
            registry: self.registry,
            owner: self.client,
            now: self.now,
        }
    }

    pub fn pipeline_io<'c>(&'c mut self, rt: &'c Runtime) -> crate::pipeline::Io<'c> {
        crate::pipeline::Io {
            counters: &mut *self.counters,
            now_ms: self.wall_ms,
            runtime: rt,
            gateway_id: self.gateway_id,
        }
    }
}

/// Readiness a poll event reports for a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The peer closed its side (read-closed / hang-up).
    pub closed: bool,
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
    /// The TLS client's certificate, read once after the handshake.
    certificate: PeerCertificate,
    pub readable: bool,
    pub writable: bool,
    eof: bool,
    inbuf: Option<Buf>,
    phase: Phase,
    pub deadline: Instant,
    phase_since: Instant,
    /// When the first byte of the current request arrived (its total time starts here).
    request_started: Instant,
    /// The client connection closes once the current answer is written, and why.
    close: Option<CloseReason>,
    /// The client sent bytes of a next request while this one is answered; they wait in
    /// the socket (no more peeking) until the exchange ends.
    pipelined: bool,
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
    /// The head is read and its plan needs the whole body first: the head buffer grows
    /// to `want` bytes, and a `100 Continue` the client waits for goes out (`interim`).
    Body {
        want: usize,
        interim: Interim,
    },
    /// An answer from the gateway itself.
    Reply {
        out: ReplyBytes,
    },
    Proxy(Box<Exchange>),
    /// Inbound waits for the requests its policies sent; the head stays in `inbuf`
    /// and the call resumes over it when they have their outcomes.
    Calling(Box<Calling>),
    /// Nothing more can be said on this connection; the next drive closes it.
    Closing,
}

/// A call suspended on its policies' requests.
struct Calling {
    call: Box<Pipeline>,
    /// The runtime the call started under (it resumes under the same one).
    rt: Arc<Runtime>,
    waits: Waits,
    /// For the log if the client leaves first.
    method: String,
    url: String,
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
    /// What `<trace>` policies wrote and `<emit-metric>` policies emitted.
    traces: &'a [crate::telemetry::Trace],
    metrics: &'a [crate::telemetry::CustomMetric],
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
            traces: &[],
            metrics: &[],
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

/// A TLS client's certificate as the connection knows it.
enum PeerCertificate {
    NotRead,
    /// Plain HTTP, none presented, or one this gateway cannot read.
    None,
    Presented(Arc<Presented>),
}

impl PeerCertificate {
    /// The certificate, read from the handshake the first time a request asks.
    fn read(&mut self, transport: &Transport) -> Option<&Arc<Presented>> {
        if let PeerCertificate::NotRead = self {
            let chain = transport.peer_certificates();
            *self = match chain.map(|c| Presented::new(c.iter().map(|d| d.as_ref()))) {
                Some(Ok(p)) => PeerCertificate::Presented(Arc::new(p)),
                Some(Err(e)) => {
                    log::debug!("a client certificate left unread: {e}");
                    PeerCertificate::None
                }
                None => PeerCertificate::None,
            };
        }
        match self {
            PeerCertificate::Presented(p) => Some(p),
            _ => None,
        }
    }
}

/// Log reasons of local exhaustion and internal errors.
const BACKEND_SLOTS_EXHAUSTED: &str = "backend_connections_exhausted";
const BUFFERS_EXHAUSTED: &str = "buffers_exhausted";
const NO_CALL: &str = "internal_no_policy_state";

impl Client {
    pub fn new(transport: Transport, peer: SocketAddr, now: Instant, limits: &Limits) -> Client {
        Client {
            transport,
            peer,
            peer_ip: peer.ip().to_string().into_boxed_str(),
            certificate: PeerCertificate::NotRead,
            readable: false,
            writable: false,
            eof: false,
            inbuf: None,
            phase: Phase::Waiting { fresh: true },
            deadline: now + limits.header_timeout,
            phase_since: now,
            request_started: now,
            close: None,
            pipelined: false,
        }
    }

    /// True when no request is in progress and nothing is buffered (shutdown closes it).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Waiting { .. })
            && self.inbuf.as_ref().is_none_or(Buf::is_empty)
            && !self.transport.has_pending_output()
    }

    /// Readiness of backend connection `token`: recorded when this connection's exchange
    /// holds it (true), ignored otherwise (a stale event for a connection it let go of).
    /// The external cache answered command `id` of this client: true when its call
    /// waits for it (drive the client then).
    pub fn external_answer(
        &mut self,
        id: u64,
        answer: Result<crate::policy::external::Reply, ()>,
    ) -> bool {
        match &mut self.phase {
            Phase::Calling(c) => c.waits.answer(id, answer),
            Phase::Proxy(x) => x.waits.as_mut().is_some_and(|w| w.answer(id, answer)),
            _ => false,
        }
    }

    pub fn backend_ready(&mut self, token: usize, ready: Ready) -> bool {
        if let Phase::Calling(c) = &mut self.phase {
            return c.waits.ready(token, ready);
        }
        let Phase::Proxy(x) = &mut self.phase else {
            return false;
        };
        if x.waits.as_mut().is_some_and(|w| w.ready(token, ready)) {
            return true;
        }
        match x.stage.link_mut() {
            Some(link) if link.token == token => {
                link.conn.readable |= ready.readable;
                link.conn.writable |= ready.writable;
                link.conn.hup |= ready.closed;
                true
            }
            _ => false,
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
            Phase::Calling(mut c) => {
                c.waits.cancel(ctx);
                self.log_abandoned(&c, reason, ctx);
            }
            Phase::Proxy(mut x) => {
                if let Some(w) = x.waits.as_mut() {
                    w.cancel(ctx);
                }
                if x.status == 0 {
                    x.status = 499;
                }
                end_call(&mut x, ctx);
                log_exchange(&x, self.peer, ctx, Some(reason));
                ctx.pool.put_opt(&mut x.req_head);
                ctx.pool.put_opt(&mut x.resp_buf);
                let stage = std::mem::replace(&mut x.stage, Stage::Detached { at: ctx.now });
                stage.release(Release::Close(backend::CloseReason::Aborted), ctx);
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
                Phase::Waiting { .. } | Phase::Head | Phase::Body { .. } => self.read_head(ctx),
                Phase::Reply { .. } => self.write_reply(ctx),
                Phase::Proxy(_) => self.step_exchange(ctx),
                Phase::Calling(_) => self.step_calling(ctx),
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
                    self.log_close();
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
        if matches!(&self.phase, Phase::Proxy(x) if matches!(x.stage, Stage::Detached { .. })) {
            // not a timeout: the wait before a <retry> attempt is over
            return self.drive(ctx);
        }
        if matches!(&self.phase, Phase::Calling(_))
            || matches!(&self.phase, Phase::Proxy(x) if x.waits.is_some())
        {
            // a policy's request timed out: its outcome says so and the call goes on
            return self.drive(ctx);
        }
        let failure = match &self.phase {
            Phase::Waiting { .. } | Phase::Reply { .. } | Phase::Closing | Phase::Calling(_) => {
                None
            }
            Phase::Head => Some(Failure::HeadTimeout),
            Phase::Body { .. } => Some(Failure::BodyTimeout),
            Phase::Proxy(x) => {
                if !x.stage.before_response() {
                    None
                } else if !x.stage.connected() {
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
                self.close.get_or_insert(CloseReason::Timeout);
                self.log_close();
                self.release_because(ctx, "client_timeout");
                Outcome::Close
            }
            Some(f) => {
                if let Phase::Proxy(_) = self.phase {
                    self.fail_exchange(f, ctx);
                } else {
                    self.start_reply(
                        f.status(),
                        &failure_body(f),
                        Some(CloseReason::Timeout),
                        false,
                        ctx,
                    );
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
            Phase::Head | Phase::Body { .. } => self.phase_since + l.header_timeout,
            Phase::Reply { .. } | Phase::Closing => self.phase_since + l.idle_timeout,
            Phase::Calling(c) => c.waits.deadline().unwrap_or(self.phase_since),
            // outbound waits for its policies' requests
            Phase::Proxy(x) if x.waits.is_some() => x
                .waits
                .as_ref()
                .and_then(|w| w.deadline())
                .unwrap_or(ctx.now),
            Phase::Proxy(x) => match x.stage {
                Stage::Detached { at } => at,
                Stage::Connecting { since, .. } => since + l.connect_timeout,
                _ if self.waiting_on_client_body() || x.resp_sendable > 0 => {
                    x.last_client + l.idle_timeout
                }
                _ => x.last_backend + x.timeout.unwrap_or(l.response_timeout),
            },
        };
    }

    /// Ends the connection for `why` (unless a reason was already set).
    fn closing(&mut self, why: CloseReason) -> Step {
        self.close.get_or_insert(why);
        Step::Close
    }

    fn log_close(&self) {
        let why = self.close.map_or("ended", CloseReason::as_str);
        log::debug!("connection from {} closed: {why}", self.peer);
    }

    fn set_phase(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.phase_since = now;
    }

    // ------------------------------------------------------------------ head reading

    /// Writes what is left of an interim 100 Continue. `Some` = stop here (blocked on
    /// the client, or it is gone).
    fn flush_interim(&mut self) -> Option<Step> {
        let Phase::Body { interim, .. } = &mut self.phase else {
            return None;
        };
        write_interim(interim, &mut self.transport, &mut self.writable)
    }

    /// The buffer budget is spent: 503 and close (the request is not read further).
    fn refuse_exhausted(&mut self, ctx: &mut Ctx) -> Step {
        let f = Failure::Exhausted(BUFFERS_EXHAUSTED);
        ctx.pool.put_opt(&mut self.inbuf);
        self.start_reply(
            f.status(),
            &failure_body(f),
            Some(CloseReason::Failure(f.reason())),
            false,
            ctx,
        );
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
                return self.closing(CloseReason::ClientGone);
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
            let want = match self.phase {
                Phase::Body { want, .. } => want,
                _ => 0,
            };
            let grown = if want > buf.capacity() {
                ctx.pool.grow_exact(buf, want)
            } else {
                grow_full(ctx.pool, buf)
            };
            if !grown && want > buf.capacity() {
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
            Io::Eof | Io::Failed => self.closing(CloseReason::ClientGone),
        }
    }

    /// Parses the buffered head and starts the answer. `None` = need more bytes.
    fn dispatch(&mut self, ctx: &mut Ctx) -> Option<Step> {
        self.dispatch_in(None, ctx)
    }

    /// `dispatch` for a call coming back from its policies' requests, under the
    /// runtime it started with.
    fn dispatch_resumed(&mut self, resumed: Resumed, rt: &Arc<Runtime>, ctx: &mut Ctx) -> Step {
        let mut under = ctx.with_runtime(rt);
        match self.dispatch_in(Some(resumed), &mut under) {
            Some(step) => step,
            // the head was whole when the call started
            None => Step::Close,
        }
    }

    fn dispatch_in(&mut self, resumed: Option<Resumed>, ctx: &mut Ctx) -> Option<Step> {
        let inbuf = self.inbuf.as_ref()?;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match request::parse(inbuf.bytes(), &mut headers, ctx.limits.head_max) {
            Ok(None) => return None,
            Ok(Some(h)) => h,
            Err(f) => {
                let why = CloseReason::failure(f).unwrap_or(CloseReason::Failure(f.reason()));
                self.start_reply(f.status(), &failure_body(f), Some(why), false, ctx);
                self.log_local(LocalAnswer::refusal(f), ctx);
                return Some(Step::Progress);
            }
        };
        let head_len = head.head_len;
        let has_body = head.body != BodyKind::None;
        let close = CloseReason::after_request(head.keep_alive, ctx.draining);
        let is_head = head.is_head();
        let expect_continue = head.expect_continue;
        let certificate = self.certificate.read(&self.transport);
        let decision = decide(
            &head,
            &inbuf.bytes()[head_len..],
            &self.peer_ip,
            (self.transport.is_tls(), certificate),
            resumed,
            ctx,
        );
        if let Decision::NeedBody(want) = decision {
            let interim = match self.phase {
                Phase::Body { interim, .. } => interim,
                // the client waits for this before it sends the body the plan needs
                _ if expect_continue => Interim::Pending(CONTINUE.len()),
                _ => Interim::NotSent,
            };
            if !matches!(self.phase, Phase::Body { .. }) {
                self.set_phase(Phase::Body { want, interim }, ctx.now);
            } else {
                self.phase = Phase::Body { want, interim };
            }
            return self.flush_interim();
        }
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
                traces,
                metrics,
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
                        traces: &traces,
                        metrics: &metrics,
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
                let close = close
                    .or(CloseReason::unread_body(has_body))
                    .or(failure.and_then(CloseReason::failure));
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
                        traces: &[],
                        metrics: &[],
                    },
                    ctx,
                );
            }
            Decision::Suspend { call, method, url } => {
                self.suspend(call, method, url, ctx);
            }
            Decision::Proxy(x, consumed) => {
                if let Some(b) = self.inbuf.as_mut() {
                    b.consume(head_len + consumed);
                }
                self.close = close;
                // the exchange attaches its backend connection in its first step
                self.set_phase(Phase::Proxy(x), ctx.now);
            }
        }
        Some(Step::Progress)
    }

    fn start_reply(
        &mut self,
        status: u16,
        body: &str,
        close: Option<CloseReason>,
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
        close: Option<CloseReason>,
        head_only: bool,
        ctx: &mut Ctx,
    ) {
        let mut bytes = Vec::with_capacity(160 + body.len());
        render(
            status,
            content_type,
            body,
            close.is_some(),
            head_only,
            &mut bytes,
        );
        self.start_reply_bytes(bytes, close, ctx);
    }

    /// Queues a rendered answer (head and body).
    fn start_reply_bytes(&mut self, bytes: Vec<u8>, close: Option<CloseReason>, ctx: &mut Ctx) {
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
        self.close = close;
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
            traces,
            metrics,
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
            for metric in metrics {
                m.custom(metric);
            }
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
            traces,
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
                Io::Eof | Io::Failed => return self.closing(CloseReason::ClientGone),
            }
        }
        if self.close.is_some() {
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
}

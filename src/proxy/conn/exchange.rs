//! The backend exchange of a connection: one `Stage` per state of the backend side
//! (detached, connecting, sending the request, awaiting the response head, sending the
//! client's head, streaming the body), each owning only its fields; the backend
//! connection lives in the stage that uses it and goes back to the pool (or is closed)
//! when the exchange lets go of it. The request body streams beside the stages
//! (`ReqBody`). `step_exchange` moves the stages on; `respond.rs` holds the policy
//! response phase and `<retry>`, `record.rs` what a finished exchange logs.
//! Must not touch: listeners, config loading, disk.

use super::*;
use crate::proxy::backend::{self, BackendLink, Release};

/// Log fields captured when logging is on (no allocation otherwise).
pub(super) struct Trace {
    pub(super) id: String,
    pub(super) method: String,
    pub(super) url: String,
    pub(super) wall: SystemTime,
}

pub(super) enum ReqBody {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

pub(super) enum RespBody {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
    Dechunk(ChunkedDecoder),
    UntilClose,
}

/// Where the exchange stands with its backend.
///
/// ```text
///  Detached{at} ──checkout──▶ Connecting ──connected──▶ SendingRequest ──head out──▶ AwaitingHead
///      ▲  (pooled: straight to SendingRequest)                                      │ head accepted
///      └──── <retry> (connection closed, request kept whole) ◀──────────────────────┤
///                                                   Streaming ◀──head out── SendingHead
/// ```
pub(super) enum Stage {
    /// No backend connection: the first attempt before it starts, or a `<retry>` attempt
    /// waiting until `at`.
    Detached { at: Instant },
    /// A new connection is being established since `since`.
    Connecting { link: BackendLink, since: Instant },
    /// `sent` bytes of the request head are out (body bytes go with it).
    SendingRequest { link: BackendLink, sent: usize },
    /// The request head is out (its body may still stream); reading the response head.
    AwaitingHead { link: BackendLink },
    /// Writing the client's response head (`sent` bytes of `head` out) and first body bytes.
    SendingHead {
        link: BackendLink,
        head: Buf,
        sent: usize,
        body: RespBody,
        reusable: bool,
    },
    /// The client has the head; the body streams until its framing says it is complete.
    Streaming {
        link: BackendLink,
        body: RespBody,
        reusable: bool,
    },
}

impl Stage {
    pub(super) fn link(&self) -> Option<&BackendLink> {
        match self {
            Stage::Detached { .. } => None,
            Stage::Connecting { link, .. }
            | Stage::SendingRequest { link, .. }
            | Stage::AwaitingHead { link }
            | Stage::SendingHead { link, .. }
            | Stage::Streaming { link, .. } => Some(link),
        }
    }

    pub(super) fn link_mut(&mut self) -> Option<&mut BackendLink> {
        match self {
            Stage::Detached { .. } => None,
            Stage::Connecting { link, .. }
            | Stage::SendingRequest { link, .. }
            | Stage::AwaitingHead { link }
            | Stage::SendingHead { link, .. }
            | Stage::Streaming { link, .. } => Some(link),
        }
    }

    /// Nothing of the response has gone to the client: a failure can still be answered.
    pub(super) fn before_response(&self) -> bool {
        matches!(
            self,
            Stage::Detached { .. }
                | Stage::Connecting { .. }
                | Stage::SendingRequest { .. }
                | Stage::AwaitingHead { .. }
        )
    }

    /// The backend connection is established (or was taken from the pool).
    pub(super) fn connected(&self) -> bool {
        !matches!(self, Stage::Detached { .. } | Stage::Connecting { .. })
    }

    /// Lets go of the backend connection and the head buffer this stage holds.
    pub(super) fn release(self, how: Release, ctx: &mut Ctx) {
        let link = match self {
            Stage::Detached { .. } => return,
            Stage::SendingHead { link, head, .. } => {
                ctx.pool.put(head);
                link
            }
            Stage::Connecting { link, .. }
            | Stage::SendingRequest { link, .. }
            | Stage::AwaitingHead { link }
            | Stage::Streaming { link, .. } => link,
        };
        match how {
            Release::Reuse => ctx.backends.checkin(link, ctx.now, ctx.registry),
            Release::Close(why) => ctx.backends.close(link, why, ctx.registry),
        }
    }
}

impl Exchange {
    /// The client's response head is written in `head`: the exchange sends it next.
    /// False when the exchange was not waiting for the backend's head.
    fn send_head_next(&mut self, head: Buf, body: RespBody, reusable: bool, ctx: &mut Ctx) -> bool {
        let placeholder = Stage::Detached { at: ctx.now };
        let Stage::AwaitingHead { link } = std::mem::replace(&mut self.stage, placeholder) else {
            ctx.pool.put(head);
            return false;
        };
        self.stage = Stage::SendingHead {
            link,
            head,
            sent: 0,
            body,
            reusable,
        };
        true
    }
}

pub(super) struct Exchange {
    pub(super) rt: Arc<Runtime>,
    pub(super) api: u32,
    pub(super) op: u32,
    pub(super) stage: Stage,
    pub(super) addr: SocketAddr,
    /// A failed pooled connection was replaced by a fresh one (once per exchange).
    pub(super) retried: bool,
    pub(super) retryable: bool,
    /// The request head for the backend (with the body when a policy read or set it):
    /// kept whole until the response head is accepted, for `<retry>` and a stale pooled
    /// connection's second try.
    pub(super) req_head: Option<Buf>,
    pub(super) continue_left: usize,
    pub(super) req: ReqBody,
    pub(super) req_sendable: usize,
    pub(super) resp_buf: Option<Buf>,
    pub(super) resp_sendable: usize,
    pub(super) backend_eof: bool,
    pub(super) http10: bool,
    pub(super) is_head: bool,
    pub(super) started: Instant,
    pub(super) backend_started: Option<Instant>,
    pub(super) last_client: Instant,
    pub(super) last_backend: Instant,
    pub(super) status: u16,
    pub(super) backend_status: Option<u16>,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// Head bytes: the client's request head, and the response head written to it
    /// (logged sizes are head and body, as APIM's RequestSize and ResponseSize).
    pub(super) client_head: u64,
    pub(super) response_head_out: u64,
    pub(super) trace: Option<Box<Trace>>,
    /// Policy state, when the operation's plan does anything.
    pub(super) call: Option<Box<Pipeline>>,
    /// forward-request's timeout, replacing the response timeout.
    pub(super) timeout: Option<Duration>,
    /// The caller's subscription (index into the runtime's), for the log.
    pub(super) subscription: Option<u32>,
    /// `<retry>`: attempts sent again so far.
    pub(super) retries: u32,
    /// forward-request `follow-redirects`: redirects followed so far.
    pub(super) redirects: u8,
    /// When the whole request had been read from the client.
    pub(super) request_read: Option<Instant>,
    /// `https://` backend: the name its certificate must carry.
    pub(super) tls: Option<Arc<ServerName<'static>>>,
    /// `https://` backend through an HTTP proxy (`addr` is the proxy's): the tunnel.
    pub(super) via: Option<Arc<crate::proxy::tunnel::ConnectVia>>,
    /// Outbound waits for its policies' requests (send-request, a Redis lookup).
    pub(super) waits: Option<Box<Waits>>,
    /// The backend could not be reached and on-error waits for its policies' requests
    /// (`failing.rs`): the failure, and how the connection ends after the answer.
    pub(super) failed: Option<(Failure, Option<CloseReason>)>,
}

impl Exchange {
    /// The TLS to speak to the backend, for `https://`. An error when the runtime has no
    /// client config for it (the agent logged why): never a plain connection instead.
    pub(super) fn backend_tls(&self) -> io::Result<Option<backend::TlsTo<'_>>> {
        let presents = self
            .call
            .as_ref()
            .and_then(|c| c.st.req.client_tls.as_ref());
        match (&self.tls, presents, &self.rt.backend_tls) {
            (None, _, _) => Ok(None),
            // authentication-certificate
            (Some(name), Some(client), _) => Ok(Some(backend::TlsTo {
                name,
                config: &client.config,
                identity: Some(&client.thumbprint),
                via: self.via.as_ref(),
            })),
            (Some(name), None, Some(config)) => Ok(Some(backend::TlsTo {
                name,
                config,
                identity: None,
                via: self.via.as_ref(),
            })),
            (Some(_), None, None) => {
                Err(io::Error::other("no TLS client config for https backends"))
            }
        }
    }

    /// Takes a backend connection for the next attempt (a pooled one unless `fresh`):
    /// a pooled connection is ready to send, a new one connecting.
    fn attach(&mut self, fresh: bool, ctx: &mut Ctx) -> io::Result<()> {
        let tls = self.backend_tls()?;
        let link = ctx
            .backends
            .checkout(self.addr, tls, fresh, ctx.client, ctx.registry)?;
        self.last_backend = ctx.now;
        self.stage = if link.conn.reused {
            self.backend_started = Some(ctx.now);
            Stage::SendingRequest { link, sent: 0 }
        } else {
            Stage::Connecting {
                link,
                since: ctx.now,
            }
        };
        Ok(())
    }
}

impl Client {
    /// Moves the exchange as far as it can go now: its stages in order, each ending the
    /// step early when it must wait or the exchange ended.
    pub(super) fn step_exchange(&mut self, ctx: &mut Ctx) -> Step {
        if matches!(&self.phase, Phase::Proxy(x) if x.failed.is_some()) {
            return self.step_failing(ctx);
        }
        match self.advance_exchange(ctx) {
            Ok(step) | Err(step) => step,
        }
    }

    fn advance_exchange(&mut self, ctx: &mut Ctx) -> Result<Step, Step> {
        let mut progress = false;
        self.attach_when_due(ctx)?;
        self.finish_connecting(ctx)?;
        self.send_request_head(ctx, &mut progress)?;
        self.send_interim_continue(&mut progress)?;
        self.send_request_body(ctx, &mut progress)?;
        self.abort_if_client_gone()?;
        self.read_response_bytes(ctx, &mut progress)?;
        let Phase::Proxy(x) = &self.phase else {
            return Ok(Step::Close);
        };
        Ok(match x.stage {
            Stage::AwaitingHead { .. } => self.await_response_head(ctx, progress),
            Stage::SendingHead { .. } => self.send_response_head(ctx, progress),
            Stage::Streaming { .. } => self.stream_response_body(ctx, progress),
            _ => stalled_or_moved(progress),
        })
    }

    /// A detached exchange takes a backend connection when its time has come (at once
    /// for the first attempt; after the wait for a `<retry>`, unless the client left).
    fn attach_when_due(&mut self, ctx: &mut Ctx) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Stage::Detached { at } = x.stage else {
            return Ok(());
        };
        // between attempts the request is whole: bytes from the client are its next one
        if x.retries > 0
            && client_gone(&mut self.transport, &mut self.readable, &mut self.pipelined)
        {
            return Err(self.closing(CloseReason::ClientGone));
        }
        if ctx.now < at {
            return Err(Step::Blocked);
        }
        if let Err(e) = x.attach(false, ctx) {
            self.fail_exchange(connect_failure(&e), ctx);
            return Err(Step::Progress);
        }
        Ok(())
    }

    /// A connecting backend connection is established, or the step waits (or fails).
    fn finish_connecting(&mut self, ctx: &mut Ctx) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Stage::Connecting { link, .. } = &mut x.stage else {
            return Ok(());
        };
        let b = &mut link.conn;
        // a connect completes writable; a proxy's tunnel also answers readable
        if !b.writable && !b.readable {
            return Err(Step::Blocked);
        }
        let connect = b.transport.connect_state();
        if connect == Connect::Pending {
            b.writable = false;
            b.readable = false;
            return Err(Step::Blocked);
        }
        if connect == Connect::Failed {
            self.fail_exchange(Failure::BackendConnect, ctx);
            return Err(Step::Progress);
        }
        x.backend_started = Some(ctx.now);
        x.last_backend = ctx.now;
        let placeholder = Stage::Detached { at: ctx.now };
        if let Stage::Connecting { link, .. } = std::mem::replace(&mut x.stage, placeholder) {
            x.stage = Stage::SendingRequest { link, sent: 0 };
        }
        Ok(())
    }

    /// The request head goes to the backend, with the body bytes already buffered.
    fn send_request_head(&mut self, ctx: &mut Ctx, progress: &mut bool) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Stage::SendingRequest { link, sent } = &mut x.stage else {
            return Ok(());
        };
        let Some(head) = x.req_head.as_ref() else {
            return Err(Step::Close);
        };
        let b = &mut link.conn;
        if *sent < head.len() {
            if !b.writable {
                return Err(Step::Blocked);
            }
            if x.req_sendable == 0 && x.continue_left == 0 {
                if let Some(inbuf) = self.inbuf.as_ref().filter(|b| !b.is_empty()) {
                    if let Err(f) =
                        refill_request(&mut x.req, inbuf, &mut x.req_sendable, ctx.limits.body_max)
                    {
                        self.fail_exchange(f, ctx);
                        return Err(Step::Progress);
                    }
                }
            }
            let head_rest = &head.bytes()[*sent..];
            let body = match self.inbuf.as_ref() {
                Some(inbuf) => &inbuf.bytes()[..x.req_sendable],
                None => &[],
            };
            let head_len = head_rest.len();
            match write_pair(&mut b.transport, head_rest, body, &mut b.writable) {
                Io::Done(n) => {
                    let h = n.min(head_len);
                    *sent += h;
                    if n > h {
                        if let Some(inbuf) = self.inbuf.as_mut() {
                            inbuf.consume(n - h);
                        }
                        x.req_sendable -= n - h;
                        x.bytes_in += (n - h) as u64;
                    }
                    x.last_backend = ctx.now;
                    *progress = true;
                }
                Io::Blocked => return Err(Step::Blocked),
                Io::Eof | Io::Failed => return Err(self.backend_broke(ctx)),
            }
            if *sent < head.len() {
                return Err(stalled_or_moved(*progress));
            }
        }
        let placeholder = Stage::Detached { at: ctx.now };
        if let Stage::SendingRequest { link, .. } = std::mem::replace(&mut x.stage, placeholder) {
            x.stage = Stage::AwaitingHead { link };
        }
        Ok(())
    }
    /// 100 Continue to the client, once the request is on its way.
    fn send_interim_continue(&mut self, progress: &mut bool) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        if x.continue_left > 0 && self.writable {
            let from = CONTINUE.len() - x.continue_left;
            match write_some(&mut self.transport, &CONTINUE[from..], &mut self.writable) {
                Io::Done(n) => {
                    x.continue_left -= n;
                    *progress = true;
                }
                Io::Blocked => {}
                Io::Eof | Io::Failed => return Err(self.closing(CloseReason::ClientGone)),
            }
        }

        Ok(())
    }

    /// The request body streams to the backend as the client sends it.
    fn send_request_body(&mut self, ctx: &mut Ctx, progress: &mut bool) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Some(b) = x.stage.link_mut().map(|l| &mut l.conn) else {
            return Err(Step::Close);
        };
        if !matches!(x.req, ReqBody::Done) {
            if self.inbuf.is_none() {
                self.inbuf = ctx.pool.get(Class::Head);
            }
            let Some(inbuf) = self.inbuf.as_mut() else {
                return Err(Step::Close);
            };
            if x.req_sendable == 0 && !inbuf.is_empty() {
                if let Err(f) =
                    refill_request(&mut x.req, inbuf, &mut x.req_sendable, ctx.limits.body_max)
                {
                    self.fail_exchange(f, ctx);
                    return Err(Step::Progress);
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
                        *progress = true;
                    }
                    Io::Blocked => {}
                    Io::Eof | Io::Failed => return Err(self.backend_broke(ctx)),
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
                *progress = true;
            } else if x.req_sendable == 0 && self.readable {
                // a body that fills the small buffer streams on through a data-sized one
                if !inbuf.has_space() && inbuf.capacity() < ctx.pool.size_of(Class::Data) {
                    ctx.pool.grow(inbuf, Class::Data);
                }
                match read_some(&mut self.transport, inbuf, &mut self.readable) {
                    Io::Done(_) => {
                        x.last_client = ctx.now;
                        *progress = true;
                    }
                    Io::Blocked => {}
                    // the client went away mid-body
                    Io::Eof | Io::Failed => return Err(self.closing(CloseReason::ClientGone)),
                }
            }
        }

        Ok(())
    }

    /// A client that goes away while its request is being answered aborts it (as nginx does).
    fn abort_if_client_gone(&mut self) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        if matches!(x.req, ReqBody::Done)
            && client_gone(&mut self.transport, &mut self.readable, &mut self.pipelined)
        {
            return Err(self.closing(CloseReason::ClientGone));
        }

        Ok(())
    }

    /// Bytes of the response come in from the backend.
    fn read_response_bytes(&mut self, ctx: &mut Ctx, progress: &mut bool) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Some(b) = x.stage.link_mut().map(|l| &mut l.conn) else {
            return Err(Step::Close);
        };
        if x.resp_buf.is_none() {
            x.resp_buf = ctx.pool.get(Class::Head);
        }
        let Some(rbuf) = x.resp_buf.as_mut() else {
            return Err(Step::Close);
        };
        // a response that fills its small buffer streams on through a data-sized one
        if !rbuf.has_space() && rbuf.capacity() < ctx.pool.size_of(Class::Data) {
            ctx.pool.grow(rbuf, Class::Data);
        }
        if b.readable && !x.backend_eof && rbuf.has_space() && x.resp_sendable == 0 {
            match read_some(&mut b.transport, rbuf, &mut b.readable) {
                Io::Done(_) => {
                    // a close that came with the data is not reported again: read on
                    b.readable |= b.hup;
                    x.last_backend = ctx.now;
                    *progress = true;
                }
                Io::Blocked => {}
                Io::Eof => {
                    x.backend_eof = true;
                    *progress = true;
                }
                Io::Failed => {
                    if x.stage.before_response() {
                        return Err(self.backend_broke(ctx));
                    }
                    return Err(self.closing(CloseReason::BackendTruncated));
                }
            }
        }
        Ok(())
    }

    /// Awaiting the response head: 1xx skipped, a retry scheduled, policies run, the
    /// client's head written.
    fn await_response_head(&mut self, ctx: &mut Ctx, progress: bool) -> Step {
        let Phase::Proxy(x) = &mut self.phase else {
            return Step::Close;
        };
        let Some(rbuf) = x.resp_buf.as_mut() else {
            return Step::Close;
        };
        if rbuf.is_empty() {
            // nothing of the answer yet (this runs after every write of the request)
            return match x.backend_eof {
                true => self.backend_broke(ctx),
                false => stalled_or_moved(progress),
            };
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let limit = ctx.pool.size_of(Class::Data);
        let parsed = match response::parse(rbuf.bytes(), &mut headers, x.is_head, limit) {
            Ok(None) if x.backend_eof => Err(Failure::BackendBadResponse("backend_truncated_head")),
            Ok(Some(r)) if r.status == 101 => {
                Err(Failure::BackendBadResponse("backend_upgrade_unsupported"))
            }
            parsed => parsed,
        };
        match parsed {
            Ok(None) => {}
            Err(f) => {
                self.fail_exchange(f, ctx);
                return Step::Progress;
            }
            Ok(Some(r)) if (100..200).contains(&r.status) => {
                // interim answers are not relayed
                rbuf.consume(r.head_len);
                return Step::Progress;
            }
            Ok(Some(r)) => {
                let at = (&*x.rt, x.api, x.addr);
                let resuming = x.waits.is_some(); // redirect and retry were decided before
                let redirect = redirect_of(&r, at, x.call.as_deref(), x.redirects);
                if let Some(plan) = redirect.filter(|_| !resuming) {
                    if let Err(f) = follow_redirect(x, plan, ctx) {
                        self.fail_exchange(f, ctx);
                    }
                    return Step::Progress;
                }
                // <retry>: this answer may call for another attempt
                let retry = retry_plan(x.call.as_deref(), x.retries, &x.req)
                    .filter(|_| !resuming)
                    .cloned();
                if let (Some(retry), Some(call)) = (retry, x.call.as_deref()) {
                    if wants_retry(&x.rt, call, r.status, r.reason, r.headers, ctx) {
                        let close = close_after_exchange(self.close, ctx.draining, &x.req);
                        let ended = EndedAttempt::of(&r);
                        return match next_attempt(x, &retry, &ended, close.is_some(), ctx) {
                            None => Step::Progress,
                            Some((bytes, s)) => {
                                self.answer_exchange(bytes, (s, ended.status), false, close, ctx)
                            }
                        };
                    }
                }
                // policies: outbound runs on the response head (and on the whole
                // body when a policy needs it)
                let mut status = r.status;
                let mut reason_override: Option<String> = None;
                let mut edits = None;
                if x.call.is_some() {
                    let close = close_after_exchange(self.close, ctx.draining, &x.req);
                    let (on, head) = ((&x.rt, x.is_head, x.backend_eof), (&r, rbuf.bytes()));
                    let call = x.call.as_deref_mut();
                    // None: still waiting for the policies' requests; Suspend: they started
                    match waiting_outbound(&mut x.waits, call, on, head, close.is_some(), ctx) {
                        None => return Step::Blocked,
                        Some(Outbound::Suspend) => return Step::Progress,
                        Some(Outbound::NeedBody) => match room_for_whole_body(rbuf, ctx.pool) {
                            Ok(()) => return stalled_or_moved(progress),
                            Err(f) => {
                                self.fail_exchange(f, ctx);
                                return Step::Progress;
                            }
                        },
                        Some(Outbound::Failed(f)) => {
                            self.fail_exchange(f, ctx);
                            return Step::Progress;
                        }
                        Some(Outbound::Answer {
                            bytes,
                            status,
                            consumed,
                        }) => {
                            let statuses = (status, r.status);
                            let reusable = consumed.is_some_and(|n| n == rbuf.len()) && r.reusable;
                            return self.answer_exchange(bytes, statuses, reusable, close, ctx);
                        }
                        Some(Outbound::Stream {
                            status: s,
                            reason,
                            headers,
                        }) => {
                            status = s;
                            reason_override = reason;
                            edits = Some(headers);
                        }
                    }
                }
                let dechunk = x.http10 && r.body == ResponseBody::Chunked;
                let close =
                    close_after_exchange(self.close, ctx.draining, &x.req)
                        .or(dechunk.then_some(CloseReason::Dechunked))
                        .or((r.body == ResponseBody::UntilClose)
                            .then_some(CloseReason::BodyUntilClose));
                self.close = close;
                // the request head is not needed any more: its buffer takes the response head
                let Some(mut out) = x.req_head.take() else {
                    return Step::Close;
                };
                let head = ClientHead {
                    status,
                    reason: reason_override.as_deref(),
                    edits: edits.as_ref(),
                    close: close.is_some(),
                    http10: x.http10,
                    dechunk,
                };
                let wrote = head.write(&r, &mut out, ctx.pool);
                if wrote.is_err() {
                    ctx.pool.put(out);
                    self.fail_exchange(Failure::BackendBadResponse("backend_head_too_large"), ctx);
                    return Step::Progress;
                }
                x.status = status;
                x.backend_status = Some(r.status);
                let body = RespBody::of(r.body, dechunk);
                let reusable = r.reusable;
                let n = r.head_len;
                rbuf.consume(n);
                return if x.send_head_next(out, body, reusable, ctx) {
                    Step::Progress
                } else {
                    Step::Close
                };
            }
        }
        stalled_or_moved(progress)
    }

    /// Sending the response head (with the first body bytes) to the client.
    fn send_response_head(&mut self, ctx: &mut Ctx, mut progress: bool) -> Step {
        let Phase::Proxy(x) = &mut self.phase else {
            return Step::Close;
        };
        let Some(rbuf) = x.resp_buf.as_mut() else {
            return Step::Close;
        };
        let Stage::SendingHead {
            head: out,
            sent,
            body,
            reusable,
            ..
        } = &mut x.stage
        else {
            return Step::Close;
        };
        if x.resp_sendable == 0
            && !rbuf.is_empty()
            && refill_response(body, reusable, rbuf, &mut x.resp_sendable).is_err()
        {
            return self.closing(CloseReason::BackendFraming);
        }
        if *sent < out.len() {
            if !self.writable {
                return Step::Blocked;
            }
            let head_rest = &out.bytes()[*sent..];
            let head_len = head_rest.len();
            match write_pair(
                &mut self.transport,
                head_rest,
                &rbuf.bytes()[..x.resp_sendable],
                &mut self.writable,
            ) {
                Io::Done(n) => {
                    let h = n.min(head_len);
                    *sent += h;
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
                Io::Eof | Io::Failed => return self.closing(CloseReason::ClientGone),
            }
        }
        if *sent >= out.len() {
            let placeholder = Stage::Detached { at: ctx.now };
            if let Stage::SendingHead {
                link,
                head,
                body,
                reusable,
                ..
            } = std::mem::replace(&mut x.stage, placeholder)
            {
                ctx.pool.put(head);
                x.stage = Stage::Streaming {
                    link,
                    body,
                    reusable,
                };
            }
            progress = true;
        }
        stalled_or_moved(progress)
    }

    /// Streaming the response body to the client until it is complete.
    fn stream_response_body(&mut self, ctx: &mut Ctx, mut progress: bool) -> Step {
        let Phase::Proxy(x) = &mut self.phase else {
            return Step::Close;
        };
        let Some(rbuf) = x.resp_buf.as_mut() else {
            return Step::Close;
        };
        let Stage::Streaming { body, reusable, .. } = &mut x.stage else {
            return Step::Close;
        };
        if x.resp_sendable == 0 && !rbuf.is_empty() {
            let before = rbuf.len();
            if refill_response(body, reusable, rbuf, &mut x.resp_sendable).is_err() {
                return self.closing(CloseReason::BackendFraming);
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
                Io::Eof | Io::Failed => return self.closing(CloseReason::ClientGone),
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
            return self.closing(CloseReason::BackendTruncated);
        }
        stalled_or_moved(progress)
    }

    /// The backend failed before answering: retry once on a fresh connection when that is
    /// safe (reused connection, idempotent request without body), else 502.
    pub(super) fn backend_broke(&mut self, ctx: &mut Ctx) -> Step {
        let Phase::Proxy(x) = &mut self.phase else {
            return Step::Close;
        };
        let (was_reused, handshaking) = x.stage.link().map_or((false, false), |l| {
            (l.conn.reused, l.conn.transport.is_handshaking())
        });
        let nothing_received = x.resp_buf.as_ref().is_none_or(Buf::is_empty);
        if was_reused && x.retryable && !x.retried && nothing_received && x.stage.before_response()
        {
            let stale = std::mem::replace(&mut x.stage, Stage::Detached { at: ctx.now });
            stale.release(Release::Close(backend::CloseReason::Stale), ctx);
            x.retried = true;
            x.backend_eof = false;
            if x.attach(true, ctx).is_ok() {
                return Step::Progress;
            }
        }
        let failure = match (x.stage.connected(), handshaking) {
            (true, true) => Failure::BackendTls,
            (true, false) => Failure::BackendReset,
            _ => Failure::BackendConnect,
        };
        self.fail_exchange(failure, ctx);
        Step::Progress
    }

    /// Ends the exchange with a gateway answer when none of the response went out yet;
    /// otherwise the connection closes.
    pub(super) fn fail_exchange(&mut self, failure: Failure, ctx: &mut Ctx) {
        // <retry> sees a backend that could not be reached or did not answer as the
        // gateway's 502 / 504
        if let (Phase::Proxy(x), true) = (&mut self.phase, failure.is_backend_transport()) {
            let retry = retry_plan(x.call.as_deref(), x.retries, &x.req).cloned();
            if let (Some(retry), Some(call)) = (retry, x.call.as_deref()) {
                let status = failure.status();
                let reason = crate::http::failure::reason_phrase(status);
                if x.stage.before_response() && wants_retry(&x.rt, call, status, reason, &[], ctx) {
                    let close = close_after_exchange(self.close, ctx.draining, &x.req);
                    let ended = EndedAttempt::failed(status, reason);
                    if let Some((bytes, s)) = next_attempt(x, &retry, &ended, close.is_some(), ctx)
                    {
                        self.answer_exchange(bytes, (s, status), false, close, ctx);
                    }
                    return;
                }
            }
        }
        let answered = matches!(&self.phase, Phase::Proxy(x) if x.stage.before_response());
        let failed = Release::Close(backend::CloseReason::Failed);
        let Some(mut x) = self.take_exchange(failed, ctx) else {
            return;
        };
        self.resume_pipeline();
        x.status = failure.status();
        let close = self
            .close
            .or(CloseReason::unread_body(!matches!(x.req, ReqBody::Done)))
            .or(CloseReason::failure(failure));
        // on-error runs with the failure as context.LastError, and may wait
        let rt = Arc::clone(&x.rt);
        let ran = match x.call.as_mut() {
            Some(call) if answered && !call.plan.on_error.is_empty() => {
                if call.on_failure_waiting(failure, &mut ctx.pipeline_io(&rt)) == Flow::Suspend {
                    x.waits = Some(Box::new(Waits::start(call, &rt, ctx)));
                    x.failed = Some((failure, close));
                    self.phase = Phase::Proxy(x);
                    return;
                }
                true
            }
            _ => false,
        };
        self.answer_failed(x, failure, (answered, ran), close, ctx);
    }

    /// The answer for a failed exchange: on-error's (`ran`), or the gateway's own; none
    /// when part of the response had gone out (`answered` false: the connection closes).
    pub(super) fn answer_failed(
        &mut self,
        mut x: Box<Exchange>,
        failure: Failure,
        (answered, ran): (bool, bool),
        close: Option<CloseReason>,
        ctx: &mut Ctx,
    ) {
        let policy_answer = match x.call.as_ref() {
            Some(call) if ran => {
                x.status = call.st.resp.status.unwrap_or(x.status);
                Some(gate::render_response(
                    &call.st,
                    x.status,
                    "",
                    &[],
                    close.is_some(),
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
    pub(super) fn take_exchange(&mut self, how: Release, ctx: &mut Ctx) -> Option<Box<Exchange>> {
        let Phase::Proxy(mut x) =
            std::mem::replace(&mut self.phase, Phase::Waiting { fresh: false })
        else {
            return None;
        };
        let stage = std::mem::replace(&mut x.stage, Stage::Detached { at: ctx.now });
        stage.release(how, ctx);
        ctx.pool.put_opt(&mut x.req_head);
        ctx.pool.put_opt(&mut x.resp_buf);
        Some(x)
    }

    /// Ends the exchange with a response the policies made after the backend answered.
    pub(super) fn answer_exchange(
        &mut self,
        bytes: Vec<u8>,
        (status, backend_status): (u16, u16),
        reusable: bool,
        close: Option<CloseReason>,
        ctx: &mut Ctx,
    ) -> Step {
        let Some(mut x) = self.take_exchange(reuse_or_close(reusable), ctx) else {
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
    pub(super) fn resume_pipeline(&mut self) {
        if self.pipelined {
            self.pipelined = false;
            self.readable = true;
        }
    }

    pub(super) fn finish_exchange(&mut self, reusable: bool, ctx: &mut Ctx) -> Step {
        let request_done = matches!(&self.phase, Phase::Proxy(x) if matches!(x.req, ReqBody::Done));
        let Some(mut x) = self.take_exchange(reuse_or_close(reusable && request_done), ctx) else {
            return Step::Close;
        };
        end_call(&mut x, ctx);
        log_exchange(&x, self.peer, ctx, None);
        self.phase_since = ctx.now;
        self.resume_pipeline();
        if let Some(why) = self
            .close
            .or(CloseReason::unread_body(!matches!(x.req, ReqBody::Done)))
        {
            return self.closing(why);
        }
        Step::Progress
    }
}

/// The head the client gets for a backend's response, with the policies' changes.
struct ClientHead<'a> {
    status: u16,
    reason: Option<&'a str>,
    edits: Option<&'a forward::HeaderEdits>,
    close: bool,
    http10: bool,
    dechunk: bool,
}

impl ClientHead<'_> {
    /// Writes it into `out` (cleared first; moved to a larger buffer when needed).
    fn write(
        &self,
        r: &response::ResponseHead,
        out: &mut Buf,
        pool: &mut Pool,
    ) -> Result<(), forward::Full> {
        let (connection, framing) = client_framing(self.close, self.http10, self.dechunk);
        let reason = match self.reason {
            Some(reason) => reason,
            None if self.status == r.status => r.reason,
            None => crate::http::failure::reason_phrase(self.status),
        };
        let edits = self.edits.filter(|e| !e.is_empty());
        out.clear();
        write_head(pool, out, |w| {
            forward::write_client_response(
                w,
                self.status,
                reason,
                r.headers,
                framing,
                connection,
                edits,
            )
        })
    }
}

/// Why the client connection closes after this exchange, as far as its request and the
/// gateway say: what the request asked, draining, or a request body not wholly read.
fn close_after_exchange(
    asked: Option<CloseReason>,
    draining: bool,
    req: &ReqBody,
) -> Option<CloseReason> {
    asked
        .or(CloseReason::draining(draining))
        .or(CloseReason::unread_body(!matches!(req, ReqBody::Done)))
}

/// A cleanly ended response's connection goes back to the pool; any other is closed.
fn reuse_or_close(reusable: bool) -> Release {
    if reusable {
        Release::Reuse
    } else {
        Release::Close(backend::CloseReason::NotReusable)
    }
}

/// Makes room in `rbuf` for more of a response body a policy reads whole (doubling,
/// up to the bound policies may read). `Err`: the bound, or the buffer budget, is hit.
fn room_for_whole_body(rbuf: &mut Buf, pool: &mut Pool) -> Result<(), Failure> {
    let want = (rbuf.capacity() * 2).clamp(64 * 1024, gate::BUFFERED_BODY_MAX + 64 * 1024);
    if rbuf.has_space() || pool.grow_exact(rbuf, want) {
        return Ok(());
    }
    Err(if want > rbuf.capacity() {
        // the size is allowed: the budget is spent
        Failure::Exhausted(BUFFERS_EXHAUSTED)
    } else {
        Failure::BackendBadResponse("backend_body_too_large_for_policy")
    })
}

/// The `Connection` header and body framing of the answer to the client: closing, or
/// keep-alive spelled out for HTTP/1.0; chunks dropped for an HTTP/1.0 client.
fn client_framing(
    close: bool,
    http10: bool,
    dechunk: bool,
) -> (Option<&'static str>, ClientFraming) {
    let connection = if close {
        Some("close")
    } else if http10 {
        Some("keep-alive")
    } else {
        None
    };
    let framing = if dechunk {
        ClientFraming::Dechunk
    } else {
        ClientFraming::AsIs
    };
    (connection, framing)
}

impl RespBody {
    /// How the body of a backend response is relayed.
    fn of(body: ResponseBody, dechunk: bool) -> RespBody {
        match body {
            ResponseBody::None | ResponseBody::Length(0) => RespBody::Done,
            ResponseBody::Length(n) => RespBody::Length(n),
            ResponseBody::Chunked if dechunk => RespBody::Dechunk(ChunkedDecoder::new()),
            ResponseBody::Chunked => RespBody::Chunked(ChunkedDecoder::new()),
            ResponseBody::UntilClose => RespBody::UntilClose,
        }
    }
}

/// Progress made, or blocked until the next readiness event.
pub(super) fn stalled_or_moved(progress: bool) -> Step {
    if progress {
        Step::Progress
    } else {
        Step::Blocked
    }
}

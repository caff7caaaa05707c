//! The backend exchange of a connection: connecting, sending the request head and body,
//! awaiting and relaying the response, retries, and what it logs. The exchange is
//! driven by `step_exchange` on the client; `outbound` runs the policy response phase.
//! Must not touch: listeners, config loading, disk.

use super::*;

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

pub(super) enum Resp {
    AwaitHead,
    SendHead { body: RespBody, reusable: bool },
    Body { body: RespBody, reusable: bool },
}

pub(super) struct Exchange {
    pub(super) rt: Arc<Runtime>,
    pub(super) api: u32,
    pub(super) op: u32,
    pub(super) backend: usize,
    pub(super) addr: SocketAddr,
    pub(super) retried: bool,
    pub(super) retryable: bool,
    /// Request head for the backend; after the response head arrives, the response head
    /// for the client.
    pub(super) head: Option<Buf>,
    pub(super) head_sent: usize,
    pub(super) continue_left: usize,
    pub(super) req: ReqBody,
    pub(super) req_sendable: usize,
    pub(super) resp_buf: Option<Buf>,
    pub(super) resp: Resp,
    pub(super) resp_sendable: usize,
    pub(super) backend_eof: bool,
    pub(super) http10: bool,
    pub(super) is_head: bool,
    pub(super) started: Instant,
    pub(super) connect_started: Instant,
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
    /// `<retry>`: attempts sent again so far, and when the next one starts (between
    /// attempts the exchange holds no backend connection).
    pub(super) retries: u32,
    pub(super) retry_at: Option<Instant>,
    /// When the whole request had been read from the client.
    pub(super) request_read: Option<Instant>,
    /// `https://` backend: the name its certificate must carry.
    pub(super) tls: Option<Arc<ServerName<'static>>>,
}

impl Exchange {
    /// The TLS to speak to the backend, for `https://`. An error when the runtime has no
    /// client config for it (the agent logged why): never a plain connection instead.
    pub(super) fn backend_tls(
        &self,
    ) -> io::Result<Option<(&Arc<ServerName<'static>>, &Arc<rustls::ClientConfig>)>> {
        match (&self.tls, &self.rt.backend_tls) {
            (None, _) => Ok(None),
            (Some(name), Some(config)) => Ok(Some((name, config))),
            (Some(_), None) => Err(io::Error::other("no TLS client config for https backends")),
        }
    }

    /// Takes a backend connection (pooled or new) for the next attempt.
    pub(super) fn attach_backend(&mut self, ctx: &mut Ctx) -> io::Result<()> {
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

impl Client {
    /// Moves the exchange as far as it can go now: its stages in order, each ending the
    /// step early when it must wait or the exchange ended.
    pub(super) fn step_exchange(&mut self, ctx: &mut Ctx) -> Step {
        match self.advance_exchange(ctx) {
            Ok(step) | Err(step) => step,
        }
    }

    fn advance_exchange(&mut self, ctx: &mut Ctx) -> Result<Step, Step> {
        let mut progress = false;
        self.start_retry_when_due(ctx)?;
        self.ensure_connected(ctx)?;
        self.send_request_head(ctx, &mut progress)?;
        self.send_interim_continue(&mut progress)?;
        self.send_request_body(ctx, &mut progress)?;
        self.abort_if_client_gone()?;
        self.read_response_bytes(ctx, &mut progress)?;
        let Phase::Proxy(x) = &self.phase else {
            return Ok(Step::Close);
        };
        Ok(match x.resp {
            Resp::AwaitHead => self.await_response_head(ctx, progress),
            Resp::SendHead { .. } => self.send_response_head(ctx, progress),
            Resp::Body { .. } => self.stream_response_body(ctx, progress),
        })
    }

    /// <retry>: the next attempt starts when its wait is over (unless the client left meanwhile).
    fn start_retry_when_due(&mut self, ctx: &mut Ctx) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        if let Some(at) = x.retry_at {
            if client_gone(&mut self.transport, &mut self.readable, &mut self.pipelined) {
                return Err(Step::Close);
            }
            if ctx.now < at {
                return Err(Step::Blocked);
            }
            x.retry_at = None;
            if let Err(e) = x.attach_backend(ctx) {
                self.fail_exchange(connect_failure(&e), ctx);
                return Err(Step::Progress);
            }
        }
        Ok(())
    }

    /// The backend connection is established, or the step waits (or fails with 502).
    fn ensure_connected(&mut self, ctx: &mut Ctx) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Some(b) = ctx.backends.slab.get_mut(x.backend) else {
            return Err(Step::Close);
        };
        if !b.connected {
            if !b.writable {
                return Err(Step::Blocked);
            }
            let ok = match b.transport.sock().take_error() {
                Ok(None) => match b.transport.sock().peer_addr() {
                    Ok(_) => true,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        b.writable = false;
                        return Err(Step::Blocked);
                    }
                    Err(_) => false,
                },
                _ => false,
            };
            if !ok {
                self.fail_exchange(Failure::BackendConnect, ctx);
                return Err(Step::Progress);
            }
            b.connected = true;
            x.backend_started = Some(ctx.now);
            x.last_backend = ctx.now;
        }

        Ok(())
    }

    /// The request head goes to the backend, with the body bytes already buffered.
    fn send_request_head(&mut self, ctx: &mut Ctx, progress: &mut bool) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Some(b) = ctx.backends.slab.get_mut(x.backend) else {
            return Err(Step::Close);
        };
        if let (Resp::AwaitHead, Some(head)) = (&x.resp, x.head.as_ref()) {
            if x.head_sent < head.len() {
                if !b.writable {
                    return Err(Step::Blocked);
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
                            return Err(Step::Progress);
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
                        *progress = true;
                    }
                    Io::Blocked => return Err(Step::Blocked),
                    Io::Eof | Io::Failed => return Err(self.backend_broke(ctx)),
                }
                if x.head_sent < head.len() {
                    return Err(stalled_or_moved(*progress));
                }
            }
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
                Io::Eof | Io::Failed => return Err(Step::Close),
            }
        }

        Ok(())
    }

    /// The request body streams to the backend as the client sends it.
    fn send_request_body(&mut self, ctx: &mut Ctx, progress: &mut bool) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Some(b) = ctx.backends.slab.get_mut(x.backend) else {
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
                    Io::Eof | Io::Failed => return Err(Step::Close),
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
            return Err(Step::Close);
        }

        Ok(())
    }

    /// Bytes of the response come in from the backend.
    fn read_response_bytes(&mut self, ctx: &mut Ctx, progress: &mut bool) -> Result<(), Step> {
        let Phase::Proxy(x) = &mut self.phase else {
            return Err(Step::Close);
        };
        let Some(b) = ctx.backends.slab.get_mut(x.backend) else {
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
                    x.last_backend = ctx.now;
                    *progress = true;
                }
                Io::Blocked => {}
                Io::Eof => {
                    x.backend_eof = true;
                    *progress = true;
                }
                Io::Failed => {
                    if matches!(x.resp, Resp::AwaitHead) {
                        return Err(self.backend_broke(ctx));
                    }
                    return Err(Step::Close);
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
        let head_sent = x.head.as_ref().is_none_or(|h| x.head_sent >= h.len());
        if !head_sent {
            return stalled_or_moved(progress);
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
                    self.fail_exchange(Failure::BackendBadResponse("backend_truncated_head"), ctx);
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
                    let close = self.close_after || ctx.draining || !matches!(x.req, ReqBody::Done);
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
                            if let Err(f) = room_for_whole_body(rbuf, ctx.pool) {
                                self.fail_exchange(f, ctx);
                                return Step::Progress;
                            }
                            return stalled_or_moved(progress);
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
                            let reusable = consumed.is_some_and(|n| n == rbuf.len()) && r.reusable;
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
                let (connection, framing) = client_framing(close, x.http10, dechunk);
                let Some(out) = x.head.as_mut() else {
                    return Step::Close;
                };
                let reason = match reason_override.as_deref() {
                    Some(reason) => reason,
                    None if status == r.status => r.reason,
                    None => crate::http::failure::reason_phrase(status),
                };
                let edits = edits.as_ref().filter(|e| !e.is_empty());
                let wrote = write_head(ctx.pool, out, |w| {
                    forward::write_client_response(
                        w, status, reason, r.headers, framing, connection, edits,
                    )
                });
                if wrote.is_err() {
                    self.fail_exchange(Failure::BackendBadResponse("backend_head_too_large"), ctx);
                    return Step::Progress;
                }
                x.head_sent = 0;
                x.status = status;
                x.backend_status = Some(r.status);
                let body = RespBody::of(r.body, dechunk);
                let reusable = r.reusable;
                let n = r.head_len;
                rbuf.consume(n);
                x.resp = Resp::SendHead { body, reusable };
                return Step::Progress;
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
        let Resp::SendHead { body, reusable } = &mut x.resp else {
            return Step::Close;
        };
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
        let Resp::Body { body, reusable } = &mut x.resp else {
            return Step::Close;
        };
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
        stalled_or_moved(progress)
    }

    /// The backend failed before answering: retry once on a fresh connection when that is
    /// safe (reused connection, idempotent request without body), else 502.
    pub(super) fn backend_broke(&mut self, ctx: &mut Ctx) -> Step {
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
    pub(super) fn fail_exchange(&mut self, failure: Failure, ctx: &mut Ctx) {
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
                call.on_failure(failure, &mut ctx.pipeline_io(&rt));
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
    pub(super) fn take_exchange(&mut self, reusable: bool, ctx: &mut Ctx) -> Option<Box<Exchange>> {
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
    pub(super) fn answer_exchange(
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
    pub(super) fn resume_pipeline(&mut self) {
        if self.pipelined {
            self.pipelined = false;
            self.readable = true;
        }
    }

    pub(super) fn finish_exchange(&mut self, reusable: bool, ctx: &mut Ctx) -> Step {
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

/// What outbound decided about a backend response.
pub(super) enum Outbound {
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
pub(super) fn outbound(
    rt: &Arc<Runtime>,
    call: Option<&mut Pipeline>,
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
    let rv = ResponseView {
        status: r.status,
        reason: r.reason,
        headers: HeaderSrc::Parsed(r.headers),
    };
    let flow = match call.on_response(&rv, &mut ctx.pipeline_io(rt)) {
        Ok(flow) => flow,
        Err(f) => return Outbound::Failed(f),
    };
    let st = &mut call.st;
    if flow != Flow::Continue || st.resp.body.is_some() {
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
    }
}

/// The `<retry>` around this call's forward-request, while it may still send the request
/// again: attempts are left and the request went out whole from the head buffer (a
/// retried request's body is always read whole first).
pub(super) fn retry_plan<'c>(
    call: Option<&'c Pipeline>,
    done: u32,
    req: &ReqBody,
) -> Option<&'c Retry> {
    let retry = call?.retry()?;
    (done < retry.count && matches!(req, ReqBody::Done)).then_some(retry)
}

/// Whether `<retry>`'s condition holds for an attempt that ended with this response.
pub(super) fn wants_retry(
    retry: &Retry,
    rt: &Arc<Runtime>,
    call: &Pipeline,
    status: u16,
    reason: &str,
    headers: &[httparse::Header],
    ctx: &mut Ctx,
) -> bool {
    let resp = ResponseView {
        status,
        reason,
        headers: HeaderSrc::Parsed(headers),
    };
    call.wants_retry(retry, &resp, &ctx.pipeline_io(rt))
}

/// The wait before the next attempt (the jitter of the exponential form comes from the
/// clock's milliseconds).
pub(super) fn retry_wait(retry: &Retry, done: u32, ctx: &Ctx) -> Duration {
    let jitter = 0.8 + (ctx.wall_ms % 401) as f64 / 1000.0;
    exec::retry_delay(retry, done + 1, jitter)
}

/// Drops the attempt's backend connection (its answer is not read further) and
/// schedules the next attempt: the request is still whole in the head buffer.
pub(super) fn schedule_retry(x: &mut Exchange, delay: Duration, ctx: &mut Ctx) {
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
pub(super) fn end_call(x: &mut Exchange, ctx: &mut Ctx) {
    if let Some(c) = x.call.as_mut() {
        c.finish(x.bytes_in + x.bytes_out, &mut ctx.pipeline_io(&x.rt));
    }
}

pub(super) fn log_exchange(x: &Exchange, peer: SocketAddr, ctx: &mut Ctx, error: Option<&str>) {
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
pub(super) fn snake_case(reason: &str) -> String {
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

pub(super) fn request_id(prefix: u32, seq: u64) -> String {
    format!("{prefix:08x}-{seq:016x}")
}

//! The exchange's decisions on a backend's answer: the policies' response phase
//! (`outbound`: stream with edits, answer instead, or read the whole body first) and
//! `<retry>` (whether an attempt is sent again, after which wait, and the detaching
//! of the failed attempt's connection).
//! Must not touch: sockets (the exchange moves the bytes), config loading, disk.

use super::*;

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
    /// The policies wait for their own requests (`Pipeline::st`); run again with what
    /// they ended with.
    Suspend,
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
    resumed: Option<super::calling::Ended>,
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
                // a resumed outbound has the body already, as its policies left it
                if resumed.is_none() {
                    call.st.resp.body = Some(body);
                }
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
    let flow = match call.on_response_resumed(&rv, &mut ctx.pipeline_io(rt), resumed) {
        Ok(Flow::Suspend) => return Outbound::Suspend,
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

/// Outbound over a response head, when its policies' requests (if it waited for any)
/// have ended: `None` while they have not; `Some(Outbound::Suspend)` when they just
/// started (kept in `waits`).
pub(super) fn waiting_outbound(
    waits: &mut Option<Box<super::calling::Waits>>,
    mut call: Option<&mut Pipeline>,
    on: (&Arc<Runtime>, bool, bool),
    head: (&response::ResponseHead, &[u8]),
    close: bool,
    ctx: &mut Ctx,
) -> Option<Outbound> {
    if waits.as_mut().is_some_and(|w| !w.advance(ctx)) {
        return None;
    }
    let resumed = waits.take().map(|w| w.finish(ctx));
    let (rt, is_head, eof) = on;
    let (r, rbytes) = head;
    let out = outbound(
        rt,
        call.as_deref_mut(),
        is_head,
        eof,
        r,
        rbytes,
        close,
        resumed,
        ctx,
    );
    if let (Outbound::Suspend, Some(call)) = (&out, call) {
        *waits = Some(Box::new(super::calling::Waits::start(call, rt, ctx)));
    }
    Some(out)
}

/// The `<retry>` around this call's forward-request, while it may still send the request
/// again: attempts are left and the request went out whole from the head buffer (a
/// retried request's body is always read whole first).
pub(super) fn retry_plan<'c>(
    call: Option<&'c Pipeline>,
    done: u32,
    req: &ReqBody,
) -> Option<&'c RetryTerms> {
    let retry = call?.retry()?;
    (done < retry.count && matches!(req, ReqBody::Done)).then_some(retry)
}

/// Whether `<retry>`'s condition holds for an attempt that ended with this response.
pub(super) fn wants_retry(
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
    call.wants_retry(&resp, &ctx.pipeline_io(rt))
}

/// The wait before the next attempt (the jitter of the exponential form comes from the
/// clock's milliseconds).
pub(super) fn retry_wait(retry: &RetryTerms, done: u32, ctx: &Ctx) -> Duration {
    let jitter = 0.8 + (ctx.wall_ms % 401) as f64 / 1000.0;
    retry.delay(done + 1, jitter)
}

/// Drops the attempt's backend connection (its answer is not read further) and
/// schedules the next attempt: the request is still whole in the head buffer.
pub(super) fn schedule_retry(x: &mut Exchange, delay: Duration, ctx: &mut Ctx) {
    schedule_attempt(x, delay, ctx);
    x.retries += 1;
}

/// Drops the current attempt's backend connection and schedules the request in the
/// head buffer to go out again after `delay` (a retry, or a redirect followed).
pub(super) fn schedule_attempt(x: &mut Exchange, delay: Duration, ctx: &mut Ctx) {
    let attempt = std::mem::replace(
        &mut x.stage,
        Stage::Detached {
            at: ctx.now + delay,
        },
    );
    attempt.release(Release::Close(backend::CloseReason::RetryAttempt), ctx);
    x.backend_eof = false;
    x.resp_sendable = 0;
    if let Some(b) = x.resp_buf.as_mut() {
        b.clear();
    }
}

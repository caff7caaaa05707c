//! Routing and admission of one parsed request head: a gateway answer, a policy's
//! answer, a request for the whole body first, or a ready backend exchange.
//! Must not touch: sockets, the loop.

use super::*;

pub(super) enum Decision<'h> {
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
        close: Option<CloseReason>,
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
        /// What `<trace>` policies wrote and `<emit-metric>` policies emitted.
        traces: Vec<crate::telemetry::Trace>,
        metrics: Vec<crate::telemetry::CustomMetric>,
    },
    /// The plan needs the whole request body first: grow the buffer to this size.
    NeedBody(usize),
    /// The exchange, and the body bytes after the head already folded into its head.
    Proxy(Box<Exchange>, usize),
    /// Inbound waits for the requests its policies send (`st.outgoing`); the call
    /// resumes with their outcomes (`Resumed`) over the same head.
    Suspend {
        call: Box<Pipeline>,
        method: String,
        url: String,
    },
}

/// A suspended call coming back with the outcomes of the requests it waited for.
pub(super) struct Resumed {
    pub call: Box<Pipeline>,
    pub outcomes: Vec<(ReplyTo, SubOutcome)>,
    /// The external cache's answers (a miss or an unavailable Redis is `Err`).
    pub answers: Vec<(
        crate::policy::external::Purpose,
        Result<crate::policy::external::Reply, ()>,
    )>,
}

/// A request that matches no API or operation, under `stand_in` (the global plan):
/// on-error runs from the 404 with LastError Source `configuration`, Reason
/// `OperationNotFound`, and may change the answer.
fn unmatched<'h, 'q>(
    stand_in: &crate::config::Api,
    log: &Logged<'_, 'q>,
    rt: &Arc<Runtime>,
    ctx: &mut Ctx<'h>,
    view_of: &dyn Fn(&'q str) -> RequestView<'q>,
) -> Decision<'h> {
    let failure = Failure::OperationNotFound;
    let Some(plan) = stand_in.operations.first().and_then(|o| o.plan(None)) else {
        return log.reply(failure, "");
    };
    let ids = crate::pipeline::Ids {
        api: crate::config::UNMATCHED_API,
        op: 0,
        product: None,
        subscription: None,
    };
    let head = log.head;
    if let Some(file) = cross_domain_file(plan, ids, head, &view_of(head.path), log, ctx) {
        return file;
    }
    through_on_error(
        plan,
        ids,
        failure,
        &view_of(head.path),
        head,
        rt,
        ctx,
        (log.url(), log.method(), "", ""),
    )
}

/// The global policy's `cross-domain` document, for a GET or HEAD of `/crossdomain.xml`
/// (which matches no API).
fn cross_domain_file<'h>(
    plan: &Arc<crate::policy::Plan>,
    ids: crate::pipeline::Ids,
    head: &request::RequestHead,
    view: &RequestView,
    log: &Logged,
    ctx: &mut Ctx<'h>,
) -> Option<Decision<'h>> {
    use crate::policy::kinds::cross_domain::{CrossDomain, POLICY_PATH};
    if !matches!(head.method, "GET" | "HEAD") || head.path != POLICY_PATH {
        return None;
    }
    let policy = plan
        .inbound
        .iter()
        .find_map(|s| s.policy_as::<CrossDomain>())?;
    *ctx.seq += 1;
    let id = request_id(ctx.id_prefix, *ctx.seq);
    let mut c = Pipeline::start(plan, ids, "", id, view);
    c.st.resp = policy.answer();
    let close = CloseReason::after_request(head.keep_alive, ctx.draining)
        .or(CloseReason::unread_body(head.body != BodyKind::None));
    let st = &c.st;
    Some(Decision::Raw {
        status: 200,
        bytes: gate::render_response(st, 200, "", &[], close.is_some(), head.is_head()),
        consumed: 0,
        close,
        method: log.method(),
        url: log.url(),
        api: "",
        op: "",
        request_id: st.request_id.clone(),
        reason: None,
        subscription: String::new(),
        product: String::new(),
        traces: Vec::new(),
        metrics: Vec::new(),
    })
}

/// Answers a failure outside the policies (a refused key, no matching operation) the way
/// `plan`'s on-error makes it, starting from the gateway's own answer. `logged`: the
/// request log's url, method, API and operation.
#[allow(clippy::too_many_arguments)]
pub(super) fn through_on_error<'h>(
    plan: &Arc<crate::policy::Plan>,
    ids: crate::pipeline::Ids,
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
    let mut c = Pipeline::start(plan, ids, "", id, view);
    c.st.set_budget(ctx.limits.expression_steps, ctx.limits.expression_bytes);
    c.on_failure(failure, &mut ctx.pipeline_io(rt));
    let close = CloseReason::after_request(head.keep_alive, ctx.draining)
        .or(CloseReason::unread_body(head.body != BodyKind::None));
    let st = &c.st;
    Decision::Raw {
        status: st.resp.status.unwrap_or(failure.status()),
        bytes: gate::render_response(
            st,
            failure.status(),
            "",
            &[],
            close.is_some(),
            head.is_head(),
        ),
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
        traces: st.traces.clone(),
        metrics: st.metrics.clone(),
    }
}

pub(super) fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// How the request is named in the log, whatever the answer: its URL (redacted as the
/// runtime says) and method, made only when a log is written.
struct Logged<'r, 'b> {
    head: &'r request::RequestHead<'b>,
    logging: bool,
    redaction: &'r Redaction,
}

impl Logged<'_, '_> {
    fn url(&self) -> String {
        if self.logging {
            self.redaction.url(self.head.path, self.head.query)
        } else {
            String::new()
        }
    }

    fn method(&self) -> String {
        if self.logging {
            self.head.method.to_string()
        } else {
            String::new()
        }
    }

    /// The gateway's own answer for `f`.
    fn reply<'h>(&self, f: Failure, api: &'h str) -> Decision<'h> {
        Decision::Reply {
            status: f.status(),
            content_type: JSON,
            body: failure_body(f),
            failure: Some(f),
            method: self.method(),
            url: self.url(),
            api,
        }
    }
}

/// A request routed to an operation and admitted.
struct Admission<'h, 'q> {
    rt: &'h Arc<Runtime>,
    api: &'h crate::config::Api,
    operation: &'h crate::config::Operation,
    ids: crate::pipeline::Ids,
    /// The path after the API's.
    rest: &'q str,
    key: &'q str,
}

/// Routing and admission for one parsed head: a gateway answer or a ready exchange.
pub(super) fn decide<'h>(
    head: &request::RequestHead,
    body_bytes: &[u8],
    peer_ip: &str,
    (https, certificate): (bool, Option<&Arc<Presented>>),
    resumed: Option<Resumed>,
    ctx: &mut Ctx<'h>,
) -> Decision<'h> {
    static NO_CONFIG: std::sync::OnceLock<Redaction> = std::sync::OnceLock::new();
    let log = Logged {
        head,
        logging: ctx.log.enabled(),
        redaction: match ctx.runtime {
            Some(rt) => &rt.redaction,
            None => NO_CONFIG.get_or_init(Redaction::default),
        },
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
        return log.reply(Failure::NoConfig, "");
    };
    let view_of = |rest| RequestView {
        method: head.method,
        path: head.path,
        rest,
        host: head.host,
        query: head.query,
        headers: HeaderSrc::Parsed(head.headers),
        ip: peer_ip,
        https,
        certificate,
    };
    let admission = match route_and_admit(head, https, rt, &log, &view_of, ctx) {
        Ok(a) => a,
        Err(answer) => return *answer,
    };
    if let BodyKind::Length(n) = head.body {
        if ctx.limits.body_max > 0 && n > ctx.limits.body_max {
            return log.reply(Failure::BodyTooLarge, "");
        }
    }
    let view = view_of(admission.rest);
    let plan = admission
        .operation
        .plan(admission.ids.product)
        .filter(|p| !p.trivial)
        .map(Arc::clone);
    let (call, consumed) = match plan {
        Some(plan) => match run_inbound(&plan, &admission, &view, body_bytes, resumed, &log, ctx) {
            Ok((call, consumed)) => (Some(call), consumed),
            Err(answer) => return *answer,
        },
        None => (None, 0),
    };
    proxy(&admission, call, consumed, peer_ip, https, &log, ctx)
}

/// The API and operation of a request, and its key check. `Err`: the answer (404
/// through the global on-error, or a refused key through the operation's on-error, as
/// APIM runs them).
fn route_and_admit<'h, 'q>(
    head: &'q request::RequestHead,
    https: bool,
    rt: &'h Arc<Runtime>,
    log: &Logged<'_, 'q>,
    view_of: &dyn Fn(&'q str) -> RequestView<'q>,
    ctx: &mut Ctx<'h>,
) -> Result<Admission<'h, 'q>, Box<Decision<'h>>> {
    let not_found = |ctx: &mut Ctx<'h>| match &rt.unmatched {
        Some(u) => unmatched(u, log, rt, ctx, view_of),
        None => log.reply(Failure::OperationNotFound, ""),
    };
    let Some(found) = rt.api_table.find(head.path, head.host_name(), https) else {
        return Err(Box::new(not_found(ctx)));
    };
    let Some(api) = rt.apis.get(found.api as usize) else {
        return Err(Box::new(not_found(ctx)));
    };
    let rest = &head.path[found.rest_offset..];
    let Some(op) = api.op_table.find(rest, head.query, head.method) else {
        return Err(Box::new(not_found(ctx)));
    };
    let Some(operation) = api.operations.get(op as usize) else {
        return Err(Box::new(log.reply(Failure::OperationNotFound, "")));
    };
    let admitted = match gate::admit(rt, found.api, api, head) {
        Ok(a) => a,
        Err(f) => {
            // as in APIM, a refused key goes through on-error (Source "authorization")
            let on_error = operation
                .plan(None)
                .filter(|p| !p.trivial && !p.on_error.is_empty());
            let Some(plan) = on_error else {
                return Err(Box::new(log.reply(f, &api.id)));
            };
            let ids = crate::pipeline::Ids {
                api: found.api,
                op,
                product: None,
                subscription: None,
            };
            let logged = (
                log.url(),
                log.method(),
                api.id.as_str(),
                operation.id.as_str(),
            );
            return Err(Box::new(through_on_error(
                plan,
                ids,
                f,
                &view_of(rest),
                head,
                rt,
                ctx,
                logged,
            )));
        }
    };
    Ok(Admission {
        rt,
        api,
        operation,
        ids: crate::pipeline::Ids {
            api: found.api,
            op,
            product: admitted.product,
            subscription: admitted.subscription,
        },
        rest,
        key: admitted.key,
    })
}

/// The request phase of the operation's plan (inbound, and outbound when there is no
/// forward-request). `Ok`: the call to forward, and the body bytes the plan read whole;
/// `Err`: the answer (a policy's, the need for the whole body first, or a failure).
fn run_inbound<'h>(
    plan: &Arc<crate::policy::Plan>,
    a: &Admission<'h, '_>,
    view: &RequestView,
    body_bytes: &[u8],
    resumed: Option<Resumed>,
    log: &Logged,
    ctx: &mut Ctx<'h>,
) -> Result<(Box<Pipeline>, usize), Box<Decision<'h>>> {
    let head = log.head;
    let mut collected = None;
    // body bytes after the head that the plan read whole
    let mut consumed = 0;
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
                return Err(Box::new(Decision::NeedBody(want)));
            }
            Err(f) => return Err(Box::new(log.reply(f, &a.api.id))),
        }
    }
    let (c, ran) = match resumed {
        Some(Resumed {
            call,
            outcomes,
            answers,
        }) => {
            let mut c = call;
            let ran = c.resume(outcomes, answers, view, &mut ctx.pipeline_io(a.rt));
            (c, ran)
        }
        None => {
            *ctx.seq += 1;
            let id = request_id(ctx.id_prefix, *ctx.seq);
            let mut c = Box::new(Pipeline::start(plan, a.ids, a.key, id, view));
            c.st.set_budget(ctx.limits.expression_steps, ctx.limits.expression_bytes);
            c.st.req.body = collected;
            let ran = c.inbound(view, &mut ctx.pipeline_io(a.rt));
            (c, ran)
        }
    };
    match ran {
        Ok(Inbound::Forward) => return Ok((c, consumed)),
        Ok(Inbound::Answer) => {}
        Ok(Inbound::Suspend) => {
            return Err(Box::new(Decision::Suspend {
                call: c,
                method: log.method(),
                url: log.url(),
            }))
        }
        Err(f) => return Err(Box::new(log.reply(f, ""))),
    }
    let st = &c.st;
    let close = CloseReason::after_request(head.keep_alive, ctx.draining).or(
        CloseReason::unread_body(head.body != BodyKind::None && consumed == 0),
    );
    let bytes = gate::render_response(st, 200, "", &[], close.is_some(), head.is_head());
    Err(Box::new(Decision::Raw {
        status: st.resp.status.unwrap_or(200),
        bytes,
        consumed,
        close,
        method: log.method(),
        url: log.url(),
        api: &a.api.id,
        op: &a.operation.id,
        request_id: st.request_id.clone(),
        reason: st.last_error.as_ref().map(|e| snake_case(&e.reason).into()),
        subscription: a
            .ids
            .subscription
            .and_then(|s| a.rt.subscriptions.get(s as usize))
            .map_or(String::new(), |s| s.id.clone()),
        product: a
            .ids
            .product
            .and_then(|p| a.rt.products.get(p as usize))
            .map_or(String::new(), |p| p.id.clone()),
        traces: st.traces.clone(),
        metrics: st.metrics.clone(),
    }))
}

/// Where the call goes: a backend a policy chose, an address it set, or the API's own.
type Chosen<'c> = (
    &'c [SocketAddr],
    &'c str,
    &'c str,
    Option<&'c Arc<ServerName<'static>>>,
);

fn target<'c>(a: &'c Admission, call: Option<&'c Pipeline>) -> Chosen<'c> {
    chosen(a.rt, a.api, call)
}

/// The target of `api`'s call in `rt`: a backend a policy chose, an address it set, or
/// the API's own.
pub(super) fn chosen<'c>(
    rt: &'c Runtime,
    api: &'c crate::config::Api,
    call: Option<&'c Pipeline>,
) -> Chosen<'c> {
    match call.and_then(|c| c.st.req.target.as_ref()) {
        Some(&Target::Backend(i)) => match rt.backends.get(i as usize) {
            Some(b) => (&b.addrs, &b.authority, &b.base_path, b.tls.as_ref()),
            None => (&[], "", "", None),
        },
        Some(Target::Addr {
            addr,
            authority,
            base_path,
            tls,
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
    }
}

/// How a request reaches its backend through the `proxy` policy's HTTP proxy.
pub(super) struct Routed {
    /// The proxy's address.
    pub addr: SocketAddr,
    /// `http://authority` for an `http://` backend's absolute-form request target.
    pub origin: Option<String>,
    pub authorization: Option<String>,
    /// The CONNECT tunnel for an `https://` backend.
    pub via: Option<Arc<crate::proxy::tunnel::ConnectVia>>,
}

/// The route through the call's proxy (`None`: straight to `addr`); the proxy's host
/// must be one the agent resolved.
pub(super) fn through_proxy(
    call: Option<&Pipeline>,
    rt: &Runtime,
    addr: SocketAddr,
    authority: &str,
    https: bool,
) -> Result<Option<Routed>, Failure> {
    let Some(p) = call.and_then(|c| c.st.req.proxy.as_ref()) else {
        return Ok(None);
    };
    let proxy =
        crate::proxy::sub::destination(&p.url, rt).map_err(|_| Failure::BackendUnresolved)?;
    let ip = proxy.ip.ok_or(Failure::BackendUnresolved)?;
    let addr_of_proxy = SocketAddr::new(ip, proxy.port);
    Ok(Some(match https {
        true => Routed {
            addr: addr_of_proxy,
            origin: None,
            authorization: None,
            via: Some(Arc::new(crate::proxy::tunnel::ConnectVia {
                authority: format!(
                    "{}:{}",
                    crate::http::request::host_without_port(authority),
                    addr.port()
                ),
                authorization: p.authorization.clone(),
            })),
        },
        false => Routed {
            addr: addr_of_proxy,
            origin: Some(format!("http://{authority}")),
            authorization: p.authorization.clone(),
            via: None,
        },
    }))
}

/// The backend exchange for an admitted request: its target, the request head written
/// for the backend (with the policies' edits), and its state at the start.
fn proxy<'h>(
    a: &Admission<'h, '_>,
    call: Option<Box<Pipeline>>,
    consumed: usize,
    peer_ip: &str,
    https: bool,
    log: &Logged,
    ctx: &mut Ctx<'h>,
) -> Decision<'h> {
    let head = log.head;
    let edits = call.as_ref().map(|c| &c.st.req);
    let (addrs, authority, base_path, tls) = target(a, call.as_deref());
    let tls = tls.cloned();
    if addrs.is_empty() {
        return log.reply(Failure::BackendUnresolved, "");
    }
    if call.is_none() {
        *ctx.seq += 1;
    }
    let addr = addrs[(*ctx.seq as usize) % addrs.len()];
    let routed = match through_proxy(call.as_deref(), a.rt, addr, authority, tls.is_some()) {
        Ok(r) => r,
        Err(f) => return log.reply(f, ""),
    };
    let Some(mut out) = ctx.pool.get(Class::Head) else {
        return log.reply(Failure::Exhausted(BUFFERS_EXHAUSTED), "");
    };
    let new_query = edits
        .and_then(|e| e.query.as_ref())
        .map(|q| crate::policy::request::join_query(q));
    let body_override = edits.and_then(|e| e.body.as_deref());
    let backend_req = BackendRequest {
        method: edits
            .and_then(|e| e.method.as_deref())
            .unwrap_or(head.method),
        base_path,
        rest: edits.and_then(|e| e.rest.as_deref()).unwrap_or(a.rest),
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
        proxy: routed
            .as_ref()
            .and_then(|r| Some((r.origin.as_deref()?, r.authorization.as_deref()))),
    };
    let trust = ctx.limits.trust_forwarded_proto;
    let written = write_head(ctx.pool, &mut out, |w| {
        forward::write_backend_request(w, &backend_req, head.headers, trust)
    });
    if written.is_err() || body_override.is_some_and(|b| !append(ctx.pool, &mut out, b)) {
        ctx.pool.put(out);
        return log.reply(Failure::HeadTooLarge, "");
    }
    let trace = log.logging.then(|| {
        Box::new(Trace {
            // the id policies saw as context.RequestId, when they ran
            id: call.as_ref().map_or_else(
                || request_id(ctx.id_prefix, *ctx.seq),
                |c| c.st.request_id.clone(),
            ),
            method: head.method.to_string(),
            url: log.url(),
            wall: SystemTime::now(),
        })
    });
    let req = match head.body {
        _ if body_override.is_some() => ReqBody::Done,
        BodyKind::None => ReqBody::Done,
        BodyKind::Length(n) => ReqBody::Length(n),
        BodyKind::Chunked => ReqBody::Chunked(ChunkedDecoder::new()),
    };
    let timeout = call.as_ref().and_then(|c| c.forward_timeout());
    let request_read = matches!(req, ReqBody::Done).then_some(ctx.now);
    let retryable = is_idempotent(backend_req.method)
        && (head.body == BodyKind::None || body_override.is_some());
    Decision::Proxy(
        Box::new(Exchange {
            failed: None,
            rt: Arc::clone(a.rt),
            api: a.ids.api,
            op: a.ids.op,
            stage: Stage::Detached { at: ctx.now },
            addr: routed.as_ref().map_or(addr, |r| r.addr),
            via: routed.and_then(|r| r.via),
            retried: false,
            retryable,
            req_head: Some(out),
            continue_left: if head.expect_continue && head.body != BodyKind::None && consumed == 0 {
                CONTINUE.len()
            } else {
                0
            },
            req,
            req_sendable: 0,
            resp_buf: None,
            resp_sendable: 0,
            backend_eof: false,
            http10: head.minor == 0,
            is_head: head.is_head(),
            started: ctx.now,
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
            subscription: a.ids.subscription,
            retries: 0,
            redirects: 0,
            request_read,
            tls,
            waits: None,
        }),
        consumed,
    )
}

//! Another attempt at the backend written anew from the call's copy of the client's
//! request (its target, head and body): when a `<retry>` holds policies before its
//! forward-request (choose a backend, set a header, set the body…), which run again over
//! the last attempt's response; and when forward-request follows a redirect.
//! Must not touch: sockets (the exchange connects and sends), the first attempt's
//! request (decide.rs writes it).

use super::*;

/// How an attempt ended, kept apart from the buffers the retry releases: the response
/// head's status, reason and headers (none for a backend that did not answer).
pub(super) struct EndedAttempt {
    pub(super) status: u16,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl EndedAttempt {
    pub(super) fn of(r: &response::ResponseHead) -> EndedAttempt {
        EndedAttempt {
            status: r.status,
            reason: r.reason.to_string(),
            headers: r
                .headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect(),
        }
    }

    /// A backend that could not be reached or did not answer, as the gateway's status.
    pub(super) fn failed(status: u16, reason: &str) -> EndedAttempt {
        EndedAttempt {
            status,
            reason: reason.to_string(),
            headers: Vec::new(),
        }
    }
}

/// Prepares and schedules the next `<retry>` attempt after `ended`. `Some`: the
/// policies inside the retry answered instead (return-response, or on-error after a
/// failure): the response bytes and status to send.
pub(super) fn next_attempt(
    x: &mut Exchange,
    retry: &RetryTerms,
    ended: &EndedAttempt,
    close: bool,
    ctx: &mut Ctx,
) -> Option<(Vec<u8>, u16)> {
    if let Some(answer) = rerun_policies(x, ended, close, ctx) {
        return Some(answer);
    }
    let delay = retry_wait(retry, x.retries, ctx);
    schedule_retry(x, delay, ctx);
    None
}

/// Runs the policies inside `<retry>` again, if it has any, over the attempt that
/// ended, and rewrites the request they leave. `Some`: their answer instead.
fn rerun_policies(
    x: &mut Exchange,
    ended: &EndedAttempt,
    close: bool,
    ctx: &mut Ctx,
) -> Option<(Vec<u8>, u16)> {
    let rt = Arc::clone(&x.rt);
    let call = x.call.as_deref_mut()?;
    let runs_policies = call
        .plan
        .forward
        .as_ref()
        .and_then(|f| f.retry.as_ref())
        .is_some_and(|r| !r.steps.is_empty());
    if !runs_policies {
        return None;
    }
    let headers: Vec<httparse::Header> = ended
        .headers
        .iter()
        .map(|(name, value)| httparse::Header { name, value })
        .collect();
    let resp = ResponseView {
        status: ended.status,
        reason: &ended.reason,
        headers: HeaderSrc::Parsed(&headers),
    };
    let flow = match call.before_retry(&resp, &mut ctx.pipeline_io(&rt)) {
        Ok(flow) => flow,
        Err(f) => {
            call.on_failure(f, &mut ctx.pipeline_io(&rt));
            Flow::Error
        }
    };
    let failure = match flow {
        Flow::Continue => match rewrite(x, ctx) {
            Ok(()) => return None,
            Err(f) => Some(f),
        },
        _ => None,
    };
    let call = x.call.as_deref_mut()?;
    if let Some(f) = failure {
        call.on_failure(f, &mut ctx.pipeline_io(&rt));
    }
    let status = call.st.resp.status.unwrap_or(200);
    let bytes = gate::render_response(&call.st, status, "", &[], close, x.is_head);
    Some((bytes, status))
}

/// A redirect forward-request follows: where the next request goes, and whether it
/// becomes a GET without body.
pub(super) struct Redirect {
    target: Target,
    path: String,
    query: Option<String>,
    to_get: bool,
}

/// The redirect forward-request follows for this response head, if any (its
/// Location, then `plan_redirect`).
pub(super) fn redirect_of(
    r: &response::ResponseHead,
    at: (&Runtime, u32, SocketAddr),
    call: Option<&Pipeline>,
    redirects: u8,
) -> Option<Redirect> {
    if !(300..400).contains(&r.status) {
        return None;
    }
    let h = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("location"))?;
    let location = std::str::from_utf8(h.value).ok()?.trim();
    plan_redirect(at, call, redirects, r.status, location)
}

/// Whether forward-request `follow-redirects` follows `status` with `location`, and
/// where to. A 303, and a 301 / 302 answering a POST, become a GET without body (as
/// .NET's HttpClient does); 307 and 308 keep the method and body. A path goes to the
/// same backend; a URL goes to that backend again, to a configured backend with its
/// authority, or to an http:// IP address. `None` (the 3xx goes to the client): not
/// asked for, `MAX_REDIRECTS` reached, or a host the gateway could only reach by
/// resolving a name at request time. (Takes the exchange's fields, not the exchange:
/// the response head is still borrowed from its buffer.)
fn plan_redirect(
    (rt, api, addr): (&Runtime, u32, SocketAddr),
    call: Option<&Pipeline>,
    redirects: u8,
    status: u16,
    location: &str,
) -> Option<Redirect> {
    let follows = call?
        .plan
        .forward
        .as_ref()
        .is_some_and(|f| f.follow_redirects);
    if !follows || redirects >= crate::policy::MAX_REDIRECTS {
        return None;
    }
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let (target, path, query) = redirect_target((rt, api, addr), call?, location)?;
    let method = match &call?.st.req.method {
        Some(m) => m.clone(),
        None => call?.request_copy()?.view().method.to_string(),
    };
    let to_get =
        status == 303 && method != "HEAD" || matches!(status, 301 | 302) && method == "POST";
    Some(Redirect {
        target,
        path,
        query,
        to_get,
    })
}

/// Sends the request to where the redirect points, at once.
pub(super) fn follow_redirect(x: &mut Exchange, r: Redirect, ctx: &mut Ctx) -> Result<(), Failure> {
    let call = x
        .call
        .as_deref_mut()
        .ok_or(Failure::Internal("a redirect without its call"))?;
    let edits = &mut call.st.req;
    if r.to_get {
        edits.method = Some("GET".into());
        edits.body = None;
    }
    edits.target = Some(r.target);
    edits.rest = Some(r.path);
    edits.query = Some(crate::policy::request::parse_query(r.query.as_deref()));
    rewrite(x, ctx)?;
    x.redirects += 1;
    schedule_attempt(x, Duration::ZERO, ctx);
    Ok(())
}

/// Where a Location points: the target, the path and the query.
fn redirect_target(
    (rt, api, current): (&Runtime, u32, SocketAddr),
    call: &Pipeline,
    location: &str,
) -> Option<(Target, String, Option<String>)> {
    let api = rt.apis.get(api as usize)?;
    let (_, authority, _, tls) = chosen(rt, api, Some(call));
    let (scheme_https, rest) = if let Some(r) = location.strip_prefix("https://") {
        (Some(true), r)
    } else if let Some(r) = location.strip_prefix("http://") {
        (Some(false), r)
    } else if location.starts_with('/') && !location.starts_with("//") {
        (None, location)
    } else {
        return None;
    };
    let (host, path_query) = match scheme_https {
        None => (authority, rest),
        Some(_) => match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        },
    };
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path_query, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    let https = scheme_https.unwrap_or(tls.is_some());
    let same = host.eq_ignore_ascii_case(authority) && https == tls.is_some();
    let (addr, tls) = if same {
        (current, tls.cloned())
    } else if let Some(b) = rt
        .backends
        .iter()
        .chain(std::iter::once(&api.backend))
        .find(|b| b.authority.eq_ignore_ascii_case(host) && b.tls.is_some() == https)
    {
        (*b.addrs.first()?, b.tls.clone())
    } else if !https {
        let addr = host
            .parse::<SocketAddr>()
            .or_else(|_| format!("{host}:80").parse::<SocketAddr>())
            .ok()?;
        (addr, None)
    } else {
        return None;
    };
    let target = Target::Addr {
        addr,
        authority: host.to_string(),
        base_path: String::new(),
        tls,
    };
    Some((target, path.to_string(), query))
}

/// Writes the request as the policies left it into the exchange's head buffer, and
/// points the exchange at its (possibly new) target.
fn rewrite(x: &mut Exchange, ctx: &mut Ctx) -> Result<(), Failure> {
    const NO_COPY: Failure = Failure::Internal("the request copy for a retry is missing");
    let call = x.call.as_deref().ok_or(NO_COPY)?;
    let copy = call.request_copy().ok_or(NO_COPY)?;
    let api =
        x.rt.apis
            .get(x.api as usize)
            .ok_or(Failure::BackendUnresolved)?;
    let (addrs, authority, base_path, tls) = chosen(&x.rt, api, Some(call));
    if addrs.is_empty() {
        return Err(Failure::BackendUnresolved);
    }
    *ctx.seq += 1;
    let addr = addrs[(*ctx.seq as usize) % addrs.len()];
    let tls = tls.cloned();
    let routed = through_proxy(Some(call), &x.rt, addr, authority, tls.is_some())?;
    let view = copy.view();
    let edits = &call.st.req;
    let headers: Vec<httparse::Header> = copy
        .header_list()
        .iter()
        .map(|(name, value)| httparse::Header {
            name,
            value: value.as_bytes(),
        })
        .collect();
    let new_query = edits
        .query
        .as_ref()
        .map(|q| crate::policy::request::join_query(q));
    let body = edits.body.as_deref();
    let backend_req = BackendRequest {
        method: edits.method.as_deref().unwrap_or(view.method),
        base_path,
        rest: edits.rest.as_deref().unwrap_or(view.rest),
        query: match &new_query {
            Some(q) if q.is_empty() => None,
            Some(q) => Some(q.as_str()),
            None => view.query,
        },
        authority,
        client_ip: view.ip,
        proto: if view.https { "https" } else { "http" },
        original_host: view.host,
        chunked: false,
        length: body.map(|b| b.len() as u64),
        edits: Some(&edits.headers).filter(|h| !h.is_empty()),
        proxy: routed
            .as_ref()
            .and_then(|r| Some((r.origin.as_deref()?, r.authorization.as_deref()))),
    };
    let Some(mut out) = ctx.pool.get(Class::Head) else {
        return Err(Failure::Exhausted(BUFFERS_EXHAUSTED));
    };
    let trust = ctx.limits.trust_forwarded_proto;
    let written = write_head(ctx.pool, &mut out, |w| {
        forward::write_backend_request(w, &backend_req, &headers, trust)
    });
    if written.is_err() || body.is_some_and(|b| !append(ctx.pool, &mut out, b)) {
        ctx.pool.put(out);
        return Err(Failure::HeadTooLarge);
    }
    ctx.pool.put_opt(&mut x.req_head);
    x.req_head = Some(out);
    x.addr = routed.as_ref().map_or(addr, |r| r.addr);
    x.via = routed.and_then(|r| r.via);
    x.tls = tls;
    Ok(())
}

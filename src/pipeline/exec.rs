//! Running a plan's steps for one call. Pure: the request and response come in as views
//! (borrowed heads), the counters and the clock as `Io`; the result is a `Flow` and the
//! changes gathered in `State` (header edits, new method/path/query/backend, bodies,
//! variables), which the connection applies as it writes heads. No XML, no parsing of
//! expression text, no I/O.
//! Must not touch: sockets, buffers, the loop's scheduling.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::config::{Api, Operation, Product, Runtime, Subscription};
use crate::http::failure::{message_body, JSON};
use crate::http::forward::HeaderEdits;
use crate::policy::expr::{Env, EvalError, Field, Lookup, Val};
use crate::policy::limits::{ConcurrencySlot, Counters};
use crate::policy::{self, jwt, ExistsAction, Policy, Step, Text};

/// Request headers as the executor sees them.
#[derive(Clone, Copy)]
pub enum HeaderSrc<'a> {
    Parsed(&'a [httparse::Header<'a>]),
    Owned(&'a [(String, String)]),
    Empty,
}

impl<'a> HeaderSrc<'a> {
    /// All values of `name`, joined by ", " when repeated (as APIM's dictionary does).
    fn get(self, name: &str) -> Option<Cow<'a, str>> {
        let mut found: Option<Cow<'a, str>> = None;
        let mut add = |v: &'a str| {
            found = Some(match found.take() {
                None => Cow::Borrowed(v),
                Some(prev) => Cow::Owned(format!("{prev}, {v}")),
            })
        };
        match self {
            HeaderSrc::Parsed(hs) => {
                for h in hs.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
                    add(std::str::from_utf8(h.value).unwrap_or(""));
                }
            }
            HeaderSrc::Owned(hs) => {
                for (_, v) in hs.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    add(v);
                }
            }
            HeaderSrc::Empty => {}
        }
        found
    }
    fn to_owned_list(self) -> Vec<(String, String)> {
        match self {
            HeaderSrc::Parsed(hs) => hs
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            HeaderSrc::Owned(hs) => hs.to_vec(),
            HeaderSrc::Empty => Vec::new(),
        }
    }
}

/// The client request as received.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The path after the API's path: what the operation template matched.
    pub rest: &'a str,
    pub host: &'a str,
    pub query: Option<&'a str>,
    pub headers: HeaderSrc<'a>,
    pub ip: &'a str,
    pub https: bool,
}

/// A copy of the request kept for outbound and on-error expressions.
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    method: String,
    path: String,
    rest: String,
    host: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    ip: String,
    https: bool,
}

impl OwnedRequest {
    pub fn of(r: &RequestView) -> OwnedRequest {
        OwnedRequest {
            method: r.method.to_string(),
            path: r.path.to_string(),
            rest: r.rest.to_string(),
            host: r.host.to_string(),
            query: r.query.map(str::to_string),
            headers: r.headers.to_owned_list(),
            ip: r.ip.to_string(),
            https: r.https,
        }
    }
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path: &self.path,
            rest: &self.rest,
            host: &self.host,
            query: self.query.as_deref(),
            headers: HeaderSrc::Owned(&self.headers),
            ip: &self.ip,
            https: self.https,
        }
    }
}

/// The backend response (or none yet).
#[derive(Clone, Copy)]
pub struct ResponseView<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub headers: HeaderSrc<'a>,
}

/// Who is calling what.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub api: &'a Api,
    pub op: &'a Operation,
    pub product: Option<&'a Product>,
    pub subscription: Option<&'a Subscription>,
    /// The key the caller presented (for `context.Subscription.Key`).
    pub key: &'a str,
    pub gateway_id: &'a str,
}

impl Who<'_> {
    /// The API as a limit's `<api name="…">` matches it.
    pub fn api_named(&self) -> policy::Named<'_> {
        policy::Named {
            id: &self.api.id,
            name: &self.api.name,
        }
    }
    /// The operation as a limit's `<operation name="…">` matches it.
    pub fn op_named(&self) -> policy::Named<'_> {
        policy::Named {
            id: &self.op.id,
            name: &self.op.name,
        }
    }
}

/// `context.LastError`.
#[derive(Debug, Clone, Default)]
pub struct LastError {
    pub source: String,
    pub reason: String,
    pub message: String,
    pub scope: String,
    pub section: String,
    pub policy_id: String,
}

/// Where the request goes after set-backend-service.
#[derive(Debug, Clone)]
pub enum Target {
    Backend(u32),
    Addr {
        addr: SocketAddr,
        authority: String,
        base_path: String,
        tls: Option<Arc<rustls_pki_types::ServerName<'static>>>,
    },
}

/// Changes to the request.
#[derive(Debug, Default)]
pub struct RequestEdits {
    pub method: Option<String>,
    /// A new path after the backend's base path (rewrite-uri), with a leading '/'.
    pub rest: Option<String>,
    /// The whole query once a policy changed it.
    pub query: Option<Vec<(String, String)>>,
    pub headers: HeaderEdits,
    pub target: Option<Target>,
    /// The body to send (set-body / find-and-replace, or the buffered original).
    pub body: Option<Vec<u8>>,
}

/// Changes to (or a replacement of) the response.
#[derive(Debug, Default)]
pub struct ResponseEdits {
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub headers: HeaderEdits,
    pub body: Option<Vec<u8>>,
}

/// A quota to count once the call's size is known.
#[derive(Debug, Clone)]
pub struct QuotaUse {
    pub label: Arc<str>,
    pub key: String,
    pub period: u64,
    pub start: u64,
}

/// Per-call policy state, from inbound to the end of the call.
#[derive(Debug, Default)]
pub struct State {
    pub vars: Vec<(String, Val<'static>)>,
    pub req: RequestEdits,
    pub resp: ResponseEdits,
    pub last_error: Option<LastError>,
    pub request_id: String,
    /// Steps whose effect waits for the response (rate-limit-by-key / quota conditions).
    pub deferred: Vec<(Step, String)>,
    pub quotas: Vec<QuotaUse>,
    pub slots: Vec<ConcurrencySlot>,
    /// The request copy for later sections, when they read it.
    pub request_copy: Option<OwnedRequest>,
}

/// What the rest of the pipeline does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The response in `State::resp` is final (return-response, mock-response, CORS
    /// preflight): skip to sending it.
    Respond,
    /// A policy failed: `State::last_error` and a default error response are set; run
    /// on-error next.
    Error,
}

/// What steps may use besides the call's own state.
pub struct Io<'a> {
    pub counters: &'a mut Counters,
    pub now_ms: u64,
    pub runtime: &'a Runtime,
}

/// The environment expressions read: request, response, identities, variables.
struct View<'v> {
    req: &'v RequestView<'v>,
    resp: Option<&'v ResponseView<'v>>,
    who: &'v Who<'v>,
    st: &'v State,
}

impl Env for View<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        let s = |v: &str| Val::Str(Cow::Owned(v.to_string()));
        let r = self.req;
        let le = self.st.last_error.as_ref();
        let err = |pick: fn(&LastError) -> &String| match le {
            Some(e) => Val::Str(Cow::Borrowed(pick(e).as_str())),
            None => Val::Null,
        };
        match f {
            Field::RequestMethod => Val::Str(Cow::Borrowed(
                self.st.req.method.as_deref().unwrap_or(r.method),
            )),
            Field::RequestIp => Val::Str(Cow::Borrowed(r.ip)),
            Field::RequestPath => Val::Str(Cow::Borrowed(r.path)),
            Field::RequestHost => Val::Str(Cow::Borrowed(crate::http::request::host_without_port(
                r.host,
            ))),
            Field::RequestScheme => Val::Str(Cow::Borrowed(if r.https { "https" } else { "http" })),
            Field::RequestPort => Val::Int(
                r.host
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(if r.https { 443 } else { 80 }),
            ),
            Field::RequestQueryString => match &self.st.req.query {
                Some(q) => Val::Str(Cow::Owned(join_query(q))),
                None => Val::Str(Cow::Borrowed(r.query.unwrap_or(""))),
            },
            Field::ResponseStatus => Val::Int(i64::from(
                self.st
                    .resp
                    .status
                    .or(self.resp.map(|x| x.status))
                    .unwrap_or(200),
            )),
            Field::ResponseReason => match (&self.st.resp.reason, self.resp) {
                (Some(r), _) => Val::Str(Cow::Borrowed(r)),
                (None, Some(x)) => Val::Str(Cow::Borrowed(x.reason)),
                _ => Val::Str(Cow::Borrowed("OK")),
            },
            Field::SubscriptionId => opt(self.who.subscription.map(|s| s.id.as_str())),
            Field::SubscriptionKey => match self.who.subscription {
                Some(_) => Val::Str(Cow::Borrowed(self.who.key)),
                None => Val::Null,
            },
            Field::SubscriptionName => opt(self.who.subscription.map(|s| s.name.as_str())),
            Field::ApiId => Val::Str(Cow::Borrowed(&self.who.api.id)),
            Field::ApiName => Val::Str(Cow::Borrowed(&self.who.api.name)),
            Field::ApiPath => s(&format!("/{}", self.who.api.path)),
            Field::OperationId => Val::Str(Cow::Borrowed(&self.who.op.id)),
            Field::OperationMethod => Val::Str(Cow::Borrowed(&self.who.op.method)),
            Field::OperationTemplate => Val::Str(Cow::Borrowed(&self.who.op.url_template)),
            Field::ProductId => opt(self.who.product.map(|p| p.id.as_str())),
            Field::ProductName => opt(self.who.product.map(|p| p.name.as_str())),
            Field::RequestId => Val::Str(Cow::Borrowed(&self.st.request_id)),
            Field::GatewayId => Val::Str(Cow::Borrowed(self.who.gateway_id)),
            Field::LastErrorSource => err(|e| &e.source),
            Field::LastErrorReason => err(|e| &e.reason),
            Field::LastErrorMessage => err(|e| &e.message),
            Field::LastErrorScope => err(|e| &e.scope),
            Field::LastErrorSection => err(|e| &e.section),
            Field::LastErrorPolicyId => err(|e| &e.policy_id),
        }
    }

    fn lookup(&self, l: Lookup, name: &str) -> Option<Val<'_>> {
        match l {
            Lookup::RequestHeader => match self.st.req.headers.get(name) {
                Some(Some(values)) => Some(Val::Str(Cow::Owned(values.join(", ")))),
                Some(None) => None,
                None => self.req.headers.get(name).map(Val::Str),
            },
            Lookup::RequestQuery => match &self.st.req.query {
                Some(q) => q
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Val::Str(Cow::Borrowed(v.as_str()))),
                None => query_value(self.req.query, name).map(|v| Val::Str(decode(v))),
            },
            Lookup::MatchedParameter => {
                let t = self.who.op.template.param(self.req.rest, name)?;
                Some(Val::Str(decode(t)))
            }
            Lookup::ResponseHeader => match self.st.resp.headers.get(name) {
                Some(Some(values)) => Some(Val::Str(Cow::Owned(values.join(", ")))),
                Some(None) => None,
                None => self.resp?.headers.get(name).map(Val::Str),
            },
            Lookup::Variable => self
                .st
                .vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.borrowed()),
        }
    }
}

fn opt(v: Option<&str>) -> Val<'_> {
    v.map_or(Val::Null, |s| Val::Str(Cow::Borrowed(s)))
}

/// Percent-decoding of a query or path value ('+' is a space in queries only when
/// decoding forms; APIM keeps '+', and so do we).
fn decode(v: &str) -> Cow<'_, str> {
    if !v.contains('%') {
        return Cow::Borrowed(v);
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(n) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k).into_owned(), decode(v).into_owned()),
            None => (decode(p).into_owned(), String::new()),
        })
        .collect()
}

pub fn join_query(q: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in q {
        if !s.is_empty() {
            s.push('&');
        }
        s.push_str(&encode(k));
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}

impl State {
    /// Sets the whole response to a gateway answer (status, JSON message).
    pub fn answer(&mut self, status: u16, message: &str) {
        self.resp = ResponseEdits::default();
        self.resp.status = Some(status);
        self.resp
            .headers
            .set("Content-Type", Some(vec![JSON.to_string()]));
        self.resp.body = Some(message_body(status, message).into_bytes());
    }

    fn fail(&mut self, step: &Step, source: &str, reason: &str, message: &str) -> Flow {
        self.last_error = Some(LastError {
            source: source.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            scope: step.scope.as_str().to_string(),
            section: step.section.as_str().to_string(),
            policy_id: step.id.as_deref().unwrap_or("").to_string(),
        });
        Flow::Error
    }

    fn eval_failed(&mut self, step: &Step, e: EvalError) -> Flow {
        self.answer(500, "Internal server error");
        self.fail(
            step,
            policy_name(&step.policy),
            "ExpressionValueEvaluationFailure",
            &format!("Expression evaluation failed. {}", e.0),
        )
    }

    fn set_var(&mut self, name: &str, v: Val<'static>) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = v,
            None => self.vars.push((name.to_string(), v)),
        }
    }
}

/// Marks the call as failed for a reason outside the policies (backend failure, bad
/// request framing…) so on-error runs with it.
pub fn fail_outside(st: &mut State, source: &str, reason: &str, message: &str, section: &str) {
    st.last_error = Some(LastError {
        source: source.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        scope: String::new(),
        section: section.to_string(),
        policy_id: String::new(),
    });
}

pub fn policy_name(p: &Policy) -> &'static str {
    match p {
        Policy::CheckHeader(_) => "check-header",
        Policy::IpFilter { .. } => "ip-filter",
        Policy::SetHeader { .. } => "set-header",
        Policy::SetQueryParameter { .. } => "set-query-parameter",
        Policy::RewriteUri { .. } => "rewrite-uri",
        Policy::SetBackendService { .. } => "set-backend-service",
        Policy::SetMethod(_) => "set-method",
        Policy::SetStatus { .. } => "set-status",
        Policy::SetVariable { .. } => "set-variable",
        Policy::SetBody(_) => "set-body",
        Policy::FindAndReplace { .. } => "find-and-replace",
        Policy::Choose { .. } => "choose",
        Policy::ReturnResponse(_) => "return-response",
        Policy::MockResponse { .. } => "mock-response",
        Policy::Cors(_) => "cors",
        Policy::RateLimit(_) => "rate-limit",
        Policy::RateLimitByKey(_) => "rate-limit-by-key",
        Policy::Quota(q) if q.key.is_some() => "quota-by-key",
        Policy::Quota(_) => "quota",
        Policy::ValidateJwt(_) => "validate-jwt",
        Policy::AuthenticationBasic { .. } => "authentication-basic",
        Policy::LimitConcurrency { .. } => "limit-concurrency",
    }
}

/// Is this a response phase (the edits go to the response)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

/// Runs `steps` in order.
pub fn run(
    steps: &[Step],
    phase: Phase,
    req: &RequestView,
    resp: Option<&ResponseView>,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) -> Flow {
    for step in steps {
        let flow = run_one(step, phase, req, resp, who, st, io);
        if flow != Flow::Continue {
            return flow;
        }
    }
    Flow::Continue
}

/// The expression environment for a step.
fn view<'v>(
    req: &'v RequestView<'v>,
    resp: Option<&'v ResponseView<'v>>,
    who: &'v Who<'v>,
    st: &'v State,
) -> View<'v> {
    View { req, resp, who, st }
}

/// Every value of a list (set-header, set-query-parameter, return-response headers).
fn texts(values: &[Text], env: &View) -> Result<Vec<String>, EvalError> {
    values
        .iter()
        .map(|v| v.eval(env).map(Cow::into_owned))
        .collect()
}

/// The value of a step's evaluation, or the step fails with
/// ExpressionValueEvaluationFailure (and the enclosing function returns its flow).
macro_rules! attempt {
    ($st:expr, $step:expr, $result:expr) => {{
        let result = $result;
        match result {
            Ok(v) => v,
            Err(e) => return $st.eval_failed($step, e),
        }
    }};
}

macro_rules! eval {
    ($st:expr, $step:expr, $req:expr, $resp:expr, $who:expr, $text:expr) => {
        attempt!(
            $st,
            $step,
            $text
                .eval(&view($req, $resp, $who, &*$st))
                .map(Cow::into_owned)
        )
    };
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    step: &Step,
    phase: Phase,
    req: &RequestView,
    resp: Option<&ResponseView>,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) -> Flow {
    match &*step.policy {
        Policy::CheckHeader(c) => {
            let value = match st.req.headers.get(&c.name) {
                Some(Some(v)) => Some(Cow::Owned(v.join(", "))),
                Some(None) => None,
                None => req.headers.get(&c.name),
            };
            let Some(value) = value else {
                st.answer(c.failed_code, &c.failed_message);
                return st.fail(step, "check-header", "HeaderNotFound", &c.failed_message);
            };
            let ok = c.values.is_empty()
                || c.values.iter().any(|v| {
                    value.split(',').map(str::trim).any(|have| {
                        if c.ignore_case {
                            have.eq_ignore_ascii_case(v)
                        } else {
                            have == v
                        }
                    })
                });
            if !ok {
                st.answer(c.failed_code, &c.failed_message);
                return st.fail(
                    step,
                    "check-header",
                    "HeaderValueNotAllowed",
                    &c.failed_message,
                );
            }
            Flow::Continue
        }
        Policy::IpFilter {
            allow,
            addresses,
            ranges,
        } => {
            let ip: Option<IpAddr> = req.ip.parse().ok();
            let listed = ip.is_some_and(|ip| {
                let ip = canonical(ip);
                addresses.iter().any(|a| canonical(*a) == ip)
                    || ranges
                        .iter()
                        .any(|(f, t)| (canonical(*f)..=canonical(*t)).contains(&ip))
            });
            if listed != *allow {
                let msg = format!(
                    "Caller IP address {} is not allowed. Access denied.",
                    req.ip
                );
                st.answer(403, "Forbidden");
                return st.fail(step, "ip-filter", "CallerIpNotAllowed", &msg);
            }
            Flow::Continue
        }
        Policy::SetHeader {
            name,
            action,
            values,
        } => {
            let vals = attempt!(st, step, texts(values, &view(req, resp, who, st)));
            let (edits, original) = match phase {
                Phase::Request => (&mut st.req.headers, req.headers.get(name)),
                Phase::Response => {
                    let orig = resp.and_then(|r| r.headers.get(name));
                    (&mut st.resp.headers, orig)
                }
            };
            let current: Option<Vec<String>> = match edits.get(name) {
                Some(v) => v.clone(),
                None => original.map(|o| vec![o.into_owned()]),
            };
            let next = match action {
                ExistsAction::Override => Some(vals),
                ExistsAction::Skip => match current {
                    Some(c) => Some(c),
                    None => Some(vals),
                },
                ExistsAction::Append => {
                    let mut c = current.unwrap_or_default();
                    c.extend(vals);
                    Some(c)
                }
                ExistsAction::Delete => None,
            };
            edits.set(name, next);
            Flow::Continue
        }
        Policy::SetQueryParameter {
            name,
            action,
            values,
        } => {
            let vals = attempt!(st, step, texts(values, &view(req, resp, who, st)));
            let q = st.req.query.get_or_insert_with(|| parse_query(req.query));
            let exists = q.iter().any(|(k, _)| k == name);
            match action {
                ExistsAction::Override => {
                    q.retain(|(k, _)| k != name);
                    q.extend(vals.into_iter().map(|v| (name.clone(), v)));
                }
                ExistsAction::Skip if exists => {}
                ExistsAction::Skip | ExistsAction::Append => {
                    q.extend(vals.into_iter().map(|v| (name.clone(), v)))
                }
                ExistsAction::Delete => q.retain(|(k, _)| k != name),
            }
            Flow::Continue
        }
        Policy::RewriteUri {
            template,
            copy_unmatched,
        } => {
            let t = eval!(st, step, req, resp, who, template);
            let (path_t, query_t) = match t.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (t, None),
            };
            let mut used = Vec::new();
            let fill = |text: &str, used: &mut Vec<String>, st: &State| -> String {
                let mut out = String::with_capacity(text.len());
                let mut rest = text;
                while let Some(open) = rest.find('{') {
                    out.push_str(&rest[..open]);
                    let Some(close) = rest[open..].find('}') else {
                        out.push_str(&rest[open..]);
                        return out;
                    };
                    let name = &rest[open + 1..open + close];
                    let value = who
                        .op
                        .template
                        .param(req.rest, name)
                        .map(|v| v.to_string())
                        .or_else(|| {
                            let q = st.req.query.as_ref();
                            match q {
                                Some(q) => {
                                    q.iter().find(|(k, _)| k == name).map(|(_, v)| encode(v))
                                }
                                None => query_value(req.query, name).map(str::to_string),
                            }
                        })
                        .unwrap_or_default();
                    used.push(name.to_string());
                    out.push_str(&value);
                    rest = &rest[open + close + 1..];
                }
                out.push_str(rest);
                out
            };
            let new_path = fill(&path_t, &mut used, st);
            let mut query: Vec<(String, String)> = match &query_t {
                Some(q) => {
                    let filled = fill(q, &mut used, st);
                    parse_query(Some(filled.as_str()))
                }
                None => Vec::new(),
            };
            if *copy_unmatched {
                let original = st
                    .req
                    .query
                    .clone()
                    .unwrap_or_else(|| parse_query(req.query));
                for (k, v) in original {
                    if !used.contains(&k) && !query.iter().any(|(qk, _)| *qk == k) {
                        query.push((k, v));
                    }
                }
            }
            st.req.rest = Some(if new_path.starts_with('/') {
                new_path
            } else {
                format!("/{new_path}")
            });
            st.req.query = Some(query);
            Flow::Continue
        }
        Policy::SetBackendService { backend, url } => {
            if let Some(i) = backend {
                st.req.target = Some(Target::Backend(*i));
                return Flow::Continue;
            }
            let Some(url) = url else {
                return Flow::Continue;
            };
            let u = eval!(st, step, req, resp, who, url);
            match target_of(&u, io.runtime) {
                Some(t) => {
                    st.req.target = Some(t);
                    Flow::Continue
                }
                None => {
                    st.answer(500, "Internal server error");
                    st.fail(
                        step,
                        "set-backend-service",
                        "BackendUrlNotResolvable",
                        "The base-url must be http:// with an IP address or the URL of a configured backend.",
                    )
                }
            }
        }
        Policy::SetMethod(m) => {
            let m = eval!(st, step, req, resp, who, m);
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                st.answer(500, "Internal server error");
                return st.fail(
                    step,
                    "set-method",
                    "ExpressionValueEvaluationFailure",
                    "set-method needs an upper-case method.",
                );
            }
            st.req.method = Some(m);
            Flow::Continue
        }
        Policy::SetStatus { code, reason } => {
            let c = eval!(st, step, req, resp, who, code);
            let r = eval!(st, step, req, resp, who, reason);
            match c.trim().parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => {
                    st.resp.status = Some(c);
                    st.resp.reason = Some(r);
                    Flow::Continue
                }
                _ => {
                    st.answer(500, "Internal server error");
                    st.fail(
                        step,
                        "set-status",
                        "ExpressionValueEvaluationFailure",
                        "set-status code is not 100..599.",
                    )
                }
            }
        }
        Policy::SetVariable { name, value } => {
            let v = match value {
                Text::Lit(l) => Val::Str(Cow::Owned(l.clone())),
                Text::Expr(e) => attempt!(
                    st,
                    step,
                    e.eval(&view(req, resp, who, st)).map(Val::into_owned)
                ),
            };
            st.set_var(name, v);
            Flow::Continue
        }
        Policy::SetBody(t) => {
            let body = eval!(st, step, req, resp, who, t).into_bytes();
            match phase {
                Phase::Request => st.req.body = Some(body),
                Phase::Response => st.resp.body = Some(body),
            }
            Flow::Continue
        }
        Policy::FindAndReplace { from, to } => {
            let f = eval!(st, step, req, resp, who, from);
            let t = eval!(st, step, req, resp, who, to);
            let body = match phase {
                Phase::Request => &mut st.req.body,
                Phase::Response => &mut st.resp.body,
            };
            if let Some(b) = body {
                if !f.is_empty() {
                    let text = String::from_utf8_lossy(b).replace(&f, &t);
                    *b = text.into_bytes();
                }
            }
            Flow::Continue
        }
        Policy::Choose { whens, otherwise } => {
            for (cond, steps) in whens {
                if attempt!(st, step, cond.eval_bool(&view(req, resp, who, st))) {
                    return run(steps, phase, req, resp, who, st, io);
                }
            }
            run(otherwise, phase, req, resp, who, st, io)
        }
        Policy::ReturnResponse(r) => {
            let status = match &r.status {
                Some((c, reason)) => {
                    let c = eval!(st, step, req, resp, who, c);
                    let reason = eval!(st, step, req, resp, who, reason);
                    (c.trim().parse::<u16>().unwrap_or(200), reason)
                }
                None => (200, String::new()),
            };
            let mut headers = HeaderEdits::default();
            for (name, action, values) in &r.headers {
                let vals = attempt!(st, step, texts(values, &view(req, resp, who, st)));
                let next = match (action, headers.get(name).cloned().flatten()) {
                    (ExistsAction::Delete, _) => None,
                    (ExistsAction::Skip, Some(c)) => Some(c),
                    (ExistsAction::Append, Some(mut c)) => {
                        c.extend(vals);
                        Some(c)
                    }
                    _ => Some(vals),
                };
                headers.set(name, next);
            }
            let body = match &r.body {
                Some(b) => Some(eval!(st, step, req, resp, who, b).into_bytes()),
                None => None,
            };
            st.resp = ResponseEdits {
                status: Some(status.0),
                reason: (!status.1.is_empty()).then_some(status.1),
                headers,
                body: Some(body.unwrap_or_default()),
            };
            Flow::Respond
        }
        Policy::MockResponse {
            status,
            content_type,
        } => {
            let (code, ct, body) = mock(who.op, *status, content_type.as_deref());
            st.resp = ResponseEdits::default();
            st.resp.status = Some(code);
            if let Some(ct) = ct {
                st.resp
                    .headers
                    .set("Content-Type", Some(vec![ct.to_string()]));
            }
            st.resp.body = Some(body.as_bytes().to_vec());
            Flow::Respond
        }
        Policy::Cors(c) => cors(c, req, st),
        Policy::RateLimit(r) => {
            let key = who.subscription.map_or("", |s| s.id.as_str());
            // the top level always counts; nested levels only where they set calls
            let levels = || {
                r.limit
                    .levels(who.api_named(), who.op_named())
                    .filter(|l| l.calls > 0 || l.name.is_empty())
            };
            // check every level first, so a refused call counts nowhere
            for l in levels() {
                let d = io
                    .counters
                    .rate_peek(l.counter, key, l.calls, l.period_secs, io.now_ms);
                if !d.allowed {
                    return rate_refused(step, st, &r.headers, d.retry_after);
                }
            }
            let mut remaining = u64::MAX;
            for l in levels() {
                let d = io
                    .counters
                    .rate(l.counter, key, l.calls, l.period_secs, 1, io.now_ms);
                remaining = remaining.min(d.remaining);
            }
            rate_allowed(st, &r.headers, remaining, r.limit.calls);
            Flow::Continue
        }
        Policy::RateLimitByKey(r) => {
            let key = eval!(st, step, req, resp, who, r.key);
            if r.increment_condition.is_some() {
                // counted when the response is known; refused now if already over
                let d = io
                    .counters
                    .rate_peek(r.counter, &key, r.calls, r.period_secs, io.now_ms);
                if !d.allowed {
                    return rate_refused(step, st, &r.headers, d.retry_after);
                }
                rate_allowed(
                    st,
                    &r.headers,
                    d.remaining.saturating_sub(r.increment_count),
                    r.calls,
                );
                st.deferred.push((step.clone(), key));
                return Flow::Continue;
            }
            let d = io.counters.rate(
                r.counter,
                &key,
                r.calls,
                r.period_secs,
                r.increment_count,
                io.now_ms,
            );
            if !d.allowed {
                return rate_refused(step, st, &r.headers, d.retry_after);
            }
            rate_allowed(st, &r.headers, d.remaining, r.calls);
            Flow::Continue
        }
        Policy::Quota(q) => {
            let key = match &q.key {
                Some(k) => eval!(st, step, req, resp, who, k),
                None => who.subscription.map_or(String::new(), |s| s.id.clone()),
            };
            let now_s = io.now_ms / 1000;
            for l in q.limit.levels(who.api_named(), who.op_named()) {
                if l.calls == 0 && l.bandwidth_kb == 0 {
                    continue;
                }
                let checked = io.counters.quota_check(
                    &l.label,
                    &key,
                    l.calls,
                    l.bandwidth_kb,
                    l.period_secs,
                    q.first_period_start,
                    now_s,
                );
                if let Err(renew) = checked {
                    let msg = format!(
                        "Out of {} quota. Quota will be replenished in {}.",
                        if l.calls > 0 {
                            "call volume"
                        } else {
                            "bandwidth"
                        },
                        hms(renew)
                    );
                    st.answer(403, &msg);
                    st.resp
                        .headers
                        .set("Retry-After", Some(vec![renew.to_string()]));
                    return st.fail(step, policy_name(&step.policy), "QuotaExceeded", &msg);
                }
            }
            if q.increment_condition.is_some() {
                st.deferred.push((step.clone(), key));
            } else {
                use_quota(st, q, who, key);
            }
            Flow::Continue
        }
        Policy::ValidateJwt(v) => validate_jwt(step, v, req, resp, who, st, io),
        Policy::AuthenticationBasic { header } => {
            st.req
                .headers
                .set("Authorization", Some(vec![header.clone()]));
            Flow::Continue
        }
        Policy::LimitConcurrency {
            counter,
            key,
            max,
            steps,
        } => {
            let k = eval!(st, step, req, resp, who, key);
            match io.counters.acquire(*counter, &k, *max, io.now_ms) {
                Some(slot) => {
                    st.slots.push(slot);
                    run(steps, phase, req, resp, who, st, io)
                }
                None => {
                    st.answer(429, "Too many concurrent requests. Try again later.");
                    st.fail(
                        step,
                        "limit-concurrency",
                        "ConcurrencyLimitExceeded",
                        "Too many concurrent requests.",
                    )
                }
            }
        }
    }
}

/// Takes a limit-concurrency slot around forward-request (held in `State::slots`
/// until the call ends).
pub fn acquire_forward_slot(
    key: &Text,
    max: u32,
    counter: u64,
    req: &RequestView,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) -> Flow {
    let k = match key.eval(&view(req, None, who, st)) {
        Ok(k) => k.into_owned(),
        Err(e) => {
            st.answer(500, "Internal server error");
            fail_outside(
                st,
                "limit-concurrency",
                "ExpressionValueEvaluationFailure",
                e.0,
                "backend",
            );
            return Flow::Error;
        }
    };
    match io.counters.acquire(counter, &k, max, io.now_ms) {
        Some(slot) => {
            st.slots.push(slot);
            Flow::Continue
        }
        None => {
            st.answer(429, "Too many concurrent requests. Try again later.");
            fail_outside(
                st,
                "limit-concurrency",
                "ConcurrencyLimitExceeded",
                "Too many concurrent requests.",
                "backend",
            );
            Flow::Error
        }
    }
}

/// Whether `<retry>` sends the request again after an attempt that ended with `resp`
/// (a backend that could not be reached or did not answer is seen as the gateway's
/// 502 / 504 with no headers). A condition that fails to evaluate means no retry.
pub fn retry_wanted(
    retry: &policy::Retry,
    req: &RequestView,
    resp: &ResponseView,
    who: &Who,
    st: &State,
) -> bool {
    retry
        .condition
        .eval_bool(&view(req, Some(resp), who, st))
        .unwrap_or(false)
}

/// The wait before retry number `n` (1 for the first), as APIM computes it: fixed
/// `interval`; with `delta`, linear (`interval + (n - 1) * delta`); with `delta` and
/// `max-interval`, exponential (`interval + 2^(n - 1) * delta * jitter`, `jitter` in
/// 0.8..1.2); never above `max-interval` when it is set. `first-fast-retry` makes the
/// first one immediate.
pub fn retry_delay(retry: &policy::Retry, n: u32, jitter: f64) -> std::time::Duration {
    if n <= 1 && retry.first_fast_retry {
        return std::time::Duration::ZERO;
    }
    let n = n.max(1);
    let interval = retry.interval_secs as f64;
    let delta = retry.delta_secs as f64;
    let secs = match (retry.delta_secs, retry.max_interval_secs) {
        (0, _) => interval,
        (_, 0) => interval + f64::from(n - 1) * delta,
        _ => interval + 2f64.powi((n - 1).min(30) as i32) * delta * jitter.clamp(0.8, 1.2),
    };
    let capped = match retry.max_interval_secs {
        0 => secs,
        max => secs.min(max as f64),
    };
    std::time::Duration::from_secs_f64(capped.clamp(0.0, 86_400.0))
}

/// Counts the call against every level of quota `q` once it ends (see `finish`).
fn use_quota(st: &mut State, q: &policy::Quota, who: &Who, key: String) {
    for l in q.limit.levels(who.api_named(), who.op_named()) {
        st.quotas.push(QuotaUse {
            label: Arc::clone(&l.label),
            key: key.clone(),
            period: l.period_secs,
            start: q.first_period_start,
        });
    }
}

fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn rate_refused(step: &Step, st: &mut State, h: &policy::LimitHeaders, retry: u64) -> Flow {
    let msg = format!("Rate limit is exceeded. Try again in {retry} seconds.");
    st.answer(429, &msg);
    let name = h.retry_after_header.as_deref().unwrap_or("Retry-After");
    st.resp.headers.set(name, Some(vec![retry.to_string()]));
    if let Some(v) = &h.retry_after_variable {
        st.set_var(v, Val::Int(retry as i64));
    }
    if let Some(hdr) = &h.remaining_header {
        st.resp.headers.set(hdr, Some(vec!["0".into()]));
    }
    st.fail(step, policy_name(&step.policy), "RateLimitExceeded", &msg)
}

fn rate_allowed(st: &mut State, h: &policy::LimitHeaders, remaining: u64, total: u64) {
    if let Some(hdr) = &h.remaining_header {
        st.resp.headers.set(hdr, Some(vec![remaining.to_string()]));
    }
    if let Some(v) = &h.remaining_variable {
        st.set_var(v, Val::Int(remaining as i64));
    }
    if let Some(hdr) = &h.total_header {
        st.resp.headers.set(hdr, Some(vec![total.to_string()]));
    }
}

/// Applies rate-limit-by-key / quota-by-key increments whose condition depends on the
/// response. Call once the response status and headers are known.
pub fn settle(
    req: &RequestView,
    resp: Option<&ResponseView>,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) {
    let deferred = std::mem::take(&mut st.deferred);
    for (step, key) in deferred {
        let view = view(req, resp, who, st);
        match &*step.policy {
            Policy::RateLimitByKey(r) => {
                let counts = r
                    .increment_condition
                    .as_ref()
                    .is_none_or(|c| c.eval_bool(&view).unwrap_or(false));
                if counts {
                    io.counters.rate_add(
                        r.counter,
                        &key,
                        r.calls,
                        r.period_secs,
                        r.increment_count,
                        io.now_ms,
                    );
                }
            }
            Policy::Quota(q) => {
                let counts = q
                    .increment_condition
                    .as_ref()
                    .is_none_or(|c| c.eval_bool(&view).unwrap_or(false));
                if counts {
                    use_quota(st, q, who, key);
                }
            }
            _ => {}
        }
    }
}

/// Counts the call against its quotas (at its end, when its size is known).
pub fn finish(st: &mut State, counters: &mut Counters, bytes: u64, now_ms: u64) {
    for q in st.quotas.drain(..) {
        counters.quota_add(&q.label, &q.key, q.period, q.start, bytes, now_ms / 1000);
    }
    st.slots.clear();
}

fn target_of(url: &str, rt: &Runtime) -> Option<Target> {
    let b = crate::config::compile::parse_service_url(url).ok()?;
    if let Some(ip) = b.ip_literal() {
        return Some(Target::Addr {
            addr: SocketAddr::new(ip, b.port),
            authority: b.authority,
            base_path: b.base_path,
            tls: b.tls,
        });
    }
    rt.backends
        .iter()
        .position(|k| k.authority == b.authority && k.base_path == b.base_path)
        .map(|i| Target::Backend(i as u32))
}

/// The example for mock-response: the response with `status` (else the first 2xx,
/// else 200) and representation with `content_type` (else the first).
pub fn mock<'o>(
    op: &'o Operation,
    status: Option<u16>,
    content_type: Option<&'o str>,
) -> (u16, Option<&'o str>, &'o str) {
    let r = match status {
        Some(s) => op.responses.iter().find(|r| r.status == s),
        None => op.responses.iter().find(|r| (200..300).contains(&r.status)),
    };
    let code = status.or(r.map(|r| r.status)).unwrap_or(200);
    let Some(r) = r else {
        return (code, content_type, "");
    };
    let rep = match content_type {
        Some(ct) => r.representations.iter().find(|(c, _)| c == ct),
        None => r.representations.first(),
    };
    match rep {
        Some((ct, ex)) => (code, Some(ct.as_str()), ex.as_str()),
        None => (code, content_type, ""),
    }
}

fn cors(c: &policy::Cors, req: &RequestView, st: &mut State) -> Flow {
    let origin = req.headers.get("origin");
    let preflight =
        req.method == "OPTIONS" && req.headers.get("access-control-request-method").is_some();
    let Some(origin) = origin else {
        return Flow::Continue;
    };
    let origin_ok = c.any_origin || c.origins.iter().any(|o| o.eq_ignore_ascii_case(&origin));
    if preflight {
        let method = req
            .headers
            .get("access-control-request-method")
            .unwrap_or_default();
        let method_ok = c.any_method
            || c.methods.is_empty() && method == "GET"
            || c.methods.iter().any(|m| m.eq_ignore_ascii_case(&method));
        let wanted = req
            .headers
            .get("access-control-request-headers")
            .unwrap_or_default();
        let headers_ok = c.any_header
            || wanted
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .all(|h| c.headers.iter().any(|a| a.eq_ignore_ascii_case(h)));
        if !(origin_ok && method_ok && headers_ok) {
            if c.terminate_unmatched {
                st.resp = ResponseEdits::default();
                st.resp.status = Some(200);
                st.resp.body = Some(Vec::new());
                return Flow::Respond;
            }
            return Flow::Continue;
        }
        st.resp = ResponseEdits::default();
        st.resp.status = Some(200);
        st.resp.body = Some(Vec::new());
        let h = &mut st.resp.headers;
        allow(c, &origin, h);
        h.set(
            "Access-Control-Allow-Methods",
            Some(vec![if c.any_method {
                method.into_owned()
            } else if c.methods.is_empty() {
                "GET".into()
            } else {
                c.methods.join(",")
            }]),
        );
        if !wanted.is_empty() {
            h.set(
                "Access-Control-Allow-Headers",
                Some(vec![if c.any_header {
                    wanted.into_owned()
                } else {
                    c.headers.join(",")
                }]),
            );
        }
        if let Some(age) = c.max_age {
            h.set("Access-Control-Max-Age", Some(vec![age.to_string()]));
        }
        if !c.any_origin {
            h.set("Vary", Some(vec!["Origin".into()]));
        }
        return Flow::Respond;
    }
    if origin_ok {
        let h = &mut st.resp.headers;
        allow(c, &origin, h);
        if !c.expose.is_empty() {
            h.set(
                "Access-Control-Expose-Headers",
                Some(vec![c.expose.join(",")]),
            );
        }
        if !c.any_origin {
            h.set("Vary", Some(vec!["Origin".into()]));
        }
    }
    Flow::Continue
}

/// Access-Control-Allow-Origin (and -Credentials) for an allowed origin.
fn allow(c: &policy::Cors, origin: &str, h: &mut HeaderEdits) {
    let value = if c.any_origin {
        "*".to_string()
    } else {
        origin.to_string()
    };
    h.set("Access-Control-Allow-Origin", Some(vec![value]));
    if c.allow_credentials {
        h.set(
            "Access-Control-Allow-Credentials",
            Some(vec!["true".into()]),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn validate_jwt(
    step: &Step,
    v: &jwt::ValidateJwt,
    req: &RequestView,
    resp: Option<&ResponseView>,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) -> Flow {
    let raw: Option<String> = match &v.source {
        jwt::TokenSource::Header(h) => match st.req.headers.get(h) {
            Some(Some(vals)) => vals.first().cloned(),
            Some(None) => None,
            None => req.headers.get(h).map(Cow::into_owned),
        },
        jwt::TokenSource::Query(q) => query_value(req.query, q).map(|t| decode(t).into_owned()),
        jwt::TokenSource::Value(t) => {
            let s = eval!(st, step, req, resp, who, t);
            (!s.is_empty()).then_some(s)
        }
    };
    let refuse = |st: &mut State, reason: &str, detail: &str, missing: bool| {
        let default = if missing {
            "JWT not present."
        } else {
            "Invalid JWT."
        };
        let msg = v.failed_message.as_deref().unwrap_or(default);
        st.answer(v.failed_code, msg);
        st.fail(step, "validate-jwt", reason, detail)
    };
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return refuse(st, "TokenNotPresent", "JWT not present.", true);
    };
    let token = match (&v.source, &v.require_scheme) {
        (jwt::TokenSource::Header(_), Some(scheme)) => match raw.split_once(' ') {
            Some((s, t)) if s.eq_ignore_ascii_case(scheme) => t.trim().to_string(),
            _ => {
                return refuse(
                    st,
                    "TokenSchemeNotAllowed",
                    "The authorization scheme is not allowed.",
                    false,
                )
            }
        },
        (jwt::TokenSource::Header(h), None) if h.eq_ignore_ascii_case("authorization") => {
            match raw.split_once(' ') {
                Some((s, t)) if s.eq_ignore_ascii_case("bearer") => t.trim().to_string(),
                _ => raw.trim().to_string(),
            }
        }
        _ => raw.trim().to_string(),
    };
    let id = v.id;
    let life = match io.counters.jwt_cached(id, &token) {
        Some(l) => l,
        None => match v.verify(&token) {
            Ok(l) => {
                io.counters.jwt_remember(id, &token, l, io.now_ms);
                l
            }
            Err(e) => return refuse(st, e.reason, &e.message, false),
        },
    };
    if let Err(e) = v.check_lifetime(life, io.now_ms / 1000) {
        return refuse(st, e.reason, &e.message, false);
    }
    if let Some(var) = &v.output_variable {
        st.set_var(var, Val::Str(Cow::Owned(token)));
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::expr::Expr;
    use std::time::Duration;

    fn retry(interval: u64, max: u64, delta: u64, fast: bool) -> policy::Retry {
        policy::Retry {
            condition: Expr::parse("true", false).unwrap(),
            count: 5,
            interval_secs: interval,
            max_interval_secs: max,
            delta_secs: delta,
            first_fast_retry: fast,
        }
    }

    #[test]
    fn retry_waits_follow_apim() {
        let secs = |r: &policy::Retry, n, j| retry_delay(r, n, j).as_secs_f64();
        // fixed
        let fixed = retry(2, 0, 0, false);
        assert_eq!((secs(&fixed, 1, 1.0), secs(&fixed, 4, 1.0)), (2.0, 2.0));
        // linear: interval + (n - 1) * delta
        let linear = retry(1, 0, 2, false);
        assert_eq!([1, 2, 3].map(|n| secs(&linear, n, 1.0)), [1.0, 3.0, 5.0]);
        // exponential: interval + 2^(n-1) * delta * jitter, capped at max-interval
        let exp = retry(1, 20, 2, false);
        assert_eq!(
            [1, 2, 3, 4, 5].map(|n| secs(&exp, n, 1.0)),
            [3.0, 5.0, 9.0, 17.0, 20.0]
        );
        assert_eq!(secs(&exp, 1, 0.5), 1.0 + 2.0 * 0.8, "jitter is clamped");
        // first-fast-retry: only the first is immediate
        let fast = retry(3, 0, 0, true);
        assert_eq!(retry_delay(&fast, 1, 1.0), Duration::ZERO);
        assert_eq!(secs(&fast, 2, 1.0), 3.0);
    }
}

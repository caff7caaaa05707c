//! The interface between the request-time pipeline and each policy: what a compiled
//! policy is (`Behaviour`: its name, its facts, its run), what it runs against (`Call`:
//! the phase, the call's `State`, the counters, the clock, and a `Host` that answers
//! for the config's entities and evaluates expressions) and what it returns (`Flow`).
//! The per-call `State` gathers every change (header edits, new method/path/query/
//! backend, bodies, variables, the last error) that the connection applies as it writes
//! heads.
//! Must not touch: sockets, buffers, the config's data model (that is the `Host`'s side,
//! implemented by `crate::pipeline`).

use std::any::Any;
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use super::expr::{err, Budget, Env, EvalError, Expr, Val};
use super::limits::{ConcurrencySlot, Counters};
use super::request::{RequestView, ResponseView};
use super::{Named, Setting, Step, Text};
use crate::http::failure::{message_body, JSON};
use crate::http::forward::HeaderEdits;

pub use super::request::OwnedRequest;

/// `context.LastError`.
#[derive(Debug, Clone, Default)]
pub struct LastError {
    pub source: String,
    pub reason: String,
    pub message: String,
    pub scope: String,
    pub section: String,
    pub policy_id: String,
    /// The failing policy's element (APIM's `Path`, without its positional indexes).
    pub path: String,
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
    /// The certificate to present to an `https://` backend (authentication-certificate).
    pub client_tls: Option<ClientTls>,
    /// The HTTP proxy the backend request goes through (the `proxy` policy).
    pub proxy: Option<ProxyVia>,
}

/// An HTTP proxy a request goes through: its URL (`http://host:port`) and the
/// `Proxy-Authorization` value, if credentials were given.
#[derive(Clone)]
pub struct ProxyVia {
    pub url: String,
    pub authorization: Option<String>,
}

impl std::fmt::Debug for ProxyVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyVia {{ url: {:?} }}", self.url)
    }
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

/// The section a suspended call waited in, where it resumes (outbound over a
/// backend's response is the exchange's to resume; on-error after it is `OnError`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    #[default]
    Inbound,
    /// Outbound over the policies' own answer (no forward-request).
    LocalOutbound,
    /// Outbound after cache-store, over a cached response.
    CachedOutbound,
    /// On-error after an inbound failure.
    OnError,
}

/// Per-call policy state, from inbound to the end of the call.
#[derive(Debug, Default)]
pub struct State {
    pub vars: Vec<(String, Val<'static>)>,
    pub req: RequestEdits,
    pub resp: ResponseEdits,
    /// Boxed (like `request_copy`): rarely set, and the call's state stays small enough for
    /// the allocator's per-thread cache.
    pub last_error: Option<Box<LastError>>,
    pub request_id: String,
    /// Steps whose effect waits for the response (rate-limit-by-key / quota conditions).
    pub deferred: Vec<(Step, String)>,
    pub quotas: Vec<QuotaUse>,
    pub slots: Vec<ConcurrencySlot>,
    /// The request copy for later sections, when they read it.
    pub request_copy: Option<Box<OwnedRequest>>,
    /// What expressions may still spend during this call, and what it started with.
    pub budget: Budget,
    pub budget_limits: (u64, u64),
    /// When the gateway started on the call (`context.Timestamp`) and the clock of the
    /// phase running now, in milliseconds since 1970.
    pub started_ms: u64,
    pub now_ms: u64,
    /// What `<trace>` policies wrote (at most `kinds::trace::MAX_TRACES`).
    pub traces: Vec<crate::telemetry::Trace>,
    /// What `<emit-metric>` policies emitted (at most `kinds::emit_metric::MAX_PER_CALL`).
    pub metrics: Vec<crate::telemetry::CustomMetric>,
    /// An expression read the request's ([0]) or response's ([1]) body without
    /// `preserveContent`: later readers, and the message sent on, get no body.
    pub body_consumed: [Cell<bool>; 2],
    /// What `context.Trace(message)` wrote during an evaluation, until it joins `traces`.
    pub expr_traces: std::cell::RefCell<Vec<String>>,
    /// The numbers forward-request and retry computed for this call, once the backend
    /// section reached forward-request.
    pub forward: Option<super::ForwardTerms>,
    /// The requests `send-request` policies wait for (the call is suspended until their
    /// outcomes land with `State::receive`).
    pub outgoing: Vec<super::outgoing::Outgoing>,
    /// Where a suspended call resumes: the index of each step on the way down to the
    /// one that suspended (and a branch of each `choose` on the way), innermost first.
    pub cursor: Vec<u32>,
    /// Inside `<wait>`: send-request queues its request and goes on.
    pub collecting: bool,
    /// The suspension ends with the first outcome (`<wait for="any">`) rather than all.
    pub wait_any: bool,
    /// The external cache's commands the call waits for (a lookup, a shared count).
    pub external: Vec<super::external::ExternalAsk>,
    /// A shared limit's answer for the policy that asked (it runs again to read it).
    pub counted: Option<super::external::Counted>,
    /// The step that suspended runs again on resume (it reads its answer then),
    /// rather than the call going on after it.
    pub rerun: bool,
    /// Where a call that answers without the backend resumes after waiting.
    pub waiting: Waiting,
    /// The call waits this long before it goes on (retry's interval between attempts).
    pub sleep_ms: Option<u64>,
    /// cache-lookup missed: the key and terms cache-store keeps the response under.
    pub response_caching: Option<super::kinds::cache_response::ResponseCaching>,
    /// The external cache's answer to cache-lookup (None inside: a miss, or Redis
    /// unavailable), for the lookup that runs again.
    pub response_lookup: Option<Option<std::rc::Rc<super::cache::CachedResponse>>>,
    /// cache-lookup hit: the cached response the call answers with (outbound goes on
    /// after cache-store over it).
    pub cache_hit: Option<std::rc::Rc<super::cache::CachedResponse>>,
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
    /// The call waits for the requests in `State::outgoing`; it resumes after the step
    /// that suspended (`State::cursor`) once their outcomes have landed.
    Suspend,
}

impl Drop for State {
    /// The bodies' buffers go back to the thread's spares for the next call.
    fn drop(&mut self) {
        if let Some(body) = self.req.body.take() {
            crate::http::spare::give(body);
        }
        if let Some(body) = self.resp.body.take() {
            crate::http::spare::give(body);
        }
    }
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

    pub fn fail(&mut self, step: &Step, source: &str, reason: &str, message: &str) -> Flow {
        self.last_error = Some(Box::new(LastError {
            source: source.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            scope: step.scope.as_str().to_string(),
            section: step.section.as_str().to_string(),
            policy_id: step.id.as_deref().unwrap_or("").to_string(),
            path: step.policy.name().to_string(),
        }));
        Flow::Error
    }

    pub fn eval_failed(&mut self, step: &Step, e: EvalError) -> Flow {
        self.answer(500, "Internal server error");
        self.fail(
            step,
            step.policy.name(),
            "ExpressionValueEvaluationFailure",
            &format!("Expression evaluation failed. {}", e.0),
        )
    }

    /// The expression budget of this call (`limits.expressions.*`).
    pub fn set_budget(&mut self, steps: u64, bytes: u64) {
        self.budget_limits = (steps, bytes);
        self.refill_budget();
    }

    /// A full budget again: on-error runs with its own, so it can still report a
    /// failure that spent the call's.
    pub fn refill_budget(&mut self) {
        let (steps, bytes) = match self.budget_limits {
            (0, 0) => (
                crate::policy::expr::DEFAULT_STEPS,
                crate::policy::expr::DEFAULT_BYTES,
            ),
            limits => limits,
        };
        self.budget = Budget::new(steps, bytes);
    }

    /// Applies the body reads that consumed a body (after an evaluation, before its
    /// result is used: a set-body that consumed the body then sets the new one).
    pub fn settle_consumed(&mut self) {
        for message in self.expr_traces.take() {
            crate::policy::kinds::trace::keep(self, "context.Trace", message);
        }
        if self.body_consumed[0].take() {
            self.req.body = Some(Vec::new());
        }
        if self.body_consumed[1].take() {
            self.resp.body = Some(Vec::new());
        }
    }

    pub fn set_var(&mut self, name: &str, v: Val<'static>) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = v,
            None => self.vars.push((name.to_string(), v)),
        }
    }
}

/// Marks the call as failed for a reason outside the policies (backend failure, bad
/// request framing…) so on-error runs with it.
pub fn fail_outside(st: &mut State, source: &str, reason: &str, message: &str, section: &str) {
    st.last_error = Some(Box::new(LastError {
        source: source.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        scope: String::new(),
        section: section.to_string(),
        policy_id: String::new(),
        path: String::new(),
    }));
}

/// Is this a response phase (the edits go to the response)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

/// What a policy knows about itself once compiled; the plan is built from these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// It reads the body (find-and-replace): the gateway buffers the body first.
    pub needs_body: bool,
    /// It replaces the body (set-body).
    pub sets_body: bool,
    /// It reads the request (headers, query, path…): in outbound or on-error the
    /// gateway keeps a copy of the request for it.
    pub reads_request: bool,
    /// It makes the call wait for a request of its own (send-request, wait).
    pub suspends: bool,
    /// It copies the request, body included (send-request mode copy): in on-error too,
    /// the gateway reads the request body whole first.
    pub copies_request: bool,
}

impl std::ops::BitOr for Facts {
    type Output = Facts;
    fn bitor(self, o: Facts) -> Facts {
        Facts {
            needs_body: self.needs_body || o.needs_body,
            sets_body: self.sets_body || o.sets_body,
            reads_request: self.reads_request || o.reads_request,
            suspends: self.suspends || o.suspends,
            copies_request: self.copies_request || o.copies_request,
        }
    }
}

impl Facts {
    /// Facts of a list of steps (the content of choose, limit-concurrency).
    pub fn of(steps: &[Step]) -> Facts {
        steps
            .iter()
            .fold(Facts::default(), |f, s| f | s.policy.facts())
    }
    /// `reads_request` when any of these texts is an expression reading the request.
    /// Facts of a bare expression (a condition).
    pub fn expr(e: &Expr) -> Facts {
        Facts {
            reads_request: e.reads_request,
            needs_body: e.reads_request_body || e.reads_response_body,
            ..Facts::default()
        }
    }
    /// and `needs_body` when one reads a body.
    pub fn reading<'t>(texts: impl IntoIterator<Item = &'t Text>) -> Facts {
        let mut facts = Facts::default();
        for t in texts {
            facts.reads_request |= t.reads_request();
            facts.needs_body |= t.reads_body();
        }
        facts
    }
}

/// One compiled policy. Each policy is a module of `crate::policy::kinds` holding its
/// parse (XML element -> this value), its compiled form, its facts and its run.
pub trait Behaviour: fmt::Debug + Send + Sync + AsAny {
    /// The element name, as `context.LastError.Source` reports it.
    fn name(&self) -> &'static str;
    fn facts(&self) -> Facts;
    /// Runs the policy for one call.
    fn run(&self, step: &Step, call: &mut Call) -> Flow;
    /// Counts what `run` deferred until the response was known (`State::deferred`).
    fn settle(&self, _key: String, _call: &mut Call) {}
}

/// A compiled policy as its concrete type (tests and tools look inside plans).
pub trait AsAny {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What the config provides to a running policy: the call's request and response, its
/// API, operation and subscription, and expression evaluation over them.
pub trait Host {
    fn request(&self) -> &RequestView<'_>;
    fn response(&self) -> Option<&ResponseView<'_>>;
    /// Runs `f` with the expression environment of this call in state `st`.
    fn with_env(&self, st: &State, f: &mut dyn FnMut(&dyn Env));
    fn subscription_id(&self) -> Option<&str>;
    fn api(&self) -> Named<'_>;
    fn operation(&self) -> Named<'_>;
    /// The raw value of template parameter `name` in the request's path or query.
    fn template_param(&self, name: &str) -> Option<&str>;
    /// Whether the operation's URL template names query parameter `key` (then
    /// rewrite-uri does not copy it as unmatched).
    fn template_query_key(&self, key: &str) -> bool;
    /// The operation's example for mock-response: status, content type and body.
    fn mock_example<'h>(
        &'h self,
        status: Option<u16>,
        content_type: Option<&'h str>,
    ) -> (u16, Option<&'h str>, &'h str);
    /// What the API's definition says of the operation, and the API's schemas
    /// (validate-content, -parameters, -headers, -status-code).
    fn contract(&self) -> (&super::schema::Contract, &super::schema::SchemaSet);
    /// Where a URL computed by an expression sends the request (None: not allowed).
    fn target_of(&self, url: &str) -> Option<Target>;
    /// The named backend with this id, if the config has it.
    fn backend_named(&self, id: &str) -> Option<Target>;
    /// The URL the request would be sent to now (the backend's, with the policies'
    /// changes so far): send-request's URL in mode copy.
    fn request_url(&self, st: &State) -> String;
    /// The developer calling: the subscription's owner, else the subscription (none
    /// without a subscription).
    fn developer(&self) -> Option<&str>;
    /// The ids of the calling developer's groups.
    fn developer_groups(&self) -> Vec<&str>;
    /// The config's CA certificates by id (`caCertificates`).
    fn ca_certificates(&self) -> &[(String, crate::x509::Certificate)];
    /// Whether a client certificate chains to them (remembered per connection).
    fn certificate_trusted(&self, presented: &crate::x509::Presented) -> bool;
    /// The TLS identity that presents a certificate to backends (authentication-
    /// certificate), or why there is none.
    fn client_identity(
        &self,
        which: super::kinds::authentication_certificate::Named<'_>,
    ) -> Result<ClientTls, String>;
}

/// A client certificate to present to an `https://` server: the client config that
/// presents it, and its thumbprint, which keeps its connections in a pool of their own.
#[derive(Clone)]
pub struct ClientTls {
    pub thumbprint: Arc<str>,
    pub config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls {{ thumbprint: {:?} }}", self.thumbprint)
    }
}

/// One step's view of the call: the phase, the host, the call's state, the counters
/// and the clock.
pub struct Call<'c> {
    pub phase: Phase,
    pub host: &'c dyn Host,
    pub st: &'c mut State,
    pub counters: &'c mut Counters,
    pub now_ms: u64,
}

impl Call<'_> {
    /// `text` evaluated for this call (a literal as it is).
    pub fn text(&mut self, text: &Text) -> Result<String, EvalError> {
        self.text_cow(text).map(Cow::into_owned)
    }
    /// `text` for this call, a literal borrowed (no allocation per request).
    pub fn text_cow<'t>(&mut self, text: &'t Text) -> Result<Cow<'t, str>, EvalError> {
        if let Text::Lit(l) = text {
            return Ok(Cow::Borrowed(l));
        }
        let mut out = Err(err("no environment"));
        self.host.with_env(self.st, &mut |env| {
            out = text.eval(env).map(|c| c.into_owned())
        });
        self.st.settle_consumed();
        out.map(Cow::Owned)
    }
    /// A setting's value for this call (an expression's text checked against its set).
    pub fn setting<T: Clone>(&mut self, s: &Setting<T>) -> Result<T, EvalError> {
        match s {
            Setting::Fixed(v) => Ok(v.clone()),
            Setting::Computed(c) => {
                let v = self.text(&c.text)?;
                (c.parse)(v.trim()).ok_or_else(|| {
                    EvalError(
                        format!("The value '{v}' is not valid here: expected {}", c.expected)
                            .into(),
                    )
                })
            }
        }
    }
    /// A header of the request or the response as the policies so far left it (values
    /// of a repeated header joined by ", ").
    pub fn header(&self, of: Phase, name: &str) -> Option<Cow<'_, str>> {
        let (edits, original) = match of {
            Phase::Request => (&self.st.req.headers, self.host.request().headers.get(name)),
            Phase::Response => (
                &self.st.resp.headers,
                self.host.response().and_then(|r| r.headers.get(name)),
            ),
        };
        match edits.get(name) {
            Some(Some(values)) => Some(Cow::Owned(values.join(", "))),
            Some(None) => None,
            None => original,
        }
    }
    /// A Liquid template rendered for this call.
    pub fn liquid(
        &mut self,
        t: &crate::policy::expr::liquid::Template,
    ) -> Result<String, EvalError> {
        let mut out = Err(err("no environment"));
        self.host.with_env(self.st, &mut |env| {
            out = crate::policy::expr::liquid::render(t, env)
        });
        self.st.settle_consumed();
        out
    }
    /// Every value of a list (set-header, set-query-parameter, return-response headers).
    pub fn texts(&mut self, texts: &[Text]) -> Result<Vec<String>, EvalError> {
        texts.iter().map(|t| self.text(t)).collect()
    }
    pub fn value(&mut self, expr: &Expr) -> Result<Val<'static>, EvalError> {
        let mut out = Err(err("no environment"));
        self.host.with_env(self.st, &mut |env| {
            out = expr.eval(env).map(Val::into_owned)
        });
        self.st.settle_consumed();
        out
    }
    /// `text`'s value for this call: a literal as a string, an expression's typed value
    /// (set-variable, cache values).
    pub fn typed(&mut self, text: &Text) -> Result<Val<'static>, EvalError> {
        match text {
            Text::Lit(l) => Ok(Val::Str(Cow::Owned(l.clone()))),
            Text::Expr(e) => self.value(e),
        }
    }
    pub fn truth(&mut self, expr: &Expr) -> Result<bool, EvalError> {
        let mut out = Err(err("no environment"));
        self.host
            .with_env(self.st, &mut |env| out = expr.eval_bool(env));
        self.st.settle_consumed();
        out
    }
    /// Runs `steps` in order until one does not continue. A resumed call starts where
    /// its cursor says: inside the step that holds the one that suspended, or after the
    /// one that suspended.
    pub fn run(&mut self, steps: &[Step]) -> Flow {
        let start = match self.st.cursor.pop() {
            // innermost: after the step that suspended, or that step again
            Some(i) if self.st.cursor.is_empty() => {
                i as usize + usize::from(!std::mem::take(&mut self.st.rerun))
            }
            Some(i) => i as usize,
            None => 0,
        };
        for (i, step) in steps.iter().enumerate().skip(start) {
            match step.policy.run(step, self) {
                Flow::Continue => {}
                Flow::Suspend => {
                    self.st.cursor.push(i as u32);
                    return Flow::Suspend;
                }
                flow => return flow,
            }
        }
        Flow::Continue
    }
    /// The call is resuming inside this step (it holds the step that suspended): the
    /// step goes back in without deciding again.
    pub fn resuming(&self) -> bool {
        !self.st.cursor.is_empty()
    }
    /// Runs branch `branch` of a step with branches (choose), so that a suspension
    /// inside it resumes in the same branch (`resumed_branch`).
    pub fn run_branch(&mut self, branch: usize, steps: &[Step]) -> Flow {
        let flow = self.run(steps);
        if flow == Flow::Suspend {
            self.st.cursor.push(branch as u32);
        }
        flow
    }
    /// The branch a resuming step with branches was in.
    pub fn resumed_branch(&mut self) -> Option<usize> {
        self.st.cursor.pop().map(|b| b as usize)
    }
}

/// The value of an evaluation, or the step fails with ExpressionValueEvaluationFailure
/// and the enclosing `run` returns that flow.
macro_rules! or_fail {
    ($call:expr, $step:expr, $result:expr) => {{
        let result = $result;
        match result {
            Ok(v) => v,
            Err(e) => return $call.st.eval_failed($step, e),
        }
    }};
}
pub(crate) use or_fail;

//! The policy pipeline of Azure API Management, compiled. A policy document (XML, four
//! sections) per scope — global, product, API, operation — is parsed once per config
//! apply (`parse`), its `<base />` elements resolved against the parent scope
//! (`Plan::merge`), and the result is a `Plan` per operation (and per product that
//! grants the API): flat lists of compiled `Policy` values holding compiled `Expr`s. At
//! request time `crate::pipeline::exec` walks a plan; nothing parses XML or expression
//! text then. This module never needs the config's data model (`crate::config` holds
//! compiled plans, not the other way round).
//!
//! ```text
//!   inbound (+ backend steps before forward-request) ─▶ forward-request ─▶ outbound
//!        │ error / policy failure             │ backend failure            │ error
//!        └──────────────────────────▶ on-error ◀───────────────────────────┘
//! ```
//! Must not touch: sockets, the loop's state, the clock (time comes in as an argument).

pub mod expr;
pub mod jwt;
pub mod limits;
pub mod parse;
pub mod rawxml;

use std::net::IpAddr;
use std::sync::Arc;

use expr::{Env, EvalError, Expr};

/// An attribute or element value: a literal, or an expression to run per request.
#[derive(Debug, Clone)]
pub enum Text {
    Lit(String),
    Expr(Expr),
}

impl Text {
    pub fn eval<'e>(&'e self, env: &'e dyn Env) -> Result<std::borrow::Cow<'e, str>, EvalError> {
        match self {
            Text::Lit(s) => Ok(std::borrow::Cow::Borrowed(s)),
            Text::Expr(e) => e.eval_text(env),
        }
    }
    pub fn reads_request(&self) -> bool {
        matches!(self, Text::Expr(e) if e.reads_request)
    }
}

/// Which scope a policy came from (for `context.LastError.Scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Product,
    Api,
    Operation,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Product => "product",
            Scope::Api => "api",
            Scope::Operation => "operation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Inbound,
    Backend,
    Outbound,
    OnError,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Inbound => "inbound",
            Section::Backend => "backend",
            Section::Outbound => "outbound",
            Section::OnError => "on-error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistsAction {
    Override,
    Skip,
    Append,
    Delete,
}

/// One level of a rate-limit or quota: the policy itself, or an `<api>` inside it, or an
/// `<operation>` inside that. 0 calls (or 0 bandwidth) = that dimension is not limited.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The API or operation (name or id) this level applies to; empty at the top.
    pub name: String,
    pub calls: u64,
    pub bandwidth_kb: u64,
    pub period_secs: u64,
    /// Rate-limit counter identity (unique per policy instance and level).
    pub counter: u64,
    /// Quota counter identity, stable across restarts: scope, the policy's `id` (or its
    /// order in the config) and the level.
    pub label: Arc<str>,
    pub nested: Vec<Limit>,
}

/// An API or operation as a limit names it: by id or by name.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

impl Limit {
    /// The levels that apply to a call of `op` in `api`: this one, then the matching
    /// `<api>` and its matching `<operation>`.
    pub fn levels<'l>(&'l self, api: Named<'l>, op: Named<'l>) -> impl Iterator<Item = &'l Limit> {
        let named = |l: &Limit, n: Named| l.name == n.id || l.name == n.name;
        let apis = self.nested.iter().filter(move |a| named(a, api));
        std::iter::once(self).chain(apis.flat_map(move |a| {
            std::iter::once(a).chain(a.nested.iter().filter(move |o| named(o, op)))
        }))
    }
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub limit: Limit,
    pub headers: LimitHeaders,
}

#[derive(Debug, Clone, Default)]
pub struct LimitHeaders {
    pub retry_after_header: Option<String>,
    pub retry_after_variable: Option<String>,
    pub remaining_header: Option<String>,
    pub remaining_variable: Option<String>,
    pub total_header: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RateLimitByKey {
    pub counter: u64,
    pub calls: u64,
    pub period_secs: u64,
    pub key: Text,
    pub increment_condition: Option<Expr>,
    pub increment_count: u64,
    pub headers: LimitHeaders,
}

#[derive(Debug, Clone)]
pub struct Quota {
    pub limit: Limit,
    /// quota-by-key: the key; `quota`: per subscription.
    pub key: Option<Text>,
    pub increment_condition: Option<Expr>,
    /// Window start for quota-by-key (`first-period-start`), Unix seconds.
    pub first_period_start: u64,
}

#[derive(Debug, Clone)]
pub struct Cors {
    pub allow_credentials: bool,
    pub terminate_unmatched: bool,
    /// Empty with `any_origin` = `*`.
    pub origins: Vec<String>,
    pub any_origin: bool,
    pub methods: Vec<String>,
    pub any_method: bool,
    pub headers: Vec<String>,
    pub any_header: bool,
    pub expose: Vec<String>,
    pub max_age: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct CheckHeader {
    pub name: String,
    pub failed_code: u16,
    pub failed_message: String,
    pub ignore_case: bool,
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ReturnResponse {
    pub status: Option<(Text, Text)>,
    pub headers: Vec<(String, ExistsAction, Vec<Text>)>,
    pub body: Option<Text>,
}

/// Where `forward-request` sends the request, and how.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `timeout` when given; otherwise the gateway's backend response timeout applies.
    pub timeout_secs: Option<u64>,
    pub buffer_request_body: bool,
    pub retry: Option<Retry>,
    pub concurrency: Option<(Text, u32, u64)>,
}

/// `<retry>` around forward-request: the request is sent again while `condition` holds
/// for the last attempt's response, at most `count` more times.
#[derive(Debug, Clone)]
pub struct Retry {
    pub condition: Expr,
    pub count: u32,
    pub interval_secs: u64,
    pub max_interval_secs: u64,
    pub delta_secs: u64,
    pub first_fast_retry: bool,
}

/// One compiled policy.
#[derive(Debug, Clone)]
pub enum Policy {
    CheckHeader(CheckHeader),
    IpFilter {
        allow: bool,
        addresses: Vec<IpAddr>,
        ranges: Vec<(IpAddr, IpAddr)>,
    },
    SetHeader {
        name: String,
        action: ExistsAction,
        values: Vec<Text>,
    },
    SetQueryParameter {
        name: String,
        action: ExistsAction,
        values: Vec<Text>,
    },
    RewriteUri {
        template: Text,
        copy_unmatched: bool,
    },
    /// Index into `Runtime::backends` (backend-id or a literal base-url), or an
    /// expression giving a URL.
    SetBackendService {
        backend: Option<u32>,
        url: Option<Text>,
    },
    SetMethod(Text),
    SetStatus {
        code: Text,
        reason: Text,
    },
    SetVariable {
        name: String,
        value: Text,
    },
    SetBody(Text),
    FindAndReplace {
        from: Text,
        to: Text,
    },
    Choose {
        whens: Vec<(Expr, Vec<Step>)>,
        otherwise: Vec<Step>,
    },
    ReturnResponse(ReturnResponse),
    /// Answers from the operation's `responses` examples.
    MockResponse {
        status: Option<u16>,
        content_type: Option<String>,
    },
    Cors(Box<Cors>),
    RateLimit(RateLimit),
    RateLimitByKey(RateLimitByKey),
    Quota(Quota),
    ValidateJwt(Box<jwt::ValidateJwt>),
    AuthenticationBasic {
        header: String,
    },
    LimitConcurrency {
        counter: u64,
        key: Text,
        max: u32,
        steps: Vec<Step>,
    },
}

/// A policy placed in a plan: where it came from, for `context.LastError`.
#[derive(Debug, Clone)]
pub struct Step {
    pub policy: Arc<Policy>,
    pub scope: Scope,
    pub section: Section,
    pub id: Option<Arc<str>>,
}

/// The effective pipeline of one operation (for calls with one product, or none).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Inbound steps, then the backend section's steps before `forward-request`.
    pub inbound: Vec<Step>,
    /// `None`: the effective backend section has no forward-request (APIM answers 200
    /// with an empty body).
    pub forward: Option<Forward>,
    /// The backend section's steps after `forward-request`, then outbound.
    pub outbound: Vec<Step>,
    pub on_error: Vec<Step>,
    /// A request-body policy (set-body, find-and-replace) runs inbound, or the body must
    /// be kept for a retry: the gateway reads the whole body first.
    pub inbound_needs_body: bool,
    /// find-and-replace on the response: the gateway reads the whole response first.
    pub outbound_needs_body: bool,
    /// Outbound or on-error expressions read the request (headers, query, path…).
    pub later_reads_request: bool,
    /// True for the plan of an operation nobody configured: plain proxying.
    pub trivial: bool,
}

/// One scope's document: each section as written (`None` = the section is absent,
/// which inherits the parent as `<base />` would).
#[derive(Debug, Clone, Default)]
pub struct ScopeDoc {
    pub inbound: Option<Vec<Item>>,
    pub backend: Option<Vec<Item>>,
    pub outbound: Option<Vec<Item>>,
    pub on_error: Option<Vec<Item>>,
}

/// A section entry before `<base />` is resolved.
#[derive(Debug, Clone)]
pub enum Item {
    Base,
    Step(Step),
    /// `forward-request` (possibly wrapped in retry / limit-concurrency).
    Forward(Forward),
}

/// The document a scope without policies behaves as: APIM's default global policy
/// (forward the request) and `<base />` everywhere else.
pub fn default_global() -> ScopeDoc {
    ScopeDoc {
        inbound: Some(Vec::new()),
        backend: Some(vec![Item::Forward(Forward {
            timeout_secs: None,
            buffer_request_body: false,
            retry: None,
            concurrency: None,
        })]),
        outbound: Some(Vec::new()),
        on_error: Some(Vec::new()),
    }
}

/// Resolves `<base />`: the child's section with each `Base` replaced by the parent's
/// effective items; an absent child section is the parent's.
fn merge_section(parent: &[Item], child: Option<&Vec<Item>>) -> Vec<Item> {
    match child {
        None => parent.to_vec(),
        Some(items) => {
            let mut out = Vec::with_capacity(items.len() + parent.len());
            for item in items {
                match item {
                    Item::Base => out.extend(parent.iter().cloned()),
                    other => out.push(other.clone()),
                }
            }
            out
        }
    }
}

/// Effective documents: apply `child` under `parent` (both already effective).
pub fn merge(parent: &ScopeDoc, child: &ScopeDoc) -> ScopeDoc {
    let p = |s: &Option<Vec<Item>>| s.clone().unwrap_or_default();
    ScopeDoc {
        inbound: Some(merge_section(&p(&parent.inbound), child.inbound.as_ref())),
        backend: Some(merge_section(&p(&parent.backend), child.backend.as_ref())),
        outbound: Some(merge_section(&p(&parent.outbound), child.outbound.as_ref())),
        on_error: Some(merge_section(&p(&parent.on_error), child.on_error.as_ref())),
    }
}

impl Plan {
    /// Flattens an effective document into a plan. `Err` = more than one forward-request.
    pub fn from_doc(doc: &ScopeDoc, trivial: bool) -> Result<Plan, String> {
        let steps = |s: &Option<Vec<Item>>| -> Vec<Step> {
            s.iter()
                .flatten()
                .filter_map(|i| match i {
                    Item::Step(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        };
        let mut plan = Plan {
            inbound: steps(&doc.inbound),
            outbound: Vec::new(),
            on_error: steps(&doc.on_error),
            trivial,
            ..Plan::default()
        };
        let mut after_forward = false;
        let mut post = Vec::new();
        for item in doc.backend.iter().flatten() {
            match item {
                Item::Base => {}
                Item::Forward(f) => {
                    if plan.forward.is_some() {
                        return Err(
                            "the effective backend section has more than one forward-request"
                                .into(),
                        );
                    }
                    plan.forward = Some(f.clone());
                    after_forward = true;
                }
                Item::Step(s) if after_forward => post.push(s.clone()),
                Item::Step(s) => plan.inbound.push(s.clone()),
            }
        }
        post.extend(steps(&doc.outbound));
        plan.outbound = post;
        plan.inbound_needs_body = plan
            .inbound
            .iter()
            .any(|s| needs_body(&s.policy) || sets_body(&s.policy))
            || plan
                .forward
                .as_ref()
                .is_some_and(|f| f.buffer_request_body || f.retry.is_some());
        plan.outbound_needs_body = plan.outbound.iter().any(|s| needs_body(&s.policy))
            || plan.on_error.iter().any(|s| needs_body(&s.policy));
        plan.later_reads_request = plan
            .outbound
            .iter()
            .chain(plan.on_error.iter())
            .any(|s| reads_request(&s.policy))
            || plan
                .forward
                .as_ref()
                .and_then(|f| f.retry.as_ref())
                .is_some_and(|r| r.condition.reads_request);
        Ok(plan)
    }
}

fn needs_body(p: &Policy) -> bool {
    match p {
        Policy::FindAndReplace { .. } => true,
        Policy::Choose { whens, otherwise } => whens
            .iter()
            .flat_map(|(_, s)| s.iter())
            .chain(otherwise.iter())
            .any(|s| needs_body(&s.policy)),
        Policy::LimitConcurrency { steps, .. } => steps.iter().any(|s| needs_body(&s.policy)),
        _ => false,
    }
}

fn sets_body(p: &Policy) -> bool {
    match p {
        Policy::SetBody(_) => true,
        Policy::Choose { whens, otherwise } => whens
            .iter()
            .flat_map(|(_, s)| s.iter())
            .chain(otherwise.iter())
            .any(|s| sets_body(&s.policy)),
        Policy::LimitConcurrency { steps, .. } => steps.iter().any(|s| sets_body(&s.policy)),
        _ => false,
    }
}

/// Conservative: any expression that reads the request, or a policy that needs it.
fn reads_request(p: &Policy) -> bool {
    let texts = |ts: &[Text]| ts.iter().any(Text::reads_request);
    match p {
        Policy::Cors(_) => true,
        Policy::SetHeader { values, .. } | Policy::SetQueryParameter { values, .. } => {
            texts(values)
        }
        Policy::SetVariable { value, .. } => value.reads_request(),
        Policy::SetBody(t) | Policy::SetMethod(t) => t.reads_request(),
        Policy::SetStatus { code, reason } => code.reads_request() || reason.reads_request(),
        Policy::FindAndReplace { from, to } => from.reads_request() || to.reads_request(),
        Policy::Choose { whens, otherwise } => {
            whens
                .iter()
                .any(|(c, s)| c.reads_request || s.iter().any(|s| reads_request(&s.policy)))
                || otherwise.iter().any(|s| reads_request(&s.policy))
        }
        Policy::ReturnResponse(r) => {
            r.body.as_ref().is_some_and(Text::reads_request)
                || r.headers.iter().any(|(_, _, v)| texts(v))
                || r.status
                    .as_ref()
                    .is_some_and(|(c, s)| c.reads_request() || s.reads_request())
        }
        Policy::RateLimitByKey(_) | Policy::Quota(_) | Policy::ValidateJwt(_) => true,
        Policy::LimitConcurrency { steps, .. } => steps.iter().any(|s| reads_request(&s.policy)),
        _ => false,
    }
}

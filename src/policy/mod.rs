//! The policy pipeline of Azure API Management, compiled. A policy document (XML, four
//! sections) per scope — global, product, API, operation — is parsed once per config
//! apply (`parse`), its `<base />` elements resolved against the parent scope
//! (`Plan::merge`), and the result is a `Plan` per operation (and per product that
//! grants the API): flat lists of steps, each a compiled policy (`call::Behaviour`)
//! holding compiled `Expr`s. Each policy is one module of `kinds` (its parse, compiled
//! form, facts and run) listed in the registry `kinds::KINDS`; `parse` walks the
//! document and looks elements up there. At request time `crate::pipeline` runs a plan
//! through `call::Call`; nothing parses XML or expression text then. This module never
//! needs the config's data model (`crate::config` holds compiled plans, not the other
//! way round): what a running policy needs from it, it asks a `call::Host`.
//!
//! ```text
//!   inbound (+ backend steps before forward-request) ─▶ forward-request ─▶ outbound
//!        │ error / policy failure             │ backend failure            │ error
//!        └──────────────────────────▶ on-error ◀───────────────────────────┘
//! ```
//! Must not touch: sockets, the loop's state, the clock (time comes in as an argument).

pub mod cache;
pub mod call;
pub mod expr;
pub mod external;
pub mod jwt;
pub mod keyed;
pub mod keyring;
pub mod kinds;
pub mod limits;
pub mod outgoing;
pub mod parse;
pub mod rawxml;
pub mod refusals;
pub mod request;
pub mod schema;
pub mod tokens;
pub mod xmljson;

use std::sync::Arc;

use call::{Behaviour, Facts};
use expr::{Env, EvalError, Expr};
pub use kinds::forward_request::{
    Concurrency, Forward, ForwardTerms, Retry, RetryTerms, MAX_REDIRECTS,
};

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
    /// It reads the request's or the response's body: the gateway reads it whole first.
    pub fn reads_body(&self) -> bool {
        matches!(self, Text::Expr(e) if e.reads_request_body || e.reads_response_body)
    }
}

/// An attribute APIM lets an expression give (`apply="@(...)"`): a literal is checked
/// and fixed at load; an expression's text is checked when the call runs, and a value
/// outside the attribute's set fails the call.
#[derive(Debug, Clone)]
pub enum Setting<T> {
    Fixed(T),
    /// Boxed: most settings are literals, and a policy holds several.
    Computed(Box<Computed<T>>),
}

/// A setting's expression and the check its value must pass.
#[derive(Debug, Clone)]
pub struct Computed<T> {
    pub text: Text,
    pub parse: fn(&str) -> Option<T>,
    /// What the value must be, for the error ("always or content-type-xml").
    pub expected: &'static str,
}

impl<T> Setting<T> {
    /// The expression it runs, if it is computed (for `Facts::reading`).
    pub fn text(&self) -> Option<&Text> {
        match self {
            Setting::Fixed(_) => None,
            Setting::Computed(c) => Some(&c.text),
        }
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

/// An API or operation as a limit names it: by id or by name.
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

/// A policy placed in a plan: where it came from, for `context.LastError`.
#[derive(Debug, Clone)]
pub struct Step {
    pub policy: Arc<dyn Behaviour>,
    pub scope: Scope,
    pub section: Section,
    pub id: Option<Arc<str>>,
}

impl Step {
    /// The policy as its concrete type, if it is a `T`.
    pub fn policy_as<T: 'static>(&self) -> Option<&T> {
        let policy: &dyn Behaviour = &*self.policy;
        policy.as_any().downcast_ref()
    }
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
    Forward(Box<Forward>),
}

/// The document a scope without policies behaves as: APIM's default global policy
/// (forward the request) and `<base />` everywhere else.
pub fn default_global() -> ScopeDoc {
    ScopeDoc {
        inbound: Some(Vec::new()),
        backend: Some(vec![Item::Forward(Box::new(Forward {
            follow_redirects: false,
            timeout_secs: None,
            buffer_request_body: false,
            fail_on_error_status: false,
            retry: None,
            concurrency: None,
        }))]),
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
                    // the policies inside <retry> before forward-request run before the
                    // first attempt as the backend section's, and again before each retry
                    if let Some(r) = &f.retry {
                        plan.inbound.extend(r.steps.iter().cloned());
                    }
                    plan.forward = Some(Forward::clone(f));
                    after_forward = true;
                }
                Item::Step(s) if after_forward => post.push(s.clone()),
                Item::Step(s) => plan.inbound.push(s.clone()),
            }
        }
        let retried = plan.forward.as_ref().and_then(|f| f.retry.as_ref());
        if retried.is_some_and(|r| Facts::of(&r.steps).suspends) {
            return Err(
                "send-request and wait are not supported inside <retry>; place them before it"
                    .into(),
            );
        }
        post.extend(steps(&doc.outbound));
        plan.outbound = post;
        let inbound = Facts::of(&plan.inbound)
            | plan
                .forward
                .as_ref()
                .map(Forward::facts)
                .unwrap_or_default();
        let later = Facts::of(&plan.outbound) | Facts::of(&plan.on_error);
        plan.inbound_needs_body = inbound.needs_body
            || inbound.sets_body
            || Facts::of(&plan.on_error).copies_request
            || plan
                .forward
                .as_ref()
                .is_some_and(|f| f.buffer_request_body || f.retry.is_some() || f.follow_redirects);
        plan.outbound_needs_body = later.needs_body;
        let retry = plan.forward.as_ref().and_then(|f| f.retry.as_ref());
        // a retry that runs policies again, or a redirect followed, rebuilds the request
        // from a copy
        let follows = plan.forward.as_ref().is_some_and(|f| f.follow_redirects);
        plan.later_reads_request = later.reads_request
            || follows
            || retry.is_some_and(|r| r.condition.reads_request || !r.steps.is_empty());
        Ok(plan)
    }
}

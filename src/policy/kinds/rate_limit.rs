//! `rate-limit`: calls per subscription per period, at the policy's level and at the
//! `<api>` / `<operation>` levels inside it. Also the home of what every counting policy
//! shares: `Limit` levels, the report headers and variables, and the 429 answer.
//! Must not touch: counters beyond `Call::counters`.

use std::sync::Arc;

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{Behaviour, Call, Facts, Flow, State};
use crate::policy::expr::Val;
use crate::policy::external::{ask_shared, Command, Counted, Shared, Window};
use crate::policy::parse::{
    attr, counter_id, elements, no_attributes, number, only_children, Cx, R,
};
use crate::policy::{Named, Step};

pub const KIND: Kind = Kind {
    element: "rate-limit",
    sections: INBOUND,
    children: true,
    compile,
};

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

/// Where a counting policy reports what is left and when to retry.
#[derive(Debug, Clone, Default)]
pub struct LimitHeaders {
    pub retry_after_header: Option<String>,
    pub retry_after_variable: Option<String>,
    pub remaining_header: Option<String>,
    pub remaining_variable: Option<String>,
    pub total_header: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub limit: Limit,
    pub headers: LimitHeaders,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[&["calls", "renewal-period"][..], LIMIT_HEADERS].concat(),
    )?;
    number(cx, n, "calls", None)?;
    policy(RateLimit {
        limit: limit(cx, n, false)?,
        headers: limit_headers(n),
    })
}

impl Behaviour for RateLimit {
    fn name(&self) -> &'static str {
        "rate-limit"
    }
    fn facts(&self) -> Facts {
        Facts::default()
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        if let Some(flow) = self.shared(step, call) {
            return flow;
        }
        let host = call.host;
        let key = host.subscription_id().unwrap_or("");
        // the top level always counts; nested levels only where they set calls
        let levels = || {
            self.limit
                .levels(host.api(), host.operation())
                .filter(|l| l.calls > 0 || l.name.is_empty())
        };
        // check every level first, so a refused call counts nowhere
        for l in levels() {
            let d = call
                .counters
                .rate_peek(l.counter, key, l.calls, l.period_secs, call.now_ms);
            if !d.allowed {
                return refused(step, call.st, &self.headers, d.retry_after);
            }
        }
        let mut remaining = u64::MAX;
        for l in levels() {
            let d = call
                .counters
                .rate(l.counter, key, l.calls, l.period_secs, 1, call.now_ms);
            remaining = remaining.min(d.remaining);
        }
        allowed(call.st, &self.headers, remaining, self.limit.calls);
        Flow::Continue
    }
}

impl RateLimit {
    /// The shared count of every level, when the external cache counts (see
    /// rate-limit-by-key): `Some` is the step's flow, `None` counts locally.
    fn shared(&self, step: &Step, call: &mut Call) -> Option<Flow> {
        let asked = ask_shared(call, |call| {
            let host = call.host;
            let key = host.subscription_id().unwrap_or("");
            let windows = self
                .limit
                .levels(host.api(), host.operation())
                .filter(|l| l.calls > 0 || l.name.is_empty())
                .map(|l| Window {
                    key: format!("edgegate:rl:{:x}:{key}", l.counter),
                    window_ms: l.period_secs.saturating_mul(1000),
                    limit: l.calls,
                })
                .collect();
            Command::Count {
                windows,
                now_ms: call.now_ms,
                n: 1,
                id: call.st.request_id.clone(),
            }
        });
        match asked {
            Shared::Wait => Some(Flow::Suspend),
            Shared::Answered(Counted::Shared {
                allowed: true,
                remaining,
                ..
            }) => {
                allowed(call.st, &self.headers, remaining, self.limit.calls);
                Some(Flow::Continue)
            }
            Shared::Answered(Counted::Shared { again_ms, .. }) => {
                Some(refused_until(step, call, &self.headers, again_ms))
            }
            Shared::Answered(_) | Shared::Local => None,
        }
    }
}

/// The 429 of a call a shared window refused until `again_ms` (ms since 1970).
pub(crate) fn refused_until(step: &Step, call: &mut Call, h: &LimitHeaders, again_ms: u64) -> Flow {
    let back_s = again_ms.saturating_sub(call.now_ms).div_ceil(1000).max(1);
    refused(step, call.st, h, back_s)
}

/// The 429 of a refused call, with Retry-After (or the configured header) and variable.
pub(crate) fn refused(step: &Step, st: &mut State, h: &LimitHeaders, retry: u64) -> Flow {
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
    st.fail(step, step.policy.name(), "RateLimitExceeded", &msg)
}

/// The remaining and total calls of an allowed call, where the policy asks for them.
pub(crate) fn allowed(st: &mut State, h: &LimitHeaders, remaining: u64, total: u64) {
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

pub(crate) fn limit_headers(n: Node) -> LimitHeaders {
    let s = |k: &str| n.attribute(k).map(str::to_string);
    LimitHeaders {
        retry_after_header: s("retry-after-header-name"),
        retry_after_variable: s("retry-after-variable-name"),
        remaining_header: s("remaining-calls-header-name"),
        remaining_variable: s("remaining-calls-variable-name"),
        total_header: s("total-calls-header-name"),
    }
}

/// The header and variable names a rate limit may report through (`limit_headers`).
pub(crate) const LIMIT_HEADERS: &[&str] = &[
    "retry-after-header-name",
    "retry-after-variable-name",
    "remaining-calls-header-name",
    "remaining-calls-variable-name",
    "total-calls-header-name",
];

/// A rate-limit / quota element and its `<api>` / `<operation>` levels.
pub(crate) fn limit(cx: &mut Cx, n: Node, quota: bool) -> R<Limit> {
    let kinds: &[&str] = if quota {
        &["name", "id", "calls", "bandwidth", "renewal-period"]
    } else {
        &["name", "id", "calls", "renewal-period"]
    };
    let label = label_of(cx, n);
    let mut top = level(cx, n, String::new(), label)?;
    only_children(cx, n, &["api"])?;
    for api in elements(n) {
        no_attributes(cx, api, kinds)?;
        only_children(cx, api, &["operation"])?;
        let mut a = named_level(cx, api, &top.label)?;
        for op in elements(api) {
            no_attributes(cx, op, kinds)?;
            let o = named_level(cx, op, &a.label)?;
            a.nested.push(o);
        }
        top.nested.push(a);
    }
    Ok(top)
}

/// A limit's counter name: its scope and `id`, or its place in the config.
pub(crate) fn label_of(cx: &mut Cx, n: Node) -> Arc<str> {
    match attr(n, "id") {
        Some(id) => Arc::from(format!("{}:{id}", cx.ctx.owner)),
        None => Arc::from(cx.counter_label()),
    }
}

fn named_level(cx: &mut Cx, n: Node, parent: &str) -> R<Limit> {
    let tag = n.tag_name().name();
    let name = attr(n, "id")
        .or(attr(n, "name"))
        .ok_or_else(|| cx.err(n, format!("<{tag}>: attribute 'name' or 'id' is required")))?;
    level(
        cx,
        n,
        name.to_string(),
        Arc::from(format!("{parent}/{tag}:{name}")),
    )
}

fn level(cx: &mut Cx, n: Node, name: String, label: Arc<str>) -> R<Limit> {
    let period_secs = number(cx, n, "renewal-period", None)?;
    if period_secs == 0 {
        return Err(cx.err(
            n,
            format!(
                "<{}>: renewal-period must be at least 1",
                n.tag_name().name()
            ),
        ));
    }
    Ok(Limit {
        name,
        calls: number(cx, n, "calls", Some(0))?,
        bandwidth_kb: number(cx, n, "bandwidth", Some(0))?,
        period_secs,
        counter: counter_id(&label),
        label,
        nested: Vec::new(),
    })
}

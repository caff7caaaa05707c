//! `forward-request` and `retry` around it: how the backend section sends the request.
//! They are not steps: the plan holds the one forward-request of the effective backend
//! section apart (`Plan::forward`), with its timeout, body buffering, retry and
//! concurrency limit, and the connection runs the exchange.
//! Must not touch: sockets; the exchange is the connection's.

use roxmltree::Node;

use super::{Compiled, Kind, BACKEND};
use crate::policy::call::Facts;
use crate::policy::expr::Expr;
use crate::policy::parse::{
    boolean, elements, expr_value, flag, item, no_attributes, only_children, required, setting,
    whole, Cx, BOOLEAN, R, WHOLE,
};
use crate::policy::{Item, Section, Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "forward-request",
    sections: BACKEND,
    children: false,
    compile: |cx, n| forward(cx, n).map(|f| Compiled::Forward(Box::new(f))),
};

pub const RETRY: Kind = Kind {
    element: "retry",
    sections: BACKEND,
    children: true,
    compile: retry,
};

/// Where `forward-request` sends the request, and how.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `timeout` when given; otherwise the gateway's backend response timeout applies.
    pub timeout_secs: Option<Setting<u64>>,
    pub buffer_request_body: bool,
    /// `fail-on-error-status-code`: a 4xx or 5xx answer runs on-error instead of
    /// outbound.
    pub fail_on_error_status: bool,
    /// `follow-redirects`: a 301, 302, 303, 307 or 308 from the backend is followed by
    /// the gateway (at most `MAX_REDIRECTS` times) instead of going to the client.
    pub follow_redirects: bool,
    pub retry: Option<Retry>,
    pub concurrency: Option<Concurrency>,
}

impl Forward {
    /// What its settings read (they are computed when the backend section reaches it).
    pub fn facts(&self) -> Facts {
        let retry = self.retry.iter().flat_map(|r| {
            [
                r.count.text(),
                r.interval_secs.text(),
                r.max_interval_secs.text(),
                r.delta_secs.text(),
                r.first_fast_retry.text(),
            ]
        });
        let concurrency = self
            .concurrency
            .iter()
            .flat_map(|c| [Some(&c.key), c.max.text()]);
        Facts::reading(
            retry
                .chain(concurrency)
                .chain([self.timeout_secs.as_ref().and_then(Setting::text)])
                .flatten(),
        )
    }
}

/// The most redirects forward-request follows for one call.
pub const MAX_REDIRECTS: u8 = 10;

/// `<limit-concurrency>` around forward-request: a slot per key for the whole exchange.
#[derive(Debug, Clone)]
pub struct Concurrency {
    pub key: Text,
    pub max: Setting<u64>,
    /// The counter's identity in `Counters`.
    pub counter: u64,
}

/// `<retry>` around forward-request: the request is sent again while `condition` holds
/// for the last attempt's response, at most `count` more times.
#[derive(Debug, Clone)]
pub struct Retry {
    pub condition: Expr,
    /// The policies inside `<retry>` before its forward-request (choose a backend, set a
    /// header…): they run before every attempt, seeing the last attempt's response.
    pub steps: Vec<Step>,
    pub count: Setting<u64>,
    pub interval_secs: Setting<u64>,
    pub max_interval_secs: Setting<u64>,
    pub delta_secs: Setting<u64>,
    pub first_fast_retry: Setting<bool>,
}

/// The numbers of one call's forward-request and retry, as its expressions gave them
/// when the backend section reached forward-request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardTerms {
    pub timeout_secs: Option<u64>,
    pub retry: Option<RetryTerms>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryTerms {
    pub count: u32,
    pub interval_secs: u64,
    pub max_interval_secs: u64,
    pub delta_secs: u64,
    pub first_fast_retry: bool,
}

/// `retry count`: APIM's 1..50.
fn retry_count(v: &str) -> Option<u64> {
    whole(v).filter(|n| (1..=50).contains(n))
}

/// A timeout or max-count: at least 1.
pub(crate) fn at_least_one(v: &str) -> Option<u64> {
    whole(v).filter(|n| (1..=u64::from(u32::MAX)).contains(n))
}

pub(crate) const AT_LEAST_ONE: &str = "a positive integer";

fn retry(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "condition",
            "count",
            "interval",
            "max-interval",
            "delta",
            "first-fast-retry",
        ],
    )?;
    let condition = expr_value(cx, n, "condition", required(cx, n, "condition")?)?;
    let mut r = Retry {
        condition,
        steps: Vec::new(),
        count: setting(cx, n, "count", None, retry_count, "an integer 1..50")?,
        interval_secs: setting(cx, n, "interval", None, whole, WHOLE)?,
        max_interval_secs: setting(cx, n, "max-interval", Some(0), whole, WHOLE)?,
        delta_secs: setting(cx, n, "delta", Some(0), whole, WHOLE)?,
        first_fast_retry: setting(cx, n, "first-fast-retry", Some(false), flag, BOOLEAN)?,
    };
    let mut f = match wrapped_forward(cx, n)? {
        Some(f) => f,
        None => {
            let (steps, f) = steps_then_forward(cx, n)?;
            r.steps = steps;
            f
        }
    };
    if f.retry.is_some() {
        return Err(cx.err(n, "<retry>: nested retry is not supported"));
    }
    f.retry = Some(r);
    Ok(Compiled::Forward(Box::new(f)))
}

fn forward(cx: &mut Cx, n: Node) -> R<Forward> {
    no_attributes(
        cx,
        n,
        &[
            "timeout",
            "buffer-request-body",
            "follow-redirects",
            "buffer-response",
            "fail-on-error-status-code",
        ],
    )?;
    only_children(cx, n, &[])?;
    let timeout_secs = match n.attribute("timeout") {
        None => None,
        Some(_) => Some(setting(
            cx,
            n,
            "timeout",
            None,
            at_least_one,
            "a positive integer (seconds)",
        )?),
    };
    Ok(Forward {
        follow_redirects: boolean(cx, n, "follow-redirects", false)?,
        timeout_secs,
        buffer_request_body: boolean(cx, n, "buffer-request-body", false)?,
        fail_on_error_status: boolean(cx, n, "fail-on-error-status-code", false)?,
        retry: None,
        concurrency: None,
    })
}

/// `<retry>`'s content in `<backend>` when it is more than a forward-request: policies,
/// then the forward-request last.
fn steps_then_forward(cx: &mut Cx, n: Node) -> R<(Vec<Step>, Forward)> {
    const SHAPE: &str =
        "<retry>: supported in <backend> around policies that end with one <forward-request />";
    let kids: Vec<Node> = elements(n).collect();
    let Some((last, before)) = kids.split_last() else {
        return Err(cx.err(n, SHAPE));
    };
    if cx.section != Section::Backend || last.tag_name().name() != "forward-request" {
        return Err(cx.err(n, SHAPE));
    }
    let mut steps = Vec::with_capacity(before.len());
    for k in before {
        match item(cx, *k)? {
            Item::Step(s) => steps.push(s),
            _ => return Err(cx.err(*k, SHAPE)),
        }
    }
    Ok((steps, forward(cx, *last)?))
}

/// A backend-section wrapper (retry, limit-concurrency) whose only content is
/// forward-request (possibly wrapped again).
pub(crate) fn wrapped_forward(cx: &mut Cx, n: Node) -> R<Option<Forward>> {
    let kids: Vec<Node> = elements(n).collect();
    if cx.section != Section::Backend || kids.len() != 1 {
        return Ok(None);
    }
    let k = kids[0];
    match k.tag_name().name() {
        "forward-request" => forward(cx, k).map(Some),
        "retry" | "limit-concurrency" => match item(cx, k)? {
            Item::Forward(f) => Ok(Some(*f)),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

//! `forward-request` and `retry` around it: how the backend section sends the request.
//! They are not steps: the plan holds the one forward-request of the effective backend
//! section apart (`Plan::forward`), with its timeout, body buffering, retry and
//! concurrency limit, and the connection runs the exchange.
//! Must not touch: sockets; the exchange is the connection's.

use roxmltree::Node;

use super::{Compiled, Kind, BACKEND};
use crate::policy::expr::Expr;
use crate::policy::parse::{
    attr, boolean, elements, expr_value, item, no_attributes, number, only_children, required, Cx,
    R,
};
use crate::policy::{Item, Section, Text};

pub const KIND: Kind = Kind {
    element: "forward-request",
    sections: BACKEND,
    children: false,
    compile: |cx, n| forward(cx, n).map(Compiled::Forward),
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
    pub timeout_secs: Option<u64>,
    pub buffer_request_body: bool,
    /// `fail-on-error-status-code`: a 4xx or 5xx answer runs on-error instead of
    /// outbound.
    pub fail_on_error_status: bool,
    pub retry: Option<Retry>,
    /// limit-concurrency around it: key, max-count, counter identity.
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
    let count = number(cx, n, "count", None)?;
    if count == 0 || count > 50 {
        return Err(cx.err(n, "<retry>: count must be 1..50"));
    }
    let r = Retry {
        condition,
        count: count as u32,
        interval_secs: number(cx, n, "interval", None)?,
        max_interval_secs: number(cx, n, "max-interval", Some(0))?,
        delta_secs: number(cx, n, "delta", Some(0))?,
        first_fast_retry: boolean(cx, n, "first-fast-retry", false)?,
    };
    let Some(mut f) = wrapped_forward(cx, n)? else {
        return Err(cx.err(
            n,
            "<retry>: supported around a single <forward-request /> in <backend>",
        ));
    };
    if f.retry.is_some() {
        return Err(cx.err(n, "<retry>: nested retry is not supported"));
    }
    f.retry = Some(r);
    Ok(Compiled::Forward(f))
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
    if boolean(cx, n, "follow-redirects", false)? {
        return Err(cx.err(
            n,
            "<forward-request>: follow-redirects=\"true\" is not supported",
        ));
    }
    let timeout_secs = match attr(n, "timeout") {
        None => None,
        Some(_) => Some(number(cx, n, "timeout", None)?),
    };
    if timeout_secs == Some(0) {
        return Err(cx.err(n, "<forward-request>: timeout must be at least 1 second"));
    }
    Ok(Forward {
        timeout_secs,
        buffer_request_body: boolean(cx, n, "buffer-request-body", false)?,
        fail_on_error_status: boolean(cx, n, "fail-on-error-status-code", false)?,
        retry: None,
        concurrency: None,
    })
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
            Item::Forward(f) => Ok(Some(f)),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

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
    sections: super::ALL,
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
        let retry = self.retry.iter().flat_map(Retry::setting_texts);
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

impl RetryTerms {
    /// The wait before retry number `n` (1 for the first), as APIM computes it: fixed
    /// `interval`; with `delta`, linear (`interval + (n - 1) * delta`); with `delta`
    /// and `max-interval`, exponential (`interval + 2^(n - 1) * delta * jitter`,
    /// `jitter` in 0.8..1.2); never above `max-interval` when it is set.
    /// `first-fast-retry` makes the first one immediate.
    pub fn delay(&self, n: u32, jitter: f64) -> std::time::Duration {
        let retry = self;
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
}

impl Retry {
    /// The expressions its settings are computed from, if any.
    pub fn setting_texts(&self) -> [Option<&Text>; 5] {
        [
            self.count.text(),
            self.interval_secs.text(),
            self.max_interval_secs.text(),
            self.delta_secs.text(),
            self.first_fast_retry.text(),
        ]
    }

    /// This call's numbers, from the settings' expressions.
    pub fn terms(
        &self,
        call: &mut crate::policy::call::Call,
    ) -> Result<RetryTerms, crate::policy::expr::EvalError> {
        Ok(RetryTerms {
            count: u32::try_from(call.setting(&self.count)?).unwrap_or(50),
            interval_secs: call.setting(&self.interval_secs)?,
            max_interval_secs: call.setting(&self.max_interval_secs)?,
            delta_secs: call.setting(&self.delta_secs)?,
            first_fast_retry: call.setting(&self.first_fast_retry)?,
        })
    }
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
    let around_forward = n.descendants().any(|d| d.has_tag_name("forward-request"));
    if cx.section != Section::Backend || !around_forward {
        // around policies only: a step that runs them again while the condition holds
        return super::retry::compile(cx, n, r);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn retry(interval: u64, max: u64, delta: u64, fast: bool) -> RetryTerms {
        RetryTerms {
            count: 5,
            interval_secs: interval,
            max_interval_secs: max,
            delta_secs: delta,
            first_fast_retry: fast,
        }
    }

    #[test]
    fn retry_waits_follow_apim() {
        let secs = |r: &RetryTerms, n, j| r.delay(n, j).as_secs_f64();
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
        assert_eq!(fast.delay(1, 1.0), Duration::ZERO);
        assert_eq!(secs(&fast, 2, 1.0), 3.0);
    }
}

//! `rate-limit-by-key`: calls per key (an expression) per period; with an
//! `increment-condition` the call is counted once the response is known (`settle`).
//! Must not touch: counters beyond `Call::counters`.

use roxmltree::Node;

use super::rate_limit::{allowed, limit_headers, refused, LimitHeaders, LIMIT_HEADERS};
use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::expr::Expr;
use crate::policy::parse::{attr, expr_value, no_attributes, number, required, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "rate-limit-by-key",
    sections: INBOUND,
    children: false,
    compile,
};

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

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    let own = [
        "calls",
        "renewal-period",
        "counter-key",
        "increment-condition",
        "increment-count",
    ];
    no_attributes(cx, n, &[&own[..], LIMIT_HEADERS].concat())?;
    let period_secs = number(cx, n, "renewal-period", None)?;
    if period_secs == 0 {
        return Err(cx.err(n, "<rate-limit-by-key>: renewal-period must be at least 1"));
    }
    policy(RateLimitByKey {
        counter: cx.counter(),
        calls: number(cx, n, "calls", None)?,
        period_secs,
        key: text_value(cx, n, required(cx, n, "counter-key")?)?,
        increment_condition: attr(n, "increment-condition")
            .map(|c| expr_value(cx, n, "increment-condition", c))
            .transpose()?,
        increment_count: number(cx, n, "increment-count", Some(1))?,
        headers: limit_headers(n),
    })
}

impl Behaviour for RateLimitByKey {
    fn name(&self) -> &'static str {
        "rate-limit-by-key"
    }
    fn facts(&self) -> Facts {
        Facts {
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let key = or_fail!(call, step, call.text(&self.key));
        if self.increment_condition.is_some() {
            // counted when the response is known; refused now if already over
            let d = call.counters.rate_peek(
                self.counter,
                &key,
                self.calls,
                self.period_secs,
                call.now_ms,
            );
            if !d.allowed {
                return refused(step, call.st, &self.headers, d.retry_after);
            }
            let left = d.remaining.saturating_sub(self.increment_count);
            allowed(call.st, &self.headers, left, self.calls);
            call.st.deferred.push((step.clone(), key));
            return Flow::Continue;
        }
        let d = call.counters.rate(
            self.counter,
            &key,
            self.calls,
            self.period_secs,
            self.increment_count,
            call.now_ms,
        );
        if !d.allowed {
            return refused(step, call.st, &self.headers, d.retry_after);
        }
        allowed(call.st, &self.headers, d.remaining, self.calls);
        Flow::Continue
    }
    fn settle(&self, key: String, call: &mut Call) {
        let counts = self
            .increment_condition
            .as_ref()
            .is_none_or(|c| call.truth(c).unwrap_or(false));
        if counts {
            call.counters.rate_add(
                self.counter,
                &key,
                self.calls,
                self.period_secs,
                self.increment_count,
                call.now_ms,
            );
        }
    }
}

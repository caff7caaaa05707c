//! `rate-limit-by-key`: calls per key (an expression) per period; with an
//! `increment-condition` the call is counted once the response is known (`settle`).
//! With `limits.counters.external` and the external cache reachable, the window is
//! shared by every gateway using that cache: the call waits (off the loop) for Redis to
//! count it; when Redis cannot answer, the gateway counts on its own.
//! Must not touch: counters beyond `Call::counters`.

use roxmltree::Node;

use super::rate_limit::{
    allowed, limit_headers, refused, refused_until, LimitHeaders, LIMIT_HEADERS,
};
use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::expr::{EvalError, Expr};
use crate::policy::external::{ask_shared, Command, Counted, Shared, Window};
use crate::policy::parse::{
    attr, expr_value, no_attributes, positive, required, setting, text_value, whole, Cx, POSITIVE,
    R, WHOLE,
};
use crate::policy::{Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "rate-limit-by-key",
    sections: INBOUND,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct RateLimitByKey {
    pub counter: u64,
    pub calls: Setting<u64>,
    pub period_secs: Setting<u64>,
    pub key: Text,
    pub increment_condition: Option<Expr>,
    pub increment_count: Setting<u64>,
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
    policy(RateLimitByKey {
        counter: cx.counter(),
        calls: setting(cx, n, "calls", None, whole, WHOLE)?,
        period_secs: setting(cx, n, "renewal-period", None, positive, POSITIVE)?,
        key: text_value(cx, n, required(cx, n, "counter-key")?)?,
        increment_condition: attr(n, "increment-condition")
            .map(|c| expr_value(cx, n, "increment-condition", c))
            .transpose()?,
        increment_count: setting(cx, n, "increment-count", Some(1), whole, WHOLE)?,
        headers: limit_headers(n),
    })
}

impl Behaviour for RateLimitByKey {
    fn name(&self) -> &'static str {
        "rate-limit-by-key"
    }
    fn facts(&self) -> Facts {
        let settings = [
            self.calls.text(),
            self.period_secs.text(),
            self.increment_count.text(),
        ];
        let condition = self.increment_condition.as_ref().map(Facts::expr);
        Facts {
            reads_request: true,
            ..Facts::reading(settings.into_iter().flatten().chain([&self.key]))
                | condition.unwrap_or_default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let key = or_fail!(call, step, call.text(&self.key));
        let limit = or_fail!(call, step, self.limit(call, key));
        if let Some(flow) = self.shared(step, call, &limit) {
            return flow;
        }
        if self.increment_condition.is_some() {
            // counted when the response is known; refused now if already over
            let d = call.counters.rate_peek(
                self.counter,
                &limit.window,
                limit.calls,
                limit.period_secs,
                call.now_ms,
            );
            if !d.allowed {
                return refused(step, call.st, &self.headers, d.retry_after);
            }
            let left = d.remaining.saturating_sub(limit.count);
            allowed(call.st, &self.headers, left, limit.calls);
            call.st.deferred.push((step.clone(), limit.window));
            return Flow::Continue;
        }
        let d = call.counters.rate(
            self.counter,
            &limit.window,
            limit.calls,
            limit.period_secs,
            limit.count,
            call.now_ms,
        );
        if !d.allowed {
            return refused(step, call.st, &self.headers, d.retry_after);
        }
        allowed(call.st, &self.headers, d.remaining, limit.calls);
        Flow::Continue
    }
    fn settle(&self, window: String, call: &mut Call) {
        let counts = self
            .increment_condition
            .as_ref()
            .is_none_or(|c| call.truth(c).unwrap_or(false));
        let (Ok(calls), Ok(period_secs), Ok(count)) = (
            call.setting(&self.calls),
            call.setting(&self.period_secs),
            call.setting(&self.increment_count),
        ) else {
            return;
        };
        if counts && call.counters.external.shares_counts() {
            call.counters.external.send(Command::Count {
                windows: vec![Window {
                    key: self.shared_key(&window),
                    window_ms: period_secs.saturating_mul(1000),
                    limit: calls,
                }],
                now_ms: call.now_ms,
                n: count,
                id: format!("{}:{:x}", call.st.request_id, self.counter),
            });
        } else if counts {
            call.counters.rate_add(
                self.counter,
                &window,
                calls,
                period_secs,
                count,
                call.now_ms,
            );
        }
    }
}

/// One call's limit: the window it counts in and the numbers, computed when they are
/// expressions.
struct Limit {
    /// The key, and when the numbers are computed the numbers too: a call under
    /// another limit counts in its own window.
    window: String,
    calls: u64,
    period_secs: u64,
    count: u64,
}

impl RateLimitByKey {
    /// The key of `window` in the external cache.
    fn shared_key(&self, window: &str) -> String {
        format!("edgegate:rl:{:x}:{window}", self.counter)
    }

    /// The shared count, when the external cache counts: `Some` is the step's flow
    /// (waiting for Redis, refused or allowed), `None` counts locally.
    fn shared(&self, step: &Step, call: &mut Call, limit: &Limit) -> Option<Flow> {
        let deferred = self.increment_condition.is_some();
        let asked = ask_shared(call, |call| Command::Count {
            windows: vec![Window {
                key: self.shared_key(&limit.window),
                window_ms: limit.period_secs.saturating_mul(1000),
                limit: limit.calls,
            }],
            now_ms: call.now_ms,
            // counted once the response is known, with increment-condition
            n: if deferred { 0 } else { limit.count },
            id: format!("{}:{:x}", call.st.request_id, self.counter),
        });
        match asked {
            Shared::Wait => Some(Flow::Suspend),
            Shared::Answered(Counted::Shared {
                allowed: true,
                remaining,
                ..
            }) => {
                let mut left = remaining;
                if deferred {
                    left = left.saturating_sub(limit.count);
                    call.st.deferred.push((step.clone(), limit.window.clone()));
                }
                allowed(call.st, &self.headers, left, limit.calls);
                Some(Flow::Continue)
            }
            Shared::Answered(Counted::Shared { again_ms, .. }) => {
                Some(refused_until(step, call, &self.headers, again_ms))
            }
            Shared::Answered(_) | Shared::Local => None,
        }
    }

    fn limit(&self, call: &mut Call, key: String) -> Result<Limit, EvalError> {
        let calls = call.setting(&self.calls)?;
        let period_secs = call.setting(&self.period_secs)?;
        let count = call.setting(&self.increment_count)?;
        let computed = self.calls.text().is_some() || self.period_secs.text().is_some();
        Ok(Limit {
            window: match computed {
                true => format!("{key}\u{1f}{calls}\u{1f}{period_secs}"),
                false => key,
            },
            calls,
            period_secs,
            count,
        })
    }
}

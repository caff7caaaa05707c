//! `quota` (per subscription) and `quota-by-key` (per key): calls and/or kilobytes per
//! renewal period, with `<api>` / `<operation>` levels for `quota`. The call is counted
//! when it ends, when its size is known (`State::quotas`); with an
//! `increment-condition`, only if the condition holds for the response.
//! Must not touch: counters beyond `Call::counters`.

use std::sync::Arc;

use roxmltree::Node;

use super::rate_limit::{limit, Limit};
use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, QuotaUse};
use crate::policy::expr::Expr;
use crate::policy::parse::{
    attr, elements, expr_value, no_attributes, number, only_children, required, text_value, Cx, R,
};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "quota",
    sections: INBOUND,
    children: true,
    compile: |cx, n| compile(cx, n, false),
};

pub const BY_KEY: Kind = Kind {
    element: "quota-by-key",
    sections: INBOUND,
    children: false,
    compile: |cx, n| compile(cx, n, true),
};

#[derive(Debug, Clone)]
pub struct Quota {
    pub limit: Limit,
    /// quota-by-key: the key; `quota`: per subscription.
    pub key: Option<Text>,
    pub increment_condition: Option<Expr>,
    /// Window start for quota-by-key (`first-period-start`), Unix seconds.
    pub first_period_start: u64,
}

fn compile(cx: &mut Cx, n: Node, by_key: bool) -> R<Compiled> {
    let name = n.tag_name().name();
    if by_key {
        no_attributes(
            cx,
            n,
            &[
                "calls",
                "bandwidth",
                "renewal-period",
                "counter-key",
                "increment-condition",
                "first-period-start",
            ],
        )?;
        only_children(cx, n, &[])?;
    } else {
        no_attributes(cx, n, &["calls", "bandwidth", "renewal-period"])?;
    }
    let calls = number(cx, n, "calls", Some(0))?;
    let bandwidth_kb = number(cx, n, "bandwidth", Some(0))?;
    if calls == 0 && bandwidth_kb == 0 && (by_key || elements(n).next().is_none()) {
        return Err(cx.err(n, format!("<{name}>: calls or bandwidth is required")));
    }
    let first_period_start = match attr(n, "first-period-start") {
        None => 0,
        Some(s) => crate::telemetry::parse_rfc3339(s.trim()).ok_or_else(|| {
            cx.err(
                n,
                "<quota-by-key>: first-period-start must be an RFC 3339 time",
            )
        })?,
    };
    policy(Quota {
        limit: limit(cx, n, true)?,
        key: if by_key {
            Some(text_value(cx, n, required(cx, n, "counter-key")?)?)
        } else {
            None
        },
        increment_condition: attr(n, "increment-condition")
            .map(|c| expr_value(cx, n, "increment-condition", c))
            .transpose()?,
        first_period_start,
    })
}

fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

impl Quota {
    /// Counts the call against every level once it ends (`State::quotas`).
    fn count(&self, call: &mut Call, key: String) {
        for l in self.limit.levels(call.host.api(), call.host.operation()) {
            call.st.quotas.push(QuotaUse {
                label: Arc::clone(&l.label),
                key: key.clone(),
                period: l.period_secs,
                start: self.first_period_start,
            });
        }
    }
}

impl Behaviour for Quota {
    fn name(&self) -> &'static str {
        if self.key.is_some() {
            "quota-by-key"
        } else {
            "quota"
        }
    }
    fn facts(&self) -> Facts {
        Facts {
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let key = match &self.key {
            Some(k) => or_fail!(call, step, call.text(k)),
            None => call.host.subscription_id().unwrap_or("").to_string(),
        };
        let now_s = call.now_ms / 1000;
        for l in self.limit.levels(call.host.api(), call.host.operation()) {
            if l.calls == 0 && l.bandwidth_kb == 0 {
                continue;
            }
            let checked = call.counters.quota_check(
                &l.label,
                &key,
                l.calls,
                l.bandwidth_kb,
                l.period_secs,
                self.first_period_start,
                now_s,
            );
            if let Err(renew) = checked {
                let what = if l.calls > 0 {
                    "call volume"
                } else {
                    "bandwidth"
                };
                let msg = format!(
                    "Out of {what} quota. Quota will be replenished in {}.",
                    hms(renew)
                );
                call.st.answer(403, &msg);
                call.st
                    .resp
                    .headers
                    .set("Retry-After", Some(vec![renew.to_string()]));
                return call.st.fail(step, self.name(), "QuotaExceeded", &msg);
            }
        }
        if self.increment_condition.is_some() {
            call.st.deferred.push((step.clone(), key));
        } else {
            self.count(call, key);
        }
        Flow::Continue
    }
    fn settle(&self, key: String, call: &mut Call) {
        let counts = self
            .increment_condition
            .as_ref()
            .is_none_or(|c| call.truth(c).unwrap_or(false));
        if counts {
            self.count(call, key);
        }
    }
}

//! `quota` (per subscription) and `quota-by-key` (per key): calls and/or kilobytes per
//! renewal period, with `<api>` / `<operation>` levels for `quota`. The call is counted
//! when it ends, when its size is known (`State::quotas`); with an
//! `increment-condition`, only if the condition holds for the response.
//! Must not touch: counters beyond `Call::counters`.

use std::sync::Arc;

use roxmltree::Node;

use super::rate_limit::{label_of, limit, Limit};
use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, QuotaUse};
use crate::policy::expr::{EvalError, Expr};
use crate::policy::external::{ask_shared, quota_key, Command, Counted, QuotaWindow, Shared};
use crate::policy::limits::window_start;
use crate::policy::parse::{
    attr, elements, expr_value, no_attributes, number, only_children, positive, required, setting,
    text_value, whole, Cx, POSITIVE, R, WHOLE,
};
use crate::policy::{Setting, Step, Text};

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
    /// quota-by-key's numbers when one of them is an expression (then `limit` holds only
    /// the counter's name).
    pub computed: Option<Numbers>,
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
    // quota-by-key's numbers may be expressions, as in APIM
    let computed = match by_key {
        true => Some(Numbers {
            calls: setting(cx, n, "calls", Some(0), whole, WHOLE)?,
            bandwidth_kb: setting(cx, n, "bandwidth", Some(0), whole, WHOLE)?,
            period_secs: setting(cx, n, "renewal-period", None, positive, POSITIVE)?,
        })
        .filter(|n| n.any_computed()),
        false => None,
    };
    if computed.is_none() {
        let calls = number(cx, n, "calls", Some(0))?;
        let bandwidth_kb = number(cx, n, "bandwidth", Some(0))?;
        if calls == 0 && bandwidth_kb == 0 && (by_key || elements(n).next().is_none()) {
            return Err(cx.err(n, format!("<{name}>: calls or bandwidth is required")));
        }
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
    let limit = match &computed {
        None => limit(cx, n, true)?,
        Some(_) => {
            let label = label_of(cx, n);
            Limit {
                name: String::new(),
                calls: 0,
                bandwidth_kb: 0,
                period_secs: 0,
                counter: crate::policy::parse::counter_id(&label),
                label,
                nested: Vec::new(),
            }
        }
    };
    policy(Quota {
        limit,
        computed,
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

/// quota-by-key's calls, kilobytes and period, computed per call.
#[derive(Debug, Clone)]
pub struct Numbers {
    pub calls: Setting<u64>,
    pub bandwidth_kb: Setting<u64>,
    pub period_secs: Setting<u64>,
}

impl Numbers {
    fn any_computed(&self) -> bool {
        self.calls.text().is_some()
            || self.bandwidth_kb.text().is_some()
            || self.period_secs.text().is_some()
    }
}

/// One level a call counts against: its counter's name and its numbers.
struct Level {
    label: Arc<str>,
    calls: u64,
    bandwidth_kb: u64,
    period_secs: u64,
}

impl Quota {
    /// The levels that apply to this call; computed numbers name their own counter, so
    /// calls under different limits never share one.
    fn levels(&self, call: &mut Call) -> Result<Vec<Level>, EvalError> {
        if let Some(n) = &self.computed {
            let calls = call.setting(&n.calls)?;
            let bandwidth_kb = call.setting(&n.bandwidth_kb)?;
            let period_secs = call.setting(&n.period_secs)?;
            let label = format!(
                "{}\u{1f}{calls}/{bandwidth_kb}/{period_secs}",
                self.limit.label
            );
            return Ok(vec![Level {
                label: Arc::from(label),
                calls,
                bandwidth_kb,
                period_secs,
            }]);
        }
        Ok(self
            .limit
            .levels(call.host.api(), call.host.operation())
            .map(|l| Level {
                label: Arc::clone(&l.label),
                calls: l.calls,
                bandwidth_kb: l.bandwidth_kb,
                period_secs: l.period_secs,
            })
            .collect())
    }

    /// The 403 of a call over level `l`'s quota, which renews in `renew` seconds.
    fn exceeded(&self, step: &Step, call: &mut Call, l: &Level, renew: u64) -> Flow {
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
        call.st.fail(step, self.name(), "QuotaExceeded", &msg)
    }

    /// A call that fits is counted when it ends (or when its response meets
    /// increment-condition).
    fn counted(&self, step: &Step, call: &mut Call, key: String, levels: Vec<Level>) {
        if self.increment_condition.is_some() {
            call.st.deferred.push((step.clone(), key));
        } else {
            self.count(call, key, levels);
        }
    }

    /// The shared check, when the external cache counts quotas.
    fn shared(&self, call: &mut Call, key: &str, levels: &[Level]) -> Shared {
        ask_shared(call, |call| {
            let now_s = call.now_ms / 1000;
            let windows = levels
                .iter()
                .map(|l| {
                    let start = window_start(self.first_period_start, l.period_secs, now_s);
                    QuotaWindow {
                        key: quota_key(&l.label, key, start),
                        calls: l.calls,
                        bytes: l.bandwidth_kb.saturating_mul(1024),
                    }
                })
                .collect();
            Command::QuotaCheck { windows }
        })
    }

    /// Counts the call against every level once it ends (`State::quotas`).
    fn count(&self, call: &mut Call, key: String, levels: Vec<Level>) {
        for l in levels {
            call.st.quotas.push(QuotaUse {
                label: l.label,
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
        let numbers = self
            .computed
            .iter()
            .flat_map(|n| [n.calls.text(), n.bandwidth_kb.text(), n.period_secs.text()]);
        let condition = self.increment_condition.as_ref().map(Facts::expr);
        Facts {
            reads_request: true,
            ..Facts::reading(numbers.flatten().chain(self.key.as_ref()))
                | condition.unwrap_or_default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let key = match &self.key {
            Some(k) => or_fail!(call, step, call.text(k)),
            None => call.host.subscription_id().unwrap_or("").to_string(),
        };
        let levels = or_fail!(call, step, self.levels(call));
        let now_s = call.now_ms / 1000;
        match self.shared(call, &key, &levels) {
            Shared::Wait => return Flow::Suspend,
            Shared::Answered(Counted::Quota(Some(i))) => {
                if let Some(l) = levels.get(i) {
                    let start = window_start(self.first_period_start, l.period_secs, now_s);
                    return self.exceeded(step, call, l, start + l.period_secs - now_s);
                }
            }
            Shared::Answered(Counted::Quota(None)) => {
                self.counted(step, call, key, levels);
                return Flow::Continue;
            }
            Shared::Answered(_) | Shared::Local => {}
        }
        for l in &levels {
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
                return self.exceeded(step, call, l, renew);
            }
        }
        self.counted(step, call, key, levels);
        Flow::Continue
    }
    fn settle(&self, key: String, call: &mut Call) {
        let counts = self
            .increment_condition
            .as_ref()
            .is_none_or(|c| call.truth(c).unwrap_or(false));
        if counts {
            if let Ok(levels) = self.levels(call) {
                self.count(call, key, levels);
            }
        }
    }
}

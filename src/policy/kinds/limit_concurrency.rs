//! `limit-concurrency`: at most `max-count` calls per key run the enclosed steps at
//! once; around forward-request (in `<backend>`) it holds a slot for the whole
//! exchange (`forward_request::Forward::concurrency`). Slots are released when the
//! call ends (`State::slots`).
//! Must not touch: counters beyond `Call::counters`.

use roxmltree::Node;

use super::forward_request::{at_least_one, wrapped_forward, Concurrency, AT_LEAST_ONE};
use super::{policy, Compiled, Kind};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, State};
use crate::policy::parse::{nested_steps, no_attributes, required, setting, text_value, Cx, R};
use crate::policy::{Section, Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "limit-concurrency",
    sections: &[Section::Inbound, Section::Backend, Section::Outbound],
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct LimitConcurrency {
    pub counter: u64,
    pub key: Text,
    pub max: Setting<u64>,
    pub steps: Vec<Step>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["key", "max-count"])?;
    let key = text_value(cx, n, required(cx, n, "key")?)?;
    let max = setting(cx, n, "max-count", None, at_least_one, AT_LEAST_ONE)?;
    let counter = cx.counter();
    if let Some(mut f) = wrapped_forward(cx, n)? {
        if f.concurrency.is_some() {
            return Err(cx.err(
                n,
                "<limit-concurrency>: nested limit-concurrency is not supported",
            ));
        }
        f.concurrency = Some(Concurrency { key, max, counter });
        return Ok(Compiled::Forward(Box::new(f)));
    }
    if cx.section == Section::Backend {
        return Err(cx.err(
            n,
            "<limit-concurrency> in <backend> is supported around a single <forward-request />",
        ));
    }
    policy(LimitConcurrency {
        counter,
        key,
        max,
        steps: nested_steps(cx, n)?,
    })
}

/// The 429 of a call over the limit.
pub(crate) fn over_limit(st: &mut State) {
    st.answer(429, "Too many concurrent requests. Try again later.");
}

impl Behaviour for LimitConcurrency {
    fn name(&self) -> &'static str {
        "limit-concurrency"
    }
    fn facts(&self) -> Facts {
        Facts::of(&self.steps)
            | Facts::reading([Some(&self.key), self.max.text()].into_iter().flatten())
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        if call.resuming() {
            // its slot is the call's until the call ends
            return call.run(&self.steps);
        }
        let k = or_fail!(call, step, call.text(&self.key));
        let max = or_fail!(call, step, call.setting(&self.max));
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        match call.counters.acquire(self.counter, &k, max, call.now_ms) {
            Some(slot) => {
                call.st.slots.push(slot);
                call.run(&self.steps)
            }
            None => {
                over_limit(call.st);
                call.st.fail(
                    step,
                    "limit-concurrency",
                    "ConcurrencyLimitExceeded",
                    "Too many concurrent requests.",
                )
            }
        }
    }
}

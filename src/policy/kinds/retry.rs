//! `retry` around policies (any section; around forward-request it is the backend
//! section's, `forward_request`): the policies run, then while `condition` holds and
//! `count` retries are left, they run again after APIM's interval (`interval`, `delta`,
//! `max-interval`, `first-fast-retry`). The wait between attempts is a suspension of the
//! call (`State::sleep_ms`), so the loop is never held; a send-request inside makes the
//! call wait as anywhere else. The resume cursor keeps the attempt: a call resumes in
//! the attempt it waited in, or starts the next one after a wait.
//! Must not touch: the backend (a retry around forward-request is not this one).

use roxmltree::Node;

use super::forward_request::Retry;
use super::{policy, Compiled};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{elements, item, Cx, R};
use crate::policy::{Item, Step};

/// In the cursor, above the attempt: the call waited between attempts.
const BETWEEN_ATTEMPTS: usize = u32::MAX as usize;

#[derive(Debug, Clone)]
pub struct RetryLoop(pub Retry);

/// The element's policies as steps (a forward-request is not one of them here).
pub(crate) fn compile(cx: &mut Cx, n: Node, mut retry: Retry) -> R<Compiled> {
    for k in elements(n) {
        match item(cx, k)? {
            Item::Step(s) => retry.steps.push(s),
            _ => {
                return Err(cx.err(
                    k,
                    "<retry>: forward-request is retried by a <retry> directly in <backend>",
                ))
            }
        }
    }
    policy(RetryLoop(retry))
}

impl Behaviour for RetryLoop {
    fn name(&self) -> &'static str {
        "retry"
    }
    fn facts(&self) -> Facts {
        let r = &self.0;
        let settings = r.setting_texts().into_iter().flatten();
        Facts {
            suspends: true,
            ..Facts::of(&r.steps) | Facts::expr(&r.condition) | Facts::reading(settings)
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let r = &self.0;
        let mut attempt: usize = 0;
        if call.resuming() {
            attempt = match call.resumed_branch() {
                // waited between attempts: the next one starts
                Some(BETWEEN_ATTEMPTS) => call.resumed_branch().unwrap_or(0) + 1,
                // waited inside this attempt: it goes on there
                Some(a) => a,
                None => 0,
            };
        }
        let terms = or_fail!(call, step, r.terms(call));
        loop {
            let flow = call.run_branch(attempt, &r.steps);
            if flow != Flow::Continue {
                return flow;
            }
            if attempt >= terms.count as usize || !or_fail!(call, step, call.truth(&r.condition)) {
                return Flow::Continue;
            }
            // a jitter from the clock for exponential waits (0.8..1.2)
            let jitter = 0.8 + (call.now_ms % 401) as f64 / 1000.0;
            let wait = terms.delay(u32::try_from(attempt + 1).unwrap_or(u32::MAX), jitter);
            if wait.is_zero() {
                attempt += 1;
                continue;
            }
            call.st.sleep_ms = Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            call.st.wait_any = false;
            call.st.cursor.push(u32::try_from(attempt).unwrap_or(0));
            call.st.cursor.push(u32::MAX);
            return Flow::Suspend;
        }
    }
}

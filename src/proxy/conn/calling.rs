//! A call suspended on its policies' requests (send-request, wait): the requests start
//! as sub-requests owned by this connection (`proxy::sub`), readiness of their
//! connections comes here, and once all of them (or, for `wait for="any"`, the first)
//! have an outcome, the call resumes over the head still in the input buffer. A client
//! that hangs up cancels them.
//! Must not touch: the policies' state (outcomes land through `Pipeline::resume`), the
//! exchange with the backend.

use super::*;
use crate::policy::external::{Purpose, Reply};

/// Longest a call waits for the external cache's answer (then: a miss, or local
/// counting).
const EXTERNAL_WAIT: Duration = Duration::from_secs(3);

/// A command to the external cache a suspended call waits for.
pub(super) struct Waiting {
    /// Its id with the worker (none: the worker's queue was full).
    pub id: Option<u64>,
    pub purpose: Purpose,
    pub answer: Option<Result<Reply, ()>>,
    pub deadline: Instant,
}

/// What a suspended call waits for: its requests and its external cache commands.
pub(super) struct Waits {
    subs: Vec<Sub>,
    external: Vec<Waiting>,
    /// `<wait for="any">`: the first outcome is enough.
    any: bool,
    /// retry's wait between attempts: the call goes on no sooner.
    until: Option<Instant>,
}

pub(super) use crate::pipeline::phases::Ended;

impl Waits {
    /// Starts what `call` asked for.
    pub(super) fn start(call: &mut Pipeline, rt: &Runtime, ctx: &mut Ctx) -> Waits {
        let any = std::mem::take(&mut call.st.wait_any);
        let until = call
            .st
            .sleep_ms
            .take()
            .map(|ms| ctx.now + Duration::from_millis(ms));
        let subs = std::mem::take(&mut call.st.outgoing)
            .into_iter()
            .map(|o| Sub::start(o, rt, &mut ctx.net()))
            .collect();
        let external = std::mem::take(&mut call.st.external)
            .into_iter()
            .map(|ask| {
                let id = ctx
                    .external
                    .as_deref_mut()
                    .and_then(|e| e.ask(ctx.client, ask.command));
                Waiting {
                    answer: id.is_none().then_some(Err(())),
                    id,
                    purpose: ask.purpose,
                    deadline: ctx.now + EXTERNAL_WAIT,
                }
            })
            .collect();
        Waits {
            subs,
            external,
            any,
            until,
        }
    }

    /// Moves the requests; whether the call has what it waits for.
    pub(super) fn advance(&mut self, ctx: &mut Ctx) -> bool {
        for s in &mut self.subs {
            s.advance(&mut ctx.net());
        }
        for w in self.external.iter_mut().filter(|w| w.answer.is_none()) {
            if ctx.now >= w.deadline {
                w.answer = Some(Err(()));
            }
        }
        if self.until.is_some_and(|u| ctx.now < u) {
            return false;
        }
        if self.any {
            self.subs.iter().any(Sub::is_done) || self.external.iter().any(|w| w.answer.is_some())
        } else {
            self.subs.iter().all(Sub::is_done) && self.external.iter().all(|w| w.answer.is_some())
        }
    }

    /// The outcomes (with `any`, the first; the others are cancelled).
    pub(super) fn finish(self, ctx: &mut Ctx) -> Ended {
        let mut outcomes: Vec<(ReplyTo, SubOutcome)> = Vec::with_capacity(self.subs.len());
        for mut s in self.subs {
            if !s.is_done() || (self.any && !outcomes.is_empty()) {
                // wait for="any": the others are not waited for
                s.cancel(&mut ctx.net());
                continue;
            }
            if let (Some(to), outcome) = s.into_outcome() {
                outcomes.push((to, outcome));
            }
        }
        let answers = self
            .external
            .into_iter()
            .filter_map(|w| Some((w.purpose, w.answer?)))
            .collect();
        (outcomes, answers)
    }

    /// Cancels everything (the client left).
    pub(super) fn cancel(&mut self, ctx: &mut Ctx) {
        for s in &mut self.subs {
            s.cancel(&mut ctx.net());
        }
    }

    /// Readiness of a connection of one of its requests: true when it is one.
    pub(super) fn ready(&mut self, token: usize, ready: Ready) -> bool {
        match self.subs.iter_mut().find(|s| s.token() == Some(token)) {
            Some(s) => {
                s.ready(ready.readable, ready.writable, ready.closed);
                true
            }
            None => false,
        }
    }

    /// The external cache's answer to command `id`: true when it waits for it.
    pub(super) fn answer(&mut self, id: u64, answer: Result<Reply, ()>) -> bool {
        match self
            .external
            .iter_mut()
            .find(|w| w.id == Some(id) && w.answer.is_none())
        {
            Some(w) => {
                w.answer = Some(answer);
                true
            }
            None => false,
        }
    }

    /// When the first of its pending requests times out.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.subs
            .iter()
            .filter(|s| !s.is_done())
            .map(|s| s.deadline)
            .chain(
                self.external
                    .iter()
                    .filter(|w| w.answer.is_none())
                    .map(|w| w.deadline),
            )
            .chain(self.until)
            .min()
    }
}

impl Client {
    /// Inbound suspended: its requests start now; the head stays buffered.
    pub(super) fn suspend(
        &mut self,
        mut call: Box<Pipeline>,
        method: String,
        url: String,
        ctx: &mut Ctx,
    ) {
        let Some(rt) = ctx.runtime.cloned() else {
            self.start_reply(500, &failure_body(Failure::NoConfig), None, false, ctx);
            return;
        };
        let waits = Waits::start(&mut call, &rt, ctx);
        self.set_phase(
            Phase::Calling(Box::new(Calling {
                call,
                rt,
                waits,
                method,
                url,
            })),
            ctx.now,
        );
    }

    /// Moves the call's requests; resumes the call when it has what it waits for.
    pub(super) fn step_calling(&mut self, ctx: &mut Ctx) -> Step {
        if client_gone(&mut self.transport, &mut self.readable, &mut self.pipelined) {
            return self.closing(CloseReason::ClientGone);
        }
        let Phase::Calling(c) = &mut self.phase else {
            return Step::Close;
        };
        if !c.waits.advance(ctx) {
            return Step::Blocked;
        }
        let Phase::Calling(c) = std::mem::replace(&mut self.phase, Phase::Head) else {
            return Step::Close;
        };
        let Calling {
            call, rt, waits, ..
        } = *c;
        let (outcomes, answers) = waits.finish(ctx);
        self.dispatch_resumed(
            Resumed {
                call,
                outcomes,
                answers,
            },
            &rt,
            ctx,
        )
    }

    /// Logs a suspended call whose client left before it was answered.
    pub(super) fn log_abandoned(&self, c: &Calling, reason: &str, ctx: &mut Ctx) {
        let ids = c.call.ids;
        let api = c.rt.apis.get(ids.api as usize);
        let op = api.and_then(|a| a.operations.get(ids.op as usize));
        let st = &c.call.st;
        self.log_local(
            LocalAnswer {
                status: 499,
                api: api.map_or("", |a| a.id.as_str()),
                op: op.map_or("", |o| o.id.as_str()),
                product: "",
                subscription: "",
                error: Some(reason),
                method: &c.method,
                url: &c.url,
                request_id: Some(st.request_id.clone()),
                bytes_in: 0,
                traces: &st.traces,
                metrics: &st.metrics,
            },
            ctx,
        );
    }
}

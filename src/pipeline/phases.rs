//! The pipeline of one call as the connection drives it, at fixed points (pingora's
//! phases). The connection owns sockets, buffers and timing; at each point it hands the
//! heads over and gets a decision back, so every point is testable without a socket.
//!
//! ```text
//!   start ─▶ inbound ─┬─ Answer (a policy answered or failed, or no forward-request)
//!                     └─ Forward ─▶ exchange ─┬─ response head ─▶ on_response
//!                                             │     └─ wants_retry? ─▶ exchange again
//!                                             └─ failure ─▶ on_failure
//!   … ─▶ finish (quotas counted with the call's size, concurrency slots freed)
//! ```
//! Must not touch: sockets, buffers, the loop's scheduling, the clock (time comes in
//! through `Io`).

use std::sync::Arc;

use super::exec::{self, Io, Who};
use crate::config::Runtime;
use crate::http::Failure;
use crate::policy::call::{fail_outside, Flow, Phase, State, Waiting};
use crate::policy::external::{Purpose, Reply};
use crate::policy::kinds::cache_response;
use crate::policy::outgoing::{Outcome, ReplyTo};
use crate::policy::request::{HeaderSrc, OwnedRequest, RequestView, ResponseView};
use crate::policy::{Plan, RetryTerms, Step};

/// What a suspended call's requests and external cache commands ended with.
pub type Ended = (Vec<(ReplyTo, Outcome)>, Vec<(Purpose, Result<Reply, ()>)>);

/// The reason of the internal failure when a call's indexes no longer name entities of
/// its runtime (a bug: a call keeps the runtime it started with).
pub const STALE_IDS: &str = "internal_stale_route";

/// Who is calling what, as indexes into the runtime.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    pub api: u32,
    pub op: u32,
    pub product: Option<u32>,
    pub subscription: Option<u32>,
}

/// The policy state of one call, from inbound to its end.
pub struct Pipeline {
    pub plan: Arc<Plan>,
    pub st: State,
    pub ids: Ids,
    pub key: Box<str>,
}

/// What inbound decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Send the request to the backend (with the edits in `Pipeline::st`).
    Forward,
    /// Answer with `Pipeline::st.resp`; the call is finished and counted.
    Answer,
    /// Send the requests in `Pipeline::st.outgoing`, then `resume` with their outcomes.
    Suspend,
}

/// Who is calling what, from indexes into the runtime (`None` if they are stale).
pub fn who<'a>(rt: &'a Runtime, ids: Ids, key: &'a str, gateway_id: &'a str) -> Option<Who<'a>> {
    let api = match ids.api {
        crate::config::UNMATCHED_API => rt.unmatched.as_deref()?,
        i => rt.apis.get(i as usize)?,
    };
    let subscription = ids
        .subscription
        .and_then(|s| rt.subscriptions.get(s as usize));
    Some(Who {
        api,
        op: api.operations.get(ids.op as usize)?,
        product: ids.product.and_then(|p| rt.products.get(p as usize)),
        subscription,
        user: subscription
            .and_then(|s| s.owner)
            .and_then(|u| rt.users.get(u as usize)),
        groups: &rt.groups,
        key,
        gateway_id,
        client_trust: rt.client_trust.as_deref(),
    })
}

impl Pipeline {
    /// A call's policy state under `plan`, with a copy of the request when a later
    /// section (outbound, on-error, a retry condition) reads it.
    pub fn start(
        plan: &Arc<Plan>,
        ids: Ids,
        key: &str,
        request_id: String,
        req: &RequestView,
    ) -> Pipeline {
        let mut st = State::default();
        st.request_id = request_id;
        if plan.later_reads_request {
            st.request_copy = Some(Box::new(OwnedRequest::of(req)));
        }
        Pipeline {
            plan: Arc::clone(plan),
            st,
            ids,
            key: Box::from(key),
        }
    }

    /// Inbound (and the backend section before forward-request): forward, or answer.
    /// Without forward-request, APIM answers an empty 200 through outbound. A failure
    /// runs on-error. An answer is settled and finished here.
    pub fn inbound(&mut self, req: &RequestView, io: &mut Io) -> Result<Inbound, Failure> {
        self.inbound_with(Flow::Continue, req, io)
    }

    /// Resumes a suspended inbound once the requests it waited for have their
    /// outcomes: each lands in its variable (or fails the call), then inbound goes on
    /// after the step that suspended.
    pub fn resume(
        &mut self,
        outcomes: Vec<(ReplyTo, Outcome)>,
        answers: Vec<(Purpose, Result<Reply, ()>)>,
        req: &RequestView,
        io: &mut Io,
    ) -> Result<Inbound, Failure> {
        let flow = self.land(outcomes, answers);
        self.inbound_with(flow, req, io)
    }

    /// Lands what a suspended call waited for: each answer in its place; `Flow::Error`
    /// when a request failed (the first failure is the one on-error sees).
    fn land(
        &mut self,
        outcomes: Vec<(ReplyTo, Outcome)>,
        answers: Vec<(Purpose, Result<Reply, ()>)>,
    ) -> Flow {
        for (purpose, answer) in answers {
            self.st.answered(purpose, answer);
        }
        let mut flow = Flow::Continue;
        for (to, outcome) in outcomes {
            let fails = matches!(outcome, Outcome::Failed(_)) && !to.ignore_error;
            if flow == Flow::Error && fails {
                continue;
            }
            if self.st.receive(to, outcome) == Flow::Error {
                flow = Flow::Error;
            }
        }
        if flow != Flow::Continue {
            self.st.cursor.clear();
        }
        flow
    }

    /// Inbound from its start, from where it was suspended (`Flow::Continue` with a
    /// cursor), or straight to on-error (`Flow::Error`).
    fn inbound_with(
        &mut self,
        flow: Flow,
        req: &RequestView,
        io: &mut Io,
    ) -> Result<Inbound, Failure> {
        let plan = Arc::clone(&self.plan);
        let Some(who) = who(io.runtime, self.ids, &self.key, io.gateway_id) else {
            return Err(Failure::Internal(STALE_IDS));
        };
        let st = &mut self.st;
        let waiting = std::mem::take(&mut st.waiting);
        let mut flow = flow;
        // inbound, from its start or where it waited
        if waiting == Waiting::Inbound && flow == Flow::Continue {
            flow = exec::run_resumable(&plan.inbound, Phase::Request, req, None, &who, st, io);
            if flow == Flow::Suspend {
                return Ok(Inbound::Suspend);
            }
            if flow == Flow::Continue {
                match &plan.forward {
                    // APIM answers an empty 200 through outbound
                    None => {
                        st.resp.status.get_or_insert(200);
                        st.resp.body.get_or_insert_with(Vec::new);
                        st.waiting = Waiting::LocalOutbound;
                    }
                    Some(fwd) => {
                        flow = exec::enter_forward(fwd, req, &who, st, io);
                        if flow == Flow::Continue {
                            return Ok(Inbound::Forward);
                        }
                    }
                }
            } else if flow == Flow::Respond && st.cache_hit.is_some() {
                st.waiting = Waiting::CachedOutbound;
            }
        }
        // outbound over an answer of the policies' own, or over a cached response (after
        // cache-store, as in APIM's trace), from its start or where it waited
        let outbound = match (waiting, std::mem::take(&mut st.waiting)) {
            (Waiting::Inbound, next) => next,
            (resumed, _) => resumed,
        };
        if matches!(outbound, Waiting::LocalOutbound | Waiting::CachedOutbound)
            && matches!(flow, Flow::Continue | Flow::Respond)
        {
            let hit = st.cache_hit.clone();
            flow = match (&hit, outbound) {
                (Some(hit), Waiting::CachedOutbound) => {
                    let after = cache_response::after_store(&plan.outbound);
                    let view = cache_response::view(hit);
                    exec::run_resumable(after, Phase::Response, req, Some(&view), &who, st, io)
                }
                _ => exec::run_resumable(&plan.outbound, Phase::Response, req, None, &who, st, io),
            };
            if flow == Flow::Suspend {
                st.waiting = outbound;
                return Ok(Inbound::Suspend);
            }
            st.cache_hit = None;
            if flow == Flow::Continue {
                flow = Flow::Respond;
            }
        }
        // on-error, from its start or where it waited for a request of its own (when that
        // request failed its answer stands: no second pass, as in APIM)
        let on_error = match waiting {
            Waiting::OnError => flow == Flow::Continue,
            _ => flow == Flow::Error,
        };
        if on_error {
            if waiting != Waiting::OnError {
                st.refill_budget();
            }
            let ran = exec::run_resumable(&plan.on_error, Phase::Response, req, None, &who, st, io);
            if ran == Flow::Suspend {
                st.waiting = Waiting::OnError;
                return Ok(Inbound::Suspend);
            }
        }
        exec::settle(req, None, &who, st, io);
        exec::finish(st, io.counters, 0, io.now_ms);
        Ok(Inbound::Answer)
    }

    /// Outbound over the backend's response head (and its whole body in `st.resp.body`
    /// when the plan reads it); on-error if it fails. `Flow::Continue`: the backend's
    /// response goes on with the edits in `st.resp`; otherwise `st.resp` is the answer.
    pub fn on_response(&mut self, resp: &ResponseView, io: &mut Io) -> Result<Flow, Failure> {
        self.on_response_resumed(resp, io, None)
    }

    /// `on_response`, resuming an outbound that waited for its policies' requests
    /// (`resumed`: what they ended with). `Flow::Suspend`: outbound waits for
    /// `st.outgoing` / `st.external` and runs on with `resumed` later.
    pub fn on_response_resumed(
        &mut self,
        resp: &ResponseView,
        io: &mut Io,
        resumed: Option<Ended>,
    ) -> Result<Flow, Failure> {
        let landed = match resumed {
            Some((outcomes, answers)) => self.land(outcomes, answers),
            None => Flow::Continue,
        };
        let plan = Arc::clone(&self.plan);
        let Some(who) = who(io.runtime, self.ids, &self.key, io.gateway_id) else {
            return Err(Failure::Internal(STALE_IDS));
        };
        let copy = self.st.request_copy.take();
        let req = kept(&copy);
        let st = &mut self.st;
        let error_status = (400..=599).contains(&resp.status)
            && plan
                .forward
                .as_ref()
                .is_some_and(|f| f.fail_on_error_status);
        // on-error waited for a request of its own: it goes on where it waited (or,
        // when that request failed, its answer stands)
        let in_on_error = std::mem::take(&mut st.waiting) == Waiting::OnError;
        let mut run = |steps: &[Step], st: &mut State| {
            exec::run_resumable(steps, Phase::Response, &req, Some(resp), &who, st, io)
        };
        // what the call answers with, and where it waits, if it does
        let (flow, waits_in_on_error) = if error_status {
            // forward-request fail-on-error-status-code: on-error instead of outbound;
            // the backend's answer goes on with its edits unless on-error answers
            if !in_on_error {
                let message = format!("Backend responded with status code {}", resp.status);
                fail_outside(
                    st,
                    "forward-request",
                    "BackendErrorStatusCode",
                    &message,
                    "backend",
                );
            }
            let ran = match (in_on_error, landed) {
                (true, Flow::Error) => Flow::Error,
                _ => run(&plan.on_error, st),
            };
            (ran, true)
        } else if in_on_error {
            let ran = match landed {
                Flow::Continue => run(&plan.on_error, st),
                other => other,
            };
            let flow = if ran == Flow::Suspend {
                ran
            } else {
                Flow::Error
            };
            (flow, true)
        } else {
            let flow = match landed {
                Flow::Continue => run(&plan.outbound, st),
                other => other,
            };
            if flow == Flow::Error {
                st.refill_budget();
                match run(&plan.on_error, st) {
                    Flow::Suspend => (Flow::Suspend, true),
                    _ => (flow, false),
                }
            } else {
                (flow, false)
            }
        };
        if flow == Flow::Suspend {
            // outbound, or on-error, waits for its requests
            if waits_in_on_error {
                st.waiting = Waiting::OnError;
            }
            st.request_copy = copy;
            return Ok(Flow::Suspend);
        }
        exec::settle(&req, Some(resp), &who, st, io);
        st.request_copy = copy;
        Ok(flow)
    }

    /// Before `<retry>` sends the request again: the policies inside it before its
    /// forward-request run once more, seeing the last attempt's response (a backend
    /// that could not be reached as the gateway's 502 / 504). `Flow::Continue`: send
    /// the request again as they left it (`st.req`, over the kept copy); otherwise
    /// `st.resp` is the answer (on-error has run for a failure).
    pub fn before_retry(&mut self, resp: &ResponseView, io: &mut Io) -> Result<Flow, Failure> {
        let plan = Arc::clone(&self.plan);
        let steps = match plan.forward.as_ref().and_then(|f| f.retry.as_ref()) {
            Some(r) if !r.steps.is_empty() => &r.steps,
            _ => return Ok(Flow::Continue),
        };
        let Some(who) = who(io.runtime, self.ids, &self.key, io.gateway_id) else {
            return Err(Failure::Internal(STALE_IDS));
        };
        let copy = self.st.request_copy.take();
        let req = kept(&copy);
        let st = &mut self.st;
        let flow = exec::run(steps, Phase::Request, &req, Some(resp), &who, st, io);
        if flow == Flow::Error {
            st.refill_budget();
            exec::run(&plan.on_error, Phase::Response, &req, None, &who, st, io);
        }
        if flow != Flow::Continue {
            exec::settle(&req, None, &who, st, io);
        }
        st.request_copy = copy;
        Ok(flow)
    }

    /// The copy of the client's request the call keeps (when later sections read it).
    pub fn request_copy(&self) -> Option<&OwnedRequest> {
        self.st.request_copy.as_deref()
    }

    /// Runs on-error after a failure outside the policies (backend, framing), starting
    /// from the gateway's own answer for it; the answer to send is left in `st.resp`.
    /// If on-error itself fails, its error answer stands (APIM makes no second pass).
    /// Where the connection cannot wait (before an exchange, between retry attempts).
    pub fn on_failure(&mut self, failure: Failure, io: &mut Io) {
        self.fail_outside_policies(failure);
        self.on_error_after_failure(Flow::Continue, false, io);
    }

    /// `on_failure` where the connection can wait (a backend that could not be
    /// reached): `Flow::Suspend` when on-error waits for its requests (`st.outgoing`);
    /// then `on_failure_resumed` goes on.
    pub fn on_failure_waiting(&mut self, failure: Failure, io: &mut Io) -> Flow {
        self.fail_outside_policies(failure);
        self.on_error_after_failure(Flow::Continue, true, io)
    }

    /// The gateway's own answer for a failure outside the policies, and
    /// `context.LastError` for it.
    fn fail_outside_policies(&mut self, failure: Failure) {
        let (source, section) = match failure {
            Failure::MissingSubscriptionKey | Failure::InvalidSubscriptionKey => {
                ("authorization", "inbound")
            }
            f if f.source() == crate::http::failure::Source::Backend => {
                ("forward-request", "backend")
            }
            _ => ("configuration", "inbound"),
        };
        self.st.answer(failure.status(), failure.message());
        fail_outside(
            &mut self.st,
            source,
            failure_reason(failure),
            failure.message(),
            section,
        );
        self.st.refill_budget();
    }

    /// `on_failure`'s on-error going on where it waited, with what it waited for.
    pub fn on_failure_resumed(&mut self, ended: Option<Ended>, io: &mut Io) -> Flow {
        let landed = match ended {
            Some((outcomes, answers)) => self.land(outcomes, answers),
            None => Flow::Continue,
        };
        self.on_error_after_failure(landed, true, io)
    }

    /// On-error over a failure, from its start or its cursor (`flow` Continue), or
    /// ended by a request it waited for that failed (its answer stands).
    fn on_error_after_failure(&mut self, flow: Flow, can_wait: bool, io: &mut Io) -> Flow {
        let Some(who) = who(io.runtime, self.ids, &self.key, io.gateway_id) else {
            return Flow::Error;
        };
        let copy = self.st.request_copy.take();
        let req = kept(&copy);
        let st = &mut self.st;
        let on_error = &self.plan.on_error;
        let ran = match flow {
            Flow::Continue if can_wait => {
                exec::run_resumable(on_error, Phase::Response, &req, None, &who, st, io)
            }
            Flow::Continue => exec::run(on_error, Phase::Response, &req, None, &who, st, io),
            other => other,
        };
        if ran == Flow::Suspend {
            st.request_copy = copy;
            return Flow::Suspend;
        }
        exec::settle(&req, None, &who, st, io);
        st.request_copy = copy;
        Flow::Error
    }

    /// The numbers of the `<retry>` around forward-request, if any (computed when the
    /// backend section reached it).
    pub fn retry(&self) -> Option<&RetryTerms> {
        self.st.forward.as_ref()?.retry.as_ref()
    }

    /// forward-request's `timeout` for this call, when it gives one.
    pub fn forward_timeout(&self) -> Option<std::time::Duration> {
        let secs = self.st.forward.as_ref()?.timeout_secs?;
        Some(std::time::Duration::from_secs(secs))
    }

    /// Whether `<retry>`'s condition holds for an attempt that ended with this response
    /// (a backend that could not be reached or did not answer is seen as the gateway's
    /// 502 / 504 with no headers).
    pub fn wants_retry(&self, resp: &ResponseView, io: &Io) -> bool {
        let Some(retry) = self.plan.forward.as_ref().and_then(|f| f.retry.as_ref()) else {
            return false;
        };
        let Some(who) = who(io.runtime, self.ids, &self.key, io.gateway_id) else {
            return false;
        };
        let req = kept(&self.st.request_copy);
        exec::retry_wanted(&retry.condition, &req, resp, &who, &self.st)
    }

    /// Counts the call against its quotas with its size, and frees its concurrency
    /// slots.
    pub fn finish(&mut self, bytes: u64, io: &mut Io) {
        exec::finish(&mut self.st, io.counters, bytes, io.now_ms);
    }
}

/// The request as later sections see it: the copy kept for them, or nothing.
fn kept(copy: &Option<Box<OwnedRequest>>) -> RequestView<'_> {
    match copy {
        Some(c) => c.view(),
        None => empty_request(),
    }
}

/// A request nobody kept (later sections that do not read the request see this).
pub fn empty_request() -> RequestView<'static> {
    RequestView {
        method: "",
        path: "",
        rest: "",
        host: "",
        query: None,
        headers: HeaderSrc::Empty,
        ip: "",
        https: false,
        certificate: None,
    }
}

/// APIM's LastError.Reason for failures outside the policies.
fn failure_reason(f: Failure) -> &'static str {
    match f {
        Failure::BackendConnect | Failure::BackendUnresolved => "BackendConnectionFailure",
        Failure::BackendConnectTimeout | Failure::BackendTimeout => "Timeout",
        Failure::BackendReset | Failure::BackendTls | Failure::BackendBadResponse(_) => {
            "BackendConnectionFailure"
        }
        Failure::BodyTimeout => "ClientConnectionFailure",
        Failure::MissingSubscriptionKey => "SubscriptionKeyNotFound",
        Failure::OperationNotFound => "OperationNotFound",
        Failure::InvalidSubscriptionKey => "SubscriptionKeyInvalid",
        other => other.reason(),
    }
}

//! An exchange whose backend could not be reached, while on-error waits for its
//! policies' requests (a fallback service, an alert): the exchange stays in the
//! connection, detached from any backend, with `Exchange::failed` and the `Waits`
//! outbound uses; when they have their outcomes on-error goes on where it waited, and
//! its answer (or the gateway's own) goes to the client.
//! Must not touch: the backend pool (the failed connection is already closed).

use super::*;

impl Client {
    /// Moves on-error's requests; answers once on-error has run to its end.
    pub(super) fn step_failing(&mut self, ctx: &mut Ctx) -> Step {
        let Phase::Proxy(x) = &mut self.phase else {
            return Step::Close;
        };
        let Some(waits) = x.waits.as_mut() else {
            return Step::Close;
        };
        if !waits.advance(ctx) {
            return Step::Blocked;
        }
        let ended = x.waits.take().map(|w| w.finish(ctx));
        let rt = Arc::clone(&x.rt);
        if let Some(call) = x.call.as_mut() {
            if call.on_failure_resumed(ended, &mut ctx.pipeline_io(&rt)) == Flow::Suspend {
                x.waits = Some(Box::new(Waits::start(call, &rt, ctx)));
                return Step::Progress;
            }
        }
        let Some((failure, close)) = x.failed.take() else {
            return Step::Close;
        };
        let Phase::Proxy(x) = std::mem::replace(&mut self.phase, Phase::Waiting { fresh: false })
        else {
            return Step::Close;
        };
        self.answer_failed(x, failure, (true, true), close, ctx);
        Step::Progress
    }
}

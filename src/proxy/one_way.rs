//! The loop's requests nobody waits for (`send-one-way-request`): taken from the
//! policies' bounded outbox after each turn, sent as sub-requests owned by the loop
//! rather than a client (a client that leaves does not cancel them), at most
//! `ONE_WAY_IN_FLIGHT` at a time; what does not fit is dropped and counted, never
//! waited for. Outcomes are counted and failures logged at debug level.
//! Must not touch: client connections, the call's state.

use std::time::Instant;

use mio::Registry;

use super::backend::Backends;
use super::sub::Sub;
use crate::config::Runtime;
use crate::metrics::OneWayStats;
use crate::policy::outgoing::{Outbox, Outcome};

/// The owner the backend pool records for the loop's own requests.
pub const ONE_WAY_OWNER: usize = usize::MAX;
/// Most one-way requests in flight at once.
pub const ONE_WAY_IN_FLIGHT: usize = 256;

#[derive(Default)]
pub struct OneWay {
    subs: Vec<Sub>,
    stats: OneWayStats,
}

impl OneWay {
    /// Starts what the outbox holds (dropping what does not fit).
    pub fn take_from(
        &mut self,
        outbox: &mut Outbox,
        rt: Option<&Runtime>,
        backends: &mut Backends,
        registry: &Registry,
        now: Instant,
    ) {
        self.stats.dropped = outbox.dropped + self.stats.dropped_in_flight;
        if outbox.is_empty() {
            return;
        }
        for o in outbox.take() {
            let Some(rt) = rt else {
                self.stats.dropped_in_flight += 1;
                continue;
            };
            if self.subs.len() >= ONE_WAY_IN_FLIGHT {
                self.stats.dropped_in_flight += 1;
                continue;
            }
            let mut s = Sub::start(o, rt, backends, ONE_WAY_OWNER, registry, now);
            s.advance(backends, ONE_WAY_OWNER, registry, now);
            self.subs.push(s);
        }
        self.stats.dropped = outbox.dropped + self.stats.dropped_in_flight;
        self.reap();
    }

    /// Readiness of one of its connections; false when it is not one of them.
    pub fn ready(
        &mut self,
        token: usize,
        ready: (bool, bool, bool),
        backends: &mut Backends,
        registry: &Registry,
        now: Instant,
    ) -> bool {
        let Some(s) = self.subs.iter_mut().find(|s| s.token() == Some(token)) else {
            return false;
        };
        s.ready(ready.0, ready.1, ready.2);
        s.advance(backends, ONE_WAY_OWNER, registry, now);
        self.reap();
        true
    }

    /// Ends those past their timeout.
    pub fn sweep(&mut self, backends: &mut Backends, registry: &Registry, now: Instant) {
        for s in &mut self.subs {
            s.advance(backends, ONE_WAY_OWNER, registry, now);
        }
        self.reap();
    }

    pub fn stats(&self) -> OneWayStats {
        self.stats
    }

    /// Counts and forgets the finished ones.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.subs.len() {
            if !self.subs[i].is_done() {
                i += 1;
                continue;
            }
            let (_, outcome) = self.subs.swap_remove(i).into_outcome();
            match outcome {
                Outcome::Received(m) => {
                    self.stats.sent += 1;
                    log::debug!("one-way request answered {}", m.status);
                }
                Outcome::Failed(f) => {
                    self.stats.failed += 1;
                    log::debug!("one-way request failed: {}", f.message());
                }
            }
        }
    }
}

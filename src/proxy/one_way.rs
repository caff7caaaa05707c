//! The loop's requests nobody waits for (`send-one-way-request`): taken from the
//! policies' bounded outbox after each turn, sent as sub-requests owned by the loop
//! rather than a client (a client that leaves does not cancel them), at most
//! `ONE_WAY_IN_FLIGHT` at a time; what does not fit is dropped and counted, never
//! waited for. Outcomes are counted and failures logged at debug level.
//! Must not touch: client connections, the call's state.

use super::sub::{Net, Sub};
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
    pub fn take_from(&mut self, outbox: &mut Outbox, rt: Option<&Runtime>, net: &mut Net) {
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
            let mut s = Sub::start(o, rt, net);
            s.advance(net);
            self.subs.push(s);
        }
        self.stats.dropped = outbox.dropped + self.stats.dropped_in_flight;
        self.reap();
    }

    /// Readiness of one of its connections; false when it is not one of them.
    pub fn ready(&mut self, token: usize, ready: (bool, bool, bool), net: &mut Net) -> bool {
        let Some(s) = self.subs.iter_mut().find(|s| s.token() == Some(token)) else {
            return false;
        };
        s.ready(ready.0, ready.1, ready.2);
        s.advance(net);
        self.reap();
        true
    }

    /// Moves them on (a name that was answered, a timeout that passed).
    pub fn sweep(&mut self, net: &mut Net) {
        for s in &mut self.subs {
            s.advance(net);
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

//! The loop's end of the external cache (Redis): commands go to the Redis worker
//! (`agent::redis`) with `try_send` and an id, answers come back through the waker and
//! go to the client that waits (or nowhere). A full queue is an unavailable Redis for
//! that command: a miss, or local counting.
//! Must not touch: sockets (the worker owns the connection), the policies' state.

use std::sync::atomic::Ordering;

use crate::agent::redis::{RedisLink, Ticket, NOBODY, PENDING_MAX};
use crate::policy::external::{Command, Reply};

pub struct ExternalLink {
    link: RedisLink,
    next_id: u64,
    /// Commands that found the worker's queue full, since the start.
    pub dropped: u64,
}

impl ExternalLink {
    pub fn new(link: RedisLink) -> ExternalLink {
        ExternalLink {
            link,
            next_id: 0,
            dropped: 0,
        }
    }

    /// Whether Redis answered the last command.
    pub fn up(&self) -> bool {
        self.link.up.load(Ordering::Relaxed)
    }

    /// Sends `command` for client `owner`; its id, or None when the queue is full.
    pub fn ask(&mut self, owner: usize, command: Command) -> Option<u64> {
        let bytes = command.payload_len();
        if self.link.pending.load(Ordering::Relaxed) + bytes > PENDING_MAX {
            self.dropped += 1;
            return None;
        }
        self.next_id += 1;
        let ticket = Ticket {
            owner,
            id: self.next_id,
        };
        self.link.pending.fetch_add(bytes, Ordering::Relaxed);
        match self.link.asks.try_send((ticket, command)) {
            Ok(()) => Some(self.next_id),
            Err(_) => {
                self.link.pending.fetch_sub(bytes, Ordering::Relaxed);
                self.dropped += 1;
                None
            }
        }
    }

    /// Sends `command` nobody waits for.
    pub fn send(&mut self, command: Command) {
        let _ = self.ask(NOBODY, command);
    }

    /// The answers that came back, for their owners.
    pub fn answers(&mut self) -> Vec<(Ticket, Result<Reply, ()>)> {
        self.link.answers.try_iter().collect()
    }
}

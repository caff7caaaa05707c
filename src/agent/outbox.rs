//! The request records waiting for the management plane, in memory: an open batch that
//! the loop's records are appended to, sealed at `SEAL_BYTES` or after `SEAL_AFTER` (so
//! a record reaches the plane about a second after its request), a queue of sealed
//! batches bounded by `MEMORY_MAX` bytes (beyond it the oldest go to the spool in the
//! backup file), the one batch being uploaded, and the count of records dropped before
//! they got here (reported with the next upload). Pure: time comes in as an argument.
//! Must not touch: the network, the backup store (the caller spools what this returns).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A batch is sealed at this size (one upload).
pub const SEAL_BYTES: usize = 1 << 20;
/// …or when its first record is this old.
pub const SEAL_AFTER: Duration = Duration::from_secs(1);
/// Most bytes of sealed batches kept in memory; older ones go to the spool.
pub const MEMORY_MAX: usize = 16 << 20;

/// NDJSON records and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub body: Arc<str>,
    pub records: u64,
}

#[derive(Default)]
pub struct Outbox {
    open: String,
    open_records: u64,
    opened_at: Option<Instant>,
    sealed: VecDeque<Batch>,
    sealed_bytes: usize,
    in_flight: Option<Batch>,
    /// Records dropped before they reached the agent, not yet reported to the plane.
    pub dropped: u64,
}

impl Outbox {
    /// Appends records (NDJSON lines) from the loop, and its count of dropped ones.
    pub fn push(&mut self, records: &str, dropped: u64, now: Instant) {
        self.dropped += dropped;
        if records.is_empty() {
            return;
        }
        if self.open.is_empty() {
            self.opened_at = Some(now);
        }
        self.open_records += records.lines().count() as u64;
        self.open.push_str(records);
        if self.open.len() >= SEAL_BYTES {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let body: Arc<str> = Arc::from(std::mem::take(&mut self.open));
        self.sealed_bytes += body.len();
        self.sealed.push_back(Batch {
            body,
            records: std::mem::take(&mut self.open_records),
        });
        self.opened_at = None;
    }

    /// Seals the open batch when its first record waited `SEAL_AFTER`.
    pub fn seal_due(&mut self, now: Instant) {
        if self
            .opened_at
            .is_some_and(|t| now.duration_since(t) >= SEAL_AFTER)
        {
            self.seal();
        }
    }

    /// When the open batch is due to be sealed.
    pub fn next_seal(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + SEAL_AFTER)
    }

    /// Sealed batches beyond `MEMORY_MAX`, oldest first, for the spool.
    pub fn overflow(&mut self) -> Vec<Batch> {
        let mut out = Vec::new();
        while self.sealed_bytes > MEMORY_MAX {
            let Some(b) = self.sealed.pop_front() else {
                break;
            };
            self.sealed_bytes -= b.body.len();
            out.push(b);
        }
        out
    }

    /// Whether a sealed batch waits for upload.
    pub fn has_sealed(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// The oldest sealed batch, now in flight until `uploaded` or `failed`.
    pub fn start_upload(&mut self) -> Option<Arc<str>> {
        debug_assert!(self.in_flight.is_none());
        let b = self.sealed.pop_front()?;
        self.sealed_bytes -= b.body.len();
        let body = Arc::clone(&b.body);
        self.in_flight = Some(b);
        Some(body)
    }

    pub fn uploaded(&mut self) {
        self.in_flight = None;
    }

    /// The batch in flight goes back to the front, to be sent again.
    pub fn failed(&mut self) {
        if let Some(b) = self.in_flight.take() {
            self.sealed_bytes += b.body.len();
            self.sealed.push_front(b);
        }
    }

    /// Everything held (in flight, sealed, open), oldest first: for the spool when the
    /// plane is away or the process stops.
    pub fn take_all(&mut self) -> Vec<Batch> {
        self.seal();
        let mut out: Vec<Batch> = self.in_flight.take().into_iter().collect();
        out.extend(self.sealed.drain(..));
        self.sealed_bytes = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_seal_by_age_and_size_and_keep_their_order() {
        let t0 = Instant::now();
        let mut o = Outbox::default();
        o.push("{\"a\":1}\n{\"a\":2}\n", 3, t0);
        o.seal_due(t0 + Duration::from_millis(500));
        assert!(!o.has_sealed(), "not yet a second old");
        assert_eq!(o.next_seal(), Some(t0 + SEAL_AFTER));
        o.seal_due(t0 + SEAL_AFTER);
        assert!(o.has_sealed());
        let big = "x".repeat(SEAL_BYTES - 1) + "\n";
        o.push(&big, 0, t0 + SEAL_AFTER);
        assert_eq!(o.next_seal(), None, "sealed at once by size");
        let first = o.start_upload().unwrap();
        assert_eq!(&*first, "{\"a\":1}\n{\"a\":2}\n");
        o.failed();
        assert_eq!(
            &*o.start_upload().unwrap(),
            &*first,
            "a failed batch goes first again"
        );
        o.uploaded();
        assert_eq!(o.start_upload().unwrap().len(), SEAL_BYTES);
        o.uploaded();
        assert_eq!(o.start_upload(), None);
        assert_eq!(o.dropped, 3);
    }

    #[test]
    fn memory_is_bounded_and_everything_can_be_taken_for_the_spool() {
        let t0 = Instant::now();
        let mut o = Outbox::default();
        let line = "y".repeat(SEAL_BYTES - 1) + "\n";
        for _ in 0..(MEMORY_MAX / SEAL_BYTES + 3) {
            o.push(&line, 0, t0);
        }
        let spilled = o.overflow();
        assert_eq!(spilled.len(), 3);
        assert!(spilled.iter().all(|b| b.records == 1));
        o.push("{\"open\":1}\n", 0, t0);
        let _ = o.start_upload();
        let all = o.take_all();
        assert_eq!(
            all.len(),
            MEMORY_MAX / SEAL_BYTES + 1,
            "in flight, sealed and open"
        );
        assert_eq!(&*all.last().unwrap().body, "{\"open\":1}\n");
        assert!(o.take_all().is_empty());
    }
}

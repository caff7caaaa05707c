//! Counters behind rate-limit, rate-limit-by-key, quota, quota-by-key and
//! limit-concurrency, plus the cache of verified JWTs. Owned by the event loop (one
//! thread, no locks); every map is bounded (`max_keys`) and `sweep` reclaims expired
//! windows. Rate limits use an exact sliding window (the call times of the last period,
//! at most `calls` per key); quotas a fixed window aligned to `first-period-start`.
//! Quota cells can be exported and imported so the agent can persist them across
//! restarts. Time comes in as an argument (milliseconds / seconds since the epoch).
//! Must not touch: disk, sockets, the agent (the loop hands snapshots over).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::jwt::Lifetime;

/// A rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Calls left in the window after this one (0 when refused).
    pub remaining: u64,
    /// Seconds until a call would be allowed again (0 when allowed).
    pub retry_after: u64,
}

/// One persisted quota cell: (label, key, window start (s), calls, kilobytes).
pub type QuotaCell = (String, String, u64, u64, u64);

#[derive(Debug, Default)]
struct Quota {
    window_start: u64,
    calls: u64,
    bytes: u64,
}

pub struct Counters {
    windows: HashMap<(u32, Box<str>), VecDeque<u64>>,
    quotas: HashMap<(Box<str>, Box<str>), Quota>,
    concurrency: HashMap<(u32, Box<str>), Rc<Cell<u32>>>,
    jwt: HashMap<(u32, Box<str>), Lifetime>,
    max_keys: usize,
    /// Quota cells changed since the last export.
    pub quota_dirty: bool,
}

/// Held while a request is inside a limit-concurrency; dropping it frees the slot.
#[derive(Debug)]
pub struct ConcurrencySlot(Rc<Cell<u32>>);

impl Drop for ConcurrencySlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Counters {
    pub fn new(max_keys: usize) -> Counters {
        Counters {
            windows: HashMap::new(),
            quotas: HashMap::new(),
            concurrency: HashMap::new(),
            jwt: HashMap::new(),
            max_keys: max_keys.max(16),
            quota_dirty: false,
        }
    }

    /// Checks (and, when `count` > 0 and allowed, records) a call in a sliding window.
    pub fn rate(
        &mut self,
        counter: u32,
        key: &str,
        calls: u64,
        period_secs: u64,
        count: u64,
        now_ms: u64,
    ) -> RateDecision {
        let period_ms = period_secs.saturating_mul(1000);
        if !self.windows.contains_key(&(counter, Box::from(key)))
            && self.windows.len() >= self.max_keys
        {
            self.sweep(now_ms);
        }
        let full = self.windows.len() >= self.max_keys;
        let entry = if full {
            // Out of room even after reclaiming: refuse new keys rather than grow.
            match self.windows.get_mut(&(counter, Box::from(key))) {
                Some(e) => e,
                None => {
                    return RateDecision {
                        allowed: false,
                        remaining: 0,
                        retry_after: period_secs.max(1),
                    }
                }
            }
        } else {
            self.windows.entry((counter, Box::from(key))).or_default()
        };
        while entry.front().is_some_and(|t| t + period_ms <= now_ms) {
            entry.pop_front();
        }
        let used = entry.len() as u64;
        if used + count.max(1) > calls {
            let retry_ms = entry
                .front()
                .map_or(period_ms, |t| (t + period_ms).saturating_sub(now_ms));
            return RateDecision {
                allowed: false,
                remaining: 0,
                retry_after: retry_ms.div_ceil(1000).max(1),
            };
        }
        for _ in 0..count.min(calls) {
            entry.push_back(now_ms);
        }
        RateDecision {
            allowed: true,
            remaining: calls - used - count.min(calls),
            retry_after: 0,
        }
    }

    /// Records `count` calls after the fact (rate-limit-by-key's increment-condition).
    pub fn rate_add(&mut self, counter: u32, key: &str, calls: u64, count: u64, now_ms: u64) {
        if let Some(e) = self.windows.get_mut(&(counter, Box::from(key))) {
            for _ in 0..count {
                if e.len() as u64 >= calls {
                    break;
                }
                e.push_back(now_ms);
            }
        } else if self.windows.len() < self.max_keys {
            let mut e = VecDeque::new();
            for _ in 0..count.min(calls) {
                e.push_back(now_ms);
            }
            self.windows.insert((counter, Box::from(key)), e);
        }
    }

    /// Calls left in a sliding window without recording one.
    pub fn rate_peek(
        &mut self,
        counter: u32,
        key: &str,
        calls: u64,
        period_secs: u64,
        now_ms: u64,
    ) -> RateDecision {
        let period_ms = period_secs.saturating_mul(1000);
        let Some(e) = self.windows.get_mut(&(counter, Box::from(key))) else {
            return RateDecision {
                allowed: calls > 0,
                remaining: calls,
                retry_after: 0,
            };
        };
        while e.front().is_some_and(|t| t + period_ms <= now_ms) {
            e.pop_front();
        }
        let used = e.len() as u64;
        if used >= calls {
            let retry_ms = e
                .front()
                .map_or(period_ms, |t| (t + period_ms).saturating_sub(now_ms));
            return RateDecision {
                allowed: false,
                remaining: 0,
                retry_after: retry_ms.div_ceil(1000).max(1),
            };
        }
        RateDecision {
            allowed: true,
            remaining: calls - used,
            retry_after: 0,
        }
    }

    fn quota_cell(
        &mut self,
        label: &str,
        key: &str,
        period: u64,
        start: u64,
        now_s: u64,
    ) -> Option<&mut Quota> {
        let k = (Box::from(label), Box::from(key));
        if !self.quotas.contains_key(&k) && self.quotas.len() >= self.max_keys {
            self.sweep(now_s * 1000);
            if self.quotas.len() >= self.max_keys {
                return None;
            }
        }
        let window_start = window_start(start, period, now_s);
        let q = self.quotas.entry(k).or_default();
        if q.window_start != window_start {
            *q = Quota {
                window_start,
                calls: 0,
                bytes: 0,
            };
        }
        Some(q)
    }

    /// Whether a call fits the quota; `Err(seconds until the window renews)` if not.
    #[allow(clippy::too_many_arguments)]
    pub fn quota_check(
        &mut self,
        label: &str,
        key: &str,
        calls: u64,
        kb: u64,
        period: u64,
        start: u64,
        now_s: u64,
    ) -> Result<(), u64> {
        let renew = window_start(start, period, now_s) + period - now_s;
        let Some(q) = self.quota_cell(label, key, period, start, now_s) else {
            return Err(renew);
        };
        if (calls > 0 && q.calls >= calls) || (kb > 0 && q.bytes >= kb.saturating_mul(1024)) {
            return Err(renew);
        }
        Ok(())
    }

    /// Counts a finished call (and its bytes in and out) against a quota.
    pub fn quota_add(
        &mut self,
        label: &str,
        key: &str,
        period: u64,
        start: u64,
        bytes: u64,
        now_s: u64,
    ) {
        if let Some(q) = self.quota_cell(label, key, period, start, now_s) {
            q.calls += 1;
            q.bytes += bytes;
            self.quota_dirty = true;
        }
    }

    pub fn export_quotas(&mut self) -> Vec<QuotaCell> {
        self.quota_dirty = false;
        self.quotas
            .iter()
            .map(|((l, k), q)| {
                (
                    l.to_string(),
                    k.to_string(),
                    q.window_start,
                    q.calls,
                    q.bytes,
                )
            })
            .collect()
    }

    pub fn import_quotas(&mut self, cells: Vec<QuotaCell>) {
        for (label, key, window_start, calls, bytes) in cells.into_iter().take(self.max_keys) {
            self.quotas.insert(
                (label.into(), key.into()),
                Quota {
                    window_start,
                    calls,
                    bytes,
                },
            );
        }
    }

    /// Takes a slot of a limit-concurrency; `None` when `max` are in use.
    pub fn acquire(&mut self, counter: u32, key: &str, max: u32) -> Option<ConcurrencySlot> {
        let k = (counter, Box::from(key));
        if !self.concurrency.contains_key(&k) && self.concurrency.len() >= self.max_keys {
            self.concurrency.retain(|_, c| c.get() > 0);
            if self.concurrency.len() >= self.max_keys {
                return None;
            }
        }
        let cell = self.concurrency.entry(k).or_default();
        if cell.get() >= max {
            return None;
        }
        cell.set(cell.get() + 1);
        Some(ConcurrencySlot(Rc::clone(cell)))
    }

    pub fn jwt_cached(&self, policy: u32, token: &str) -> Option<Lifetime> {
        self.jwt.get(&(policy, Box::from(token))).copied()
    }

    pub fn jwt_remember(&mut self, policy: u32, token: &str, life: Lifetime) {
        if self.jwt.len() >= self.max_keys {
            // bounded: start over rather than grow (verifying again is only slower)
            self.jwt.clear();
        }
        self.jwt.insert((policy, Box::from(token)), life);
    }

    /// Drops expired windows, renewed quota cells, idle concurrency keys, expired tokens.
    pub fn sweep(&mut self, now_ms: u64) {
        let now_s = now_ms / 1000;
        self.windows.retain(|_, e| !e.is_empty());
        // Windows whose newest call is older than a day cannot matter to any sane period;
        // exact expiry is applied on access.
        self.windows
            .retain(|_, e| e.back().is_some_and(|t| t + 86_400_000 > now_ms));
        self.concurrency.retain(|_, c| c.get() > 0);
        self.jwt.retain(|_, l| l.exp.is_none_or(|e| e > now_s));
        let _ = now_s;
    }

    /// A new config: token verifications were made against the old keys.
    pub fn forget_tokens(&mut self) {
        self.jwt.clear();
    }

    pub fn keys(&self) -> usize {
        self.windows.len() + self.quotas.len() + self.concurrency.len() + self.jwt.len()
    }
}

/// The start of the fixed window holding `now`.
pub fn window_start(first: u64, period: u64, now: u64) -> u64 {
    if period == 0 || now < first {
        return first;
    }
    first + (now - first) / period * period
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_edges() {
        let mut c = Counters::new(100);
        let t0 = 1_000_000;
        assert_eq!(c.rate(1, "k", 2, 10, 1, t0).remaining, 1);
        assert_eq!(c.rate(1, "k", 2, 10, 1, t0 + 4_000).remaining, 0);
        let refused = c.rate(1, "k", 2, 10, 1, t0 + 9_999);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 1);
        // exactly one period after the first call, one slot frees
        let ok = c.rate(1, "k", 2, 10, 1, t0 + 10_000);
        assert!(ok.allowed);
        assert_eq!(ok.remaining, 0);
        let refused = c.rate(1, "k", 2, 10, 1, t0 + 10_001);
        assert_eq!(refused.retry_after, 4);
        // other keys and counters are independent
        assert!(c.rate(1, "other", 2, 10, 1, t0).allowed);
        assert!(c.rate(2, "k", 2, 10, 1, t0).allowed);
    }

    #[test]
    fn bounded_keys() {
        let mut c = Counters::new(16);
        for i in 0..16 {
            assert!(c.rate(1, &i.to_string(), 5, 1, 1, 1000).allowed);
        }
        assert!(
            !c.rate(1, "new", 5, 1, 1, 1500).allowed,
            "full: a new key is refused"
        );
        // after the windows expire, sweep makes room
        assert!(c.rate(1, "new", 5, 1, 1, 90_000_000).allowed);
        assert!(c.keys() <= 16);
    }

    #[test]
    fn quota_fixed_window_and_persistence() {
        let mut c = Counters::new(100);
        let start = 0;
        assert!(c.quota_check("q", "s", 2, 0, 60, start, 120).is_ok());
        c.quota_add("q", "s", 60, start, 10, 120);
        c.quota_add("q", "s", 60, start, 10, 130);
        assert_eq!(c.quota_check("q", "s", 2, 0, 60, start, 150), Err(30));
        let saved = c.export_quotas();
        let mut d = Counters::new(100);
        d.import_quotas(saved);
        assert_eq!(d.quota_check("q", "s", 2, 0, 60, start, 179), Err(1));
        assert!(
            d.quota_check("q", "s", 2, 0, 60, start, 180).is_ok(),
            "renewed"
        );
        // bandwidth
        d.quota_add("b", "s", 60, start, 2048, 10);
        assert!(d.quota_check("b", "s", 0, 2, 60, start, 11).is_err());
    }

    #[test]
    fn concurrency_slots_free_on_drop() {
        let mut c = Counters::new(100);
        let a = c.acquire(1, "k", 2).unwrap();
        let _b = c.acquire(1, "k", 2).unwrap();
        assert!(c.acquire(1, "k", 2).is_none());
        drop(a);
        assert!(c.acquire(1, "k", 2).is_some());
    }
}

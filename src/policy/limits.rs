//! Counters behind rate-limit, rate-limit-by-key, quota, quota-by-key and
//! limit-concurrency, plus the cache of verified JWTs. Owned by the event loop (one
//! thread, no locks); every map is bounded (`max_keys`) and `sweep` reclaims expired
//! windows. Rate limits use an exact sliding window (the call times of the last period,
//! at most `calls` per key); quotas a fixed window aligned to `first-period-start`.
//! Quota cells can be exported and imported so the agent can persist them across
//! restarts. Time comes in as an argument (milliseconds / seconds since the epoch).
//! Must not touch: disk, sockets, the agent (the loop hands snapshots over).

use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
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

/// One quota counter as the agent persists it: the policy level's label, the caller
/// key, the window (Unix seconds) and what was used in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCell {
    pub label: String,
    pub key: String,
    pub window_start: u64,
    pub window_end: u64,
    pub calls: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Quota {
    window_start: u64,
    /// When the window renews (Unix seconds): the cell is reclaimed after that.
    window_end: u64,
    calls: u64,
    bytes: u64,
    /// Changed since the last export.
    dirty: bool,
}

/// Values keyed by (group, caller key): a map per group, so a lookup with a borrowed
/// `&str` key allocates nothing; only inserting a new key copies it.
struct Keyed<G, T> {
    groups: HashMap<G, HashMap<Box<str>, T>>,
    len: usize,
}

impl<G: Hash + Eq, T> Keyed<G, T> {
    fn new() -> Self {
        Keyed {
            groups: HashMap::new(),
            len: 0,
        }
    }
    fn get_mut<Q>(&mut self, group: &Q, key: &str) -> Option<&mut T>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.groups.get_mut(group)?.get_mut(key)
    }
    fn get<Q>(&self, group: &Q, key: &str) -> Option<&T>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.groups.get(group)?.get(key)
    }
    /// The value for (group, key), inserted with `make` when absent (always `Some`).
    fn get_or_insert<Q>(&mut self, group: &Q, key: &str, make: impl FnOnce() -> T) -> Option<&mut T>
    where
        G: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = G> + ?Sized,
    {
        if !self.groups.contains_key(group) {
            self.groups.insert(group.to_owned(), HashMap::new());
        }
        let map = self.groups.get_mut(group)?;
        if !map.contains_key(key) {
            self.len += 1;
            map.insert(Box::from(key), make());
        }
        map.get_mut(key)
    }
    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut len = 0;
        self.groups.retain(|_, map| {
            map.retain(|_, v| keep(v));
            len += map.len();
            !map.is_empty()
        });
        self.len = len;
    }
    fn clear(&mut self) {
        self.groups.clear();
        self.len = 0;
    }
    fn iter_mut(&mut self) -> impl Iterator<Item = (&G, &str, &mut T)> {
        self.groups
            .iter_mut()
            .flat_map(|(g, map)| map.iter_mut().map(move |(k, v)| (g, &**k, v)))
    }
}

pub struct Counters {
    windows: Keyed<u64, VecDeque<u64>>,
    quotas: Keyed<String, Quota>,
    concurrency: Keyed<u64, Rc<Cell<u32>>>,
    jwt: Keyed<u64, Lifetime>,
    max_keys: usize,
    /// Some quota cell changed since the last export.
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

/// Drops the calls that left the window; returns (calls in it, seconds until the
/// oldest leaves).
fn slide(window: &mut VecDeque<u64>, period_ms: u64, now_ms: u64) -> (u64, u64) {
    while window.front().is_some_and(|t| t + period_ms <= now_ms) {
        window.pop_front();
    }
    let retry_ms = window
        .front()
        .map_or(period_ms, |t| (t + period_ms).saturating_sub(now_ms));
    (window.len() as u64, retry_ms.div_ceil(1000).max(1))
}

fn refused(retry_after: u64) -> RateDecision {
    RateDecision {
        allowed: false,
        remaining: 0,
        retry_after,
    }
}

impl Counters {
    pub fn new(max_keys: usize) -> Counters {
        Counters {
            windows: Keyed::new(),
            quotas: Keyed::new(),
            concurrency: Keyed::new(),
            jwt: Keyed::new(),
            max_keys: max_keys.max(16),
            quota_dirty: false,
        }
    }

    /// The window of (counter, key); a new one only while there is room (after
    /// reclaiming expired ones) — when full, new keys are refused rather than grown.
    fn window(&mut self, counter: u64, key: &str, now_ms: u64) -> Option<&mut VecDeque<u64>> {
        if self.windows.get(&counter, key).is_none() && self.windows.len >= self.max_keys {
            self.sweep(now_ms);
            if self.windows.len >= self.max_keys {
                return None;
            }
        }
        self.windows.get_or_insert(&counter, key, VecDeque::new)
    }

    /// Checks (and, when allowed, records `count`) a call in a sliding window.
    pub fn rate(
        &mut self,
        counter: u64,
        key: &str,
        calls: u64,
        period_secs: u64,
        count: u64,
        now_ms: u64,
    ) -> RateDecision {
        let period_ms = period_secs.saturating_mul(1000);
        let Some(window) = self.window(counter, key, now_ms) else {
            return refused(period_secs.max(1));
        };
        let (used, retry_after) = slide(window, period_ms, now_ms);
        if used + count.max(1) > calls {
            return refused(retry_after);
        }
        let count = count.min(calls);
        window.extend(std::iter::repeat_n(now_ms, count as usize));
        RateDecision {
            allowed: true,
            remaining: calls - used - count,
            retry_after: 0,
        }
    }

    /// Records `count` calls after the fact (rate-limit-by-key's increment-condition).
    pub fn rate_add(&mut self, counter: u64, key: &str, calls: u64, count: u64, now_ms: u64) {
        if let Some(window) = self.window(counter, key, now_ms) {
            let room = calls.saturating_sub(window.len() as u64);
            window.extend(std::iter::repeat_n(now_ms, count.min(room) as usize));
        }
    }

    /// Calls left in a sliding window without recording one.
    pub fn rate_peek(
        &mut self,
        counter: u64,
        key: &str,
        calls: u64,
        period_secs: u64,
        now_ms: u64,
    ) -> RateDecision {
        let Some(window) = self.windows.get_mut(&counter, key) else {
            return RateDecision {
                allowed: calls > 0,
                remaining: calls,
                retry_after: 0,
            };
        };
        let (used, retry_after) = slide(window, period_secs.saturating_mul(1000), now_ms);
        if used >= calls {
            return refused(retry_after);
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
        if self.quotas.get(label, key).is_none() && self.quotas.len >= self.max_keys {
            self.sweep(now_s * 1000);
            if self.quotas.len >= self.max_keys {
                return None;
            }
        }
        let window_start = window_start(start, period, now_s);
        let q = self.quotas.get_or_insert(label, key, Quota::default)?;
        if q.window_start != window_start {
            *q = Quota {
                window_start,
                ..Quota::default()
            };
        }
        q.window_end = window_start + period;
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
            q.dirty = true;
            self.quota_dirty = true;
        }
    }

    /// The quota cells changed since the last export (for the agent to persist); they
    /// count as clean from now on.
    pub fn export_quotas(&mut self) -> Vec<QuotaCell> {
        if !std::mem::take(&mut self.quota_dirty) {
            return Vec::new();
        }
        let mut cells = Vec::new();
        for (label, key, q) in self.quotas.iter_mut() {
            if std::mem::take(&mut q.dirty) {
                cells.push(QuotaCell {
                    label: label.clone(),
                    key: key.to_string(),
                    window_start: q.window_start,
                    window_end: q.window_end,
                    calls: q.calls,
                    bytes: q.bytes,
                });
            }
        }
        cells
    }

    /// Marks exported cells as changed again (the agent could not take them).
    pub fn unexport_quotas(&mut self, cells: &[QuotaCell]) {
        for c in cells {
            if let Some(q) = self.quotas.get_mut(c.label.as_str(), &c.key) {
                q.dirty = true;
                self.quota_dirty = true;
            }
        }
    }

    /// Restores persisted cells (at start), skipping windows that ended before `now_s`.
    pub fn import_quotas(&mut self, cells: Vec<QuotaCell>, now_s: u64) {
        for c in cells {
            if c.window_end <= now_s {
                continue;
            }
            if self.quotas.len >= self.max_keys {
                break;
            }
            if let Some(q) = self
                .quotas
                .get_or_insert(c.label.as_str(), &c.key, Quota::default)
            {
                *q = Quota {
                    window_start: c.window_start,
                    window_end: c.window_end,
                    calls: c.calls,
                    bytes: c.bytes,
                    dirty: false,
                };
            }
        }
    }

    /// Takes a slot of a limit-concurrency; `None` when `max` are in use.
    pub fn acquire(&mut self, counter: u64, key: &str, max: u32) -> Option<ConcurrencySlot> {
        if self.concurrency.get(&counter, key).is_none() && self.concurrency.len >= self.max_keys {
            self.concurrency.retain(|c| c.get() > 0);
            if self.concurrency.len >= self.max_keys {
                return None;
            }
        }
        let cell = self.concurrency.get_or_insert(&counter, key, Rc::default)?;
        if cell.get() >= max {
            return None;
        }
        cell.set(cell.get() + 1);
        Some(ConcurrencySlot(Rc::clone(cell)))
    }

    pub fn jwt_cached(&self, policy: u64, token: &str) -> Option<Lifetime> {
        self.jwt.get(&policy, token).copied()
    }

    pub fn jwt_remember(&mut self, policy: u64, token: &str, life: Lifetime) {
        if self.jwt.len >= self.max_keys {
            // bounded: start over rather than grow (verifying again is only slower)
            self.jwt.clear();
        }
        if let Some(cached) = self.jwt.get_or_insert(&policy, token, || life) {
            *cached = life;
        }
    }

    /// Drops empty or day-old windows (exact expiry is applied on access), quota cells
    /// whose window has renewed, idle concurrency keys and expired tokens.
    pub fn sweep(&mut self, now_ms: u64) {
        let now_s = now_ms / 1000;
        self.windows
            .retain(|w| w.back().is_some_and(|t| t + 86_400_000 > now_ms));
        self.quotas.retain(|q| q.window_end > now_s);
        self.concurrency.retain(|c| c.get() > 0);
        self.jwt.retain(|l| l.exp.is_none_or(|e| e > now_s));
    }

    /// A new config: token verifications were made against the old keys.
    pub fn forget_tokens(&mut self) {
        self.jwt.clear();
    }

    pub fn keys(&self) -> usize {
        self.windows.len + self.quotas.len + self.concurrency.len + self.jwt.len
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
        assert_eq!(
            saved,
            vec![QuotaCell {
                label: "q".into(),
                key: "s".into(),
                window_start: 120,
                window_end: 180,
                calls: 2,
                bytes: 20
            }]
        );
        assert!(c.export_quotas().is_empty(), "exported cells are clean");
        c.unexport_quotas(&saved);
        assert_eq!(c.export_quotas(), saved, "a refused export is retried");
        let mut d = Counters::new(100);
        let ended = QuotaCell {
            key: "old".into(),
            window_end: 150,
            ..saved[0].clone()
        };
        d.import_quotas(vec![saved[0].clone(), ended], 150);
        assert_eq!(d.keys(), 1, "a window that ended is not restored");
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

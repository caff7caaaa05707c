//! Counters behind rate-limit, rate-limit-by-key, quota, quota-by-key and
//! limit-concurrency, plus the cache of verified JWTs; they also carry the built-in
//! cache (`cache.rs`) to the policies. Owned by the event loop (one thread, no locks).
//!
//! Every map is bounded in bytes, not in keys: each entry is charged its key's length
//! and the most its value can hold, so a client choosing a fresh counter key per request
//! (rate-limit-by-key on a header) costs a known amount. When a map is full, a new key
//! takes the place of an old one by the CLOCK rule (an entry touched since the hand
//! last passed gets a second chance; an expired one goes first), so a flood of new keys
//! evicts itself, never refuses a new key, and never sweeps all maps on the request
//! path. Entries expire by their own policy's period.
//!
//! Rate limits are a sliding window: exact call times for limits of up to `EXACT_CALLS`
//! calls, counts per 1/`BUCKETS` of the period above that (fixed memory, the window then
//! slides by whole buckets). Quotas are a fixed window aligned to `first-period-start`;
//! their cells can be exported and imported so the agent can persist them across
//! restarts. Time comes in as an argument (milliseconds / seconds since the epoch).
//! Must not touch: disk, sockets, the agent (the loop hands snapshots over).

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use super::cache::Cache;
use super::jwt::Lifetime;
use super::keyed::Keyed;

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

/// Rate limits of up to this many calls keep exact call times.
pub const EXACT_CALLS: u64 = 64;
/// Larger ones count per 1/BUCKETS of their period.
pub const BUCKETS: usize = 16;

/// The calls of one key within its sliding window.
enum Window {
    /// Call times (ms), oldest first: at most `EXACT_CALLS`.
    Exact(VecDeque<u64>),
    /// Calls per bucket of `bucket_ms`; `newest` is the absolute number of the bucket
    /// the last call fell in, and bucket `b` lives at `counts[b % BUCKETS]`.
    Buckets {
        bucket_ms: u64,
        newest: u64,
        counts: [u32; BUCKETS],
    },
}

impl Window {
    fn for_limit(calls: u64, period_ms: u64) -> Window {
        if calls <= EXACT_CALLS {
            Window::Exact(VecDeque::new())
        } else {
            Window::Buckets {
                bucket_ms: (period_ms / BUCKETS as u64).max(1),
                newest: 0,
                counts: [0; BUCKETS],
            }
        }
    }

    /// The most a window for this limit holds, in bytes.
    fn bytes_for(calls: u64) -> usize {
        if calls <= EXACT_CALLS {
            calls as usize * 8
        } else {
            BUCKETS * 4 + 16
        }
    }

    /// Drops what left the window; returns (calls in it, seconds until the oldest
    /// leaves).
    fn slide(&mut self, period_ms: u64, now_ms: u64) -> (u64, u64) {
        match self {
            Window::Exact(times) => {
                while times.front().is_some_and(|t| t + period_ms <= now_ms) {
                    times.pop_front();
                }
                let retry_ms = times
                    .front()
                    .map_or(period_ms, |t| (t + period_ms).saturating_sub(now_ms));
                (times.len() as u64, retry_ms.div_ceil(1000).max(1))
            }
            Window::Buckets {
                bucket_ms,
                newest,
                counts,
            } => {
                let now_bucket = now_ms / *bucket_ms;
                if now_bucket > *newest {
                    let stale = (now_bucket - *newest).min(BUCKETS as u64);
                    for b in (now_bucket + 1 - stale)..=now_bucket {
                        counts[(b % BUCKETS as u64) as usize] = 0;
                    }
                    *newest = now_bucket;
                }
                let used: u64 = counts.iter().map(|c| u64::from(*c)).sum();
                let oldest = (0..BUCKETS as u64)
                    .rev()
                    .map(|age| newest.saturating_sub(age))
                    .find(|b| counts[(b % BUCKETS as u64) as usize] > 0);
                let retry_ms = oldest.map_or(period_ms, |b| {
                    ((b + BUCKETS as u64) * *bucket_ms).saturating_sub(now_ms)
                });
                (used, retry_ms.div_ceil(1000).max(1))
            }
        }
    }

    /// Records `count` calls at `now_ms` (after `slide`).
    fn record(&mut self, count: u64, now_ms: u64) {
        match self {
            Window::Exact(times) => times.extend(std::iter::repeat_n(now_ms, count as usize)),
            Window::Buckets {
                bucket_ms, counts, ..
            } => {
                let i = ((now_ms / *bucket_ms) % BUCKETS as u64) as usize;
                counts[i] = counts[i].saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Window::Exact(times) => times.is_empty(),
            Window::Buckets { counts, .. } => counts.iter().all(|c| *c == 0),
        }
    }
}

pub struct Counters {
    windows: Keyed<u64, Window>,
    quotas: Keyed<String, Quota>,
    concurrency: Keyed<u64, Rc<Cell<u32>>>,
    jwt: Keyed<u64, Lifetime>,
    /// Some quota cell changed since the last export.
    pub quota_dirty: bool,
    /// The built-in cache (cache-*-value policies); none until the loop sizes it.
    pub cache: Cache,
    /// send-one-way-request's requests until the loop sends them.
    pub outbox: super::outgoing::Outbox,
    /// Signing keys from OpenID configurations (validate-jwt openid-config).
    pub keys: super::keyring::KeyRing,
    /// The external cache (Redis): whether it is there and up, and what goes to it
    /// without a wait.
    pub external: super::external::External,
    /// Access tokens of the gateway's identity (authentication-managed-identity).
    pub tokens: super::tokens::TokenRing,
    /// Client certificates policies gave whole (authentication-certificate body), by
    /// a digest of the body and password: a PFX is decrypted once, not per call.
    pub given_identities: GivenIdentities,
}

/// The identities built from authentication-certificate bodies, at most `MAX` of them
/// (all forgotten when full: bodies are few, a named value or two).
#[derive(Default)]
pub struct GivenIdentities(std::collections::HashMap<[u8; 32], super::call::ClientTls>);

impl GivenIdentities {
    const MAX: usize = 64;

    pub fn get(&self, digest: &[u8; 32]) -> Option<super::call::ClientTls> {
        self.0.get(digest).cloned()
    }

    pub fn put(&mut self, digest: [u8; 32], identity: super::call::ClientTls) {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(digest, identity);
    }
}

/// Held while a request is inside a limit-concurrency; dropping it frees the slot.
#[derive(Debug)]
pub struct ConcurrencySlot(Rc<Cell<u32>>);

impl Drop for ConcurrencySlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

fn refused(retry_after: u64) -> RateDecision {
    RateDecision {
        allowed: false,
        remaining: 0,
        retry_after,
    }
}

/// What a quota cell is charged besides its key.
const QUOTA_BYTES: usize = 48;

impl Counters {
    /// Counters that hold at most `max_bytes` in all: half for rate-limit windows, a
    /// quarter for quota cells, the rest for concurrency keys and verified tokens.
    pub fn new(max_bytes: usize) -> Counters {
        let max_bytes = max_bytes.max(64 * 1024);
        Counters {
            windows: Keyed::new(max_bytes / 2),
            quotas: Keyed::new(max_bytes / 4),
            concurrency: Keyed::new(max_bytes / 16),
            jwt: Keyed::new(max_bytes * 3 / 16),
            quota_dirty: false,
            cache: Cache::new(0),
            outbox: Default::default(),
            keys: Default::default(),
            external: Default::default(),
            tokens: Default::default(),
            given_identities: Default::default(),
        }
    }

    /// The same counters carrying `cache`.
    pub fn with_cache(self, cache: Cache) -> Counters {
        Counters { cache, ..self }
    }

    /// The window of (counter, key), made for a limit of `calls` per `period_ms` when
    /// new; it lives until a period after its last call. `None`: no room.
    fn window(
        &mut self,
        counter: u64,
        key: &str,
        calls: u64,
        period_ms: u64,
        now_ms: u64,
    ) -> Option<&mut Window> {
        self.windows.entry(
            &counter,
            key,
            Window::bytes_for(calls),
            now_ms + period_ms,
            now_ms,
            |_| true,
            || Window::for_limit(calls, period_ms),
        )
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
        let Some(window) = self.window(counter, key, calls, period_ms, now_ms) else {
            return refused(period_secs.max(1));
        };
        let (used, retry_after) = window.slide(period_ms, now_ms);
        if used + count.max(1) > calls {
            return refused(retry_after);
        }
        let count = count.min(calls);
        window.record(count, now_ms);
        RateDecision {
            allowed: true,
            remaining: calls - used - count,
            retry_after: 0,
        }
    }

    /// Records `count` calls after the fact (rate-limit-by-key's increment-condition).
    pub fn rate_add(
        &mut self,
        counter: u64,
        key: &str,
        calls: u64,
        period_secs: u64,
        count: u64,
        now_ms: u64,
    ) {
        let period_ms = period_secs.saturating_mul(1000);
        if let Some(window) = self.window(counter, key, calls, period_ms, now_ms) {
            let (used, _) = window.slide(period_ms, now_ms);
            window.record(count.min(calls.saturating_sub(used)), now_ms);
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
        let (used, retry_after) = window.slide(period_secs.saturating_mul(1000), now_ms);
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
        let window_start = window_start(start, period, now_s);
        let window_end = window_start + period;
        let q = self.quotas.entry(
            label,
            key,
            label.len() + QUOTA_BYTES,
            window_end.saturating_mul(1000),
            now_s.saturating_mul(1000),
            |_| true,
            Quota::default,
        )?;
        if q.window_start != window_start {
            *q = Quota {
                window_start,
                ..Quota::default()
            };
        }
        q.window_end = window_end;
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
        let now_ms = now_s.saturating_mul(1000);
        for c in cells {
            if c.window_end <= now_s {
                continue;
            }
            // restoring never evicts what is restored already: stop when full
            let Some(q) = self.quotas.entry(
                c.label.as_str(),
                &c.key,
                c.label.len() + QUOTA_BYTES,
                c.window_end.saturating_mul(1000),
                now_ms,
                |_| false,
                Quota::default,
            ) else {
                break;
            };
            *q = Quota {
                window_start: c.window_start,
                window_end: c.window_end,
                calls: c.calls,
                bytes: c.bytes,
                dirty: false,
            };
        }
    }

    /// Takes a slot of a limit-concurrency; `None` when `max` are in use (or every
    /// key in the map is busy).
    pub fn acquire(
        &mut self,
        counter: u64,
        key: &str,
        max: u32,
        now_ms: u64,
    ) -> Option<ConcurrencySlot> {
        let cell =
            self.concurrency
                .entry(&counter, key, 16, 0, now_ms, |c| c.get() == 0, Rc::default)?;
        if cell.get() >= max {
            return None;
        }
        cell.set(cell.get() + 1);
        Some(ConcurrencySlot(Rc::clone(cell)))
    }

    pub fn jwt_cached(&self, policy: u64, token: &str) -> Option<Lifetime> {
        self.jwt.get(&policy, token).copied()
    }

    pub fn jwt_remember(&mut self, policy: u64, token: &str, life: Lifetime, now_ms: u64) {
        let expires_ms = life.exp.map_or(u64::MAX, |e| e.saturating_mul(1000));
        if let Some(cached) =
            self.jwt
                .entry(&policy, token, 24, expires_ms, now_ms, |_| true, || life)
        {
            *cached = life;
        }
    }

    /// Drops rate windows whose period passed since their last call, quota cells
    /// whose window renewed, idle concurrency keys and expired tokens.
    pub fn sweep(&mut self, now_ms: u64) {
        self.windows
            .retain(|w, expires_ms| expires_ms > now_ms && !w.is_empty());
        self.quotas.retain(|_, expires_ms| expires_ms > now_ms);
        self.concurrency.retain(|c, _| c.get() > 0);
        self.jwt.retain(|_, expires_ms| expires_ms > now_ms);
    }

    /// A new config: token verifications were made against the old keys.
    pub fn forget_tokens(&mut self) {
        self.jwt.clear();
    }

    pub fn keys(&self) -> usize {
        self.windows.usage().1
            + self.quotas.usage().1
            + self.concurrency.usage().1
            + self.jwt.usage().1
    }

    /// Bytes charged to all maps.
    pub fn bytes(&self) -> usize {
        self.windows.usage().0
            + self.quotas.usage().0
            + self.concurrency.usage().0
            + self.jwt.usage().0
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

    /// Before: a full map refused every new key until old windows were a day old, and
    /// swept all maps on the request path for each one.
    #[test]
    fn a_flood_of_new_keys_evicts_itself_and_never_refuses_or_hurts_active_keys() {
        let mut c = Counters::new(64 * 1024);
        let t0 = 1_000_000;
        for _ in 0..3 {
            assert!(c.rate(1, "victim", 3, 60, 1, t0).allowed);
        }
        for i in 0..10_000u64 {
            let key = format!("flood-{i}");
            assert!(c.rate(1, &key, 5, 60, 1, t0 + i).allowed, "{key} refused");
            if i % 50 == 0 {
                // the active caller keeps calling (and keeps being refused)
                assert!(!c.rate(1, "victim", 3, 60, 1, t0 + i).allowed, "at {i}");
            }
        }
        assert!(c.bytes() <= 64 * 1024, "{}", c.bytes());
        assert!(c.keys() < 400, "{}", c.keys());
        assert!(
            !c.rate(1, "victim", 3, 60, 1, t0 + 10_000).allowed,
            "kept its window"
        );
    }

    #[test]
    fn windows_expire_by_their_own_period() {
        let mut c = Counters::new(1 << 20);
        assert!(c.rate(1, "short", 5, 1, 1, 1_000).allowed);
        assert!(c.rate(2, "long", 5, 3_600, 1, 1_000).allowed);
        c.sweep(2_500);
        assert_eq!(c.keys(), 1, "the 1 s window went, the hour stays");
        c.sweep(3_602_000);
        assert_eq!(c.keys(), 0);
    }

    /// A limit of a million calls costs a fixed few bytes, not 8 per call.
    #[test]
    fn large_limits_count_in_buckets_with_fixed_memory() {
        let mut c = Counters::new(1 << 20);
        let t0 = 10_000_000;
        for i in 0..1000u64 {
            assert!(c.rate(1, "k", 1_000_000, 60, 1_000, t0 + i).allowed);
        }
        let last = c.rate(1, "k", 1_000_000, 60, 1, t0 + 2_000);
        assert!(!last.allowed, "1,000,000 counted");
        assert!(c.bytes() < 256, "{}", c.bytes());
        // the window slides by buckets of 60/16 s: the calls leave once their bucket does
        let retry = last.retry_after;
        assert!((55..=60).contains(&retry), "{retry}");
        assert!(c.rate(1, "k", 1_000_000, 60, 1, t0 + 64_000).allowed);
    }

    #[test]
    fn busy_concurrency_keys_are_never_evicted() {
        let mut c = Counters::new(64 * 1024);
        let held: Vec<ConcurrencySlot> = (0..10_000)
            .map_while(|i| c.acquire(1, &format!("k{i}"), 1, 0))
            .collect();
        assert!(!held.is_empty() && held.len() < 10_000, "{}", held.len());
        assert!(c.acquire(1, "k0", 1, 0).is_none(), "still busy");
        drop(held);
        assert!(c.acquire(1, "new", 1, 0).is_some(), "idle keys make room");
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
        let a = c.acquire(1, "k", 2, 0).unwrap();
        let _b = c.acquire(1, "k", 2, 0).unwrap();
        assert!(c.acquire(1, "k", 2, 0).is_none());
        drop(a);
        assert!(c.acquire(1, "k", 2, 0).is_some());
    }
}

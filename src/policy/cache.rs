//! The built-in cache behind `cache-store-value`, `cache-lookup-value` and
//! `cache-remove-value` (APIM's internal cache): owned by the event loop, bounded in
//! bytes (`cache.memory.max`), each entry with its own time to live, the least
//! recently used making room (CLOCK, as the policy counters), with hit, miss, store
//! and eviction counts. A value is kept detached from the call that stored it: a JSON
//! token as its compact text (read back as a new token, so no two calls share one),
//! other values as they are when nothing in them can change, else as their text.
//! Must not touch: disk, sockets, the clock (time comes in as an argument).

use std::borrow::Cow;

use super::expr::{parse_json_body, Val};
use super::keyed::Keyed;

/// One cached value.
#[derive(Debug)]
enum Cached {
    /// A value nothing can change (null, bool, number, string, date, time span, bytes).
    Plain(Val<'static>),
    /// A JObject or JArray, as compact JSON text.
    Json(Box<str>),
}

/// What the cache has done, for metrics and status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    /// Stores refused because the value alone exceeds the budget.
    pub refused: u64,
    pub evictions: u64,
    pub bytes: usize,
    pub entries: usize,
}

pub struct Cache {
    values: Keyed<u8, Cached>,
    stats: CacheStats,
}

/// The cache's one group (values; responses get their own when they are cached).
const VALUES: u8 = 0;

impl Cache {
    /// A cache holding at most `max_bytes` (0: nothing is ever kept).
    pub fn new(max_bytes: usize) -> Cache {
        Cache {
            values: Keyed::new(max_bytes),
            stats: CacheStats::default(),
        }
    }

    /// The value stored under `key`, unless it expired.
    pub fn lookup(&mut self, key: &str, now_ms: u64) -> Option<Val<'static>> {
        let found = match self.values.live(&VALUES, key, now_ms) {
            None => None,
            Some(Cached::Plain(v)) => Some(v.clone()),
            // the text was printed from a token, so it parses
            Some(Cached::Json(text)) => parse_json_body(text).ok().map(Val::Json),
        };
        match found {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        found
    }

    /// Stores `value` under `key` for `ttl_ms`, in place of what was there. False when
    /// the value alone exceeds the budget (nothing is stored then).
    pub fn store(&mut self, key: &str, value: &Val, ttl_ms: u64, now_ms: u64) -> bool {
        let cached = match value {
            Val::Json(j) => match j.print(false) {
                Ok(text) => Cached::Json(text.into()),
                Err(_) => Cached::Plain(Val::Str(Cow::Owned(value.to_text().into_owned()))),
            },
            Val::Null
            | Val::Bool(_)
            | Val::Int(_)
            | Val::Double(_)
            | Val::Date(_)
            | Val::Span(_)
            | Val::Bytes(_)
            | Val::Str(_) => Cached::Plain(value.clone().into_owned()),
            other => Cached::Plain(Val::Str(Cow::Owned(other.to_text().into_owned()))),
        };
        let bytes = match &cached {
            Cached::Json(text) => text.len(),
            Cached::Plain(Val::Str(s)) => s.len(),
            Cached::Plain(Val::Bytes(b)) => b.len(),
            Cached::Plain(_) => 16,
        };
        let before = self.values.evicted;
        let stored = self.values.replace(
            &VALUES,
            key,
            bytes,
            now_ms.saturating_add(ttl_ms),
            now_ms,
            cached,
        );
        self.stats.evictions += self.values.evicted - before;
        if stored {
            self.stats.stores += 1;
        } else {
            self.stats.refused += 1;
        }
        stored
    }

    /// Drops `key`'s value, if there is one.
    pub fn remove(&mut self, key: &str) {
        self.values.remove_key(&VALUES, key);
    }

    pub fn stats(&self) -> CacheStats {
        let (bytes, entries) = self.values.usage();
        CacheStats {
            bytes,
            entries,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Option<Val>) -> Option<String> {
        v.map(|v| v.to_text().into_owned())
    }

    #[test]
    fn values_live_for_their_time_and_are_detached() {
        let mut c = Cache::new(1 << 20);
        assert!(c.store("k", &Val::Str("v".into()), 1000, 0));
        assert_eq!(text(c.lookup("k", 999)), Some("v".into()));
        assert_eq!(text(c.lookup("k", 1000)), None);
        // a JSON token comes back as a new token: changing it changes nothing cached
        let doc = parse_json_body(r#"{"a": [1, 2]}"#).unwrap();
        assert!(c.store("j", &Val::Json(doc), 60_000, 0));
        let Some(Val::Json(got)) = c.lookup("j", 1) else {
            panic!("a token")
        };
        got.set("a", crate::policy::expr::Json::Int(3)).unwrap();
        assert_eq!(
            text(c.lookup("j", 2)),
            Some("{\n  \"a\": [\n    1,\n    2\n  ]\n}".into())
        );
        // stored again: replaced; removed: gone
        assert!(c.store("k", &Val::Int(7), 1000, 0));
        assert_eq!(text(c.lookup("k", 1)), Some("7".into()));
        c.remove("k");
        assert_eq!(text(c.lookup("k", 1)), None);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.stores, s.entries), (4, 2, 3, 1));
    }

    #[test]
    fn the_budget_holds_and_old_entries_make_room() {
        let mut c = Cache::new(64 * 1024);
        let big = Val::Str("x".repeat(1000).into());
        for i in 0..1000 {
            assert!(c.store(&format!("key-{i}"), &big, 60_000, 0));
            assert!(c.stats().bytes <= 64 * 1024);
        }
        let s = c.stats();
        assert!(s.evictions > 900, "{s:?}");
        assert_eq!(text(c.lookup("key-999", 1)), Some("x".repeat(1000)));
        assert!(c.lookup("key-0", 1).is_none());
        // one value larger than the whole budget is refused, and counted
        assert!(!c.store("huge", &Val::Str("y".repeat(70 * 1024).into()), 1000, 0));
        assert_eq!(c.stats().refused, 1);
        // no budget: nothing is kept
        let mut none = Cache::new(0);
        assert!(!none.store("k", &Val::Int(1), 1000, 0));
    }
}

//! The built-in cache behind `cache-store-value`, `cache-lookup-value` and
//! `cache-remove-value`, and the responses `cache-store` keeps for `cache-lookup`
//! (APIM's internal cache): owned by the event loop, bounded in
//! bytes (`cache.memory.max`), each entry with its own time to live, the least
//! recently used making room (CLOCK, as the policy counters), with hit, miss, store
//! and eviction counts. A value is kept detached from the call that stored it: a JSON
//! token as its compact text (read back as a new token, so no two calls share one),
//! other values as they are when nothing in them can change, else as their text.
//! Must not touch: disk, sockets, the clock (time comes in as an argument).

use std::borrow::Cow;
use std::rc::Rc;

use super::expr::{parse_json_body, Val};
use super::keyed::Keyed;

/// One cached value.
#[derive(Debug)]
enum Cached {
    /// A value nothing can change (null, bool, number, string, date, time span, bytes).
    Plain(Val<'static>),
    /// A JObject or JArray, as compact JSON text.
    Json(Box<str>),
    /// A response kept by cache-store.
    Response(Rc<CachedResponse>),
}

/// A response as cache-store kept it: what is sent again on a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub status: u16,
    pub reason: String,
    /// The headers sent with it (framing and hop-by-hop ones left out).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it was stored and until when it is served (ms since 1970).
    pub stored_ms: u64,
    pub expires_ms: u64,
}

/// A response as the external cache keeps it: `R1`, the status, when it was stored
/// and until when it is served, the reason, the headers (each length-prefixed), then
/// the body.
pub fn encode_response(r: &CachedResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(r.body.len() + 64);
    out.extend_from_slice(b"R1");
    out.extend_from_slice(&r.status.to_be_bytes());
    out.extend_from_slice(&r.stored_ms.to_be_bytes());
    out.extend_from_slice(&r.expires_ms.to_be_bytes());
    let text = |out: &mut Vec<u8>, t: &str| {
        out.extend_from_slice(&u32::try_from(t.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    };
    text(&mut out, &r.reason);
    out.extend_from_slice(&u32::try_from(r.headers.len()).unwrap_or(0).to_be_bytes());
    for (name, value) in &r.headers {
        text(&mut out, name);
        text(&mut out, value);
    }
    out.extend_from_slice(&r.body);
    out
}

/// A response `encode_response` wrote (None: not one, or cut short).
pub fn decode_response(bytes: &[u8]) -> Option<CachedResponse> {
    struct Cursor<'b>(&'b [u8]);
    impl<'b> Cursor<'b> {
        fn take(&mut self, n: usize) -> Option<&'b [u8]> {
            let head = self.0.get(..n)?;
            self.0 = &self.0[n..];
            Some(head)
        }
        fn number<const N: usize>(&mut self) -> Option<[u8; N]> {
            self.take(N)?.try_into().ok()
        }
        fn text(&mut self) -> Option<String> {
            let n = u32::from_be_bytes(self.number()?) as usize;
            String::from_utf8(self.take(n)?.to_vec()).ok()
        }
    }
    let mut c = Cursor(bytes.strip_prefix(b"R1")?);
    let status = u16::from_be_bytes(c.number()?);
    let stored_ms = u64::from_be_bytes(c.number()?);
    let expires_ms = u64::from_be_bytes(c.number()?);
    let reason = c.text()?;
    let count = u32::from_be_bytes(c.number()?) as usize;
    let mut headers = Vec::with_capacity(count.min(256));
    for _ in 0..count {
        headers.push((c.text()?, c.text()?));
    }
    Some(CachedResponse {
        status,
        reason,
        headers,
        body: c.0.to_vec(),
        stored_ms,
        expires_ms,
    })
}

/// A value as the external cache keeps it: a type letter, then its text (`s` string,
/// `j` JSON, `i` integer, `d` double, `b` bool, `n` null).
pub fn encode_value(v: &Val) -> Vec<u8> {
    let (kind, text): (u8, Cow<str>) = match v {
        Val::Null => (b'n', Cow::Borrowed("")),
        Val::Bool(b) => (b'b', Cow::Borrowed(if *b { "1" } else { "0" })),
        Val::Int(i) => (b'i', Cow::Owned(i.to_string())),
        Val::Double(d) => (b'd', Cow::Owned(format!("{d:?}"))),
        Val::Json(j) => match j.print(false) {
            Ok(t) => (b'j', Cow::Owned(t)),
            Err(_) => (b's', v.to_text()),
        },
        other => (b's', other.to_text()),
    };
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(kind);
    out.extend_from_slice(text.as_bytes());
    out
}

/// A value `encode_value` wrote (None: not one).
pub fn decode_value(bytes: &[u8]) -> Option<Val<'static>> {
    let (kind, rest) = bytes.split_first()?;
    let text = std::str::from_utf8(rest).ok()?;
    Some(match kind {
        b'n' => Val::Null,
        b'b' => Val::Bool(text == "1"),
        b'i' => Val::Int(text.parse().ok()?),
        b'd' => Val::Double(text.parse().ok()?),
        b'j' => Val::Json(parse_json_body(text).ok()?),
        b's' => Val::Str(Cow::Owned(text.to_string())),
        _ => return None,
    })
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

/// The cache's groups: values (cache-*-value) and responses (cache-store).
const VALUES: u8 = 0;
const RESPONSES: u8 = 1;

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
            Some(Cached::Response(_)) => None,
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
            Cached::Plain(_) | Cached::Response(_) => 16,
        };
        self.keep(
            VALUES,
            key,
            bytes,
            now_ms.saturating_add(ttl_ms),
            now_ms,
            cached,
        )
    }

    /// Keeps `cached` under (`group`, `key`) until `expires_ms`, counted.
    fn keep(
        &mut self,
        group: u8,
        key: &str,
        bytes: usize,
        expires_ms: u64,
        now_ms: u64,
        cached: Cached,
    ) -> bool {
        let before = self.values.evicted;
        let stored = self
            .values
            .replace(&group, key, bytes, expires_ms, now_ms, cached);
        self.stats.evictions += self.values.evicted - before;
        if stored {
            self.stats.stores += 1;
        } else {
            self.stats.refused += 1;
        }
        stored
    }

    /// The response cache-store kept under `key`, unless it expired.
    pub fn lookup_response(&mut self, key: &str, now_ms: u64) -> Option<Rc<CachedResponse>> {
        let found = match self.values.live(&RESPONSES, key, now_ms) {
            Some(Cached::Response(r)) => Some(Rc::clone(r)),
            _ => None,
        };
        match found {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        found
    }

    /// Keeps `response` under `key` until its `expires_ms`. False when it alone
    /// exceeds the budget.
    pub fn store_response(&mut self, key: &str, response: CachedResponse, now_ms: u64) -> bool {
        let bytes = response.body.len()
            + response.reason.len()
            + response
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 16)
                .sum::<usize>();
        let expires = response.expires_ms;
        self.keep(
            RESPONSES,
            key,
            bytes,
            expires,
            now_ms,
            Cached::Response(Rc::new(response)),
        )
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

    #[test]
    fn a_response_comes_back_from_its_encoding_and_a_cut_one_does_not() {
        let r = CachedResponse {
            status: 203,
            reason: "Non-Authoritative".into(),
            headers: vec![
                ("X-A".into(), "1".into()),
                ("Content-Type".into(), "a/b".into()),
            ],
            body: b"\x00body\xff".to_vec(),
            stored_ms: 1_700_000_000_000,
            expires_ms: 1_700_000_060_000,
        };
        let bytes = encode_response(&r);
        let back = decode_response(&bytes).unwrap();
        assert_eq!(
            (
                back.status,
                back.reason.as_str(),
                &back.headers,
                &back.body,
                back.stored_ms,
                back.expires_ms
            ),
            (
                r.status,
                r.reason.as_str(),
                &r.headers,
                &r.body,
                r.stored_ms,
                r.expires_ms
            )
        );
        let head = bytes.len() - r.body.len();
        for n in 0..head {
            assert!(decode_response(&bytes[..n]).is_none(), "{n}");
        }
        assert!(decode_response(b"s a value").is_none());
    }

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

    #[test]
    fn responses_live_apart_from_values_until_they_expire() {
        let mut c = Cache::new(1 << 20);
        let response = CachedResponse {
            status: 200,
            reason: "OK".into(),
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"cached".to_vec(),
            stored_ms: 0,
            expires_ms: 1000,
        };
        assert!(c.store_response("k", response.clone(), 0));
        assert!(
            c.store("k", &Val::Int(1), 1000, 0),
            "a value under the same key"
        );
        assert_eq!(c.lookup_response("k", 999).as_deref(), Some(&response));
        assert_eq!(text(c.lookup("k", 999)), Some("1".into()));
        assert!(c.lookup_response("k", 1000).is_none(), "expired");
        assert!(c.lookup_response("other", 1).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.stores), (2, 2, 2));
    }
}

//! `cache-lookup` and `cache-store`: responses kept in the built-in cache
//! (`policy::cache`), as APIM's response caching. cache-lookup (inbound) makes the key
//! of a GET (the API, operation, path, the `vary-by-query-parameter` and
//! `vary-by-header` values, the developer and their groups when asked) and answers a
//! hit from memory without a backend connection (a HEAD too, from a GET's response;
//! a HEAD's own response is never kept); outbound then goes on after
//! cache-store, as in APIM. A miss leaves the key for cache-store (outbound), which keeps
//! a 200 (any status with `cache-response`) for `duration` seconds unless the response
//! says `Cache-Control: no-store` (or `private`, unless private caching is allowed).
//! A request with `Authorization` is neither looked up nor stored unless
//! `allow-private-response-caching`. `downstream-caching-type` private or public sets
//! `Cache-Control` (max-age, must-revalidate) on what goes out; a hit also says `Age`.
//! With an external cache (`cache.external.url`) and `caching-type` external or
//! prefer-external (the default), responses are kept in Redis instead, under a SHA-256
//! of the key, so every gateway instance serves them: the lookup waits for Redis off the
//! loop (an unreachable Redis is a miss), the store is sent without waiting; a response
//! larger than `EXTERNAL_MAX` is not kept there.
//! Must not touch: the request's body, the backend.

use std::rc::Rc;

use roxmltree::Node;

use super::cache_value::{caching_type, CachingType};
use super::{policy, Compiled, Kind, INBOUND, OUTBOUND};
use crate::http::forward::{is_managed_header, HeaderEdits};
use crate::policy::cache::CachedResponse;
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase, ResponseEdits};
use crate::policy::external::{Command, ExternalAsk, Purpose};
use crate::policy::parse::{
    element_text, elements, flag, no_attributes, only_children, positive, setting, Cx, BOOLEAN,
    POSITIVE, R,
};
use crate::policy::request::{decode, query_value};
use crate::policy::{Setting, Step};

pub const LOOKUP: Kind = Kind {
    element: "cache-lookup",
    sections: INBOUND,
    children: true,
    compile: compile_lookup,
};

pub const STORE: Kind = Kind {
    element: "cache-store",
    sections: OUTBOUND,
    children: false,
    compile: compile_store,
};

/// `downstream-caching-type`: what clients and proxies may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downstream {
    None,
    Private,
    Public,
}

fn downstream(v: &str) -> Option<Downstream> {
    Some(match v {
        "none" => Downstream::None,
        "private" => Downstream::Private,
        "public" => Downstream::Public,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct CacheLookup {
    pub vary_by_developer: Setting<bool>,
    pub vary_by_groups: Setting<bool>,
    pub allow_private: Setting<bool>,
    pub downstream: Setting<Downstream>,
    pub must_revalidate: Setting<bool>,
    pub headers: Vec<String>,
    pub query: Vec<String>,
    pub caching: CachingType,
}

#[derive(Debug, Clone)]
pub struct CacheStore {
    pub duration_secs: Setting<u64>,
    pub any_status: Setting<bool>,
}

/// Largest response kept in the external cache (with its head).
pub const EXTERNAL_MAX: usize = 1024 * 1024;

/// The key a response has in the external cache: a digest of the call's key, so that
/// its length is bounded whatever the varied values are.
fn external_key(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    format!("edgegate:r:{}", crate::x509::upper_hex(digest.as_ref()))
}

/// What cache-lookup decided for a call it missed, for cache-store.
#[derive(Debug, Clone)]
pub struct ResponseCaching {
    pub key: String,
    pub downstream: Downstream,
    pub must_revalidate: bool,
    pub allow_private: bool,
    /// Kept in the external cache rather than the built-in one.
    pub external: bool,
}

fn compile_lookup(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "vary-by-developer",
            "vary-by-developer-groups",
            "caching-type",
            "downstream-caching-type",
            "must-revalidate",
            "allow-private-response-caching",
        ],
    )?;
    let caching = caching_type(cx, n)?;
    only_children(cx, n, &["vary-by-header", "vary-by-query-parameter"])?;
    let mut headers = Vec::new();
    let mut query = Vec::new();
    for el in elements(n) {
        no_attributes(cx, el, &[])?;
        let text = element_text(el).trim();
        if el.has_tag_name("vary-by-header") {
            headers.push(text.to_ascii_lowercase());
        } else {
            // several names may share one element, separated by ';'
            query.extend(
                text.split(';')
                    .map(str::trim)
                    .filter(|q| !q.is_empty())
                    .map(str::to_string),
            );
        }
    }
    headers.sort_unstable();
    headers.dedup();
    query.sort_unstable();
    query.dedup();
    policy(CacheLookup {
        vary_by_developer: setting(cx, n, "vary-by-developer", Some(false), flag, BOOLEAN)?,
        vary_by_groups: setting(
            cx,
            n,
            "vary-by-developer-groups",
            Some(false),
            flag,
            BOOLEAN,
        )?,
        allow_private: setting(
            cx,
            n,
            "allow-private-response-caching",
            Some(false),
            flag,
            BOOLEAN,
        )?,
        downstream: setting(
            cx,
            n,
            "downstream-caching-type",
            Some(Downstream::None),
            downstream,
            "none, private or public",
        )?,
        must_revalidate: setting(cx, n, "must-revalidate", Some(true), flag, BOOLEAN)?,
        headers,
        query,
        caching,
    })
}

fn compile_store(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["duration", "cache-response", "caching-type"])?;
    caching_type(cx, n)?;
    policy(CacheStore {
        duration_secs: setting(cx, n, "duration", None, positive, POSITIVE)?,
        any_status: setting(cx, n, "cache-response", Some(false), flag, BOOLEAN)?,
    })
}

impl CacheLookup {
    /// The cache key of this call (`\u{1f}` between parts no name or value holds
    /// unescaped).
    fn key(&self, call: &mut Call) -> Result<String, crate::policy::expr::EvalError> {
        let api = call.host.api();
        let op = call.host.operation();
        let req = call.host.request();
        let mut key = format!("{}\u{1f}{}\u{1f}{}", api.id, op.id, req.rest);
        for q in &self.query {
            let v = query_value(req.query, q).map(decode);
            key.push_str(&format!("\u{1f}q:{q}={}", v.as_deref().unwrap_or("\u{0}")));
        }
        for h in &self.headers {
            let v = call.header(Phase::Request, h);
            key.push_str(&format!("\u{1f}h:{h}={}", v.as_deref().unwrap_or("\u{0}")));
        }
        if call.setting(&self.vary_by_developer)? {
            key.push_str(&format!("\u{1f}d:{}", call.host.developer().unwrap_or("")));
        }
        if call.setting(&self.vary_by_groups)? {
            key.push_str(&format!(
                "\u{1f}g:{}",
                call.host.developer_groups().join(",")
            ));
        }
        Ok(key)
    }
}

/// `Cache-Control` for what goes out, when downstream caching is allowed.
fn downstream_header(terms: Downstream, must_revalidate: bool, max_age_s: u64) -> Option<String> {
    let kind = match terms {
        Downstream::None => return None,
        Downstream::Private => "private",
        Downstream::Public => "public",
    };
    Some(if must_revalidate {
        format!("{kind}, max-age={max_age_s}, must-revalidate")
    } else {
        format!("{kind}, max-age={max_age_s}")
    })
}

impl Behaviour for CacheLookup {
    fn name(&self) -> &'static str {
        "cache-lookup"
    }
    fn facts(&self) -> Facts {
        let settings = [
            self.vary_by_developer.text(),
            self.vary_by_groups.text(),
            self.allow_private.text(),
            self.downstream.text(),
            self.must_revalidate.text(),
        ];
        Facts {
            reads_request: true,
            ..Facts::reading(settings.into_iter().flatten())
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        // GET, and HEAD answered from a GET's response (a HEAD's own is never kept)
        let head = match call.host.request().method {
            "GET" => false,
            "HEAD" => true,
            _ => return Flow::Continue,
        };
        let allow_private = or_fail!(call, step, call.setting(&self.allow_private));
        if !allow_private && call.header(Phase::Request, "authorization").is_some() {
            return Flow::Continue;
        }
        let key = or_fail!(call, step, self.key(call));
        let terms = or_fail!(call, step, call.setting(&self.downstream));
        let must_revalidate = or_fail!(call, step, call.setting(&self.must_revalidate));
        let external = self.caching.external(call) && !call.st.collecting;
        let found = match (external, call.st.response_lookup.take()) {
            (false, _) => call.counters.cache.lookup_response(&key, call.now_ms),
            // the external cache answered: this step runs again to read it
            (true, Some(found)) => found.filter(|r| r.expires_ms > call.now_ms),
            (true, None) => {
                call.st.external.push(ExternalAsk {
                    command: Command::Get(external_key(&key)),
                    purpose: Purpose::Response,
                });
                call.st.rerun = true;
                call.st.wait_any = false;
                return Flow::Suspend;
            }
        };
        let Some(hit) = found else {
            if head {
                return Flow::Continue;
            }
            call.st.response_caching = Some(ResponseCaching {
                key,
                downstream: terms,
                must_revalidate,
                allow_private,
                external,
            });
            return Flow::Continue;
        };
        let mut headers = HeaderEdits::default();
        for (name, value) in &hit.headers {
            let mut values = match headers.get(name) {
                Some(Some(v)) => v.clone(),
                _ => Vec::new(),
            };
            values.push(value.clone());
            headers.set(name, Some(values));
        }
        let age_s = call.now_ms.saturating_sub(hit.stored_ms) / 1000;
        headers.set("Age", Some(vec![age_s.to_string()]));
        let left_s = hit.expires_ms.saturating_sub(call.now_ms) / 1000;
        if let Some(cc) = downstream_header(terms, must_revalidate, left_s) {
            headers.set("Cache-Control", Some(vec![cc]));
        }
        call.st.resp = ResponseEdits {
            status: Some(hit.status),
            reason: Some(hit.reason.clone()).filter(|r| !r.is_empty()),
            headers,
            body: Some(hit.body.clone()),
        };
        call.st.cache_hit = Some(hit);
        Flow::Respond
    }
}

/// Whether a response's `Cache-Control` lets a shared cache keep it.
fn storable(cache_control: Option<&str>, allow_private: bool) -> bool {
    let Some(cc) = cache_control else {
        return true;
    };
    !cc.split(',').map(str::trim).any(|d| {
        let name = d.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("no-store")
            || (!allow_private && name.eq_ignore_ascii_case("private"))
    })
}

impl Behaviour for CacheStore {
    fn name(&self) -> &'static str {
        "cache-store"
    }
    fn facts(&self) -> Facts {
        let settings = [self.duration_secs.text(), self.any_status.text()];
        Facts {
            // the whole response is kept
            needs_body: true,
            ..Facts::reading(settings.into_iter().flatten())
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let Some(terms) = call.st.response_caching.take() else {
            return Flow::Continue;
        };
        let secs = or_fail!(call, step, call.setting(&self.duration_secs));
        let any_status = or_fail!(call, step, call.setting(&self.any_status));
        let Some(resp) = call.host.response() else {
            return Flow::Continue;
        };
        let status = call.st.resp.status.unwrap_or(resp.status);
        if status != 200 && !any_status {
            return Flow::Continue;
        }
        if !storable(
            call.header(Phase::Response, "cache-control").as_deref(),
            terms.allow_private,
        ) || call.header(Phase::Response, "set-cookie").is_some()
        {
            return Flow::Continue;
        }
        let Some(body) = call.st.resp.body.clone() else {
            return Flow::Continue;
        };
        let edits = &call.st.resp.headers;
        let mut headers: Vec<(String, String)> = resp
            .headers
            .to_owned_list()
            .into_iter()
            .filter(|(n, _)| edits.get(n).is_none())
            .collect();
        for (name, values) in &edits.list {
            headers.extend(values.iter().flatten().map(|v| (name.clone(), v.clone())));
        }
        headers.retain(|(n, _)| !is_managed_header(n) && !n.eq_ignore_ascii_case("age"));
        let reason = call
            .st
            .resp
            .reason
            .clone()
            .unwrap_or_else(|| resp.reason.to_string());
        let ttl_ms = secs.saturating_mul(1000);
        let cached = CachedResponse {
            status,
            reason,
            headers,
            body,
            stored_ms: call.now_ms,
            expires_ms: call.now_ms.saturating_add(ttl_ms),
        };
        if terms.external {
            let value = crate::policy::cache::encode_response(&cached);
            if value.len() <= EXTERNAL_MAX {
                call.counters.external.send(Command::Set {
                    key: external_key(&terms.key),
                    value,
                    ttl_ms,
                });
            }
        } else {
            call.counters
                .cache
                .store_response(&terms.key, cached, call.now_ms);
        }
        if let Some(cc) = downstream_header(terms.downstream, terms.must_revalidate, secs) {
            call.st.resp.headers.set("Cache-Control", Some(vec![cc]));
        }
        Flow::Continue
    }
}

/// The outbound steps that run on a cache hit: those after the top-level cache-store
/// (none when there is none).
pub fn after_store(outbound: &[Step]) -> &[Step] {
    match outbound
        .iter()
        .position(|s| s.policy_as::<CacheStore>().is_some())
    {
        Some(i) => &outbound[i + 1..],
        None => &[],
    }
}

/// The cached response as outbound reads it on a hit.
pub fn view(hit: &Rc<CachedResponse>) -> crate::policy::request::ResponseView<'_> {
    crate::policy::request::ResponseView {
        status: hit.status,
        reason: &hit.reason,
        headers: crate::policy::request::HeaderSrc::Owned(&hit.headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_shared_cache_may_keep() {
        assert!(storable(None, false));
        assert!(storable(Some("public, max-age=60"), false));
        assert!(!storable(Some("no-store"), true));
        assert!(!storable(Some("max-age=60, No-Store"), false));
        assert!(!storable(Some("private"), false));
        assert!(storable(Some("private, max-age=5"), true));
        assert!(
            storable(Some("no-cache"), false),
            "no-cache: keep, revalidate downstream"
        );
        assert_eq!(
            downstream_header(Downstream::Private, false, 30).as_deref(),
            Some("private, max-age=30")
        );
        assert_eq!(downstream_header(Downstream::None, true, 30), None);
    }
}

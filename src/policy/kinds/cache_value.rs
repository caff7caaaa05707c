//! `cache-store-value`, `cache-lookup-value` and `cache-remove-value`: values kept by
//! key in the built-in cache (`policy::cache`), as APIM's internal cache keeps them.
//! A lookup that misses sets the variable to `default-value` when there is one, and
//! leaves it unset otherwise (APIM's custom-caching sample tests `ContainsKey`).
//! `caching-type` `external` and `prefer-external` (the default) use the external cache
//! (Redis, `cache.external.url`) when one is configured, the built-in cache otherwise;
//! `internal` always the built-in one. A lookup in Redis makes the call wait for the
//! answer without holding the loop; an unreachable Redis is a miss. Stores and
//! removals go to Redis without a wait.
//! Must not touch: the request or response.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::cache::encode_value;
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::external::{Command, ExternalAsk, Purpose};
use crate::policy::parse::{
    attr, no_attributes, positive, required, setting, text_value, Cx, POSITIVE, R,
};
use crate::policy::{Setting, Step, Text};

pub const LOOKUP: Kind = Kind {
    element: "cache-lookup-value",
    sections: ALL,
    children: false,
    compile: compile_lookup,
};

pub const STORE: Kind = Kind {
    element: "cache-store-value",
    sections: ALL,
    children: false,
    compile: compile_store,
};

pub const REMOVE: Kind = Kind {
    element: "cache-remove-value",
    sections: ALL,
    children: false,
    compile: compile_remove,
};

#[derive(Debug, Clone)]
pub struct CacheLookupValue {
    pub key: Text,
    pub default: Option<Text>,
    pub variable: String,
    pub caching: CachingType,
}

#[derive(Debug, Clone)]
pub struct CacheStoreValue {
    pub key: Text,
    pub value: Text,
    pub duration_secs: Setting<u64>,
    pub caching: CachingType,
}

#[derive(Debug, Clone)]
pub struct CacheRemoveValue {
    pub key: Text,
    pub caching: CachingType,
}

/// `caching-type`: which cache a policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachingType {
    Internal,
    External,
    PreferExternal,
}

impl CachingType {
    /// Whether this call's values go to the external cache.
    pub(crate) fn external(self, call: &Call) -> bool {
        self != CachingType::Internal && call.counters.external.values()
    }
}

/// The key a value has in the external cache.
fn external_key(key: &str) -> String {
    format!("edgegate:v:{key}")
}

/// `caching-type`.
pub(crate) fn caching_type(cx: &Cx, n: Node) -> R<CachingType> {
    match attr(n, "caching-type") {
        None | Some("prefer-external") => Ok(CachingType::PreferExternal),
        Some("internal") => Ok(CachingType::Internal),
        Some("external") => Ok(CachingType::External),
        Some(other) => Err(cx.err(
            n,
            format!(
                "<{}>: caching-type \"{other}\": expected internal, external or prefer-external",
                n.tag_name().name()
            ),
        )),
    }
}

fn compile_lookup(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &["key", "default-value", "variable-name", "caching-type"],
    )?;
    let caching = caching_type(cx, n)?;
    policy(CacheLookupValue {
        key: text_value(cx, n, required(cx, n, "key")?)?,
        default: attr(n, "default-value")
            .map(|d| text_value(cx, n, d))
            .transpose()?,
        variable: required(cx, n, "variable-name")?.to_string(),
        caching,
    })
}

fn compile_store(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["key", "value", "duration", "caching-type"])?;
    let caching = caching_type(cx, n)?;
    required(cx, n, "duration")?;
    policy(CacheStoreValue {
        key: text_value(cx, n, required(cx, n, "key")?)?,
        value: text_value(cx, n, required(cx, n, "value")?)?,
        duration_secs: setting(cx, n, "duration", None, positive, POSITIVE)?,
        caching,
    })
}

fn compile_remove(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["key", "caching-type"])?;
    let caching = caching_type(cx, n)?;
    policy(CacheRemoveValue {
        key: text_value(cx, n, required(cx, n, "key")?)?,
        caching,
    })
}

impl Behaviour for CacheLookupValue {
    fn name(&self) -> &'static str {
        "cache-lookup-value"
    }
    fn facts(&self) -> Facts {
        Facts::reading(
            [Some(&self.key), self.default.as_ref()]
                .into_iter()
                .flatten(),
        )
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let key = or_fail!(call, step, call.text_cow(&self.key));
        if self.caching.external(call) {
            let default = match &self.default {
                Some(d) => Some(or_fail!(call, step, call.typed(d))),
                None => None,
            };
            call.st.external.push(ExternalAsk {
                command: Command::Get(external_key(&key)),
                purpose: Purpose::Lookup {
                    variable: self.variable.clone(),
                    default,
                },
            });
            if call.st.collecting {
                return Flow::Continue;
            }
            call.st.wait_any = false;
            return Flow::Suspend;
        }
        let value = match call.counters.cache.lookup(&key, call.now_ms) {
            Some(v) => v,
            None => match &self.default {
                Some(d) => or_fail!(call, step, call.typed(d)),
                None => return Flow::Continue,
            },
        };
        call.st.set_var(&self.variable, value);
        Flow::Continue
    }
}

impl Behaviour for CacheStoreValue {
    fn name(&self) -> &'static str {
        "cache-store-value"
    }
    fn facts(&self) -> Facts {
        let duration = self.duration_secs.text();
        Facts::reading(
            [Some(&self.key), Some(&self.value), duration]
                .into_iter()
                .flatten(),
        )
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let key = or_fail!(call, step, call.text_cow(&self.key));
        let value = or_fail!(call, step, call.typed(&self.value));
        let secs = or_fail!(call, step, call.setting(&self.duration_secs));
        let ttl_ms = secs.saturating_mul(1000);
        if self.caching.external(call) {
            call.counters.external.send(Command::Set {
                key: external_key(&key),
                value: encode_value(&value),
                ttl_ms,
            });
            return Flow::Continue;
        }
        // a value too large for the cache is not kept: as in APIM, a later lookup misses
        call.counters.cache.store(&key, &value, ttl_ms, call.now_ms);
        Flow::Continue
    }
}

impl Behaviour for CacheRemoveValue {
    fn name(&self) -> &'static str {
        "cache-remove-value"
    }
    fn facts(&self) -> Facts {
        Facts::reading([&self.key])
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let key = or_fail!(call, step, call.text_cow(&self.key));
        if self.caching.external(call) {
            call.counters
                .external
                .send(Command::Del(external_key(&key)));
            return Flow::Continue;
        }
        call.counters.cache.remove(&key);
        Flow::Continue
    }
}

//! `cache-store-value`, `cache-lookup-value` and `cache-remove-value`: values kept by
//! key in the built-in cache (`policy::cache`), as APIM's internal cache keeps them.
//! A lookup that misses sets the variable to `default-value` when there is one, and
//! leaves it unset otherwise (APIM's custom-caching sample tests `ContainsKey`).
//! `caching-type` `internal` and `prefer-external` (the default, with no external cache)
//! use the built-in cache; `external` is refused at load until an external cache exists.
//! Must not touch: the request or response.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
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
}

#[derive(Debug, Clone)]
pub struct CacheStoreValue {
    pub key: Text,
    pub value: Text,
    pub duration_secs: Setting<u64>,
}

#[derive(Debug, Clone)]
pub struct CacheRemoveValue {
    pub key: Text,
}

/// `caching-type`: only the built-in cache exists.
pub(crate) fn caching_type(cx: &Cx, n: Node) -> R<()> {
    match attr(n, "caching-type") {
        None | Some("internal" | "prefer-external") => Ok(()),
        Some("external") => Err(cx.err(
            n,
            format!(
                "<{}>: caching-type=\"external\" needs an external cache (Redis), which this gateway does not have yet; use \"internal\" or \"prefer-external\"",
                n.tag_name().name()
            ),
        )),
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
    caching_type(cx, n)?;
    policy(CacheLookupValue {
        key: text_value(cx, n, required(cx, n, "key")?)?,
        default: attr(n, "default-value")
            .map(|d| text_value(cx, n, d))
            .transpose()?,
        variable: required(cx, n, "variable-name")?.to_string(),
    })
}

fn compile_store(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["key", "value", "duration", "caching-type"])?;
    caching_type(cx, n)?;
    required(cx, n, "duration")?;
    policy(CacheStoreValue {
        key: text_value(cx, n, required(cx, n, "key")?)?,
        value: text_value(cx, n, required(cx, n, "value")?)?,
        duration_secs: setting(cx, n, "duration", None, positive, POSITIVE)?,
    })
}

fn compile_remove(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["key", "caching-type"])?;
    caching_type(cx, n)?;
    policy(CacheRemoveValue {
        key: text_value(cx, n, required(cx, n, "key")?)?,
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
        call.counters.cache.remove(&key);
        Flow::Continue
    }
}

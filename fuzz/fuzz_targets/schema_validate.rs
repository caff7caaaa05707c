//! A schema document and a body from any bytes (split at the first NUL): every schema
//! either compiles or is refused with a reason, and checking any body against any of
//! its schemas ends within its budgets with at most MAX_ERRORS errors; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use edgegate::policy::expr::parse_json;
use edgegate::policy::schema::{SchemaSet, MAX_ERRORS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (schema, body) = text.split_once('\0').unwrap_or((text, "{}"));
    let Ok(doc) = miniserde::json::from_str::<miniserde::json::Value>(schema) else {
        return;
    };
    let Ok(set) = SchemaSet::compile(&[&doc]) else {
        return;
    };
    let Ok(value) = parse_json(body) else {
        return;
    };
    for name in ["A", "B", "Pet"] {
        if let Some(i) = set.named(name) {
            assert!(set.validate(i, &value, None).len() <= MAX_ERRORS);
        }
    }
});

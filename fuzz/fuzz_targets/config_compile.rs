//! Config compile: any text gives a runtime or a list of errors with paths, never a
//! panic; a compiled runtime answers lookups for arbitrary paths without panicking.
#![no_main]

use edgegate::config::{compile, ConfigSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match compile(text, ConfigSource::Local) {
        Ok(rt) => {
            for path in ["/", "/a", "/a/b/c", "//x//", "/echo/items/1"] {
                if let Some(m) = rt.api_table.find(path, "h", false) {
                    let api = &rt.apis[m.api as usize];
                    for query in [None, Some("a=1&b=%20&c"), Some("")] {
                        let _ = api.op_table.find(&path[m.rest_offset..], query, "GET");
                    }
                }
            }
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
});

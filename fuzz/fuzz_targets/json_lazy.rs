//! A body's lazy JSON against the whole tree: the same bytes never panic, bytes that
//! are not UTF-8 are refused as such, both accept or both refuse a text (with the same
//! message), and what they print (compact and indented) and how they compare is the
//! same.
#![no_main]

use edgegate::policy::expr::{parse_json_body_bytes, parse_json_tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lazy = parse_json_body_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else {
        assert!(lazy.is_none(), "{data:?}");
        return;
    };
    let Some(lazy) = lazy else {
        panic!("{text:?} refused as not UTF-8")
    };
    match (lazy, parse_json_tree(text)) {
        (Ok(lazy), Ok(whole)) => {
            for indented in [false, true] {
                assert_eq!(lazy.print(indented), whole.print(indented), "{text:?}");
            }
            assert!(lazy.deep_equals(&whole), "{text:?}");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{text:?}"),
        (a, b) => panic!("{text:?}: lazy {a:?}, whole {b:?}"),
    }
});

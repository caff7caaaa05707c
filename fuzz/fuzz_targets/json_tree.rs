//! The config JSON parser against miniserde: the same text never panics, and when both
//! accept it, our tree written out again reads as the same value as miniserde's.
#![no_main]

use edgegate::config::json::{parse, to_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ours = parse(text);
    let theirs = miniserde::json::from_str::<miniserde::json::Value>(text);
    if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
        let mut written = String::new();
        to_text(&ours, &mut written);
        let again: miniserde::json::Value =
            miniserde::json::from_str(&written).expect("what we write is JSON");
        assert_eq!(
            miniserde::json::to_string(&again),
            miniserde::json::to_string(&theirs),
            "{text:?} -> {written:?}"
        );
    }
});

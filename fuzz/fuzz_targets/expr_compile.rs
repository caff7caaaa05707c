//! The expression compiler: any text, as `@(...)` or as a `@{ ... }` block, compiles to
//! an expression or an error with a column inside the text, never a panic.
#![no_main]

use edgegate::policy::expr::{liquid, Expr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for block in [false, true] {
        if let Err(e) = Expr::parse(text, block) {
            assert!(e.offset <= text.len(), "an error column outside the text");
        }
    }
    // the same text as a Liquid template
    if let Err(e) = liquid::compile(text, false) {
        assert!(e.offset <= text.len(), "a Liquid error outside the text");
    }
});

//! A whole response read from any bytes, fed in pieces of any sizes (the first byte
//! picks them): the same answer whatever the pieces, never more body than the bound,
//! and nothing panics.
#![no_main]

use edgegate::http::whole::{Reader, Whole, WholeError};
use libfuzzer_sys::fuzz_target;

const MAX: u64 = 4096;

fn read(wire: &[u8], step: usize) -> Result<Option<Whole>, WholeError> {
    let mut reader = Reader::new(false, MAX);
    for piece in wire.chunks(step.max(1)) {
        match reader.feed(piece, false) {
            Ok(None) => {}
            other => return other,
        }
    }
    reader.feed(&[], true)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, wire)) = data.split_first() else {
        return;
    };
    let whole = read(wire, wire.len().max(1));
    let pieces = read(wire, usize::from(step % 17) + 1);
    assert_eq!(
        whole.as_ref().map(|w| w.as_ref().map(|w| (w.status, &w.body))),
        pieces.as_ref().map(|w| w.as_ref().map(|w| (w.status, &w.body))),
        "the pieces changed the answer"
    );
    if let Ok(Some(w)) = whole {
        assert!(w.body.len() as u64 <= MAX);
    }
});

//! Chunked decoding: never panics, and feeding the input whole or in arbitrary small
//! pieces gives the same payload, the same end and the same verdict.
#![no_main]

use edgegate::http::chunked::{decode_all, ChunkedDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let piece = usize::from(step % 7) + 1;
    let whole = decode_all(input);
    let mut d = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut used = 0;
    let mut verdict = Ok(());
    'outer: for part in input.chunks(piece) {
        let mut rest = part;
        while !rest.is_empty() {
            match d.feed(rest) {
                Ok(s) => {
                    payload.extend_from_slice(&rest[s.data.0..s.data.1]);
                    used += s.consumed;
                    rest = &rest[s.consumed..];
                    if s.done {
                        break 'outer;
                    }
                }
                Err(e) => {
                    verdict = Err(e);
                    break 'outer;
                }
            }
        }
    }
    match (whole, verdict) {
        (Ok((p, u)), Ok(())) => {
            assert_eq!(p, payload);
            if d.is_done() {
                assert_eq!(u, used);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("whole {a:?} vs pieces {b:?}"),
    }
    assert_eq!(d.payload, payload.len() as u64);
});

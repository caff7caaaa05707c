//! A PKCS#12 body from any bytes (a policy may take it from a request): read or
//! refused with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edgegate::config::pkcs12::read(data, "pfx-secret");
});

//! A client certificate's DER from any bytes (a TLS client chooses them): parsed or
//! refused, never a panic; what parses keeps its own bytes and a 40-digit thumbprint.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = edgegate::x509::parse(data) {
        assert_eq!(c.thumbprint.len(), 40);
        assert_eq!(c.der, data);
    }
});

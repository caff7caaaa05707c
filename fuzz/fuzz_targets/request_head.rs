//! Request heads: the strict parser never panics; whatever it accepts, the head the
//! gateway writes for the backend parses again as one complete request with the same
//! method and no hop-by-hop headers, and framing is stated exactly once.
#![no_main]

use edgegate::http::forward::{write_backend_request, BackendRequest, SliceWriter};
use edgegate::http::request::{self, BodyKind, MAX_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(Some(head)) = request::parse(data, &mut headers, 32 * 1024) else { return };
    assert!(head.head_len <= data.len());
    let mut out = vec![0u8; 64 * 1024];
    let mut w = SliceWriter::new(&mut out);
    let req = BackendRequest {
        method: head.method,
        base_path: "/base",
        rest: head.path,
        query: head.query,
        authority: "backend:8080",
        client_ip: "192.0.2.1",
        proto: "http",
        original_host: head.host,
        chunked: head.body == BodyKind::Chunked,
        length: head.body.content_length(),
        edits: None,
        proxy: None,
    };
    if write_backend_request(&mut w, &req, head.headers, false).is_err() {
        return;
    }
    let n = w.len;
    let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
    let mut parsed = httparse::Request::new(&mut again);
    let status = parsed.parse(&out[..n]).expect("the gateway writes a valid head");
    assert_eq!(status, httparse::Status::Complete(n));
    assert_eq!(parsed.method, Some(head.method));
    let count = |name: &str| parsed.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    for hop in ["connection", "keep-alive", "te", "upgrade", "proxy-connection", "expect"] {
        assert_eq!(count(hop), 0, "{hop} forwarded");
    }
    assert_eq!(count("host"), 1);
    assert!(count("content-length") + count("transfer-encoding") <= 1);
});

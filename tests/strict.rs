//! Bad input gets a clear answer and a closed connection, and nothing ambiguous ever
//! reaches the origin: every 400/408/413/414/431 rule and request-smuggling attempts.

use std::io::{BufReader, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::*;

fn expect_rejected(gw: &Gateway, origin: &Origin, raw: &[u8], status: u16, message: &str) {
    let before = origin.requests().len();
    let out = raw_exchange(gw.addr, raw);
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = error_body(status, message);
    let want_head = format!("HTTP/1.1 {status} ");
    assert!(
        text.starts_with(&want_head),
        "{:?} → {text:?}",
        String::from_utf8_lossy(raw)
    );
    assert!(text.contains("Connection: close\r\n"), "{text:?}");
    assert!(text.ends_with(&body), "{text:?}");
    // raw_exchange read to EOF: the gateway closed the connection after answering
    assert_eq!(
        origin.requests().len(),
        before,
        "nothing reached the origin for {:?}",
        String::from_utf8_lossy(raw)
    );
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        0,
        "not even a connection"
    );
}

#[test]
fn malformed_and_ambiguous_requests_get_400_and_close() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n\r\n",                                        // missing Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",                  // duplicate Host
        b"GET / HTTP/1.1\r\nHost: example.test:abc\r\n\r\n",              // non-numeric port
        b"GET / HTTP/1.1\r\nHost: user@example.test\r\n\r\n",             // userinfo
        b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",                          // open IP literal
        b"GET http://a:b/ HTTP/1.1\r\nHost: a\r\n\r\n",                    // bad authority
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",                        // bad request line
        b"GE T / HTTP/1.1\r\nHost: a\r\n\r\n",                           // bad request line
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",            // bad header name
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",          // obs-fold
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",                // NUL in value
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",                  // CR in value
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",                            // bad version
        b"GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n",                      // dot-segment
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for raw in cases {
        expect_rejected(&gw, &origin, raw, 400, "Bad request");
    }
}

/// An origin that records the raw bytes of each connection until the peer closes it.
fn raw_origin() -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(Mutex::new(Vec::new()));
    let sink = streams.clone();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let sink = sink.clone();
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all);
                sink.lock().unwrap().push(all);
            });
        }
    });
    (addr, streams)
}

#[test]
fn bad_chunk_framing_is_never_forwarded() {
    // Bodies stream, so the head and the valid prefix of a chunked body may already be
    // at the backend when bad framing arrives (here the bytes arrive with the head, so
    // the gateway catches them first); the bad bytes and everything after them never
    // reach it, and the backend connection is closed so the request never completes.
    let (addr, streams) = raw_origin();
    let gw = Gateway::start(&simple_config("1", "", &format!("http://{addr}")), &[]);
    let cases: &[(&[u8], &[u8])] = &[
        (b"zz\r\nhello\r\n0\r\n\r\n", b"zz"),
        (
            b"5\r\nhelloXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
            b"XX",
        ),
        (b"5\nhello\r\n0\r\n\r\n", b"5\n"),
        (b" 5\r\nhello\r\n0\r\n\r\n", b" 5"),
        (b"ffffffffffffffffff\r\n", b"ffffffffffffffff"),
    ];
    for (body, _) in cases {
        let mut raw = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        let out = raw_exchange(gw.addr, &raw);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 400 "),
            "{:?} → {text:?}",
            String::from_utf8_lossy(body)
        );
        assert!(text.ends_with(&error_body(400, "Bad request")));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while streams.lock().unwrap().len() < cases.len() && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let seen = streams.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        cases.len(),
        "each backend connection was closed by the gateway"
    );
    for stream in &seen {
        let text = String::from_utf8_lossy(stream);
        // nothing at all (the framing was checked before the head left), or the head and
        // the valid prefix
        assert!(
            text.is_empty() || text.starts_with("POST /c HTTP/1.1\r\n"),
            "{text:?}"
        );
        for (_, poison) in cases {
            assert!(
                !contains(stream, poison),
                "bad framing {:?} reached the backend: {text:?}",
                String::from_utf8_lossy(poison)
            );
        }
        assert!(!text.contains("smuggled"));
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "the request never completes at the backend"
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn smuggling_attempts_do_not_reach_the_origin() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    // CL.TE and TE.CL: a second request hidden in the body
    let attacks: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for raw in attacks {
        let out = raw_exchange(gw.addr, raw);
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400 "));
    }
    thread::sleep(Duration::from_millis(200));
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());
    // A correct chunked body carrying request-like bytes is data, not a request.
    let r = request(
        gw.addr,
        "POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         20\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = origin.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/ok");
    assert_eq!(seen[0].body, b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn size_limits_431_414_413() {
    let origin = Origin::echo();
    let gw = Gateway::start(
        &simple_config("1", "", &origin.url("")),
        &["limits.request.head.max=4KiB", "limits.request.body.max=10"],
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    expect_rejected(
        &gw,
        &origin,
        big_header.as_bytes(),
        431,
        "Request header fields too large",
    );
    let many: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    expect_rejected(
        &gw,
        &origin,
        format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
        431,
        "Request header fields too large",
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(4200));
    expect_rejected(
        &gw,
        &origin,
        long_uri.as_bytes(),
        414,
        "Request URI too long",
    );
    expect_rejected(
        &gw,
        &origin,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        413,
        "Request entity too large",
    );
    // chunked bodies are counted as they stream
    let out = raw_exchange(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.ends_with(&error_body(413, "Request entity too large")));
    // exactly at the limit passes
    let r = request(
        gw.addr,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
    );
    assert_eq!(r.text(), "POST /\n0123456789");
}

#[test]
fn unsupported_expectation_is_417() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    expect_rejected(
        &gw,
        &origin,
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n",
        417,
        "Expectation failed",
    );
}

#[test]
fn slow_client_gets_408_and_idle_keep_alive_is_closed() {
    let origin = Origin::echo();
    let gw = Gateway::start(
        &simple_config("1", "", &origin.url("")),
        &[
            "limits.client.header.timeout=1s",
            "limits.client.idle.timeout=1s",
        ],
    );
    // a head that never completes
    let mut s = gw.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(text.ends_with(&error_body(408, "Request timeout")));
    // a connection that never sends anything is closed without an answer
    let mut s = gw.connect();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    // keep-alive: served, then closed when idle
    let s = gw.connect();
    (&s).write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed without further bytes");
    // a client that stops sending its body: 408
    let mut s = gw.connect();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn garbage_and_abrupt_clients_do_not_hurt_the_gateway() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let junk: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let _ = raw_exchange(gw.addr, &junk);
    let _ = raw_exchange(gw.addr, b"\r\n\r\n\r\n");
    // close mid-head, mid-body, and right after sending a request
    for raw in [
        &b"GET / HT"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let mut s = gw.connect();
        s.write_all(raw).unwrap();
        drop(s);
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(get(gw.addr, "/still-alive").text(), "GET /still-alive\n");
}

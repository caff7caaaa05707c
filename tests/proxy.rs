//! Proxying through the real binary: routing, header rewriting, keep-alive, pipelining,
//! HTTP/1.0, 100-continue, bodiless responses, chunked both ways, upstream keep-alive
//! and retry, backend failures and timeouts.

use std::io::{BufReader, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::common::*;

#[test]
fn forwards_with_rewritten_target_and_headers() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "echo", &origin.url("/v1")), &[]);
    let r = request(
        gw.addr,
        "GET /echo/items/42?x=1&y=2 HTTP/1.1\r\nHost: api.test:8080\r\nConnection: keep-alive, X-Hop\r\n\
         X-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic x\r\n\
         X-Forwarded-For: 203.0.113.9\r\nVia: 1.0 corp-proxy\r\nX-Custom: kept\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "GET /v1/items/42?x=1&y=2\n");
    let seen = &origin.requests()[0];
    assert_eq!(seen.target, "/v1/items/42?x=1&y=2");
    assert_eq!(seen.header("host"), Some(origin.addr.to_string().as_str()));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("api.test:8080"));
    assert_eq!(seen.header("via"), Some("1.0 corp-proxy, 1.1 edgegate"));
    assert_eq!(seen.header("x-custom"), Some("kept"));
    for hop in [
        "connection",
        "x-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert_eq!(seen.header(hop), None, "{hop} must not reach the backend");
    }
}

#[test]
fn routes_by_longest_path_and_operation() {
    let origin = Origin::echo();
    let config = format!(
        r#"{{"schemaVersion": 1, "apis": [
          {{"id": "root", "path": "", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "r", "method": "GET", "urlTemplate": "/*"}}]}},
          {{"id": "orders", "path": "shop/orders", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "one", "method": "GET", "urlTemplate": "/{{id}}"}},
                           {{"id": "create", "method": "POST", "urlTemplate": "/"}}]}}]}}"#,
        origin.url("/root"),
        origin.url("/orders-svc")
    );
    let gw = Gateway::start(&config, &[]);
    assert_eq!(get(gw.addr, "/shop/orders/7").text(), "GET /orders-svc/7\n");
    assert_eq!(
        get(gw.addr, "/shop/ordersX/7").text(),
        "GET /root/shop/ordersX/7\n"
    );
    assert_eq!(get(gw.addr, "/anything").text(), "GET /root/anything\n");
    // the API matched, but no operation does: 404 with APIM's body, backend not called
    let before = origin.requests().len();
    let r = request(
        gw.addr,
        "DELETE /shop/orders/7 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), error_body(404, "Resource not found"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(origin.requests().len(), before);
}

#[test]
fn subscription_required_api_refuses_calls_without_a_valid_key() {
    let origin = Origin::echo();
    let config = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "a", "path": "a", "serviceUrl": "{}",
            "operations": [{{"id": "o", "method": "*", "urlTemplate": "/*"}}]}}]}}"#,
        origin.url("")
    );
    let gw = Gateway::start(&config, &[]);
    let r = get(gw.addr, "/a/x");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        error_body(401, "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.")
    );
    let r = request(gw.addr, "GET /a/x HTTP/1.1\r\nHost: h\r\nOcp-Apim-Subscription-Key: nope\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 401);
    assert!(r.text().contains("invalid subscription key"));
    assert_eq!(get(gw.addr, "/a/x?subscription-key=nope").status, 401);
    assert!(origin.requests().is_empty());
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "echo", &origin.url("")), &[]);
    let s = gw.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    // sequential on one connection
    for i in 0..3 {
        (&s).write_all(format!("GET /echo/seq/{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.text(), format!("GET /seq/{i}\n"));
    }
    // pipelined: three requests (one with a body) in a single write
    let batch = "GET /echo/p/1 HTTP/1.1\r\nHost: h\r\n\r\n\
                 POST /echo/p/2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
                 GET /echo/p/3 HTTP/1.1\r\nHost: h\r\n\r\n";
    (&s).write_all(batch.as_bytes()).unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().text(), "GET /p/1\n");
    assert_eq!(
        read_response(&mut r, false).unwrap().text(),
        "POST /p/2\nhello"
    );
    assert_eq!(read_response(&mut r, false).unwrap().text(), "GET /p/3\n");
    // all of it over one upstream connection
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn http10_clients() {
    let origin = Origin::start(|req, s| {
        if req.target == "/chunked" {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        } else {
            respond(s, 200, &[], b"ten bytes!");
        }
        true
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    // 1.0 without keep-alive: answer, then close
    let out = raw_exchange(gw.addr, b"GET /plain HTTP/1.0\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 200 X\r\nContent-Length: 10\r\nConnection: close\r\n\r\nten bytes!"
    );
    // a chunked backend answer is decoded for a 1.0 client
    let out = raw_exchange(
        gw.addr,
        b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world"
    );
    // 1.0 keep-alive
    let s = gw.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        (&s).write_all(b"GET /plain HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.header("connection"), Some("keep-alive"));
        assert_eq!(resp.text(), "ten bytes!");
    }
}

#[test]
fn expect_100_continue() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let s = gw.connect();
    (&s).write_all(
        b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let interim = read_response(&mut r, false).unwrap();
    assert_eq!(interim.status, 100);
    (&s).write_all(b"data").unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "PUT /up\ndata");
    assert_eq!(origin.requests()[0].header("expect"), None);
}

#[test]
fn head_204_304_have_no_body() {
    let origin = Origin::start(|req, s| {
        let status = match req.target.as_str() {
            "/204" => 204,
            "/304" => 304,
            _ => 200,
        };
        // a HEAD answer announces a length but sends no body
        let head = format!("HTTP/1.1 {status} X\r\nContent-Length: 100\r\nETag: \"e\"\r\n\r\n");
        let _ = s.write_all(if status == 204 {
            b"HTTP/1.1 204 X\r\n\r\n" as &[u8]
        } else {
            head.as_bytes()
        });
        true
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let s = gw.connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for (method, path, status) in [
        ("HEAD", "/x", 200),
        ("GET", "/204", 204),
        ("GET", "/304", 304),
        ("HEAD", "/y", 200),
    ] {
        (&s).write_all(format!("{method} {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let resp = read_response(&mut r, method == "HEAD").unwrap();
        assert_eq!(resp.status, status);
        assert!(resp.body.is_empty());
        if status != 204 {
            assert_eq!(resp.header("content-length"), Some("100"));
        }
    }
    // the connection is still in sync: one more request gets its own answer
    (&s).write_all(b"HEAD /z HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, true).unwrap().status, 200);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn chunked_request_and_response_pass_through() {
    let origin = Origin::start(|req, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
        );
        let _ = write!(s, "{:x}\r\n", req.body.len());
        let _ = s.write_all(&req.body);
        let _ = s.write_all(b"\r\n3;ext=1\r\nend\r\n0\r\nX-T: done\r\n\r\n");
        true
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let s = gw.connect();
    (&s).write_all(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut buf = [0u8; 4096];
    while !raw.ends_with(b"X-T: done\r\n\r\n") {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&raw),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nWikipedia\r\n3;ext=1\r\nend\r\n0\r\nX-T: done\r\n\r\n"
    );
    let seen = &origin.requests()[0];
    assert_eq!(seen.body, b"Wikipedia");
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen.header("content-length"), None);
}

#[test]
fn upstream_connections_are_reused() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    for i in 0..10 {
        assert_eq!(get(gw.addr, &format!("/r/{i}")).status, 200);
    }
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "one pooled backend connection"
    );
}

#[test]
fn stale_pooled_connection_is_retried_once_for_idempotent_requests() {
    // The origin answers the first request on each connection and silently closes on the
    // second, as a backend does when its keep-alive timer races a new request.
    let origin = Origin::start(|req, s| {
        let served = req.target.contains("first") || req.header("x-n") != Some("2");
        if req.conn_id == 0 && req.header("x-n") == Some("2") {
            return false; // close without answering
        }
        respond(
            s,
            200,
            &[],
            format!("conn {} {}", req.conn_id, served).as_bytes(),
        );
        true
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    assert_eq!(get(gw.addr, "/first").text(), "conn 0 true");
    let r = request(
        gw.addr,
        "GET /again HTTP/1.1\r\nHost: h\r\nX-N: 2\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "conn 1 false");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn non_idempotent_request_on_stale_connection_is_not_retried() {
    let origin = Origin::start(|req, s| {
        if req.conn_id == 0 && req.method == "POST" {
            return false;
        }
        respond(s, 200, &[], b"ok");
        true
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    assert_eq!(get(gw.addr, "/warm").status, 200);
    let r = request(
        gw.addr,
        "POST /pay HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), error_body(502, "Bad gateway"));
    assert_eq!(
        origin
            .requests()
            .iter()
            .filter(|s| s.method == "POST")
            .count(),
        1
    );
}

#[test]
fn backend_refused_is_502() {
    // port 9 (discard): privileged, so no ephemeral listener of another test can hold it
    let gw = Gateway::start(&simple_config("1", "", "http://127.0.0.1:9"), &[]);
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), error_body(502, "Backend service unavailable"));
}

#[test]
fn backend_reset_before_answer_is_502() {
    let origin = Origin::start(|_, _| false);
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), error_body(502, "Bad gateway"));
}

#[test]
fn malformed_backend_response_is_502() {
    let origin = Origin::start(|_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
        false
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    assert_eq!(get(gw.addr, "/x").status, 502);
}

#[test]
fn backend_response_timeout_is_504() {
    let origin = Origin::start(|_, s| {
        thread::sleep(Duration::from_secs(4));
        respond(s, 200, &[], b"late");
        false
    });
    let gw = Gateway::start(
        &simple_config("1", "", &origin.url("")),
        &["limits.backend.response.timeout=1s"],
    );
    let r = get(gw.addr, "/slow");
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), error_body(504, "Backend service timed out"));
}

#[test]
fn backend_connect_timeout_is_502() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so connect()
    // never completes (loopback only).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    thread::sleep(Duration::from_millis(200));
    let gw = Gateway::start(
        &simple_config("1", "", &format!("http://{addr}")),
        &["limits.backend.connect.timeout=1s"],
    );
    let r = get(gw.addr, "/x");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), error_body(502, "Backend service unavailable"));
    assert!(gw
        .wait_for_log("errorReason=backend_connect_timeout")
        .contains("responseCode=502"));
    drop(socket);
}

#[test]
fn backend_host_names_are_resolved_off_the_loop() {
    let origin = Origin::echo();
    let url = format!("http://localhost:{}/base", origin.addr.port());
    let gw = Gateway::start(&simple_config("1", "", &url), &[]);
    let r = get(gw.addr, "/x");
    assert_eq!(r.text(), "GET /base/x\n");
    assert_eq!(
        origin.requests()[0].header("host"),
        Some(format!("localhost:{}", origin.addr.port()).as_str())
    );
}

#[test]
fn connection_limit_pauses_accepting() {
    let origin = Origin::echo();
    let gw = Gateway::start(
        &simple_config("1", "", &origin.url("")),
        &["limits.connections.max=2"],
    );
    let a = gw.connect();
    let b = gw.connect();
    // both are served (so both are accepted and counted)
    for mut s in [&a, &b] {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    }
    // a third waits in the kernel's queue, unanswered
    let c = gw.connect();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    (&c).write_all(b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = (&c).read(&mut byte);
    assert!(waited.is_err(), "no answer while at the limit: {waited:?}");
    // a slot frees: the third is accepted and answered
    drop(a);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), "GET /third\n");
}

#[test]
fn many_concurrent_clients() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let ok = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let (addr, ok) = (gw.addr, ok.clone());
            thread::spawn(move || {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                for i in 0..50 {
                    (&s).write_all(
                        format!("GET /t/{t}/{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
                    )
                    .unwrap();
                    let resp = read_response(&mut r, false).unwrap();
                    if resp.text() == format!("GET /t/{t}/{i}\n") {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(ok.load(Ordering::SeqCst), 16 * 50);
}

#[test]
fn heads_larger_than_a_data_buffer_are_forwarded_whole() {
    // 20 KiB of headers: more than the 16 KiB data buffer, within the 32 KiB default limit.
    let origin = Origin::start(|req, s| {
        let total: usize = req.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let cookie = req.header("cookie").map_or(0, str::len);
        respond(
            s,
            200,
            &[("X-Big", &"r".repeat(6000))],
            format!("{total} {cookie}").as_bytes(),
        );
        true
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let cookie = "c".repeat(20 * 1024);
    let r = request(
        gw.addr,
        &format!("GET /big HTTP/1.1\r\nHost: h\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text().split(' ').nth(1), Some("20480"));
    assert_eq!(
        r.header("x-big").map(str::len),
        Some(6000),
        "a response head over 4 KiB passes too"
    );
}

#[test]
fn client_gone_mid_request_aborts_and_frees_the_backend() {
    // The backend holds the request; the client hangs up. The gateway closes the
    // backend connection at once (the origin sees EOF) and logs 499.
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let tx = std::sync::Mutex::new(tx);
    let origin = Origin::start(move |_, s| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1];
        let n = s.read(&mut buf).unwrap_or(99);
        tx.lock().unwrap().send(n).unwrap();
        false
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let mut s = gw.connect();
    s.write_all(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    drop(s);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        0,
        "origin saw the gateway close its connection"
    );
    let line = gw.wait_for_log("errorReason=client_closed_or_aborted");
    assert!(line.contains("responseCode=499"), "{line}");
}

#[test]
fn pipelined_request_waits_for_a_slow_answer() {
    // The second request arrives while the first is still at the backend; it is answered
    // after the first, in order, and the first is not aborted.
    let origin = Origin::start(|req, s| {
        if req.target == "/slow" {
            thread::sleep(Duration::from_millis(500));
        }
        respond(s, 200, &[], req.target.as_bytes());
        true
    });
    let gw = Gateway::start(&simple_config("1", "", &origin.url("")), &[]);
    let s = gw.connect();
    (&s).write_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    (&s).write_all(b"GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_response(&mut r, false).unwrap().text(), "/slow");
    assert_eq!(read_response(&mut r, false).unwrap().text(), "/fast");
}

#[test]
fn client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
    // 64 MiB the client never reads: the gateway's buffers stay bounded, and after
    // limits.client.idle.timeout without progress the connection is closed.
    let origin = Origin::start(|_, s| {
        let size = 64 << 20;
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        let block = vec![b'x'; 1 << 16];
        for _ in 0..(size / block.len()) {
            if s.write_all(&block).is_err() {
                break;
            }
        }
        false
    });
    let gw = Gateway::start(
        &simple_config("1", "", &origin.url("")),
        &["limits.client.idle.timeout=1s"],
    );
    // the gateway's own size (its binary grows with its features) is the baseline
    let before = gw.rss_kib();
    let s = gw.connect();
    (&s).write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(2500));
    let rss = gw.rss_kib();
    // now drain: the gateway has closed, so fewer than 64 MiB arrive before EOF
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut reader = &s;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 64 << 20, "cut off: {got} bytes");
    assert!(
        rss.saturating_sub(before) < 8 * 1024,
        "gateway RSS grew from {before} to {rss} KiB while a client stalls"
    );
    let line = gw.wait_for_log("url=/big");
    assert!(
        line.contains("responseCode=200") && line.contains("errorReason=client_timeout"),
        "{line}"
    );
}

/// Idle connections kept for one backend never keep another unreachable: with room for
/// two backend connections (one client), a third backend takes the oldest idle slot.
#[test]
fn idle_backend_connections_make_room_for_another_backend() {
    let origins = [
        Origin::text("one"),
        Origin::text("two"),
        Origin::text("three"),
    ];
    let apis: Vec<String> = origins
        .iter()
        .enumerate()
        .map(|(i, o)| {
            format!(
                r#"{{"id": "a{i}", "path": "a{i}", "serviceUrl": "{}", "subscriptionRequired": false,
                    "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*"}}]}}"#,
                o.url("")
            )
        })
        .collect();
    let config = format!(
        r#"{{"schemaVersion": 1, "version": "1", "apis": [{}]}}"#,
        apis.join(",")
    );
    let gw = Gateway::start(&config, &["limits.connections.max=1"]);
    for round in 0..2 {
        for (i, want) in ["one", "two", "three"].iter().enumerate() {
            let r = get(gw.addr, &format!("/a{i}/x"));
            assert_eq!(
                (r.status, r.text()),
                (200, want.to_string()),
                "round {round}"
            );
        }
    }
}

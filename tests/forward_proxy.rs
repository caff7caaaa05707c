//! The `proxy` policy through the real binary: backend requests and send-requests go
//! through a local HTTP forward proxy the test runs: an `http://` target in absolute
//! form with `Proxy-Authorization`, an `https://` one through a CONNECT tunnel with TLS
//! end to end, and a proxy that refuses is a 502.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;

/// What the proxy saw: each request line and its Proxy-Authorization.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A forward proxy on 127.0.0.1: CONNECT opens a tunnel; an absolute-form request is
/// sent to its origin (one connection per request) and the answer relayed. With
/// `refuse`, every request gets 407.
fn forward_proxy(refuse: bool) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let kept = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let seen = Arc::clone(&kept);
            std::thread::spawn(move || serve(client, &seen, refuse));
        }
    });
    (port, seen)
}

fn serve(client: TcpStream, seen: &Seen, refuse: bool) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        let mut authorization = None;
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            let (name, value) = h.trim_end().split_once(':').unwrap();
            let value = value.trim().to_string();
            if name.eq_ignore_ascii_case("proxy-authorization") {
                authorization = Some(value);
                continue;
            }
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap();
            }
            headers.push(format!("{name}: {value}"));
        }
        let line = line.trim_end().to_string();
        seen.lock().unwrap().push((line.clone(), authorization));
        let mut client_w = client.try_clone().unwrap();
        if refuse {
            let _ = client_w.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
            );
            continue;
        }
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
        if method == "CONNECT" {
            let origin = TcpStream::connect(target).unwrap();
            client_w
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .unwrap();
            let (mut up, mut down) = (origin.try_clone().unwrap(), origin);
            let buffered = reader.buffer().to_vec();
            up.write_all(&buffered).unwrap();
            let mut from_client = reader.into_inner();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut up);
            });
            let _ = std::io::copy(&mut down, &mut client_w);
            return;
        }
        let rest = target.strip_prefix("http://").unwrap();
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut origin = TcpStream::connect(authority).unwrap();
        let mut head = format!(
            "{method} {} HTTP/1.1\r\n",
            if path.is_empty() { "/" } else { path }
        );
        for h in headers
            .iter()
            .filter(|h| !h.to_ascii_lowercase().starts_with("connection:"))
        {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        origin.write_all(head.as_bytes()).unwrap();
        origin.write_all(&body).unwrap();
        // relay the answer as framed (Content-Length), so the client's connection stays
        let mut from_origin = BufReader::new(origin);
        let mut answer = String::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if from_origin.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if let Some((name, value)) = h.trim_end().split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
                if name.eq_ignore_ascii_case("connection") {
                    continue;
                }
            }
            answer.push_str(&h);
            if h == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        from_origin.read_exact(&mut body).unwrap();
        client_w.write_all(answer.as_bytes()).unwrap();
        client_w.write_all(&body).unwrap();
    }
}

fn document(apis: &[(&str, &str, &str)]) -> String {
    let apis: Vec<String> = apis
        .iter()
        .map(|(id, url, policy)| {
            format!(
                r#"{{"id": "{id}", "path": "{id}", "serviceUrl": "{url}", "subscriptionRequired": false, "policies": {},
                    "operations": [{{"id": "all", "method": "*", "urlTemplate": "/*"}}]}}"#,
                js(policy)
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion": 1, "namedValues": [{{"name": "proxy-pass", "value": "s3cret", "secret": true}}], "apis": [{}]}}"#,
        apis.join(", ")
    )
}

fn wrap(inbound: &str) -> String {
    format!(
        r#"<policies><inbound>{inbound}</inbound><backend><forward-request /></backend><outbound /><on-error>
  <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "|" + context.LastError.Reason)</value></set-header>
</on-error></policies>"#
    )
}

#[test]
fn requests_go_through_an_http_proxy() {
    let dir = temp_dir("forward-proxy");
    pki(&dir, &[("secure", "IP:127.0.0.1")]);
    let (secure, _) = crate::tls::https_server(&dir, "secure", |req| {
        (
            200,
            vec![],
            format!("secure {} {}", req.method, req.target).into_bytes(),
        )
    });
    let plain = Origin::echo();
    let (port, seen) = forward_proxy(false);
    let proxy = format!(
        r#"<proxy url="http://127.0.0.1:{port}" username="edge" password="{{{{proxy-pass}}}}" />"#
    );
    let sub = format!(
        r#"{proxy}<send-request mode="new" response-variable-name="r"><set-url>https://{secure}/token</set-url>{proxy}</send-request>
        <return-response><set-body>@(((IResponse)context.Variables["r"]).Body.As<string>())</set-body></return-response>"#
    );
    let doc = document(&[
        ("p", &plain.url(""), &wrap(&proxy)),
        ("s", &format!("https://{secure}"), &wrap(&proxy)),
        ("r", &plain.url(""), &wrap(&sub)),
    ]);
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start(&doc, &[&ca]);
    for _ in 0..2 {
        let r = send(
            &gw,
            "GET",
            "/p/items?x=1",
            &[("Proxy-Authorization", "Basic client")],
            "",
        );
        assert_eq!(r.status, 200, "{:?}", r.header("X-Reason"));
        let r = send(&gw, "GET", "/s/items", &[], "");
        assert_eq!(
            (r.status, r.text()),
            (200, "secure GET /items".to_string()),
            "{:?}",
            r.header("X-Reason")
        );
    }
    let r = send(&gw, "GET", "/r/x", &[], "");
    assert_eq!(
        (r.status, r.text()),
        (200, "secure GET /token".to_string()),
        "{:?}",
        r.header("X-Reason")
    );
    // the origin got origin-form targets and never the proxy's credentials
    let got = plain.requests();
    assert_eq!(got[0].target, "/items?x=1");
    assert!(got
        .iter()
        .all(|s| s.header("Proxy-Authorization").is_none()));
    let basic = Some("Basic ZWRnZTpzM2NyZXQ=".to_string());
    let seen = seen.lock().unwrap().clone();
    let plain_port = plain.url("").rsplit(':').next().unwrap().to_string();
    assert!(
        seen.contains(&(
            format!("GET http://127.0.0.1:{plain_port}/items?x=1 HTTP/1.1"),
            basic.clone()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(format!("CONNECT {secure} HTTP/1.1"), basic.clone())),
        "{seen:?}"
    );
    // the tunnel is pooled: two calls to the https backend and the send-request, fewer CONNECTs
    let connects = seen
        .iter()
        .filter(|(l, _)| l.starts_with("CONNECT"))
        .count();
    assert!(connects <= 2, "{seen:?}");
    // the password never reaches the log
    assert!(gw
        .log_lines()
        .iter()
        .all(|l| !l.contains("s3cret") && !l.contains("ZWRnZTpzM2NyZXQ")));
}

#[test]
fn a_proxy_that_refuses_is_a_bad_gateway() {
    let dir = temp_dir("forward-proxy-refused");
    pki(&dir, &[("secure", "IP:127.0.0.1")]);
    let (secure, _) = crate::tls::https_server(&dir, "secure", |_| (200, vec![], b"no".to_vec()));
    let plain = Origin::echo();
    let (port, _) = forward_proxy(true);
    let proxy = format!(r#"<proxy url="http://127.0.0.1:{port}" />"#);
    let doc = document(&[
        ("p", &plain.url(""), &wrap(&proxy)),
        ("s", &format!("https://{secure}"), &wrap(&proxy)),
    ]);
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start(&doc, &[&ca]);
    // an http target gets the proxy's own answer; a tunnel that is refused is a 502
    assert_eq!(send(&gw, "GET", "/p/x", &[], "").status, 407);
    let r = send(&gw, "GET", "/s/x", &[], "");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("X-Reason"),
        Some("forward-request|BackendConnectionFailure")
    );
    assert!(plain.requests().is_empty());
}

#[test]
fn a_proxy_url_must_be_http() {
    let dir = temp_dir("forward-proxy-check");
    for (url, wanted) in [
        ("https://127.0.0.1:3128", "expected http://host:port"),
        ("http://127.0.0.1:3128/path", "expected http://host:port"),
    ] {
        let doc = document(&[(
            "p",
            "http://127.0.0.1:9",
            &wrap(&format!(r#"<proxy url="{url}" />"#)),
        )]);
        let path = dir.join("c.json");
        std::fs::write(&path, doc).unwrap();
        let (code, out, _) = edgegate(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(wanted), "{out}");
    }
    let doc = document(&[(
        "p",
        "http://127.0.0.1:9",
        &wrap(r#"<proxy url="http://127.0.0.1:3128" username="u" />"#),
    )]);
    let path = dir.join("c.json");
    std::fs::write(&path, doc).unwrap();
    let (code, out, _) = edgegate(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("username and password go together"), "{out}");
}

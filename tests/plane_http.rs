//! The management plane's HTTP server against hostile clients: heads parsed by the
//! gateway's strict parser, sizes refused with their own status and text, and a client
//! that drips bytes cannot hold a connection thread past the head deadline.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

fn connect(plane: &Plane) -> TcpStream {
    let s = TcpStream::connect(plane.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Sends `raw` and reads one response; then whether the plane closed the connection.
fn exchange(plane: &Plane, raw: &[u8]) -> (Resp, bool) {
    let mut s = connect(plane);
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r, false).expect("an answer");
    let mut rest = [0u8; 1];
    let closed = match r.read(&mut rest) {
        Ok(0) => true,
        // closed with unread bytes of ours still in its socket
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    (resp, closed)
}

#[test]
fn ambiguous_and_oversized_requests_are_refused_and_closed() {
    let plane = Plane::start();
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let cases: Vec<(String, u16, &str)> = vec![
        (
            // before: the first Content-Length won
            format!("PUT /admin/named-values/a HTTP/1.1\r\nHost: p\r\n{auth}Content-Length: 2\r\nContent-Length: 15\r\n\r\n{{}}"),
            400,
            "Bad request",
        ),
        (
            format!("PUT /admin/named-values/a HTTP/1.1\r\nHost: p\r\n{auth}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{{}}"),
            400,
            "Bad request",
        ),
        (
            format!("GET /admin/apis HTTP/1.1\r\n{auth}\r\n"),
            400,
            "Bad request",
        ),
        (
            format!("PUT /admin/apis/a HTTP/1.1\r\nHost: p\r\n{auth}Content-Length: 999999999\r\n\r\n"),
            413,
            "Request entity too large",
        ),
        (
            format!("GET /admin/apis HTTP/1.1\r\nHost: p\r\n{auth}X-Big: {}\r\n\r\n", "b".repeat(70_000)),
            431,
            "Request header fields too large",
        ),
    ];
    for (raw, status, message) in cases {
        let (resp, closed) = exchange(&plane, raw.as_bytes());
        assert_eq!(resp.status, status, "{}", &raw[..raw.len().min(120)]);
        assert_eq!(resp.text(), error_body(status, message));
        assert!(closed, "closed after {status}");
    }
    // and a good request on the same server still works
    let (s, _) = plane.admin("GET", "/admin/apis", "");
    assert_eq!(s, 200);
}

/// Before: each read had its own 75 s timeout, so one byte every minute held a thread
/// forever. Now the whole head has a deadline.
#[test]
fn a_client_dripping_a_head_is_cut_off_at_the_head_deadline() {
    let plane = Plane::start();
    let mut s = connect(&plane);
    let head = b"GET /admin/apis HTTP/1.1\r\nHost: p\r\nX-Slow: ";
    s.write_all(head).unwrap();
    let dripper = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(25) {
                if s.write_all(b"a").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let mut r = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut r, false).expect("an answer before the drip ends");
    assert_eq!(resp.status, 408);
    assert_eq!(resp.text(), error_body(408, "Request timeout"));
    let _ = s.shutdown(std::net::Shutdown::Both);
    dripper.join().unwrap();
}

#[test]
fn the_admin_api_says_what_is_wrong_and_audits_what_changes() {
    let dir = temp_dir("plane-audit");
    let audit = dir.join("audit.log");
    let plane = Plane::start_with(
        dir.clone(),
        "127.0.0.1:0",
        &[&format!("manage.audit.path={}", audit.display())],
    );
    // a wrong method on a known path: 405 with what is allowed
    let r = request(
        plane.addr,
        &format!("PATCH /admin/apis/x HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(
        (r.status, r.header("Allow")),
        (405, Some("GET, PUT, DELETE"))
    );
    assert_eq!(r.text(), error_body(405, "Method not allowed"));
    let (s, _) = plane.admin("GET", "/admin/gateways/g/token", "");
    assert_eq!(s, 405);
    assert_eq!(plane.admin("GET", "/admin/nothing-here", "").0, 404);
    // malformed JSON: where
    let (s, body) = plane.admin(
        "PUT",
        "/admin/apis/x",
        "{\"path\": \"x\",\n \"serviceUrl\": }",
    );
    assert_eq!(s, 400);
    assert_eq!(
        body,
        error_body(
            400,
            "Body is not valid JSON: expected a value at line 2 column 16"
        )
    );
    // a bad query parameter is not ignored
    plane.admin("PUT", "/admin/gateways/g", "{}");
    let (s, body) = plane.admin("GET", "/admin/gateways/g/telemetry?limit=abc", "");
    assert_eq!(s, 400, "{body}");
    assert_eq!(
        body,
        error_body(400, "limit must be a whole number from 1 to 10000")
    );
    // keys: regenerated with 204 (as APIM), read with listKeys (as APIM)
    let keys = || plane.admin("POST", "/admin/gateways/g/listKeys", "");
    let (s, before) = keys();
    assert_eq!(s, 200);
    assert!(
        before.contains("\"primary\":\"") && before.contains("\"secondary\":\""),
        "{before}"
    );
    assert_eq!(
        plane
            .admin(
                "POST",
                "/admin/gateways/g/keys/regenerate",
                r#"{"keyType": "primary"}"#
            )
            .0,
        204
    );
    let (_, after) = keys();
    let field = |s: &str, k: &str| {
        s.split(&format!("\"{k}\":\""))
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(field(&before, "primary"), field(&after, "primary"));
    assert_eq!(field(&before, "secondary"), field(&after, "secondary"));
    // the audit trail: every change and secret read, no body, no token
    let (s, _) = plane.admin(
        "PUT",
        "/admin/named-values/db-password",
        r#"{"value": "hunter2", "secret": true}"#,
    );
    assert_eq!(s, 201);
    let trail = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = trail.lines().collect();
    assert!(
        lines.iter().any(|l| l
            .contains(r#""method":"PUT","path":"/admin/named-values/db-password","status":201"#)),
        "{trail}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""path":"/admin/gateways/g/listKeys","status":200"#)),
        "{trail}"
    );
    assert!(
        !trail.contains("hunter2") && !trail.contains(ADMIN_TOKEN),
        "{trail}"
    );
    assert!(lines
        .iter()
        .all(|l| l.contains("\"actor\":\"admin:") && l.contains("\"clientIp\":\"127.0.0.1\"")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn the_plane_says_when_it_stops() {
    let mut plane = Plane::start();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &plane.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = plane.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "still running");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    assert!(eventually(Duration::from_secs(5), || plane
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("SIGTERM: stopping"))));
}

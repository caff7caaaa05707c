//! Federation end to end: real `edgegate manage` and `edgegate gateway` processes on
//! loopback with real SQLite files. Every row of the README's fail-static table.

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// An origin answering "a", a plane publishing it as API `echo` at "" to `gw1`, and a
/// gateway federated to it with `settings`.
fn federated(settings: &[&str]) -> (Origin, Plane, Gateway) {
    let a = Origin::text("a");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), settings);
    (a, plane, gw)
}

fn serves(gw: &Gateway, path: &str, text: &str) -> bool {
    get(gw.addr, path).text() == text
}

/// Continuous requests on keep-alive connections until `stop`; counts served and failed.
fn load(
    addr: std::net::SocketAddr,
    path: &'static str,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(usize, usize)> {
    thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            for _ in 0..50 {
                if (&s)
                    .write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
                    .is_err()
                {
                    failed += 1;
                    break;
                }
                match read_response(&mut r, false) {
                    Some(resp) if resp.status == 200 => ok += 1,
                    _ => {
                        failed += 1;
                        break;
                    }
                }
            }
        }
        (ok, failed)
    })
}

#[test]
fn config_reaches_the_gateway_and_changes_arrive_by_long_poll() {
    let a = Origin::text("a");
    let b = Origin::text("b");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "echo", &a.url(""));
    let gw = Gateway::start_service(
        &plane.url(),
        &plane.token("gw1"),
        &["config.service.heartbeat.interval=1s"],
    );
    assert!(serves(&gw, "/echo/x", "a"));
    let st = status(&gw);
    assert!(
        st.contains("\"configSource\": \"service\"") && st.contains("\"result\": \"ok\""),
        "{st}"
    );

    // a change is applied without waiting for a poll interval (10 s by default)
    let changed = Instant::now();
    let (s, _) = plane.admin(
        "PUT",
        "/admin/apis/echo",
        &format!(
            r#"{{"path": "echo", "serviceUrl": "{}", "subscriptionRequired": false}}"#,
            b.url("")
        ),
    );
    assert_eq!(s, 200);
    assert!(eventually(Duration::from_secs(5), || serves(
        &gw, "/echo/x", "b"
    )));
    eprintln!("admin PUT to serving: {:?}", changed.elapsed());

    // the plane shows the instance: heartbeat, version, source, connected
    assert!(eventually(Duration::from_secs(5), || plane
        .admin("GET", "/admin/gateways/gw1", "")
        .1
        .contains("\"state\":\"connected\"")));
    let (_, view) = plane.admin("GET", "/admin/gateways/gw1", "");
    let version = status(&gw)
        .split("\"configVersion\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(
        eventually(Duration::from_secs(5), || plane
            .admin("GET", "/admin/gateways/gw1", "")
            .1
            .contains(&version)),
        "{view}"
    );
    for field in [
        "\"lastHeartbeat\":",
        "\"configSource\":\"service\"",
        "\"tokenExpiry\":",
        "\"lastOutage\":null",
        "\"lastSyncAt\":\"",
        "\"stopping\":false",
        "\"version\":",
    ] {
        assert!(view.contains(field), "{field} in {view}");
    }
    // an API the gateway is not linked to is not in its document
    plane.publish("gw2", "other", "other", &a.url(""));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(get(gw.addr, "/other/x").status, 404);
}

#[test]
fn plane_killed_while_serving_no_request_fails_and_changes_made_meanwhile_arrive() {
    let a = Origin::text("a");
    let b = Origin::text("b");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let gw = Gateway::start_service(
        &plane.url(),
        &plane.token("gw1"),
        &["config.service.poll.interval=1s"],
    );
    assert!(serves(&gw, "/x", "a"));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3).map(|_| load(gw.addr, "/x", stop.clone())).collect();
    thread::sleep(Duration::from_millis(300));

    let listen = plane.addr.to_string();
    let dir = plane.kill();
    assert!(
        eventually(Duration::from_secs(10), || status(&gw)
            .contains("\"offlineSince\": \"")),
        "{}",
        status(&gw)
    );
    let st = status(&gw);
    assert!(st.contains("management plane unreachable"), "{st}");
    thread::sleep(Duration::from_millis(500));

    // changes are made while this gateway cannot see the plane (through another plane
    // process on the same database), then the plane comes back on its address
    let side = Plane::start_at(dir.clone(), "127.0.0.1:0");
    let (s, _) = side.admin(
        "PUT",
        "/admin/apis/echo",
        &format!(
            r#"{{"path": "", "serviceUrl": "{}", "subscriptionRequired": false}}"#,
            b.url("")
        ),
    );
    assert_eq!(s, 200);
    let _ = side.kill();
    assert!(serves(&gw, "/x", "a"), "still the old config while offline");
    let plane = Plane::start_at(dir, &listen);
    assert!(
        eventually(Duration::from_secs(10), || serves(&gw, "/x", "b")),
        "caught up after reconnecting"
    );
    assert!(eventually(Duration::from_secs(5), || status(&gw)
        .contains("\"offlineSince\": null")));
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.join().unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "requests lost while the plane was away");
    assert!(ok > 100, "load ran: {ok}");
    eprintln!("served {ok} requests across the plane restart, {failed} failed");
    drop(plane);
}

#[test]
fn gateway_restarted_while_the_plane_is_down_starts_from_backup() {
    let a = Origin::text("a");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let token = plane.token("gw1");
    let gw = Gateway::start_service(&plane.url(), &token, &[]);
    assert!(serves(&gw, "/x", "a"));
    let dir = gw.kill();
    drop(plane);
    // no plane, and its host name does not even resolve: no network or DNS is needed
    let gw = Gateway::service_in(dir, "http://plane.invalid:7070", &token, &[]);
    assert!(serves(&gw, "/x", "a"));
    let st = status(&gw);
    assert!(st.contains("\"configSource\": \"backup\""), "{st}");
    assert!(eventually(Duration::from_secs(10), || status(&gw)
        .contains("\"offlineSince\": \"")));
}

#[test]
fn gateway_starting_with_backups_off_and_no_plane_exits_with_one_line() {
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", "http://127.0.0.1:9");
    let token = plane.token("gw1");
    let url = plane.url();
    drop(plane);
    let out = std::process::Command::new(BIN)
        .args([
            "gateway",
            "--set",
            &format!("config.service.endpoint={url}"),
            "--set",
            &format!("config.service.auth={token}"),
        ])
        .args([
            "--set",
            "config.backup.enabled=false",
            "--set",
            "net.server.http.listen=127.0.0.1:0",
        ])
        .args(["--set", "config.service.integration.timeout=3s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("edgegate:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("edgegate: cannot start: management plane unreachable:"),
        "{err}"
    );
    assert!(
        lines[0].ends_with("and config backups are off (config.backup.enabled)"),
        "{err}"
    );
}

#[test]
fn a_document_that_does_not_compile_is_never_published() {
    let (_a, plane, gw) = federated(&["config.service.heartbeat.interval=1s"]);
    assert!(serves(&gw, "/x", "a"));
    let before = status(&gw);
    // the plane validates what it stores, so break the stored entity underneath it
    {
        let db = rusqlite::Connection::open(plane.dir.join("plane.db")).unwrap();
        let n = db
            .execute(
                "UPDATE apis SET body = replace(body, 'http://', 'ftp://') WHERE id = 'echo'",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
        // as every change does (the plane builds a gateway's document once per revision)
        db.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
            [],
        )
        .unwrap();
    }
    // edited underneath the plane, so no held poll returns early: up to one long poll
    assert!(
        eventually(Duration::from_secs(30), || plane
            .admin("GET", "/admin/gateways/gw1", "")
            .1
            .contains(
                "\"documentError\":\"apis[0].serviceUrl: expected an http:// or https:// URL"
            )),
        "{}",
        plane.admin("GET", "/admin/gateways/gw1", "").1
    );
    assert!(serves(&gw, "/x", "a"), "the gateway keeps its config");
    let version = |s: &str| {
        s.split("\"configVersion\": ")
            .nth(1)
            .map(|v| v[..18].to_string())
    };
    assert_eq!(version(&status(&gw)), version(&before));
    assert!(
        status(&gw).contains("\"result\": \"ok\""),
        "{}",
        status(&gw)
    );
}

/// A plane (of another version, say) that answers every config poll with `body`.
fn scripted_plane(body: &'static str) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                while let Some(req) = read_request(&mut r, 0) {
                    if req.target.starts_with("/gateway/config") {
                        respond(&mut s, 200, &[("ETag", "\"bad\"")], body.as_bytes());
                    } else {
                        respond(&mut s, 204, &[], b"");
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn invalid_document_from_a_plane_is_rejected_and_reported() {
    let (_a, plane, gw) = federated(&["config.service.heartbeat.interval=1s"]);
    assert!(serves(&gw, "/x", "a"));
    let token = plane.token("gw1");
    let dir = gw.kill();
    drop(plane);
    let bad = scripted_plane(
        r#"{"schemaVersion": 1, "apis": [{"id": "echo", "path": "", "serviceUrl": "ftp://x", "subscriptionRequired": false}]}"#,
    );
    let gw = Gateway::service_in(dir, &format!("http://{bad}"), &token, &[]);
    assert!(
        eventually(Duration::from_secs(10), || status(&gw)
            .contains("config from the management plane rejected")),
        "{}",
        status(&gw)
    );
    let st = status(&gw);
    assert!(st.contains("config from the management plane rejected (1 error(s)); first: apis[0].serviceUrl: expected an http:// or https:// URL"), "{st}");
    assert!(serves(&gw, "/x", "a"), "the old config keeps serving");
}

#[test]
fn revoked_or_expired_token_keeps_serving_and_says_so() {
    let (_a, plane, gw) = federated(&["config.service.poll.interval=1s"]);
    assert!(serves(&gw, "/x", "a"));
    // regenerating the keys voids the token
    let (s, _) = plane.admin("POST", "/admin/gateways/gw1/keys/regenerate", "");
    assert_eq!(s, 204);
    assert!(
        eventually(Duration::from_secs(10), || status(&gw)
            .contains("token rejected")),
        "{}",
        status(&gw)
    );
    assert!(status(&gw).contains("token signature is not valid for this gateway"));
    let r = get(gw.addr, "/x");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "a"),
        "still served, never an empty 200"
    );
    // the plane says why the instance went quiet, once it is quiet
    let (_, view) = plane.admin("GET", "/admin/gateways/gw1", "");
    assert!(
        view.contains(r#""lastTokenRefusal":{"at":"#)
            && view.contains("token signature is not valid for this gateway"),
        "{view}"
    );

    // an expired token (signed with the current key, expiry in the past)
    let key: String = rusqlite::Connection::open(plane.dir.join("plane.db"))
        .unwrap()
        .query_row(
            "SELECT primary_key FROM gateways WHERE id = 'gw1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry = edgegate::federation::token::format_expiry(now - 3600);
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()),
        format!("gw1\n{expiry}").as_bytes(),
    );
    use base64::Engine;
    let expired = format!(
        "GatewayKey gw1&{expiry}&{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    let dir = gw.kill();
    let gw = Gateway::service_in(
        dir,
        &plane.url(),
        &expired,
        &["config.service.poll.interval=1s"],
    );
    assert!(serves(&gw, "/x", "a"), "serves its backup");
    assert!(
        eventually(Duration::from_secs(10), || status(&gw)
            .contains("token expired at")),
        "{}",
        status(&gw)
    );
    assert!(status(&gw).contains(&format!(
        "\"tokenExpiry\": \"{}",
        &edgegate::telemetry::rfc3339(
            std::time::UNIX_EPOCH + Duration::from_secs((now - 3600) / 60 * 60)
        )[..16]
    )));
}

#[test]
fn admin_api_refuses_bad_input_and_unknown_callers() {
    let plane = Plane::start();
    let (s, body) = plane.admin(
        "PUT",
        "/admin/apis/a",
        r#"{"path": "a", "serviceUrl": "nope"}"#,
    );
    assert_eq!(s, 400);
    assert_eq!(
        body,
        r#"{"statusCode": 400, "message": "Invalid entity: serviceUrl: expected an http:// or https:// URL", "errors": [{"path": "serviceUrl", "message": "expected an http:// or https:// URL"}]}"#
    );
    let (s, _) = plane.admin("PUT", "/admin/apis/a", "[1]");
    assert_eq!(s, 400);
    let (s, body) = plane.admin(
        "PUT",
        "/admin/certificates/c",
        r#"{"certPem": "nope", "keyPem": "secret-key-text"}"#,
    );
    assert_eq!(s, 400);
    assert!(
        body.contains(r#""path": "certPem""#) && !body.contains("secret-key-text"),
        "{body}"
    );
    let r = request(plane.addr, "GET /admin/apis HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer wrong\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 401);
    let r = request(plane.addr, "GET /gateway/config HTTP/1.1\r\nHost: p\r\nAuthorization: GatewayKey nobody&209901010000&c2ln\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 401);
    let (s, body) = plane.admin(
        "POST",
        "/admin/gateways/none/token",
        r#"{"expiry": "2099-01-01T00:00:00Z"}"#,
    );
    assert_eq!((s, body.contains("not found")), (404, true));
    plane.admin("PUT", "/admin/gateways/g", "{}");
    let (s, body) = plane.admin(
        "POST",
        "/admin/gateways/g/token",
        r#"{"expiry": "2099-01-01T00:00:00Z"}"#,
    );
    assert_eq!(s, 400, "more than 30 days: {body}");
    // 50 gateways polling at once do not knock it over
    let served = Arc::new(AtomicUsize::new(0));
    plane.publish("g", "echo", "", "http://127.0.0.1:9");
    let token = plane.token("g");
    let pollers: Vec<_> = (0..50)
        .map(|_| {
            let (addr, token, served) = (plane.addr, token.clone(), served.clone());
            thread::spawn(move || {
                let r = request(addr, &format!("GET /gateway/config?wait=1 HTTP/1.1\r\nHost: p\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"));
                if r.status == 200 {
                    served.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for p in pollers {
        p.join().unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 50);
}

#[test]
fn the_plane_speaks_https_and_the_agent_trusts_only_the_configured_ca() {
    let a = Origin::text("a");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let token = plane.token("gw1");
    let dir = plane.kill();
    // a private CA and a server certificate for 127.0.0.1 and localhost
    pki(&dir, &[("server", "DNS:localhost,IP:127.0.0.1")]);
    let cert = format!("manage.tls.cert={}", dir.join("server.pem").display());
    let key = format!("manage.tls.key={}", dir.join("server.key").display());
    let plane = Plane::start_with(dir.clone(), "127.0.0.1:0", &[&cert, &key]);
    // its READY can come before the reader thread has its log line
    assert!(eventually(Duration::from_secs(5), || plane
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("listening on https://"))));
    let endpoint = format!("https://localhost:{}", plane.addr.port());
    // trusting the private CA: syncs over TLS
    let ca = format!("config.service.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start_service(&endpoint, &token, &[&ca]);
    assert!(serves(&gw, "/x", "a"));
    assert!(status(&gw).contains("\"configSource\": \"service\""));
    // without it, the plane's certificate is refused: no config, so no start
    let out = std::process::Command::new(BIN)
        .args([
            "gateway",
            "--set",
            &format!("config.service.endpoint={endpoint}"),
            "--set",
            &format!("config.service.auth={token}"),
        ])
        .args([
            "--set",
            "config.backup.enabled=false",
            "--set",
            "net.server.http.listen=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot start: management plane unreachable")
            && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[test]
fn an_instance_that_misses_two_heartbeats_shows_as_disconnected() {
    let (_a, plane, gw) = federated(&["config.service.heartbeat.interval=1s"]);
    assert!(eventually(Duration::from_secs(5), || plane
        .admin("GET", "/admin/gateways/gw1", "")
        .1
        .contains("\"state\":\"connected\"")));
    drop(gw);
    assert!(
        eventually(Duration::from_secs(6), || plane
            .admin("GET", "/admin/gateways/gw1", "")
            .1
            .contains("\"state\":\"disconnected\"")),
        "{}",
        plane.admin("GET", "/admin/gateways/gw1", "").1
    );
}

fn records(plane: &Plane, gateway: &str) -> Vec<String> {
    let (s, body) = plane.admin(
        "GET",
        &format!("/admin/gateways/{gateway}/telemetry?limit=1000"),
        "",
    );
    assert_eq!(s, 200, "{body}");
    body.split("\"url\":\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn request_records_reach_the_plane() {
    let (_a, plane, gw) = federated(&[]);
    // an unknown key is refused even on an open API (APIM's rule), and still logged
    for i in 0..5 {
        assert_eq!(
            get(gw.addr, &format!("/t/{i}?subscription-key=SECRET")).status,
            401
        );
    }
    assert!(
        eventually(Duration::from_secs(15), || records(&plane, "gw1").len()
            == 5),
        "{:?}",
        records(&plane, "gw1")
    );
    let (_, body) = plane.admin("GET", "/admin/gateways/gw1/telemetry", "");
    assert!(
        body.starts_with("{\"dropped\": 0, \"records\": [{"),
        "{body}"
    );
    assert!(
        body.contains("\"apiId\":\"echo\"") && body.contains("\"responseCode\":401"),
        "{body}"
    );
    assert!(
        !body.contains("SECRET"),
        "subscription keys never leave the gateway"
    );
    assert_eq!(records(&plane, "gw1")[0], "/t/0?subscription-key=***");
}

#[test]
fn records_made_while_offline_are_spooled_and_uploaded_in_order() {
    let (_a, plane, gw) = federated(&["config.service.poll.interval=1s"]);
    assert!(serves(&gw, "/before", "a"));
    assert!(eventually(Duration::from_secs(15), || records(
        &plane, "gw1"
    )
    .len()
        == 1));
    let listen = plane.addr.to_string();
    let dir = plane.kill();
    assert!(eventually(Duration::from_secs(10), || status(&gw)
        .contains("\"offlineSince\": \"")));
    for i in 0..20 {
        assert!(serves(&gw, &format!("/offline/{i:02}"), "a"));
    }
    // an upload cycle passes while the plane is away: the records go to the spool
    thread::sleep(Duration::from_secs(6));
    let spooled: i64 = rusqlite::Connection::open(gw.backup_path())
        .unwrap()
        .query_row("SELECT COALESCE(SUM(records), 0) FROM spool", [], |r| {
            r.get(0)
        })
        .unwrap();
    // 21 when the answer to the upload of /before was lost with the plane: delivery is
    // at least once, and the plane keeps each request id once
    assert!(
        spooled == 20 || spooled == 21,
        "spooled in the backup file: {spooled}"
    );
    let plane = Plane::start_at(dir, &listen);
    assert!(
        eventually(Duration::from_secs(20), || records(&plane, "gw1").len()
            == 21),
        "{:?}",
        records(&plane, "gw1")
    );
    let got = records(&plane, "gw1");
    let want: Vec<String> = std::iter::once("/before".to_string())
        .chain((0..20).map(|i| format!("/offline/{i:02}")))
        .collect();
    assert_eq!(got, want, "all of them, in order");
}

#[test]
fn gateway_keys_never_leave_the_plane() {
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", "http://127.0.0.1:9");
    let token = plane.token("gw1");
    let (primary, secondary): (String, String) =
        rusqlite::Connection::open(plane.dir.join("plane.db"))
            .unwrap()
            .query_row(
                "SELECT primary_key, secondary_key FROM gateways WHERE id = 'gw1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
    for path in [
        "/admin/gateways",
        "/admin/gateways/gw1",
        "/admin/gateways/gw1/apis",
        "/admin/apis",
    ] {
        let (_, body) = plane.admin("GET", path, "");
        assert!(
            !body.contains(&primary) && !body.contains(&secondary),
            "{path} leaks a key"
        );
    }
    let gw = Gateway::start_service(&plane.url(), &token, &[]);
    assert!(eventually(Duration::from_secs(5), || plane
        .admin("GET", "/admin/gateways/gw1", "")
        .1
        .contains("\"state\":\"connected\"")));
    let signature = token.rsplit('&').next().unwrap();
    let plane_log = plane.lines.lock().unwrap().join("\n");
    let gateway_log = gw.log_lines().join("\n");
    for log in [&plane_log, &gateway_log] {
        assert!(!log.contains(&primary) && !log.contains(signature) && !log.contains(ADMIN_TOKEN));
    }
}

#[test]
fn metric_aggregates_reach_the_plane() {
    let (_a, plane, gw) = federated(&[]);
    for _ in 0..3 {
        assert!(serves(&gw, "/x", "a"));
    }
    let want = r#"edgegate_requests_total{api=\"echo\",operation=\"all\",status_class=\"2xx\",error_reason=\"\"} 3"#;
    assert!(
        eventually(Duration::from_secs(20), || plane
            .admin("GET", "/admin/gateways/gw1/metrics", "")
            .1
            .contains(want)),
        "{}",
        plane.admin("GET", "/admin/gateways/gw1/metrics", "").1
    );
    let (_, body) = plane.admin("GET", "/admin/gateways/gw1/metrics", "");
    assert!(body.starts_with("[{\"instanceId\":\""), "{body}");
    assert!(body.contains("edgegate_plane_connected 1"), "{body}");
}

#[test]
fn metric_snapshots_made_while_offline_reach_the_plane_after_a_restart() {
    let (_a, plane, gw) = federated(&["config.service.poll.interval=1s"]);
    for _ in 0..3 {
        assert!(serves(&gw, "/x", "a"));
    }
    let listen = plane.addr.to_string();
    let dir = plane.kill();
    assert!(eventually(Duration::from_secs(10), || status(&gw)
        .contains("\"offlineSince\": \"")));
    for _ in 0..2 {
        assert!(serves(&gw, "/x", "a"));
    }
    // stopped while offline: its last snapshot (5 calls) waits in the backup file
    gw.signal("TERM");
    let mut gw = gw;
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let gw_dir = gw.kill();
    let plane = Plane::start_at(dir, &listen);
    let _gw = Gateway::service_in(gw_dir, &plane.url(), &plane.token("gw1"), &[]);
    let five = r#"edgegate_requests_total{api=\"echo\",operation=\"all\",status_class=\"2xx\",error_reason=\"\"} 5"#;
    assert!(
        eventually(Duration::from_secs(20), || plane
            .admin("GET", "/admin/gateways/gw1/metrics", "")
            .1
            .contains(five)),
        "{}",
        plane.admin("GET", "/admin/gateways/gw1/metrics", "").1
    );
}

#[test]
fn products_subscriptions_named_values_backends_and_the_global_policy_reach_the_gateway() {
    // origin "a" is the API's own backend; "b" is backend b1, and shows the header the
    // global policy sets from a secret named value
    let a = Origin::text("a");
    let b = Origin::start(|req, s| {
        let who = req.header("X-Who").unwrap_or("-").to_string();
        respond(s, 200, &[], format!("b sees {who}").as_bytes());
        true
    });
    let plane = Plane::start();
    plane.publish("gw1", "echo", "echo", &a.url(""));
    plane.publish("gw2", "other", "other", &a.url(""));
    let ok = |(s, body): (u16, String)| {
        assert!((200..300).contains(&s), "{s} {body}");
        body
    };
    ok(plane.admin(
        "PUT",
        "/admin/apis/echo",
        &format!(
            r#"{{"path": "echo", "serviceUrl": "{}", "subscriptionRequired": true}}"#,
            a.url("")
        ),
    ));
    ok(plane.admin(
        "PUT",
        "/admin/named-values/who",
        r#"{"value": "edge-secret-42", "secret": true}"#,
    ));
    ok(plane.admin(
        "PUT",
        "/admin/backends/b1",
        &format!(r#"{{"url": "{}"}}"#, b.url("")),
    ));
    let global = r#"<policies><inbound><set-header name="X-Who" exists-action="override"><value>{{who}}</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    ok(plane.admin(
        "PUT",
        "/admin/policy",
        &format!(r#"{{"value": {}}}"#, js(global)),
    ));
    let gold = r#"<policies><inbound><base /><set-backend-service backend-id="b1" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"#;
    let (s, body) = plane.admin(
        "PUT",
        "/admin/products/gold",
        &format!(
            r#"{{"name": "Gold", "subscriptionRequired": true, "policies": {}}}"#,
            js(gold)
        ),
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        plane.admin("PUT", "/admin/products/gold/apis/echo", "").0,
        201
    );
    let (s, body) = plane.admin(
        "PUT",
        "/admin/subscriptions/s1",
        r#"{"scope": "/products/gold", "name": "Team one"}"#,
    );
    assert_eq!(s, 201, "{body}");
    assert!(!body.contains("Key"), "keys are not shown: {body}");
    let secrets = ok(plane.admin("POST", "/admin/subscriptions/s1/listSecrets", ""));
    let key = secrets
        .split("\"primaryKey\":\"")
        .nth(1)
        .and_then(|k| k.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(key.len(), 32);

    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    let call = |key: &str| {
        request(
            gw.addr,
            &format!("GET /echo/x HTTP/1.1\r\nHost: g\r\nOcp-Apim-Subscription-Key: {key}\r\nConnection: close\r\n\r\n"),
        )
    };
    // the product's policy sends the call to backend b1; the global policy set the header
    let r = call(&key);
    assert_eq!(
        (r.status, r.text()),
        (200, "b sees edge-secret-42".to_string())
    );
    assert_eq!(call("not-a-key-1234").status, 401);

    // secrets stay in the plane's store and the gateway's memory
    let listed = ok(plane.admin("GET", "/admin/named-values", ""))
        + &ok(plane.admin("GET", "/admin/subscriptions", ""));
    assert!(
        !listed.contains("edge-secret-42") && !listed.contains(&key),
        "{listed}"
    );
    assert_eq!(
        ok(plane.admin("POST", "/admin/named-values/who/listValue", "")),
        r#"{"value":"edge-secret-42"}"#
    );
    // what is in use cannot go
    let (s, body) = plane.admin("DELETE", "/admin/named-values/who", "");
    assert_eq!(
        (s, body.contains("used by the global policy")),
        (409, true),
        "{body}"
    );
    let (s, _) = plane.admin("DELETE", "/admin/products/gold", "");
    assert_eq!(s, 409);
    // an invalid entity is refused with its field
    let (s, body) = plane.admin("PUT", "/admin/subscriptions/s2", r#"{"scope": "/nowhere"}"#);
    assert_eq!(s, 400);
    assert!(body.contains(r#""path": "scope""#), "{body}");

    // a suspended subscription stops working at the gateway once the change arrives
    ok(plane.admin(
        "PUT",
        "/admin/subscriptions/s1",
        r#"{"scope": "/products/gold", "state": "suspended"}"#,
    ));
    assert!(eventually(Duration::from_secs(5), || call(&key).status == 401));
    // the key did not change with the update
    assert_eq!(
        ok(plane.admin("POST", "/admin/subscriptions/s1/listSecrets", "")),
        secrets
    );

    // a gateway serving only another API gets none of this
    let token2 = plane.token("gw2");
    let doc = request(
        plane.addr,
        &format!("GET /gateway/config HTTP/1.1\r\nHost: p\r\nAuthorization: {token2}\r\nConnection: close\r\n\r\n"),
    )
    .text();
    assert!(doc.contains("\"other\""), "{doc}");
    // (the global policy applies everywhere, so the named value it uses goes along)
    assert!(doc.contains(r#""namedValues":[{"name":"who""#), "{doc}");
    for absent in [r#""id":"gold""#, r#""id":"s1""#, r#""id":"b1""#] {
        assert!(!doc.contains(absent), "{absent} in {doc}");
    }
    // a backend-id computed per call may name any backend: the gateway gets them all
    let pick = r#"<policies><inbound><base /><set-backend-service backend-id="@(context.Request.Headers.GetValueOrDefault("X-Backend", "b1"))" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"#;
    ok(plane.admin(
        "PUT",
        "/admin/apis/other",
        &format!(
            r#"{{"path": "other", "serviceUrl": "{}", "subscriptionRequired": false, "policies": {}}}"#,
            a.url(""),
            js(pick)
        ),
    ));
    let doc = request(
        plane.addr,
        &format!("GET /gateway/config HTTP/1.1\r\nHost: p\r\nAuthorization: {token2}\r\nConnection: close\r\n\r\n"),
    )
    .text();
    assert!(doc.contains(r#""id":"b1""#), "{doc}");
    // and the gateway never logged a secret
    let logs = gw.log_lines().join("\n");
    assert!(
        !logs.contains("edge-secret-42") && !logs.contains(&key),
        "{logs}"
    );
}

/// Users and groups made through the admin API reach the gateway with the
/// subscriptions they own: policies read `context.User`, and blocking the user stops
/// their key once the change arrives.
#[test]
fn users_and_groups_from_the_plane_reach_policies() {
    let origin = Origin::start(|req, s| {
        let who = req.header("X-User").unwrap_or("-").to_string();
        respond(s, 200, &[], who.as_bytes());
        true
    });
    let plane = Plane::start();
    plane.publish("gw1", "echo", "echo", &origin.url(""));
    let ok = |(s, body): (u16, String)| {
        assert!((200..300).contains(&s), "{s} {body}");
        body
    };
    let policy = r#"<policies><inbound><set-header name="X-User" exists-action="override"><value>@(context.User == null ? "none" : context.User.Email + "|" + string.Join(",", context.User.Groups.Select(g => g.Name)))</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    ok(plane.admin(
        "PUT",
        "/admin/apis/echo",
        &format!(
            r#"{{"path": "echo", "serviceUrl": "{}", "subscriptionRequired": true, "policies": {}}}"#,
            origin.url(""),
            js(policy)
        ),
    ));
    ok(plane.admin(
        "PUT",
        "/admin/groups/gold",
        r#"{"displayName": "Gold partners"}"#,
    ));
    let ann = r#"{"email": "ann@example.com", "firstName": "Ann", "groups": ["gold"]}"#;
    ok(plane.admin("PUT", "/admin/users/ann", ann));
    ok(plane.admin(
        "PUT",
        "/admin/subscriptions/s1",
        r#"{"scope": "/apis/echo", "ownerId": "/users/ann", "primaryKey": "ann-key-123456"}"#,
    ));
    let listed = ok(plane.admin("GET", "/admin/users", ""));
    assert!(listed.contains(r#""email":"ann@example.com""#), "{listed}");

    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    let call = || {
        request(
            gw.addr,
            "GET /echo/x HTTP/1.1\r\nHost: g\r\nOcp-Apim-Subscription-Key: ann-key-123456\r\nConnection: close\r\n\r\n",
        )
    };
    let r = call();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "ann@example.com|Gold partners,Developers")
    );
    // a group in use cannot go; a user with subscriptions neither, unless asked
    assert_eq!(plane.admin("DELETE", "/admin/groups/gold", "").0, 409);
    assert_eq!(plane.admin("DELETE", "/admin/users/ann", "").0, 409);
    // blocking the user stops the key at the gateway
    let blocked = r#"{"email": "ann@example.com", "groups": ["gold"], "state": "blocked"}"#;
    ok(plane.admin("PUT", "/admin/users/ann", blocked));
    assert!(eventually(Duration::from_secs(5), || call().status == 401));
}

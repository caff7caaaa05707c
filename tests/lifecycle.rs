//! The process from the outside: settings and their errors, `check`, `version`, status,
//! request logs, SIGHUP reload under load, SIGTERM drain.

use std::io::{BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_usage() {
    let (code, out, _) = run(&["version"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("edgegate {} (", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let (code, _, err) = run(&["frobnicate"], &[]);
    assert_eq!(code, 2);
    assert!(err.starts_with("edgegate: unknown command 'frobnicate'"));
    // every command explains itself, on stdout, exit 0
    for (args, first) in [
        (vec!["gateway", "--help"], "usage: edgegate gateway "),
        (vec!["manage", "-h"], "usage: edgegate manage "),
        (vec!["check", "--help"], "usage: edgegate check FILE"),
        (vec!["backups", "--help"], "usage: edgegate backups "),
        (vec!["--help"], "usage:"),
    ] {
        let (code, out, err) = run(&args, &[]);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        assert!(out.starts_with(first), "{args:?}: {out}");
    }
    // a mistake says what it is, then the command's usage
    for (args, line) in [
        (
            vec!["gateway", "--bogus"],
            "edgegate: unknown option '--bogus'",
        ),
        (
            vec!["gateway", "--config"],
            "edgegate: --config needs a value (FILE)",
        ),
        (
            vec!["backups", "show"],
            "edgegate: backups show needs a VERSION (or #SEQ)",
        ),
    ] {
        let (code, _, err) = run(&args, &[]);
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(err.lines().next(), Some(line), "{err}");
        assert!(err.contains("\nusage: edgegate "), "{err}");
    }
}

#[test]
fn bad_settings_exit_2_with_one_line_naming_the_key() {
    let dir = temp_dir("settings");
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, simple_config("1", "", "http://127.0.0.1:9")).unwrap();
    let cfg = cfg.to_str().unwrap();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--set", "limits.bogus=1"], vec![], "edgegate: unknown setting 'limits.bogus' (--set)\n"),
        (
            vec!["--set", "limits.client.idle.timeout=soon"],
            vec![],
            "edgegate: setting 'limits.client.idle.timeout' (--set): invalid value 'soon', expected a duration such as 500ms, 10s or 5m\n",
        ),
        (
            vec![],
            vec![("EDGEGATE_LIMITS_REQUEST_BODY_MAX", "lots")],
            "edgegate: setting 'limits.request.body.max' (environment EDGEGATE_LIMITS_REQUEST_BODY_MAX): invalid value 'lots', expected a size such as 512, 32KiB or 1MiB\n",
        ),
        (vec![], vec![("EDGEGATE_TYPO_KEY", "1")], "edgegate: unknown setting 'EDGEGATE_TYPO_KEY' (environment)\n"),
    ];
    for (flags, env, want) in cases {
        let mut args = vec!["gateway", "--config", cfg];
        args.extend(flags);
        let (code, _, err) = run(&args, &env);
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(err, want);
    }
    // a settings file: later sources win, errors name the file line
    let file = dir.join("gw.conf");
    std::fs::write(&file, "# comment\nlimits.connections.max = 0\n").unwrap();
    let (code, _, err) = run(
        &[
            "gateway",
            "--config",
            cfg,
            "--settings",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "edgegate: setting 'limits.connections.max' ({} line 2): invalid value '0', expected a whole number from 1 to 1000000\n",
            file.display()
        )
    );
    let (code, _, err) = run(&["gateway"], &[]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "edgegate: no config source: set config.local.path (or pass --config FILE) or config.service.endpoint\n"
    );
    // rules across keys are settings errors too
    let (code, _, err) = run(
        &[
            "gateway",
            "--set",
            "config.service.endpoint=http://127.0.0.1:9",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "edgegate: config.service.auth is required with config.service.endpoint\n"
    );
    let (code, _, err) = run(&["manage", "--set", "manage.tls.cert=/x.pem"], &[]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "edgegate: manage.tls.cert and manage.tls.key must be set together\n"
    );
}

#[test]
fn settings_layering_reaches_the_running_gateway() {
    // file says 10 bytes, environment says 5, the flag says 3: the flag wins
    let origin = Origin::echo();
    let dir = temp_dir("layering");
    let file = dir.join("gw.conf");
    std::fs::write(&file, "limits.request.body.max = 10\n").unwrap();
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, simple_config("1", "", &origin.url(""))).unwrap();
    for (env_value, flag, limit) in [
        (None, None, 10),
        (Some("5"), None, 5),
        (Some("5"), Some("3"), 3),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "gateway",
            "--settings",
            file.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ]);
        cmd.args([
            "--set",
            "net.server.http.listen=127.0.0.1:0",
            "--set",
            "config.backup.enabled=false",
        ]);
        if let Some(f) = flag {
            cmd.args(["--set", &format!("limits.request.body.max={f}")]);
        }
        if let Some(e) = env_value {
            cmd.env("EDGEGATE_LIMITS_REQUEST_BODY_MAX", e);
        }
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            assert!(
                std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0,
                "gateway exited"
            );
            if let Some(a) = line.split("listening on http://").nth(1) {
                break a.trim().parse::<std::net::SocketAddr>().unwrap();
            }
        };
        let body = "x".repeat(limit);
        let ok = request(addr, &format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {limit}\r\nConnection: close\r\n\r\n{body}"));
        assert_eq!(ok.status, 200);
        let over = request(addr, &format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}x", limit + 1));
        assert_eq!(over.status, 413, "limit {limit}");
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn check_prints_every_error_with_its_json_path() {
    let dir = temp_dir("check");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"schemaVersion": 1, "apis": [
            {"id": "a", "path": "a", "serviceUrl": "http://h"},
            {"id": "b", "path": "b", "serviceUrl": "http://h"},
            {"id": "c", "path": "c", "serviceUrl": "http://h"},
            {"id": "d", "path": "d", "serviceUrl": "nope://h", "operations": [
                {"id": "o", "method": "GET", "urlTemplate": "items"}]}]}"#,
    )
    .unwrap();
    let (code, out, _) = run(&["check", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    let p = bad.display();
    assert_eq!(
        out,
        format!("{p}: apis[3].serviceUrl: expected an http:// or https:// URL\n{p}: apis[3].operations[0].urlTemplate: must start with '/'\n{p}: 2 error(s)\n")
    );
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        simple_config("v9", "x", "http://backend.internal:8000"),
    )
    .unwrap();
    let (code, out, _) = run(&["check", good.to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "{}: ok (version v9, 1 apis, 2 operations)\n",
            good.display()
        )
    );
    let syntax = dir.join("syntax.json");
    std::fs::write(&syntax, "{\n  \"schemaVersion\": 1,\n  \"apis\": [}\n").unwrap();
    let (code, out, _) = run(&["check", syntax.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!(
            "{}: invalid JSON at line 3 column 12: expected a value",
            syntax.display()
        )),
        "{out}"
    );
    // the bundled example is valid
    let (code, _, _) = run(
        &[
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.json"),
        ],
        &[],
    );
    assert_eq!(code, 0);
}

#[test]
fn invalid_config_at_start_exits_1_listing_errors() {
    let dir = temp_dir("badstart");
    let cfg = dir.join("c.json");
    std::fs::write(
        &cfg,
        r#"{"schemaVersion": 1, "apis": [{"id": "a", "path": "a"}]}"#,
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let listen = "net.server.http.listen=127.0.0.1:0";
    // backups off
    let (code, _, err) = run(
        &[
            "gateway",
            "--config",
            cfg_s,
            "--set",
            listen,
            "--set",
            "config.backup.enabled=false",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "edgegate: config rejected:\n{}: apis[0].serviceUrl: required\n",
            cfg.display()
        )
    );
    // backups on, but none stored yet
    let db = format!("config.backup.path={}", dir.join("b.db").display());
    let (code, _, err) = run(
        &["gateway", "--config", cfg_s, "--set", listen, "--set", &db],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.ends_with(&format!(
            "{}: apis[0].serviceUrl: required\nand no usable backup\n",
            cfg.display()
        )),
        "{err}"
    );
}

#[test]
fn status_endpoint_reports_the_running_config() {
    let origin = Origin::echo();
    let gw = Gateway::start(&simple_config("v42", "", &origin.url("")), &[]);
    for path in [
        "/status-0123456789abcdef",
        "/internal-status-0123456789abcdef",
    ] {
        let r = get(gw.addr, path);
        assert_eq!(r.status, 200);
        let v: miniserde::json::Value = miniserde::json::from_str(&r.text()).unwrap();
        let miniserde::json::Value::Object(o) = v else {
            panic!("{}", r.text())
        };
        let s = |k: &str| match o.get(k) {
            Some(miniserde::json::Value::String(s)) => s.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(s("status"), "ok");
        assert_eq!(s("configVersion"), "v42");
        assert_eq!(s("configSource"), "local");
        assert!(matches!(
            o.get("configAgeSeconds"),
            Some(miniserde::json::Value::Number(_))
        ));
        assert!(matches!(
            o.get("offlineSince"),
            Some(miniserde::json::Value::Null)
        ));
    }
    assert!(
        origin.requests().is_empty(),
        "status is answered by the gateway"
    );
}

#[test]
fn json_request_log_has_every_field_and_no_secrets() {
    let origin = Origin::echo();
    // the API requires a key; the caller's key is valid and must never be logged
    let mut config = simple_config("1", "echo", &origin.url("")).replace(
        "\"subscriptionRequired\": false",
        "\"subscriptionRequired\": true",
    );
    config.pop();
    config.push_str(
        r#", "subscriptions": [{"id": "sub-1", "scope": "/apis", "primaryKey": "TOPSECRET-key"}]}"#,
    );
    let gw = Gateway::start(&config, &["telemetry.logs.std=json"]);
    assert_eq!(
        get(gw.addr, "/echo/items/7?subscription-key=TOPSECRET-key&a=1").status,
        200
    );
    let line = gw.wait_for_log("\"requestId\"");
    assert!(!line.contains("TOPSECRET"), "{line}");
    let v: miniserde::json::Value = miniserde::json::from_str(&line).unwrap();
    let miniserde::json::Value::Object(o) = v else {
        panic!()
    };
    for key in [
        "time",
        "requestId",
        "clientIp",
        "method",
        "url",
        "apiId",
        "operationId",
        "subscriptionId",
        "responseCode",
        "backendResponseCode",
        "requestSize",
        "responseSize",
        "totalTimeMs",
        "backendTimeMs",
        "errorReason",
    ] {
        assert!(o.contains_key(key), "missing {key} in {line}");
    }
    let s = |k: &str| match o.get(k) {
        Some(miniserde::json::Value::String(s)) => s.clone(),
        Some(other) => miniserde::json::to_string(other),
        None => String::new(),
    };
    assert_eq!(s("url"), "/echo/items/7?subscription-key=***&a=1");
    assert_eq!(s("apiId"), "echo");
    assert_eq!(s("subscriptionId"), "sub-1");
    assert_eq!(s("operationId"), "get-item");
    assert_eq!(s("responseCode"), "200");
    assert_eq!(s("backendResponseCode"), "200");
    assert_eq!(s("clientIp"), "127.0.0.1");
    // a gateway answer is logged with its reason, and its URL redacted as well
    assert_eq!(
        get(
            gw.addr,
            "/nowhere?subscription-key=TOPSECRET-key&access_token=TOPSECRET-token&page=2"
        )
        .status,
        404
    );
    let line = gw.wait_for_log("operation_not_found");
    assert!(line.contains("\"responseCode\":404"), "{line}");
    assert!(
        line.contains("\"url\":\"/nowhere?subscription-key=***&access_token=***&page=2\""),
        "{line}"
    );
    // a key the API itself does not take is still redacted (an API's own name too)
    assert_eq!(
        get(gw.addr, "/echo/items/7?subscription-key=TOPSECRET-other").status,
        401
    );
    let line = gw.wait_for_log("/echo/items/7?subscription-key=***\"");
    assert!(!line.contains("TOPSECRET"), "{line}");
}

#[test]
fn a_token_a_policy_reads_from_the_query_is_redacted_in_logs() {
    let origin = Origin::echo();
    let policy = r#"<policies><inbound><validate-jwt query-parameter-name="jwt" failed-validation-httpcode="401"><issuer-signing-keys><key>c2VjcmV0LXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmchIQ==</key></issuer-signing-keys></validate-jwt></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let config = simple_config("1", "echo", &origin.url("")).replace(
        "\"subscriptionRequired\": false,",
        &format!(
            "\"subscriptionRequired\": false, \"policies\": {},",
            js(policy)
        ),
    );
    let gw = Gateway::start(&config, &["telemetry.logs.std=json"]);
    assert_eq!(
        get(
            gw.addr,
            "/echo/items/1?jwt=eyJhbGciOiJIUzI1NiJ9.TOPSECRET.sig&x=1"
        )
        .status,
        401
    );
    let line = gw.wait_for_log("/echo/items/1?");
    assert!(
        line.contains("\"url\":\"/echo/items/1?jwt=***&x=1\""),
        "{line}"
    );
    assert!(!line.contains("TOPSECRET"), "{line}");
}

#[test]
fn sighup_reloads_under_load_without_a_failed_request() {
    let old = Origin::start(|_, s| {
        respond(s, 200, &[], b"old");
        true
    });
    let new = Origin::start(|_, s| {
        respond(s, 200, &[], b"new");
        true
    });
    let gw = Gateway::start(&simple_config("v1", "", &old.url("")), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, failures, served) =
                (gw.addr, stop.clone(), failures.clone(), served.clone());
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    for _ in 0..20 {
                        if (&s)
                            .write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
                            .is_err()
                        {
                            failures.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        match read_response(&mut r, false) {
                            Some(resp)
                                if resp.status == 200
                                    && (resp.text() == "old" || resp.text() == "new") =>
                            {
                                served.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {
                                failures.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    // an invalid file: rejected, old config keeps serving
    std::fs::write(
        &gw.config_path,
        "{\"schemaVersion\": 1, \"apis\": [{\"id\": \"\"}]}",
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for_log("config rejected, running config kept: apis[0].id: must not be empty");
    let status = get(gw.addr, "/status-0123456789abcdef").text();
    assert!(status.contains("\"configVersion\": \"v1\""), "{status}");
    assert!(status.contains("\"result\": \"error\""), "{status}");
    // a valid one, several times, under load
    std::fs::write(&gw.config_path, simple_config("v2", "", &new.url(""))).unwrap();
    for _ in 0..5 {
        gw.signal("HUP");
        thread::sleep(Duration::from_millis(100));
    }
    gw.wait_for_log("config version v2 (local) applied");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(
        served.load(Ordering::SeqCst) > 100,
        "load actually ran: {}",
        served.load(Ordering::SeqCst)
    );
    assert_eq!(get(gw.addr, "/x").text(), "new");
    let status = get(gw.addr, "/status-0123456789abcdef").text();
    assert!(
        status.contains("\"configVersion\": \"v2\"") && status.contains("\"result\": \"ok\""),
        "{status}"
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let origin = Origin::start(|_, s| {
        thread::sleep(Duration::from_millis(1500));
        respond(s, 200, &[], b"finished");
        true
    });
    let mut gw = Gateway::start(
        &simple_config("1", "", &origin.url("")),
        &["limits.shutdown.timeout=10s"],
    );
    let idle = gw.connect();
    let busy = gw.connect();
    (&busy)
        .write_all(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    gw.signal("TERM");
    // the idle connection is closed at once
    let mut r = BufReader::new(idle.try_clone().unwrap());
    assert!(read_response(&mut r, false).is_none());
    // new connections are refused
    thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "listener closed"
    );
    // the in-flight request completes, told that the connection closes
    let mut r = BufReader::new(busy.try_clone().unwrap());
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), "finished");
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_deadline_bounds_the_drain() {
    let origin = Origin::start(|_, s| {
        thread::sleep(Duration::from_secs(20));
        respond(s, 200, &[], b"too late");
        false
    });
    let mut gw = Gateway::start(
        &simple_config("1", "", &origin.url("")),
        &["limits.shutdown.timeout=1s"],
    );
    let busy = gw.connect();
    (&busy)
        .write_all(b"GET /stuck HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_stuck_stderr_never_stalls_traffic() {
    // stderr is a pipe nobody reads: once it is full, every write to it blocks. Traffic,
    // reload signals and the status endpoint must carry on regardless.
    let origin = Origin::echo();
    let dir = temp_dir("stuck-stderr");
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, simple_config("1", "", &origin.url(""))).unwrap();
    // listen on port 0 and learn the port from the gateway's own "listening on" line:
    // picking a free port first and handing it over races with every other test
    let mut child = Command::new(BIN)
        .args([
            "gateway",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "net.server.http.listen=127.0.0.1:0",
        ])
        .args([
            "--set",
            &format!("config.backup.path={}", dir.join("b.db").display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // read stderr up to the listening line, then never again: the pipe fills up
    let mut unread = BufReader::new(child.stderr.take().unwrap());
    let mut addr: Option<std::net::SocketAddr> = None;
    for _ in 0..50 {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut unread, &mut line).unwrap_or(0) == 0 {
            break;
        }
        addr = line.split("listening on http://").nth(1).and_then(|a| {
            a.trim()
                .trim_end_matches(['"', '}'])
                .parse::<std::net::SocketAddr>()
                .ok()
        });
        if addr.is_some() {
            break;
        }
    }
    let addr = addr.expect("the gateway says where it listens");
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    // ~250 bytes of request log each: 3,000 requests are far more than a pipe holds
    for i in 0..3000 {
        if i % 500 == 0 {
            // the loop logs reload outcomes; with a full pipe that must not block it
            let _ = Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status();
        }
        (&s).write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false).expect("answered");
        assert_eq!(resp.status, 200, "request {i}");
    }
    assert_eq!(get(addr, "/status-0123456789abcdef").status, 200);
    // the loop itself logs on SIGTERM ("shutting down"); it still drains and exits 0
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = eventually(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    assert!(exited, "the gateway hung on a full stderr");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn prometheus_metrics_count_requests_by_api_operation_status_and_reason() {
    let origin = Origin::echo();
    // 200 APIs (one series each) so the exposition is larger than one 16 KiB buffer
    let mut apis = vec![format!(
        r#"{{"id": "echo", "path": "echo", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "get-item", "method": "GET", "urlTemplate": "/items/{{id}}"}}]}}"#,
        origin.url("")
    )];
    for i in 0..200 {
        apis.push(format!(
            r#"{{"id": "down-{i}", "path": "down-{i}", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false,
                "operations": [{{"id": "all", "method": "*", "urlTemplate": "/*"}}]}}"#
        ));
    }
    let config = format!(
        r#"{{"schemaVersion": 1, "version": "m1", "apis": [{}]}}"#,
        apis.join(",")
    );
    let gw = Gateway::start(
        &config,
        &[
            "telemetry.metrics.local=prometheus",
            "telemetry.metrics.local.prometheus.listen=127.0.0.1:0",
        ],
    );
    let maddr = gw.metrics_addr();
    assert_eq!(get(gw.addr, "/echo/items/1").status, 200);
    assert_eq!(get(gw.addr, "/echo/items/2").status, 200);
    assert_eq!(get(gw.addr, "/nope").status, 404);
    for i in 0..200 {
        assert_eq!(get(gw.addr, &format!("/down-{i}/x")).status, 502);
    }
    assert_eq!(get(gw.addr, "/status-0123456789abcdef").status, 200);
    // the loop hands its counts over every second; the scrape renders off the loop
    let last = "edgegate_requests_total{api=\"down-199\",operation=\"all\",status_class=\"5xx\",error_reason=\"backend_connect_failed\"} 1";
    assert!(eventually(Duration::from_secs(5), || get(
        maddr, "/metrics"
    )
    .text()
    .lines()
    .any(|l| l == last)));
    let r = get(maddr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    assert!(
        text.len() > 16 * 1024,
        "a large exposition arrives whole ({} bytes)",
        text.len()
    );
    for want in [
        "edgegate_requests_total{api=\"echo\",operation=\"get-item\",status_class=\"2xx\",error_reason=\"\"} 2",
        "edgegate_requests_total{api=\"\",operation=\"\",status_class=\"4xx\",error_reason=\"operation_not_found\"} 1",
        "edgegate_requests_total{api=\"down-199\",operation=\"all\",status_class=\"5xx\",error_reason=\"backend_connect_failed\"} 1",
        "edgegate_request_duration_milliseconds_count{api=\"echo\",operation=\"get-item\",status_class=\"2xx\",error_reason=\"\"} 2",
        "edgegate_backend_duration_milliseconds_count{api=\"echo\",operation=\"get-item\",status_class=\"2xx\",error_reason=\"\"} 2",
        "edgegate_client_duration_milliseconds_count{api=\"echo\",operation=\"get-item\",status_class=\"2xx\",error_reason=\"\"} 2",
        "edgegate_gateway_duration_milliseconds_count{api=\"echo\",operation=\"get-item\",status_class=\"2xx\",error_reason=\"\"} 2",
        "edgegate_config_info{version=\"m1\"} 1",
        // one version applied so far, backed up
        "edgegate_backup_versions 1",
    ] {
        assert!(text.lines().any(|l| l == want), "missing {want}");
    }
    assert!(
        !text.contains("status-0123456789abcdef"),
        "health probes are not counted"
    );
    assert!(text
        .lines()
        .any(|l| l.starts_with("edgegate_connections_open ")));
    assert_eq!(
        get(maddr, "/other").status,
        404,
        "the metrics listener answers /metrics only"
    );
    // a reload applies and backs up a second version
    std::fs::write(&gw.config_path, config.replace("\"m1\"", "\"m2\"")).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("config version m2 (");
    eventually(Duration::from_secs(5), || {
        get(maddr, "/metrics")
            .text()
            .lines()
            .any(|l| l == "edgegate_backup_versions 2")
    });
    let text = get(maddr, "/metrics").text();
    assert!(
        text.lines().any(|l| l == "edgegate_backup_versions 2"),
        "{}",
        text.lines()
            .filter(|l| l.contains("backup"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let origin = Origin::echo();
    let dir = temp_dir("notify");
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, simple_config("v7", "", &origin.url(""))).unwrap();
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let recv = |sock: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut child = Command::new(BIN)
        .args(["gateway", "--config", cfg.to_str().unwrap()])
        .args(["--set", "net.server.http.listen=127.0.0.1:0"])
        .args([
            "--set",
            &format!("config.backup.path={}", dir.join("b.db").display()),
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = recv(&sock);
    assert!(
        ready.starts_with(
            "READY=1\nSTATUS=serving config version v7\nEDGEGATE_LISTEN=http://127.0.0.1:"
        ),
        "{ready}"
    );
    // the loop pings every WATCHDOG_USEC / 2
    assert_eq!(recv(&sock), "WATCHDOG=1");
    assert_eq!(recv(&sock), "WATCHDOG=1");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut stopping = false;
    for _ in 0..20 {
        let msg = recv(&sock);
        if msg == "STOPPING=1\nSTATUS=draining" {
            stopping = true;
            break;
        }
        assert_eq!(msg, "WATCHDOG=1");
    }
    assert!(stopping);
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // the management plane says READY too, here on an abstract socket
    let name = format!("edgegate-test-{}", std::process::id());
    let abstract_sock =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    abstract_sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut plane = Command::new(BIN)
        .args(["manage", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("plane.db"))
        .env("EDGEGATE_MANAGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = recv(&abstract_sock);
    assert!(
        ready.starts_with("READY=1\nEDGEGATE_LISTEN=http://127.0.0.1:"),
        "{ready}"
    );
    let _ = plane.kill();
    let _ = plane.wait();
}

//! The gateway's background work against real planes: every request record reaches
//! stderr and the plane (under load, and the last one before SIGTERM), a black-holed
//! plane delays neither logs nor pins, `backups rollback|unpin` apply without a signal,
//! `context.Deployment.GatewayId` comes from a token file and follows its rotation, and
//! the plane's fleet view tells the truth about stopped and restarted instances.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Records the plane stored for `gateway` whose URL contains `needle`.
fn plane_records(plane: &Plane, gateway: &str, needle: &str) -> i64 {
    let db = rusqlite::Connection::open(plane.dir.join("plane.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM telemetry WHERE gateway = ?1 AND instr(record, ?2) > 0",
        rusqlite::params![gateway, needle],
        |r| r.get(0),
    )
    .unwrap()
}

fn plane_dropped(plane: &Plane, gateway: &str) -> i64 {
    let (_, body) = plane.admin(
        "GET",
        &format!("/admin/gateways/{gateway}/telemetry?limit=1"),
        "",
    );
    body.split("\"dropped\": ")
        .nth(1)
        .and_then(|d| d.split(',').next())
        .and_then(|d| d.trim().parse().ok())
        .unwrap()
}

/// Requests on `connections` keep-alive connections for `for_how_long`; how many got 200.
fn load(gw: &Gateway, path: &'static str, connections: usize, for_how_long: Duration) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, stop) = (gw.addr, Arc::clone(&stop));
            thread::spawn(move || {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut ok = 0;
                while !stop.load(Ordering::SeqCst) {
                    (&s).write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
                        .unwrap();
                    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    thread::sleep(for_how_long);
    stop.store(true, Ordering::SeqCst);
    workers.into_iter().map(|w| w.join().unwrap()).sum()
}

#[test]
fn every_request_record_reaches_stderr_and_the_plane_under_load() {
    let a = Origin::text("a");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    let served = load(&gw, "/under-load", 4, Duration::from_secs(3));
    assert!(served > 1000, "{served}");
    let on_stderr = || {
        gw.log_lines()
            .iter()
            .filter(|l| l.contains("/under-load"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || on_stderr() == served),
        "{} of {served} on stderr",
        on_stderr()
    );
    assert!(
        eventually(Duration::from_secs(20), || plane_records(
            &plane,
            "gw1",
            "/under-load"
        ) == served as i64),
        "{} of {served} at the plane",
        plane_records(&plane, "gw1", "/under-load")
    );
    assert_eq!(plane_dropped(&plane, "gw1"), 0);
}

#[test]
fn the_last_record_before_sigterm_reaches_the_plane_and_the_instance_says_it_stopped() {
    let a = Origin::text("a");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let token = plane.token("gw1");
    let mut gw = Gateway::start_service(&plane.url(), &token, &[]);
    assert_eq!(get(gw.addr, "/the-last-one").text(), "a");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        plane_records(&plane, "gw1", "/the-last-one"),
        1,
        "sent while stopping"
    );
    let (_, view) = plane.admin("GET", "/admin/gateways/gw1", "");
    assert!(view.contains("\"state\":\"stopped\""), "{view}");
    assert!(view.contains("\"stopping\":true"), "{view}");
    let instance = view
        .split("\"instanceId\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // the same installation is the same instance after a restart
    let dir = std::mem::replace(&mut gw.dir, std::path::PathBuf::new());
    let gw = Gateway::service_in(dir, &plane.url(), &token, &[]);
    assert!(eventually(Duration::from_secs(10), || plane
        .admin("GET", "/admin/gateways/gw1", "")
        .1
        .contains("\"state\":\"connected\"")));
    let (_, view) = plane.admin("GET", "/admin/gateways/gw1", "");
    assert_eq!(view.matches("\"instanceId\":").count(), 1, "{view}");
    // starting from the backup while the plane is there is routine, not a warning
    let line = gw.wait_for_log("starting from backup #");
    assert!(
        line.contains(" INFO ") && line.contains("without waiting for the network"),
        "{line}"
    );
    assert!(
        !gw.log_lines().iter().any(|l| l.contains(" WARN ")),
        "{:?}",
        gw.log_lines()
    );
    assert!(
        view.contains(&format!("\"instanceId\":\"{instance}\"")),
        "{view}"
    );
    drop(gw);
}

/// A plane that accepts connections and never answers.
struct BlackHole {
    addr: std::net::SocketAddr,
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&held);
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                keep.lock().unwrap().push(s);
            }
        });
        BlackHole { addr, held }
    }
}

/// Version and row of each backup, newest first, as `backups list` prints them.
fn backup_rows(gw: &Gateway) -> Vec<(String, String)> {
    let store = format!("config.backup.path={}", gw.backup_path().display());
    let (code, out, err) = edgegate(&["backups", "list", "--set", &store]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[1].to_string())
        })
        .collect()
}

fn backups(gw: &Gateway, args: &[&str]) {
    let store = format!("config.backup.path={}", gw.backup_path().display());
    let mut all = vec!["backups"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--set", &store]);
    let (code, out, err) = edgegate(&all);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_black_holed_plane_delays_neither_logs_nor_pins() {
    let a = Origin::text("a");
    let b = Origin::text("b");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let token = plane.token("gw1");
    let gw = Gateway::start_service(&plane.url(), &token, &[]);
    assert_eq!(get(gw.addr, "/x").text(), "a");
    plane.publish("gw1", "echo", "", &b.url(""));
    assert!(eventually(Duration::from_secs(10), || get(gw.addr, "/x")
        .text()
        == "b"));
    // a new version is backed up right after it is applied
    assert!(eventually(Duration::from_secs(5), || backup_rows(&gw)
        .len()
        == 2));
    let dir = gw.kill();
    drop(plane);

    let hole = BlackHole::start();
    let gw = Gateway::service_in(dir, &format!("http://{}", hole.addr), &token, &[]);
    assert!(eventually(Duration::from_secs(5), || !hole
        .held
        .lock()
        .unwrap()
        .is_empty()));
    // the plane holds every call; requests and their log lines go on
    let started = Instant::now();
    assert_eq!(get(gw.addr, "/while-held").text(), "b");
    gw.wait_for_log("/while-held");
    assert!(started.elapsed() < Duration::from_secs(5));
    // a pin is noticed within a second or two, without a signal
    let rows = backup_rows(&gw);
    assert_eq!(rows.len(), 2, "{rows:?}");
    backups(&gw, &["rollback", &format!("#{}", rows[1].0)]);
    assert!(
        eventually(Duration::from_secs(5), || get(gw.addr, "/x").text() == "a"),
        "{}",
        status(&gw)
    );
    let st = status(&gw);
    assert!(
        st.contains("\"result\": \"ok\"") && st.contains("\"note\": \"pinned backup #"),
        "a pin is a state, not an error: {st}"
    );
    backups(&gw, &["unpin"]);
    assert!(
        eventually(Duration::from_secs(5), || get(gw.addr, "/x").text() == "b"),
        "{}",
        status(&gw)
    );
    assert!(!status(&gw).contains("is in force"), "{}", status(&gw));
}

#[test]
fn rollback_and_unpin_apply_on_a_federated_gateway_without_a_signal() {
    let a = Origin::text("a");
    let b = Origin::text("b");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &a.url(""));
    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    assert_eq!(get(gw.addr, "/x").text(), "a");
    plane.publish("gw1", "echo", "", &b.url(""));
    assert!(eventually(Duration::from_secs(10), || get(gw.addr, "/x")
        .text()
        == "b"));
    assert!(eventually(Duration::from_secs(5), || backup_rows(&gw)
        .len()
        == 2));
    let rows = backup_rows(&gw);
    backups(&gw, &["rollback", &rows[1].1]);
    assert!(eventually(Duration::from_secs(5), || get(gw.addr, "/x")
        .text()
        == "a"));
    // the plane's unchanged document does not undo the pin
    thread::sleep(Duration::from_secs(2));
    assert_eq!(get(gw.addr, "/x").text(), "a");
    backups(&gw, &["unpin"]);
    assert!(eventually(Duration::from_secs(5), || get(gw.addr, "/x")
        .text()
        == "b"));
    assert!(
        eventually(Duration::from_secs(15), || status(&gw)
            .contains("\"configSource\": \"service\"")),
        "the plane confirms it: {}",
        status(&gw)
    );
}

#[test]
fn the_gateway_id_comes_from_a_token_file_and_follows_its_rotation() {
    let origin = Origin::echo();
    let plane = Plane::start();
    plane.publish("gw1", "echo", "", &origin.url(""));
    plane.publish("gw2", "echo", "", &origin.url(""));
    let policy = r#"<policies><inbound><set-header name="X-Gateway" exists-action="override"><value>@(context.Deployment.GatewayId)</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let (s, body) = plane.admin(
        "PUT",
        "/admin/policy",
        &format!(r#"{{"value": {}}}"#, js(policy)),
    );
    assert!(s == 200 || s == 201 || s == 204, "{s} {body}");
    let dir = temp_dir("token-file");
    let token_file = dir.join("gateway.token");
    std::fs::write(&token_file, format!("{}\n", plane.token("gw1"))).unwrap();
    let gw = Gateway::service_in(
        dir.clone(),
        &plane.url(),
        &format!("@{}", token_file.display()),
        &[],
    );
    let seen_gateway = || {
        assert_eq!(get(gw.addr, "/who").status, 200);
        origin
            .requests()
            .last()
            .unwrap()
            .header("X-Gateway")
            .unwrap()
            .to_string()
    };
    assert!(eventually(Duration::from_secs(10), || seen_gateway() == "gw1"));
    std::fs::write(&token_file, format!("{}\n", plane.token("gw2"))).unwrap();
    // any change ends the held poll; the next call reads the rotated file
    plane.admin("PUT", "/admin/named-values/nudge", r#"{"value": "x"}"#);
    assert!(
        eventually(Duration::from_secs(15), || seen_gateway() == "gw2"),
        "{}",
        status(&gw)
    );
    assert!(
        status(&gw).contains("\"gatewayId\": \"gw2\""),
        "{}",
        status(&gw)
    );
}

#[test]
fn a_missing_token_file_is_named_as_such() {
    let plane = Plane::start();
    let dir = temp_dir("no-token");
    let missing = dir.join("gateway.token");
    let (code, _, err) = edgegate(&[
        "gateway",
        "--set",
        &format!("config.service.endpoint={}", plane.url()),
        "--set",
        &format!("config.service.auth=@{}", missing.display()),
        "--set",
        &format!("config.backup.path={}", dir.join("backup.db").display()),
        "--set",
        "net.server.http.listen=127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.lines().last().unwrap(),
        format!(
            "edgegate: cannot start: cannot read config.service.auth file {}: No such file or directory (os error 2), and no usable backup (config.backup.enabled)",
            missing.display()
        )
    );
}

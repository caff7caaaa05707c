//! Versioned config backups with the real binary and real SQLite files: every applied
//! version is recorded, `edgegate backups` lists, shows and pins them, a gateway whose
//! config file is broken starts from the newest good backup, and a tampered backup is
//! skipped for the previous one.

use std::time::Duration;

use crate::common::*;

fn backups(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    let store = format!("config.backup.path={}", gw.backup_path().display());
    let mut all = vec!["backups"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--set", &store]);
    edgegate(&all)
}

/// Writes `config` and reloads; waits until the gateway says it applied `version`.
fn reload_to(gw: &Gateway, config: &str, version: &str) {
    std::fs::write(&gw.config_path, config).unwrap();
    gw.signal("HUP");
    gw.wait_for_log(&format!("config version {version} ("));
}

#[test]
fn applied_versions_are_recorded_and_listed() {
    let a = Origin::text("a");
    let b = Origin::text("b");
    let v1 = simple_config("v1", "", &a.url(""));
    let v2 = simple_config("v2", "", &b.url(""));
    let gw = Gateway::start(&v1, &[]);
    reload_to(&gw, &v2, "v2");
    // the same document again is not a new version
    gw.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, _) = backups(&gw, &["list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("  SEQ  VERSION"));
    let row = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    let (r1, r2) = (row(lines[1]), row(lines[2]));
    assert_eq!(
        (r1[1].as_str(), r1[2].as_str(), r1[6].as_str()),
        ("v2", "local", "ok")
    );
    assert_eq!(
        (r2[1].as_str(), r2[2].as_str(), r2[6].as_str()),
        ("v1", "local", "ok")
    );
    assert_eq!(r1[4], v2.len().to_string());
    let (code, shown, _) = backups(&gw, &["show", "v1"]);
    assert_eq!(code, 0);
    assert_eq!(shown, format!("{v1}\n"));
    let (code, _, err) = backups(&gw, &["show", "v9"]);
    assert_eq!(code, 1);
    assert_eq!(err, "edgegate: no backed-up version 'v9'\n");
}

#[test]
fn broken_config_file_at_start_falls_back_to_the_newest_good_backup() {
    let a = Origin::text("a");
    let b = Origin::text("b");
    let gw = Gateway::start(&simple_config("v1", "", &a.url("")), &[]);
    reload_to(&gw, &simple_config("v2", "", &b.url("")), "v2");
    assert_eq!(get(gw.addr, "/x").text(), "b");
    // the file is damaged while the gateway is down; it comes back on the last good config
    std::fs::write(&gw.config_path, "{\"schemaVersion\": 1, \"apis\": [").unwrap();
    let gw = gw.restart(&[]);
    assert_eq!(get(gw.addr, "/x").text(), "b");
    let st = status(&gw);
    assert!(
        st.contains("\"configVersion\": \"v2\"") && st.contains("\"configSource\": \"backup\""),
        "{st}"
    );
    assert!(
        st.contains("rejected (1 error(s)); serving backup version v2"),
        "{st}"
    );
    gw.wait_for_log("starting from backup");

    // the newest backup is tampered with on disk: it is skipped for the previous one
    {
        let db = rusqlite::Connection::open(gw.backup_path()).unwrap();
        let n = db
            .execute(
                "UPDATE configs SET document = replace(document, 'v2', 'vX') WHERE version = 'v2'",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
    let gw = gw.restart(&[]);
    assert_eq!(get(gw.addr, "/x").text(), "a");
    assert!(status(&gw).contains("\"configVersion\": \"v1\""));
    gw.wait_for_log("(version v2): checksum mismatch, skipped");
    let (_, out, _) = backups(&gw, &["list"]);
    assert!(out.lines().nth(1).unwrap().ends_with("corrupt"), "{out}");
}

#[test]
fn backups_off_and_broken_file_exits_1() {
    let gw = Gateway::start(&simple_config("v1", "", "http://127.0.0.1:9"), &[]);
    std::fs::write(&gw.config_path, "not json").unwrap();
    let dir = gw.dir.clone();
    let (code, _, err) = edgegate(&[
        "gateway",
        "--config",
        dir.join("config.json").to_str().unwrap(),
        "--set",
        "net.server.http.listen=127.0.0.1:0",
        "--set",
        "config.backup.enabled=false",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "edgegate: config rejected:\n{}: invalid JSON at line 1 column 1: expected a value\n",
            dir.join("config.json").display()
        )
    );
}

#[test]
fn rollback_pins_a_version_until_unpinned() {
    let a = Origin::text("a");
    let b = Origin::text("b");
    let gw = Gateway::start(&simple_config("v1", "", &a.url("")), &[]);
    reload_to(&gw, &simple_config("v2", "", &b.url("")), "v2");
    let (code, out, _) = backups(&gw, &["rollback", "v1"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pinned backup #1 (version v1)"), "{out}");
    gw.signal("HUP");
    gw.wait_for_log("config version v1 (backup) applied");
    assert_eq!(get(gw.addr, "/x").text(), "a");
    assert!(status(&gw).contains("pinned backup #1 (version v1) is in force"));
    // the pin survives a restart
    let gw = gw.restart(&[]);
    assert_eq!(get(gw.addr, "/x").text(), "a");
    let (_, out, _) = backups(&gw, &["list"]);
    assert!(
        out.lines()
            .any(|l| l.contains(" v1 ") && l.ends_with("pinned")),
        "{out}"
    );
    // cleared: the file's config comes back
    assert_eq!(backups(&gw, &["unpin"]).1, "pin cleared\n");
    gw.signal("HUP");
    gw.wait_for_log("config version v2 (local) applied");
    assert_eq!(get(gw.addr, "/x").text(), "b");
    assert_eq!(backups(&gw, &["unpin"]).1, "no pin was set\n");
}

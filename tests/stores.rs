//! The two SQLite files, as an operator meets them: created private (0600, WAL and SHM
//! too), refused with one line when other users can read them, never confused with each
//! other (the gateway's backup store and the plane's database), and never written by a
//! read-only command, whatever state they are in.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    edgegate(args)
}

/// Starts a gateway on `dir/config.json` with its backup store at `store`, expecting it
/// to refuse: (exit code, stderr).
fn refused_gateway(dir: &Path, store: &Path) -> (i32, String) {
    let config = format!("config.local.path={}", dir.join("config.json").display());
    let backup = format!("config.backup.path={}", store.display());
    let (code, _, err) = run(&[
        "gateway",
        "--set",
        &config,
        "--set",
        &backup,
        "--set",
        "net.server.http.listen=127.0.0.1:0",
    ]);
    (code, err)
}

fn backups_list(store: &Path) -> (i32, String, String) {
    let setting = format!("config.backup.path={}", store.display());
    run(&["backups", "list", "--set", &setting])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A gateway that ran once (and stopped cleanly), leaving its backup store in `dir`.
fn gateway_store() -> (PathBuf, PathBuf) {
    let origin = Origin::text("a");
    let mut gw = Gateway::start(&simple_config("v1", "", &origin.url("")), &[]);
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let dir = std::mem::replace(&mut gw.dir, PathBuf::new());
    (dir.join("backup.db"), dir)
}

#[test]
fn stores_are_created_private_and_an_exposed_one_stops_the_start() {
    let origin = Origin::text("a");
    let gw = Gateway::start(&simple_config("v1", "", &origin.url("")), &[]);
    let store = gw.backup_path();
    assert_eq!(mode(&store), 0o600);
    assert_eq!(
        mode(&PathBuf::from(format!("{}-wal", store.display()))),
        0o600
    );
    assert_eq!(
        mode(&PathBuf::from(format!("{}-shm", store.display()))),
        0o600
    );
    let dir = gw.kill();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = refused_gateway(&dir, &store);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.lines().last().unwrap(),
        format!(
            "edgegate: backup store {} is readable or writable by other users (mode 644); it holds secrets: run 'chmod 600' on it (and its -wal and -shm files) (set config.backup.enabled=false to run without backups)",
            store.display()
        )
    );
    let plane = Plane::start();
    assert_eq!(mode(&plane.dir.join("plane.db")), 0o600);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_backup_store_that_cannot_be_created_stops_the_start_with_one_line() {
    let dir = temp_dir("unwritable-state");
    std::fs::write(dir.join("state"), "a file, not a directory").unwrap();
    let origin = Origin::text("a");
    std::fs::write(
        dir.join("config.json"),
        simple_config("v1", "", &origin.url("")),
    )
    .unwrap();
    let config = format!("config.local.path={}", dir.join("config.json").display());
    let backup = format!(
        "config.backup.path={}",
        dir.join("state/backup.db").display()
    );
    let (code, _, err) = run(&[
        "gateway",
        "--set",
        &config,
        "--set",
        &backup,
        "--set",
        "net.server.http.listen=127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "edgegate: backup store {}/state/backup.db cannot be opened: ",
            dir.display()
        )) && last.ends_with("(set config.backup.enabled=false to run without backups)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn backups_list_on_a_damaged_store_reports_it_and_changes_nothing() {
    let (store, dir) = gateway_store();
    let bytes = std::fs::read(&store).unwrap();
    std::fs::write(&store, &bytes[..bytes.len() / 2]).unwrap();
    let before = files_in(&dir);
    let (code, out, err) = backups_list(&store);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with(&format!(
            "edgegate: backup store {} is damaged: ",
            store.display()
        )),
        "{err}"
    );
    assert_eq!(files_in(&dir), before, "nothing moved or created");
    assert_eq!(std::fs::read(&store).unwrap(), &bytes[..bytes.len() / 2]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_gateway_and_the_plane_refuse_each_others_database() {
    let plane = Plane::start();
    let plane_db = plane.dir.join("plane.db");
    let plane_dir = plane.kill();
    let tables = |db: &Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let names = stmt.query_map([], |r| r.get(0)).unwrap();
        names.map(Result::unwrap).collect()
    };
    let plane_tables = tables(&plane_db);
    assert!(
        plane_tables.iter().any(|t| t == "gateways"),
        "{plane_tables:?}"
    );
    let (code, _, err) = backups_list(&plane_db);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "edgegate: backup store {} is a management plane database, not this program's\n",
            plane_db.display()
        )
    );
    let (code, _, err) = run(&[
        "backups",
        "unpin",
        "--set",
        &format!("config.backup.path={}", plane_db.display()),
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(tables(&plane_db), plane_tables, "no gateway tables added");

    let (store, dir) = gateway_store();
    let store_tables = tables(&store);
    let (code, _, err) = run(&[
        "manage",
        "--listen",
        "127.0.0.1:0",
        "--db",
        store.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.lines().last().unwrap(),
        format!(
            "edgegate: database {} is a gateway backup store, not this program's",
            store.display()
        )
    );
    assert_eq!(tables(&store), store_tables, "no plane tables added");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(plane_dir);
}

#[test]
fn a_plane_that_cannot_start_writes_no_database_or_token() {
    let dir = temp_dir("plane-refused");
    let db = dir.join("plane.db");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (code, _, err) = Command::new(BIN)
        .args([
            "manage",
            "--listen",
            &busy_addr,
            "--db",
            db.to_str().unwrap(),
        ])
        .env_remove("EDGEGATE_MANAGE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with(&format!("edgegate: cannot listen on {busy_addr}: ")),
        "{err}"
    );
    // a public address without TLS is refused unless asked for
    let (code, _, err) = run(&[
        "manage",
        "--listen",
        "0.0.0.0:0",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.lines().last().unwrap(),
        "edgegate: manage.listen 0.0.0.0:0 is not a loopback address and TLS is off: set manage.tls.cert and manage.tls.key, or manage.listen.insecure=true to serve plain HTTP there anyway"
    );
    assert_eq!(
        files_in(&dir),
        Vec::<String>::new(),
        "no database, no token file"
    );
    drop(busy);
    let _ = std::fs::remove_dir_all(dir);
}

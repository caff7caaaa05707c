//! How every edgegate SQLite file is opened: the gateway's backup store and the
//! management plane's database. Owns three rules that both programs need:
//!
//! - **Private files.** A new file is created mode 0600 before SQLite touches it (SQLite
//!   gives its `-wal` and `-shm` files the database file's mode), and an existing file
//!   that its group or others may read or write is refused with one line: these files
//!   hold gateway keys, subscription keys, TLS private keys and config documents with
//!   secret named values.
//! - **Each file says what it is.** `PRAGMA application_id` marks a file as a gateway
//!   backup store or a plane database; the other program refuses it with one line
//!   instead of adding its tables to it. Files written before the mark existed are
//!   recognised by their tables and marked.
//! - **Durable or read-only.** Writers get WAL and `synchronous=FULL` after SQLite's
//!   integrity check; readers (`edgegate backups list|show`) open read-only and never
//!   write, create or move anything.
//!
//! Must not touch: schemas and queries (each store owns its own), the event loop.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// What a database file is, written in its `application_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// A gateway's backup store (`config.backup.path`).
    GatewayBackup,
    /// The management plane's database (`manage.db.path`).
    Plane,
}

impl DbKind {
    /// 'EGWB' and 'EGMP' as big-endian integers.
    const fn application_id(self) -> i32 {
        match self {
            DbKind::GatewayBackup => 0x4547_5742,
            DbKind::Plane => 0x4547_4d50,
        }
    }

    fn from_application_id(id: i32) -> Option<DbKind> {
        [DbKind::GatewayBackup, DbKind::Plane]
            .into_iter()
            .find(|k| k.application_id() == id)
    }

    /// A table only this kind of file has (to recognise files from before the mark).
    const fn signature_table(self) -> &'static str {
        match self {
            DbKind::GatewayBackup => "configs",
            DbKind::Plane => "gateways",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            DbKind::GatewayBackup => "a gateway backup store",
            DbKind::Plane => "a management plane database",
        }
    }
}

/// Why a database file was not opened. Each is one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Group or others may read or write it (mode shown in octal).
    Exposed { mode: u32 },
    /// It is the other program's file (or something else entirely).
    WrongKind { found: String },
    /// SQLite's integrity check failed, or the file is not a database.
    Damaged(String),
    /// The file system refused (missing, unreadable, read-only directory…).
    Io(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Exposed { mode } => write!(
                f,
                "is readable or writable by other users (mode {mode:03o}); it holds secrets: run 'chmod 600' on it (and its -wal and -shm files)"
            ),
            OpenError::WrongKind { found } => write!(f, "is {found}, not this program's"),
            OpenError::Damaged(reason) => write!(f, "is damaged: {reason}"),
            OpenError::Io(reason) => write!(f, "cannot be opened: {reason}"),
        }
    }
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                OpenError::Damaged(e.to_string())
            }
            _ => OpenError::Io(e.to_string()),
        }
    }
}

/// Permission bits that must be clear on a database file.
const EXPOSING_BITS: u32 = 0o066;

/// Creates `path` mode 0600 when it does not exist yet; refuses an existing file whose
/// mode lets group or others read or write it.
fn ensure_private(path: &Path) -> Result<(), OpenError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & EXPOSING_BITS != 0 {
                return Err(OpenError::Exposed { mode });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(drop)
            .or_else(|e| match e.kind() {
                // created by someone else meanwhile: check that one instead
                std::io::ErrorKind::AlreadyExists => ensure_private(path),
                _ => Err(OpenError::Io(e.to_string())),
            }),
        Err(e) => Err(OpenError::Io(e.to_string())),
    }
}

/// What the file says it is: its mark, else (for files from before the mark) its
/// tables; `None` for an empty file.
fn kind_of(conn: &Connection) -> Result<Option<Result<DbKind, String>>, OpenError> {
    let id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if id != 0 {
        return Ok(Some(DbKind::from_application_id(id).ok_or(format!(
            "another application's file (application_id {id:#x})"
        ))));
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if tables.is_empty() {
        return Ok(None);
    }
    let found = [DbKind::GatewayBackup, DbKind::Plane]
        .into_iter()
        .find(|k| tables.iter().any(|t| t == k.signature_table()));
    Ok(Some(found.ok_or_else(|| {
        "a SQLite file of another application".to_string()
    })))
}

/// `Ok(false)` for an empty file, `Ok(true)` for one of `want`'s kind.
fn check_kind(conn: &Connection, want: DbKind) -> Result<bool, OpenError> {
    match kind_of(conn)? {
        None => Ok(false),
        Some(Ok(kind)) if kind == want => Ok(true),
        Some(Ok(kind)) => Err(OpenError::WrongKind {
            found: kind.describe().to_string(),
        }),
        Some(Err(found)) => Err(OpenError::WrongKind { found }),
    }
}

/// Opens (creating it 0600 if needed) a database file of `kind` for writing: busy
/// timeout, SQLite's integrity check, the kind mark, WAL and `synchronous=FULL` so a
/// committed transaction survives a power cut. The caller then creates its schema.
pub fn open_durable(path: &Path, kind: DbKind) -> Result<Connection, OpenError> {
    ensure_private(path)?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(OpenError::Damaged(format!("integrity check: {check}")));
    }
    check_kind(&conn, kind)?;
    let marked: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if marked == 0 {
        conn.pragma_update(None, "application_id", kind.application_id())?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Opens an existing database file of `kind` read-only: nothing is created, changed or
/// moved, whatever state the file is in. With no `-wal` file beside it (no writer has
/// it open, everything is checkpointed) it is opened immutable, so SQLite does not
/// create `-wal` and `-shm` files either; with one, as an ordinary reader of the live
/// file.
pub fn open_read_only(path: &Path, kind: DbKind) -> Result<Connection, OpenError> {
    ensure_private_existing(path)?;
    let wal = format!("{}-wal", path.display());
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = if Path::new(&wal).exists() {
        Connection::open_with_flags(path, flags - OpenFlags::SQLITE_OPEN_URI)?
    } else {
        let absolute = std::path::absolute(path).map_err(|e| OpenError::Io(e.to_string()))?;
        Connection::open_with_flags(format!("file:{}?immutable=1", uri_path(&absolute)), flags)?
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(OpenError::Damaged(format!("integrity check: {check}")));
    }
    if !check_kind(&conn, kind)? {
        return Err(OpenError::WrongKind {
            found: "an empty SQLite file".into(),
        });
    }
    Ok(conn)
}

/// A file path as the path part of a SQLite URI (`%`, `?` and `#` escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

fn ensure_private_existing(path: &Path) -> Result<(), OpenError> {
    if !path.exists() {
        return Err(OpenError::Io("no such file".into()));
    }
    ensure_private(path)
}

/// Lower-case hex SHA-256 of `bytes` (checksums of stored documents).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edgegate-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("db")
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_and_their_wal_are_private() {
        let path = temp("private");
        let conn = open_durable(&path, DbKind::Plane).unwrap();
        conn.execute_batch("CREATE TABLE gateways (id TEXT); INSERT INTO gateways VALUES ('a');")
            .unwrap();
        assert_eq!(mode(&path), 0o600);
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let shm = PathBuf::from(format!("{}-shm", path.display()));
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&shm), 0o600);
    }

    #[test]
    fn an_exposed_file_is_refused_with_its_mode() {
        let path = temp("exposed");
        drop(open_durable(&path, DbKind::GatewayBackup).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = open_durable(&path, DbKind::GatewayBackup).unwrap_err();
        assert_eq!(e, OpenError::Exposed { mode: 0o644 });
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(matches!(
            open_read_only(&path, DbKind::GatewayBackup),
            Err(OpenError::Exposed { .. })
        ));
    }

    #[test]
    fn each_program_refuses_the_others_file() {
        let path = temp("kinds");
        drop(open_durable(&path, DbKind::GatewayBackup).unwrap());
        let e = open_durable(&path, DbKind::Plane).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is a gateway backup store, not this program's"
        );
        let e = open_read_only(&path, DbKind::Plane).unwrap_err();
        assert!(matches!(e, OpenError::WrongKind { .. }));
        // unmarked files from earlier versions are recognised by their tables
        let old = temp("unmarked");
        let conn = Connection::open(&old).unwrap();
        conn.execute_batch("CREATE TABLE gateways (id TEXT);")
            .unwrap();
        drop(conn);
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            open_durable(&old, DbKind::GatewayBackup),
            Err(OpenError::WrongKind { .. })
        ));
        let conn = open_durable(&old, DbKind::Plane).unwrap();
        let id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, DbKind::Plane.application_id(), "marked on first open");
    }

    #[test]
    fn read_only_opens_change_nothing() {
        let path = temp("ro");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            open_read_only(&path, DbKind::GatewayBackup),
            Err(OpenError::Damaged(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x42u8; 8192]);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("db")]);
        assert_eq!(
            open_read_only(&path.with_file_name("missing"), DbKind::Plane).unwrap_err(),
            OpenError::Io("no such file".into())
        );
    }
}

//! The backup store: the last `config.backup.versions` applied config documents in one
//! SQLite file, each with its version, source, time applied and SHA-256, written in one
//! durable transaction (WAL, synchronous=FULL) before the config counts as applied. A
//! pinned version (`edgegate backups rollback V`) is never pruned and wins at the next
//! sync until it is cleared. Opening runs SQLite's integrity check; a damaged file is set
//! aside (renamed) and a fresh one started, so a gateway never refuses to run because of
//! its backups. Reading verifies each document's checksum; a bad one is skipped.
//! The same file spools telemetry while the plane is unreachable and keeps the quota
//! counters (quota, quota-by-key) so that a restart does not hand out a fresh quota.
//! Used by the agent thread and the `edgegate backups` command, never by the event loop.
//! Must not touch: sockets, the loop, config semantics (the caller validates documents).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use crate::config::ConfigSource;
use crate::policy::limits::QuotaCell;
use crate::sqlite::{open_durable, open_read_only, sha256_hex, DbKind, OpenError};

#[derive(Debug)]
pub enum StoreError {
    Open { path: PathBuf, reason: String },
    Sql(String),
    NoSuchVersion(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, reason } => {
                write!(f, "backup store {} {reason}", path.display())
            }
            StoreError::Sql(e) => write!(f, "backup store: {e}"),
            StoreError::NoSuchVersion(v) => write!(f, "no backed-up version '{v}'"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e.to_string())
    }
}

/// One stored version, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub version: String,
    pub source: String,
    pub applied_at_ms: i64,
    pub sha256: String,
    pub size: usize,
    /// The stored document still matches its checksum.
    pub intact: bool,
    pub pinned: bool,
}

/// A document read back for use.
#[derive(Debug, Clone)]
pub struct Stored {
    pub entry: Entry,
    pub document: String,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    keep: u32,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS configs (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        version    TEXT    NOT NULL,
        source     TEXT    NOT NULL,
        applied_at INTEGER NOT NULL,
        sha256     TEXT    NOT NULL,
        document   TEXT    NOT NULL
    );
    CREATE TABLE IF NOT EXISTS pin (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        seq       INTEGER NOT NULL,
        pinned_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS spool (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        created INTEGER NOT NULL,
        records INTEGER NOT NULL,
        body    TEXT    NOT NULL
    );
    CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS metrics_spool (instance TEXT PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS identity (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS quotas (
        label        TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        window_start INTEGER NOT NULL,
        window_end   INTEGER NOT NULL,
        calls        INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,
        PRIMARY KEY (label, key)
    );
    CREATE TABLE IF NOT EXISTS key_sets (
        url        TEXT    PRIMARY KEY,
        issuer     TEXT,
        jwks       TEXT    NOT NULL,
        fetched_at INTEGER NOT NULL
    );
";

/// Most gateway instances whose last metrics snapshot waits for the plane.
pub const METRICS_SPOOL_INSTANCES: i64 = 16;

/// Most bytes of telemetry spooled while the plane is unreachable; beyond it the oldest
/// batches are dropped and counted.
pub const SPOOL_MAX_BYTES: i64 = 64 * 1024 * 1024;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (or creates) the store at `path`, keeping `keep` versions. A file that fails
    /// SQLite's integrity check is renamed to `<path>.corrupt-<unix ms>` and replaced by a
    /// fresh store; the returned note says so, for the log.
    pub fn open(path: &Path, keep: u32) -> Result<(Store, Option<String>), StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                let why = format!("cannot create its directory {}: {e}", dir.display());
                open_err(OpenError::Io(why).to_string())
            })?;
        }
        let mut note = None;
        let conn = match Self::connect(path) {
            Ok(conn) => conn,
            Err(OpenError::Damaged(reason)) => {
                let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), now_ms()));
                std::fs::rename(path, &aside)
                    .map_err(|e| open_err(format!("{reason}; and cannot set it aside: {e}")))?;
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                note = Some(format!(
                    "backup store {} was damaged ({reason}); moved to {}",
                    path.display(),
                    aside.display()
                ));
                Self::connect(path).map_err(|e| open_err(e.to_string()))?
            }
            Err(e) => return Err(open_err(e.to_string())),
        };
        Ok((
            Store {
                conn,
                path: path.to_path_buf(),
                keep: keep.max(1),
            },
            note,
        ))
    }

    fn connect(path: &Path) -> Result<Connection, OpenError> {
        let conn = open_durable(path, DbKind::GatewayBackup)?;
        conn.execute_batch(SCHEMA)?;
        Ok(conn)
    }

    /// Opens an existing store for `edgegate backups`: read-only for `list` and `show`
    /// (nothing is written, created or moved), writable for `rollback` and `unpin`. A
    /// damaged file is an error here, never set aside.
    pub fn open_existing(path: &Path, writable: bool) -> Result<Store, StoreError> {
        let open_err = |e: OpenError| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let conn = if writable {
            if !path.exists() {
                return Err(open_err(OpenError::Io("no such file".into())));
            }
            Self::connect(path).map_err(open_err)?
        } else {
            open_read_only(path, DbKind::GatewayBackup).map_err(open_err)?
        };
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            keep: u32::MAX,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an applied document in one transaction and prunes beyond `keep` (never the
    /// pinned version). Returns its sequence number.
    pub fn save(
        &mut self,
        version: &str,
        source: ConfigSource,
        document: &str,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO configs (version, source, applied_at, sha256, document) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![version, source.as_str(), now_ms(), sha256_hex(document.as_bytes()), document],
        )?;
        let seq = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM configs WHERE seq NOT IN (SELECT seq FROM configs ORDER BY seq DESC LIMIT ?1)
               AND seq NOT IN (SELECT seq FROM pin)",
            params![self.keep],
        )?;
        tx.commit()?;
        Ok(seq)
    }

    /// The SHA-256 of the newest version, if its document still matches it (one read and
    /// one hash, not the whole store).
    pub fn newest_intact_sha256(&self) -> Result<Option<String>, StoreError> {
        let newest: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT sha256, document FROM configs ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(newest
            .filter(|(sha, doc)| sha256_hex(doc.as_bytes()) == *sha)
            .map(|(sha, _)| sha))
    }

    /// How many versions are stored.
    pub fn count(&self) -> Result<u32, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM configs", [], |r| r.get(0))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Every stored version, newest first.
    pub fn list(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .rows("ORDER BY c.seq DESC", [])?
            .into_iter()
            .map(|s| s.entry)
            .collect())
    }

    fn rows<P: rusqlite::Params>(&self, tail: &str, p: P) -> Result<Vec<Stored>, StoreError> {
        let sql = format!(
            "SELECT c.seq, c.version, c.source, c.applied_at, c.sha256, c.document, p.seq IS NOT NULL
               FROM configs c LEFT JOIN pin p ON p.seq = c.seq {tail}"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(p, |r| {
            let document: String = r.get(5)?;
            let sha256: String = r.get(4)?;
            Ok(Stored {
                entry: Entry {
                    seq: r.get(0)?,
                    version: r.get(1)?,
                    source: r.get(2)?,
                    applied_at_ms: r.get(3)?,
                    intact: sha256_hex(document.as_bytes()) == sha256,
                    sha256,
                    size: document.len(),
                    pinned: r.get(6)?,
                },
                document,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The newest stored copy of `version` (or `#seq`).
    pub fn get(&self, version: &str) -> Result<Stored, StoreError> {
        let found = match version
            .strip_prefix('#')
            .and_then(|n| n.parse::<i64>().ok())
        {
            Some(seq) => self.rows("WHERE c.seq = ?1", params![seq])?,
            None => self.rows(
                "WHERE c.version = ?1 ORDER BY c.seq DESC LIMIT 1",
                params![version],
            )?,
        };
        found
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NoSuchVersion(version.to_string()))
    }

    /// The sequence number of the pinned version, if any (no document read).
    pub fn pinned_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT seq FROM pin WHERE id = 1", [], |r| r.get(0))
            .optional()?)
    }

    /// The pinned version, if any.
    pub fn pinned(&self) -> Result<Option<Stored>, StoreError> {
        match self.pinned_seq()? {
            Some(seq) => Ok(self
                .rows("WHERE c.seq = ?1", params![seq])?
                .into_iter()
                .next()),
            None => Ok(None),
        }
    }

    /// Pins `version` (see `get`) so that it wins at the next sync.
    pub fn pin(&mut self, version: &str) -> Result<Entry, StoreError> {
        let stored = self.get(version)?;
        self.conn.execute(
            "INSERT INTO pin (id, seq, pinned_at) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, pinned_at = excluded.pinned_at",
            params![stored.entry.seq, now_ms()],
        )?;
        Ok(stored.entry)
    }

    /// Clears the pin; true if there was one.
    pub fn unpin(&mut self) -> Result<bool, StoreError> {
        Ok(self.conn.execute("DELETE FROM pin", [])? > 0)
    }

    /// The newest version that is intact and that `usable` accepts (the caller compiles
    /// it), skipping the others with a reason each. Returns the version and the skips.
    pub fn newest_good(
        &self,
        usable: impl Fn(&str) -> Result<(), String>,
    ) -> Result<(Option<Stored>, Vec<String>), StoreError> {
        let mut skipped = Vec::new();
        for stored in self.rows("ORDER BY c.seq DESC", [])? {
            let label = format!(
                "backup #{} (version {})",
                stored.entry.seq, stored.entry.version
            );
            if !stored.entry.intact {
                skipped.push(format!("{label}: checksum mismatch, skipped"));
                continue;
            }
            if let Err(e) = usable(&stored.document) {
                skipped.push(format!("{label}: invalid ({e}), skipped"));
                continue;
            }
            return Ok((Some(stored), skipped));
        }
        Ok((None, skipped))
    }
}

impl Store {
    /// This installation's gateway instance id: the stored one, else `fresh` stored now,
    /// so restarts report as the same instance to the plane.
    pub fn instance_id(&mut self, fresh: impl FnOnce() -> String) -> Result<String, StoreError> {
        let stored: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM identity WHERE key = 'instance'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = stored {
            return Ok(id);
        }
        let id = fresh();
        self.conn.execute(
            "INSERT INTO identity (key, value) VALUES ('instance', ?1)",
            params![id],
        )?;
        Ok(id)
    }

    /// Spools a telemetry batch (NDJSON, `records` lines) for a later upload, keeping at
    /// most `max_bytes`: the oldest batches go first, their records counted as dropped.
    pub fn spool_push(
        &mut self,
        body: &str,
        records: u64,
        max_bytes: i64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO spool (created, records, body) VALUES (?1, ?2, ?3)",
            params![now_ms(), records as i64, body],
        )?;
        loop {
            let total: i64 = tx.query_row(
                "SELECT COALESCE(SUM(length(body)), 0) FROM spool",
                [],
                |r| r.get(0),
            )?;
            if total <= max_bytes {
                break;
            }
            let oldest: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT seq, records FROM spool ORDER BY seq LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((seq, n)) = oldest else { break };
            tx.execute("DELETE FROM spool WHERE seq = ?1", params![seq])?;
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('telemetry_dropped', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                params![n],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The oldest spooled batch: (seq, body, records).
    pub fn spool_oldest(&self) -> Result<Option<(i64, String, u64)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, body, records FROM spool ORDER BY seq LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)),
            )
            .optional()?)
    }

    pub fn spool_remove(&mut self, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM spool WHERE seq = ?1", params![seq])?;
        Ok(())
    }

    /// Keeps an instance's newest metrics snapshot (cumulative, so one per instance is
    /// all that matters) until it reaches the plane.
    /// At most `METRICS_SPOOL_INSTANCES` instances are kept (a gateway restarted over and
    /// over while offline makes a new one each time); the oldest go first.
    pub fn spool_metrics(&mut self, instance: &str, body: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO metrics_spool (instance, body) VALUES (?1, ?2)
             ON CONFLICT(instance) DO UPDATE SET body = excluded.body",
            params![instance, body],
        )?;
        tx.execute(
            "DELETE FROM metrics_spool WHERE rowid NOT IN
               (SELECT rowid FROM metrics_spool ORDER BY rowid DESC LIMIT ?1)",
            params![METRICS_SPOOL_INSTANCES],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Spooled metrics snapshots: (instance, body).
    pub fn spooled_metrics(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT instance, body FROM metrics_spool ORDER BY instance")?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn unspool_metrics(&mut self, instance: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM metrics_spool WHERE instance = ?1",
            params![instance],
        )?;
        Ok(())
    }

    /// Records dropped from the spool and not reported yet; reading clears the count.
    pub fn take_dropped(&mut self) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let n: Option<i64> = tx
            .query_row(
                "SELECT value FROM counters WHERE name = 'telemetry_dropped'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute("DELETE FROM counters WHERE name = 'telemetry_dropped'", [])?;
        tx.commit()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Puts back a count taken with `take_dropped` whose report did not get through.
    pub fn restore_dropped(&mut self, n: u64) -> Result<(), StoreError> {
        if n > 0 {
            self.conn.execute(
                "INSERT INTO counters (name, value) VALUES ('telemetry_dropped', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                params![n as i64],
            )?;
        }
        Ok(())
    }
}

/// The last good key set of an OpenID configuration, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeys {
    pub url: String,
    pub issuer: Option<String>,
    /// The JWKS document as fetched.
    pub jwks: String,
    pub fetched_at: u64,
}

impl Store {
    /// Keeps the newest good key set of `k.url` (replacing the one before).
    pub fn save_key_set(&mut self, k: &StoredKeys) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO key_sets (url, issuer, jwks, fetched_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(url) DO UPDATE SET issuer = excluded.issuer, jwks = excluded.jwks,
               fetched_at = excluded.fetched_at",
            params![k.url, k.issuer, k.jwks, sql_int(k.fetched_at)],
        )?;
        Ok(())
    }

    /// The kept key sets of `urls` (those the store has).
    pub fn key_sets(&self, urls: &[String]) -> Result<Vec<StoredKeys>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT url, issuer, jwks, fetched_at FROM key_sets WHERE url = ?1")?;
        let mut out = Vec::new();
        for url in urls {
            let mut rows = q.query_map(params![url], |r| {
                Ok(StoredKeys {
                    url: r.get(0)?,
                    issuer: r.get(1)?,
                    jwks: r.get(2)?,
                    fetched_at: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })?;
            if let Some(row) = rows.next() {
                out.push(row?);
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Writes changed quota cells in one transaction and forgets windows that ended
    /// before `now_s`.
    pub fn save_quotas(&mut self, cells: &[QuotaCell], now_s: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO quotas (label, key, window_start, window_end, calls, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(label, key) DO UPDATE SET window_start = excluded.window_start,
                   window_end = excluded.window_end, calls = excluded.calls, bytes = excluded.bytes",
            )?;
            for c in cells {
                upsert.execute(params![
                    c.label,
                    c.key,
                    sql_int(c.window_start),
                    sql_int(c.window_end),
                    sql_int(c.calls),
                    sql_int(c.bytes)
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM quotas WHERE window_end <= ?1",
            params![sql_int(now_s)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The quota cells whose window has not ended at `now_s`, at most `max`.
    pub fn load_quotas(&self, now_s: u64, max: usize) -> Result<Vec<QuotaCell>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT label, key, window_start, window_end, calls, bytes FROM quotas
             WHERE window_end > ?1 LIMIT ?2",
        )?;
        let rows = q.query_map(params![sql_int(now_s), max as i64], |r| {
            let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            Ok(QuotaCell {
                label: r.get(0)?,
                key: r.get(1)?,
                window_start: n(2)?,
                window_end: n(3)?,
                calls: n(4)?,
                bytes: n(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// SQLite integers are signed 64-bit.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edgegate-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("backup.db")
    }

    #[test]
    fn saves_lists_prunes_and_keeps_the_pin() {
        let path = temp("prune");
        let (mut store, note) = Store::open(&path, 3).unwrap();
        assert!(note.is_none());
        for v in 1..=3 {
            store
                .save(&format!("v{v}"), ConfigSource::Local, &format!("doc {v}"))
                .unwrap();
        }
        store.pin("v1").unwrap();
        for v in 4..=6 {
            store
                .save(&format!("v{v}"), ConfigSource::Service, &format!("doc {v}"))
                .unwrap();
        }
        let versions: Vec<String> = store
            .list()
            .unwrap()
            .iter()
            .map(|e| e.version.clone())
            .collect();
        assert_eq!(
            versions,
            ["v6", "v5", "v4", "v1"],
            "newest 3 plus the pinned one"
        );
        let pinned = store.pinned().unwrap().unwrap();
        assert_eq!(
            (pinned.entry.version.as_str(), pinned.document.as_str()),
            ("v1", "doc 1")
        );
        assert!(store.unpin().unwrap());
        assert!(store.pinned().unwrap().is_none());
        store.save("v7", ConfigSource::Service, "doc 7").unwrap();
        assert_eq!(store.list().unwrap().len(), 3);
        let e = &store.list().unwrap()[0];
        assert_eq!((e.source.as_str(), e.size, e.intact), ("service", 5, true));
        assert_eq!(e.sha256, sha256_hex(b"doc 7"));
        assert!(matches!(
            store.get("nope"),
            Err(StoreError::NoSuchVersion(_))
        ));
        assert_eq!(store.get(&format!("#{}", e.seq)).unwrap().document, "doc 7");
    }

    #[test]
    fn metric_snapshots_are_kept_per_instance_and_bounded() {
        let path = temp("metrics-spool");
        let (mut store, _) = Store::open(&path, 10).unwrap();
        store.spool_metrics("a", "1").unwrap();
        store.spool_metrics("a", "2").unwrap();
        assert_eq!(store.spooled_metrics().unwrap(), [("a".into(), "2".into())]);
        for i in 0..METRICS_SPOOL_INSTANCES {
            store.spool_metrics(&format!("i{i:02}"), "x").unwrap();
        }
        let kept = store.spooled_metrics().unwrap();
        assert_eq!(kept.len() as i64, METRICS_SPOOL_INSTANCES);
        assert!(
            kept.iter().all(|(i, _)| i != "a"),
            "the oldest instance went"
        );
        store.unspool_metrics("i00").unwrap();
        assert_eq!(
            store.spooled_metrics().unwrap().len() as i64,
            METRICS_SPOOL_INSTANCES - 1
        );
    }

    #[test]
    fn quota_cells_are_upserted_and_ended_windows_forgotten() {
        let path = temp("quotas");
        let (mut store, _) = Store::open(&path, 10).unwrap();
        let cell = |key: &str, end: u64, calls: u64| QuotaCell {
            label: "global:#1".into(),
            key: key.into(),
            window_start: end - 60,
            window_end: end,
            calls,
            bytes: calls * 100,
        };
        store
            .save_quotas(&[cell("a", 1060, 1), cell("b", 1010, 5)], 1000)
            .unwrap();
        store.save_quotas(&[cell("a", 1060, 2)], 1005).unwrap();
        assert_eq!(
            store.load_quotas(1005, 10).unwrap().len(),
            2,
            "both windows still open"
        );
        store.save_quotas(&[], 1010).unwrap();
        assert_eq!(
            store.load_quotas(1010, 10).unwrap(),
            vec![cell("a", 1060, 2)]
        );
        assert!(store.load_quotas(1060, 10).unwrap().is_empty());
    }

    #[test]
    fn tampered_and_invalid_versions_are_skipped() {
        let path = temp("skip");
        let (mut store, _) = Store::open(&path, 10).unwrap();
        store.save("good", ConfigSource::Service, "fine").unwrap();
        store
            .save("invalid", ConfigSource::Service, "rejected")
            .unwrap();
        store
            .save("tampered", ConfigSource::Service, "original")
            .unwrap();
        store
            .conn
            .execute(
                "UPDATE configs SET document = 'changed' WHERE version = 'tampered'",
                [],
            )
            .unwrap();
        let (found, skipped) = store
            .newest_good(|doc| {
                if doc == "rejected" {
                    Err("bad field".into())
                } else {
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!(found.unwrap().entry.version, "good");
        assert_eq!(skipped.len(), 2);
        assert!(
            skipped[0].contains("(version tampered): checksum mismatch"),
            "{skipped:?}"
        );
        assert!(
            skipped[1].contains("(version invalid): invalid (bad field)"),
            "{skipped:?}"
        );
        assert!(!store.list().unwrap()[0].intact);
        // a corrupt newest copy does not count as already stored
        assert_eq!(store.newest_intact_sha256().unwrap(), None);
        store
            .save("tampered", ConfigSource::Service, "original")
            .unwrap();
        assert_eq!(
            store.newest_intact_sha256().unwrap(),
            Some(sha256_hex(b"original"))
        );
    }

    #[test]
    fn spool_is_bounded_oldest_first_and_counts_what_it_drops() {
        let path = temp("spool");
        let (mut store, _) = Store::open(&path, 2).unwrap();
        for i in 0..5 {
            store
                .spool_push(&format!("{i}").repeat(100), 10, 250)
                .unwrap();
        }
        // 100 bytes each, 250 allowed: the two newest stay, three batches (30 records) went
        let (seq, body, n) = store.spool_oldest().unwrap().unwrap();
        assert_eq!((body.as_bytes()[0], n), (b'3', 10));
        store.spool_remove(seq).unwrap();
        assert_eq!(store.spool_oldest().unwrap().unwrap().1.as_bytes()[0], b'4');
        assert_eq!(store.take_dropped().unwrap(), 30);
        assert_eq!(store.take_dropped().unwrap(), 0, "reported once");
        store.restore_dropped(7).unwrap();
        assert_eq!(store.take_dropped().unwrap(), 7);
    }

    #[test]
    fn a_damaged_file_is_set_aside() {
        let path = temp("damaged");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (mut store, note) = Store::open(&path, 2).unwrap();
        let note = note.expect("a note");
        assert!(
            note.contains("was damaged") && note.contains(".corrupt-"),
            "{note}"
        );
        store.save("v1", ConfigSource::Local, "doc").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        let aside = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
        assert!(aside);
    }
}

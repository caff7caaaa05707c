//! Local mode: the config comes from a file. In order: a pinned backup (`edgegate backups
//! rollback`), the config file (each new document recorded in the backup store before it
//! is applied), and, only at start when the file cannot be used, the newest good backup.
//! SIGHUP re-reads; there is nothing to poll.
//! Must not touch: the loop, sockets.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::store::Store;
use super::{compile_and_resolve, load_config_file, Loaded, Syncer, Update};
use crate::config::{self, ConfigSource, Runtime};

/// Where local mode gets its config, in order: a pinned backup (`edgegate backups
/// rollback`), the config file (each new document recorded in the backup store before it
/// is applied), and, only at start when the file cannot be used, the newest good backup.
pub struct LocalConfig {
    pub path: PathBuf,
    pub store: Option<Store>,
}

impl LocalConfig {
    pub fn new(path: PathBuf, backup: Option<(&Path, u32)>) -> Result<LocalConfig, String> {
        Ok(LocalConfig {
            path,
            store: open_store(backup)?,
        })
    }

    fn pinned(&self) -> Option<Loaded> {
        pinned(
            self.store.as_ref(),
            &format!("{} is not read", self.path.display()),
        )
    }

    /// The config to start with. `Err` carries every problem, for the exit message.
    pub fn initial(&mut self) -> Result<Loaded, Vec<String>> {
        if let Some(pinned) = self.pinned() {
            return Ok(pinned);
        }
        let file_errors = match load_config_file(&self.path, ConfigSource::Local) {
            Ok((runtime, text)) => {
                record(self.store.as_mut(), &runtime, &text);
                return Ok(Loaded {
                    runtime,
                    text,
                    problem: None,
                    note: None,
                    backup: false,
                });
            }
            Err(errors) => errors,
        };
        let mut problems: Vec<String> = file_errors
            .iter()
            .map(|e| format!("{}: {e}", self.path.display()))
            .collect();
        let Some(store) = self.store.as_ref() else {
            return Err(problems);
        };
        match newest_good(store) {
            Ok(Some((mut loaded, seq))) => {
                for p in &problems {
                    log::error!("config rejected: {p}");
                }
                log::warn!(
                    "starting from backup #{seq} (version {}) because the config file was rejected",
                    loaded.runtime.version
                );
                loaded.problem = Some(format!(
                    "{} rejected ({} error(s)); serving backup version {}",
                    self.path.display(),
                    problems.len(),
                    loaded.runtime.version
                ));
                Ok(loaded)
            }
            Ok(None) => {
                problems.push("and no usable backup".into());
                Err(problems)
            }
            Err(e) => {
                problems.push(e);
                Err(problems)
            }
        }
    }

    /// SIGHUP: the pin if one is set, else the file. A bad file is rejected and the
    /// running config stays (no fallback to older backups while running).
    pub fn reload(&mut self) -> Result<Loaded, Vec<String>> {
        if let Some(pinned) = self.pinned() {
            return Ok(pinned);
        }
        match load_config_file(&self.path, ConfigSource::Local) {
            Ok((runtime, text)) => {
                record(self.store.as_mut(), &runtime, &text);
                Ok(Loaded {
                    runtime,
                    text,
                    problem: None,
                    note: None,
                    backup: false,
                })
            }
            Err(errors) => Err(errors.iter().map(ToString::to_string).collect()),
        }
    }
}

/// Opens the backup store when enabled. A store that cannot be opened (a read-only
/// directory, a file other users can read, the plane's database) stops the start with
/// one line: running without the backups the settings ask for would only show later,
/// when a restart finds nothing to start from. A damaged file is set aside and logged.
pub fn open_store(backup: Option<(&Path, u32)>) -> Result<Option<Store>, String> {
    let Some((file, keep)) = backup else {
        return Ok(None);
    };
    match Store::open(file, keep) {
        Ok((store, note)) => {
            if let Some(note) = note {
                log::error!("{note}");
            }
            log::info!(
                "config backups in {} ({keep} versions kept)",
                file.display()
            );
            Ok(Some(store))
        }
        Err(e) => Err(format!(
            "{e} (set config.backup.enabled=false to run without backups)"
        )),
    }
}

/// A pinned backup, compiled, if one is set and usable.
pub fn pinned(store: Option<&Store>, ignored: &str) -> Option<Loaded> {
    let stored = match store?.pinned() {
        Ok(s) => s?,
        Err(e) => {
            log::error!("{e}");
            return None;
        }
    };
    let label = format!(
        "pinned backup #{} (version {})",
        stored.entry.seq, stored.entry.version
    );
    if !stored.entry.intact {
        log::error!("{label}: checksum mismatch; pin ignored");
        return None;
    }
    match compile_and_resolve(&stored.document, ConfigSource::Backup) {
        Ok(runtime) => Some(Loaded {
            runtime,
            text: stored.document,
            problem: None,
            note: Some(format!(
                "{label} is in force; {ignored} until the pin is cleared"
            )),
            backup: false,
        }),
        Err(errors) => {
            log::error!(
                "{label} is invalid ({}); pin ignored",
                errors.first().map(ToString::to_string).unwrap_or_default()
            );
            None
        }
    }
}

/// The newest intact, valid backup, compiled, with its sequence number; skipped
/// versions are logged. The caller says why it starts from it.
pub fn newest_good(store: &Store) -> Result<Option<(Loaded, i64)>, String> {
    let usable = |doc: &str| {
        config::compile(doc, ConfigSource::Backup)
            .map(drop)
            .map_err(|e| e.first().map(ToString::to_string).unwrap_or_default())
    };
    let (found, skipped) = store.newest_good(usable).map_err(|e| e.to_string())?;
    for s in skipped {
        log::error!("{s}");
    }
    let Some(stored) = found else { return Ok(None) };
    let runtime = compile_and_resolve(&stored.document, ConfigSource::Backup)
        .map_err(|e| e.first().map(ToString::to_string).unwrap_or_default())?;
    Ok(Some((
        Loaded {
            runtime,
            text: stored.document,
            problem: None,
            note: None,
            backup: false,
        },
        stored.entry.seq,
    )))
}

/// Records a document, unless it is the newest one already stored.
pub fn record(store: Option<&mut Store>, runtime: &Runtime, text: &str) {
    let Some(store) = store else { return };
    // the same document as the newest intact version is not a new version
    let sha = crate::sqlite::sha256_hex(text.as_bytes());
    if store
        .newest_intact_sha256()
        .ok()
        .flatten()
        .is_some_and(|newest| newest == sha)
    {
        return;
    }
    if let Err(e) = store.save(&runtime.version, runtime.source, text) {
        log::error!(
            "config version {} applied but not backed up: {e}",
            runtime.version
        );
    }
}

impl Syncer for LocalConfig {
    fn reload(&mut self) -> Vec<Update> {
        log::info!("reloading {}", self.path.display());
        match LocalConfig::reload(self) {
            Ok(loaded) => {
                if let Some(p) = &loaded.problem {
                    log::warn!("{p}");
                }
                if let Some(n) = &loaded.note {
                    log::info!("{n}");
                }
                vec![Update::Apply(loaded)]
            }
            Err(errors) => {
                for e in &errors {
                    log::error!("config rejected, running config kept: {e}");
                }
                let first = errors.first().cloned().unwrap_or_default();
                vec![Update::Rejected(format!(
                    "{} error(s) in {}; first: {first}",
                    errors.len(),
                    self.path.display()
                ))]
            }
        }
    }
    fn tick(&mut self, _running: &Runtime) -> Vec<Update> {
        Vec::new()
    }
    fn next_tick(&self) -> Instant {
        Instant::now() + std::time::Duration::from_secs(3600)
    }
    fn store(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }
}

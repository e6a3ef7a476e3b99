//! Settings changed remotely at run time (the telemetry interval), persisted in the `settings` table
//! of `agent.db`. A persisted value wins over the config file until it is changed again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::config::{Config, MAX_INTERVAL_SECS, MIN_INTERVAL_SECS};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings table in {path}: {source}")]
    Db { path: PathBuf, source: rusqlite::Error },
    #[error("interval must be {MIN_INTERVAL_SECS}..={MAX_INTERVAL_SECS} seconds, got {0}")]
    IntervalOutOfRange(u64),
    /// A thread panicked while writing a setting; the store refuses further writes rather than
    /// trusting a connection left mid-statement.
    #[error("settings store in {path} is unusable: a writer panicked")]
    Poisoned { path: PathBuf },
}

/// Settings store shared by the main loop (reads) and commands (writes). Cheap to clone.
#[derive(Clone)]
pub struct Settings {
    inner: Arc<SettingsInner>,
}

struct SettingsInner {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Effective interval, read by the main loop at each tick.
    interval_secs: AtomicU64,
}

const KEY_INTERVAL: &str = "interval_secs";

impl Settings {
    /// Opens the table. An interval given on the command line is the operator's latest explicit
    /// choice, so it clears a remotely persisted one; otherwise a persisted value wins over the file.
    pub fn open(db_path: &Path, cfg: &Config, interval_from_flag: bool) -> Result<Settings, SettingsError> {
        let err = |source| SettingsError::Db { path: db_path.to_owned(), source };
        let conn = crate::db::open(db_path).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms INTEGER NOT NULL);",
        )
        .map_err(err)?;
        if interval_from_flag {
            conn.execute("DELETE FROM settings WHERE key = ?1", [KEY_INTERVAL]).map_err(err)?;
        }
        let stored: Option<String> =
            conn.query_row("SELECT value FROM settings WHERE key = ?1", [KEY_INTERVAL], |r| r.get(0)).optional().map_err(err)?;
        let interval = match stored.and_then(|s| s.parse::<u64>().ok()) {
            Some(v) if (MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&v) => v,
            _ => cfg.interval_secs,
        };
        Ok(Settings {
            inner: Arc::new(SettingsInner {
                conn: Mutex::new(conn),
                path: db_path.to_owned(),
                interval_secs: AtomicU64::new(interval),
            }),
        })
    }

    /// Effective telemetry interval (persisted setting, else config).
    pub fn interval_secs(&self) -> u64 {
        self.inner.interval_secs.load(Ordering::Relaxed)
    }

    /// Persists a new telemetry interval; the main loop uses it from its next tick, no restart needed.
    pub fn set_interval_secs(&self, secs: u64) -> Result<(), SettingsError> {
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&secs) {
            return Err(SettingsError::IntervalOutOfRange(secs));
        }
        let conn = self.inner.conn.lock().map_err(|_| SettingsError::Poisoned { path: self.inner.path.clone() })?;
        conn.execute(
            "INSERT INTO settings (key, value, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
            params![KEY_INTERVAL, secs.to_string(), crate::clock::now_ms() as i64],
        )
        .map_err(|source| SettingsError::Db { path: self.inner.path.clone(), source })?;
        self.inner.interval_secs.store(secs, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db() -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("scs-settings-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("agent.db");
        (dir, db)
    }

    #[test]
    fn persisted_interval_wins_over_file_until_a_flag_says_otherwise() {
        let (dir, db) = temp_db();
        let cfg = Config { interval_secs: 10, ..Default::default() };
        let s = Settings::open(&db, &cfg, false).unwrap();
        assert_eq!(s.interval_secs(), 10);
        s.set_interval_secs(3).unwrap();
        assert_eq!(s.interval_secs(), 3);
        assert!(matches!(s.set_interval_secs(0), Err(SettingsError::IntervalOutOfRange(0))));
        assert!(s.set_interval_secs(MAX_INTERVAL_SECS + 1).is_err());
        assert_eq!(s.interval_secs(), 3);
        drop(s);
        // restart: the remotely set value survives and beats the file
        assert_eq!(Settings::open(&db, &cfg, false).unwrap().interval_secs(), 3);
        // an explicit --interval-secs clears it
        assert_eq!(Settings::open(&db, &cfg, true).unwrap().interval_secs(), 10);
        assert_eq!(Settings::open(&db, &cfg, false).unwrap().interval_secs(), 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_poisoned_store_is_reported_as_such() {
        let (dir, db) = temp_db();
        let s = Settings::open(&db, &Config::default(), false).unwrap();
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let _guard = s2.inner.conn.lock().unwrap();
            panic!("writer dies holding the lock");
        })
        .join();
        assert!(matches!(s.set_interval_secs(5), Err(SettingsError::Poisoned { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

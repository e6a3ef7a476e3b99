//! The shim's store: one SQLite file `{data_dir}/scs.db` in WAL mode with the D1 schema.
//!
//! Ingest writes go through one dedicated writer thread (`ingest::sqlite`, on [`Store::connect`]); API
//! handlers (and the command and artifact modules) use [`Store::call`], which runs a closure on a pooled
//! connection on tokio's blocking pool, so SQLite never blocks an async worker. With `--worker-url`, ingest
//! goes to the Worker (`ingest::worker`) instead and this file keeps only what the local process owns.
//! This module knows nothing of ingest or commands: they build on it.

pub mod devices;
pub mod migrations;
pub mod queries;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use thiserror::Error;

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "scs.db";
/// Idle connections kept for API handlers.
const POOL_MAX_IDLE: usize = 8;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration {name} failed: {source}")]
    Migration { name: String, source: rusqlite::Error },
    #[error("data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("store answer is not the JSON expected: {0}")]
    Json(#[source] serde_json::Error),
    #[error("store task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Store {
    /// Opens (creating if needed) `{data_dir}/scs.db` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir { path: data_dir.to_owned(), source })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = open_connection(&path)?;
        let applied = migrations::migrate(&mut conn)?;
        for name in &applied {
            log::info!("applied migration {name}");
        }
        Ok(Store { inner: Arc::new(Inner { path, idle: Mutex::new(vec![conn]) }) })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A new connection with the shim's settings, for a thread that keeps its own (the ingest writer).
    pub fn connect(&self) -> Result<Connection, StoreError> {
        open_connection(&self.inner.path)
    }

    /// Runs `f` with a pooled connection on the blocking pool. Any error type that can hold a
    /// [`StoreError`] works, so the command and artifact modules keep their own errors.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = store.checkout()?;
            let out = f(&mut conn);
            store.checkin(conn);
            out
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e)))?
    }

    /// Same as [`Store::call`] for synchronous callers already off the async workers.
    #[allow(dead_code, reason = "for the command and artifact modules")]
    pub fn call_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E>,
        E: From<StoreError>,
    {
        let mut conn = self.checkout()?;
        let out = f(&mut conn);
        self.checkin(conn);
        out
    }

    fn checkout(&self) -> Result<Connection, StoreError> {
        let pooled = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop());
        match pooled {
            Some(c) => Ok(c),
            None => open_connection(&self.inner.path),
        }
    }

    fn checkin(&self, conn: Connection) {
        // A connection left inside a transaction (a closure that returned early) is not reused.
        if !conn.is_autocommit() {
            return;
        }
        if let Ok(mut idle) = self.inner.idle.lock() {
            if idle.len() < POOL_MAX_IDLE {
                idle.push(conn);
            }
        }
    }
}

/// WAL so readers never block the writer; FULL sync because a receipt promises the data survives a power
/// cut, and group commit keeps that affordable; busy timeout because several shims may share the file.
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The shim's clock is [`crate::clock`]; the MQTT bridge names it through the store.
pub use crate::clock::now_ms;

/// Boot ids are u64 on the wire; the store keeps them as 16 hex digits (see 0001_init.sql).
pub fn boot_hex(boot: u64) -> String {
    format!("{boot:016x}")
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop, for store tests.
    pub struct TestDir(PathBuf);

    impl TestDir {
        pub fn new(tag: &str) -> TestDir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("scs-shim-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TestDir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

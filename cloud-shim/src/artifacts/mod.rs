//! Command artifacts: tus-like resumable uploads from gateways, verified by size and SHA-256, bytes in the
//! object store (`crate::objects`), metadata in `command_artifacts`, downloads through HMAC-signed, expiring
//! URLs that honour Range.
//!
//! * `tokens`: signing key, upload/download tokens, upload grants (called by the command sessions).
//! * `store`: metadata rows and `list_for_command` (called by `GET /v1/commands/{id}`).
//! * `api`: the HTTP endpoints (`routes()`), documented in `docs/worker-api.openapi.yaml`.

pub mod api;
#[cfg(test)]
mod http_tests;
pub mod names;
pub mod range;
pub mod rows;
pub mod store;
pub mod token_format;
pub mod tokens;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use scs_protocol::UploadGrant;
use thiserror::Error;

use crate::objects::{FsObjectStore, ObjectError, ObjectStore};
use tokens::{KeyError, SigningKey};

/// Default largest artifact the shim accepts (413 above it).
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1 << 30;
/// Environment variable overriding the largest accepted artifact (bytes).
pub const MAX_BYTES_ENV: &str = "SCS_MAX_ARTIFACT_BYTES";
/// Default lifetime of download URLs.
pub const DEFAULT_DOWNLOAD_TTL: Duration = Duration::from_secs(3600);
/// Default lifetime of upload grants when the caller has no better horizon.
pub const DEFAULT_UPLOAD_TTL: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone)]
pub struct ArtifactsConfig {
    pub data_dir: PathBuf,
    /// Public API root as gateways and clients reach it (`--public-url`, or `http(s)://{--http}`).
    pub public_url: String,
    pub max_artifact_bytes: u64,
    pub download_ttl: Duration,
    pub upload_ttl: Duration,
}

impl ArtifactsConfig {
    pub fn new(data_dir: &Path, public_url: &str) -> ArtifactsConfig {
        ArtifactsConfig {
            data_dir: data_dir.to_path_buf(),
            public_url: public_url.trim_end_matches('/').to_string(),
            max_artifact_bytes: std::env::var(MAX_BYTES_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_ARTIFACT_BYTES),
            download_ttl: DEFAULT_DOWNLOAD_TTL,
            upload_ttl: DEFAULT_UPLOAD_TTL,
        }
    }
}

#[derive(Debug, Error)]
pub enum ArtifactError {
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectError),
    #[error("artifact metadata: {0}")]
    Store(#[from] store::StoreError),
    #[error("opening {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// The artifact service: cheap to clone, shared by the HTTP handlers and the command sessions.
#[derive(Clone)]
pub struct Artifacts {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ArtifactsConfig,
    key: SigningKey,
    objects: Arc<dyn ObjectStore>,
    /// Its own connection to `{data_dir}/scs.db`; migrations are applied by the store before this opens.
    db: Mutex<Connection>,
    /// One lock per artifact so PATCH/HEAD/finalize of the same upload never interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Artifacts {
    /// Loads the signing key, opens `{data_dir}/objects` and a connection to `{data_dir}/scs.db`.
    pub fn open(cfg: ArtifactsConfig) -> Result<Artifacts, ArtifactError> {
        let objects = Arc::new(FsObjectStore::open(&cfg.data_dir)?);
        let db_path = cfg.data_dir.join("scs.db");
        let conn = open_db(&db_path)?;
        Artifacts::with_parts(cfg, objects, conn)
    }

    /// Builds the service from explicit parts (another object store, an in-memory database in tests).
    pub fn with_parts(cfg: ArtifactsConfig, objects: Arc<dyn ObjectStore>, conn: Connection) -> Result<Artifacts, ArtifactError> {
        let key = SigningKey::load_or_generate(&cfg.data_dir)?;
        store::set_download_signer(key.clone(), cfg.download_ttl);
        Ok(Artifacts { inner: Arc::new(Inner { cfg, key, objects, db: Mutex::new(conn), locks: Mutex::new(HashMap::new()) }) })
    }

    pub fn config(&self) -> &ArtifactsConfig {
        &self.inner.cfg
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// An upload grant for a new artifact of `command_id`, valid for `valid_for` (use the command's
    /// expiry horizon plus its timeout, so a command held for an offline gateway can still upload).
    pub fn mint_upload_grant(&self, command_id: &str, valid_for: Duration) -> UploadGrant {
        tokens::mint_upload_grant(
            &self.inner.key,
            &format!("{}/v1/uploads", self.inner.cfg.public_url),
            command_id,
            valid_for,
            self.inner.cfg.max_artifact_bytes,
        )
    }

    /// The object store holding artifact (and release) bytes.
    pub fn objects(&self) -> &dyn ObjectStore {
        self.inner.objects.as_ref()
    }

    fn lock_for(&self, artifact_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(artifact_id.to_string()).or_default().clone()
    }

    fn forget_lock(&self, artifact_id: &str) {
        let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.remove(artifact_id);
    }

    /// Runs a metadata query on the blocking pool.
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, store::StoreError> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || {
            let mut conn = this.inner.db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => Err(store::StoreError::Sql {
                artifact: String::new(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            }),
        }
    }
}

fn open_db(path: &Path) -> Result<Connection, ArtifactError> {
    let db_err = |source| ArtifactError::Db { path: path.display().to_string(), source };
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err)?;
    Ok(conn)
}

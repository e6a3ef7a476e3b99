//! Object store for artifact bytes, behind a small interface so the filesystem default can be swapped for
//! R2/S3 (multipart upload: `begin_append`/`commit` map to parts, `finalize` to complete-multipart).
//!
//! An object is first *staged* (being uploaded, appendable) and then *finalized* (immutable, readable).
//! Keys are [`ObjectKey`]s built from cloud-minted artifact ids, never from user-supplied names.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// A validated object key: 1-64 chars of `[A-Za-z0-9._:-]`, not starting with '.', so it is always a
/// single, non-special path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn for_artifact(artifact_id: &str) -> Result<ObjectKey, ObjectError> {
        let ok = scs_protocol::ids::validate_id("artifact id", artifact_id).is_ok() && !artifact_id.starts_with('.');
        if ok {
            Ok(ObjectKey(artifact_id.to_string()))
        } else {
            Err(ObjectError::BadKey(artifact_id.chars().take(80).collect()))
        }
    }

    /// The key of a release's bytes: `releases.{release_id}`, the releases prefix of the flat key space
    /// (an R2 store may map the first `.` to `/`).
    pub fn for_release(release_id: &str) -> Result<ObjectKey, ObjectError> {
        ObjectKey::for_artifact(release_id).and_then(|_| ObjectKey::for_artifact(&format!("{RELEASES_PREFIX}{release_id}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Prefix of every release object key.
pub const RELEASES_PREFIX: &str = "releases.";

#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("invalid object key {0:?}")]
    BadKey(String),
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object {key}: append at offset {offset} but {len} bytes are committed")]
    OffsetMismatch { key: String, offset: u64, len: u64 },
    #[error("object {key}: range {start}..{end} outside its {len} bytes")]
    Range { key: String, start: u64, end: u64, len: u64 },
    #[error("object store I/O on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
}

/// Bytes of an object range, read as they are sent.
pub type ObjectReader = Pin<Box<dyn AsyncRead + Send>>;

/// Appends to a staged object. Bytes written are durable only after [`AppendWriter::commit`].
#[async_trait]
pub trait AppendWriter: Send {
    async fn write(&mut self, data: &[u8]) -> Result<(), ObjectError>;
    /// Makes everything written so far durable and returns the staged object's new length.
    async fn commit(self: Box<Self>) -> Result<u64, ObjectError>;
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Creates an empty staged object, replacing any leftover (only called for an upload not yet recorded).
    async fn stage(&self, key: &ObjectKey) -> Result<(), ObjectError>;
    /// Length of the staged object (committed bytes), `None` if there is none.
    async fn staged_len(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError>;
    /// Starts appending at `offset`, which must equal the committed length.
    async fn begin_append(&self, key: &ObjectKey, offset: u64) -> Result<Box<dyn AppendWriter>, ObjectError>;
    /// Reads a range of the staged object (used to verify it before finalizing).
    async fn read_staged(&self, key: &ObjectKey) -> Result<ObjectReader, ObjectError>;
    /// Turns the staged object into the final, immutable one.
    async fn finalize(&self, key: &ObjectKey) -> Result<(), ObjectError>;
    /// Length of the final object, `None` if there is none.
    async fn len(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError>;
    /// Streams `start..end` (end exclusive) of the final object.
    async fn read_range(&self, key: &ObjectKey, start: u64, end: u64) -> Result<ObjectReader, ObjectError>;
    /// Deletes the staged and the final object; missing ones are not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError>;
}

/// The embedded default: `{root}/staging/{key}` while uploading, `{root}/final/{key}` once finalized.
pub struct FsObjectStore {
    root: PathBuf,
}

/// Large enough to turn many small body frames into few blocking writes.
const WRITE_BUFFER: usize = 1 << 20;

impl FsObjectStore {
    /// Opens (creating) `{data_dir}/objects`.
    pub fn open(data_dir: &Path) -> Result<FsObjectStore, ObjectError> {
        let root = data_dir.join("objects");
        for sub in ["staging", "final"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| ObjectError::Io { key: dir.display().to_string(), source })?;
        }
        Ok(FsObjectStore { root })
    }

    fn staging(&self, key: &ObjectKey) -> PathBuf {
        self.root.join("staging").join(key.as_str())
    }

    fn final_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join("final").join(key.as_str())
    }
}

fn io_err(key: &ObjectKey) -> impl FnOnce(std::io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Io { key: key.as_str().to_string(), source }
}

async fn file_len(path: &Path, key: &ObjectKey) -> Result<Option<u64>, ObjectError> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(key)(e)),
    }
}

async fn remove_if_exists(path: &Path, key: &ObjectKey) -> Result<(), ObjectError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(key)(e)),
    }
}

/// fsyncs a directory so a create/rename in it survives a crash.
async fn sync_dir(dir: &Path, key: &ObjectKey) -> Result<(), ObjectError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(|e| io_err(key)(std::io::Error::other(e)))?
        .map_err(io_err(key))
}

struct FsAppendWriter {
    key: ObjectKey,
    file: BufWriter<tokio::fs::File>,
}

#[async_trait]
impl AppendWriter for FsAppendWriter {
    async fn write(&mut self, data: &[u8]) -> Result<(), ObjectError> {
        self.file.write_all(data).await.map_err(io_err(&self.key))
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, ObjectError> {
        self.file.flush().await.map_err(io_err(&self.key))?;
        let file = self.file.get_mut();
        file.sync_data().await.map_err(io_err(&self.key))?;
        let len = file.metadata().await.map_err(io_err(&self.key))?.len();
        Ok(len)
    }
}

#[async_trait]
impl ObjectStore for FsObjectStore {
    async fn stage(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        let path = self.staging(key);
        tokio::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path).await.map_err(io_err(key))?;
        sync_dir(&self.root.join("staging"), key).await
    }

    async fn staged_len(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError> {
        file_len(&self.staging(key), key).await
    }

    async fn begin_append(&self, key: &ObjectKey, offset: u64) -> Result<Box<dyn AppendWriter>, ObjectError> {
        let path = self.staging(key);
        let mut file = match tokio::fs::OpenOptions::new().write(true).open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ObjectError::NotFound(key.0.clone())),
            Err(e) => return Err(io_err(key)(e)),
        };
        let len = file.metadata().await.map_err(io_err(key))?.len();
        if len != offset {
            return Err(ObjectError::OffsetMismatch { key: key.0.clone(), offset, len });
        }
        file.seek(SeekFrom::Start(offset)).await.map_err(io_err(key))?;
        Ok(Box::new(FsAppendWriter { key: key.clone(), file: BufWriter::with_capacity(WRITE_BUFFER, file) }))
    }

    async fn read_staged(&self, key: &ObjectKey) -> Result<ObjectReader, ObjectError> {
        match tokio::fs::File::open(self.staging(key)).await {
            Ok(f) => Ok(Box::pin(tokio::io::BufReader::with_capacity(WRITE_BUFFER, f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ObjectError::NotFound(key.0.clone())),
            Err(e) => Err(io_err(key)(e)),
        }
    }

    async fn finalize(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        let from = self.staging(key);
        if file_len(&from, key).await?.is_none() {
            // Already finalized (a retried finalize) is fine; nothing at all is not.
            return match file_len(&self.final_path(key), key).await? {
                Some(_) => Ok(()),
                None => Err(ObjectError::NotFound(key.0.clone())),
            };
        }
        tokio::fs::rename(&from, self.final_path(key)).await.map_err(io_err(key))?;
        sync_dir(&self.root.join("final"), key).await?;
        sync_dir(&self.root.join("staging"), key).await
    }

    async fn len(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError> {
        file_len(&self.final_path(key), key).await
    }

    async fn read_range(&self, key: &ObjectKey, start: u64, end: u64) -> Result<ObjectReader, ObjectError> {
        let mut file = match tokio::fs::File::open(self.final_path(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ObjectError::NotFound(key.0.clone())),
            Err(e) => return Err(io_err(key)(e)),
        };
        let len = file.metadata().await.map_err(io_err(key))?.len();
        if start > end || end > len {
            return Err(ObjectError::Range { key: key.0.clone(), start, end, len });
        }
        file.seek(SeekFrom::Start(start)).await.map_err(io_err(key))?;
        Ok(Box::pin(file.take(end - start)))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        remove_if_exists(&self.staging(key), key).await?;
        remove_if_exists(&self.final_path(key), key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scs-objects-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tempdir");
        d
    }

    #[tokio::test]
    async fn stage_append_finalize_read_delete() {
        let dir = tempdir("cycle");
        let store = FsObjectStore::open(&dir).expect("open");
        let key = ObjectKey::for_artifact("art-1").expect("key");
        store.stage(&key).await.expect("stage");
        assert_eq!(store.staged_len(&key).await.expect("len"), Some(0));
        let mut w = store.begin_append(&key, 0).await.expect("append");
        w.write(b"hello ").await.expect("write");
        assert_eq!(w.commit().await.expect("commit"), 6);
        assert!(matches!(store.begin_append(&key, 3).await, Err(ObjectError::OffsetMismatch { len: 6, .. })));
        let mut w = store.begin_append(&key, 6).await.expect("append");
        w.write(b"world").await.expect("write");
        assert_eq!(w.commit().await.expect("commit"), 11);
        store.finalize(&key).await.expect("finalize");
        store.finalize(&key).await.expect("finalize again is idempotent");
        assert_eq!(store.len(&key).await.expect("len"), Some(11));
        let mut out = String::new();
        store.read_range(&key, 2, 8).await.expect("range").read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "llo wo");
        assert!(store.read_range(&key, 2, 12).await.is_err());
        store.delete(&key).await.expect("delete");
        assert_eq!(store.len(&key).await.expect("len"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_are_single_safe_components() {
        for bad in ["..", ".", ".hidden", "a/b", "", "a\\b", "x y"] {
            assert!(ObjectKey::for_artifact(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ObjectKey::for_artifact("art-01.bundle").is_ok());
    }
}

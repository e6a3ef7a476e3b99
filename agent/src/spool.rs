//! Disk spool for artifacts waiting to be uploaded: `{data_dir}/spool`, bounded by a byte cap and by a
//! free-space reserve, so a log bundle or clip can never fill the gateway's disk.
//!
//! Bytes are accounted as they are written (reserved in 1 MiB steps), so several artifacts spooled at
//! once share the cap. A full spool refuses the write with [`SpoolError::Full`] and the partial file is
//! removed. The SHA-256 is computed while writing, so the file is never read twice before upload.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ring::digest;

pub const SPOOL_DIR: &str = "spool";
/// Reservation granularity: one lock round and one statvfs per MiB written, not per write call.
const STEP: u64 = 1 << 20;
/// Always leave this much free on the filesystem, whatever the cap says.
const MIN_FREE_BYTES: u64 = 32 << 20;
/// ... and at least this share of the filesystem (percent).
const MIN_FREE_PERCENT: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool full: {used} of {cap} bytes in use, {wanted} more needed for artifact {name:?}")]
    Full { name: String, used: u64, cap: u64, wanted: u64 },
    #[error("spool refused artifact {name:?}: only {available} bytes free on the filesystem, {reserve} kept in reserve")]
    DiskLow { name: String, available: u64, reserve: u64 },
    #[error("spool I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_path_buf(), source }
}

/// Shared accounting per spool directory, so every `Spool` opened on the same dir sees one total.
struct Account {
    used: Mutex<u64>,
}

fn account_for(dir: &Path, initial: impl FnOnce() -> u64) -> Arc<Account> {
    static ACCOUNTS: OnceLock<Mutex<HashMap<PathBuf, Arc<Account>>>> = OnceLock::new();
    let mut map = ACCOUNTS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    map.entry(dir.to_path_buf()).or_insert_with(|| Arc::new(Account { used: Mutex::new(initial()) })).clone()
}

#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    cap: u64,
    account: Arc<Account>,
}

/// A finished spool file: its bytes are durable and its SHA-256 known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledFile {
    pub path: PathBuf,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl Spool {
    /// Opens (creating) `{data_dir}/spool` with a cap in bytes. Leftover `.part` files from a crash are
    /// removed; finished files (awaiting upload) count against the cap.
    pub fn open(data_dir: &Path, cap: u64) -> Result<Spool, SpoolError> {
        let dir = data_dir.join(SPOOL_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let account = account_for(&dir, || scan(&dir));
        Ok(Spool { dir, cap, account })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    pub fn used(&self) -> u64 {
        *self.account.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new spool file. `name` is only used in errors and logs; the file name is generated.
    pub fn writer(&self, name: &str) -> Result<SpoolWriter, SpoolError> {
        let used = self.used();
        if used >= self.cap {
            return Err(SpoolError::Full { name: name.to_string(), used, cap: self.cap, wanted: 1 });
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let stem = format!("{}-{}-{}", std::process::id(), crate::clock::now_ms(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = self.dir.join(format!("{stem}.part"));
        let file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(io_err(&path))?;
        Ok(SpoolWriter {
            spool: self.clone(),
            name: name.to_string(),
            file: Some(BufWriter::with_capacity(64 * 1024, file)),
            path,
            len: 0,
            reserved: 0,
            digest: digest::Context::new(&digest::SHA256),
        })
    }

    /// Deletes a spool file (after a successful upload, or when it is abandoned) and frees its bytes.
    pub fn remove(&self, file: &SpooledFile) {
        match fs::remove_file(&file.path) {
            Ok(()) => self.release(file.size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("spool: removing {}: {e}", file.path.display()),
        }
    }

    /// Deletes a spool file known only by path (upload progress after a restart).
    pub fn remove_path(&self, path: &Path) {
        if let Ok(meta) = fs::metadata(path) {
            if fs::remove_file(path).is_ok() {
                self.release(meta.len());
            }
        }
    }

    fn reserve(&self, name: &str, want: u64) -> Result<(), SpoolError> {
        let mut used = self.account.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.saturating_add(want) > self.cap {
            return Err(SpoolError::Full { name: name.to_string(), used: *used, cap: self.cap, wanted: want });
        }
        if let Some((available, total)) = fs_space(&self.dir) {
            let reserve = MIN_FREE_BYTES.max(total / 100 * MIN_FREE_PERCENT);
            if available < want.saturating_add(reserve) {
                return Err(SpoolError::DiskLow { name: name.to_string(), available, reserve });
            }
        }
        *used += want;
        Ok(())
    }

    fn release(&self, n: u64) {
        let mut used = self.account.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(n);
    }
}

/// Sums finished spool files and deletes partial ones.
fn scan(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut used = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "part") {
            let _ = fs::remove_file(&path);
        } else if let Ok(m) = e.metadata() {
            used += m.len();
        }
    }
    used
}

/// (available to unprivileged users, total) bytes of the filesystem holding `dir`.
fn fs_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Writes one artifact into the spool. Dropped without [`SpoolWriter::finish`], the file is deleted and
/// its bytes returned to the cap.
pub struct SpoolWriter {
    spool: Spool,
    name: String,
    file: Option<BufWriter<File>>,
    path: PathBuf,
    len: u64,
    reserved: u64,
    digest: digest::Context,
}

impl SpoolWriter {
    /// Flushes and fsyncs, renames `.part` to `.dat`, and returns the file with its size and SHA-256.
    pub fn finish(mut self) -> Result<SpooledFile, SpoolError> {
        let Some(buf) = self.file.take() else {
            return Err(SpoolError::Io { path: self.path.clone(), source: io::Error::other("spool writer already finished") });
        };
        let file = buf.into_inner().map_err(|e| SpoolError::Io { path: self.path.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&self.path))?;
        let done = self.path.with_extension("dat");
        fs::rename(&self.path, &done).map_err(io_err(&self.path))?;
        if let Ok(d) = File::open(&self.spool.dir) {
            let _ = d.sync_all();
        }
        // Keep exactly `len` bytes accounted; the rest of the last reservation step goes back.
        self.spool.release(self.reserved - self.len);
        self.reserved = self.len;
        let sha = self.digest.clone().finish();
        self.path = done.clone();
        let out = SpooledFile { path: done, size: self.len, sha256: hex(sha.as_ref()) };
        // The file now belongs to the caller: stop Drop from deleting it or releasing its bytes.
        self.len = 0;
        self.reserved = 0;
        Ok(out)
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len() as u64;
        if self.len + n > self.reserved {
            let missing = self.len + n - self.reserved;
            let step = missing.div_ceil(STEP) * STEP;
            // Take a whole step when the cap allows it, else exactly what this write needs.
            let want = if self.spool.used().saturating_add(step) <= self.spool.cap { step } else { missing };
            self.spool.reserve(&self.name, want).map_err(io::Error::other)?;
            self.reserved += want;
        }
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("spool writer already finished"))?;
        file.write_all(buf)?;
        self.digest.update(buf);
        self.len += n;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
            self.spool.release(self.reserved);
        }
    }
}

/// Recovers the typed error from an `io::Error` raised by [`SpoolWriter::write`] (for callers that
/// write through adapters such as a gzip encoder).
pub fn spool_error(e: &io::Error) -> Option<&SpoolError> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<SpoolError>())
}

/// Lower-case hex, the one encoder for digests and nonces in the agent.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}"); // writing to a String cannot fail
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scs-spool-{tag}-{}-{}", std::process::id(), crate::clock::now_ms()));
        fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn writes_hashes_and_accounts() {
        let dir = temp("ok");
        let spool = Spool::open(&dir, 10 << 20).expect("open");
        let mut w = spool.writer("a").expect("writer");
        w.write_all(b"abc").expect("write");
        let f = w.finish().expect("finish");
        assert_eq!(f.size, 3);
        assert_eq!(f.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(spool.used(), 3);
        assert_eq!(fs::read(&f.path).expect("read"), b"abc");
        spool.remove(&f);
        assert_eq!(spool.used(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn cap_refuses_and_cleans_up() {
        let dir = temp("cap");
        let spool = Spool::open(&dir, 3 << 20).expect("open");
        let mut a = spool.writer("a").expect("writer");
        a.write_all(&vec![1u8; 2 << 20]).expect("2 MiB fits");
        let a = a.finish().expect("finish");
        let mut b = spool.writer("b").expect("writer");
        let err = b.write_all(&vec![2u8; 2 << 20]).expect_err("over the cap");
        assert!(matches!(spool_error(&err), Some(SpoolError::Full { .. })), "{err}");
        drop(b);
        assert_eq!(spool.used(), 2 << 20, "partial file released");
        assert_eq!(fs::read_dir(spool.dir()).expect("dir").count(), 1, "partial file deleted");
        // A second handle on the same dir shares the accounting.
        let again = Spool::open(&dir, 2 << 20).expect("open");
        assert!(matches!(again.writer("c"), Err(SpoolError::Full { .. })));
        spool.remove(&a);
        assert!(again.writer("c").is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}

//! Logging: `log` + env_logger, every record to stderr (journald picks it up) and to
//! `{data_dir}/logs/agent.log`, which is renamed to `agent.log.1` when it reaches `log.max_bytes`
//! (one old file kept, so the logs never take more than twice that). The "tail agent log" command
//! and the log bundle read these files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::config::LogConfig;

pub const LOG_DIR: &str = "logs";
pub const LOG_FILE: &str = "agent.log";
pub const LOG_FILE_OLD: &str = "agent.log.1";

/// Sets up the global logger. Call once; a second call is ignored. `RUST_LOG` overrides
/// `log.level`. Returns the log file path when file logging is active.
pub fn init(cfg: &LogConfig, data_dir: &Path) -> Option<PathBuf> {
    let mut b = env_logger::Builder::new();
    b.parse_filters(&cfg.level);
    if let Ok(env) = std::env::var("RUST_LOG") {
        b.parse_filters(&env);
    }
    let mut file_err = None;
    let file = if cfg.file {
        match RotatingFile::open(&data_dir.join(LOG_DIR), cfg.max_bytes) {
            Ok(f) => Some(f),
            Err(e) => {
                file_err = Some(e);
                None
            }
        }
    } else {
        None
    };
    let path = file.as_ref().map(|f| f.path.clone());
    b.format(|buf, record| {
        use std::io::Write as _;
        writeln!(
            buf,
            "[{} {:<5} {}] {}",
            crate::clock::rfc3339_utc(crate::clock::now_ms()),
            record.level(),
            record.target(),
            record.args()
        )
    });
    let reopen = cfg.file.then(|| (data_dir.join(LOG_DIR), cfg.max_bytes));
    b.target(env_logger::Target::Pipe(Box::new(Tee { file, reopen, retry_at: None })));
    if b.try_init().is_err() {
        return None;
    }
    if let Some(e) = file_err {
        log::warn!("logging to stderr only: cannot open {}: {e}", data_dir.join(LOG_DIR).join(LOG_FILE).display());
    }
    path
}

/// Writes each formatted record to stderr and, if open, to the rotating file.
struct Tee {
    file: Option<RotatingFile>,
    /// Where to reopen the file after a write error (disk full, directory removed), and when.
    reopen: Option<(PathBuf, u64)>,
    retry_at: Option<std::time::Instant>,
}

/// Pause between attempts to reopen the log file after an error.
const REOPEN_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // stderr failing (closed by a supervisor) must not stop the file log, and vice versa.
        let _ = io::stderr().write_all(buf);
        if self.file.is_none() && self.retry_at.is_some_and(|t| std::time::Instant::now() >= t) {
            self.retry_at = None;
            if let Some((dir, max)) = &self.reopen {
                self.file = RotatingFile::open(dir, *max).ok();
            }
        }
        if let Some(f) = &mut self.file {
            if f.write_record(buf).is_err() {
                // Disk full or removed directory: keep logging to stderr, try the file again later.
                self.file = None;
                self.retry_at = Some(std::time::Instant::now() + REOPEN_AFTER);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `agent.log` with size-based rotation to `agent.log.1`.
pub struct RotatingFile {
    path: PathBuf,
    old: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
}

impl RotatingFile {
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<RotatingFile> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile { old: dir.join(LOG_FILE_OLD), path, file, size, max_bytes: max_bytes.max(4096) })
    }

    /// Appends one whole record, rotating first if it would not fit (records never straddle files).
    pub fn write_record(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            std::fs::rename(&self.path, &self.old)?;
            self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_size_and_keeps_one_old_file() {
        let dir = std::env::temp_dir().join(format!("scs-log-{}-{}", std::process::id(), crate::clock::random_u64()));
        let mut f = RotatingFile::open(&dir, 4096).unwrap();
        let line = [b'x'; 1000];
        for _ in 0..4 {
            f.write_record(&line).unwrap();
        }
        assert!(!dir.join(LOG_FILE_OLD).exists());
        f.write_record(&line).unwrap(); // 5000 > 4096: rotate first
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE_OLD)).unwrap().len(), 4000);
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(), 1000);
        for _ in 0..8 {
            f.write_record(&line).unwrap();
        }
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE_OLD)).unwrap().len(), 4000);
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(), 1000);
        // reopening appends to the existing file
        drop(f);
        let mut f = RotatingFile::open(&dir, 4096).unwrap();
        f.write_record(b"y\n").unwrap();
        assert_eq!(std::fs::metadata(dir.join(LOG_FILE)).unwrap().len(), 1002);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

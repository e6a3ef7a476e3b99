//! Resumable HTTPS download into the spool directory, and the checks that must pass before anything
//! is installed: exact size, SHA-256, and (agent binaries) the release key's Ed25519 signature.
//!
//! The partial file is named after the expected SHA-256, so an interrupted download (connection cut,
//! agent killed, power cut) continues with a `Range` request when the same update is sent again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ring::{digest, signature};

use crate::upload::UploadConfig;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download of {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("download of {url}: {source}")]
    Http { url: String, source: ureq::Error },
    #[error("download file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("download of {url}: the server sent more than the declared {size} bytes")]
    TooLong { url: String, size: u64 },
    #[error("size mismatch: declared {declared} bytes, downloaded {actual}")]
    Size { declared: u64, actual: u64 },
    #[error("SHA-256 mismatch: declared {declared}, downloaded {actual}")]
    Sha256 { declared: String, actual: String },
    #[error("{size} bytes do not fit the spool ({used} of {cap} bytes in use)")]
    SpoolFull { size: u64, used: u64, cap: u64 },
    #[error("release key {path}: {reason}")]
    ReleaseKey { path: PathBuf, reason: String },
    #[error("signature: {0}")]
    Signature(&'static str),
    #[error("download of {url}: stopped (cancelled or past the deadline); last error: {last}")]
    Stopped { url: String, last: String },
    #[error(transparent)]
    Upload(#[from] crate::upload::UploadError),
}

fn file_err(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |source| DownloadError::File { path: path.to_path_buf(), source }
}

/// Where the download of the file with this SHA-256 lives in the spool.
pub fn spool_path(spool_dir: &Path, sha256: &str) -> PathBuf {
    let safe: String = sha256.chars().filter(char::is_ascii_hexdigit).take(64).collect();
    spool_dir.join(format!("update-{safe}.download"))
}

/// Downloads `url` to `dest` until it holds `size` bytes, resuming from what is already there;
/// transient errors are retried with backoff until `stop()` says the job must end. Returns the bytes
/// this call fetched.
pub fn download(cfg: &UploadConfig, url: &str, dest: &Path, size: u64, stop: &dyn Fn() -> bool) -> Result<u64, DownloadError> {
    let agent = crate::upload::http::build_agent(cfg)?;
    let mut backoff = Duration::from_millis(500);
    let max_backoff = Duration::from_secs(cfg.retry_max_secs.max(1));
    let mut fetched = 0u64;
    loop {
        let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        if have == size {
            return Ok(fetched);
        }
        if have > size {
            File::create(dest).map_err(file_err(dest))?;
            continue;
        }
        let last = match fetch_from(&agent, url, dest, have, size, &mut fetched) {
            Ok(()) => continue,
            Err(e @ (DownloadError::TooLong { .. } | DownloadError::File { .. })) => return Err(e),
            Err(DownloadError::Status { status, .. })
                if (400..500).contains(&status) && status != 408 && status != 429 && status != 416 =>
            {
                return Err(DownloadError::Status { url: url.to_owned(), status })
            }
            Err(e) => e.to_string(),
        };
        log::warn!("update: {last}; retrying in {} ms", backoff.as_millis());
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop() {
                return Err(DownloadError::Stopped { url: url.to_owned(), last });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// One GET from offset `have`; appends what arrives (flushed to disk as it comes).
fn fetch_from(agent: &ureq::Agent, url: &str, dest: &Path, have: u64, size: u64, fetched: &mut u64) -> Result<(), DownloadError> {
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|source| DownloadError::Http { url: url.to_owned(), source })?;
    let status = resp.status().as_u16();
    let (mut file, start) = match status {
        206 => (OpenOptions::new().append(true).open(dest).map_err(file_err(dest))?, have),
        200 => (File::create(dest).map_err(file_err(dest))?, 0),
        416 => {
            // Our partial file no longer matches what the server has: start again.
            File::create(dest).map_err(file_err(dest))?;
            return Err(DownloadError::Status { url: url.to_owned(), status });
        }
        _ => return Err(DownloadError::Status { url: url.to_owned(), status }),
    };
    let want = size - start;
    let declared = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > want) {
        // A different (larger) file than the one offered: retrying cannot help.
        return Err(DownloadError::TooLong { url: url.to_owned(), size });
    }
    // One byte more than wanted, to notice a server that sends too much.
    let mut body = resp.body_mut().with_config().limit(want + 1).reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.sync_data().map_err(file_err(dest))?;
                return Err(DownloadError::Http { url: url.to_owned(), source: ureq::Error::Io(e) });
            }
        };
        got += n as u64;
        if got > want {
            drop(file);
            File::create(dest).map_err(file_err(dest))?;
            return Err(DownloadError::TooLong { url: url.to_owned(), size });
        }
        file.write_all(buf.get(..n).unwrap_or_default()).map_err(file_err(dest))?;
        *fetched += n as u64;
    }
    file.sync_data().map_err(file_err(dest))?;
    Ok(())
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, DownloadError> {
    let mut f = File::open(path).map_err(file_err(path))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(file_err(path))?;
        if n == 0 {
            break;
        }
        ctx.update(buf.get(..n).unwrap_or_default());
    }
    Ok(crate::spool::hex(ctx.finish().as_ref()))
}

/// Size and SHA-256 of the downloaded file against the declared ones.
pub fn verify_file(path: &Path, size: u64, sha256: &str) -> Result<(), DownloadError> {
    let actual_size = std::fs::metadata(path).map_err(file_err(path))?.len();
    if actual_size != size {
        return Err(DownloadError::Size { declared: size, actual: actual_size });
    }
    let actual = sha256_file(path)?;
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(DownloadError::Sha256 { declared: sha256.to_owned(), actual });
    }
    Ok(())
}

/// The exact bytes the release key signs for an agent binary (shared with the cloud, which checks
/// the same signature when a release is added).
pub use scs_protocol::command::agent_update_signed_message as signed_message;

/// Checks `signature_b64` (Ed25519, base64) over [`signed_message`] with the public key in `key_file`
/// (32 raw bytes, base64).
pub fn verify_release_signature(
    key_file: &Path,
    version: &str,
    size: u64,
    sha256: &str,
    signature_b64: &str,
) -> Result<(), DownloadError> {
    let key_err = |reason: String| DownloadError::ReleaseKey { path: key_file.to_path_buf(), reason };
    let text = std::fs::read_to_string(key_file).map_err(|e| key_err(e.to_string()))?;
    let key = super::base64_decode(&text).ok_or_else(|| key_err("not base64".into()))?;
    if key.len() != 32 {
        return Err(key_err(format!("{} bytes, an Ed25519 public key has 32", key.len())));
    }
    let sig = super::base64_decode(signature_b64).ok_or(DownloadError::Signature("not base64"))?;
    signature::UnparsedPublicKey::new(&signature::ED25519, &key)
        .verify(signed_message(version, size, sha256).as_bytes(), &sig)
        .map_err(|_| DownloadError::Signature("does not verify with the release key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    fn b64(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in bytes.chunks(3) {
            let n = c.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)) << (8 * (3 - c.len()));
            for i in 0..=c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        while !s.len().is_multiple_of(4) {
            s.push('=');
        }
        s
    }

    #[test]
    fn signature_checks() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let dir = std::env::temp_dir().join(format!("scs-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("release-key.pub");
        std::fs::write(&key, b64(kp.public_key().as_ref()) + "\n").unwrap();
        let sha = "ab".repeat(32);
        let sig = b64(kp.sign(signed_message("1.2.3", 10, &sha).as_bytes()).as_ref());
        verify_release_signature(&key, "1.2.3", 10, &sha, &sig).unwrap();
        assert!(verify_release_signature(&key, "1.2.4", 10, &sha, &sig).is_err(), "version is signed");
        assert!(verify_release_signature(&key, "1.2.3", 11, &sha, &sig).is_err(), "size is signed");
        assert!(verify_release_signature(&dir.join("missing"), "1.2.3", 10, &sha, &sig).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Upload and download tokens: HMAC-SHA256 (ring) over (purpose, artifact id, command id, expiry) with the
//! shim's signing key. A token is bound to one artifact and one purpose and expires; anything else is 403.
//! The format lives in `token_format.rs`, which the Worker compiles too.

use std::path::Path;
use std::time::Duration;

pub(crate) use crate::access::hex;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use scs_protocol::UploadGrant;
use thiserror::Error;

/// Token expiries are unsigned milliseconds on the shim's one clock.
pub use crate::clock::now_ms_u64 as now_ms;

/// Environment variable holding the signing key (any string of at least 16 bytes).
pub const SIGNING_KEY_ENV: &str = "SCS_SIGNING_KEY";
/// File in the data dir holding a generated key (64 hex digits) when the env var is absent.
pub const SIGNING_KEY_FILE: &str = "signing.key";
const MIN_KEY_LEN: usize = 16;

use super::token_format::{assemble, hex_decode, signing_input, verify_with};
pub use super::token_format::{Claims, Purpose, TokenError};

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{SIGNING_KEY_ENV} must be at least {MIN_KEY_LEN} bytes")]
    TooShort,
    #[error("signing key file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("signing key file {path}: {reason}")]
    BadFile { path: String, reason: &'static str },
    #[error("no system randomness for a signing key")]
    Random,
}

/// The shim's HMAC key. Several shims behind one broker must share it (set `SCS_SIGNING_KEY`).
#[derive(Clone)]
pub struct SigningKey {
    key: hmac::Key,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn from_bytes(bytes: &[u8]) -> SigningKey {
        SigningKey { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// `SCS_SIGNING_KEY` if set, else `{data_dir}/signing.key`, generated (mode 0600) on first start.
    pub fn load_or_generate(data_dir: &Path) -> Result<SigningKey, KeyError> {
        if let Ok(v) = std::env::var(SIGNING_KEY_ENV) {
            if v.len() < MIN_KEY_LEN {
                return Err(KeyError::TooShort);
            }
            return Ok(SigningKey::from_bytes(v.as_bytes()));
        }
        let path = data_dir.join(SIGNING_KEY_FILE);
        let file_err = |source| KeyError::File { path: path.display().to_string(), source };
        let bad_file = |reason| KeyError::BadFile { path: path.display().to_string(), reason };
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let bytes = hex_decode(s.trim()).ok_or_else(|| bad_file("not 64 hex digits"))?;
                if bytes.len() < MIN_KEY_LEN {
                    return Err(bad_file("key too short"));
                }
                Ok(SigningKey::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new().fill(&mut bytes).map_err(|_| KeyError::Random)?;
                write_private(&path, format!("{}\n", hex(&bytes)).as_bytes()).map_err(file_err)?;
                Ok(SigningKey::from_bytes(&bytes))
            }
            Err(e) => Err(file_err(e)),
        }
    }

    pub fn mint(&self, claims: &Claims) -> String {
        let body = signing_input(claims);
        let tag = hmac::sign(&self.key, body.as_bytes());
        assemble(body, tag.as_ref())
    }

    /// Checks signature, purpose, artifact binding and expiry, in that order.
    pub fn verify(&self, token: &str, purpose: Purpose, artifact: &str, now_ms: u64) -> Result<Claims, TokenError> {
        verify_with(token, purpose, artifact, now_ms, |body, sig| hmac::verify(&self.key, body, sig).is_ok())
    }
}

/// A fresh artifact id: `a-` + 20 random hex digits (the cloud mints ids; uploaders never choose them).
pub fn new_artifact_id() -> String {
    let mut bytes = [0u8; 10];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness is near-impossible on Linux; time + counter still keep ids unique per process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = now_ms() ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 44);
        bytes[..8].copy_from_slice(&n.to_le_bytes());
    }
    format!("a-{}", hex(&bytes))
}

/// Mints an upload grant for a new artifact of `command_id`. `upload_base` is the public URL of the
/// upload collection (`{public_url}/v1/uploads`).
pub fn mint_upload_grant(
    key: &SigningKey,
    upload_base: &str,
    command_id: &str,
    valid_for: Duration,
    max_bytes: u64,
) -> UploadGrant {
    let artifact = new_artifact_id();
    let expires = now_ms().saturating_add(valid_for.as_millis().min(u64::MAX as u128) as u64);
    let token = key.mint(&Claims {
        purpose: Purpose::Upload,
        artifact: artifact.clone(),
        command: command_id.to_string(),
        expires_ms: expires,
    });
    UploadGrant { url: upload_base.trim_end_matches('/').to_string(), token, artifact, expires, max_bytes }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(purpose: Purpose, expires_ms: u64) -> Claims {
        Claims { purpose, artifact: "a-1".into(), command: "cmd.1".into(), expires_ms }
    }

    #[test]
    fn roundtrip_and_refusals() {
        let key = SigningKey::from_bytes(b"0123456789abcdef0123");
        let t = key.mint(&claims(Purpose::Download, 2_000));
        assert_eq!(key.verify(&t, Purpose::Download, "a-1", 1_000).expect("valid").command, "cmd.1");
        assert_eq!(key.verify(&t, Purpose::Download, "a-1", 2_000), Err(TokenError::Expired { artifact: "a-1".into() }));
        assert!(matches!(key.verify(&t, Purpose::Upload, "a-1", 1_000), Err(TokenError::WrongPurpose { .. })));
        assert!(matches!(key.verify(&t, Purpose::Download, "a-2", 1_000), Err(TokenError::OtherArtifact { .. })));
        // Forged: extend the expiry without re-signing, or sign with another key.
        let forged = t.replace("~2000~", "~9999999~");
        assert_eq!(key.verify(&forged, Purpose::Download, "a-1", 1_000), Err(TokenError::BadSignature));
        let other = SigningKey::from_bytes(b"another key of enough length").mint(&claims(Purpose::Download, 2_000));
        assert_eq!(key.verify(&other, Purpose::Download, "a-1", 1_000), Err(TokenError::BadSignature));
        for junk in ["", "~", "v1~d~a-1", "abc~zz"] {
            assert!(key.verify(junk, Purpose::Download, "a-1", 1_000).is_err());
        }
    }

    #[test]
    fn key_file_is_generated_once() {
        let dir = std::env::temp_dir().join(format!("scs-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Only meaningful when the env var is not set in the test environment.
        if std::env::var(SIGNING_KEY_ENV).is_err() {
            let a = SigningKey::load_or_generate(&dir).expect("generate");
            let b = SigningKey::load_or_generate(&dir).expect("load");
            let c = claims(Purpose::Upload, u64::MAX);
            assert!(b.verify(&a.mint(&c), Purpose::Upload, "a-1", 0).is_ok());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

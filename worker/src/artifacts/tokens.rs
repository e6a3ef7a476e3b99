//! The artifact signing key on the Worker: HMAC-SHA256 from RustCrypto (ring does not build for wasm32
//! here) over the shim's token format ([`super::token_format`]), so a token minted by either cloud with
//! the same key verifies on both. The key is the secret `SCS_SIGNING_KEY`, the shim's variable of that name.

use hmac::{Hmac, Mac};
use scs_protocol::UploadGrant;
use sha2::Sha256;

use super::token_format::{assemble, signing_input, verify_with};
pub use super::token_format::{Claims, Purpose, TokenError};

/// Secret holding the key.
pub const SIGNING_KEY_SECRET: &str = "SCS_SIGNING_KEY";
const MIN_KEY_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{SIGNING_KEY_SECRET} is not set: artifact uploads and downloads are off")]
    Missing,
    #[error("{SIGNING_KEY_SECRET} must be at least {MIN_KEY_LEN} bytes")]
    TooShort,
}

#[derive(Clone)]
pub struct SigningKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// The key from the secret's text, used as bytes exactly as the shim uses its environment variable.
    pub fn from_secret(secret: Option<&str>) -> Result<SigningKey, KeyError> {
        let s = secret.filter(|s| !s.is_empty()).ok_or(KeyError::Missing)?;
        if s.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort);
        }
        Ok(SigningKey { key: s.as_bytes().to_vec() })
    }

    fn mac(&self) -> Hmac<Sha256> {
        #[allow(clippy::expect_used, reason = "HMAC takes keys of any length")]
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC key of any length")
    }

    pub fn mint(&self, claims: &Claims) -> String {
        let body = signing_input(claims);
        let mut m = self.mac();
        m.update(body.as_bytes());
        assemble(body, &m.finalize().into_bytes())
    }

    /// Checks signature (constant time), purpose, artifact binding and expiry.
    pub fn verify(&self, token: &str, purpose: Purpose, artifact: &str, now_ms: u64) -> Result<Claims, TokenError> {
        verify_with(token, purpose, artifact, now_ms, |body, sig| {
            let mut m = self.mac();
            m.update(body);
            m.verify_slice(sig).is_ok()
        })
    }

    /// An upload grant for the new artifact `artifact` of `command_id`. `upload_base` is the public URL of
    /// the upload collection (`{public_url}/v1/uploads`).
    pub fn upload_grant(
        &self,
        upload_base: &str,
        command_id: &str,
        artifact: String,
        now_ms: u64,
        valid_for_ms: u64,
        max_bytes: u64,
    ) -> UploadGrant {
        let expires = now_ms.saturating_add(valid_for_ms);
        let token = self.mint(&Claims {
            purpose: Purpose::Upload,
            artifact: artifact.clone(),
            command: command_id.to_string(),
            expires_ms: expires,
        });
        UploadGrant { url: upload_base.trim_end_matches('/').to_string(), token, artifact, expires, max_bytes }
    }

    /// A tokenized download URL for `artifact` of `command` and its expiry.
    pub fn download_url(&self, base_url: &str, artifact: &str, command: &str, now_ms: u64) -> (String, u64) {
        let expires_ms = now_ms.saturating_add(super::DOWNLOAD_TTL_MS);
        let token = self.mint(&Claims {
            purpose: Purpose::Download,
            artifact: artifact.to_string(),
            command: command.to_string(),
            expires_ms,
        });
        (format!("{}/v1/artifacts/{artifact}?token={token}", base_url.trim_end_matches('/')), expires_ms)
    }
}

/// An artifact id from 10 random bytes: `a-` + 20 hex digits, as the shim mints them.
pub fn artifact_id(random: &[u8; 10]) -> String {
    format!("a-{}", crate::auth::hex(random))
}

/// Upload grants of artifact-producing commands live until the command could still be running, plus
/// ten minutes, as the shim's.
pub fn grant_horizon_ms(expires_at: i64, timeout_secs: u32, now_ms: i64) -> u64 {
    u64::try_from((expires_at - now_ms).max(0)).unwrap_or(0) + u64::from(timeout_secs) * 1000 + 600_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_the_shims_format_and_refuse_forgeries() {
        let key = SigningKey::from_secret(Some("0123456789abcdef0123")).unwrap();
        let c = Claims { purpose: Purpose::Download, artifact: "a-1".into(), command: "cmd.1".into(), expires_ms: 2_000 };
        let t = key.mint(&c);
        // The value ring's HMAC-SHA256 gives for the same key and input (the shim's signer).
        let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123");
        let expected =
            format!("v1~d~a-1~cmd.1~2000~{}", crate::auth::hex(ring::hmac::sign(&ring_key, b"v1~d~a-1~cmd.1~2000").as_ref()));
        assert_eq!(t, expected);
        assert_eq!(key.verify(&t, Purpose::Download, "a-1", 1_000).unwrap(), c);
        assert_eq!(key.verify(&t, Purpose::Download, "a-1", 2_000), Err(TokenError::Expired { artifact: "a-1".into() }));
        assert!(matches!(key.verify(&t, Purpose::Upload, "a-1", 1_000), Err(TokenError::WrongPurpose { .. })));
        assert!(matches!(key.verify(&t, Purpose::Download, "a-2", 1_000), Err(TokenError::OtherArtifact { .. })));
        let forged = t.replace("~2000~", "~9999999~");
        assert_eq!(key.verify(&forged, Purpose::Download, "a-1", 1_000), Err(TokenError::BadSignature));
        let other = SigningKey::from_secret(Some("another key of enough length")).unwrap().mint(&c);
        assert_eq!(key.verify(&other, Purpose::Download, "a-1", 1_000), Err(TokenError::BadSignature));
        for junk in ["", "~", "v1~d~a-1", "abc~zz"] {
            assert!(key.verify(junk, Purpose::Download, "a-1", 1_000).is_err());
        }
        assert_eq!(SigningKey::from_secret(Some("short")).unwrap_err(), KeyError::TooShort);
        assert_eq!(SigningKey::from_secret(None).unwrap_err(), KeyError::Missing);
    }

    #[test]
    fn grants_and_urls() {
        let key = SigningKey::from_secret(Some("0123456789abcdef0123")).unwrap();
        let g = key.upload_grant("http://w/v1/uploads/", "cmd-1", artifact_id(&[0xab; 10]), 1_000, 5_000, 99);
        assert_eq!(
            (g.url.as_str(), g.artifact.as_str(), g.expires, g.max_bytes),
            ("http://w/v1/uploads", "a-abababababababababab", 6_000, 99)
        );
        assert_eq!(key.verify(&g.token, Purpose::Upload, &g.artifact, 5_999).unwrap().command, "cmd-1");
        let (url, exp) = key.download_url("http://w/", "a-1", "cmd-1", 0);
        assert!(url.starts_with("http://w/v1/artifacts/a-1?token=v1~d~a-1~cmd-1~"), "{url}");
        assert_eq!(exp, super::super::DOWNLOAD_TTL_MS);
        assert_eq!(grant_horizon_ms(10_000, 60, 4_000), 6_000 + 60_000 + 600_000);
        assert_eq!(grant_horizon_ms(0, 0, 4_000), 600_000);
    }
}

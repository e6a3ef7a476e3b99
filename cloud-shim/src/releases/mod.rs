//! Signed agent releases: the cloud side of `agent.update`.
//!
//! * `releases add` (`cli`) takes one signed update from `scripts/build-release` (the binary and its
//!   `.update.json` manifest), checks size, SHA-256 and the Ed25519 signature with the release public
//!   key, and only then stores the bytes in the object store (key `releases.{id}`) and a row in
//!   `releases` (`migrations/0009_releases.sql`).
//! * `GET /v1/releases` lists them; `POST /v1/gateways/{id}/releases/{version}/offer` creates the
//!   `agent.update` command for one gateway, with a download URL of `GET /v1/releases/{id}/download`
//!   tokenized by the artifact download tokens (`artifacts::tokens`, bound to the release and the
//!   command, expiring after the command can no longer run) and served with `Range` like artifacts.
//!
//! The cloud never signs anything here: the release key stays with whoever builds releases, and the
//! agent checks the same signature again before it downloads.

pub mod api;
pub mod cli;
pub mod pick;
pub mod rows;
pub mod store;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature;
use thiserror::Error;

/// Default location of the release public key in the data dir (32 raw bytes, base64: the format the
/// agent's `[update] release_key` file has, `release-key.pub` from `scripts/build-release --gen-test-key`).
pub const RELEASE_KEY_FILE: &str = "release-key.pub";

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("release key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("release file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("release manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("release {version} ({target}): {reason}")]
    Refused { version: String, target: String, reason: String },
    #[error("release {version} ({target}) already exists with other bytes (sha256 {existing})")]
    Conflict { version: String, target: String, existing: String },
    #[error("release {id}: object store: {source}")]
    Objects {
        id: String,
        #[source]
        source: crate::objects::ObjectError,
    },
    #[error("release store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("release store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("Worker: {0}")]
    Worker(#[from] crate::ingest::worker::WorkerError),
}

/// Reads a release public key file: 32 raw bytes, base64.
pub fn read_public_key(path: &Path) -> Result<[u8; 32], ReleaseError> {
    let key_err = |reason: String| ReleaseError::Key { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
    let compact: String = text.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| key_err(format!("not base64: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| key_err(format!("{} bytes, an Ed25519 public key has 32", bytes.len())))
}

/// Checks `signature_b64` over the message the agent checks ([`scs_protocol::command::agent_update_signed_message`]).
pub fn verify_signature(key: &[u8; 32], version: &str, size: u64, sha256: &str, signature_b64: &str) -> Result<(), String> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| format!("signature is not base64: {e}"))?;
    let msg = scs_protocol::command::agent_update_signed_message(version, size, sha256);
    signature::UnparsedPublicKey::new(&signature::ED25519, key)
        .verify(msg.as_bytes(), &sig)
        .map_err(|_| "the signature does not verify with the release key".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    #[test]
    fn signatures_are_checked_over_version_size_and_hash() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk: [u8; 32] = kp.public_key().as_ref().try_into().unwrap();
        let sha = "ab".repeat(32);
        let msg = scs_protocol::command::agent_update_signed_message("1.2.3", 10, &sha);
        let sig = base64::engine::general_purpose::STANDARD.encode(kp.sign(msg.as_bytes()));
        assert!(verify_signature(&pk, "1.2.3", 10, &sha, &sig).is_ok());
        assert!(verify_signature(&pk, "1.2.4", 10, &sha, &sig).is_err(), "another version label");
        assert!(verify_signature(&pk, "1.2.3", 11, &sha, &sig).is_err(), "another size");
        assert!(verify_signature(&pk, "1.2.3", 10, &"cd".repeat(32), &sig).is_err(), "another hash");
        assert!(verify_signature(&pk, "1.2.3", 10, &sha, "!!").is_err());
    }
}

//! Ed25519 for the protocol's COSE_Sign1 checks on wasm32. ring needs a C compiler targeting wasm32,
//! which the build machines do not have; ed25519-dalek is pure Rust and plugs into
//! `scs_protocol::cose::Verifier`, so the envelope decoding and checks stay the protocol crate's.

use ed25519_dalek::{Signature, VerifyingKey as DalekKey};
use scs_protocol::cose::{self, CoseError, Verified, Verifier, VerifyingKey, SIGNATURE_LEN};

/// Ed25519 verification by ed25519-dalek's `verify_strict`: RFC 8032 verification that refuses a
/// non-canonical `S` (as ring does) and, beyond ring, small-order keys, which no honest gateway has.
#[derive(Debug, Clone, Copy, Default)]
pub struct DalekVerifier;

impl Verifier for DalekVerifier {
    fn verify_ed25519(&self, key: &VerifyingKey, msg: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let Ok(key) = DalekKey::from_bytes(key.as_bytes()) else { return false };
        key.verify_strict(msg, &Signature::from_bytes(signature)).is_ok()
    }
}

/// [`cose::verify1_with`] with [`DalekVerifier`].
pub fn verify1<'a>(
    bytes: &'a [u8],
    external_aad: &[u8],
    key_for_kid: impl FnOnce(&[u8]) -> Option<VerifyingKey>,
) -> Result<Verified<'a>, CoseError> {
    cose::verify1_with(&DalekVerifier, bytes, external_aad, key_for_kid)
}

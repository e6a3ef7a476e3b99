//! Message authenticity: every MQTT payload travels inside a COSE_Sign1 envelope (RFC 9052, section 4.2).
//!
//! ```text
//! 18([ protected:   bstr .cbor {1: -8},      ; alg = EdDSA (Ed25519), the only algorithm accepted
//!      unprotected: {4: kid bstr},           ; key id: the gateway id (uplink) or "cloud" (downlink)
//!      payload:     bstr,                    ; the message CBOR for the topic, unchanged
//!      signature:   bstr .size 64 ])
//! ```
//!
//! The signature covers `Sig_structure = ["Signature1", protected, external_aad, payload]` with
//! `external_aad` = the UTF-8 MQTT topic, so a message signed for one gateway or one topic never
//! verifies on another. Decoding is strict (one profile, definite lengths, no trailing bytes) and bounded
//! by [`MAX_SIGNED_BYTES`]; nothing here panics on hostile input.
//!
//! The Ed25519 primitives sit behind [`Signer`] / [`Verifier`] so another backend (e.g. WebCrypto in a
//! wasm Worker) can be plugged in; the default `ring` feature provides [`SigningKey`], [`RingVerifier`],
//! [`sign1`] and [`verify1`].

use std::convert::Infallible;

use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use thiserror::Error;

use crate::limits::{MAX_ID_LEN, MAX_UPLINK_BYTES};

/// CBOR tag of a COSE_Sign1 message (RFC 9052, section 2).
pub const COSE_SIGN1_TAG: u64 = 18;
/// COSE header label `alg`.
pub const HEADER_ALG: i64 = 1;
/// COSE header label `kid`.
pub const HEADER_KID: i64 = 4;
/// COSE algorithm identifier for EdDSA (RFC 9053, section 2.2); Ed25519 is the only curve used.
pub const ALG_EDDSA: i64 = -8;
/// Key id of the cloud's command/receipt signing key.
pub const KID_CLOUD: &[u8] = b"cloud";
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
/// Ed25519 public key length.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Longest key id: kids are gateway ids or "cloud".
pub const MAX_KID_LEN: usize = MAX_ID_LEN;
/// Upper bound of the envelope around a payload: tag, array, protected header, kid of at most
/// [`MAX_KID_LEN`] bytes, the payload's byte-string header and the signature (149 bytes, rounded up).
pub const MAX_SIGN1_OVERHEAD: usize = 160;
/// Largest envelope accepted: the largest message (uplink) plus the envelope.
pub const MAX_SIGNED_BYTES: usize = MAX_UPLINK_BYTES + MAX_SIGN1_OVERHEAD;

const SIG_CONTEXT: &str = "Signature1";

/// Why an envelope was refused or a key could not be used. Carries the kid (lossy UTF-8, at most
/// [`MAX_KID_LEN`] bytes) where one was read, so the caller can log and count per gateway.
#[derive(Debug, Error)]
pub enum CoseError {
    #[error("COSE_Sign1 of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed COSE_Sign1: bad CBOR in {at}")]
    Cbor {
        at: &'static str,
        #[source]
        source: minicbor::decode::Error,
    },
    #[error("malformed COSE_Sign1: {reason}")]
    Malformed { reason: &'static str },
    #[error("unsupported COSE algorithm {alg} (only EdDSA, -8, is accepted)")]
    UnsupportedAlg { alg: i64 },
    #[error("no verification key for kid {kid:?}")]
    UnknownKey { kid: String },
    #[error("signature of kid {kid:?} does not verify")]
    BadSignature { kid: String },
    #[error("key id of {len} bytes is outside 1..={max}")]
    BadKid { len: usize, max: usize },
    #[error("public key must be {PUBLIC_KEY_LEN} bytes, got {len}")]
    BadPublicKey { len: usize },
    #[cfg(feature = "ring")]
    #[error("Ed25519 key rejected")]
    KeyRejected {
        #[source]
        source: ring::error::KeyRejected,
    },
    #[cfg(feature = "ring")]
    #[error("no randomness for key generation")]
    Rng {
        #[source]
        source: ring::error::Unspecified,
    },
}

impl CoseError {
    fn cbor(at: &'static str) -> impl FnOnce(minicbor::decode::Error) -> CoseError {
        move |source| CoseError::Cbor { at, source }
    }
}

fn kid_text(kid: &[u8]) -> String {
    String::from_utf8_lossy(kid).into_owned()
}

/// A raw Ed25519 public key (32 bytes, RFC 8032 encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey(pub [u8; PUBLIC_KEY_LEN]);

impl VerifyingKey {
    /// From a byte slice that must be exactly 32 bytes (e.g. a database BLOB or decoded base64).
    pub fn from_slice(bytes: &[u8]) -> Result<VerifyingKey, CoseError> {
        <[u8; PUBLIC_KEY_LEN]>::try_from(bytes).map(VerifyingKey).map_err(|_| CoseError::BadPublicKey { len: bytes.len() })
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Produces Ed25519 signatures (RFC 8032, pure Ed25519) over arbitrary bytes.
pub trait Signer {
    fn sign_ed25519(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN];
}

/// Checks Ed25519 signatures; `true` only for a valid signature of `msg` by `key`.
pub trait Verifier {
    fn verify_ed25519(&self, key: &VerifyingKey, msg: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool;
}

/// A verified message: the kid it was signed under and the payload bytes, borrowed from the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'a> {
    pub kid: &'a [u8],
    pub payload: &'a [u8],
}

/// The four fields of a decoded envelope, before the signature is checked.
#[derive(Debug, Clone, Copy)]
struct Parts<'a> {
    protected: &'a [u8],
    kid: &'a [u8],
    payload: &'a [u8],
    signature: [u8; SIGNATURE_LEN],
}

/// Encodes the protected header `{1: -8}`.
fn protected_header() -> Result<Vec<u8>, minicbor::encode::Error<Infallible>> {
    let mut e = Encoder::new(Vec::with_capacity(3));
    e.map(1)?.i64(HEADER_ALG)?.i64(ALG_EDDSA)?;
    Ok(e.into_writer())
}

/// `Sig_structure` for a COSE_Sign1 (RFC 9052, section 4.4): the bytes the signature covers.
fn sig_structure(protected: &[u8], external_aad: &[u8], payload: &[u8]) -> Result<Vec<u8>, minicbor::encode::Error<Infallible>> {
    let mut e = Encoder::new(Vec::with_capacity(32 + protected.len() + external_aad.len() + payload.len()));
    e.array(4)?.str(SIG_CONTEXT)?.bytes(protected)?.bytes(external_aad)?.bytes(payload)?;
    Ok(e.into_writer())
}

fn encode_sign1(
    signer: &(impl Signer + ?Sized),
    kid: &[u8],
    external_aad: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, minicbor::encode::Error<Infallible>> {
    let protected = protected_header()?;
    let signature = signer.sign_ed25519(&sig_structure(&protected, external_aad, payload)?);
    let mut e = Encoder::new(Vec::with_capacity(payload.len() + MAX_SIGN1_OVERHEAD));
    e.tag(Tag::new(COSE_SIGN1_TAG))?.array(4)?;
    e.bytes(&protected)?;
    e.map(1)?.i64(HEADER_KID)?.bytes(kid)?;
    e.bytes(payload)?;
    e.bytes(&signature)?;
    Ok(e.into_writer())
}

/// Wraps `payload` in a tagged COSE_Sign1 signed by `signer` under `kid`, bound to `external_aad`
/// (the MQTT topic). `kid` should be 1..=64 bytes; verifiers refuse anything else.
pub fn sign1_with(signer: &(impl Signer + ?Sized), kid: &[u8], external_aad: &[u8], payload: &[u8]) -> Vec<u8> {
    #[allow(clippy::expect_used, reason = "writing CBOR into a Vec<u8> cannot fail")]
    encode_sign1(signer, kid, external_aad, payload).expect("CBOR encoding into a Vec is infallible")
}

fn decode_parts(bytes: &[u8]) -> Result<Parts<'_>, CoseError> {
    if bytes.len() > MAX_SIGNED_BYTES {
        return Err(CoseError::TooLarge { size: bytes.len(), limit: MAX_SIGNED_BYTES });
    }
    let mut d = Decoder::new(bytes);
    let tag = d.tag().map_err(CoseError::cbor("tag"))?;
    if tag.as_u64() != COSE_SIGN1_TAG {
        return Err(CoseError::Malformed { reason: "not tagged as COSE_Sign1 (tag 18)" });
    }
    if d.array().map_err(CoseError::cbor("envelope"))? != Some(4) {
        return Err(CoseError::Malformed { reason: "envelope is not a definite array of 4" });
    }
    let protected = d.bytes().map_err(CoseError::cbor("protected header"))?;
    check_protected(protected)?;
    let kid = decode_unprotected(&mut d)?;
    if d.datatype().map_err(CoseError::cbor("payload"))? == Type::Null {
        return Err(CoseError::Malformed { reason: "detached payload is not supported" });
    }
    let payload = d.bytes().map_err(CoseError::cbor("payload"))?;
    let sig = d.bytes().map_err(CoseError::cbor("signature"))?;
    let signature =
        <[u8; SIGNATURE_LEN]>::try_from(sig).map_err(|_| CoseError::Malformed { reason: "signature is not 64 bytes" })?;
    if d.position() != bytes.len() {
        return Err(CoseError::Malformed { reason: "trailing bytes after the envelope" });
    }
    Ok(Parts { protected, kid, payload, signature })
}

/// The protected header must be exactly `{1: -8}`: no other header may claim integrity protection that
/// this profile does not interpret (e.g. `crit`).
fn check_protected(protected: &[u8]) -> Result<(), CoseError> {
    let mut d = Decoder::new(protected);
    if d.map().map_err(CoseError::cbor("protected header"))? != Some(1) {
        return Err(CoseError::Malformed { reason: "protected header is not a map of exactly {alg}" });
    }
    if d.i64().map_err(CoseError::cbor("protected header label"))? != HEADER_ALG {
        return Err(CoseError::Malformed { reason: "protected header carries a label other than alg" });
    }
    let alg = d.i64().map_err(CoseError::cbor("alg"))?;
    if alg != ALG_EDDSA {
        return Err(CoseError::UnsupportedAlg { alg });
    }
    if d.position() != protected.len() {
        return Err(CoseError::Malformed { reason: "trailing bytes in the protected header" });
    }
    Ok(())
}

/// The unprotected header must be exactly `{4: kid}`.
fn decode_unprotected<'a>(d: &mut Decoder<'a>) -> Result<&'a [u8], CoseError> {
    if d.map().map_err(CoseError::cbor("unprotected header"))? != Some(1) {
        return Err(CoseError::Malformed { reason: "unprotected header is not a map of exactly {kid}" });
    }
    if d.i64().map_err(CoseError::cbor("unprotected header label"))? != HEADER_KID {
        return Err(CoseError::Malformed { reason: "unprotected header carries a label other than kid" });
    }
    let kid = d.bytes().map_err(CoseError::cbor("kid"))?;
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(CoseError::BadKid { len: kid.len(), max: MAX_KID_LEN });
    }
    Ok(kid)
}

/// The key id of an envelope, without checking the signature: lets a caller choose a key (or refuse an
/// unknown sender early). The kid is unauthenticated until [`verify1`] succeeds.
pub fn peek_kid(bytes: &[u8]) -> Result<&[u8], CoseError> {
    decode_parts(bytes).map(|p| p.kid)
}

/// Decodes and verifies a COSE_Sign1 with `verifier`, for `external_aad` (the topic it arrived on).
/// `key_for_kid` maps the kid to the sender's key (`None`: unknown sender). Only a valid signature over
/// the exact protected header, aad and payload yields the payload.
pub fn verify1_with<'a>(
    verifier: &(impl Verifier + ?Sized),
    bytes: &'a [u8],
    external_aad: &[u8],
    key_for_kid: impl FnOnce(&[u8]) -> Option<VerifyingKey>,
) -> Result<Verified<'a>, CoseError> {
    let p = decode_parts(bytes)?;
    let key = key_for_kid(p.kid).ok_or_else(|| CoseError::UnknownKey { kid: kid_text(p.kid) })?;
    let tbs = match sig_structure(p.protected, external_aad, p.payload) {
        Ok(tbs) => tbs,
        Err(_) => return Err(CoseError::Malformed { reason: "Sig_structure could not be built" }),
    };
    if !verifier.verify_ed25519(&key, &tbs, &p.signature) {
        return Err(CoseError::BadSignature { kid: kid_text(p.kid) });
    }
    Ok(Verified { kid: p.kid, payload: p.payload })
}

#[cfg(feature = "ring")]
pub use ring_backend::{sign1, verify1, RingVerifier, SigningKey};

#[cfg(feature = "ring")]
mod ring_backend {
    use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

    use super::{CoseError, Signer, Verified, Verifier, VerifyingKey, PUBLIC_KEY_LEN, SIGNATURE_LEN};

    /// An Ed25519 private key (ring). Never printed: `Debug` shows only the public key.
    pub struct SigningKey(Ed25519KeyPair);

    impl SigningKey {
        /// From a PKCS#8 document (v2 as written by ring, or v1 with the seed only).
        pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, CoseError> {
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map(SigningKey).map_err(|source| CoseError::KeyRejected { source })
        }

        /// From the 32-byte RFC 8032 secret seed.
        pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, CoseError> {
            Ed25519KeyPair::from_seed_unchecked(seed).map(SigningKey).map_err(|source| CoseError::KeyRejected { source })
        }

        /// A fresh key pair from the system's randomness, with its PKCS#8 v2 document for storage.
        pub fn generate() -> Result<(SigningKey, Vec<u8>), CoseError> {
            let rng = ring::rand::SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|source| CoseError::Rng { source })?;
            let pkcs8 = doc.as_ref().to_vec();
            Ok((SigningKey::from_pkcs8(&pkcs8)?, pkcs8))
        }

        pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
            let mut out = [0u8; PUBLIC_KEY_LEN];
            for (o, b) in out.iter_mut().zip(self.0.public_key().as_ref()) {
                *o = *b;
            }
            out
        }

        pub fn verifying_key(&self) -> VerifyingKey {
            VerifyingKey(self.public_key())
        }
    }

    impl std::fmt::Debug for SigningKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SigningKey").field("public", &self.verifying_key()).finish_non_exhaustive()
        }
    }

    impl Signer for SigningKey {
        fn sign_ed25519(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
            // ring's Ed25519 signatures are always 64 bytes; copying through zip avoids a panic path.
            let mut out = [0u8; SIGNATURE_LEN];
            for (o, b) in out.iter_mut().zip(self.0.sign(msg).as_ref()) {
                *o = *b;
            }
            out
        }
    }

    /// Ed25519 verification by ring.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct RingVerifier;

    impl Verifier for RingVerifier {
        fn verify_ed25519(&self, key: &VerifyingKey, msg: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
            UnparsedPublicKey::new(&ED25519, key.as_bytes()).verify(msg, signature).is_ok()
        }
    }

    /// [`super::sign1_with`] with a ring key.
    pub fn sign1(key: &SigningKey, kid: &[u8], external_aad: &[u8], payload: &[u8]) -> Vec<u8> {
        super::sign1_with(key, kid, external_aad, payload)
    }

    /// [`super::verify1_with`] with ring.
    pub fn verify1<'a>(
        bytes: &'a [u8],
        external_aad: &[u8],
        key_for_kid: impl FnOnce(&[u8]) -> Option<VerifyingKey>,
    ) -> Result<Verified<'a>, CoseError> {
        super::verify1_with(&RingVerifier, bytes, external_aad, key_for_kid)
    }
}

#[cfg(test)]
#[path = "cose_tests.rs"]
mod tests;

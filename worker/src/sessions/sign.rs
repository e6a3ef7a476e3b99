//! The cloud command key in the Worker: commands and cancels are signed here, inside the gateway's
//! Durable Object, so a bridging shim publishes bytes it cannot alter and needs no key to do it.
//!
//! The secret `CLOUD_SIGNING_KEY` is the base64 (standard alphabet) of the same PKCS#8 v2 document the
//! shim keeps at `{data_dir}/keys/cloud-sign.pk8` (ring's format), so one key pair and one public key in
//! every gateway bundle serve both. ring needs a C compiler for wasm32, so Ed25519 comes from
//! ed25519-dalek behind the protocol crate's `cose::Signer`.

use ed25519_dalek::Signer as _;
use scs_protocol::cose::{sign1_with, Signer, KID_CLOUD, SIGNATURE_LEN};
use thiserror::Error;

/// DER prefix of an Ed25519 PKCS#8 v2 document as ring writes it (RFC 8410 / RFC 5958): version 1,
/// algorithm id-Ed25519, then the 32-byte seed as an OCTET STRING inside the privateKey OCTET STRING.
const PKCS8_V2_PREFIX: [u8; 16] =
    [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// What follows the seed: the public key, `[1] IMPLICIT` BIT STRING with no unused bits.
const PKCS8_V2_PUBLIC: [u8; 3] = [0x81, 0x21, 0x00];

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cloud signing key is not base64: {0}")]
    Base64(String),
    #[error("cloud signing key is not an Ed25519 PKCS#8 v2 document as ring writes it")]
    Format,
    #[error("cloud signing key's public half does not match its seed")]
    Mismatch,
}

pub struct CloudKey(ed25519_dalek::SigningKey);

impl CloudKey {
    /// From the PKCS#8 v2 bytes; the embedded public key must match the seed.
    pub fn from_pkcs8(doc: &[u8]) -> Result<CloudKey, KeyError> {
        let rest = doc.strip_prefix(&PKCS8_V2_PREFIX[..]).ok_or(KeyError::Format)?;
        let (seed, rest) = rest.split_at_checked(32).ok_or(KeyError::Format)?;
        let public = rest.strip_prefix(&PKCS8_V2_PUBLIC[..]).ok_or(KeyError::Format)?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| KeyError::Format)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if public != key.verifying_key().as_bytes() {
            return Err(KeyError::Mismatch);
        }
        Ok(CloudKey(key))
    }

    /// From the secret's text (base64 of the PKCS#8 document).
    pub fn from_secret(text: &str) -> Result<CloudKey, KeyError> {
        use base64::Engine as _;
        let doc = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| KeyError::Base64(e.to_string()))?;
        CloudKey::from_pkcs8(&doc)
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// A downlink payload signed for `topic` under the kid `cloud`.
    pub fn sign_downlink(&self, topic: &str, payload: &[u8]) -> Vec<u8> {
        sign1_with(self, KID_CLOUD, topic.as_bytes(), payload)
    }
}

impl Signer for CloudKey {
    fn sign_ed25519(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(msg).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_what_ring_verifies_with_a_ring_pkcs8_key() {
        let (ring_key, pkcs8) = scs_protocol::cose::SigningKey::generate().unwrap();
        let key = CloudKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(key.public_key(), ring_key.public_key());
        let topic = "scs/v1/gw-1/down/command";
        let signed = key.sign_downlink(topic, b"payload");
        let vk = ring_key.verifying_key();
        let v = scs_protocol::cose::verify1(&signed, topic.as_bytes(), |_| Some(vk)).unwrap();
        assert_eq!(v.payload, b"payload");
        assert_eq!(v.kid, KID_CLOUD);
        assert!(scs_protocol::cose::verify1(&signed, b"scs/v1/gw-2/down/command", |_| Some(vk)).is_err());
    }

    #[test]
    fn refuses_other_documents() {
        let (_, mut pkcs8) = scs_protocol::cose::SigningKey::generate().unwrap();
        assert!(matches!(CloudKey::from_pkcs8(&pkcs8[1..]), Err(KeyError::Format)));
        let last = pkcs8.len() - 1;
        pkcs8[last] ^= 1;
        assert!(matches!(CloudKey::from_pkcs8(&pkcs8), Err(KeyError::Mismatch)));
        assert!(matches!(CloudKey::from_secret("not base64!"), Err(KeyError::Base64(_))));
    }
}

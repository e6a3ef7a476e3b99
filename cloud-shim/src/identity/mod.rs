//! Gateway identity on the shim side: the `gateways` registry, the cloud's signing key and the shim's
//! MQTT secret, provisioning bundles, the broker's authentication decision, uplink verification and
//! downlink signing (COSE_Sign1 from `scs_protocol::cose`, see docs/protocol.md "Security").

pub mod bundle;
pub mod cli;
pub mod endpoints;
pub mod enroll;
pub mod keys;
pub mod mosquitto;
pub mod registry;

use std::path::PathBuf;
use std::sync::Arc;

use scs_protocol::cose::{self, CoseError, SigningKey, VerifyingKey};
use scs_protocol::topics::Topic;
use thiserror::Error;

pub use registry::Registry;

/// Largest signed uplink: the protocol's message limit plus the COSE_Sign1 envelope (headers, kid,
/// 64-byte signature).
pub const MAX_SIGNED_UPLINK: usize = scs_protocol::limits::MAX_UPLINK_BYTES + 256;

/// Key id of the cloud's signature on downlink messages.
pub const CLOUD_KID: &[u8] = b"cloud";

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("the system random number generator failed")]
    Random,
    #[error("{what}: {source}")]
    Key { what: &'static str, source: CoseError },
    #[error("sqlite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("bundle: {0}")]
    Toml(#[source] toml::ser::Error),
    #[error("certificate: {0}")]
    Cert(#[source] rcgen::Error),
}

/// Signs downlink messages (receipts, commands, cancels) with the cloud key, bound to their topic.
/// Clone is cheap; this is all the command sessions and ingest need of the identity module.
#[derive(Clone)]
pub struct Signer(Arc<SigningKey>);

impl Signer {
    pub fn new(key: SigningKey) -> Signer {
        Signer(Arc::new(key))
    }

    /// COSE_Sign1 of `payload` with external_aad = `topic`.
    pub fn sign(&self, topic: &str, payload: &[u8]) -> Vec<u8> {
        cose::sign1(&self.0, CLOUD_KID, topic.as_bytes(), payload)
    }
}

/// Why an uplink was refused before decoding. `reason` is the rejection code counted per gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Unverified {
    pub gateway: String,
    pub reason: &'static str,
    pub error: String,
}

/// Checks that `bytes` is a COSE_Sign1 by the active gateway named in `topic` (kid = that gateway,
/// external_aad = `topic`) and returns the signed payload. `Ok(None)`: the topic is not a gateway topic,
/// so the protocol decoder reports it as such.
pub fn verify_uplink<'a>(registry: &Registry, topic: &str, bytes: &'a [u8]) -> Result<Option<&'a [u8]>, Unverified> {
    let Ok(t) = Topic::parse(topic) else { return Ok(None) };
    let gateway = t.gateway;
    let refuse = |reason: &'static str, error: String| Unverified { gateway: gateway.clone(), reason, error };
    // Oversized input is refused before any key lookup or signature work.
    if bytes.len() > MAX_SIGNED_UPLINK {
        return Err(refuse("too_large", format!("uplink of {} bytes exceeds {MAX_SIGNED_UPLINK}", bytes.len())));
    }
    let entry = match registry.lookup(&gateway) {
        None => return Err(refuse("unknown_gateway", format!("gateway {gateway} is not provisioned"))),
        Some(e) if !e.active => return Err(refuse("revoked", format!("gateway {gateway} is revoked"))),
        Some(e) => e,
    };
    let verified =
        cose::verify1(bytes, topic.as_bytes(), |kid| (kid == gateway.as_bytes()).then_some(VerifyingKey(entry.public_key)))
            .map_err(|e| refuse("signature", format!("uplink of gateway {gateway} does not verify: {e}")))?;
    Ok(Some(verified.payload))
}

#[cfg(test)]
pub mod test_support {
    use rusqlite::Connection;
    use scs_protocol::cose::{sign1, SigningKey};
    use scs_protocol::topics::Topic;

    use super::Registry;
    use crate::ingest::{Item, Origin};

    /// A deterministic key per gateway id, for tests.
    pub fn key_for(gateway: &str) -> SigningKey {
        let digest = ring::digest::digest(&ring::digest::SHA256, gateway.as_bytes());
        let mut seed = [0u8; 32];
        seed.copy_from_slice(digest.as_ref());
        SigningKey::from_seed(&seed).unwrap()
    }

    /// Provisions `gateway` (if needed) in the database behind `conn` with [`key_for`].
    pub fn provision(conn: &mut Connection, gateway: &str) {
        if super::registry::is_gateway(conn, gateway).unwrap() {
            return;
        }
        super::registry::add(conn, gateway, &key_for(gateway).public_key(), "00", 1, usize::MAX).unwrap();
    }

    /// `payload` signed for `topic` by its gateway's test key, decoded (and verified) into an Item.
    pub fn signed_item(conn: &mut Connection, topic: &str, payload: &[u8], now: i64) -> Item {
        let gw = Topic::parse(topic).map(|t| t.gateway).unwrap_or_else(|_| "gw-1".to_owned());
        provision(conn, &gw);
        let registry = Registry::open(std::path::Path::new(conn.path().unwrap())).unwrap();
        let signed = sign1(&key_for(&gw), gw.as_bytes(), topic.as_bytes(), payload);
        Item::decode(topic.to_owned(), signed, Origin::Mqtt, now, &registry)
    }
}

//! Signed agent releases on Cloudflare: the shim's release catalogue (`cloud-shim/src/releases/`) with
//! the bytes in R2 (key `releases/{id}`) and the rows in D1 (`0009_releases.sql`), so a Worker
//! deployment, whose commands come from its Durable Objects, offers updates itself.
//!
//! * `POST /v1/releases` (scope `admin`): the update file as the raw body, its `.update.json` manifest
//!   (as `scripts/build-release` writes it) in the `Release-Manifest` header. Size, SHA-256 and the
//!   Ed25519 signature (release public key: secret `RELEASE_PUBLIC_KEY`) are checked before anything is
//!   stored. The same build again answers 200 with the stored row; other bytes for a stored version and
//!   target are 409.
//! * `GET /v1/releases`, `POST /v1/gateways/{id}/releases/{version}/offer` and
//!   `GET /v1/releases/{id}/download?token=` answer as the shim's do.
//!
//! Pure, host-tested: manifest and signature checks, `store` (SQL over [`crate::db::Sql`]) and the
//! shim's own `pick` (which build fits a gateway). The routes are wasm glue in `crate::glue::releases`.

#[path = "../../../cloud-shim/src/releases/pick.rs"]
pub mod pick;
#[path = "../../../cloud-shim/src/releases/rows.rs"]
pub mod rows;
pub mod store;

#[cfg(test)]
mod store_tests;

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::artifacts::names::valid_sha256_hex;
use crate::http::ApiError;
use crate::method::Method;

/// Header carrying the release's manifest (compact JSON).
pub const MANIFEST_HEADER: &str = "Release-Manifest";
/// Secret holding the release public key (32 bytes, base64, as `release-key.pub`).
pub const PUBLIC_KEY_SECRET: &str = "RELEASE_PUBLIC_KEY";
/// Command type the offers create.
pub const AGENT_UPDATE: &str = "agent.update";
/// Largest release body: the whole binary is held in memory once while it is checked and stored, and
/// Cloudflare refuses request bodies over 100 MB on most plans anyway.
pub const MAX_RELEASE_BYTES: u64 = 96 << 20;
/// Largest offer body (a few short fields).
pub const MAX_OFFER_BODY: usize = 16 * 1024;
/// How long a download URL outlives the command's timeout after its expiry, for a slow last attempt.
pub const URL_GRACE_MS: u64 = 600_000;

/// The release routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseRoute {
    /// `GET /v1/releases`
    List,
    /// `POST /v1/releases`
    Upload,
    /// `POST /v1/gateways/{id}/releases/{version}/offer`
    Offer(String, String),
    /// `GET /v1/releases/{id}/download?token=`
    Download(String),
}

impl ReleaseRoute {
    /// Downloads authenticate by their URL's token; the rest need an API token.
    pub fn needs_api_token(&self) -> bool {
        !matches!(self, ReleaseRoute::Download(_))
    }
}

/// The release route for a path, `Err(allowed methods)` for a known path with another method, `None`
/// for other paths.
pub fn route(method: Method, path: &str) -> Option<Result<ReleaseRoute, &'static str>> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get = matches!(method, Method::Get | Method::Head);
    Some(match segs.as_slice() {
        ["v1", "releases"] if get => Ok(ReleaseRoute::List),
        ["v1", "releases"] if method == Method::Post => Ok(ReleaseRoute::Upload),
        ["v1", "releases"] => Err("GET, POST"),
        ["v1", "releases", id, "download"] if get => Ok(ReleaseRoute::Download((*id).to_owned())),
        ["v1", "releases", _, "download"] => Err("GET"),
        ["v1", "gateways", g, "releases", v, "offer"] if method == Method::Post => {
            Ok(ReleaseRoute::Offer((*g).to_owned(), (*v).to_owned()))
        }
        ["v1", "gateways", _, "releases", _, "offer"] => Err("POST"),
        _ => return None,
    })
}

/// The manifest `scripts/build-release` writes beside each signed update (`.update.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Manifest {
    pub version: String,
    pub target: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
}

/// Reads a release public key: 32 raw bytes, base64 (whitespace ignored).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let compact: String = text.split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|e| format!("not base64: {e}"))?;
    let raw =
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{} bytes, an Ed25519 public key has 32", bytes.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// Checks `signature_b64` over the message the agent checks ([`scs_protocol::command::agent_update_signed_message`]).
pub fn verify_signature(key: &VerifyingKey, version: &str, size: u64, sha256: &str, signature_b64: &str) -> Result<(), String> {
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| format!("signature is not base64: {e}"))?;
    let sig = Signature::from_slice(&sig).map_err(|_| format!("signature of {} bytes, Ed25519 has 64", sig.len()))?;
    let msg = scs_protocol::command::agent_update_signed_message(version, size, sha256);
    key.verify_strict(msg.as_bytes(), &sig).map_err(|_| "the signature does not verify with the release key".to_owned())
}

fn refused(m: &Manifest, reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(422, format!("release {} ({}): {reason}", m.version, m.target))
        .with("version", m.version.as_str())
        .with("target", m.target.as_str())
}

/// Parses the manifest header and checks everything that needs no body: ids, hash form, size bounds,
/// the declared body length and the signature. Returns the manifest with its hash lower-cased.
pub fn check_manifest(
    header: Option<&str>,
    content_length: Option<u64>,
    key: &VerifyingKey,
    max_bytes: u64,
) -> Result<Manifest, ApiError> {
    let header = header.ok_or_else(|| {
        ApiError::bad_request(format!("missing {MANIFEST_HEADER} header (the .update.json manifest, compact JSON)"))
    })?;
    let mut m: Manifest = serde_json::from_str(header).map_err(|e| {
        ApiError::bad_request(format!("{MANIFEST_HEADER} is not a release manifest: {e}")).with("field", "manifest")
    })?;
    scs_protocol::ids::validate_id("release version", &m.version).map_err(|e| refused(&m, e))?;
    scs_protocol::ids::validate_id("target triple", &m.target).map_err(|e| refused(&m, e))?;
    if m.file.is_empty() || m.file.contains('/') || m.file.starts_with('.') || m.file.len() > 200 {
        return Err(refused(&m, format!("file {:?} is not a plain file name", m.file)));
    }
    m.sha256 = m.sha256.to_ascii_lowercase();
    if !valid_sha256_hex(&m.sha256) {
        return Err(refused(&m, format!("sha256 {:?} is not 64 hex digits", m.sha256)));
    }
    if m.size == 0 || m.size > max_bytes {
        return Err(ApiError::new(413, format!("release of {} bytes: this Worker takes 1..={max_bytes}", m.size))
            .with("maxBytes", max_bytes));
    }
    match content_length {
        Some(n) if n == m.size => {}
        Some(n) => return Err(refused(&m, format!("body of {n} bytes, the signed size is {}", m.size))),
        None => return Err(ApiError::new(411, "Content-Length is required")),
    }
    verify_signature(key, &m.version, m.size, &m.sha256, &m.signature).map_err(|e| refused(&m, e))?;
    m.signature = m.signature.trim().to_owned();
    Ok(m)
}

/// Checks the body against the signed manifest.
pub fn check_body(m: &Manifest, body: &[u8]) -> Result<(), ApiError> {
    if body.len() as u64 != m.size {
        return Err(refused(m, format!("body of {} bytes, the signed size is {}", body.len(), m.size)));
    }
    let actual = crate::auth::sha256_hex(body);
    if actual != m.sha256 {
        return Err(refused(m, format!("body has sha256 {actual}, the signed one is {}", m.sha256)));
    }
    Ok(())
}

/// `rel-` and 20 hex digits, as the shim mints them.
pub fn release_id(random: &[u8; 10]) -> String {
    format!("rel-{}", crate::auth::hex(random))
}

/// R2 key of a release's bytes.
pub fn object_key(id: &str) -> String {
    format!("releases/{id}")
}

/// Until when an offer's download URL is valid: the command's expiry plus its timeout and a grace.
pub fn url_expiry(expires_at: i64, timeout_secs: u32) -> u64 {
    u64::try_from(expires_at).unwrap_or(0).saturating_add(u64::from(timeout_secs) * 1000 + URL_GRACE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn manifest(k: &SigningKey, version: &str, body: &[u8]) -> String {
        let sha = crate::auth::sha256_hex(body);
        let msg = scs_protocol::command::agent_update_signed_message(version, body.len() as u64, &sha);
        let sig = base64::engine::general_purpose::STANDARD.encode(k.sign(msg.as_bytes()).to_bytes());
        serde_json::json!({"version": version, "target": "armv7-unknown-linux-gnueabihf", "file": "scs-agent.update",
            "size": body.len(), "sha256": sha.to_uppercase(), "signature": sig})
        .to_string()
    }

    #[test]
    fn routes() {
        assert_eq!(route(Method::Get, "/v1/releases"), Some(Ok(ReleaseRoute::List)));
        assert_eq!(route(Method::Post, "/v1/releases/"), Some(Ok(ReleaseRoute::Upload)));
        assert_eq!(route(Method::Delete, "/v1/releases"), Some(Err("GET, POST")));
        assert_eq!(route(Method::Get, "/v1/releases/rel-1/download"), Some(Ok(ReleaseRoute::Download("rel-1".into()))));
        assert_eq!(
            route(Method::Post, "/v1/gateways/gw-1/releases/1.2.0/offer"),
            Some(Ok(ReleaseRoute::Offer("gw-1".into(), "1.2.0".into())))
        );
        assert_eq!(route(Method::Get, "/v1/gateways/gw-1/releases/1.2.0/offer"), Some(Err("POST")));
        assert_eq!(route(Method::Get, "/v1/sensors"), None);
        assert!(!ReleaseRoute::Download("r".into()).needs_api_token() && ReleaseRoute::Upload.needs_api_token());
    }

    #[test]
    fn manifests_are_checked_before_the_body_and_the_body_against_them() {
        let k = key(7);
        let pk = parse_public_key(&base64::engine::general_purpose::STANDARD.encode(k.verifying_key().to_bytes())).unwrap();
        let body = b"agent binary".as_slice();
        let good = manifest(&k, "1.2.3", body);
        let m = check_manifest(Some(&good), Some(body.len() as u64), &pk, 1 << 20).unwrap();
        assert_eq!(m.sha256, crate::auth::sha256_hex(body), "hash lower-cased");
        check_body(&m, body).unwrap();
        assert_eq!(check_body(&m, b"agent binarY").unwrap_err().status, 422);
        assert_eq!(check_body(&m, b"agent").unwrap_err().status, 422);

        let forged = manifest(&key(8), "1.2.3", body);
        let e = check_manifest(Some(&forged), Some(body.len() as u64), &pk, 1 << 20).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.body()["error"].as_str().unwrap().contains("does not verify"), "{}", e.body());
        assert_eq!(check_manifest(None, Some(1), &pk, 1 << 20).unwrap_err().status, 400);
        assert_eq!(check_manifest(Some("{"), Some(1), &pk, 1 << 20).unwrap_err().status, 400);
        assert_eq!(check_manifest(Some(&good), None, &pk, 1 << 20).unwrap_err().status, 411);
        assert_eq!(check_manifest(Some(&good), Some(3), &pk, 1 << 20).unwrap_err().status, 422);
        assert_eq!(check_manifest(Some(&good), Some(body.len() as u64), &pk, 4).unwrap_err().status, 413);
        let bad_version = manifest(&k, "1 2", body);
        assert_eq!(check_manifest(Some(&bad_version), Some(body.len() as u64), &pk, 1 << 20).unwrap_err().status, 422);
        assert!(parse_public_key("AAAA").is_err());
    }

    #[test]
    fn ids_keys_and_url_lifetimes() {
        assert_eq!(release_id(&[0xab; 10]), format!("rel-{}", "ab".repeat(10)));
        assert_eq!(object_key("rel-1"), "releases/rel-1");
        assert_eq!(url_expiry(1_000, 60), 1_000 + 60_000 + URL_GRACE_MS);
        assert_eq!(url_expiry(-5, 0), URL_GRACE_MS);
    }
}

//! First-boot enrollment: site enrollment tokens (`scs-cloud-shim enroll-tokens add|revoke|list`, table
//! `enrollment_tokens`, migration 0008) and the enrollment itself, which `POST /v1/enroll` runs.
//!
//! A flashed gateway carries a site token instead of a per-gateway bundle. It generates its Ed25519 key
//! pair itself and sends only the public key, with a signature by that key over the request (proof that
//! it holds the private key). The cloud registers the gateway as `gateways add` does, with the device's
//! key, and answers with the rest of the identity: MQTT password, cloud public key, broker URL and CA,
//! and, when the shim has an MQTT CA, a client certificate over the device's own key. Expiry is checked
//! with the cloud's clock only: gateways often boot at 1970.
//!
//! A token is single-use unless created with `--max-uses N`, expiring, scoped to one site and
//! revocable; only its SHA-256 is stored. The same gateway (same id, same key, same token) may repeat
//! its enrollment within [`REPEAT_WINDOW_MS`] while the token is unexpired: its answer may have been
//! lost on the way, and the repetition only rotates the MQTT password of the key that enrolled.

use std::path::Path;

use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use scs_protocol::cose::{Verifier as _, VerifyingKey};
use serde::Serialize;
use thiserror::Error;

use super::bundle::Bundle;
use super::endpoints::Endpoints;
use super::keys::{cloud_signing_key, new_password, password_sha256, random_bytes};
use super::mosquitto::MqttCa;
use super::registry::{self, AddError};
use super::IdentityError;
use crate::access::{hex, sha256_hex};

/// Prefix of every enrollment token, so a leaked one is recognisable (and never taken for an API token).
pub const TOKEN_PREFIX: &str = "scs_enroll_";
/// Longest lifetime a token may be given.
pub const MAX_TTL_MS: i64 = 90 * 24 * 3600 * 1000;
/// How long after its enrollment a gateway may repeat it (its answer was lost). The signed request is
/// the same every time, so a captured one could rotate the gateway's password: only within this window.
pub const REPEAT_WINDOW_MS: i64 = 3600 * 1000;
/// Domain separation of the proof-of-possession signature.
pub const POP_CONTEXT: &[u8] = b"scs-enroll-v1";

/// Why an enrollment was refused. The HTTP layer maps each to a status.
#[derive(Debug, Error)]
pub enum EnrollError {
    #[error("unknown enrollment token")]
    UnknownToken,
    #[error("enrollment token {id} expired")]
    Expired { id: String },
    #[error("enrollment token {id} is revoked")]
    Revoked { id: String },
    #[error("enrollment token {id} is used up ({max_uses} enrollment(s))")]
    UsedUp { id: String, max_uses: i64 },
    #[error("enrollment token {id} is for site {token_site:?}, not {asked:?}")]
    WrongSite { id: String, token_site: String, asked: String },
    #[error("gateway {0} is already enrolled and active (revoke it first to enroll it again)")]
    Active(String),
    #[error("gateway {gateway}: the proof-of-possession signature does not verify for the public key sent")]
    BadProof { gateway: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("gateway {gateway}: {source}")]
    Add { gateway: String, source: AddError },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What a gateway sends (JSON: camelCase, byte strings in standard base64; CBOR: a map with the same
/// text keys, byte strings as bstr).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollRequest {
    pub gateway_id: String,
    pub public_key: [u8; 32],
    /// Ed25519 by `public_key` over [`pop_message`].
    pub signature: [u8; 64],
    /// The site the gateway believes it belongs to; must match the token's when given.
    pub site: Option<String>,
}

/// The bytes the proof-of-possession signature covers: context, gateway id and public key, each
/// NUL-separated, so the signature cannot be replayed for another id.
pub fn pop_message(gateway_id: &str, public_key: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(POP_CONTEXT.len() + gateway_id.len() + 34);
    m.extend_from_slice(POP_CONTEXT);
    m.push(0);
    m.extend_from_slice(gateway_id.as_bytes());
    m.push(0);
    m.extend_from_slice(public_key);
    m
}

fn bad(msg: impl Into<String>) -> EnrollError {
    EnrollError::BadRequest(msg.into())
}

fn fixed<const N: usize>(field: &str, bytes: &[u8]) -> Result<[u8; N], EnrollError> {
    <[u8; N]>::try_from(bytes).map_err(|_| bad(format!("{field}: {} bytes, expected {N}", bytes.len())))
}

impl EnrollRequest {
    pub fn from_json(body: &[u8]) -> Result<EnrollRequest, EnrollError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Json {
            gateway_id: String,
            public_key: String,
            signature: String,
            site: Option<String>,
        }
        let j: Json = serde_json::from_slice(body).map_err(|e| bad(format!("enrollment request: {e}")))?;
        let b64 = |field: &str, v: &str| {
            base64::engine::general_purpose::STANDARD.decode(v.trim()).map_err(|e| bad(format!("{field}: not base64: {e}")))
        };
        Ok(EnrollRequest {
            public_key: fixed("publicKey", &b64("publicKey", &j.public_key)?)?,
            signature: fixed("signature", &b64("signature", &j.signature)?)?,
            gateway_id: j.gateway_id,
            site: j.site,
        })
    }

    pub fn from_cbor(body: &[u8]) -> Result<EnrollRequest, EnrollError> {
        let err = |e: minicbor::decode::Error| bad(format!("enrollment request (CBOR): {e}"));
        let mut d = minicbor::Decoder::new(body);
        let n = d.map().map_err(err)?.ok_or_else(|| bad("enrollment request (CBOR): indefinite map"))?;
        let (mut id, mut key, mut sig, mut site) = (None, None, None, None);
        for _ in 0..n {
            match d.str().map_err(err)? {
                "gatewayId" => id = Some(d.str().map_err(err)?.to_owned()),
                "publicKey" => key = Some(fixed::<32>("publicKey", d.bytes().map_err(err)?)?),
                "signature" => sig = Some(fixed::<64>("signature", d.bytes().map_err(err)?)?),
                "site" => site = Some(d.str().map_err(err)?.to_owned()),
                other => return Err(bad(format!("enrollment request: unknown field {other:?}"))),
            }
        }
        if d.position() != body.len() {
            return Err(bad("enrollment request (CBOR): trailing bytes"));
        }
        Ok(EnrollRequest {
            gateway_id: id.ok_or_else(|| bad("enrollment request: gatewayId missing"))?,
            public_key: key.ok_or_else(|| bad("enrollment request: publicKey missing"))?,
            signature: sig.ok_or_else(|| bad("enrollment request: signature missing"))?,
            site,
        })
    }

    /// Checks the id's form and the proof of possession.
    pub fn verify(&self) -> Result<(), EnrollError> {
        scs_protocol::ids::validate_id("gateway id", &self.gateway_id).map_err(|e| bad(e.to_string()))?;
        let ok = scs_protocol::cose::RingVerifier.verify_ed25519(
            &VerifyingKey(self.public_key),
            &pop_message(&self.gateway_id, &self.public_key),
            &self.signature,
        );
        if !ok {
            return Err(EnrollError::BadProof { gateway: self.gateway_id.clone() });
        }
        Ok(())
    }
}

/// A token as stored, for checks and listing (never its hash).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenRow {
    pub id: String,
    pub site: String,
    pub max_uses: i64,
    pub uses: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl TokenRow {
    /// Whether this token may enroll one more gateway at `now` (cloud clock).
    pub fn usable(&self, now: i64) -> Result<(), EnrollError> {
        if self.revoked_ms.is_some() {
            return Err(EnrollError::Revoked { id: self.id.clone() });
        }
        if now >= self.expires_ms {
            return Err(EnrollError::Expired { id: self.id.clone() });
        }
        if self.uses >= self.max_uses {
            return Err(EnrollError::UsedUp { id: self.id.clone(), max_uses: self.max_uses });
        }
        Ok(())
    }
}

const TOKEN_COLUMNS: &str = "id, site, max_uses, uses, created_ms, expires_ms, revoked_ms";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        site: r.get(1)?,
        max_uses: r.get(2)?,
        uses: r.get(3)?,
        created_ms: r.get(4)?,
        expires_ms: r.get(5)?,
        revoked_ms: r.get(6)?,
    })
}

/// The token whose SHA-256 is `hash` (looked up by hash, never compared byte by byte).
pub fn lookup(conn: &Connection, hash: &str) -> rusqlite::Result<Option<TokenRow>> {
    conn.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE sha256 = ?1"))?
        .query_row([hash], token_row)
        .optional()
}

/// Creates a token for `site`; returns `(id, token)`, the only time the token exists in clear.
pub fn add_token(conn: &Connection, site: &str, ttl_ms: i64, max_uses: i64, now: i64) -> Result<(String, String), EnrollError> {
    scs_protocol::ids::validate_id("site", site).map_err(|e| bad(e.to_string()))?;
    if !(1..=MAX_TTL_MS).contains(&ttl_ms) {
        return Err(bad(format!("ttl must be between 1 ms and {} days", MAX_TTL_MS / 86_400_000)));
    }
    if max_uses < 1 {
        return Err(bad("max-uses must be at least 1"));
    }
    let id = format!("et-{}", hex(&random_bytes(6)?));
    let token = format!("{TOKEN_PREFIX}{}", hex(&random_bytes(32)?));
    conn.execute(
        "INSERT INTO enrollment_tokens (id, sha256, site, max_uses, uses, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
        params![id, sha256_hex(token.as_bytes()), site, max_uses, now, now.saturating_add(ttl_ms)],
    )?;
    Ok((id, token))
}

/// Revokes token `id`; `false` if there is no such unrevoked token.
pub fn revoke_token(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute("UPDATE enrollment_tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![id, now])? == 1)
}

pub fn list_tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenRow>> {
    let mut st = conn.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_ms, id"))?;
    let rows = st.query_map([], token_row)?;
    rows.collect()
}

/// One row of `enrollments`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentRow {
    pub gateway_id: String,
    pub token_id: String,
    pub site: String,
    pub enrolled_ms: i64,
}

pub fn list_enrollments(conn: &Connection) -> rusqlite::Result<Vec<EnrollmentRow>> {
    let mut st =
        conn.prepare("SELECT gateway_id, token_id, site, enrolled_ms FROM enrollments ORDER BY enrolled_ms, gateway_id")?;
    let rows = st.query_map([], |r| {
        Ok(EnrollmentRow { gateway_id: r.get(0)?, token_id: r.get(1)?, site: r.get(2)?, enrolled_ms: r.get(3)? })
    })?;
    rows.collect()
}

/// Registers the gateway of `req` with the token whose hash is `token_hash`, in one immediate transaction
/// (token checked and counted, gateway row written, enrollment recorded), and returns its identity as a
/// bundle without `signing_key`: the gateway adds its own key. The request must be verified already.
pub fn enroll(
    conn: &mut Connection,
    data_dir: &Path,
    endpoints: &Endpoints,
    token_hash: &str,
    req: &EnrollRequest,
    now: i64,
) -> Result<(TokenRow, Bundle), EnrollError> {
    let gw = req.gateway_id.as_str();
    // Key material is prepared outside the write lock; nothing is stored if the transaction refuses.
    let cloud = cloud_signing_key(data_dir)?;
    let password = new_password()?;
    let ca = MqttCa::load(data_dir)?;
    let client_cert_pem = match &ca {
        Some(ca) => Some(ca.issue_client_for_key(gw, &req.public_key)?),
        None => None,
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let token = lookup(&tx, token_hash)?.ok_or(EnrollError::UnknownToken)?;
    if let Some(asked) = &req.site {
        if asked != &token.site {
            return Err(EnrollError::WrongSite { id: token.id.clone(), token_site: token.site.clone(), asked: asked.clone() });
        }
    }
    // The same device repeating an enrollment whose answer it did not receive: same token, same key.
    let repeat: bool = tx
        .query_row(
            "SELECT 1 FROM enrollments e JOIN gateways g ON g.id = e.gateway_id
             WHERE e.gateway_id = ?1 AND e.token_id = ?2 AND e.public_key = ?3 AND g.status = 'active'
               AND g.public_key = ?3 AND e.enrolled_ms > ?4",
            params![gw, token.id, req.public_key.as_slice(), now.saturating_sub(REPEAT_WINDOW_MS)],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if repeat {
        if token.revoked_ms.is_some() {
            return Err(EnrollError::Revoked { id: token.id.clone() });
        }
        if now >= token.expires_ms {
            return Err(EnrollError::Expired { id: token.id.clone() });
        }
        tx.execute("UPDATE gateways SET mqtt_password_sha256 = ?2 WHERE id = ?1", params![gw, password_sha256(&password)])?;
    } else {
        token.usable(now)?;
        registry::add_in(&tx, gw, &req.public_key, &password_sha256(&password), now, endpoints.max_gateways).map_err(
            |source| match source {
                AddError::Exists(id) => EnrollError::Active(id),
                source => EnrollError::Add { gateway: gw.to_owned(), source },
            },
        )?;
        tx.execute("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = ?1", [&token.id])?;
        tx.execute(
            "INSERT INTO enrollments (gateway_id, token_id, site, public_key, enrolled_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![gw, token.id, token.site, req.public_key.as_slice(), now],
        )?;
    }
    tx.commit()?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = Bundle {
        gateway_id: gw.to_owned(),
        broker_url: endpoints.broker_url.clone(),
        api_url: endpoints.api_url.clone(),
        mqtt_username: gw.to_owned(),
        mqtt_password: password,
        signing_key: None,
        cloud_public_key: b64.encode(cloud.public_key()),
        broker_ca_pem: ca.as_ref().map(|c| c.cert_pem.clone()),
        client_cert_pem,
        client_key_pem: None,
    };
    Ok((token, bundle))
}

/// Parses `24h`, `30m`, `7d`, `90s` or `500ms` into milliseconds.
pub fn parse_ttl(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// The `enroll.toml` a gateway image carries (read by `scs-agent run` on first boot).
#[derive(Debug, Serialize)]
pub struct EnrollFile {
    pub api_url: String,
    pub token: String,
    pub site: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::TestDir;
    use crate::store::Store;
    use scs_protocol::cose::{Signer as _, SigningKey};

    fn request(key: &SigningKey, gw: &str) -> EnrollRequest {
        let pk = key.public_key();
        EnrollRequest { gateway_id: gw.into(), public_key: pk, signature: key.sign_ed25519(&pop_message(gw, &pk)), site: None }
    }

    fn endpoints() -> Endpoints {
        Endpoints { broker_url: "mqtt://127.0.0.1:1".into(), api_url: "http://127.0.0.1:2".into(), max_gateways: 10 }
    }

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("24h"), Some(86_400_000));
        assert_eq!(parse_ttl("30m"), Some(1_800_000));
        assert_eq!(parse_ttl("7d"), Some(604_800_000));
        assert_eq!(parse_ttl("500ms"), Some(500));
        assert_eq!(parse_ttl("90s"), Some(90_000));
        for bad in ["", "h", "24", "24y", "-1h", "1.5h"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn requests_in_json_and_cbor_and_the_proof() {
        let (key, _) = SigningKey::generate().unwrap();
        let req = request(&key, "gw-7");
        let b64 = base64::engine::general_purpose::STANDARD;
        let json = serde_json::json!({"gatewayId": "gw-7", "publicKey": b64.encode(req.public_key), "signature": b64.encode(req.signature)});
        assert_eq!(EnrollRequest::from_json(json.to_string().as_bytes()).unwrap(), req);
        let mut cbor = Vec::new();
        let mut e = minicbor::Encoder::new(&mut cbor);
        e.map(3).unwrap().str("gatewayId").unwrap().str("gw-7").unwrap();
        e.str("publicKey").unwrap().bytes(&req.public_key).unwrap();
        e.str("signature").unwrap().bytes(&req.signature).unwrap();
        assert_eq!(EnrollRequest::from_cbor(&cbor).unwrap(), req);
        req.verify().unwrap();
        // The signature binds the id: the same proof for another id is refused.
        let mut other = req.clone();
        other.gateway_id = "gw-8".into();
        assert!(matches!(other.verify(), Err(EnrollError::BadProof { .. })));
        assert!(matches!(EnrollRequest::from_json(b"{\"gatewayId\":\"x\"}"), Err(EnrollError::BadRequest(_))));
        assert!(matches!(EnrollRequest::from_cbor(&cbor[..cbor.len() - 1]), Err(EnrollError::BadRequest(_))));
    }

    #[test]
    fn single_use_expiry_revocation_site_and_repeat() {
        let dir = TestDir::new("enroll");
        let store = Store::open(dir.path()).unwrap();
        let mut c = store.connect().unwrap();
        let (id, token) = add_token(&c, "site-a", 1000, 1, 100).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        let hash = sha256_hex(token.as_bytes());
        let (k1, _) = SigningKey::generate().unwrap();
        let r1 = request(&k1, "gw-1");
        let mut wrong_site = r1.clone();
        wrong_site.site = Some("site-b".into());
        assert!(matches!(enroll(&mut c, dir.path(), &endpoints(), &hash, &wrong_site, 200), Err(EnrollError::WrongSite { .. })));
        let (row, bundle) = enroll(&mut c, dir.path(), &endpoints(), &hash, &r1, 200).unwrap();
        assert_eq!((row.id.as_str(), bundle.gateway_id.as_str(), bundle.signing_key.as_deref()), (id.as_str(), "gw-1", None));
        let stored: Vec<u8> = c.query_row("SELECT public_key FROM gateways WHERE id = 'gw-1'", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, k1.public_key());
        // The same device again (lost answer): new password, no second use counted.
        let (_, again) = enroll(&mut c, dir.path(), &endpoints(), &hash, &r1, 300).unwrap();
        assert_ne!(again.mqtt_password, bundle.mqtt_password);
        // Another device with the used token: refused.
        let (k2, _) = SigningKey::generate().unwrap();
        assert!(matches!(
            enroll(&mut c, dir.path(), &endpoints(), &hash, &request(&k2, "gw-2"), 300),
            Err(EnrollError::UsedUp { .. })
        ));
        // Another key for the enrolled id with a fresh token: refused while gw-1 is active.
        let (t2_id, t2) = add_token(&c, "site-a", 1000, 5, 100).unwrap();
        let h2 = sha256_hex(t2.as_bytes());
        assert!(matches!(enroll(&mut c, dir.path(), &endpoints(), &h2, &request(&k2, "gw-1"), 300), Err(EnrollError::Active(_))));
        assert!(matches!(
            enroll(&mut c, dir.path(), &endpoints(), &h2, &request(&k2, "gw-2"), 1100),
            Err(EnrollError::Expired { .. })
        ));
        assert!(matches!(enroll(&mut c, dir.path(), &endpoints(), &hash, &r1, 1100), Err(EnrollError::Expired { .. })));
        // A repeat after the window counts as a new enrollment: the token is used up.
        let (_, t5) = add_token(&c, "site-a", 2 * REPEAT_WINDOW_MS, 1, 100).unwrap();
        let (k5, _) = SigningKey::generate().unwrap();
        let h5 = sha256_hex(t5.as_bytes());
        enroll(&mut c, dir.path(), &endpoints(), &h5, &request(&k5, "gw-5"), 200).unwrap();
        assert!(matches!(
            enroll(&mut c, dir.path(), &endpoints(), &h5, &request(&k5, "gw-5"), 300 + REPEAT_WINDOW_MS),
            Err(EnrollError::UsedUp { .. })
        ));
        assert!(revoke_token(&c, &t2_id, 400).unwrap());
        assert!(!revoke_token(&c, &t2_id, 400).unwrap());
        assert!(matches!(
            enroll(&mut c, dir.path(), &endpoints(), &h2, &request(&k2, "gw-2"), 500),
            Err(EnrollError::Revoked { .. })
        ));
        assert!(matches!(
            enroll(&mut c, dir.path(), &endpoints(), "00", &request(&k2, "gw-2"), 500),
            Err(EnrollError::UnknownToken)
        ));
        let tokens = list_tokens(&c).unwrap();
        let uses = |id: &str| tokens.iter().find(|t| t.id == id).unwrap().uses;
        assert_eq!((uses(&id), uses(&t2_id)), (1, 0));
        let e = list_enrollments(&c).unwrap();
        assert_eq!(
            (e.len(), e[0].gateway_id.as_str(), e[0].token_id.as_str(), e[0].site.as_str()),
            (2, "gw-1", id.as_str(), "site-a")
        );
        assert!(matches!(add_token(&c, "site-a", 0, 1, 0), Err(EnrollError::BadRequest(_))));
        assert!(matches!(add_token(&c, "bad site", 10, 1, 0), Err(EnrollError::BadRequest(_))));
    }
}

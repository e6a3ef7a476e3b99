//! `POST /v1/ingest` and its Queue consumer, the pure parts: checking each message (COSE signature by
//! the gateway's key from D1, then the protocol's decoder and validator), the Queue message format
//! ([`envelope`]), and what one consumer batch writes to D1 ([`plan`]).
//!
//! When a message is answered `stored`: only once the consumer's D1 transaction that holds it has
//! committed (ingest polls `ingest_receipts` for its keys). Queue-acknowledged is not enough, because a
//! local workerd keeps its Queue in memory; see docs/protocol.md ("The Worker's ingest").

pub mod envelope;
pub mod plan;

use scs_protocol::cose::VerifyingKey;
use scs_protocol::limits::MAX_UPLINK_BYTES;
use scs_protocol::rejection::Rejection;
use scs_protocol::topics::Topic;
use scs_protocol::{decode_uplink, Uplink};

/// Signed uplinks above this are refused before any key lookup (the shim's bound).
pub const MAX_SIGNED_UPLINK: usize = MAX_UPLINK_BYTES + 256;

/// What D1's `gateways` table says about a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Unknown,
    Revoked,
    Active(VerifyingKey),
}

/// One message after checking.
#[derive(Debug, Clone)]
pub enum Checked {
    /// Signed by its gateway and valid: `inner` is the message CBOR inside the envelope.
    Valid {
        topic: String,
        gateway: String,
        inner: Vec<u8>,
        msg: Box<Uplink>,
    },
    Rejected {
        topic: String,
        rejection: Rejection,
    },
}

impl Checked {
    /// `(boot, seq)` the answer names, if any.
    pub fn boot_seq(&self) -> Option<(u64, u64)> {
        match self {
            Checked::Valid { msg, .. } => msg.boot_seq(),
            Checked::Rejected { rejection, .. } => rejection.receipt,
        }
    }

    pub fn topic(&self) -> &str {
        match self {
            Checked::Valid { topic, .. } | Checked::Rejected { topic, .. } => topic,
        }
    }
}

/// The gateway ids named by the topics of a request, each once, for the key lookup.
pub fn gateways_named<'a>(topics: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = topics.filter_map(|t| Topic::parse(t).ok().map(|t| t.gateway)).collect();
    out.sort();
    out.dedup();
    out
}

/// Checks one message as the shim's ingest does: a COSE_Sign1 by the active gateway named in the topic,
/// bound to the topic; then the protocol decoder; a seq beyond SQLite's integers is refused with a
/// receipt. A message that does not verify is refused without a receipt (a forger must not make the
/// real gateway drop a seq).
pub fn check(topic: String, payload: &[u8], keys: &dyn Fn(&str) -> KeyState) -> Checked {
    let refuse = |topic: String, gateway: String, reason: &'static str, error: String| Checked::Rejected {
        topic,
        rejection: Rejection { gateway, reason, error, receipt: None },
    };
    let inner: &[u8] = match Topic::parse(&topic) {
        // Not a gateway topic: the protocol decoder names the problem below.
        Err(_) => payload,
        Ok(t) => {
            let gateway = t.gateway;
            if payload.len() > MAX_SIGNED_UPLINK {
                let e = format!("uplink of {} bytes exceeds {MAX_SIGNED_UPLINK}", payload.len());
                return refuse(topic, gateway, "too_large", e);
            }
            let key = match keys(&gateway) {
                KeyState::Unknown => {
                    let e = format!("gateway {gateway} is not provisioned");
                    return refuse(topic, gateway, "unknown_gateway", e);
                }
                KeyState::Revoked => {
                    let e = format!("gateway {gateway} is revoked");
                    return refuse(topic, gateway, "revoked", e);
                }
                KeyState::Active(k) => k,
            };
            match crate::verify::verify1(payload, topic.as_bytes(), |kid| (kid == gateway.as_bytes()).then_some(key)) {
                Ok(v) => v.payload,
                Err(e) => {
                    let e = format!("uplink of gateway {gateway} does not verify: {e}");
                    return refuse(topic, gateway, "signature", e);
                }
            }
        }
    };
    match decode_uplink(&topic, inner) {
        Ok((t, msg)) => match msg.boot_seq() {
            Some((boot, seq)) if i64::try_from(seq).is_err() => Checked::Rejected {
                topic,
                rejection: Rejection {
                    gateway: t.gateway,
                    reason: "seq_range",
                    error: format!("seq {seq} exceeds the store's range"),
                    receipt: Some((boot, seq)),
                },
            },
            _ => Checked::Valid { gateway: t.gateway, inner: inner.to_vec(), msg: Box::new(msg), topic },
        },
        Err(e) => {
            let rejection = Rejection::classify(&topic, inner, &e);
            Checked::Rejected { topic, rejection }
        }
    }
}

/// The store's form of a boot id: 16 hex digits (SQLite and JavaScript numbers cannot hold every u64).
pub fn boot_hex(boot: u64) -> String {
    format!("{boot:016x}")
}

/// Per-message answer of `POST /v1/ingest`, the shape the shim's forwarding client reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ItemResult {
    pub topic: String,
    pub seq: Option<u64>,
    /// `stored`, `duplicate` or `rejected`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ItemResult {
    pub fn new(c: &Checked, status: &str) -> ItemResult {
        let error = match c {
            Checked::Rejected { rejection, .. } => Some(format!("{}: {}", rejection.reason, rejection.error)),
            Checked::Valid { .. } => None,
        };
        ItemResult { topic: c.topic().to_owned(), seq: c.boot_seq().map(|(_, s)| s), status: status.to_owned(), error }
    }
}

#[cfg(test)]
pub mod test_support {
    use scs_protocol::cose::{sign1, SigningKey};

    /// A deterministic key per gateway id.
    pub fn key_for(gateway: &str) -> SigningKey {
        let mut seed = [7u8; 32];
        for (s, b) in seed.iter_mut().zip(gateway.bytes()) {
            *s ^= b;
        }
        SigningKey::from_seed(&seed).unwrap()
    }

    pub fn signed(gateway: &str, topic: &str, payload: &[u8]) -> Vec<u8> {
        sign1(&key_for(gateway), gateway.as_bytes(), topic.as_bytes(), payload)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{key_for, signed};
    use super::*;
    use scs_protocol::topics::topic;
    use scs_protocol::{encode, TelemetryBatch, TopicKind};

    fn keys(gw: &str) -> KeyState {
        match gw {
            "gw-1" => KeyState::Active(key_for("gw-1").verifying_key()),
            "gw-r" => KeyState::Revoked,
            _ => KeyState::Unknown,
        }
    }

    fn reason(c: &Checked) -> (&'static str, Option<(u64, u64)>) {
        match c {
            Checked::Valid { .. } => ("valid", c.boot_seq()),
            Checked::Rejected { rejection, .. } => (rejection.reason, rejection.receipt),
        }
    }

    #[test]
    fn ring_signatures_verify_with_the_workers_verifier_and_forgeries_do_not() {
        let t = topic("gw-1", TopicKind::Telemetry);
        let plain = encode(&TelemetryBatch::new("gw-1", 1, 5, 1));
        assert_eq!(reason(&check(t.clone(), &signed("gw-1", &t, &plain), &keys)), ("valid", Some((1, 5))));
        assert_eq!(reason(&check(t.clone(), &plain, &keys)), ("signature", None), "unsigned");
        let evil = scs_protocol::cose::sign1(&key_for("evil"), b"gw-1", t.as_bytes(), &plain);
        assert_eq!(reason(&check(t.clone(), &evil, &keys)), ("signature", None), "another key under gw-1's kid");
        let inv = topic("gw-1", TopicKind::Inventory);
        assert_eq!(reason(&check(inv, &signed("gw-1", &t, &plain), &keys)), ("signature", None), "replayed on another topic");
        let mut tampered = signed("gw-1", &t, &plain);
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(reason(&check(t.clone(), &tampered, &keys)), ("signature", None));
        let t9 = topic("gw-9", TopicKind::Telemetry);
        assert_eq!(reason(&check(t9.clone(), &signed("gw-9", &t9, &plain), &keys)).0, "unknown_gateway");
        let tr = topic("gw-r", TopicKind::Telemetry);
        assert_eq!(reason(&check(tr.clone(), &signed("gw-r", &tr, &plain), &keys)).0, "revoked");
        assert_eq!(reason(&check("not/a/topic".into(), b"x", &keys)).0, "topic");
    }

    #[test]
    fn invalid_messages_and_huge_seqs_are_rejected_with_receipts() {
        let t = topic("gw-1", TopicKind::Telemetry);
        let mut b = TelemetryBatch::new("gw-1", 9, 77, 1);
        b.devices.push(scs_protocol::DeviceReport { sensor: "bad/sensor".into(), ts: 1, metrics: vec![] });
        assert_eq!(reason(&check(t.clone(), &signed("gw-1", &t, &encode(&b)), &keys)), ("invalid_id", Some((9, 77))));
        let huge = encode(&TelemetryBatch::new("gw-1", 1, u64::MAX, 1));
        assert_eq!(reason(&check(t.clone(), &signed("gw-1", &t, &huge), &keys)), ("seq_range", Some((1, u64::MAX))));
        let r = ItemResult::new(&check(t.clone(), &signed("gw-1", &t, &huge), &keys), "rejected");
        assert!(r.error.unwrap().starts_with("seq_range: "), "the shim's forwarder reads the reason before ': '");
        assert_eq!(gateways_named([t.as_str(), t.as_str(), "junk"].into_iter()), vec!["gw-1".to_owned()]);
    }
}

/// Which of the keys (a JSON array of `[gateway, boot hex, seq]`) are stored: a JSON array of their
/// indexes.
pub const STORED_INDEXES: &str = "SELECT json_group_array(k.key) AS j FROM json_each(?1) k
 WHERE EXISTS (SELECT 1 FROM ingest_receipts r WHERE r.gateway_id = json_extract(k.value, '$[0]')
               AND r.boot = json_extract(k.value, '$[1]') AND r.seq = json_extract(k.value, '$[2]'))";

/// The verification keys of the gateways named (a JSON array of ids): `[[id, HEX(key), status], ...]`.
pub const GATEWAY_KEYS: &str = "SELECT json_group_array(json_array(id, hex(public_key), status)) AS j FROM gateways
 WHERE id IN (SELECT value FROM json_each(?1))";

/// Whether this message is an inventory, which changes the sensor list that cached pages hold. (A status
/// changes it too, but ingest does not wait for statuses to commit, so only the consumer can bump for them.)
pub fn changes_sensors(c: &Checked) -> bool {
    matches!(c, Checked::Valid { msg, .. } if matches!(**msg, Uplink::Inventory(_)))
}

/// The store key of a checked message, if it has one.
pub fn store_key(c: &Checked) -> Option<(String, String, i64)> {
    match c {
        Checked::Valid { gateway, msg, .. } => {
            let (boot, seq) = msg.boot_seq()?;
            Some((gateway.clone(), boot_hex(boot), i64::try_from(seq).ok()?))
        }
        Checked::Rejected { .. } => None,
    }
}

/// Parses [`GATEWAY_KEYS`]' answer. A row whose key is not 32 bytes of hex counts as unknown.
pub fn parse_gateway_keys(text: &str) -> Result<std::collections::HashMap<String, KeyState>, serde_json::Error> {
    let rows: Vec<(String, String, String)> = serde_json::from_str(text)?;
    Ok(rows
        .into_iter()
        .map(|(id, hex, status)| {
            let key = from_hex(&hex).and_then(|b| VerifyingKey::from_slice(&b).ok());
            let state = match (status.as_str(), key) {
                ("active", Some(k)) => KeyState::Active(k),
                ("active", None) => KeyState::Unknown,
                _ => KeyState::Revoked,
            };
            (id, state)
        })
        .collect())
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Option<Vec<u8>> = s.chars().map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok())).collect();
    let digits = digits?;
    if digits.len() % 2 != 0 {
        return None;
    }
    Some(digits.chunks(2).map(|p| p.iter().fold(0u8, |acc, d| acc * 16 + d)).collect())
}

#[cfg(test)]
mod sql_tests {
    use super::*;

    #[test]
    fn key_and_receipt_queries_on_sqlite() {
        let conn = crate::sql::test_db();
        conn.execute_batch(include_str!("../../../cloud-shim/migrations/0001_init.sql")).unwrap();
        conn.execute_batch(include_str!("../../../cloud-shim/migrations/0004_gateway_identity.sql")).unwrap();
        let key = test_support::key_for("gw-1").public_key();
        conn.execute(
            "INSERT INTO gateways (id, public_key, mqtt_password_sha256, created_ms) VALUES ('gw-1', ?1, '00', 1)",
            [&key[..]],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES ('gw-r', x'01', '00', 'revoked', 1)",
            [],
        )
        .unwrap();
        let j: String = conn.query_row(GATEWAY_KEYS, [r#"["gw-1","gw-r","gw-x"]"#], |r| r.get(0)).unwrap();
        let keys = parse_gateway_keys(&j).unwrap();
        assert_eq!(keys.get("gw-1"), Some(&KeyState::Active(VerifyingKey(key))));
        assert_eq!(keys.get("gw-r"), Some(&KeyState::Revoked));
        assert_eq!(keys.get("gw-x"), None);
        conn.execute("INSERT INTO ingest_receipts VALUES ('gw-1', '0000000000000001', 5, 'telemetry', 1)", []).unwrap();
        let j: String = conn
            .query_row(STORED_INDEXES, [r#"[["gw-1","0000000000000001",4],["gw-1","0000000000000001",5]]"#], |r| r.get(0))
            .unwrap();
        assert_eq!(j, "[1]");
    }
}

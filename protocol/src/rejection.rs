//! Classifying refused uplink messages: a short reason code for counting, the gateway to charge it to,
//! and — when the message decodes far enough — the `(boot, seq)` to name in a `rejected` receipt.
//! Shared by every cloud that ingests (the shim and the Worker), so a refused message is counted under
//! the same reason everywhere.

use crate::ids::validate_id;
use crate::topics::{Topic, PREFIX};
use crate::ProtocolError;
use minicbor::Decoder;

/// Gateway id charged with messages whose topic names no valid gateway.
pub const UNKNOWN_GATEWAY: &str = "_unknown";

/// Why and whose: everything the store, the counters and the receipt need about a refused message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub gateway: String,
    /// Stable code: `too_large`, `malformed`, `version`, `topic`, `direction`, `gateway_mismatch`,
    /// `invalid_id`, `too_many`, `field`, `seq_range`, `command_update`, `store`.
    pub reason: &'static str,
    pub error: String,
    /// Set when the agent should be told to drop the message (it is permanently invalid).
    pub receipt: Option<(u64, u64)>,
}

pub fn reason_code(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::TooLarge { .. } => "too_large",
        ProtocolError::Malformed { .. } => "malformed",
        ProtocolError::Version { .. } => "version",
        ProtocolError::Topic { .. } => "topic",
        ProtocolError::Direction { .. } => "direction",
        ProtocolError::GatewayMismatch { .. } => "gateway_mismatch",
        ProtocolError::InvalidId { .. } => "invalid_id",
        ProtocolError::TooMany { .. } => "too_many",
        ProtocolError::Field { .. } => "field",
    }
}

impl Rejection {
    /// Builds the rejection for `payload` on `topic` refused with `e`.
    pub fn classify(topic: &str, payload: &[u8], e: &ProtocolError) -> Rejection {
        let parsed = Topic::parse(topic).ok();
        let gateway = parsed.as_ref().map(|t| t.gateway.clone()).unwrap_or_else(|| gateway_hint(topic));
        // A receipt goes only to a real receipted topic, and never for an unknown version: a newer agent's
        // data must wait for a newer shim rather than be dropped.
        let receipt = match (&parsed, e) {
            (_, ProtocolError::Version { .. } | ProtocolError::Topic { .. } | ProtocolError::Direction { .. }) => None,
            (Some(t), _) if t.kind.is_receipted() => peek_boot_seq(payload),
            _ => None,
        };
        Rejection { gateway, reason: reason_code(e), error: e.to_string(), receipt }
    }
}

/// The gateway segment of a topic that is not a valid SCS topic (`scs/v1/{gw}/garbage`), if it is a
/// valid id; otherwise [`UNKNOWN_GATEWAY`].
pub fn gateway_hint(topic: &str) -> String {
    topic
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.split('/').next())
        .filter(|gw| validate_id("gateway id", gw).is_ok())
        .unwrap_or(UNKNOWN_GATEWAY)
        .to_owned()
}

/// Reads keys 2 (boot) and 3 (seq) of a top-level CBOR map without decoding the rest, so an invalid
/// message can still be named in a receipt. `None` if the map cannot be walked that far.
pub fn peek_boot_seq(payload: &[u8]) -> Option<(u64, u64)> {
    let mut d = Decoder::new(payload);
    let n = d.map().ok()??;
    let (mut boot, mut seq) = (None, None);
    for _ in 0..n.min(64) {
        match d.u64().ok()? {
            2 => boot = Some(d.u64().ok()?),
            3 => seq = Some(d.u64().ok()?),
            _ => d.skip().ok()?,
        }
        if let (Some(b), Some(s)) = (boot, seq) {
            return Some((b, s));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::topic;
    use crate::{decode_uplink, encode, TelemetryBatch, TopicKind};

    #[test]
    fn invalid_batch_is_named_in_a_receipt() {
        let mut b = TelemetryBatch::new("gw-1", 9, 77, 1);
        b.devices.push(crate::DeviceReport { sensor: "bad/sensor".into(), ts: 1, metrics: vec![] });
        let bytes = encode(&b);
        let t = topic("gw-1", TopicKind::Telemetry);
        let e = decode_uplink(&t, &bytes).unwrap_err();
        let r = Rejection::classify(&t, &bytes, &e);
        assert_eq!(r.gateway, "gw-1");
        assert_eq!(r.reason, "invalid_id");
        assert_eq!(r.receipt, Some((9, 77)));
    }

    #[test]
    fn garbage_and_foreign_topics() {
        let r = Rejection::classify("scs/v1/gw-2/up/bogus", b"x", &ProtocolError::Topic { topic: "t".into() });
        assert_eq!((r.gateway.as_str(), r.reason, r.receipt), ("gw-2", "topic", None));
        let r = Rejection::classify("other/thing", b"x", &ProtocolError::Topic { topic: "t".into() });
        assert_eq!(r.gateway, UNKNOWN_GATEWAY);
        let t = topic("gw-3", TopicKind::Telemetry);
        let e = decode_uplink(&t, b"\xff\x00garbage").unwrap_err();
        let r = Rejection::classify(&t, b"\xff\x00garbage", &e);
        assert_eq!((r.gateway.as_str(), r.reason, r.receipt), ("gw-3", "malformed", None));
    }

    #[test]
    fn wrong_version_gets_no_receipt() {
        let mut b = TelemetryBatch::new("gw-1", 1, 2, 3);
        b.v = 2;
        let bytes = encode(&b);
        let t = topic("gw-1", TopicKind::Telemetry);
        let e = decode_uplink(&t, &bytes).unwrap_err();
        let r = Rejection::classify(&t, &bytes, &e);
        assert_eq!((r.reason, r.receipt), ("version", None));
    }
}

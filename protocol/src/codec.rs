//! Topic-aware decoding with limits, for both directions.

use crate::command::{CommandCancel, CommandRequest, CommandUpdate};
use crate::error::ProtocolError;
use crate::inventory::Inventory;
use crate::limits::{MAX_DOWNLINK_BYTES, MAX_UPLINK_BYTES};
use crate::receipt::Receipt;
use crate::status::Status;
use crate::telemetry::TelemetryBatch;
use crate::topics::{Topic, TopicKind};
use crate::version::PROTOCOL_VERSION;

/// A validated message from a gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Uplink {
    Telemetry(TelemetryBatch),
    Inventory(Inventory),
    Command(CommandUpdate),
    Status(Status),
}

impl Uplink {
    /// `(boot, seq)` of receipted messages; `None` for status.
    pub fn boot_seq(&self) -> Option<(u64, u64)> {
        match self {
            Uplink::Telemetry(m) => Some((m.boot, m.seq)),
            Uplink::Inventory(m) => Some((m.boot, m.seq)),
            Uplink::Command(m) => Some((m.boot, m.seq)),
            Uplink::Status(_) => None,
        }
    }

    fn gateway(&self) -> &str {
        match self {
            Uplink::Telemetry(m) => &m.gateway,
            Uplink::Inventory(m) => &m.gateway,
            Uplink::Command(m) => &m.gateway,
            Uplink::Status(m) => &m.gateway,
        }
    }
}

/// A validated message for a gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Downlink {
    Receipt(Receipt),
    Command(CommandRequest),
    Cancel(CommandCancel),
}

fn decode<'b, T: minicbor::Decode<'b, ()>>(what: &'static str, payload: &'b [u8]) -> Result<T, ProtocolError> {
    // Check the version first so a v2 peer gets "unsupported version", not a confusing field error.
    let mut d = minicbor::Decoder::new(payload);
    if let Ok(Some(_)) = d.map() {
        if let (Ok(0u8), Ok(v)) = (d.u8(), d.u64()) {
            if v != u64::from(PROTOCOL_VERSION) {
                return Err(ProtocolError::Version { found: v, expected: PROTOCOL_VERSION });
            }
        }
    }
    let mut d = minicbor::Decoder::new(payload);
    let value = T::decode(&mut d, &mut ()).map_err(|e| ProtocolError::malformed(what, e))?;
    if d.position() != payload.len() {
        return Err(ProtocolError::malformed(what, format!("{} trailing bytes", payload.len() - d.position())));
    }
    Ok(value)
}

fn size_check(what: &'static str, payload: &[u8], limit: usize) -> Result<(), ProtocolError> {
    if payload.len() > limit {
        return Err(ProtocolError::TooLarge { what, size: payload.len(), limit });
    }
    Ok(())
}

/// Decodes and validates a gateway's message; the gateway id inside must match the topic's.
pub fn decode_uplink(topic: &str, payload: &[u8]) -> Result<(Topic, Uplink), ProtocolError> {
    let t = Topic::parse(topic)?;
    let msg = match t.kind {
        TopicKind::Telemetry => {
            size_check("telemetry", payload, MAX_UPLINK_BYTES)?;
            let m: TelemetryBatch = decode("telemetry", payload)?;
            m.validate()?;
            Uplink::Telemetry(m)
        }
        TopicKind::Inventory => {
            size_check("inventory", payload, MAX_UPLINK_BYTES)?;
            let m: Inventory = decode("inventory", payload)?;
            m.validate()?;
            Uplink::Inventory(m)
        }
        TopicKind::CommandUpdate => {
            size_check("command update", payload, MAX_UPLINK_BYTES)?;
            let m: CommandUpdate = decode("command update", payload)?;
            m.validate()?;
            Uplink::Command(m)
        }
        TopicKind::Status => {
            size_check("status", payload, MAX_DOWNLINK_BYTES)?;
            let m: Status = decode("status", payload)?;
            m.validate()?;
            Uplink::Status(m)
        }
        TopicKind::Receipt | TopicKind::Command | TopicKind::Cancel => {
            return Err(ProtocolError::Direction { topic: topic.to_owned(), direction: "uplink" })
        }
    };
    if msg.gateway() != t.gateway {
        return Err(ProtocolError::GatewayMismatch { in_topic: t.gateway.clone(), in_message: msg.gateway().to_owned() });
    }
    Ok((t, msg))
}

/// Decodes and validates a message for a gateway.
pub fn decode_downlink(topic: &str, payload: &[u8]) -> Result<(Topic, Downlink), ProtocolError> {
    let t = Topic::parse(topic)?;
    let wrong_direction = || ProtocolError::Direction { topic: topic.to_owned(), direction: "downlink" };
    if t.kind.is_uplink() {
        return Err(wrong_direction());
    }
    size_check("downlink", payload, MAX_DOWNLINK_BYTES)?;
    let msg = match t.kind {
        TopicKind::Receipt => {
            let m: Receipt = decode("receipt", payload)?;
            m.validate()?;
            Downlink::Receipt(m)
        }
        TopicKind::Command => {
            let m: CommandRequest = decode("command", payload)?;
            m.validate()?;
            Downlink::Command(m)
        }
        TopicKind::Cancel => {
            let m: CommandCancel = decode("cancel", payload)?;
            m.validate()?;
            Downlink::Cancel(m)
        }
        TopicKind::Telemetry | TopicKind::Inventory | TopicKind::CommandUpdate | TopicKind::Status => {
            return Err(wrong_direction())
        }
    };
    Ok((t, msg))
}

/// Encodes any protocol message. Encoding into a `Vec` cannot fail.
#[allow(clippy::expect_used, reason = "writing to a Vec<u8> cannot fail and the message encoders return no errors of their own")]
pub fn encode<T: minicbor::Encode<()>>(msg: &T) -> Vec<u8> {
    minicbor::to_vec(msg).expect("encoding into a Vec<u8> is infallible")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Metric;
    use crate::telemetry::DeviceReport;
    use crate::topics::topic;

    fn batch() -> TelemetryBatch {
        let mut b = TelemetryBatch::new("gw-1", 7, 42, 1_700_000_000_000);
        b.devices.push(DeviceReport {
            sensor: "gw-1".into(),
            ts: 1_700_000_000_000,
            metrics: vec![Metric::new("cpu.usage_pct", 12.5), Metric::labelled("net.rx_bytes", "eth0", 123456789u64)],
        });
        b
    }

    #[test]
    fn telemetry_roundtrip() {
        let b = batch();
        let bytes = encode(&b);
        let (t, m) = decode_uplink(&topic("gw-1", TopicKind::Telemetry), &bytes).unwrap();
        assert_eq!(t.gateway, "gw-1");
        assert_eq!(m, Uplink::Telemetry(b));
        assert_eq!(m.boot_seq(), Some((7, 42)));
    }

    #[test]
    fn rejects_bad_input() {
        let bytes = encode(&batch());
        let t = topic("gw-1", TopicKind::Telemetry);
        // truncated
        assert!(matches!(decode_uplink(&t, &bytes[..bytes.len() - 3]), Err(ProtocolError::Malformed { .. })));
        // garbage
        assert!(decode_uplink(&t, b"not cbor at all").is_err());
        // trailing bytes
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_uplink(&t, &longer).is_err());
        // wrong gateway in topic
        assert!(matches!(
            decode_uplink(&topic("gw-2", TopicKind::Telemetry), &bytes),
            Err(ProtocolError::GatewayMismatch { .. })
        ));
        // wrong direction
        assert!(decode_uplink(&topic("gw-1", TopicKind::Command), &bytes).is_err());
        // oversized
        let big = vec![0u8; crate::limits::MAX_UPLINK_BYTES + 1];
        assert!(matches!(decode_uplink(&t, &big), Err(ProtocolError::TooLarge { .. })));
        // wrong version
        let mut b = batch();
        b.v = 2;
        assert!(matches!(decode_uplink(&t, &encode(&b)), Err(ProtocolError::Version { found: 2, .. })));
    }
}

//! MQTT topic names. One versioned namespace per gateway:
//!
//! | topic                              | dir  | QoS | retained | payload          |
//! |------------------------------------|------|-----|----------|------------------|
//! | `scs/v1/{gw}/up/telemetry`         | up   | 1   | no       | `TelemetryBatch` |
//! | `scs/v1/{gw}/up/inventory`         | up   | 1   | no       | `Inventory`      |
//! | `scs/v1/{gw}/up/command`           | up   | 1   | no       | `CommandUpdate`  |
//! | `scs/v1/{gw}/status`               | up   | 1   | yes      | `Status` (+ LWT) |
//! | `scs/v1/{gw}/down/receipt`         | down | 1   | no       | `Receipt`        |
//! | `scs/v1/{gw}/down/command`         | down | 1   | no       | `CommandRequest` |
//! | `scs/v1/{gw}/down/cancel`          | down | 1   | no       | `CommandCancel`  |

use crate::error::ProtocolError;
use crate::ids::validate_id;

pub const PREFIX: &str = "scs/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    Telemetry,
    Inventory,
    CommandUpdate,
    Status,
    Receipt,
    Command,
    Cancel,
}

impl TopicKind {
    pub const ALL: [TopicKind; 7] = [
        TopicKind::Telemetry,
        TopicKind::Inventory,
        TopicKind::CommandUpdate,
        TopicKind::Status,
        TopicKind::Receipt,
        TopicKind::Command,
        TopicKind::Cancel,
    ];

    /// The part of the topic after `scs/v1/{gw}/`.
    pub const fn suffix(self) -> &'static str {
        match self {
            TopicKind::Telemetry => "up/telemetry",
            TopicKind::Inventory => "up/inventory",
            TopicKind::CommandUpdate => "up/command",
            TopicKind::Status => "status",
            TopicKind::Receipt => "down/receipt",
            TopicKind::Command => "down/command",
            TopicKind::Cancel => "down/cancel",
        }
    }

    /// Uplink topics are written by the gateway (status included), downlink ones by the cloud.
    pub const fn is_uplink(self) -> bool {
        matches!(self, TopicKind::Telemetry | TopicKind::Inventory | TopicKind::CommandUpdate | TopicKind::Status)
    }

    /// Uplink messages that go through the agent's durable queue and are answered by a `Receipt`.
    pub const fn is_receipted(self) -> bool {
        matches!(self, TopicKind::Telemetry | TopicKind::Inventory | TopicKind::CommandUpdate)
    }

    /// Stable small code, used as the `kind` column of the agent's queue.
    pub const fn code(self) -> u8 {
        match self {
            TopicKind::Telemetry => 1,
            TopicKind::Inventory => 2,
            TopicKind::CommandUpdate => 3,
            TopicKind::Status => 4,
            TopicKind::Receipt => 5,
            TopicKind::Command => 6,
            TopicKind::Cancel => 7,
        }
    }

    pub fn from_code(code: u8) -> Option<TopicKind> {
        TopicKind::ALL.into_iter().find(|k| k.code() == code)
    }

    fn from_suffix(s: &str) -> Option<TopicKind> {
        TopicKind::ALL.into_iter().find(|k| k.suffix() == s)
    }
}

/// A parsed topic: which gateway, which message kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub gateway: String,
    pub kind: TopicKind,
}

impl Topic {
    pub fn new(gateway: &str, kind: TopicKind) -> Result<Topic, ProtocolError> {
        validate_id("gateway id", gateway)?;
        Ok(Topic { gateway: gateway.to_owned(), kind })
    }

    pub fn parse(topic: &str) -> Result<Topic, ProtocolError> {
        let err = || ProtocolError::Topic { topic: topic.chars().take(200).collect() };
        let rest = topic.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('/')).ok_or_else(err)?;
        let (gw, suffix) = rest.split_once('/').ok_or_else(err)?;
        let kind = TopicKind::from_suffix(suffix).ok_or_else(err)?;
        validate_id("gateway id", gw)?;
        Ok(Topic { gateway: gw.to_owned(), kind })
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}/{}/{}", self.gateway, self.kind.suffix())
    }
}

/// Topic string for a gateway and kind. The gateway id must already be valid.
pub fn topic(gateway: &str, kind: TopicKind) -> String {
    format!("{PREFIX}/{gateway}/{}", kind.suffix())
}

/// Filter matching one kind for every gateway, e.g. `scs/v1/+/up/telemetry`.
pub fn filter_all_gateways(kind: TopicKind) -> String {
    format!("{PREFIX}/+/{}", kind.suffix())
}

/// Filter for every uplink topic of every gateway (what the shim subscribes to).
pub const UPLINK_FILTER_ALL: &str = "scs/v1/+/up/#";
/// Retained status of every gateway.
pub const STATUS_FILTER_ALL: &str = "scs/v1/+/status";

/// MQTT 5 / 3.1.1 shared-subscription form (`$share/{group}/{filter}`), supported by Mosquitto and EMQX.
pub fn shared(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_kind() {
        for kind in TopicKind::ALL {
            let t = topic("gw-1", kind);
            let p = Topic::parse(&t).unwrap();
            assert_eq!(p, Topic { gateway: "gw-1".into(), kind });
            assert_eq!(p.to_string(), t);
            assert_eq!(TopicKind::from_code(kind.code()), Some(kind));
        }
    }

    #[test]
    fn rejects_foreign_topics() {
        for t in ["scs/v2/gw/up/telemetry", "scs/v1/gw", "scs/v1/gw/up/other", "scs/v1/g+w/up/telemetry", "x"] {
            assert!(Topic::parse(t).is_err(), "{t}");
        }
    }
}

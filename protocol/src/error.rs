use thiserror::Error;

/// Why a message or identifier was refused. Every variant says what was wrong so the shim can count
/// and log rejections per gateway without guessing.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProtocolError {
    #[error("payload of {size} bytes exceeds the {limit}-byte limit for {what}")]
    TooLarge { what: &'static str, size: usize, limit: usize },
    #[error("malformed CBOR in {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("unsupported protocol version {found} (expected {expected})")]
    Version { found: u64, expected: u8 },
    #[error("topic {topic:?} is not an SCS v1 topic")]
    Topic { topic: String },
    #[error("topic {topic:?} is not valid in the {direction} direction")]
    Direction { topic: String, direction: &'static str },
    #[error("message names gateway {in_message:?} but arrived on the topic of {in_topic:?}")]
    GatewayMismatch { in_topic: String, in_message: String },
    #[error("invalid {what} {value:?}: {rule}")]
    InvalidId { what: &'static str, value: String, rule: &'static str },
    #[error("{what} has {count} entries, more than the limit of {limit}")]
    TooMany { what: &'static str, count: usize, limit: usize },
    #[error("invalid field {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl ProtocolError {
    pub(crate) fn malformed(what: &'static str, e: impl std::fmt::Display) -> Self {
        ProtocolError::Malformed { what, reason: e.to_string() }
    }
}

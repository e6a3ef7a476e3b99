//! Retained online/offline status. The agent publishes `Online` after connecting and registers an
//! `Offline` status as its MQTT Last Will, so the broker announces an unclean disconnect for it.

use minicbor::{Decode, Encode};

use crate::error::ProtocolError;
use crate::ids::validate_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum GatewayState {
    #[n(0)]
    Offline,
    #[n(1)]
    Online,
}

impl GatewayState {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayState::Offline => "offline",
            GatewayState::Online => "online",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct Status {
    #[n(0)]
    pub v: u8,
    #[n(1)]
    pub gateway: String,
    #[n(2)]
    pub state: GatewayState,
    #[n(3)]
    pub boot: u64,
    /// When the agent connected (for the will: the time the will was registered).
    #[n(4)]
    pub ts: u64,
    #[n(5)]
    pub version: Option<String>,
}

impl Status {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        crate::version::check_version(self.v)?;
        validate_id("gateway id", &self.gateway)
    }
}

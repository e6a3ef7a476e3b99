//! What the shim knows about each gateway's MQTT connection, and the events that announce a change.
//! Written by the MQTT bridge, read by the HTTP API and the command sessions.

use std::collections::HashMap;
use std::sync::Mutex;

use scs_protocol::GatewayState;
use serde::Serialize;

use crate::clock::now_ms;
use crate::store::boot_hex;

/// A gateway's connection changed, from its retained/live status message (or its Last Will).
/// Fired on every status message, including the retained ones replayed when the shim subscribes, so a
/// listener learns every gateway that is online at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    Online(String),
    Offline(String),
}

/// What the shim currently knows about each gateway's MQTT connection.
#[derive(Default)]
pub struct Presence {
    gateways: Mutex<HashMap<String, GatewayPresence>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPresence {
    pub online: bool,
    /// The agent's boot id (hex), from its status message.
    pub boot: String,
    /// When this shim received the status (ms).
    pub since: i64,
    pub version: Option<String>,
    /// The status message's own timestamp: with `boot` it names one connection of the agent, the same
    /// for every shim that saw it (the Worker's downlink re-sends once per connection).
    #[serde(skip)]
    pub ts: u64,
}

/// Gateways tracked at most, against a flood of status messages under made-up ids.
const MAX_PRESENCE: usize = 100_000;

impl Presence {
    pub fn set(&self, gateway: &str, state: GatewayState, boot: u64, ts: u64, version: Option<String>) {
        if let Ok(mut m) = self.gateways.lock() {
            if m.len() >= MAX_PRESENCE && !m.contains_key(gateway) {
                return;
            }
            let p = GatewayPresence { online: state == GatewayState::Online, boot: boot_hex(boot), since: now_ms(), version, ts };
            m.insert(gateway.to_owned(), p);
        }
    }

    pub fn get(&self, gateway: &str) -> Option<GatewayPresence> {
        self.gateways.lock().ok().and_then(|m| m.get(gateway).cloned())
    }

    pub fn is_online(&self, gateway: &str) -> bool {
        self.get(gateway).is_some_and(|p| p.online)
    }

    /// Gateways currently online.
    pub fn online(&self) -> Vec<String> {
        self.gateways.lock().map(|m| m.iter().filter(|(_, p)| p.online).map(|(g, _)| g.clone()).collect()).unwrap_or_default()
    }
}

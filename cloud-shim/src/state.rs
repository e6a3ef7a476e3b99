//! Shared state of the running shim, handed to every API handler and background task.
//! Clone is cheap (Arcs inside). Engineers C and D add their own fields here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rumqttc::AsyncClient;
use scs_protocol::GatewayState;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::ServeConfig;
use crate::ingest::IngestHandle;
use crate::stats::Stats;
use crate::store::Store;

/// A gateway's connection changed, from its retained/live status message (or its Last Will).
/// Fired on every status message, including the retained ones replayed when the shim subscribes, so a
/// listener learns every gateway that is online at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    Online(String),
    Offline(String),
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServeConfig>,
    /// Publishes to the broker (receipts, commands). Never blocks the bridge: prefer `try_publish`
    /// from tasks that the bridge might wait on.
    pub mqtt: AsyncClient,
    pub events: broadcast::Sender<GatewayEvent>,
    pub ingest: IngestHandle,
    pub stats: Arc<Stats>,
    pub presence: Arc<Presence>,
    pub health: Arc<Health>,
    /// Bearer token of clients (and of forwarding shims on `/v1/ingest`).
    pub api_token: Arc<str>,
    /// Artifact uploads, downloads and grants (engineer D).
    pub artifacts: crate::artifacts::Artifacts,
    /// Wakes the command session task (engineer C).
    pub commands: crate::commands::Sessions,
    /// Signs commands and cancels with the cloud key.
    pub signer: crate::identity::Signer,
}

impl axum::extract::FromRef<AppState> for crate::artifacts::Artifacts {
    fn from_ref(s: &AppState) -> Self {
        s.artifacts.clone()
    }
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
}

/// Gateways tracked at most, against a flood of status messages under made-up ids.
const MAX_PRESENCE: usize = 100_000;

impl Presence {
    pub fn set(&self, gateway: &str, state: GatewayState, boot: u64, version: Option<String>) {
        if let Ok(mut m) = self.gateways.lock() {
            if m.len() >= MAX_PRESENCE && !m.contains_key(gateway) {
                return;
            }
            let p = GatewayPresence {
                online: state == GatewayState::Online,
                boot: crate::store::boot_hex(boot),
                since: crate::store::now_ms(),
                version,
            };
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

/// Readiness for `/healthz`: the shim reports ready once its MQTT subscriptions are in place.
#[derive(Default)]
pub struct Health {
    mqtt_subscribed: AtomicBool,
}

impl Health {
    pub fn set_mqtt_subscribed(&self, v: bool) {
        self.mqtt_subscribed.store(v, Ordering::SeqCst);
    }
    pub fn mqtt_subscribed(&self) -> bool {
        self.mqtt_subscribed.load(Ordering::SeqCst)
    }
}

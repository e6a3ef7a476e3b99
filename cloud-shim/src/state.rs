//! Shared state of the running shim, handed to every API handler. Clone is cheap (Arcs inside).
//! This is the composition root's bag of handles: modules below it take only the handles they need
//! (see [`FromRef`] for the command API), so nothing here is a dependency of the modules it holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::FromRef;

use crate::artifacts::Artifacts;
use crate::commands::api::CommandApi;
use crate::commands::Sessions;
use crate::config::ServeConfig;
use crate::ingest::IngestHandle;
use crate::releases::api::ReleasesApi;
use crate::stats::Stats;
use crate::store::Store;

/// Named here by the MQTT bridge.
pub use crate::presence::{GatewayEvent, Presence};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServeConfig>,
    pub ingest: IngestHandle,
    pub stats: Arc<Stats>,
    pub presence: Arc<Presence>,
    pub health: Arc<Health>,
    /// Bearer token of clients (and of forwarding shims on `/v1/ingest`).
    pub api_token: Arc<str>,
    /// Artifact uploads, downloads and grants.
    pub artifacts: Artifacts,
    /// Wakes the command session task.
    pub commands: Sessions,
}

impl FromRef<AppState> for Artifacts {
    fn from_ref(s: &AppState) -> Self {
        s.artifacts.clone()
    }
}

impl FromRef<AppState> for CommandApi {
    fn from_ref(s: &AppState) -> Self {
        CommandApi { store: s.store.clone(), sessions: s.commands.clone(), artifacts: s.artifacts.clone() }
    }
}

impl FromRef<AppState> for ReleasesApi {
    fn from_ref(s: &AppState) -> Self {
        ReleasesApi { commands: CommandApi::from_ref(s), artifacts: s.artifacts.clone() }
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

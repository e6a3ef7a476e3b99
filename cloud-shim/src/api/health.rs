//! `GET /healthz` (no auth): 200 once the store answers and the MQTT subscriptions are in place,
//! 503 otherwise, with the details as JSON.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;
use crate::store::queries;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let store_ok = state.store.call(|c| queries::ping(c)).await.is_ok();
    let mqtt_ok = state.health.mqtt_subscribed();
    let ok = store_ok && mqtt_ok;
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "store": if store_ok { "ok" } else { "error" },
        "mqtt": if mqtt_ok { "subscribed" } else { "disconnected" },
        "ingest": if state.config.worker_url.is_some() { "worker" } else { "local" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

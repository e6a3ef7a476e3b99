//! Per-gateway ingest statistics: `GET /v1/gateways/{id}/stats` — durable rejection counts and stored
//! message totals from the store, plus this process's live counters and the gateway's presence.
//! `GET /v1/gateways/{id}/events`: device events of all its children, newest first.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use crate::state::AppState;
use crate::store::queries;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/gateways/{id}/stats", get(stats))
        .route("/v1/gateways/{id}/events", get(events))
        .route("/v1/stats", get(totals))
}

async fn stats(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let gw = id.clone();
    let (rejections, totals) = state
        .store
        .call(move |c| Ok::<_, crate::store::StoreError>((queries::rejections(c, &gw)?, queries::ingest_totals(c, &gw)?)))
        .await?;
    let rejected: i64 = rejections.iter().map(|r| r.count).sum();
    Ok(Json(json!({
        "gatewayId": id,
        "presence": state.presence.get(&id),
        "storedMessages": totals.messages,
        "rejected": rejected,
        "rejections": rejections,
        "gaps": totals.gaps,
        "process": state.stats.get(&id),
    })))
}

async fn totals(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "process": state.stats.totals(), "online": state.presence.online() }))
}

async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<super::sensors::EventParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    super::sensors::events_of(&state, crate::store::devices::EventsOf::Gateway, id, &p).await
}

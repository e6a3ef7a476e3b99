//! Sensors and their metrics: `GET /v1/sensors`, `GET /v1/sensors/{id}`, `GET /v1/sensors/{id}/metrics`.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::state::AppState;
use crate::store::queries::{self, MetricQuery, SensorFilter};

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sensors", get(list))
        .route("/v1/sensors/{id}", get(one))
        .route("/v1/sensors/{id}/metrics", get(metrics))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    gateway_id: Option<String>,
    #[serde(rename = "type")]
    sensor_type: Option<String>,
    parent_sensor_id: Option<String>,
}

/// A bare JSON array of sensors (the platform's sensor list shape).
async fn list(State(state): State<AppState>, Query(p): Query<ListParams>) -> Result<Json<Vec<queries::SensorRow>>, ApiError> {
    let filter = SensorFilter { gateway: p.gateway_id, sensor_type: p.sensor_type, parent: p.parent_sensor_id };
    let sensors: Vec<queries::SensorRow> =
        state.store.call(move |c| queries::list_sensors(c, &filter)).await.map_err(ApiError::from)?;
    Ok(Json(sensors))
}

async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let sid = id.clone();
    let sensor: Option<queries::SensorRow> =
        state.store.call(move |c| queries::get_sensor(c, &sid)).await.map_err(ApiError::from)?;
    let sensor = sensor.ok_or_else(|| ApiError::not_found(format!("no sensor {id:?}")))?;
    let mut v = serde_json::to_value(&sensor).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // A gateway's own row also says whether it is connected now, as this shim sees it.
    if sensor.id == sensor.gateway_id {
        if let (Some(obj), Some(p)) = (v.as_object_mut(), state.presence.get(&sensor.id)) {
            obj.insert("presence".into(), json!(p));
        }
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
struct MetricParams {
    name: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<u32>,
    /// `asc` (default, oldest first) or `desc` (newest first).
    order: Option<String>,
}

async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<MetricParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let (Some(f), Some(t)) = (p.from, p.to) {
        if f > t {
            return Err(ApiError::bad_request(format!("from ({f}) is after to ({t})")));
        }
    }
    let newest_first = match p.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(ApiError::bad_request(format!("order must be asc or desc, not {o:?}"))),
    };
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let q = MetricQuery { name: p.name.clone(), from: p.from, to: p.to, limit, newest_first };
    let sid = id.clone();
    let (exists, samples) = state
        .store
        .call(move |c| {
            Ok::<_, crate::store::StoreError>((queries::get_sensor(c, &sid)?.is_some(), queries::metrics(c, &sid, &q)?))
        })
        .await?;
    if !exists && samples.is_empty() {
        return Err(ApiError::not_found(format!("no sensor {id:?}")));
    }
    Ok(Json(json!({
        "sensorId": id,
        "name": p.name,
        "from": p.from,
        "to": p.to,
        "limit": limit,
        "count": samples.len(),
        "samples": samples,
    })))
}

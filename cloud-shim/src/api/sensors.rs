//! Sensors and their metrics: `GET /v1/sensors`, `GET /v1/sensors/{id}`, `GET /v1/sensors/{id}/metrics`,
//! `GET /v1/sensors/{id}/events` (device events, newest first).
//!
//! `GET /v1/sensors` is paginated by id: `limit` (1..=1000, default 1000) and `cursor` (opaque; the
//! `X-Next-Cursor` of the previous page). The body stays a bare JSON array, so clients written before
//! pagination still work and get the first page; when more sensors follow, the answer carries
//! `X-Next-Cursor` and an RFC 8288 `Link: <...>; rel="next"`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::state::AppState;
use crate::store::devices::{self, EVENTS_DEFAULT_LIMIT, EVENTS_MAX_LIMIT};
use crate::store::queries::{self, MetricQuery, SensorFilter};

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;
/// Sensors per page of `GET /v1/sensors` by default and at most.
pub const SENSOR_PAGE_DEFAULT: u32 = 1000;
pub const SENSOR_PAGE_MAX: u32 = 1000;
const NEXT_CURSOR: &str = "x-next-cursor";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sensors", get(list))
        .route("/v1/sensors/{id}", get(one))
        .route("/v1/sensors/{id}/metrics", get(metrics))
        .route("/v1/sensors/{id}/events", get(events))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    gateway_id: Option<String>,
    #[serde(rename = "type")]
    sensor_type: Option<String>,
    parent_sensor_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One page of sensors as a bare JSON array (the platform's sensor list shape), with the next cursor in
/// headers.
async fn list(State(state): State<AppState>, Query(p): Query<ListParams>) -> Result<Response, ApiError> {
    let limit = p.limit.unwrap_or(SENSOR_PAGE_DEFAULT);
    if !(1..=SENSOR_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1..={SENSOR_PAGE_MAX}, not {limit}"))
            .with("field", "limit")
            .with("maxLimit", SENSOR_PAGE_MAX));
    }
    let filter =
        SensorFilter { gateway: p.gateway_id.clone(), sensor_type: p.sensor_type.clone(), parent: p.parent_sensor_id.clone() };
    let after = p.cursor.clone().filter(|c| !c.is_empty());
    // One more than the page tells whether another page follows.
    let mut sensors: Vec<queries::SensorRow> = state
        .store
        .call(move |c| queries::list_sensors_page(c, &filter, after.as_deref(), limit + 1))
        .await
        .map_err(ApiError::from)?;
    let next = if sensors.len() > limit as usize {
        sensors.truncate(limit as usize);
        sensors.last().map(|s| s.id.clone())
    } else {
        None
    };
    // A gateway's children (the portal's device list) come with their latest health.
    let mut resp = if p.parent_sensor_id.is_some() {
        let rows = state
            .store
            .call(move |c| {
                let ids = serde_json::to_string(&sensors.iter().map(|s| s.id.as_str()).collect::<Vec<_>>())
                    .map_err(crate::store::StoreError::Json)?;
                let samples = queries::latest_samples(c, devices::Scope::Ids, Some(&ids))?;
                Ok::<_, crate::store::StoreError>(
                    sensors
                        .iter()
                        .map(|s| devices::with_health(serde_json::to_value(s).unwrap_or_default(), &samples))
                        .collect::<Vec<_>>(),
                )
            })
            .await?;
        Json(rows).into_response()
    } else {
        Json(sensors).into_response()
    };
    if let Some(cursor) = next {
        let mut link = format!("/v1/sensors?limit={limit}&cursor={}", query_escape(&cursor));
        for (k, v) in [("gatewayId", &p.gateway_id), ("type", &p.sensor_type), ("parentSensorId", &p.parent_sensor_id)] {
            if let Some(v) = v {
                link.push_str(&format!("&{k}={}", query_escape(v)));
            }
        }
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&cursor) {
            h.insert(HeaderName::from_static(NEXT_CURSOR), v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
            h.insert(axum::http::header::LINK, v);
        }
    }
    Ok(resp)
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

/// `?since=` (ms, inclusive) and `?limit=` (1..=1000, default 100) of the events routes.
#[derive(Debug, Deserialize)]
pub struct EventParams {
    pub since: Option<i64>,
    pub limit: Option<u32>,
}

impl EventParams {
    pub fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(EVENTS_DEFAULT_LIMIT);
        if !(1..=EVENTS_MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!("limit must be 1..={EVENTS_MAX_LIMIT}, not {limit}"))
                .with("field", "limit")
                .with("maxLimit", EVENTS_MAX_LIMIT));
        }
        Ok(limit)
    }
}

/// `GET /v1/sensors/{id}/events` and `GET /v1/gateways/{id}/events`.
pub async fn events_of(
    state: &AppState,
    of: devices::EventsOf,
    id: String,
    p: &EventParams,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = p.limit()?;
    let (sid, since) = (id.clone(), p.since);
    let body = state.store.call(move |c| queries::events(c, of, &sid, since, limit)).await?;
    let what = match of {
        devices::EventsOf::Sensor => "sensor",
        devices::EventsOf::Gateway => "gateway",
    };
    body.map(Json).ok_or_else(|| ApiError::not_found(format!("no {what} {id:?}")))
}

async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<EventParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    events_of(&state, devices::EventsOf::Sensor, id, &p).await
}

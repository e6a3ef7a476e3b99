//! `POST /v1/ingest`: the HTTP ingest contract (a CBOR array of raw `[topic, payload]` MQTT messages),
//! served through the same pipeline as MQTT ingest. Used by forwarding shims (`--worker-url`) and by
//! anything that cannot speak MQTT. No MQTT receipts: the answer is the receipt.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use crate::ingest::worker::decode_batch;
use crate::ingest::IngestError;
use crate::state::AppState;

/// Request bodies above this answer 413.
pub use scs_protocol::http_ingest::MAX_BODY;

pub fn routes() -> Router<AppState> {
    // The handler enforces the limit itself (below), before reading anything.
    Router::new().route("/v1/ingest", post(ingest).layer(DefaultBodyLimit::disable()))
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("ingest body over {MAX_BODY} bytes"))
}

async fn ingest(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<serde_json::Value>, ApiError> {
    // Refuse a declared oversize at once, without reading the body.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.is_empty() && !ct.starts_with("application/cbor") && !ct.starts_with("application/octet-stream") {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("expected application/cbor, got {ct}")));
    }
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| too_large())?;
    let messages = decode_batch(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let results = state.ingest.ingest_http(messages).await.map_err(|e| match e {
        IngestError::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ingest is shutting down"),
        IngestError::StoreFailed(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("store failed, retry later: {m}")),
    })?;
    Ok(Json(json!({ "results": results })))
}

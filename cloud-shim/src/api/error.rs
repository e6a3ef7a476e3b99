//! JSON errors: every failure answers `{"error": "..."}` (plus fields that help the caller, such as
//! `requiredScope`) with a fitting status. [`json_errors`] turns the plain-text rejections of axum's own
//! extractors (malformed JSON or query, body too large, wrong method) into the same shape.

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::Response;

pub use crate::http_error::ApiError;

/// Largest plain-text error body rewritten as JSON (axum's rejection texts are a line or two).
const MAX_ERROR_TEXT: usize = 16 * 1024;

/// Response mapper for the whole router: an error response that is not JSON (an extractor rejection, a
/// 405 without body) becomes `{"error": "<its text>"}`, keeping status and other headers.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { text };
    let json = serde_json::json!({ "error": message }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}

//! Building `worker::Response`s: JSON bodies, errors, CORS headers.

use worker::{Headers, Response, Result};

use crate::http::ApiError;

/// A JSON answer with `status`.
pub fn json_response(status: u16, body: &serde_json::Value) -> std::result::Result<Response, ApiError> {
    Response::from_json(body).map(|r| r.with_status(status)).map_err(|e| ApiError::internal(format!("response: {e}")))
}

/// A JSON answer whose body is already JSON text (built by SQLite's JSON functions).
pub fn json_text_response(status: u16, text: String) -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json").map_err(|e| ApiError::internal(format!("response: {e}")))?;
    Response::ok(text)
        .map(|r| r.with_status(status).with_headers(headers))
        .map_err(|e| ApiError::internal(format!("response: {e}")))
}

pub fn error_response(e: &ApiError) -> Result<Response> {
    let mut resp = Response::from_json(&e.body())?.with_status(e.status);
    let h = resp.headers_mut();
    for (k, v) in &e.headers {
        h.set(k, v)?;
    }
    Ok(resp)
}

/// Adds the CORS headers for an allowed origin.
pub fn with_cors(mut resp: Response, allowed_origin: Option<&str>, preflight: bool) -> Result<Response> {
    if let Some(origin) = allowed_origin {
        let h = resp.headers_mut();
        for (k, v) in crate::cors::headers(origin, preflight) {
            h.set(k, &v)?;
        }
    }
    Ok(resp)
}

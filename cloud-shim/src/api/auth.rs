//! Bearer-token authentication: `Authorization: Bearer $SCS_API_TOKEN`, or a 401 JSON error.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::AppState;

/// Compares in time independent of where the strings differ, so the token cannot be guessed byte by byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when the request carries the API token.
pub fn is_authorized(headers: &axum::http::HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()))
}

/// Middleware for every protected route (see `api::router`).
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if is_authorized(req.headers(), &state.api_token) {
        return next.run(req).await;
    }
    let mut resp =
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token (Authorization: Bearer $SCS_API_TOKEN)")
            .into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn bearer_token_checks() {
        let mut h = HeaderMap::new();
        assert!(!is_authorized(&h, "secret"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer secret"));
        assert!(is_authorized(&h, "secret"));
        assert!(!is_authorized(&h, "secreT"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic secret"));
        assert!(!is_authorized(&h, "secret"));
    }
}

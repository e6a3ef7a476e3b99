//! Who is calling. The one place that parses `Authorization` (Bearer and Basic, scheme case-insensitive as
//! RFC 7235 says), resolves an API token to its name and scope, and checks a gateway's own credentials.
//!
//! API tokens: `SCS_API_TOKEN` (an admin token named `env`) and the named tokens of table `api_tokens`
//! (`scs-cloud-shim tokens add`), looked up live on every request by the SHA-256 of the presented token,
//! so `tokens add`/`revoke` from another process apply at once. Scopes are cumulative:
//! `read` < `operate` < `admin`. The middleware runs before any handler, so no body is read for a caller
//! that is not authenticated; safe methods need `read`, every other method `operate`, and handlers ask
//! for `admin` where the action is destructive.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::access::{bearer, constant_time_eq, lookup_token, sha256_hex};
pub use crate::access::{Principal, Scope, ENV_TOKEN_NAME};
use crate::state::AppState;

fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// The caller behind the request's bearer token, or a finished 401/500 response.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Principal, Response> {
    let Some(token) = bearer(headers) else {
        return Err(unauthorized("missing bearer token (Authorization: Bearer <API token>)"));
    };
    let hash = sha256_hex(token.as_bytes());
    if !state.api_token.is_empty() && constant_time_eq(hash.as_bytes(), sha256_hex(state.api_token.as_bytes()).as_bytes()) {
        return Ok(Principal { name: ENV_TOKEN_NAME.to_owned(), scope: Scope::Admin });
    }
    let found = state
        .store
        .call(move |c| lookup_token(c, &hash).map_err(crate::store::StoreError::from))
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    found.ok_or_else(|| unauthorized("invalid or revoked bearer token"))
}

/// Middleware for every route behind an API token (see `api::router`): authenticates, checks the scope the
/// method needs and hands the [`Principal`] to the handler as a request extension. Runs before the
/// handler's extractors, so nothing of the body is read for a refused caller.
pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match resolve(&state, req.headers()).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let needed = if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) { Scope::Read } else { Scope::Operate };
    if let Err(e) = principal.require(needed, &format!("{} {}", req.method(), req.uri().path())) {
        return e.into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Route layer for admin-only routes (gateway provisioning, re-parenting), placed inside `require_token`.
#[allow(dead_code, reason = "for the gateway provisioning routes")]
pub async fn require_admin(req: Request, next: Next) -> Response {
    let action = format!("{} {}", req.method(), req.uri().path());
    match req.extensions().get::<Principal>() {
        Some(p) => match p.require(Scope::Admin, &action) {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        },
        None => unauthorized("missing bearer token (Authorization: Bearer <API token>)"),
    }
}

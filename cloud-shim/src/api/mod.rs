//! HTTP API (axum). Routes behind an API token are merged into `protected`, whose middleware
//! (`auth::require_token`) authenticates and checks the scope before any handler or body extractor runs;
//! routes with their own authorization (health, the public registry, gateway uploads, signed download
//! links) into `public`. JSON is camelCase; every error is `{"error": "..."}` (`error::json_errors`
//! rewrites axum's own plain-text rejections).

pub mod auth;
pub mod enroll;
pub mod error;
pub mod fleet;
pub mod gateways;
pub mod health;
pub mod ingest;
pub mod portal;
pub mod sensors;
pub mod tokens;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::Router;

use crate::state::AppState;

/// Body limit of every route that does not set its own (JSON requests are small).
const DEFAULT_MAX_BODY: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(sensors::routes())
        .merge(ingest::routes())
        .merge(gateways::routes())
        .merge(fleet::routes())
        .merge(crate::commands::api::routes())
        .merge(crate::artifacts::api::operator_routes())
        .merge(crate::releases::api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    let public = Router::new()
        .merge(health::routes())
        // Authenticated by its enrollment token, before the body is read.
        .merge(enroll::routes())
        .merge(crate::artifacts::api::upload_routes())
        // Authorized by the download token in the URL the release offer put in the command.
        .merge(crate::releases::api::download_routes())
        .merge(crate::commands::api::public_routes());
    Router::new()
        .merge(public)
        .merge(protected)
        .fallback(portal::fallback)
        .layer(DefaultBodyLimit::max(DEFAULT_MAX_BODY))
        .layer(middleware::map_response(error::json_errors))
        .with_state(state)
}

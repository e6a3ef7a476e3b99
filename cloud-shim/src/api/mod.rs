//! HTTP API (axum). Routes behind the bearer token are merged into `protected`; routes with their own
//! authorization (health, tokenized artifact links) into `public`. JSON is camelCase; errors are
//! `{"error": "..."}`.

pub mod auth;
pub mod error;
pub mod fleet;
pub mod gateways;
pub mod health;
pub mod ingest;
pub mod portal;
pub mod sensors;

use axum::middleware;
use axum::Router;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(sensors::routes())
        .merge(ingest::routes())
        .merge(gateways::routes())
        .merge(fleet::routes())
        .merge(crate::commands::api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    let public =
        Router::new().merge(health::routes()).merge(crate::artifacts::api::routes()).merge(crate::commands::api::public_routes());
    Router::new().merge(public).merge(protected).fallback(portal::fallback).with_state(state)
}

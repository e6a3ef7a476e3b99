//! Release routes (see `docs/worker-api.openapi.yaml`, tag `releases`):
//!
//! * `GET /v1/releases` (scope `read`) → `{releases: [...]}`, newest first, with `offers` counts.
//! * `POST /v1/gateways/{id}/releases/{version}/offer` (scope `admin`: `agent.update` is destructive)
//!   `{confirm: true, targetTriple?, expiresInSecs? | expiresAt?}` → 201 with the `agent.update`
//!   command and the release offered. 404: no such gateway or version; 409: the gateway is revoked, or
//!   no release of that version is built for the arch its inventory reports.
//! * `GET /v1/releases/{id}/download?token=` (no API token: the token is the authorization) streams the
//!   binary with `Range`, for the agent. The token is an artifact download token bound to the release
//!   and the offer's command.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, FromRef, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{self, ReleaseRow};
use crate::access::{Principal, Scope};
use crate::artifacts::tokens::{now_ms, Claims, Purpose};
use crate::artifacts::Artifacts;
use crate::clock;
use crate::commands::api::{
    confirm_field, create_command, expiry, new_command_id, CommandApi, CommandApiError, CommandRequestBody,
};
use crate::objects::ObjectKey;

/// Command type the offers create.
pub const AGENT_UPDATE: &str = "agent.update";
/// Largest offer body (a few short fields).
const MAX_BODY: usize = 16 * 1024;
/// How long a download URL outlives the command's timeout after its expiry, for a slow last attempt.
const URL_GRACE: Duration = Duration::from_secs(600);

/// What the release routes need: the command API (to create the command) and the artifact service
/// (object store, download tokens, public URL).
#[derive(Clone)]
pub struct ReleasesApi {
    pub commands: CommandApi,
    pub artifacts: Artifacts,
}

/// Routes behind the API-token middleware.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ReleasesApi: FromRef<S>,
{
    Router::new()
        .route("/v1/releases", get(list))
        .route("/v1/gateways/{id}/releases/{version}/offer", post(offer))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The download route, authorized by its token; mount it outside the API-token middleware.
pub fn download_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ReleasesApi: FromRef<S>,
{
    Router::new().route("/v1/releases/{id}/download", get(download))
}

fn store_error(e: impl std::fmt::Display) -> CommandApiError {
    log::error!("release store: {e}");
    CommandApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}"))
}

async fn list(State(api): State<ReleasesApi>) -> Result<Json<Value>, CommandApiError> {
    let rows =
        api.commands.store.call(move |c| store::list(c).map_err(crate::store::StoreError::from)).await.map_err(store_error)?;
    let releases: Vec<Value> = rows
        .iter()
        .map(|(r, offers)| {
            let mut v = r.to_json();
            v["offers"] = json!(offers);
            v
        })
        .collect();
    Ok(Json(json!({ "releases": releases })))
}

/// Facts the offer decision needs, read in one store call.
struct OfferFacts {
    gateway_status: Option<String>,
    arch: Option<String>,
    candidates: Vec<ReleaseRow>,
}

/// Picks the release of `version` for the gateway: the one whose target matches the arch its inventory
/// reports (and `targetTriple` when given); without a reported arch, `targetTriple` or the only one.
fn choose(gateway: &str, version: &str, facts: &OfferFacts, triple: Option<&str>) -> Result<ReleaseRow, CommandApiError> {
    let targets: Vec<&str> = facts.candidates.iter().map(|r| r.target.as_str()).collect();
    match super::pick::choose(gateway, version, facts.arch.as_deref(), &targets, triple) {
        Ok(i) => facts.candidates.get(i).cloned().ok_or_else(|| store_error("chosen build out of range")),
        Err(msg) => Err(CommandApiError::new(StatusCode::CONFLICT, msg)
            .with_details(json!({ "gatewayArch": facts.arch, "targets": targets }))),
    }
}

async fn offer(
    State(api): State<ReleasesApi>,
    Path((gateway, version)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, CommandApiError> {
    // agent.update is destructive: a caller without `admin` learns nothing about gateways or releases.
    if let Err(e) = principal.require(Scope::Admin, "offer a release (agent.update is destructive)") {
        return Ok(e.into_response());
    }
    scs_protocol::ids::validate_id("gateway id", &gateway)
        .map_err(|e| CommandApiError::invalid("gatewayId", "pattern", e.to_string()))?;
    scs_protocol::ids::validate_id("version", &version)
        .map_err(|e| CommandApiError::invalid("version", "pattern", e.to_string()))?;
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| CommandApiError::invalid("body", "json", format!("body is not JSON: {e}")))?
    };
    if !body.is_object() {
        return Err(CommandApiError::invalid("body", "object", "body must be a JSON object"));
    }
    let triple = match body.get("targetTriple") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(CommandApiError::invalid("targetTriple", "type", "targetTriple must be a string")),
    };
    let confirm = confirm_field(&body)?;
    let now = clock::now_ms();
    let expires_at = expiry(&body, now)?;

    let (gw, ver) = (gateway.clone(), version.clone());
    let facts = api
        .commands
        .store
        .call(move |c| -> Result<OfferFacts, crate::store::StoreError> {
            Ok(OfferFacts {
                gateway_status: store::gateway_status(c, &gw)?,
                arch: store::gateway_arch(c, &gw)?,
                candidates: store::by_version(c, &ver)?,
            })
        })
        .await
        .map_err(store_error)?;
    match facts.gateway_status.as_deref() {
        None => return Err(CommandApiError::new(StatusCode::NOT_FOUND, format!("no gateway {gateway}"))),
        Some("active") => {}
        Some(other) => return Err(CommandApiError::new(StatusCode::CONFLICT, format!("gateway {gateway} is {other}"))),
    }
    if facts.candidates.is_empty() {
        return Err(CommandApiError::new(StatusCode::NOT_FOUND, format!("no release {version} (see GET /v1/releases)")));
    }
    let release = choose(&gateway, &version, &facts, triple.as_deref())?;

    // The URL must outlive every moment the agent may still (re)start the download: the command's
    // expiry plus its timeout.
    let timeout_secs = crate::command_registry_gen::COMMANDS
        .iter()
        .find(|c| c.command_type == AGENT_UPDATE)
        .map_or(3600, |c| u64::from(c.timeout_secs));
    let url_expires = u64::try_from(expires_at).unwrap_or(0).saturating_add((timeout_secs + URL_GRACE.as_secs()) * 1000);
    let command_id = new_command_id();
    let token = api.artifacts.signing_key().mint(&Claims {
        purpose: Purpose::Download,
        artifact: release.id.clone(),
        command: command_id.clone(),
        expires_ms: url_expires,
    });
    let url = format!("{}/v1/releases/{}/download?token={token}", api.artifacts.config().public_url, release.id);
    let request = CommandRequestBody {
        gateway: gateway.clone(),
        command_type: AGENT_UPDATE.into(),
        requested_at: now,
        params: json!({
            "version": release.version,
            "url": url,
            "size": release.size,
            "sha256": release.sha256,
            "signature": release.signature,
        }),
        confirm,
        target: None,
        expires_at,
        timeout_secs: None,
    };
    let row = match create_command(&api.commands, &principal, command_id, request).await? {
        Ok(row) => row,
        Err(refused) => return Ok(refused),
    };
    let (cid, rid, gw, by) = (row.id.clone(), release.id.clone(), gateway.clone(), principal.actor());
    let recorded = api
        .commands
        .store
        .call(move |c| store::record_offer(c, &cid, &rid, &gw, &by, now).map_err(crate::store::StoreError::from))
        .await;
    // The command is queued whatever happens here; an error answer would only invite a second offer.
    if let Err(e) = recorded {
        log::error!("release {}: offer to {gateway} (command {}) not recorded: {e}", release.id, row.id);
    }
    log::info!("release {} ({} {}) offered to {gateway} as command {}", release.id, release.version, release.target, row.id);
    let mut v = crate::commands::api::command_json(&row, None);
    v["release"] = release.to_json();
    v["urlExpires"] = json!(url_expires);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[derive(Deserialize)]
struct DownloadQuery {
    token: Option<String>,
}

async fn download(
    State(api): State<ReleasesApi>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Response {
    let refuse = |status: StatusCode, msg: String| (status, Json(json!({ "error": msg }))).into_response();
    let Some(token) = q.token else {
        return refuse(StatusCode::FORBIDDEN, "missing download token".into());
    };
    let art = &api.artifacts;
    if let Err(e) = art.signing_key().verify(&token, Purpose::Download, &id, now_ms()) {
        log::warn!("release {id}: refused download token: {e}");
        return refuse(StatusCode::FORBIDDEN, e.to_string());
    }
    let Ok(key) = ObjectKey::for_release(&id) else {
        return refuse(StatusCode::NOT_FOUND, "no such release".into());
    };
    let lookup = id.clone();
    let row = match api.commands.store.call(move |c| store::get(c, &lookup).map_err(crate::store::StoreError::from)).await {
        Ok(Some(row)) => row,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "no such release".into()),
        Err(e) => {
            log::error!("release {id}: lookup: {e}");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "release lookup failed".into());
        }
    };
    crate::artifacts::api::serve_object(art, &key, &row.as_artifact(), &headers).await
}

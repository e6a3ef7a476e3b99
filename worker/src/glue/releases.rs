//! wasm glue: the release routes ([`crate::releases`]) over R2 (binding `ARTIFACTS`, keys `releases/{id}`),
//! D1 and the gateways' Durable Objects (offers create `agent.update` through them, as any command).

use serde_json::{json, Value as Json};
use worker::{Env, Headers, HttpMetadata, Request, Response};

use super::artifacts::{check_download_token, public_base, serve_object, BUCKET};
use super::sessions::{create_in_session, new_command_id, now};
use crate::artifacts::config::{max_artifact_bytes, signing_key};
use crate::artifacts::store::ArtifactRow;
use crate::artifacts::tokens::{Claims, Purpose};
use crate::auth::{require, Principal, Scope};
use crate::db::SqlError;
use crate::http::ApiError;
use crate::releases::store::{self, ReleaseRow};
use crate::releases::{
    check_body, check_manifest, object_key, parse_public_key, pick, release_id, url_expiry, ReleaseRoute, AGENT_UPDATE,
    MANIFEST_HEADER, MAX_OFFER_BODY, MAX_RELEASE_BYTES, PUBLIC_KEY_SECRET,
};
use crate::sessions::api::{expiry, invalid, parse_create};
use crate::sessions::d1::D1;

type Answer = Result<Response, ApiError>;

fn db(env: &Env) -> Result<D1, ApiError> {
    Ok(D1(env.d1(super::DB).map_err(|e| ApiError::internal(format!("D1 binding: {e}")))?))
}

fn db_err(e: SqlError) -> ApiError {
    ApiError::unavailable(format!("release store: {e}"))
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn content_length(req: &Request) -> Option<u64> {
    header(req, "Content-Length").and_then(|v| v.trim().parse().ok())
}

fn json(status: u16, v: &Json) -> Answer {
    super::json_response(status, v)
}

pub async fn handle(route: ReleaseRoute, req: Request, env: &Env, who: Option<&Principal>) -> Answer {
    match (route, who) {
        (ReleaseRoute::Download(id), _) => download(&req, env, &id).await,
        (ReleaseRoute::List, Some(_)) => list(env).await,
        (ReleaseRoute::Upload, Some(p)) => upload(req, env, p).await,
        (ReleaseRoute::Offer(gw, version), Some(p)) => offer(req, env, p, &gw, &version).await,
        (_, None) => Err(ApiError::internal("release route without a caller")),
    }
}

async fn list(env: &Env) -> Answer {
    let rows = store::list(&db(env)?).await.map_err(db_err)?;
    let releases: Vec<Json> = rows
        .iter()
        .map(|(r, offers)| {
            let mut v = r.to_json();
            v["offers"] = json!(offers);
            v
        })
        .collect();
    json(200, &json!({ "releases": releases }))
}

/// The stored row for the same build (200), or 409 when other bytes hold its version and target.
fn same_or_conflict(existing: ReleaseRow, sha256: &str) -> Answer {
    if existing.sha256 == sha256 {
        let mut v = existing.to_json();
        v["created"] = json!(false);
        json(200, &v)
    } else {
        Err(ApiError::new(
            409,
            format!(
                "release {} ({}) already exists with other bytes (sha256 {})",
                existing.version, existing.target, existing.sha256
            ),
        )
        .with("existing", existing.to_json()))
    }
}

async fn upload(mut req: Request, env: &Env, who: &Principal) -> Answer {
    require(who, Scope::Admin, "add a release")?;
    let secret = env.secret(PUBLIC_KEY_SECRET).map(|s| s.to_string()).unwrap_or_default();
    if secret.trim().is_empty() {
        return Err(ApiError::unavailable(format!("{PUBLIC_KEY_SECRET} is not set: releases cannot be checked")));
    }
    let key = parse_public_key(&secret).map_err(|e| ApiError::unavailable(format!("{PUBLIC_KEY_SECRET}: {e}")))?;
    let max = max_artifact_bytes(env).min(MAX_RELEASE_BYTES);
    // Everything the manifest alone can refuse is refused before the body is read.
    let m = check_manifest(header(&req, MANIFEST_HEADER).as_deref(), content_length(&req), &key, max)?;
    let bytes = req.bytes().await.map_err(|e| ApiError::bad_request(format!("release body: {e}")))?;
    check_body(&m, &bytes)?;
    let db = db(env)?;
    if let Some(existing) = store::by_version_target(&db, &m.version, &m.target).await.map_err(db_err)? {
        return same_or_conflict(existing, &m.sha256);
    }
    let mut rnd = [0u8; 10];
    crate::random::random_bytes(&mut rnd)?;
    let id = release_id(&rnd);
    let row = ReleaseRow {
        id: id.clone(),
        version: m.version.clone(),
        target: m.target.clone(),
        size: m.size,
        sha256: m.sha256.clone(),
        signature: m.signature.clone(),
        file_name: m.file.clone(),
        object_key: object_key(&id),
        created_ms: now(),
    };
    // Bytes first, then the row: a failure in between leaves an unreferenced object, never a row without bytes.
    let bucket = env.bucket(BUCKET).map_err(|e| ApiError::internal(format!("R2 binding {BUCKET}: {e}")))?;
    let meta = HttpMetadata { content_type: Some("application/octet-stream".into()), ..HttpMetadata::default() };
    bucket
        .put(row.object_key.clone(), bytes)
        .http_metadata(meta)
        .execute()
        .await
        .map_err(|e| ApiError::unavailable(format!("release {id}: R2 put: {e}")))?;
    if !store::insert(&db, &row).await.map_err(db_err)? {
        // Another upload of the same version and target won the race.
        if let Err(e) = bucket.delete(row.object_key.clone()).await {
            worker::console_error!("release {id}: deleting an unused object: {e}");
        }
        return match store::by_version_target(&db, &m.version, &m.target).await.map_err(db_err)? {
            Some(existing) => same_or_conflict(existing, &m.sha256),
            None => Err(ApiError::unavailable("a concurrent upload of this release is running; retry")),
        };
    }
    worker::console_log!("release {id} ({} {}) stored: {} bytes, sha256 {}", row.version, row.target, row.size, row.sha256);
    let mut v = row.to_json();
    v["created"] = json!(true);
    json(201, &v)
}

async fn offer(mut req: Request, env: &Env, who: &Principal, gateway: &str, version: &str) -> Answer {
    // agent.update is destructive: a caller without `admin` learns nothing about gateways or releases.
    require(who, Scope::Admin, "offer a release (agent.update is destructive)")?;
    scs_protocol::ids::validate_id("gateway id", gateway).map_err(|e| invalid("gatewayId", "pattern", e.to_string()))?;
    scs_protocol::ids::validate_id("version", version).map_err(|e| invalid("version", "pattern", e.to_string()))?;
    let too_big = || ApiError::new(413, format!("body over {MAX_OFFER_BODY} bytes"));
    if content_length(&req).is_some_and(|n| n > MAX_OFFER_BODY as u64) {
        return Err(too_big());
    }
    let raw = req.bytes().await.map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    if raw.len() > MAX_OFFER_BODY {
        return Err(too_big());
    }
    let body: Json = if raw.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&raw).map_err(|e| invalid("body", "json", format!("body is not JSON: {e}")))?
    };
    if !body.is_object() {
        return Err(invalid("body", "object", "body must be a JSON object"));
    }
    let triple = match body.get("targetTriple") {
        None | Some(Json::Null) => None,
        Some(Json::String(t)) => Some(t.clone()),
        Some(_) => return Err(invalid("targetTriple", "type", "targetTriple must be a string")),
    };
    let confirm = match body.get("confirm") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(invalid("confirm", "type", "confirm must be a boolean")),
    };
    let t = now();
    let expires_at = expiry(&body, t)?;

    let db = db(env)?;
    match store::gateway_status(&db, gateway).await.map_err(db_err)?.as_deref() {
        None => return Err(ApiError::not_found(format!("no gateway {gateway}"))),
        Some("active") => {}
        Some(other) => return Err(ApiError::new(409, format!("gateway {gateway} is {other}"))),
    }
    let candidates = store::by_version(&db, version).await.map_err(db_err)?;
    if candidates.is_empty() {
        return Err(ApiError::not_found(format!("no release {version} (see GET /v1/releases)")));
    }
    let arch = store::gateway_arch(&db, gateway).await.map_err(db_err)?;
    let targets: Vec<&str> = candidates.iter().map(|r| r.target.as_str()).collect();
    let release = match pick::choose(gateway, version, arch.as_deref(), &targets, triple.as_deref()) {
        Ok(i) => candidates.get(i).cloned().ok_or_else(|| ApiError::internal("chosen build out of range"))?,
        Err(msg) => return Err(ApiError::new(409, msg).with("gatewayArch", json!(arch)).with("targets", json!(targets))),
    };

    // The URL must outlive every moment the agent may still (re)start the download: the command's
    // expiry plus its timeout.
    let timeout_secs =
        scs_protocol::registry::find(crate::sessions::registry::COMMANDS, AGENT_UPDATE).map_or(3600, |c| c.timeout_secs);
    let url_expires = url_expiry(expires_at, timeout_secs);
    let command_id = new_command_id()?;
    let token = signing_key(env)?.mint(&Claims {
        purpose: Purpose::Download,
        artifact: release.id.clone(),
        command: command_id.clone(),
        expires_ms: url_expires,
    });
    let base = public_base(env, &req.url().map_err(|e| ApiError::bad_request(e.to_string()))?);
    let url = format!("{base}/v1/releases/{}/download?token={token}", release.id);
    // The command goes through the same checks as any created at POST /v1/gateways/{id}/commands
    // (registry parameters, confirmation), then through the gateway's Durable Object.
    let create = json!({
        "type": AGENT_UPDATE,
        "confirm": confirm,
        "expiresAt": expires_at,
        "params": {
            "version": release.version,
            "url": url,
            "size": release.size,
            "sha256": release.sha256,
            "signature": release.signature,
        },
    });
    let create = serde_json::to_vec(&create).map_err(|e| ApiError::internal(e.to_string()))?;
    let c = parse_create(gateway, &create, t)?;
    let mut resp = create_in_session(env, who, gateway, c, command_id.clone(), t).await?;
    if resp.status_code() != 201 {
        return Ok(resp);
    }
    // The command is queued whatever happens here; an error answer would only invite a second offer.
    if let Err(e) = store::record_offer(&db, &command_id, &release.id, gateway, &who.actor(), t).await {
        worker::console_error!("release {}: offer to {gateway} (command {command_id}) not recorded: {e}", release.id);
    }
    worker::console_log!(
        "release {} ({} {}) offered to {gateway} as command {command_id}",
        release.id,
        release.version,
        release.target
    );
    let text = resp.bytes().await.map_err(|e| ApiError::internal(format!("session answer: {e}")))?;
    let mut v: Json = serde_json::from_slice(&text).map_err(|e| ApiError::internal(format!("session answer: {e}")))?;
    v["release"] = release.to_json();
    v["urlExpires"] = json!(url_expires);
    let fail = |e: worker::Error| ApiError::internal(format!("response: {e}"));
    let headers = Headers::new();
    headers.set("Content-Type", "application/json").map_err(fail)?;
    headers.set("Location", &format!("/v1/commands/{command_id}")).map_err(fail)?;
    Ok(super::json_response(201, &v)?.with_headers(headers))
}

async fn download(req: &Request, env: &Env, id: &str) -> Answer {
    check_download_token(req, env, id)?;
    let Some(row) = store::get(&db(env)?, id).await.map_err(db_err)? else {
        return Err(ApiError::not_found("no such release"));
    };
    let object = ArtifactRow {
        id: row.id.clone(),
        command_id: String::new(),
        name: row.file_name.clone(),
        size: row.size,
        sha256: row.sha256.clone(),
        content_type: "application/octet-stream".into(),
        object_key: row.object_key.clone(),
        created_at: u64::try_from(row.created_ms).unwrap_or(0),
    };
    serve_object(req, env, &object).await
}

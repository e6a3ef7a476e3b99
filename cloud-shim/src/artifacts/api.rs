//! HTTP endpoints for artifacts (see `docs/worker-api.openapi.yaml`, tag `artifacts`):
//!
//! * `POST /v1/uploads/{id}` create (JSON `name`, `size`, `sha256`, `contentType`), idempotent.
//! * `HEAD /v1/uploads/{id}` → `Upload-Offset` (committed bytes) and `Upload-Length`.
//! * `PATCH /v1/uploads/{id}` with `Upload-Offset` and a raw body chunk, streamed to the object store.
//! * `POST /v1/uploads/{id}/finalize` verifies size and SHA-256 (422 and discard on mismatch).
//! * `GET /v1/artifacts/{id}?token=` streams the artifact, honouring a single `Range`.
//! * `POST /v1/artifacts/grants` (API token, `operate`) mints an upload grant for an existing command.
//! * `GET /v1/artifacts?commandId=` (API token, `read`) lists a command's artifacts with download URLs.
//!
//! Upload requests prove two things before any body is read: the gateway's own identity,
//! `Authorization: Basic base64(gateway_id:mqtt_password)` checked against table `gateways`, and the grant,
//! `Upload-Token: <upload token>` bound to (command, artifact). The grant's command must belong to that
//! gateway, so a grant read off the wire is useless to anyone else. These routes are mounted outside the
//! API-token middleware ([`upload_routes`]); the operator routes ([`operator_routes`]) inside it.
//!
//! Committed offset: the length of the staged object after its last fsync. A PATCH appends what arrives;
//! when the body ends — completely, or cut off by a broken connection or a 30 s stall — the bytes that
//! arrived are fsynced before the request answers or ends. HEAD waits for any PATCH in flight on the same
//! upload, so it always reports a durable offset; a client resumes from exactly that offset.

// Handlers return early with a finished `Response`; boxing it would only add noise on a per-request path.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use ring::digest;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::names::{sanitize_content_type, sanitize_name, valid_sha256_hex};
pub use super::range::{parse_range, RangeSpec};
use super::store::{self, ArtifactRow};
use super::tokens::{hex, now_ms, Claims, Purpose, TokenError};
use super::Artifacts;
use crate::access as auth;
use crate::objects::{ObjectError, ObjectKey};

pub const UPLOAD_OFFSET: &str = "upload-offset";
pub const UPLOAD_LENGTH: &str = "upload-length";
/// Header carrying the upload grant's token (the Authorization header carries the gateway's credentials).
pub const UPLOAD_TOKEN: &str = "upload-token";
/// Largest JSON body of a create or grant request (a few short fields).
const MAX_JSON_BODY: usize = 16 * 1024;
/// How long a request waits for another request on the same upload to finish.
const LOCK_WAIT: Duration = Duration::from_secs(20);
/// A PATCH body that sends nothing for this long is treated as cut off.
const BODY_IDLE: Duration = Duration::from_secs(30);
/// Largest `ttlSecs` the grant endpoint accepts (7 days).
const MAX_GRANT_TTL_SECS: u64 = 7 * 24 * 3600;

/// Upload and download routes; mount them outside the API-token middleware (they check the gateway's
/// credentials and the grant, or the signed download URL).
pub fn upload_routes<S>() -> Router<S>
where
    Artifacts: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/v1/uploads/{id}", post(create).head(offset).patch(append))
        .route("/v1/uploads/{id}/finalize", post(finalize))
        .route("/v1/artifacts/{id}", get(download))
        // Handlers read bodies themselves, after authorization: JSON bounded by MAX_JSON_BODY, PATCH
        // streamed to the object store and bounded by the upload's declared size.
        .layer(DefaultBodyLimit::disable())
}

/// Routes for API-token holders; mount them inside the API-token middleware.
pub fn operator_routes<S>() -> Router<S>
where
    Artifacts: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/v1/artifacts/grants", post(grant))
        .route("/v1/artifacts", get(list))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

fn error_with(status: StatusCode, mut body: Value, offset: Option<u64>) -> Response {
    let mut resp = (status, axum::Json(body.take())).into_response();
    if let Some(o) = offset {
        resp.headers_mut().insert(HeaderName::from_static(UPLOAD_OFFSET), HeaderValue::from(o));
    }
    resp
}

fn internal(what: &str, artifact: &str, e: impl std::fmt::Display) -> Response {
    log::error!("artifact {artifact}: {what}: {e}");
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed"))
}

fn token_error(artifact: &str, e: TokenError) -> Response {
    log::warn!("artifact {artifact}: refused token: {e}");
    error(StatusCode::FORBIDDEN, e.to_string())
}

/// Checks the artifact id, the gateway's own credentials, the upload token, and that the token's command
/// belongs to that gateway; returns the object key and the token's claims. Reads no body.
async fn authorize_upload(art: &Artifacts, headers: &HeaderMap, id: &str) -> Result<(ObjectKey, Claims), Response> {
    let key = ObjectKey::for_artifact(id).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    // Credentials first: an anonymous caller learns nothing about the grant.
    let owned_headers = headers.clone();
    let gateway = match art.with_db(move |c| Ok(auth::authenticate_gateway(c, &owned_headers))).await {
        Err(e) => return Err(internal("gateway lookup", id, e)),
        Ok(Err(refused)) => {
            log::warn!("artifact {id}: {refused}");
            return Err(refused.into_response());
        }
        Ok(Ok(g)) => g,
    };
    let Some(token) = headers.get(UPLOAD_TOKEN).and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(error(StatusCode::UNAUTHORIZED, format!("missing upload grant token (header {UPLOAD_TOKEN})")));
    };
    let claims = art.signing_key().verify(token, Purpose::Upload, id, now_ms()).map_err(|e| token_error(id, e))?;
    let command = claims.command.clone();
    match art.with_db(move |c| store::command_gateway(c, &command)).await {
        Err(e) => Err(internal("command lookup", id, e)),
        Ok(Some(owner)) if owner == gateway => Ok((key, claims)),
        Ok(_) => {
            log::warn!("artifact {id}: gateway {gateway} presented a grant of command {}, not its own", claims.command);
            Err(error(StatusCode::FORBIDDEN, "the upload grant belongs to another gateway"))
        }
    }
}

/// The JSON body of a create or grant request, read only now (after authorization) and bounded.
async fn read_json<T: serde::de::DeserializeOwned>(body: Body, what: &str) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, MAX_JSON_BODY)
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, format!("{what} body over {MAX_JSON_BODY} bytes")))?;
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid {what}: {e}")))
}

async fn lock(art: &Artifacts, id: &str) -> Result<tokio::sync::OwnedMutexGuard<()>, Response> {
    match tokio::time::timeout(LOCK_WAIT, art.lock_for(id).lock_owned()).await {
        Ok(g) => Ok(g),
        Err(_) => {
            let mut r = error(StatusCode::CONFLICT, "another request on this upload is still running; retry");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(r)
        }
    }
}

/// [`authorize_upload`] then [`lock`], for handlers that check nothing else in between.
async fn authorize_and_lock(
    art: &Artifacts,
    headers: &HeaderMap,
    id: &str,
) -> Result<(ObjectKey, Claims, tokio::sync::OwnedMutexGuard<()>), Response> {
    let (key, claims) = authorize_upload(art, headers, id).await?;
    let guard = lock(art, id).await?;
    Ok((key, claims, guard))
}

fn offset_headers(offset: u64, length: u64) -> [(HeaderName, HeaderValue); 3] {
    [
        (HeaderName::from_static(UPLOAD_OFFSET), HeaderValue::from(offset)),
        (HeaderName::from_static(UPLOAD_LENGTH), HeaderValue::from(length)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

enum Found {
    Complete(ArtifactRow),
    InProgress(ArtifactRow),
    Missing,
}

async fn find(art: &Artifacts, id: &str) -> Result<Found, Response> {
    let owned = id.to_string();
    let r = art
        .with_db(move |c| {
            if let Some(done) = store::get_artifact(c, &owned)? {
                return Ok(Found::Complete(done));
            }
            Ok(store::get_upload(c, &owned)?.map_or(Found::Missing, Found::InProgress))
        })
        .await;
    r.map_err(|e| internal("metadata lookup", id, e))
}

fn check_command(row: &ArtifactRow, claims: &Claims) -> Result<(), Response> {
    if row.command_id == claims.command {
        Ok(())
    } else {
        Err(error(StatusCode::FORBIDDEN, "token is bound to another command"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    name: String,
    size: u64,
    sha256: String,
    #[serde(default)]
    content_type: Option<String>,
}

async fn create(State(art): State<Artifacts>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let (key, claims) = match authorize_upload(&art, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let req: CreateRequest = match read_json(body, "create request").await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let sha256 = req.sha256.to_ascii_lowercase();
    if !valid_sha256_hex(&sha256) {
        return error(StatusCode::BAD_REQUEST, "sha256 must be 64 hex digits");
    }
    let max = art.config().max_artifact_bytes;
    if req.size > max {
        return error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": format!("artifact of {} bytes exceeds the {max}-byte limit", req.size), "maxBytes": max }),
            None,
        );
    }
    let _guard = match lock(&art, &id).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let row = ArtifactRow {
        id: id.clone(),
        command_id: claims.command.clone(),
        name: sanitize_name(&req.name),
        size: req.size,
        sha256,
        content_type: sanitize_content_type(req.content_type.as_deref().unwrap_or("")),
        object_key: key.as_str().to_string(),
        created_at: now_ms(),
    };
    let same = |other: &ArtifactRow| other.size == row.size && other.sha256 == row.sha256 && other.command_id == row.command_id;
    let location =
        (header::LOCATION, HeaderValue::from_str(&format!("/v1/uploads/{id}")).unwrap_or(HeaderValue::from_static("")));
    match find(&art, &id).await {
        Err(r) => r,
        Ok(Found::Complete(done)) if same(&done) => (
            StatusCode::OK,
            offset_headers(done.size, done.size),
            axum::Json(json!({ "offset": done.size, "complete": true, "artifact": done.to_json() })),
        )
            .into_response(),
        Ok(Found::InProgress(up)) if same(&up) => match art.objects().staged_len(&key).await {
            Ok(Some(len)) => (
                StatusCode::OK,
                offset_headers(len, up.size),
                [location],
                axum::Json(json!({ "offset": len, "complete": false })),
            )
                .into_response(),
            Ok(None) => internal("staged object missing", &id, "no bytes for an upload in progress"),
            Err(e) => internal("object length", &id, e),
        },
        Ok(Found::Complete(_)) | Ok(Found::InProgress(_)) => {
            error(StatusCode::CONFLICT, "an upload with different size or sha256 exists for this artifact")
        }
        Ok(Found::Missing) => {
            if let Err(e) = art.objects().stage(&key).await {
                return internal("staging object", &id, e);
            }
            let insert = row.clone();
            if let Err(e) = art.with_db(move |c| store::insert_upload(c, &insert)).await {
                return internal("recording upload", &id, e);
            }
            log::info!("artifact {id}: upload created for command {} ({} bytes, {})", row.command_id, row.size, row.name);
            (StatusCode::CREATED, offset_headers(0, row.size), [location], axum::Json(json!({ "offset": 0, "complete": false })))
                .into_response()
        }
    }
}

async fn offset(State(art): State<Artifacts>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    // Waiting for an in-flight PATCH makes the reported offset a committed one.
    let (key, claims, _guard) = match authorize_and_lock(&art, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match find(&art, &id).await {
        Err(r) => r,
        Ok(Found::Missing) => StatusCode::NOT_FOUND.into_response(),
        Ok(Found::Complete(done)) => match check_command(&done, &claims) {
            Err(r) => r,
            Ok(()) => (
                StatusCode::OK,
                offset_headers(done.size, done.size),
                [(HeaderName::from_static("upload-complete"), HeaderValue::from_static("1"))],
            )
                .into_response(),
        },
        Ok(Found::InProgress(up)) => {
            if let Err(r) = check_command(&up, &claims) {
                return r;
            }
            match art.objects().staged_len(&key).await {
                Ok(Some(len)) => (StatusCode::OK, offset_headers(len, up.size)).into_response(),
                Ok(None) => internal("staged object missing", &id, "no bytes for an upload in progress"),
                Err(e) => internal("object length", &id, e),
            }
        }
    }
}

/// How a PATCH body ended.
enum BodyEnd {
    Complete,
    Cut(String),
    Stalled,
    BeyondSize,
    WriteFailed(ObjectError),
}

async fn append(State(art): State<Artifacts>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let (key, claims) = match authorize_upload(&art, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(offset) = headers.get(UPLOAD_OFFSET).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()) else {
        return error(StatusCode::BAD_REQUEST, "missing or invalid Upload-Offset header");
    };
    let guard = match lock(&art, &id).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    let up = match find(&art, &id).await {
        Err(r) => return r,
        Ok(Found::Missing) => return error(StatusCode::NOT_FOUND, "no such upload; create it first"),
        Ok(Found::Complete(done)) => {
            return error_with(StatusCode::CONFLICT, json!({ "error": "upload already finalized" }), Some(done.size))
        }
        Ok(Found::InProgress(up)) => up,
    };
    if let Err(r) = check_command(&up, &claims) {
        return r;
    }
    let len = match art.objects().staged_len(&key).await {
        Ok(Some(len)) => len,
        Ok(None) => return internal("staged object missing", &id, "no bytes for an upload in progress"),
        Err(e) => return internal("object length", &id, e),
    };
    if offset != len {
        return error_with(
            StatusCode::CONFLICT,
            json!({ "error": format!("Upload-Offset {offset} does not match the committed offset {len}"), "offset": len }),
            Some(len),
        );
    }
    let declared_len = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|cl| offset.saturating_add(cl) > up.size) {
        return error_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": "chunk goes past the declared size", "offset": len }),
            Some(len),
        );
    }
    let size = up.size;
    // The write runs in its own task holding the lock: if the client vanishes and the server drops this
    // handler, the bytes that arrived are still committed and fsynced before the lock is released.
    let task_art = art.clone();
    let task_id = id.clone();
    let task = tokio::spawn(async move {
        let _guard = guard;
        let mut writer = task_art.objects().begin_append(&key, offset).await?;
        let mut body = body;
        let mut received: u64 = 0;
        let mut end = BodyEnd::Complete;
        loop {
            let frame = match tokio::time::timeout(BODY_IDLE, body.frame()).await {
                Err(_) => {
                    end = BodyEnd::Stalled;
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    end = BodyEnd::Cut(e.to_string());
                    break;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            if offset + received + data.len() as u64 > size {
                end = BodyEnd::BeyondSize;
                break;
            }
            if let Err(e) = writer.write(&data).await {
                end = BodyEnd::WriteFailed(e);
                break;
            }
            received += data.len() as u64;
        }
        let committed = writer.commit().await?;
        if !matches!(end, BodyEnd::Complete) {
            log::info!("artifact {task_id}: PATCH ended early after {received} bytes; committed offset {committed}");
        }
        Ok::<_, ObjectError>((end, committed))
    });
    match task.await {
        Err(e) => internal("append task", &id, e),
        Ok(Err(e)) => internal("append", &id, e),
        Ok(Ok((end, committed))) => {
            let headers = offset_headers(committed, size);
            match end {
                BodyEnd::Complete => (StatusCode::NO_CONTENT, headers).into_response(),
                BodyEnd::BeyondSize => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    headers,
                    axum::Json(json!({ "error": "chunk goes past the declared size", "offset": committed })),
                )
                    .into_response(),
                BodyEnd::Stalled => (
                    StatusCode::REQUEST_TIMEOUT,
                    headers,
                    axum::Json(json!({ "error": "request body stalled", "offset": committed })),
                )
                    .into_response(),
                BodyEnd::Cut(e) => (
                    StatusCode::BAD_REQUEST,
                    headers,
                    axum::Json(json!({ "error": format!("request body cut off: {e}"), "offset": committed })),
                )
                    .into_response(),
                BodyEnd::WriteFailed(e) => {
                    log::error!("artifact {id}: write failed: {e}");
                    (
                        StatusCode::INSUFFICIENT_STORAGE,
                        headers,
                        axum::Json(json!({ "error": "storing the chunk failed", "offset": committed })),
                    )
                        .into_response()
                }
            }
        }
    }
}

async fn finalize(State(art): State<Artifacts>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let (key, claims, _guard) = match authorize_and_lock(&art, &headers, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let up = match find(&art, &id).await {
        Err(r) => return r,
        Ok(Found::Missing) => return error(StatusCode::NOT_FOUND, "no such upload"),
        Ok(Found::Complete(done)) => {
            return match check_command(&done, &claims) {
                Err(r) => r,
                Ok(()) => (StatusCode::OK, axum::Json(done.to_json())).into_response(),
            }
        }
        Ok(Found::InProgress(up)) => up,
    };
    if let Err(r) = check_command(&up, &claims) {
        return r;
    }
    // A crash between moving the object to its final place and recording it leaves the upload row with
    // the bytes already final: verify those instead of failing forever.
    let already_final = match art.objects().staged_len(&key).await {
        Ok(Some(_)) => false,
        Ok(None) => match art.objects().len(&key).await {
            Ok(Some(n)) if n == up.size => true,
            Ok(_) => return internal("staged object missing", &id, "no bytes for an upload in progress"),
            Err(e) => return internal("object length", &id, e),
        },
        Err(e) => return internal("object length", &id, e),
    };
    let len = if already_final {
        up.size
    } else {
        match art.objects().staged_len(&key).await {
            Ok(Some(len)) => len,
            Ok(None) => return internal("staged object missing", &id, "no bytes for an upload in progress"),
            Err(e) => return internal("object length", &id, e),
        }
    };
    if len != up.size {
        return error_with(
            StatusCode::CONFLICT,
            json!({ "error": format!("upload incomplete: {len} of {} bytes committed", up.size), "offset": len }),
            Some(len),
        );
    }
    let reader =
        if already_final { art.objects().read_range(&key, 0, up.size).await } else { art.objects().read_staged(&key).await };
    let actual = match async { sha256_of(reader?, &key).await }.await {
        Ok(h) => h,
        Err(e) => return internal("hashing upload", &id, e),
    };
    if actual != up.sha256 {
        // A corrupt upload is never kept: the client starts over with a fresh create.
        log::warn!("artifact {id}: sha256 mismatch (declared {}, got {actual}); upload discarded", up.sha256);
        // Row first: a crash in between leaves only an orphan object, which the next create replaces.
        let owned = id.clone();
        if let Err(e) = art.with_db(move |c| store::delete_upload(c, &owned)).await {
            return internal("discarding upload", &id, e);
        }
        if let Err(e) = art.objects().delete(&key).await {
            log::error!("artifact {id}: deleting a rejected upload: {e}");
        }
        return error_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "sha256 mismatch; upload discarded", "expected": up.sha256, "actual": actual }),
            None,
        );
    }
    if let Err(e) = art.objects().finalize(&key).await {
        return internal("finalizing object", &id, e);
    }
    let done = up.clone();
    if let Err(e) = art.with_db(move |c| store::complete_upload(c, &done, now_ms())).await {
        return internal("recording artifact", &id, e);
    }
    art.forget_lock(&id);
    log::info!("artifact {id}: finalized for command {} ({} bytes, sha256 {})", up.command_id, up.size, up.sha256);
    (StatusCode::OK, axum::Json(up.to_json())).into_response()
}

async fn sha256_of(mut reader: crate::objects::ObjectReader, key: &ObjectKey) -> Result<String, ObjectError> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await.map_err(|source| ObjectError::Io { key: key.as_str().to_string(), source })?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex(ctx.finish().as_ref()))
}

#[derive(Deserialize)]
struct DownloadQuery {
    token: Option<String>,
}

async fn download(
    State(art): State<Artifacts>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = q.token else {
        return error(StatusCode::FORBIDDEN, "missing download token");
    };
    if let Err(e) = art.signing_key().verify(&token, Purpose::Download, &id, now_ms()) {
        return token_error(&id, e);
    }
    let Ok(key) = ObjectKey::for_artifact(&id) else {
        return error(StatusCode::NOT_FOUND, "no such artifact");
    };
    let row = match find(&art, &id).await {
        Err(r) => return r,
        Ok(Found::Complete(row)) => row,
        Ok(_) => return error(StatusCode::NOT_FOUND, "no such artifact"),
    };
    serve_object(&art, &key, &row, &headers).await
}

/// Streams the finalized object `key` described by `row` (name, SHA-256 as ETag, content type),
/// honouring a single `Range`. The caller has checked the download token.
pub async fn serve_object(art: &Artifacts, key: &ObjectKey, row: &ArtifactRow, headers: &HeaderMap) -> Response {
    let id = row.id.as_str();
    let len = match art.objects().len(key).await {
        Ok(Some(len)) => len,
        Ok(None) => return internal("object missing", id, "metadata without bytes"),
        Err(e) => return internal("object length", id, e),
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map_or(RangeSpec::Full, |v| parse_range(v, len));
    let (status, start, end) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, len),
        RangeSpec::Partial(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        RangeSpec::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                axum::Json(json!({ "error": "range not satisfiable", "size": len })),
            )
                .into_response();
        }
    };
    let reader = match art.objects().read_range(key, start, end).await {
        Ok(r) => r,
        Err(e) => return internal("reading object", id, e),
    };
    let mut resp = Response::new(Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if let Ok(v) = HeaderValue::from_str(&row.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", row.sha256)) {
        h.insert(header::ETAG, v);
    }
    // The name is sanitized to [A-Za-z0-9._+-], so quoting it is safe.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", row.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end.saturating_sub(1))) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantRequest {
    command_id: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    command_id: String,
}

async fn list(State(art): State<Artifacts>, Query(q): Query<ListQuery>) -> Response {
    let base = art.config().public_url.clone();
    let command = q.command_id.clone();
    match art.with_db(move |c| store::list_for_command(c, &command, &base)).await {
        Ok(items) => (StatusCode::OK, axum::Json(json!({ "commandId": q.command_id, "artifacts": items }))).into_response(),
        Err(e) => internal("listing artifacts", &q.command_id, e),
    }
}

/// Mints a grant for an existing command (the API-token middleware checked the `operate` scope). The
/// grant is usable only by the command's gateway.
async fn grant(State(art): State<Artifacts>, body: Body) -> Response {
    let req: GrantRequest = match read_json(body, "grant request").await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(e) = scs_protocol::ids::validate_id("command id", &req.command_id) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    // Absent: the default lifetime. Zero never means "forever": it and anything past the cap are refused.
    let ttl = match req.ttl_secs {
        None => art.config().upload_ttl,
        Some(s) if (1..=MAX_GRANT_TTL_SECS).contains(&s) => Duration::from_secs(s),
        Some(s) => {
            return error_with(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("ttlSecs must be 1..={MAX_GRANT_TTL_SECS}, not {s}"), "field": "ttlSecs" }),
                None,
            )
        }
    };
    let command = req.command_id.clone();
    match art.with_db(move |c| store::command_gateway(c, &command)).await {
        Err(e) => return internal("command lookup", &req.command_id, e),
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no command {:?}", req.command_id)),
        Ok(Some(_)) => {}
    }
    let g = art.mint_upload_grant(&req.command_id, ttl);
    (
        StatusCode::CREATED,
        axum::Json(
            json!({ "url": g.url, "token": g.token, "artifact": g.artifact, "expires": g.expires, "maxBytes": g.max_bytes }),
        ),
    )
        .into_response()
}

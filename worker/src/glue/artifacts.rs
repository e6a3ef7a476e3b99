//! wasm glue: the artifact routes ([`crate::artifacts`]) over R2 (binding `ARTIFACTS`) and D1.
//!
//! Every upload request proves the gateway's credentials (`Authorization: Basic`) and the grant
//! (`Upload-Token`) before any body is read; the grant's command must belong to that gateway. Each PATCH
//! is one R2 multipart part, held in memory while R2 stores it (at most the part size, 5 MiB by default).

use futures_util::StreamExt as _;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use worker::{Bucket, Env, Headers, HttpMetadata, Request, Response, UploadedPart};

pub use crate::artifacts::config::public_base;
use crate::artifacts::config::{max_artifact_bytes, mint_upload_grant, part_bytes, signing_key};
use crate::artifacts::names::{sanitize_content_type, sanitize_name, valid_sha256_hex};
use crate::artifacts::parts::{committed_offset, part_size_for, plan_patch, PatchRefusal};
use crate::artifacts::range::{parse_range, RangeSpec};
use crate::artifacts::store::{self, ArtifactRow, Found, Part, Upload};
use crate::artifacts::tokens::{Claims, Purpose};
use crate::artifacts::{
    ArtifactRoute, DEFAULT_UPLOAD_TTL_MS, MAX_GRANT_TTL_SECS, MAX_JSON_BODY, UPLOAD_LENGTH, UPLOAD_OFFSET, UPLOAD_PART_SIZE,
    UPLOAD_TOKEN,
};
use crate::db::SqlError;
use crate::http::ApiError;
use crate::sessions::d1::D1;

/// R2 bucket binding of the artifact bytes.
pub const BUCKET: &str = "ARTIFACTS";

type Answer = Result<Response, ApiError>;

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn db_err(id: &str) -> impl Fn(SqlError) -> ApiError + '_ {
    move |e| ApiError::unavailable(format!("artifact {id}: metadata store: {e}"))
}

fn r2_err<'a>(what: &'a str, id: &'a str) -> impl Fn(worker::Error) -> ApiError + 'a {
    move |e| ApiError::unavailable(format!("artifact {id}: R2 {what}: {e}"))
}

fn db(env: &Env) -> Result<D1, ApiError> {
    Ok(D1(env.d1(super::DB).map_err(|e| ApiError::internal(format!("D1 binding: {e}")))?))
}

fn bucket(env: &Env) -> Result<Bucket, ApiError> {
    env.bucket(BUCKET).map_err(|e| ApiError::internal(format!("R2 binding {BUCKET}: {e}")))
}

fn object_key(id: &str) -> String {
    format!("artifacts/{id}")
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// A response with a JSON body (or none) and extra headers.
fn reply(status: u16, body: Option<&Json>, headers: &[(&str, String)]) -> Answer {
    let h = Headers::new();
    let fail = |e: worker::Error| ApiError::internal(format!("response: {e}"));
    let resp = match body {
        Some(b) => {
            h.set("Content-Type", "application/json").map_err(fail)?;
            Response::from_bytes(serde_json::to_vec(b).map_err(|e| ApiError::internal(e.to_string()))?).map_err(fail)?
        }
        None => Response::empty().map_err(fail)?,
    };
    h.set("Cache-Control", "no-store").map_err(fail)?;
    for (k, v) in headers {
        h.set(k, v).map_err(fail)?;
    }
    Ok(resp.with_status(status).with_headers(h))
}

fn offset_headers(offset: u64, length: u64, part_size: Option<u64>) -> Vec<(&'static str, String)> {
    let mut h = vec![(UPLOAD_OFFSET, offset.to_string()), (UPLOAD_LENGTH, length.to_string())];
    if let Some(p) = part_size {
        h.push((UPLOAD_PART_SIZE, p.to_string()));
    }
    h
}

fn with_offset(e: ApiError, offset: u64) -> ApiError {
    e.with("offset", offset).header("Upload-Offset", offset.to_string())
}

pub async fn handle(route: ArtifactRoute, req: Request, env: &Env) -> Answer {
    match route {
        ArtifactRoute::Create(id) => create(req, env, &id).await,
        ArtifactRoute::Offset(id) => offset(&req, env, &id).await,
        ArtifactRoute::Append(id) => append(req, env, &id).await,
        ArtifactRoute::Finalize(id) => finalize(&req, env, &id).await,
        ArtifactRoute::Download(id) => download(&req, env, &id).await,
        ArtifactRoute::Grant => grant(req, env).await,
        ArtifactRoute::List => list(&req, env).await,
    }
}

/// Checks the artifact id, the gateway's credentials, the upload token, and that the token's command
/// belongs to that gateway. Reads no body.
async fn authorize_upload(req: &Request, env: &Env, id: &str) -> Result<(D1, Claims), ApiError> {
    scs_protocol::ids::validate_id("artifact id", id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let db = db(env)?;
    // Credentials first: an anonymous caller learns nothing about the grant.
    let unauthenticated = |e: store::GatewayRefusal| {
        worker::console_warn!("artifact {id}: {e}");
        ApiError::new(401, e.to_string()).header("WWW-Authenticate", "Basic realm=\"scs-gateway\"")
    };
    let (gateway, password) = header(req, "Authorization")
        .as_deref()
        .and_then(store::basic)
        .ok_or_else(|| unauthenticated(store::GatewayRefusal::Missing))?;
    let stored = store::gateway_secret(&db, &gateway).await.map_err(db_err(id))?;
    store::check_gateway(&gateway, &password, stored).map_err(unauthenticated)?;
    let token = header(req, UPLOAD_TOKEN).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(ApiError::new(401, format!("missing upload grant token (header {UPLOAD_TOKEN})")));
    };
    let claims = signing_key(env)?.verify(&token, Purpose::Upload, id, now_ms()).map_err(|e| {
        worker::console_warn!("artifact {id}: refused token: {e}");
        ApiError::new(403, e.to_string())
    })?;
    match store::command_gateway(&db, &claims.command).await.map_err(db_err(id))? {
        Some(owner) if owner == gateway => Ok((db, claims)),
        _ => {
            worker::console_warn!(
                "artifact {id}: gateway {gateway} presented a grant of command {}, not its own",
                claims.command
            );
            Err(ApiError::new(403, "the upload grant belongs to another gateway"))
        }
    }
}

fn check_command(row: &ArtifactRow, claims: &Claims) -> Result<(), ApiError> {
    if row.command_id == claims.command {
        Ok(())
    } else {
        Err(ApiError::new(403, "token is bound to another command"))
    }
}

/// A small JSON body, read only after authorization and bounded.
async fn read_json<T: serde::de::DeserializeOwned>(mut req: Request, what: &str) -> Result<T, ApiError> {
    let too_big = || ApiError::new(413, format!("{what} body over {MAX_JSON_BODY} bytes"));
    if header(&req, "Content-Length").and_then(|v| v.trim().parse::<usize>().ok()).is_some_and(|n| n > MAX_JSON_BODY) {
        return Err(too_big());
    }
    let bytes = req.bytes().await.map_err(|e| ApiError::bad_request(format!("{what}: {e}")))?;
    if bytes.len() > MAX_JSON_BODY {
        return Err(too_big());
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

async fn committed(db: &D1, up: &Upload) -> Result<(Vec<Part>, u64), ApiError> {
    let parts = store::parts(db, &up.row.id).await.map_err(db_err(&up.row.id))?;
    let pairs: Vec<(u64, u64)> = parts.iter().map(|p| (p.number, p.size)).collect();
    let offset = committed_offset(&pairs, up.part_size);
    Ok((parts, offset))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    name: String,
    size: u64,
    sha256: String,
    #[serde(default)]
    content_type: Option<String>,
}

async fn create(req: Request, env: &Env, id: &str) -> Answer {
    let (db, claims) = authorize_upload(&req, env, id).await?;
    let body: CreateRequest = read_json(req, "create request").await?;
    let sha256 = body.sha256.to_ascii_lowercase();
    if !valid_sha256_hex(&sha256) {
        return Err(ApiError::bad_request("sha256 must be 64 hex digits"));
    }
    let max = max_artifact_bytes(env);
    if body.size > max {
        return Err(
            ApiError::new(413, format!("artifact of {} bytes exceeds the {max}-byte limit", body.size)).with("maxBytes", max)
        );
    }
    let row = ArtifactRow {
        id: id.to_owned(),
        command_id: claims.command.clone(),
        name: sanitize_name(&body.name),
        size: body.size,
        sha256,
        content_type: sanitize_content_type(body.content_type.as_deref().unwrap_or("")),
        object_key: object_key(id),
        created_at: now_ms(),
    };
    let same = |o: &ArtifactRow| o.size == row.size && o.sha256 == row.sha256 && o.command_id == row.command_id;
    let location = ("Location", format!("/v1/uploads/{id}"));
    match store::find(&db, id).await.map_err(db_err(id))? {
        Found::Complete(done) if same(&done) => reply(
            200,
            Some(&json!({ "offset": done.size, "complete": true, "artifact": done.to_json() })),
            &offset_headers(done.size, done.size, None),
        ),
        Found::InProgress(up) if same(&up.row) => {
            let (_, offset) = committed(&db, &up).await?;
            let mut h = offset_headers(offset, up.row.size, Some(up.part_size));
            h.push(location);
            reply(200, Some(&json!({ "offset": offset, "complete": false, "partSize": up.part_size })), &h)
        }
        Found::Complete(_) | Found::InProgress(_) => {
            Err(ApiError::new(409, "an upload with different size or sha256 exists for this artifact"))
        }
        Found::Missing => {
            let part_size = part_size_for(part_bytes(env), row.size);
            let bucket = bucket(env)?;
            // A zero-byte artifact has no parts: finalize writes an empty object instead.
            let upload_id = if row.size == 0 {
                String::new()
            } else {
                let meta = HttpMetadata { content_type: Some(row.content_type.clone()), ..HttpMetadata::default() };
                let mp = bucket
                    .create_multipart_upload(row.object_key.clone())
                    .http_metadata(meta)
                    .execute()
                    .await
                    .map_err(r2_err("create multipart upload", id))?;
                mp.upload_id().await
            };
            let up = Upload { row: row.clone(), upload_id, part_size };
            if !store::insert_upload(&db, &up, now_ms()).await.map_err(db_err(id))? {
                // Another create of the same artifact won the race: drop ours, the client asks again.
                if !up.upload_id.is_empty() {
                    if let Ok(mp) = bucket.resume_multipart_upload(row.object_key.clone(), up.upload_id.clone()) {
                        let _ = mp.abort().await;
                    }
                }
                return Err(
                    ApiError::unavailable("a concurrent create of this upload is running; retry").header("Retry-After", "1")
                );
            }
            worker::console_log!(
                "artifact {id}: upload created for command {} ({} bytes, parts of {part_size})",
                row.command_id,
                row.size
            );
            let mut h = offset_headers(0, row.size, Some(part_size));
            h.push(location);
            reply(201, Some(&json!({ "offset": 0, "complete": false, "partSize": part_size })), &h)
        }
    }
}

async fn offset(req: &Request, env: &Env, id: &str) -> Answer {
    let (db, claims) = authorize_upload(req, env, id).await?;
    match store::find(&db, id).await.map_err(db_err(id))? {
        Found::Missing => reply(404, None, &[]),
        Found::Complete(done) => {
            check_command(&done, &claims)?;
            let mut h = offset_headers(done.size, done.size, None);
            h.push(("Upload-Complete", "1".into()));
            reply(200, None, &h)
        }
        Found::InProgress(up) => {
            check_command(&up.row, &claims)?;
            let (_, offset) = committed(&db, &up).await?;
            reply(200, None, &offset_headers(offset, up.row.size, Some(up.part_size)))
        }
    }
}

fn refusal(r: PatchRefusal, up: &Upload, committed: u64) -> ApiError {
    let status = match r {
        PatchRefusal::WrongOffset { .. } | PatchRefusal::Complete { .. } => 409,
        PatchRefusal::NoLength => 411,
        PatchRefusal::PastSize { .. } => 413,
        PatchRefusal::WrongPartSize { .. } => 400,
    };
    let mut e = with_offset(ApiError::new(status, r.to_string()), committed)
        .with("partSize", up.part_size)
        .header("Upload-Part-Size", up.part_size.to_string());
    if let PatchRefusal::WrongPartSize { expected, .. } = r {
        e = e.with("expected", expected);
    }
    e
}

async fn append(mut req: Request, env: &Env, id: &str) -> Answer {
    let (db, claims) = authorize_upload(&req, env, id).await?;
    let Some(offset) = header(&req, UPLOAD_OFFSET).and_then(|v| v.trim().parse::<u64>().ok()) else {
        return Err(ApiError::bad_request("missing or invalid Upload-Offset header"));
    };
    let up = match store::find(&db, id).await.map_err(db_err(id))? {
        Found::Missing => return Err(ApiError::not_found("no such upload; create it first")),
        Found::Complete(done) => return Err(with_offset(ApiError::new(409, "upload already finalized"), done.size)),
        Found::InProgress(up) => up,
    };
    check_command(&up.row, &claims)?;
    let (_, committed) = committed(&db, &up).await?;
    let len = header(&req, "Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    let plan = plan_patch(up.row.size, up.part_size, committed, offset, len).map_err(|r| refusal(r, &up, committed))?;
    // The whole part or nothing: a body cut off on the way commits nothing, and the client resumes at
    // this part's start.
    let bytes =
        req.bytes().await.map_err(|e| with_offset(ApiError::bad_request(format!("request body cut off: {e}")), committed))?;
    if bytes.len() as u64 != plan.len {
        return Err(with_offset(
            ApiError::bad_request(format!("body of {} bytes, Content-Length said {}", bytes.len(), plan.len)),
            committed,
        ));
    }
    let bucket = bucket(env)?;
    let mp = bucket
        .resume_multipart_upload(up.row.object_key.clone(), up.upload_id.clone())
        .map_err(r2_err("multipart upload", id))?;
    let part = mp.upload_part(plan.number, bytes).await.map_err(|e| with_offset(r2_err("upload part", id)(e), committed))?;
    let recorded = Part { number: u64::from(plan.number), etag: part.etag(), size: plan.len };
    if !store::insert_part(&db, id, &recorded, now_ms()).await.map_err(db_err(id))? {
        return Err(with_offset(ApiError::new(409, "another request committed this part first"), committed + plan.len));
    }
    reply(204, None, &offset_headers(committed + plan.len, up.row.size, Some(up.part_size)))
}

/// SHA-256 of an R2 object, streamed (memory stays at one chunk).
async fn sha256_of(bucket: &Bucket, key: &str, id: &str) -> Result<(String, u64), ApiError> {
    let obj = bucket
        .get(key)
        .execute()
        .await
        .map_err(r2_err("read", id))?
        .ok_or_else(|| ApiError::internal(format!("artifact {id}: the completed object is missing from R2")))?;
    let body = obj.body().ok_or_else(|| ApiError::internal(format!("artifact {id}: R2 object without a body")))?;
    let mut stream = body.stream().map_err(r2_err("read", id))?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(r2_err("read", id))?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((crate::auth::hex(&h.finalize()), n))
}

async fn finalize(req: &Request, env: &Env, id: &str) -> Answer {
    let (db, claims) = authorize_upload(req, env, id).await?;
    let up = match store::find(&db, id).await.map_err(db_err(id))? {
        Found::Missing => return Err(ApiError::not_found("no such upload")),
        Found::Complete(done) => {
            check_command(&done, &claims)?;
            return reply(200, Some(&done.to_json()), &[]);
        }
        Found::InProgress(up) => up,
    };
    check_command(&up.row, &claims)?;
    let (parts, offset) = committed(&db, &up).await?;
    if offset != up.row.size {
        return Err(with_offset(
            ApiError::new(409, format!("upload incomplete: {offset} of {} bytes committed", up.row.size)),
            offset,
        ));
    }
    let bucket = bucket(env)?;
    let key = up.row.object_key.clone();
    if up.row.size == 0 {
        bucket.put(key.clone(), Vec::<u8>::new()).execute().await.map_err(r2_err("put", id))?;
    } else {
        let mp = bucket.resume_multipart_upload(key.clone(), up.upload_id.clone()).map_err(r2_err("multipart upload", id))?;
        let uploaded: Vec<UploadedPart> =
            parts.iter().map(|p| UploadedPart::new(u16::try_from(p.number).unwrap_or(u16::MAX), p.etag.clone())).collect();
        if let Err(e) = mp.complete(uploaded).await {
            // An earlier finalize may have completed it and stopped before recording: then the object
            // is there with the declared size, and is verified below like any other.
            match bucket.head(key.clone()).await {
                Ok(Some(o)) if o.size() == up.row.size => {}
                _ => return Err(r2_err("complete multipart upload", id)(e)),
            }
        }
    }
    let (actual, len) = sha256_of(&bucket, &key, id).await?;
    if actual != up.row.sha256 || len != up.row.size {
        // A corrupt upload is never kept: the client starts over with a fresh create.
        worker::console_warn!("artifact {id}: sha256 mismatch (declared {}, got {actual}); upload discarded", up.row.sha256);
        store::discard(&db, id).await.map_err(db_err(id))?;
        if let Err(e) = bucket.delete(key).await {
            worker::console_error!("artifact {id}: deleting a rejected upload: {e}");
        }
        return reply(
            422,
            Some(&json!({ "error": "sha256 mismatch; upload discarded", "expected": up.row.sha256, "actual": actual })),
            &[],
        );
    }
    store::complete(&db, &up.row, now_ms()).await.map_err(db_err(id))?;
    worker::console_log!(
        "artifact {id}: finalized for command {} ({} bytes, {} parts)",
        up.row.command_id,
        up.row.size,
        parts.len()
    );
    reply(200, Some(&up.row.to_json()), &[])
}

/// Checks the `?token=` of a download URL of `id` (an artifact or a release); 403 without a valid one.
pub fn check_download_token(req: &Request, env: &Env, id: &str) -> Result<(), ApiError> {
    let url = req.url().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let token = url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return Err(ApiError::new(403, "missing download token"));
    };
    signing_key(env)?.verify(&token, Purpose::Download, id, now_ms()).map_err(|e| {
        worker::console_warn!("download of {id}: refused token: {e}");
        ApiError::new(403, e.to_string())
    })?;
    Ok(())
}

async fn download(req: &Request, env: &Env, id: &str) -> Answer {
    check_download_token(req, env, id)?;
    let row = match store::find(&db(env)?, id).await.map_err(db_err(id))? {
        Found::Complete(row) => row,
        _ => return Err(ApiError::not_found("no such artifact")),
    };
    serve_object(req, env, &row).await
}

/// Streams a stored object from R2, honouring `Range` (one range, as the shim serves it).
pub async fn serve_object(req: &Request, env: &Env, row: &ArtifactRow) -> Answer {
    let id = row.id.as_str();
    let len = row.size;
    let range = header(req, "Range").map_or(RangeSpec::Full, |v| parse_range(&v, len));
    let (status, start, end) = match range {
        RangeSpec::Full => (200, 0, len),
        RangeSpec::Partial(s, e) => (206, s, e),
        RangeSpec::Unsatisfiable => {
            return Err(ApiError::new(416, "range not satisfiable")
                .with("size", len)
                .header("Content-Range", format!("bytes */{len}")))
        }
    };
    let bucket = bucket(env)?;
    let mut get = bucket.get(row.object_key.clone());
    if status == 206 {
        get = get.range(worker::Range::OffsetWithLength { offset: start, length: end - start });
    }
    let obj = get
        .execute()
        .await
        .map_err(r2_err("read", id))?
        .ok_or_else(|| ApiError::internal(format!("artifact {id}: metadata without bytes")))?;
    let body = obj
        .body()
        .ok_or_else(|| ApiError::internal(format!("artifact {id}: R2 object without a body")))?
        .response_body()
        .map_err(r2_err("read", id))?;
    let fail = |e: worker::Error| ApiError::internal(format!("response: {e}"));
    let h = Headers::new();
    h.set("Accept-Ranges", "bytes").map_err(fail)?;
    h.set("Cache-Control", "private, no-store").map_err(fail)?;
    h.set("Content-Type", &row.content_type).map_err(fail)?;
    h.set("ETag", &format!("\"{}\"", row.sha256)).map_err(fail)?;
    // The name is sanitized to [A-Za-z0-9._+-], so quoting it is safe.
    h.set("Content-Disposition", &format!("attachment; filename=\"{}\"", row.name)).map_err(fail)?;
    if status == 206 {
        h.set("Content-Range", &format!("bytes {start}-{}/{len}", end.saturating_sub(1))).map_err(fail)?;
    }
    Ok(Response::from_body(body).map_err(fail)?.with_status(status).with_headers(h))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantRequest {
    command_id: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// Mints a grant for an existing command (the router checked the `operate` scope). The grant is usable
/// only by the command's gateway.
async fn grant(req: Request, env: &Env) -> Answer {
    let base = public_base(env, &req.url().map_err(|e| ApiError::bad_request(e.to_string()))?);
    let body: GrantRequest = read_json(req, "grant request").await?;
    scs_protocol::ids::validate_id("command id", &body.command_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Absent: the default lifetime. Zero never means "forever": it and anything past the cap are refused.
    let ttl_ms = match body.ttl_secs {
        None => DEFAULT_UPLOAD_TTL_MS,
        Some(s) if (1..=MAX_GRANT_TTL_SECS).contains(&s) => s * 1000,
        Some(s) => {
            return Err(
                ApiError::bad_request(format!("ttlSecs must be 1..={MAX_GRANT_TTL_SECS}, not {s}")).with("field", "ttlSecs")
            )
        }
    };
    let db = db(env)?;
    if store::command_gateway(&db, &body.command_id).await.map_err(db_err(&body.command_id))?.is_none() {
        return Err(ApiError::not_found(format!("no command {:?}", body.command_id)));
    }
    let g = mint_upload_grant(env, &base, &body.command_id, now_ms(), ttl_ms)?;
    reply(
        201,
        Some(&json!({ "url": g.url, "token": g.token, "artifact": g.artifact, "expires": g.expires, "maxBytes": g.max_bytes })),
        &[],
    )
}

/// A command's finished artifacts as JSON, each with a fresh download URL when the key is configured.
pub async fn list_json(env: &Env, db: &D1, command_id: &str, base: &str) -> Result<Vec<Json>, ApiError> {
    let rows = store::list_for_command(db, command_id).await.map_err(db_err(command_id))?;
    let key = signing_key(env).ok();
    let now = now_ms();
    Ok(rows
        .iter()
        .map(|row| {
            let mut v = row.to_json();
            if let Some(k) = &key {
                let (url, expires) = k.download_url(base, &row.id, &row.command_id, now);
                v["url"] = json!(url);
                v["urlExpires"] = json!(expires);
            }
            v
        })
        .collect())
}

async fn list(req: &Request, env: &Env) -> Answer {
    let url = req.url().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Some(command) = url.query_pairs().find(|(k, _)| k == "commandId").map(|(_, v)| v.into_owned()) else {
        return Err(ApiError::bad_request("commandId is required"));
    };
    let items = list_json(env, &db(env)?, &command, &public_base(env, &url)).await?;
    reply(200, Some(&json!({ "commandId": command, "artifacts": items })), &[])
}

//! The artifact settings of the Worker's environment: the signing key (secret `SCS_SIGNING_KEY`), the size
//! limit, the part size and the public URL, and minting grants with them. Reads `worker::Env` only; used
//! by the artifact routes and by the Durable Objects that hand grants to agents.

use scs_protocol::UploadGrant;
use worker::{Env, Url};

use super::tokens::{artifact_id, SigningKey, SIGNING_KEY_SECRET};
use super::DEFAULT_MAX_ARTIFACT_BYTES;
use crate::http::ApiError;

/// The artifact signing key; 503 without one.
pub fn signing_key(env: &Env) -> Result<SigningKey, ApiError> {
    let secret = env.secret(SIGNING_KEY_SECRET).map(|s| s.to_string()).ok();
    SigningKey::from_secret(secret.as_deref()).map_err(|e| ApiError::unavailable(e.to_string()))
}

fn var_u64(env: &Env, name: &str) -> Option<u64> {
    env.var(name).ok().and_then(|v| v.to_string().trim().parse().ok())
}

/// Largest accepted artifact (`MAX_ARTIFACT_BYTES`, default 1 GiB).
pub fn max_artifact_bytes(env: &Env) -> u64 {
    var_u64(env, "MAX_ARTIFACT_BYTES").unwrap_or(DEFAULT_MAX_ARTIFACT_BYTES)
}

/// The configured R2 part size (`R2_PART_BYTES`), before [`super::parts::part_size_for`] bounds it.
pub fn part_bytes(env: &Env) -> Option<u64> {
    var_u64(env, "R2_PART_BYTES")
}

/// The API root as clients reach it: `PUBLIC_URL` when set, else the origin the request came to.
pub fn public_base(env: &Env, url: &Url) -> String {
    let configured = env.var("PUBLIC_URL").map(|v| v.to_string()).unwrap_or_default();
    let configured = configured.trim().trim_end_matches('/');
    if configured.is_empty() {
        url.origin().ascii_serialization()
    } else {
        configured.to_owned()
    }
}

/// A fresh artifact id from the platform's CSPRNG.
pub fn new_artifact_id() -> Result<String, ApiError> {
    let mut b = [0u8; 10];
    crate::random::random_bytes(&mut b)?;
    Ok(artifact_id(&b))
}

/// An upload grant for a new artifact of `command_id`, for uploads to `{base}/v1/uploads`.
pub fn mint_upload_grant(
    env: &Env,
    base: &str,
    command_id: &str,
    now_ms: u64,
    valid_for_ms: u64,
) -> Result<UploadGrant, ApiError> {
    let key = signing_key(env)?;
    Ok(key.upload_grant(
        &format!("{base}/v1/uploads"),
        command_id,
        new_artifact_id()?,
        now_ms,
        valid_for_ms,
        max_artifact_bytes(env),
    ))
}

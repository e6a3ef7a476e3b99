//! Artifacts on Cloudflare: the shim's artifact API (`cloud-shim/src/artifacts/`, documented in
//! `docs/worker-api.openapi.yaml`) with the bytes in R2 and the metadata in D1.
//!
//! Uploads map onto R2 multipart uploads: the Worker fixes a part size when the upload is created
//! (announced as `Upload-Part-Size` on create and HEAD), and each PATCH carries exactly one part (the last
//! may be shorter). R2 needs every part but the last to be at least 5 MiB and all of them the same size,
//! which this satisfies by construction. The committed offset is the sum of the committed parts (table
//! `r2_upload_parts`), so an interrupted PATCH restarts at its part boundary. Finalize completes the
//! multipart upload, then streams the object back from R2 through SHA-256: a mismatch deletes it (422).
//!
//! Pure, host-tested: `parts` (part planning), `store` (SQL over [`crate::db::Sql`]),
//! `tokens` (HMAC with RustCrypto), and the shim's own `token_format`, `range` and `names`, compiled here
//! so one format holds for both clouds. `config` reads the Worker's environment (key, limits, public URL);
//! the routes are wasm glue in `crate::glue::artifacts`.

pub mod config;
pub mod parts;
pub mod store;
pub mod tokens;

#[path = "../../../cloud-shim/src/artifacts/names.rs"]
pub mod names;
#[path = "../../../cloud-shim/src/artifacts/range.rs"]
pub mod range;
#[path = "../../../cloud-shim/src/artifacts/rows.rs"]
pub mod rows;
#[path = "../../../cloud-shim/src/artifacts/token_format.rs"]
pub mod token_format;

#[cfg(test)]
mod store_tests;

use crate::method::Method;

/// Header carrying the upload grant's token (the Authorization header carries the gateway's credentials).
pub const UPLOAD_TOKEN: &str = "upload-token";
pub const UPLOAD_OFFSET: &str = "upload-offset";
pub const UPLOAD_LENGTH: &str = "upload-length";
/// The part size every PATCH but the last must carry (this Worker only; the shim takes any chunk).
pub const UPLOAD_PART_SIZE: &str = "upload-part-size";
/// Default largest artifact (413 above it); the `MAX_ARTIFACT_BYTES` variable overrides it.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1 << 30;
/// Lifetime of download URLs.
pub const DOWNLOAD_TTL_MS: u64 = 3_600_000;
/// Default lifetime of grants from `POST /v1/artifacts/grants`.
pub const DEFAULT_UPLOAD_TTL_MS: u64 = 6 * 3_600_000;
/// Largest `ttlSecs` the grant endpoint accepts (7 days), as the shim.
pub const MAX_GRANT_TTL_SECS: u64 = 7 * 24 * 3600;
/// Largest JSON body of a create or grant request.
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// The artifact routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactRoute {
    /// `POST /v1/uploads/{id}`
    Create(String),
    /// `HEAD /v1/uploads/{id}`
    Offset(String),
    /// `PATCH /v1/uploads/{id}`
    Append(String),
    /// `POST /v1/uploads/{id}/finalize`
    Finalize(String),
    /// `GET /v1/artifacts/{id}?token=`
    Download(String),
    /// `POST /v1/artifacts/grants`
    Grant,
    /// `GET /v1/artifacts?commandId=`
    List,
}

impl ArtifactRoute {
    /// Grants and the listing take an API token; uploads prove the gateway's credentials and a grant,
    /// downloads a signed URL, both checked by the handlers before any body is read.
    pub fn needs_api_token(&self) -> bool {
        matches!(self, ArtifactRoute::Grant | ArtifactRoute::List)
    }
}

/// The artifact route for a path, `Err(allowed methods)` for a known path with another method, `None`
/// for other paths.
pub fn route(method: Method, path: &str) -> Option<Result<ArtifactRoute, &'static str>> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match segs.as_slice() {
        ["v1", "uploads", id] => match method {
            Method::Post => Ok(ArtifactRoute::Create((*id).to_owned())),
            Method::Head => Ok(ArtifactRoute::Offset((*id).to_owned())),
            Method::Patch => Ok(ArtifactRoute::Append((*id).to_owned())),
            _ => Err("POST, HEAD, PATCH"),
        },
        ["v1", "uploads", id, "finalize"] => {
            if method == Method::Post {
                Ok(ArtifactRoute::Finalize((*id).to_owned()))
            } else {
                Err("POST")
            }
        }
        ["v1", "artifacts", "grants"] => {
            if method == Method::Post {
                Ok(ArtifactRoute::Grant)
            } else {
                Err("POST")
            }
        }
        ["v1", "artifacts"] => {
            if matches!(method, Method::Get | Method::Head) {
                Ok(ArtifactRoute::List)
            } else {
                Err("GET")
            }
        }
        ["v1", "artifacts", id] => {
            if matches!(method, Method::Get | Method::Head) {
                Ok(ArtifactRoute::Download((*id).to_owned()))
            } else {
                Err("GET")
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths() {
        assert_eq!(route(Method::Post, "/v1/uploads/a-1"), Some(Ok(ArtifactRoute::Create("a-1".into()))));
        assert_eq!(route(Method::Head, "/v1/uploads/a-1"), Some(Ok(ArtifactRoute::Offset("a-1".into()))));
        assert_eq!(route(Method::Patch, "/v1/uploads/a-1"), Some(Ok(ArtifactRoute::Append("a-1".into()))));
        assert_eq!(route(Method::Get, "/v1/uploads/a-1"), Some(Err("POST, HEAD, PATCH")));
        assert_eq!(route(Method::Post, "/v1/uploads/a-1/finalize"), Some(Ok(ArtifactRoute::Finalize("a-1".into()))));
        assert_eq!(route(Method::Get, "/v1/artifacts/a-1"), Some(Ok(ArtifactRoute::Download("a-1".into()))));
        assert_eq!(route(Method::Post, "/v1/artifacts/grants"), Some(Ok(ArtifactRoute::Grant)));
        assert_eq!(route(Method::Get, "/v1/artifacts"), Some(Ok(ArtifactRoute::List)));
        assert_eq!(route(Method::Get, "/v1/sensors"), None);
        assert!(ArtifactRoute::Grant.needs_api_token() && !ArtifactRoute::Append("a".into()).needs_api_token());
    }
}

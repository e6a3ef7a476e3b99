//! A release row as stored (`migrations/0009_releases.sql`) and its JSON view, the same for both clouds:
//! the shim compiles this file as `releases::rows`, the Worker includes it with `#[path]`.

use serde_json::{json, Value};

/// A stored release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRow {
    pub id: String,
    pub version: String,
    pub target: String,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
    pub file_name: String,
    pub object_key: String,
    pub created_ms: i64,
}

pub const COLS: &str = "id, version, target, size, sha256, signature, file_name, object_key, created_ms";

impl ReleaseRow {
    /// JSON of `GET /v1/releases` and of an offer's answer.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "version": self.version,
            "target": self.target,
            "arch": super::pick::arch_of_target(&self.target),
            "size": self.size,
            "sha256": self.sha256,
            "signature": self.signature,
            "fileName": self.file_name,
            "createdAt": self.created_ms,
        })
    }
}

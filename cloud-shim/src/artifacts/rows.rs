//! An artifact's declared metadata as stored (`uploads`, `command_artifacts`) and its JSON view, the
//! same for both clouds: the shim compiles this file as `artifacts::rows`, the Worker includes it with
//! `#[path]`.

use serde_json::{json, Value};

/// Declared metadata of an upload (in progress or finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    pub id: String,
    pub command_id: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
    pub object_key: String,
    pub created_at: u64,
}

impl ArtifactRow {
    /// JSON shape shared by the upload API and the command listing.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "commandId": self.command_id,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "contentType": self.content_type,
        })
    }
}

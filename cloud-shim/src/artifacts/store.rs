//! Artifact metadata in the D1-compatible store (`migrations/0003_artifacts.sql`): `uploads` for uploads in
//! progress, `command_artifacts` for verified ones. Plain synchronous rusqlite; callers on the async side
//! run these in `spawn_blocking`.

use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use serde_json::{json, Value};
use thiserror::Error;

use super::tokens::{now_ms, Claims, Purpose, SigningKey};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("artifact store (artifact {artifact}): {source}")]
    Sql {
        artifact: String,
        #[source]
        source: rusqlite::Error,
    },
}

fn sql(artifact: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sql { artifact: artifact.to_string(), source }
}

pub use super::rows::ArtifactRow;

impl ArtifactRow {
    /// The eight shared columns of `uploads` and `command_artifacts`, in column order (bound as ?1..?8).
    fn column_values(&self) -> [SqlValue; 8] {
        [
            SqlValue::Text(self.id.clone()),
            SqlValue::Text(self.command_id.clone()),
            SqlValue::Text(self.name.clone()),
            SqlValue::Integer(self.size as i64),
            SqlValue::Text(self.sha256.clone()),
            SqlValue::Text(self.content_type.clone()),
            SqlValue::Text(self.object_key.clone()),
            SqlValue::Integer(self.created_at as i64),
        ]
    }

    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArtifactRow> {
        Ok(ArtifactRow {
            id: r.get(0)?,
            command_id: r.get(1)?,
            name: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
            sha256: r.get(4)?,
            content_type: r.get(5)?,
            object_key: r.get(6)?,
            created_at: r.get::<_, i64>(7)? as u64,
        })
    }
}

const COLS: &str = "id, command_id, name, size, sha256, content_type, object_key, created_at";
const UPLOAD_COLS: &str = "artifact_id, command_id, name, size, sha256, content_type, object_key, created_at";

pub fn get_upload(conn: &Connection, id: &str) -> Result<Option<ArtifactRow>, StoreError> {
    conn.query_row(&format!("SELECT {UPLOAD_COLS} FROM uploads WHERE artifact_id = ?1"), [id], ArtifactRow::from_row)
        .optional()
        .map_err(sql(id))
}

pub fn insert_upload(conn: &Connection, row: &ArtifactRow) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO uploads ({UPLOAD_COLS}, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"),
        params_from_iter(row.column_values()),
    )
    .map(drop)
    .map_err(sql(&row.id))
}

pub fn delete_upload(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM uploads WHERE artifact_id = ?1", [id]).map(drop).map_err(sql(id))
}

/// The gateway a command was created for (`None`: no such command). Upload grants are bound to it.
pub fn command_gateway(conn: &Connection, command_id: &str) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT gateway_id FROM commands WHERE id = ?1")
        .and_then(|mut s| s.query_row([command_id], |r| r.get(0)).optional())
        .map_err(sql(command_id))
}

pub fn get_artifact(conn: &Connection, id: &str) -> Result<Option<ArtifactRow>, StoreError> {
    conn.query_row(&format!("SELECT {COLS} FROM command_artifacts WHERE id = ?1"), [id], ArtifactRow::from_row)
        .optional()
        .map_err(sql(id))
}

/// Moves a verified upload into `command_artifacts` in one transaction.
pub fn complete_upload(conn: &mut Connection, row: &ArtifactRow, now: u64) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(sql(&row.id))?;
    tx.execute(
        &format!("INSERT OR IGNORE INTO command_artifacts ({COLS}, completed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params_from_iter(row.column_values().into_iter().chain([SqlValue::Integer(now as i64)])),
    )
    .map_err(sql(&row.id))?;
    tx.execute("DELETE FROM uploads WHERE artifact_id = ?1", [&row.id]).map_err(sql(&row.id))?;
    tx.commit().map_err(sql(&row.id))
}

/// Key and lifetime for the download URLs `list_for_command` hands out; set once by `Artifacts::open`.
static DOWNLOAD_SIGNER: OnceLock<(SigningKey, Duration)> = OnceLock::new();

pub(crate) fn set_download_signer(key: SigningKey, ttl: Duration) {
    // A second open (tests starting two services in one process) keeps the first key on purpose:
    // every service in one process loads the same key from the same env/data dir.
    let _ = DOWNLOAD_SIGNER.set((key, ttl));
}

/// A tokenized, expiring download URL for one artifact. `base_url` is the public API root
/// (`https://cloud.example`); empty gives a URL relative to the API root.
pub fn download_url(key: &SigningKey, ttl: Duration, row: &ArtifactRow, base_url: &str) -> String {
    let token = key.mint(&Claims {
        purpose: Purpose::Download,
        artifact: row.id.clone(),
        command: row.command_id.clone(),
        expires_ms: now_ms().saturating_add(ttl.as_millis() as u64),
    });
    format!("{}/v1/artifacts/{}?token={}", base_url.trim_end_matches('/'), row.id, token)
}

/// Finished artifacts of a command as JSON (`id`, `name`, `size`, `sha256`, `contentType`, `url`,
/// `urlExpires`), oldest first, for `GET /v1/commands/{id}`. Uploads still in progress are not listed.
pub fn list_for_command(conn: &Connection, command_id: &str, base_url: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLS} FROM command_artifacts WHERE command_id = ?1 ORDER BY completed_at, id"))
        .map_err(sql(command_id))?;
    let rows = stmt
        .query_map([command_id], ArtifactRow::from_row)
        .map_err(sql(command_id))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql(command_id))?;
    let signer = DOWNLOAD_SIGNER.get();
    if signer.is_none() && !rows.is_empty() {
        log::warn!("command {command_id}: artifacts listed without download URLs (artifact service not started)");
    }
    Ok(rows
        .iter()
        .map(|row| {
            let mut v = row.to_json();
            if let Some((key, ttl)) = signer {
                v["url"] = json!(download_url(key, *ttl, row, base_url));
                v["urlExpires"] = json!(now_ms().saturating_add(ttl.as_millis() as u64));
            }
            v
        })
        .collect())
}

#[cfg(test)]
pub(crate) fn apply_migration(conn: &Connection) {
    conn.execute_batch(include_str!("../../migrations/0003_artifacts.sql")).expect("migration 0003 applies");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_then_complete_then_list() {
        let mut conn = Connection::open_in_memory().expect("db");
        apply_migration(&conn);
        let row = ArtifactRow {
            id: "a-1".into(),
            command_id: "c-1".into(),
            name: "x.tar.gz".into(),
            size: 3,
            sha256: "0".repeat(64),
            content_type: "application/gzip".into(),
            object_key: "a-1".into(),
            created_at: 1,
        };
        insert_upload(&conn, &row).expect("insert");
        assert_eq!(get_upload(&conn, "a-1").expect("get"), Some(row.clone()));
        assert!(list_for_command(&conn, "c-1", "").expect("list").is_empty());
        complete_upload(&mut conn, &row, 2).expect("complete");
        assert_eq!(get_upload(&conn, "a-1").expect("get"), None);
        assert_eq!(get_artifact(&conn, "a-1").expect("get"), Some(row));
        let list = list_for_command(&conn, "c-1", "https://x").expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["name"], "x.tar.gz");
    }
}

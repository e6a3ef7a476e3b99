//! Release metadata in D1 (`0009_releases.sql`), the same rows the shim's `releases::store` keeps, as
//! SQL over the [`Sql`] trait: D1 in the Worker, rusqlite in the host tests.

use serde_json::Value as Json;

use crate::db::{int, text, Arg, Row, Sql, SqlError, Stmt};

pub use super::rows::ReleaseRow;
use super::rows::COLS;

impl ReleaseRow {
    fn from_row(r: &Row) -> Option<ReleaseRow> {
        Some(ReleaseRow {
            id: text(r, "id")?,
            version: text(r, "version")?,
            target: text(r, "target")?,
            size: u64::try_from(int(r, "size")?).ok()?,
            sha256: text(r, "sha256")?,
            signature: text(r, "signature")?,
            file_name: text(r, "file_name")?,
            object_key: text(r, "object_key")?,
            created_ms: int(r, "created_ms")?,
        })
    }
}

fn rows(found: Vec<Row>) -> Result<Vec<ReleaseRow>, SqlError> {
    found.iter().map(|r| ReleaseRow::from_row(r).ok_or_else(|| SqlError::Db("malformed releases row".into()))).collect()
}

/// Inserts a release; `false` when `(version, target)` (or the id) is already stored.
pub async fn insert(db: &impl Sql, row: &ReleaseRow) -> Result<bool, SqlError> {
    let changed = db
        .batch(vec![Stmt {
            sql:
                "INSERT OR IGNORE INTO releases (id, version, target, size, sha256, signature, file_name, object_key, created_ms)
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            args: vec![
                row.id.as_str().into(),
                row.version.as_str().into(),
                row.target.as_str().into(),
                Arg::Int(row.size as i64),
                row.sha256.as_str().into(),
                row.signature.as_str().into(),
                row.file_name.as_str().into(),
                row.object_key.as_str().into(),
                Arg::Int(row.created_ms),
            ],
        }])
        .await?;
    Ok(changed.first().copied().unwrap_or(0) > 0)
}

pub async fn by_version_target(db: &impl Sql, version: &str, target: &str) -> Result<Option<ReleaseRow>, SqlError> {
    let found = db
        .query(&format!("SELECT {COLS} FROM releases WHERE version = ?1 AND target = ?2"), vec![version.into(), target.into()])
        .await?;
    Ok(rows(found)?.into_iter().next())
}

pub async fn get(db: &impl Sql, id: &str) -> Result<Option<ReleaseRow>, SqlError> {
    let found = db.query(&format!("SELECT {COLS} FROM releases WHERE id = ?1"), vec![id.into()]).await?;
    Ok(rows(found)?.into_iter().next())
}

/// Every target of one version.
pub async fn by_version(db: &impl Sql, version: &str) -> Result<Vec<ReleaseRow>, SqlError> {
    rows(db.query(&format!("SELECT {COLS} FROM releases WHERE version = ?1 ORDER BY target"), vec![version.into()]).await?)
}

/// Every release with how many times it was offered, newest first.
pub async fn list(db: &impl Sql) -> Result<Vec<(ReleaseRow, i64)>, SqlError> {
    let found = db
        .query(
            &format!(
                "SELECT {COLS}, (SELECT count(*) FROM release_offers o WHERE o.release_id = r.id) AS offers
                 FROM releases r ORDER BY r.created_ms DESC, r.version DESC, r.target"
            ),
            vec![],
        )
        .await?;
    found
        .iter()
        .map(|r| {
            let row = ReleaseRow::from_row(r).ok_or_else(|| SqlError::Db("malformed releases row".into()))?;
            Ok((row, int(r, "offers").unwrap_or(0)))
        })
        .collect()
}

pub async fn record_offer(
    db: &impl Sql,
    command_id: &str,
    release_id: &str,
    gateway: &str,
    by: &str,
    now: i64,
) -> Result<(), SqlError> {
    db.batch(vec![Stmt {
        sql: "INSERT OR IGNORE INTO release_offers (command_id, release_id, gateway_id, offered_by, offered_ms)
              VALUES (?1, ?2, ?3, ?4, ?5)",
        args: vec![command_id.into(), release_id.into(), gateway.into(), by.into(), Arg::Int(now)],
    }])
    .await
    .map(drop)
}

/// The gateway's provisioning status (`active` | `revoked`), `None` when it was never provisioned.
pub async fn gateway_status(db: &impl Sql, gateway: &str) -> Result<Option<String>, SqlError> {
    let found = db.query("SELECT status FROM gateways WHERE id = ?1", vec![gateway.into()]).await?;
    Ok(found.first().and_then(|r| text(r, "status")))
}

/// The `arch` the gateway's agent last reported in its inventory (on the gateway's own sensor row).
pub async fn gateway_arch(db: &impl Sql, gateway: &str) -> Result<Option<String>, SqlError> {
    let found = db.query("SELECT attrs FROM sensors WHERE id = ?1 AND gateway_id = ?1", vec![gateway.into()]).await?;
    Ok(found
        .first()
        .and_then(|r| text(r, "attrs"))
        .and_then(|a| serde_json::from_str::<Json>(&a).ok())
        .and_then(|v| v.get("arch").and_then(Json::as_str).map(str::to_owned))
        .filter(|a| !a.is_empty()))
}

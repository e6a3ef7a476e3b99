//! Artifact metadata in D1, with the shim's tables (`0003_artifacts.sql`: `uploads` for uploads in
//! progress, `command_artifacts` for verified ones) plus the R2 multipart state (`0010_r2_uploads.sql`).
//! SQL over the sessions' [`Sql`] trait: D1 in the Worker, rusqlite in the host tests.

use crate::db::{int, text, Arg, Row, Sql, SqlError, Stmt};

pub use super::rows::ArtifactRow;

impl ArtifactRow {
    fn from_row(r: &Row, id_col: &str) -> Option<ArtifactRow> {
        Some(ArtifactRow {
            id: text(r, id_col)?,
            command_id: text(r, "command_id")?,
            name: text(r, "name")?,
            size: u64::try_from(int(r, "size")?).ok()?,
            sha256: text(r, "sha256")?,
            content_type: text(r, "content_type")?,
            object_key: text(r, "object_key")?,
            created_at: u64::try_from(int(r, "created_at")?).ok()?,
        })
    }

    fn args(&self) -> Vec<Arg> {
        vec![
            self.id.as_str().into(),
            self.command_id.as_str().into(),
            self.name.as_str().into(),
            Arg::Int(self.size as i64),
            self.sha256.as_str().into(),
            self.content_type.as_str().into(),
            self.object_key.as_str().into(),
            Arg::Int(self.created_at as i64),
        ]
    }
}

/// An upload in progress and its R2 multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub row: ArtifactRow,
    /// Empty for a zero-byte artifact (no multipart upload: finalize writes an empty object).
    pub upload_id: String,
    pub part_size: u64,
}

/// A committed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u64,
    pub etag: String,
    pub size: u64,
}

/// What the store knows about an artifact id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Complete(ArtifactRow),
    InProgress(Upload),
    Missing,
}

fn bad(what: &str, id: &str) -> SqlError {
    SqlError::Db(format!("artifact {id}: unreadable {what} row"))
}

/// The gateway a command was created for (`None`: no such command). Upload grants are bound to it.
pub async fn command_gateway(db: &impl Sql, command_id: &str) -> Result<Option<String>, SqlError> {
    let rows = db.query("SELECT gateway_id FROM commands WHERE id = ?1", vec![command_id.into()]).await?;
    Ok(rows.first().and_then(|r| text(r, "gateway_id")))
}

/// `(mqtt_password_sha256, status)` of a gateway.
pub async fn gateway_secret(db: &impl Sql, gateway: &str) -> Result<Option<(String, String)>, SqlError> {
    let rows = db.query("SELECT mqtt_password_sha256, status FROM gateways WHERE id = ?1", vec![gateway.into()]).await?;
    Ok(rows.first().and_then(|r| Some((text(r, "mqtt_password_sha256")?, text(r, "status")?))))
}

const COLS: &str = "id, command_id, name, size, sha256, content_type, object_key, created_at";

pub async fn find(db: &impl Sql, id: &str) -> Result<Found, SqlError> {
    let done = db.query(&format!("SELECT {COLS} FROM command_artifacts WHERE id = ?1"), vec![id.into()]).await?;
    if let Some(r) = done.first() {
        return ArtifactRow::from_row(r, "id").map(Found::Complete).ok_or_else(|| bad("command_artifacts", id));
    }
    let up = db
        .query(
            "SELECT u.artifact_id, u.command_id, u.name, u.size, u.sha256, u.content_type, u.object_key, u.created_at, \
             r.upload_id, r.part_size FROM uploads u JOIN r2_uploads r ON r.artifact_id = u.artifact_id \
             WHERE u.artifact_id = ?1",
            vec![id.into()],
        )
        .await?;
    let Some(r) = up.first() else { return Ok(Found::Missing) };
    let row = ArtifactRow::from_row(r, "artifact_id").ok_or_else(|| bad("uploads", id))?;
    let upload_id = text(r, "upload_id").ok_or_else(|| bad("r2_uploads", id))?;
    let part_size = int(r, "part_size").and_then(|p| u64::try_from(p).ok()).ok_or_else(|| bad("r2_uploads", id))?;
    Ok(Found::InProgress(Upload { row, upload_id, part_size }))
}

pub async fn parts(db: &impl Sql, id: &str) -> Result<Vec<Part>, SqlError> {
    let rows = db
        .query("SELECT part_number, etag, size FROM r2_upload_parts WHERE artifact_id = ?1 ORDER BY part_number", vec![id.into()])
        .await?;
    rows.iter()
        .map(|r| {
            Some(Part {
                number: u64::try_from(int(r, "part_number")?).ok()?,
                etag: text(r, "etag")?,
                size: u64::try_from(int(r, "size")?).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("r2_upload_parts", id))
}

/// Records a new upload and its multipart upload in one batch; `false` when the artifact id already has
/// an upload (a concurrent create won).
pub async fn insert_upload(db: &impl Sql, up: &Upload, now: u64) -> Result<bool, SqlError> {
    let mut upload_args = up.row.args();
    upload_args.push(Arg::Int(now as i64));
    let changed = db
        .batch(vec![
            Stmt {
                sql: "INSERT OR IGNORE INTO uploads (artifact_id, command_id, name, size, sha256, content_type, object_key, \
                      created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                args: upload_args,
            },
            Stmt {
                sql: "INSERT INTO r2_uploads (artifact_id, upload_id, part_size, created_at) \
                      SELECT ?1, ?2, ?3, ?4 WHERE changes() = 1",
                args: vec![
                    up.row.id.as_str().into(),
                    up.upload_id.as_str().into(),
                    Arg::Int(up.part_size as i64),
                    Arg::Int(now as i64),
                ],
            },
        ])
        .await?;
    Ok(changed.first() == Some(&1))
}

/// Records a committed part; `false` if that part was already recorded (a concurrent PATCH of the same
/// part committed first: its record stands).
pub async fn insert_part(db: &impl Sql, id: &str, part: &Part, now: u64) -> Result<bool, SqlError> {
    let changed = db
        .batch(vec![
            Stmt {
                sql: "INSERT OR IGNORE INTO r2_upload_parts (artifact_id, part_number, etag, size) VALUES (?1, ?2, ?3, ?4)",
                args: vec![id.into(), Arg::Int(part.number as i64), part.etag.as_str().into(), Arg::Int(part.size as i64)],
            },
            Stmt {
                sql: "UPDATE uploads SET updated_at = ?2 WHERE artifact_id = ?1",
                args: vec![id.into(), Arg::Int(now as i64)],
            },
        ])
        .await?;
    Ok(changed.first() == Some(&1))
}

fn forget_upload(id: &str) -> Vec<Stmt> {
    [
        "DELETE FROM uploads WHERE artifact_id = ?1",
        "DELETE FROM r2_uploads WHERE artifact_id = ?1",
        "DELETE FROM r2_upload_parts WHERE artifact_id = ?1",
    ]
    .into_iter()
    .map(|sql| Stmt { sql, args: vec![id.into()] })
    .collect()
}

/// Moves a verified upload into `command_artifacts` and drops its upload rows, in one transaction.
pub async fn complete(db: &impl Sql, row: &ArtifactRow, now: u64) -> Result<(), SqlError> {
    let mut args = row.args();
    args.push(Arg::Int(now as i64));
    let mut stmts = vec![Stmt {
        sql: "INSERT OR IGNORE INTO command_artifacts (id, command_id, name, size, sha256, content_type, object_key, \
              created_at, completed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        args,
    }];
    stmts.extend(forget_upload(&row.id));
    db.batch(stmts).await.map(drop)
}

/// Forgets an upload (refused at finalize): the client starts over with a fresh create.
pub async fn discard(db: &impl Sql, id: &str) -> Result<(), SqlError> {
    db.batch(forget_upload(id)).await.map(drop)
}

/// Finished artifacts of a command, oldest first.
pub async fn list_for_command(db: &impl Sql, command_id: &str) -> Result<Vec<ArtifactRow>, SqlError> {
    let rows = db
        .query(
            &format!("SELECT {COLS} FROM command_artifacts WHERE command_id = ?1 ORDER BY completed_at, id"),
            vec![command_id.into()],
        )
        .await?;
    rows.iter().map(|r| ArtifactRow::from_row(r, "id").ok_or_else(|| bad("command_artifacts", command_id))).collect()
}

/// Checks HTTP Basic `gateway:password` against the gateway's stored SHA-256 (constant time, and hashed
/// even for an unknown gateway so the answer takes the same time) and its status.
pub fn check_gateway(user: &str, password: &str, stored: Option<(String, String)>) -> Result<(), GatewayRefusal> {
    let presented = crate::auth::sha256_hex(password.as_bytes());
    let (hash, status) = stored.unwrap_or_default();
    if !crate::auth::constant_time_eq(presented.as_bytes(), hash.to_ascii_lowercase().as_bytes()) {
        return Err(GatewayRefusal::Refused { gateway: user.to_owned() });
    }
    if status != "active" {
        return Err(GatewayRefusal::Revoked { gateway: user.to_owned() });
    }
    Ok(())
}

/// `(user, password)` of an `Authorization: Basic` value.
pub fn basic(authorization: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayRefusal {
    #[error("missing gateway credentials (Authorization: Basic base64(gateway_id:mqtt_password))")]
    Missing,
    #[error("unknown gateway {gateway:?} or wrong password")]
    Refused { gateway: String },
    #[error("gateway {gateway:?} is revoked")]
    Revoked { gateway: String },
}

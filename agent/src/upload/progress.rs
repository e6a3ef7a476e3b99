//! Upload progress in `{data_dir}/agent.db`, table `uploads` (owned by this module): everything needed to
//! resume an upload after an agent restart — the grant, the spool file, the declared size and SHA-256.
//! The server's committed offset is the truth; `server_offset` here is only the last one seen, for logs.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use scs_protocol::UploadGrant;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS uploads (
    artifact_id   TEXT PRIMARY KEY,
    command_id    TEXT NOT NULL,
    url           TEXT NOT NULL,
    token         TEXT NOT NULL,
    expires       INTEGER NOT NULL,
    max_bytes     INTEGER NOT NULL,
    path          TEXT NOT NULL,
    name          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    server_offset INTEGER NOT NULL DEFAULT 0,
    sent_bytes    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub command_id: String,
    pub grant: UploadGrant,
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
    pub server_offset: u64,
    pub sent_bytes: u64,
}

pub struct ProgressDb {
    conn: Connection,
}

impl ProgressDb {
    pub fn open(data_dir: &Path) -> Result<ProgressDb, rusqlite::Error> {
        let conn = crate::db::open(&data_dir.join(crate::db::DB_FILE))?;
        conn.execute_batch(SCHEMA)?;
        Ok(ProgressDb { conn })
    }

    /// Records a new upload, or keeps the existing row for the same artifact (a resumed upload).
    pub fn begin(&self, p: &Progress) -> Result<(), rusqlite::Error> {
        let now = crate::clock::now_ms() as i64;
        self.conn.execute(
            "INSERT OR IGNORE INTO uploads (artifact_id, command_id, url, token, expires, max_bytes, path, name, size, sha256,
                content_type, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            params![
                p.grant.artifact,
                p.command_id,
                p.grant.url,
                p.grant.token,
                p.grant.expires as i64,
                p.grant.max_bytes as i64,
                p.path.to_string_lossy(),
                p.name,
                p.size as i64,
                p.sha256,
                p.content_type,
                now
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, artifact: &str) -> Result<Option<Progress>, rusqlite::Error> {
        self.conn.query_row(&format!("SELECT {COLS} FROM uploads WHERE artifact_id = ?1"), [artifact], from_row).optional()
    }

    pub fn all(&self) -> Result<Vec<Progress>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLS} FROM uploads ORDER BY created_at"))?;
        let rows = stmt.query_map([], from_row)?.collect();
        rows
    }

    pub fn record_offset(&self, artifact: &str, server_offset: u64, sent_bytes: u64) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "UPDATE uploads SET server_offset = ?2, sent_bytes = ?3, updated_at = ?4 WHERE artifact_id = ?1",
            params![artifact, server_offset as i64, sent_bytes as i64, crate::clock::now_ms() as i64],
        )?;
        Ok(())
    }

    pub fn finish(&self, artifact: &str) -> Result<(), rusqlite::Error> {
        self.conn.execute("DELETE FROM uploads WHERE artifact_id = ?1", [artifact])?;
        Ok(())
    }
}

const COLS: &str =
    "artifact_id, command_id, url, token, expires, max_bytes, path, name, size, sha256, content_type, server_offset, sent_bytes";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Progress> {
    Ok(Progress {
        grant: UploadGrant {
            artifact: r.get(0)?,
            url: r.get(2)?,
            token: r.get(3)?,
            expires: r.get::<_, i64>(4)? as u64,
            max_bytes: r.get::<_, i64>(5)? as u64,
        },
        command_id: r.get(1)?,
        path: PathBuf::from(r.get::<_, String>(6)?),
        name: r.get(7)?,
        size: r.get::<_, i64>(8)? as u64,
        sha256: r.get(9)?,
        content_type: r.get(10)?,
        server_offset: r.get::<_, i64>(11)? as u64,
        sent_bytes: r.get::<_, i64>(12)? as u64,
    })
}

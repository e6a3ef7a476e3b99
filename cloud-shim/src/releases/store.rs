//! Release metadata (`migrations/0009_releases.sql`): plain synchronous rusqlite, run on the blocking
//! pool by the API and directly by the CLI.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::artifacts::store::ArtifactRow;

pub use super::rows::ReleaseRow;
use super::rows::COLS;

impl ReleaseRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
        Ok(ReleaseRow {
            id: r.get(0)?,
            version: r.get(1)?,
            target: r.get(2)?,
            size: r.get::<_, i64>(3)?.max(0) as u64,
            sha256: r.get(4)?,
            signature: r.get(5)?,
            file_name: r.get(6)?,
            object_key: r.get(7)?,
            created_ms: r.get(8)?,
        })
    }

    /// The download description [`crate::artifacts::api::serve_object`] takes.
    pub fn as_artifact(&self) -> ArtifactRow {
        ArtifactRow {
            id: self.id.clone(),
            command_id: String::new(),
            name: self.file_name.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            content_type: "application/octet-stream".into(),
            object_key: self.object_key.clone(),
            created_at: self.created_ms.max(0) as u64,
        }
    }
}

/// Inserts a release; `Ok(Some(existing))` instead when `(version, target)` is already stored.
pub fn insert(conn: &Connection, row: &ReleaseRow) -> Result<Option<ReleaseRow>, rusqlite::Error> {
    if let Some(existing) = by_version_target(conn, &row.version, &row.target)? {
        return Ok(Some(existing));
    }
    conn.execute(
        &format!("INSERT INTO releases ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            row.id,
            row.version,
            row.target,
            row.size as i64,
            row.sha256,
            row.signature,
            row.file_name,
            row.object_key,
            row.created_ms
        ],
    )?;
    Ok(None)
}

pub fn by_version_target(conn: &Connection, version: &str, target: &str) -> Result<Option<ReleaseRow>, rusqlite::Error> {
    conn.query_row(
        &format!("SELECT {COLS} FROM releases WHERE version = ?1 AND target = ?2"),
        params![version, target],
        ReleaseRow::from_row,
    )
    .optional()
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<ReleaseRow>, rusqlite::Error> {
    conn.query_row(&format!("SELECT {COLS} FROM releases WHERE id = ?1"), [id], ReleaseRow::from_row).optional()
}

/// Every target of one version.
pub fn by_version(conn: &Connection, version: &str) -> Result<Vec<ReleaseRow>, rusqlite::Error> {
    let mut st = conn.prepare(&format!("SELECT {COLS} FROM releases WHERE version = ?1 ORDER BY target"))?;
    let rows = st.query_map([version], ReleaseRow::from_row)?;
    rows.collect()
}

/// Every release with how many times it was offered, newest first.
pub fn list(conn: &Connection) -> Result<Vec<(ReleaseRow, i64)>, rusqlite::Error> {
    let mut st = conn.prepare(&format!(
        "SELECT {}, (SELECT count(*) FROM release_offers o WHERE o.release_id = r.id)
         FROM releases r ORDER BY r.created_ms DESC, r.version DESC, r.target",
        COLS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ")
    ))?;
    let rows = st.query_map([], |r| Ok((ReleaseRow::from_row(r)?, r.get(9)?)))?;
    rows.collect()
}

pub fn record_offer(
    conn: &Connection,
    command_id: &str,
    release_id: &str,
    gateway: &str,
    by: &str,
    now: i64,
) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO release_offers (command_id, release_id, gateway_id, offered_by, offered_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![command_id, release_id, gateway, by, now],
    )
    .map(drop)
}

/// The gateway's provisioning status (`active` | `revoked`), `None` when it was never provisioned.
pub fn gateway_status(conn: &Connection, gateway: &str) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row("SELECT status FROM gateways WHERE id = ?1", [gateway], |r| r.get(0)).optional()
}

/// The `arch` the gateway's agent last reported in its inventory (on the gateway's own sensor row).
pub fn gateway_arch(conn: &Connection, gateway: &str) -> Result<Option<String>, rusqlite::Error> {
    let attrs: Option<Option<String>> =
        conn.query_row("SELECT attrs FROM sensors WHERE id = ?1 AND gateway_id = ?1", [gateway], |r| r.get(0)).optional()?;
    Ok(attrs
        .flatten()
        .and_then(|a| serde_json::from_str::<Value>(&a).ok())
        .and_then(|v| v.get("arch").and_then(Value::as_str).map(str::to_owned))
        .filter(|a| !a.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::TestDir;
    use crate::store::Store;

    fn row(id: &str, version: &str, target: &str) -> ReleaseRow {
        ReleaseRow {
            id: id.into(),
            version: version.into(),
            target: target.into(),
            size: 3,
            sha256: "0".repeat(64),
            signature: "sig".into(),
            file_name: format!("scs-agent-{version}-{target}.update"),
            object_key: format!("releases.{id}"),
            created_ms: 1,
        }
    }

    #[test]
    fn insert_list_offer_and_gateway_facts() {
        let dir = TestDir::new("releases-store");
        let store = Store::open(dir.path()).unwrap();
        let conn = store.connect().unwrap();
        let a = row("rel-a", "1.0.0", "armv7-unknown-linux-gnueabihf");
        assert_eq!(insert(&conn, &a).unwrap(), None);
        assert_eq!(insert(&conn, &row("rel-b", "1.0.0", "armv7-unknown-linux-gnueabihf")).unwrap(), Some(a.clone()));
        assert_eq!(insert(&conn, &row("rel-c", "1.0.0", "aarch64-unknown-linux-gnu")).unwrap(), None);
        assert_eq!(by_version(&conn, "1.0.0").unwrap().len(), 2);
        assert_eq!(get(&conn, "rel-a").unwrap(), Some(a));
        record_offer(&conn, "cmd-1", "rel-a", "gw-1", "token:env", 5).unwrap();
        let listed = list(&conn).unwrap();
        assert_eq!(listed.iter().find(|(r, _)| r.id == "rel-a").map(|(_, n)| *n), Some(1));
        assert_eq!(gateway_status(&conn, "gw-1").unwrap(), None);
        assert_eq!(gateway_arch(&conn, "gw-1").unwrap(), None);
        conn.execute(
            "INSERT INTO sensors (id, type, gateway_id, attrs, created_at, updated_at)
             VALUES ('gw-1', 'EDGE_CONTROLLER', 'gw-1', '{\"arch\":\"arm\"}', 1, 1)",
            [],
        )
        .unwrap();
        assert_eq!(gateway_arch(&conn, "gw-1").unwrap().as_deref(), Some("arm"));
    }
}

//! The `gateways` table: provisioning (`add`), revocation, listing, and the live lookups the broker's
//! authentication hook and uplink verification make.
//!
//! `gateways add`/`revoke` run as separate processes while `serve` runs, so [`Registry`] keeps a copy of
//! the table and reloads it whenever SQLite's `data_version` says another connection committed (checked
//! at most every [`RECHECK`]): a revocation is in force within that time, without a restart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::IdentityError;

/// How stale the in-memory copy may be.
const RECHECK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEntry {
    pub public_key: [u8; 32],
    pub mqtt_password_sha256: String,
    pub active: bool,
}

/// One row of `gateways list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRow {
    pub id: String,
    pub status: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// Live view of the `gateways` table for the serving process. Clone is cheap.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    conn: Connection,
    data_version: Option<i64>,
    checked: Option<Instant>,
    gateways: HashMap<String, GatewayEntry>,
}

impl Inner {
    /// Reloads the copy if another connection committed since the last check. `force` skips the
    /// [`RECHECK`] throttle (used on a miss, so a gateway added a moment ago is found at once; the check
    /// is one cheap pragma unless something changed).
    fn refresh(&mut self, force: bool) -> Result<(), rusqlite::Error> {
        if !force && self.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return Ok(());
        }
        self.checked = Some(Instant::now());
        let v: i64 = self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version == Some(v) {
            return Ok(());
        }
        let mut st = self.conn.prepare_cached("SELECT id, public_key, mqtt_password_sha256, status FROM gateways")?;
        let rows = st.query_map([], |r| {
            let key: Vec<u8> = r.get(1)?;
            let status: String = r.get(3)?;
            Ok((r.get::<_, String>(0)?, key, r.get::<_, String>(2)?, status))
        })?;
        let mut map = HashMap::new();
        for row in rows {
            let (id, key, pw, status) = row?;
            // A malformed key cannot verify anything: the gateway stays unknown.
            let Ok(public_key) = <[u8; 32]>::try_from(key.as_slice()) else {
                log::error!("gateway {id}: stored public key is {} bytes, not 32; ignored", key.len());
                continue;
            };
            map.insert(id, GatewayEntry { public_key, mqtt_password_sha256: pw, active: status == "active" });
        }
        drop(st);
        self.gateways = map;
        self.data_version = Some(v);
        Ok(())
    }
}

impl Registry {
    /// Opens its own connection to `{data_dir}/scs.db` (the store must have migrated it).
    pub fn open(db: &Path) -> Result<Registry, IdentityError> {
        let conn = Connection::open(db).map_err(IdentityError::Sqlite)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(IdentityError::Sqlite)?;
        let mut inner = Inner { conn, data_version: None, checked: None, gateways: HashMap::new() };
        inner.refresh(true).map_err(IdentityError::Sqlite)?;
        Ok(Registry { inner: Arc::new(Mutex::new(inner)) })
    }

    /// The gateway's current entry (active or revoked), `None` if it was never provisioned. On a
    /// database error the last copy answers, so a busy database does not lock every gateway out.
    pub fn lookup(&self, gateway: &str) -> Option<GatewayEntry> {
        let mut inner = self.inner.lock().ok()?;
        let force = !inner.gateways.contains_key(gateway);
        if let Err(e) = inner.refresh(force) {
            log::warn!("gateway registry refresh failed (answering from the last copy): {e}");
        }
        inner.gateways.get(gateway).cloned()
    }

    /// The public key of an active gateway.
    #[cfg(test)]
    pub fn active_key(&self, gateway: &str) -> Option<[u8; 32]> {
        self.lookup(gateway).filter(|e| e.active).map(|e| e.public_key)
    }

    /// Number of gateways in the table (active or revoked).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|mut i| {
                let _ = i.refresh(true);
                i.gateways.len()
            })
            .unwrap_or(0)
    }
}

/// Why `gateways add` refused.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("gateway {0} already exists and is active (revoke it first to re-provision)")]
    Exists(String),
    #[error("gateway limit reached: {limit} gateways provisioned (raise --max-gateways)")]
    Limit { limit: usize },
    #[error("invalid gateway id {id:?}: {source}")]
    InvalidId { id: String, source: scs_protocol::ProtocolError },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Inserts (or re-provisions a revoked) gateway in one immediate transaction.
pub fn add(
    conn: &mut Connection,
    id: &str,
    public_key: &[u8; 32],
    password_sha256: &str,
    now: i64,
    max_gateways: usize,
) -> Result<(), AddError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    add_in(&tx, id, public_key, password_sha256, now, max_gateways)?;
    tx.commit()?;
    Ok(())
}

/// [`add`] inside the caller's transaction (enrollment records the token's use in the same one).
pub fn add_in(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    public_key: &[u8; 32],
    password_sha256: &str,
    now: i64,
    max_gateways: usize,
) -> Result<(), AddError> {
    scs_protocol::ids::validate_id("gateway id", id).map_err(|source| AddError::InvalidId { id: id.to_owned(), source })?;
    let status: Option<String> = tx.query_row("SELECT status FROM gateways WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    match status.as_deref() {
        Some("active") => return Err(AddError::Exists(id.to_owned())),
        Some(_) => {}
        None => {
            let n: i64 = tx.query_row("SELECT count(*) FROM gateways", [], |r| r.get(0))?;
            if usize::try_from(n).unwrap_or(usize::MAX) >= max_gateways {
                return Err(AddError::Limit { limit: max_gateways });
            }
        }
    }
    tx.execute(
        "INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms, revoked_ms)
         VALUES (?1, ?2, ?3, 'active', ?4, NULL)
         ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key,
             mqtt_password_sha256 = excluded.mqtt_password_sha256, status = 'active',
             created_ms = excluded.created_ms, revoked_ms = NULL",
        params![id, public_key.as_slice(), password_sha256, now],
    )?;
    Ok(())
}

/// Marks a gateway revoked; `false` if there is no such active gateway.
pub fn revoke(conn: &Connection, id: &str, now: i64) -> Result<bool, rusqlite::Error> {
    let n = conn.execute(
        "UPDATE gateways SET status = 'revoked', revoked_ms = ?2 WHERE id = ?1 AND status = 'active'",
        params![id, now],
    )?;
    Ok(n == 1)
}

pub fn list(conn: &Connection) -> Result<Vec<GatewayRow>, rusqlite::Error> {
    let mut st = conn.prepare("SELECT id, status, created_ms, revoked_ms FROM gateways ORDER BY id")?;
    let rows =
        st.query_map([], |r| Ok(GatewayRow { id: r.get(0)?, status: r.get(1)?, created_ms: r.get(2)?, revoked_ms: r.get(3)? }))?;
    rows.collect()
}

/// Is `id` a provisioned gateway (active or revoked)? Sensors with such an id belong to that gateway only.
pub fn is_gateway(conn: &Connection, id: &str) -> Result<bool, rusqlite::Error> {
    Ok(conn.prepare_cached("SELECT 1 FROM gateways WHERE id = ?1")?.query_row([id], |_| Ok(())).optional()?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::TestDir;
    use crate::store::Store;

    #[test]
    fn add_revoke_and_live_lookup_from_another_connection() {
        let dir = TestDir::new("registry");
        let store = Store::open(dir.path()).unwrap();
        let reg = Registry::open(store.path()).unwrap();
        assert_eq!(reg.lookup("gw-1"), None);
        let mut other = store.connect().unwrap();
        add(&mut other, "gw-1", &[7; 32], "ab", 1, 10).unwrap();
        assert!(matches!(add(&mut other, "gw-1", &[7; 32], "ab", 1, 10), Err(AddError::Exists(_))));
        std::thread::sleep(RECHECK + Duration::from_millis(20));
        assert_eq!(reg.active_key("gw-1"), Some([7; 32]));
        assert!(revoke(&other, "gw-1", 2).unwrap());
        assert!(!revoke(&other, "gw-1", 3).unwrap(), "already revoked");
        std::thread::sleep(RECHECK + Duration::from_millis(20));
        assert_eq!(reg.active_key("gw-1"), None);
        assert!(!reg.lookup("gw-1").unwrap().active);
        // Re-provisioning a revoked gateway replaces its credentials.
        add(&mut other, "gw-1", &[8; 32], "cd", 4, 10).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(20));
        assert_eq!(reg.active_key("gw-1"), Some([8; 32]));
        let rows = list(&other).unwrap();
        assert_eq!((rows.len(), rows[0].status.as_str()), (1, "active"));
    }

    #[test]
    fn limit_and_invalid_ids_are_refused() {
        let dir = TestDir::new("registry-limit");
        let store = Store::open(dir.path()).unwrap();
        let mut c = store.connect().unwrap();
        add(&mut c, "gw-1", &[1; 32], "x", 1, 1).unwrap();
        assert!(matches!(add(&mut c, "gw-2", &[1; 32], "x", 1, 1), Err(AddError::Limit { limit: 1 })));
        assert!(matches!(add(&mut c, "bad/id", &[1; 32], "x", 1, 5), Err(AddError::InvalidId { .. })));
    }
}

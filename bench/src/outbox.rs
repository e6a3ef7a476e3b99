//! Filling an agent's outbox from outside, exactly as its queue stores messages (`agent/src/queue.rs`:
//! `outbox(seq, kind, created_ms, size, payload)` and `meta.next_seq`), so a backlog of realistic batches
//! exists before the agent starts. The agent creates the same tables with IF NOT EXISTS.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection};
use scs_protocol::TopicKind;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

pub fn open(path: &Path) -> Result<Connection, String> {
    let c = Connection::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    c.busy_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Writes `payloads` as telemetry rows with seqs 1..=n into a fresh outbox and sets `meta.next_seq`.
pub fn prefill(path: &Path, payloads: impl Iterator<Item = (u64, Vec<u8>)>) -> Result<u64, String> {
    let mut c = open(path)?;
    c.execute_batch("PRAGMA journal_mode=WAL;").map_err(|e| e.to_string())?;
    c.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
    let tx = c.transaction().map_err(|e| e.to_string())?;
    let mut last = 0;
    {
        let mut st = tx
            .prepare("INSERT INTO outbox (seq, kind, created_ms, size, payload) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(|e| e.to_string())?;
        for (seq, payload) in payloads {
            st.execute(params![seq as i64, TopicKind::Telemetry.code(), 0i64, payload.len() as i64, payload])
                .map_err(|e| format!("insert seq {seq}: {e}"))?;
            last = seq;
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('next_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [last as i64 + 1],
    )
    .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())?;
    Ok(last)
}

/// Rows still queued.
pub fn depth(c: &Connection) -> Result<u64, String> {
    c.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(|e| e.to_string())
}

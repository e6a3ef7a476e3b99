//! The agent's outbox seen from outside, as `agent/src/queue.rs` keeps it: `outbox(seq, kind, created_ms,
//! size, payload)` and the seq counter `meta.next_seq`. Tests and benches read it to check what was
//! committed, and fill it to give an agent a backlog before it starts.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

/// The tables as the agent creates them (IF NOT EXISTS on both sides, so either may come first).
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

/// Seqs in the agent's outbox at `db` right now, empty while the file cannot be read yet. Read-only:
/// WAL lets a test read while the agent writes.
pub fn outbox_seqs(db: &Path) -> BTreeSet<u64> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return BTreeSet::new();
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let Ok(mut st) = conn.prepare("SELECT seq FROM outbox") else { return BTreeSet::new() };
    st.query_map([], |r| r.get::<_, i64>(0))
        .map(|rows| rows.filter_map(Result::ok).map(|s| s as u64).collect())
        .unwrap_or_default()
}

/// The agent's seq counter: every seq below it was committed (none is ever reused). As the queue itself
/// computes it: `meta.next_seq` is written when receipts delete rows, and max(outbox.seq) + 1 covers the
/// rows enqueued since.
pub fn outbox_next_seq(c: &Connection) -> rusqlite::Result<u64> {
    let meta: Option<i64> = c.query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| r.get(0)).optional()?;
    let max: Option<i64> = c.query_row("SELECT max(seq) FROM outbox", [], |r| r.get(0))?;
    Ok((meta.unwrap_or(1).max(max.map_or(0, |m| m + 1)) as u64).max(1))
}

/// Appends `count` messages of `kind` (`TopicKind::code()`) to the outbox in `db` (created if missing)
/// exactly as the agent's queue commits them: seqs continue from its counter and `meta.next_seq` advances
/// in the same transaction. `payload(seq)` encodes each message. Returns the first and last seq. The agent
/// must not be running.
pub fn append_to_outbox(
    db: &Path,
    kind: u8,
    count: u64,
    created_ms: i64,
    mut payload: impl FnMut(u64) -> Vec<u8>,
) -> rusqlite::Result<(u64, u64)> {
    let mut c = Connection::open(db)?;
    c.busy_timeout(Duration::from_secs(5))?;
    // The agent's page size (agent/src/db.rs), so it need not rewrite the file when it starts.
    c.execute_batch("PRAGMA page_size=1024; PRAGMA journal_mode=WAL;")?;
    c.execute_batch(SCHEMA)?;
    let tx = c.transaction()?;
    let first = outbox_next_seq(&tx)?;
    {
        let mut st = tx.prepare("INSERT INTO outbox (seq, kind, created_ms, size, payload) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for seq in first..first + count {
            let p = payload(seq);
            st.execute(params![seq as i64, kind, created_ms, p.len() as i64, p])?;
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('next_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(first + count) as i64],
    )?;
    tx.commit()?;
    Ok((first, first + count - 1))
}

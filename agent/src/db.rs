//! Opening `{data_dir}/agent.db`. Every module (queue, settings, commands, uploads) opens its own
//! connection to the same file with the same pragmas, and owns its own tables.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// File name of the agent's database inside `data_dir`.
pub const DB_FILE: &str = "agent.db";

/// Opens (creating if needed) the database in WAL mode with a 5 s busy timeout.
pub fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL: readers never block the writer, and a commit is one append to the log.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("{}: journal_mode is {mode}, not WAL", path.display());
    }
    // A small page cache per connection: the agent keeps several connections open and its RSS
    // budget is a few MiB; the outbox is read mostly sequentially, so 256 KiB each is plenty.
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-256;")?;
    Ok(conn)
}

/// Moves a damaged database (and its WAL/SHM files) aside as `agent.db.corrupt-{ms}` so the agent
/// can start with a fresh one instead of failing at every restart. Returns the new name.
pub fn quarantine(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let stamp = crate::clock::now_ms();
    let aside = path.with_file_name(format!("{}.corrupt-{stamp}", path.file_name().and_then(|n| n.to_str()).unwrap_or(DB_FILE)));
    std::fs::rename(path, &aside)?;
    for ext in ["-wal", "-shm"] {
        let side = std::path::PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{ext}", aside.display()))?;
        }
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_recognised_and_moved_aside() {
        let dir = std::env::temp_dir().join(format!("scs-db-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(DB_FILE);
        std::fs::write(&p, vec![0x42u8; 8192]).unwrap();
        let opts = crate::queue::QueueOptions { max_rows: 10, max_bytes: 1 << 20, sync: crate::config::SyncMode::Normal };
        let err = crate::queue::Queue::open(&p, opts).err().expect("garbage is not a database");
        assert!(err.is_corrupt(), "{err}");
        let aside = quarantine(&p).unwrap();
        assert!(aside.exists() && !p.exists());
        assert!(crate::queue::Queue::open(&p, opts).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

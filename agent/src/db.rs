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
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
    Ok(conn)
}

//! Reading the agent's outbox and the shim's store while a benchmark runs (filling the outbox is
//! `scs_testkit::append_to_outbox`).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub fn open(path: &Path) -> Result<Connection, String> {
    let c = Connection::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    c.busy_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    Ok(c)
}

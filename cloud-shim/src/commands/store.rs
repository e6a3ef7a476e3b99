//! Stub of the command store (engineer C replaces it): ingest calls `apply_update` for every
//! `CommandUpdate` inside its group transaction.

use scs_protocol::CommandUpdate;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CommandStoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Applies a gateway's command update inside the ingest transaction. The stub stores nothing.
pub fn apply_update(_tx: &rusqlite::Transaction<'_>, _gateway: &str, _update: &CommandUpdate) -> Result<(), CommandStoreError> {
    Ok(())
}

//! Commands: the HTTP API (`api`), the store of commands and their audit trail (`store`, called by
//! ingest for every `CommandUpdate`), the per-gateway delivery task (`session`), and JSON <-> wire value
//! conversion (`value_json`). Validation uses the generated registry (`crate::command_registry_gen`).
//! Each part takes narrow handles (the store, the MQTT client, presence, the artifact service), never
//! the whole application state, so this module does not depend on `crate::state`.

pub mod api;
pub mod rows;
pub mod session;
pub mod store;
pub mod value_json;

use rusqlite::Connection;
use serde_json::Value as Json;

pub use session::Sessions;

/// Artifacts stored for a command, with signed download URLs; `None` (nothing uploaded, or the
/// lookup failed) falls back to the metadata the agent reported.
pub fn artifact_list(conn: &Connection, command_id: &str, base_url: &str) -> Option<Json> {
    match crate::artifacts::store::list_for_command(conn, command_id, base_url) {
        Ok(list) if !list.is_empty() => Some(Json::Array(list)),
        Ok(_) => None,
        Err(e) => {
            log::error!("artifacts of command {command_id}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::command_registry_gen::{COMMANDS, REGISTRY_JSON};

    #[test]
    fn generated_registry_is_consistent_and_served_json_matches_it() {
        scs_protocol::registry::check_registry(COMMANDS).unwrap();
        let served: serde_json::Value = serde_json::from_str(REGISTRY_JSON).unwrap();
        let types: Vec<&str> = served.as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        let table: Vec<&str> = COMMANDS.iter().map(|c| c.command_type).collect();
        assert_eq!(types, table);
    }
}

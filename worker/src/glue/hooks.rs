//! Where ingest hands over what belongs to other parts of the Worker.

use scs_protocol::CommandUpdate;
use worker::Env;

/// Applies command updates that arrived through ingest, in order, with their gateway; one result per
/// update (`Err(reason)` counts a `command_update` rejection). Called before the consumer's D1 batch
/// commits, so an update may be applied again when the batch is retried: the command state only moves
/// forward, which makes a repeat harmless.
pub async fn command_updates(env: &Env, updates: &[(String, CommandUpdate)]) -> Vec<Result<(), String>> {
    let mut out = Vec::with_capacity(updates.len());
    for (gateway, u) in updates {
        out.push(crate::glue::sessions::apply_command_update(env, gateway, u).await.map(|_| ()).map_err(|e| e.to_string()));
    }
    out
}

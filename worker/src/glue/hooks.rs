//! Where ingest hands over what belongs to other parts of the Worker.

use scs_protocol::CommandUpdate;
use worker::Env;

/// Applies command updates that arrived through ingest, in order, with their gateway; one result per
/// update (`Err(reason)` counts a `command_update` rejection). Called before the consumer's D1 batch
/// commits, so an update may be applied again when the batch is retried: the command state only moves
/// forward, which makes a repeat harmless.
pub async fn command_updates(_env: &Env, updates: &[(String, CommandUpdate)]) -> Vec<Result<(), String>> {
    // Command sessions are not part of this build: count the updates as refused rather than drop them
    // silently.
    updates.iter().map(|(_, u)| Err(format!("command {}: no command session in this Worker build", u.id))).collect()
}

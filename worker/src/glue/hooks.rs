//! Where ingest hands over what belongs to other parts of the Worker.

use scs_protocol::CommandUpdate;
use worker::Env;

use crate::sessions::store::UpdateVerdict;

/// Applies command updates that arrived through ingest, in order, with their gateway; one verdict per
/// update applied, stopping after the first store failure ([`UpdateVerdict::Retry`]: the consumer then
/// fails the batch and the Queue delivers it again). Called before the consumer's D1 batch commits, so an
/// update may be applied again when the batch is retried: the command state only moves forward, which
/// makes a repeat harmless.
pub async fn command_updates(env: &Env, updates: &[(String, CommandUpdate)]) -> Vec<UpdateVerdict> {
    let mut out = Vec::with_capacity(updates.len());
    for (gateway, u) in updates {
        let v = UpdateVerdict::of(crate::glue::sessions::apply_command_update(env, gateway, u).await);
        let stop = matches!(v, UpdateVerdict::Retry(_));
        out.push(v);
        if stop {
            break;
        }
    }
    out
}

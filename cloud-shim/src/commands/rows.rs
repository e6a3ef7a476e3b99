//! A command and one audit entry as stored, in the schema both clouds share
//! (`cloud-shim/migrations/`); the Worker compiles this file too.

use scs_protocol::CommandState;
use serde_json::{json, Value as Json};

/// A command as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRow {
    pub id: String,
    pub gateway_id: String,
    pub command_type: String,
    pub params: Json,
    pub confirm: bool,
    pub state: CommandState,
    pub result: Option<Json>,
    pub error: Option<String>,
    pub artifacts: Option<Json>,
    pub requested_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    pub timeout_secs: u32,
    pub delivered_at: Option<i64>,
    pub deliveries: i64,
    pub cancel_requested_at: Option<i64>,
    /// Child sensor the command targets; `None` for the gateway itself.
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub detail: Option<String>,
}

/// What `POST /v1/gateways/{id}/commands` stores.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewCommand {
    pub id: String,
    pub gateway_id: String,
    pub command_type: String,
    pub params: Json,
    pub confirm: bool,
    pub requested_by: String,
    pub now: i64,
    pub expires_at: i64,
    pub timeout_secs: u32,
    pub target: Option<String>,
}

/// JSON view of a command, the same from both clouds. `artifacts` is always a list.
pub fn command_json(row: &CommandRow, artifacts: Option<Json>) -> Json {
    json!({
        "id": row.id,
        "type": row.command_type,
        "gatewayId": row.gateway_id,
        "target": row.target,
        "state": row.state.as_str(),
        "terminal": row.state.is_terminal(),
        "params": row.params,
        "confirm": row.confirm,
        "result": row.result,
        "error": row.error,
        "artifacts": artifacts.or_else(|| row.artifacts.clone()).unwrap_or_else(|| json!([])),
        "requestedBy": row.requested_by,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "expiresAt": row.expires_at,
        "timeoutSecs": row.timeout_secs,
        "deliveredAt": row.delivered_at,
        "deliveries": row.deliveries,
        "cancelRequested": row.cancel_requested_at.is_some(),
    })
}

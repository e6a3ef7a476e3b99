//! A command and one audit entry as stored, in the schema both clouds share
//! (`cloud-shim/migrations/`); the Worker compiles this file too.

use scs_protocol::CommandState;
use serde_json::Value as Json;

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

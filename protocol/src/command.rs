//! Commands: requests and cancels down to the gateway, state updates and results back up.
//! Which command types exist and what parameters they take is the command registry's business
//! (`protocol/registry/`); the wire format carries the parameters as a dynamic [`Value`].

use minicbor::{Decode, Encode};

use crate::error::ProtocolError;
use crate::ids::validate_id;
use crate::limits::{MAX_ARTIFACTS, MAX_TEXT_LEN};
use crate::value::Value;

/// Life cycle of a command. `queued` and `delivered` are set by the cloud; the agent reports
/// `accepted`/`rejected`, `running` and the terminal states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum CommandState {
    #[n(0)]
    Queued,
    #[n(1)]
    Delivered,
    #[n(2)]
    Accepted,
    #[n(3)]
    Running,
    #[n(4)]
    Succeeded,
    #[n(5)]
    Failed,
    #[n(6)]
    TimedOut,
    #[n(7)]
    Cancelled,
    #[n(8)]
    Expired,
    #[n(9)]
    Rejected,
    /// The agent crashed or the gateway rebooted while the command ran; its outcome is unknown.
    #[n(10)]
    Interrupted,
}

impl CommandState {
    pub const ALL: [CommandState; 11] = [
        CommandState::Queued,
        CommandState::Delivered,
        CommandState::Accepted,
        CommandState::Running,
        CommandState::Succeeded,
        CommandState::Failed,
        CommandState::TimedOut,
        CommandState::Cancelled,
        CommandState::Expired,
        CommandState::Rejected,
        CommandState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Delivered => "delivered",
            CommandState::Accepted => "accepted",
            CommandState::Running => "running",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::TimedOut => "timed_out",
            CommandState::Cancelled => "cancelled",
            CommandState::Expired => "expired",
            CommandState::Rejected => "rejected",
            CommandState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<CommandState> {
        CommandState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, CommandState::Queued | CommandState::Delivered | CommandState::Accepted | CommandState::Running)
    }

    /// Position in the life cycle, so a late or replayed update never moves a command backwards.
    pub fn rank(self) -> u8 {
        match self {
            CommandState::Queued => 0,
            CommandState::Delivered => 1,
            CommandState::Accepted => 2,
            CommandState::Running => 3,
            _ => 4,
        }
    }
}

/// Permission to upload one artifact for one command, minted by the cloud and delivered with it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct UploadGrant {
    /// Base URL of the upload endpoint (e.g. `https://cloud.example/v1/uploads`).
    #[n(0)]
    pub url: String,
    /// Bearer token bound to (command id, artifact id), expiring at `expires`.
    #[n(1)]
    pub token: String,
    #[n(2)]
    pub artifact: String,
    /// Milliseconds since the Unix epoch.
    #[n(3)]
    pub expires: u64,
    #[n(4)]
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct CommandRequest {
    #[n(0)]
    pub v: u8,
    #[n(1)]
    pub id: String,
    /// Registry command type, e.g. `device.reboot`.
    #[n(2)]
    pub command_type: String,
    /// A map of parameters, checked against the registry by both cloud and agent.
    #[n(3)]
    pub params: Value,
    /// Milliseconds since the Unix epoch.
    #[n(4)]
    pub issued: u64,
    /// The agent refuses (state `expired`) a command it receives after this time.
    #[n(5)]
    pub expires: u64,
    #[n(6)]
    pub timeout_secs: u32,
    /// Explicit confirmation for destructive commands.
    #[n(7)]
    pub confirm: bool,
    #[n(8)]
    pub upload: Option<UploadGrant>,
    #[n(9)]
    pub requested_by: Option<String>,
    /// The child sensor (camera, NVR) the command acts on; absent for the gateway itself. The cloud
    /// only sends a sensor of this gateway whose class the registry entry `targets`; the agent refuses
    /// one it does not have.
    #[n(10)]
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CommandCancel {
    #[n(0)]
    pub v: u8,
    #[n(1)]
    pub id: String,
}

/// Metadata of an uploaded artifact; the bytes live in the object store, never in a message.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ArtifactMeta {
    #[n(0)]
    pub id: String,
    #[n(1)]
    pub name: String,
    #[n(2)]
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    #[n(3)]
    pub sha256: String,
    #[n(4)]
    pub content_type: String,
}

/// A state change of a command, queued durably by the agent like telemetry and receipted by `seq`.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct CommandUpdate {
    #[n(0)]
    pub v: u8,
    #[n(1)]
    pub gateway: String,
    #[n(2)]
    pub boot: u64,
    #[n(3)]
    pub seq: u64,
    #[n(4)]
    pub ts: u64,
    #[n(5)]
    pub id: String,
    #[n(6)]
    pub state: CommandState,
    #[n(7)]
    pub result: Option<Value>,
    #[n(8)]
    pub error: Option<String>,
    #[n(9)]
    pub artifacts: Option<Vec<ArtifactMeta>>,
}

/// The exact text the release key signs for an `agent.update` binary: version, size and SHA-256
/// together, so a genuine old binary cannot be offered under a new version label. `scripts/build-release`
/// signs it, the cloud checks it when a release is added, the agent checks it before downloading.
pub fn agent_update_signed_message(version: &str, size: u64, sha256: &str) -> String {
    format!("scs-agent-update\nversion={version}\nsize={size}\nsha256={}\n", sha256.to_ascii_lowercase())
}

/// Reads the command id (key 1) from a raw command payload without decoding the rest, so a
/// command that fails [`crate::decode_downlink`] can still be answered with `rejected` under its
/// own id. `None` unless the payload is a CBOR map whose key 1 is a text that passes `validate_id`.
pub fn peek_command_id(payload: &[u8]) -> Option<String> {
    use minicbor::data::Type;
    let mut d = minicbor::Decoder::new(payload);
    let len = d.map().ok()?;
    let mut read = 0u64;
    loop {
        match len {
            Some(n) if read >= n => return None,
            None if d.datatype().ok()? == Type::Break => return None,
            _ => {}
        }
        let is_id_key = match d.datatype().ok()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64().ok()? == 1,
            _ => {
                d.skip().ok()?;
                false
            }
        };
        if is_id_key {
            let id = d.str().ok()?;
            return validate_id("command id", id).ok().map(|()| id.to_owned());
        }
        d.skip().ok()?;
        read += 1;
    }
}

impl CommandRequest {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        crate::version::check_version(self.v)?;
        validate_id("command id", &self.id)?;
        validate_id("command type", &self.command_type)?;
        if !matches!(self.params, Value::Map(_)) {
            return Err(ProtocolError::Field { field: "params", reason: "must be a map".into() });
        }
        if let Some(u) = &self.upload {
            validate_id("artifact id", &u.artifact)?;
        }
        if let Some(t) = &self.target {
            validate_id("target sensor id", t)?;
        }
        Ok(())
    }
}

impl CommandCancel {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        crate::version::check_version(self.v)?;
        validate_id("command id", &self.id)
    }
}

impl CommandUpdate {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        crate::version::check_version(self.v)?;
        validate_id("gateway id", &self.gateway)?;
        validate_id("command id", &self.id)?;
        if let Some(e) = &self.error {
            if e.len() > MAX_TEXT_LEN * 4 {
                return Err(ProtocolError::Field { field: "error", reason: "too long".into() });
            }
        }
        if let Some(a) = &self.artifacts {
            if a.len() > MAX_ARTIFACTS {
                return Err(ProtocolError::TooMany { what: "artifacts", count: a.len(), limit: MAX_ARTIFACTS });
            }
            for art in a {
                validate_id("artifact id", &art.id)?;
                if art.sha256.len() != 64 || !art.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(ProtocolError::Field {
                        field: "artifacts.sha256",
                        reason: "must be 64 lower-case hex digits".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: minicbor::Encode<()>>(msg: &T) -> Vec<u8> {
        minicbor::to_vec(msg).unwrap()
    }

    fn request(params: Value) -> CommandRequest {
        CommandRequest {
            v: crate::version::PROTOCOL_VERSION,
            id: "cmd-7".into(),
            command_type: "device.time".into(),
            params,
            issued: 1,
            expires: 2,
            timeout_secs: 3,
            confirm: false,
            upload: None,
            requested_by: None,
            target: None,
        }
    }

    #[test]
    fn peek_finds_the_id_of_a_command_that_fails_validation() {
        let broken = request(Value::Array(vec![Value::Int(1)]));
        assert!(broken.validate().is_err());
        assert_eq!(peek_command_id(&encode(&broken)).as_deref(), Some("cmd-7"));
        let mut wrong_version = request(Value::map(Vec::<(&str, Value)>::new()));
        wrong_version.v = 99;
        assert_eq!(peek_command_id(&encode(&wrong_version)).as_deref(), Some("cmd-7"));
    }

    #[test]
    fn peek_skips_other_keys_and_handles_indefinite_maps() {
        // {0: [1, {"a": 2}], "x": 1, 1: "c-1"} with an indefinite-length outer map.
        let mut e = minicbor::Encoder::new(Vec::new());
        e.begin_map().expect("vec");
        e.u8(0).expect("vec").array(2).expect("vec").u8(1).expect("vec");
        e.map(1).expect("vec").str("a").expect("vec").u8(2).expect("vec");
        e.str("x").expect("vec").u8(1).expect("vec");
        e.u8(1).expect("vec").str("c-1").expect("vec");
        e.end().expect("vec");
        assert_eq!(peek_command_id(e.writer()).as_deref(), Some("c-1"));
    }

    #[test]
    fn peek_refuses_payloads_without_a_valid_id() {
        assert_eq!(peek_command_id(b""), None);
        assert_eq!(peek_command_id(&[0xff, 0x00]), None);
        assert_eq!(peek_command_id(&encode(&Value::Text("cmd-7".into()))), None);
        let mut bad_id = request(Value::map(Vec::<(&str, Value)>::new()));
        bad_id.id = "a/b#".into();
        assert_eq!(peek_command_id(&encode(&bad_id)), None);
        // Not a map; key 1 holding a number; a map without key 1.
        assert_eq!(peek_command_id(&minicbor::to_vec(minicbor::data::Int::from(0u8)).expect("vec")), None);
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(2).expect("vec").u8(1).expect("vec").u8(5).expect("vec").u8(2).expect("vec").str("t").expect("vec");
        assert_eq!(peek_command_id(e.writer()), None);
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(1).expect("vec").u8(0).expect("vec").u8(1).expect("vec");
        assert_eq!(peek_command_id(e.writer()), None);
        // A truncated map: the id key is never reached.
        let full = encode(&request(Value::map(Vec::<(&str, Value)>::new())));
        assert_eq!(peek_command_id(&full[..3]), None);
    }
}

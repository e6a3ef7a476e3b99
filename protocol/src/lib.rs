//! SCS Gateway wire protocol, shared by `scs-agent` and `scs-cloud-shim`.
//!
//! Everything here is pure: message types with their CBOR encodings, MQTT topic names, size limits
//! and identifier rules. No I/O, so the agent pays only for what it encodes.
//! The normative contract is `docs/protocol.cddl`; `docs/protocol.md` explains it.

pub mod codec;
pub mod command;
pub mod cose;
pub mod error;
pub mod http_ingest;
pub mod ids;
pub mod inventory;
pub mod limits;
pub mod metric;
pub mod receipt;
pub mod registry;
pub mod rejection;
pub mod status;
pub mod telemetry;
pub mod topics;
pub mod value;
pub mod version;

pub use codec::{decode_downlink, decode_uplink, encode, Downlink, Uplink};
pub use command::{ArtifactMeta, CommandCancel, CommandRequest, CommandState, CommandUpdate, UploadGrant};
pub use error::ProtocolError;
pub use inventory::{AgentInfo, Inventory, SensorInfo, SensorType};
pub use metric::{Metric, MetricKey, MetricValue};
pub use receipt::Receipt;
pub use status::{GatewayState, Status};
pub use telemetry::{DeviceEvent, DeviceReport, EventKind, TelemetryBatch};
pub use topics::{Topic, TopicKind};
pub use value::Value;
pub use version::PROTOCOL_VERSION;

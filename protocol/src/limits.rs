//! Explicit size limits. Both sides enforce them: the agent never produces a message above them and the
//! shim refuses (and counts) anything above them before decoding.

/// Largest uplink MQTT payload (telemetry batch, inventory, command update).
pub const MAX_UPLINK_BYTES: usize = 256 * 1024;
/// Largest downlink payload (command, cancel, receipt).
pub const MAX_DOWNLINK_BYTES: usize = 64 * 1024;
/// Identifiers (gateway, sensor, command, artifact) are 1..=64 characters of `[A-Za-z0-9._:-]`.
pub const MAX_ID_LEN: usize = 64;
pub const MAX_DEVICES_PER_BATCH: usize = 1024;
pub const MAX_METRICS_PER_DEVICE: usize = 512;
/// Device events in one telemetry batch.
pub const MAX_EVENTS_PER_BATCH: usize = 256;
pub const MAX_METRIC_NAME_LEN: usize = 96;
pub const MAX_LABEL_LEN: usize = 128;
pub const MAX_SENSORS_PER_INVENTORY: usize = 1024;
pub const MAX_ATTRS_PER_SENSOR: usize = 32;
pub const MAX_TEXT_LEN: usize = 1024;
/// Seqs in one receipt.
pub const MAX_RECEIPT_SEQS: usize = 4096;
/// Nesting depth of dynamic values (command params and results), against stack-exhaustion inputs.
pub const MAX_VALUE_DEPTH: usize = 16;
/// Elements (array items + map entries) in one dynamic value tree.
pub const MAX_VALUE_ITEMS: usize = 10_000;
/// Artifacts attached to one command update.
pub const MAX_ARTIFACTS: usize = 16;

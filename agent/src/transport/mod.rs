//! Transports that carry queued messages to the cloud. MQTT is the only one today.

pub mod mqtt;

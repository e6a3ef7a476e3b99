//! Telemetry batches: every metric sample a gateway collected in one interval, for itself and its children.

use minicbor::{Decode, Encode};

use crate::error::ProtocolError;
use crate::ids::validate_id;
use crate::limits::{MAX_DEVICES_PER_BATCH, MAX_METRICS_PER_DEVICE};
use crate::metric::Metric;
use crate::version::PROTOCOL_VERSION;

/// One uplink batch. `(gateway, boot, seq)` identifies it: the cloud stores it at most once and answers
/// with a [`crate::Receipt`] naming `seq`. `seq` grows by one per queued uplink message of this gateway,
/// so a hole the agent did not declare in `gap` is a loss the cloud can see.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct TelemetryBatch {
    #[n(0)]
    pub v: u8,
    #[n(1)]
    pub gateway: String,
    /// Random id chosen at each agent start.
    #[n(2)]
    pub boot: u64,
    #[n(3)]
    pub seq: u64,
    /// Milliseconds since the Unix epoch when the batch was built.
    #[n(4)]
    pub ts: u64,
    #[n(5)]
    pub devices: Vec<DeviceReport>,
    /// Messages the agent dropped from its full queue since the last batch that carried a gap.
    #[n(6)]
    pub gap: Option<Gap>,
}

/// Samples of one sensor (the gateway itself or a child device) taken at one time.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct DeviceReport {
    #[n(0)]
    pub sensor: String,
    /// Milliseconds since the Unix epoch.
    #[n(1)]
    pub ts: u64,
    #[n(2)]
    pub metrics: Vec<Metric>,
}

/// Seqs the agent dropped (oldest first) because its queue was full; `dropped` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Gap {
    #[n(0)]
    pub dropped: u64,
    #[n(1)]
    pub first_seq: u64,
    #[n(2)]
    pub last_seq: u64,
}

impl TelemetryBatch {
    pub fn new(gateway: &str, boot: u64, seq: u64, ts: u64) -> Self {
        TelemetryBatch { v: PROTOCOL_VERSION, gateway: gateway.to_owned(), boot, seq, ts, devices: Vec::new(), gap: None }
    }

    /// Number of metric samples in the batch.
    pub fn sample_count(&self) -> usize {
        self.devices.iter().map(|d| d.metrics.len()).sum()
    }

    pub fn validate(&self) -> Result<(), ProtocolError> {
        crate::version::check_version(self.v)?;
        validate_id("gateway id", &self.gateway)?;
        if self.devices.len() > MAX_DEVICES_PER_BATCH {
            return Err(ProtocolError::TooMany { what: "devices", count: self.devices.len(), limit: MAX_DEVICES_PER_BATCH });
        }
        for d in &self.devices {
            validate_id("sensor id", &d.sensor)?;
            if d.metrics.len() > MAX_METRICS_PER_DEVICE {
                return Err(ProtocolError::TooMany { what: "metrics", count: d.metrics.len(), limit: MAX_METRICS_PER_DEVICE });
            }
        }
        if let Some(g) = self.gap {
            if g.first_seq > g.last_seq {
                return Err(ProtocolError::Field { field: "gap", reason: "first_seq > last_seq".into() });
            }
        }
        Ok(())
    }
}

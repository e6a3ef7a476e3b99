//! Telemetry batches: every metric sample a gateway collected in one interval, for itself and its children.

use minicbor::{Decode, Encode};

use crate::error::ProtocolError;
use crate::ids::validate_id;
use crate::limits::{MAX_ATTRS_PER_SENSOR, MAX_DEVICES_PER_BATCH, MAX_EVENTS_PER_BATCH, MAX_METRICS_PER_DEVICE, MAX_TEXT_LEN};
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
    /// Things that happened to devices since the last batch (replaced, rebooted, auth broken, ...).
    /// They ride in the batch so they share its durability: queued, receipted, stored at most once.
    #[n(7)]
    pub events: Option<Vec<DeviceEvent>>,
}

/// One device event. `kind` is one of [`EventKind::KNOWN`] or any other `[a-z0-9._]` text, so an
/// older cloud stores a kind it does not know instead of refusing the batch.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct DeviceEvent {
    /// The sensor the event is about (a child device, or the gateway).
    #[n(0)]
    pub sensor: String,
    /// Milliseconds since the Unix epoch, when the agent noticed.
    #[n(1)]
    pub ts: u64,
    #[n(2)]
    pub kind: String,
    /// Human-readable detail, e.g. `serial DS-1 -> DS-2`.
    #[n(3)]
    pub detail: Option<String>,
    /// Machine-readable detail: `old`/`new` values, `profile`, `hdd`, `channel`.
    #[n(4)]
    pub attrs: Option<std::collections::BTreeMap<String, String>>,
}

/// Event kinds the agent emits (see `docs/protocol.md`).
pub struct EventKind;

impl EventKind {
    /// The serial number changed: another unit answers at this address.
    pub const REPLACED: &'static str = "device.replaced";
    pub const FIRMWARE_CHANGED: &'static str = "device.firmware_changed";
    /// The device's uptime went backwards.
    pub const REBOOTED: &'static str = "device.rebooted";
    pub const AUTH_BROKEN: &'static str = "device.auth_broken";
    pub const AUTH_RESTORED: &'static str = "device.auth_restored";
    pub const WENT_DOWN: &'static str = "device.down";
    pub const CAME_BACK: &'static str = "device.up";
    /// A profile's stream stopped answering or stopped sending frames.
    pub const STREAM_LOST: &'static str = "stream.lost";
    pub const STREAM_RESTORED: &'static str = "stream.restored";
    pub const HDD_FAILED: &'static str = "nvr.hdd_failed";
    pub const HDD_RESTORED: &'static str = "nvr.hdd_restored";
    pub const KNOWN: [&'static str; 11] = [
        Self::REPLACED,
        Self::FIRMWARE_CHANGED,
        Self::REBOOTED,
        Self::AUTH_BROKEN,
        Self::AUTH_RESTORED,
        Self::WENT_DOWN,
        Self::CAME_BACK,
        Self::STREAM_LOST,
        Self::STREAM_RESTORED,
        Self::HDD_FAILED,
        Self::HDD_RESTORED,
    ];

    pub fn validate(kind: &str) -> Result<(), ProtocolError> {
        let ok = !kind.is_empty()
            && kind.len() <= 64
            && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(ProtocolError::InvalidId {
                what: "event kind",
                value: kind.chars().take(40).collect(),
                rule: "1-64 characters from a-z 0-9 . _",
            })
        }
    }
}

impl DeviceEvent {
    pub fn new(sensor: &str, ts: u64, kind: &str) -> DeviceEvent {
        DeviceEvent { sensor: sensor.to_owned(), ts, kind: kind.to_owned(), detail: None, attrs: None }
    }

    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_id("sensor id", &self.sensor)?;
        EventKind::validate(&self.kind)?;
        if self.detail.as_ref().is_some_and(|d| d.len() > MAX_TEXT_LEN) {
            return Err(ProtocolError::Field { field: "events.detail", reason: format!("longer than {MAX_TEXT_LEN} bytes") });
        }
        if let Some(a) = &self.attrs {
            if a.len() > MAX_ATTRS_PER_SENSOR {
                return Err(ProtocolError::TooMany { what: "event attrs", count: a.len(), limit: MAX_ATTRS_PER_SENSOR });
            }
            if a.iter().any(|(k, v)| k.len() > MAX_TEXT_LEN || v.len() > MAX_TEXT_LEN) {
                return Err(ProtocolError::Field { field: "events.attrs", reason: format!("longer than {MAX_TEXT_LEN} bytes") });
            }
        }
        Ok(())
    }
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
        TelemetryBatch {
            v: PROTOCOL_VERSION,
            gateway: gateway.to_owned(),
            boot,
            seq,
            ts,
            devices: Vec::new(),
            gap: None,
            events: None,
        }
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
        if let Some(ev) = &self.events {
            if ev.len() > MAX_EVENTS_PER_BATCH {
                return Err(ProtocolError::TooMany { what: "events", count: ev.len(), limit: MAX_EVENTS_PER_BATCH });
            }
            for e in ev {
                e.validate()?;
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

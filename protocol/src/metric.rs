//! One metric sample: `[key, value]` or `[key, value, label]`.
//! Well-known metric names travel as small integers (see [`WELL_KNOWN`]); any other name travels as text,
//! so collectors can add metrics without a protocol change.

use minicbor::data::Type;
use minicbor::decode::{Decoder, Error as DecodeError};
use minicbor::encode::{Encoder, Error as EncodeError, Write};

use crate::limits::{MAX_LABEL_LEN, MAX_METRIC_NAME_LEN};
use crate::value::encode_float;

/// Well-known metric ids. Append only: an id, once published, keeps its meaning forever.
/// The label column says what the third array element means for that metric.
pub const WELL_KNOWN: &[(u16, &str)] = &[
    // gateway host
    (1, "cpu.usage_pct"),
    (2, "load.1m"),
    (3, "load.5m"),
    (4, "load.15m"),
    (5, "mem.total_bytes"),
    (6, "mem.available_bytes"),
    (7, "mem.used_pct"),
    (8, "swap.used_bytes"),
    (9, "disk.total_bytes"), // label: mount point
    (10, "disk.used_bytes"), // label: mount point
    (11, "disk.used_pct"),   // label: mount point
    (12, "thermal.temp_c"),  // label: thermal zone type
    (13, "uptime.secs"),
    (14, "net.rx_bytes"),  // label: interface
    (15, "net.tx_bytes"),  // label: interface
    (16, "net.rx_errors"), // label: interface
    (17, "net.tx_errors"), // label: interface
    // the agent itself
    (32, "agent.rss_bytes"),
    (33, "agent.cpu_pct"),
    (34, "agent.queue_depth"),
    (35, "agent.queue_bytes"),
    (36, "agent.dropped_batches"),
    (37, "agent.reconnects"),
    (38, "agent.published"),
    (39, "agent.uptime_secs"),
    (40, "agent.commands_run"),
    // child devices (cameras, NVRs, field devices)
    (64, "device.online"),
    (65, "device.latency_ms"),
    (66, "camera.fps"),
    (67, "camera.bitrate_kbps"),
    (68, "nvr.disk_used_pct"),
    (69, "nvr.recording"), // label: channel
    (70, "device.temp_c"),
    // camera/NVR probes (agent/src/devices/, docs/devices.md)
    (71, "device.probe_class"), // label: tier (reach, management, stream, sample); value: error class code
    (72, "device.probe_ms"),    // label: tier
    (73, "device.auth_ok"),
    (74, "device.clock_offset_s"),
    (75, "camera.stream_ok"), // label: media profile token
    (76, "camera.rtp_loss_pct"),
    (77, "device.cpu_pct"),
    (78, "device.mem_used_pct"),
    (79, "device.uptime_secs"),
    (80, "nvr.hdd_ok"), // label: disk id
    // NVRs (ISAPI, Dahua CGI, ONVIF Profile G; docs/devices.md)
    (81, "nvr.hdd_capacity_bytes"), // label: disk id
    (82, "nvr.hdd_free_bytes"),     // label: disk id
    (83, "nvr.channel_online"),     // label: channel
    (84, "nvr.recordings"),
];

pub fn name_of(id: u16) -> Option<&'static str> {
    WELL_KNOWN.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
}

pub fn id_of(name: &str) -> Option<u16> {
    WELL_KNOWN.iter().find(|(_, n)| *n == name).map(|(i, _)| *i)
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricKey {
    Id(u16),
    Name(String),
}

impl MetricKey {
    /// Picks the compact id form when the name is well known.
    pub fn named(name: &str) -> MetricKey {
        id_of(name).map(MetricKey::Id).unwrap_or_else(|| MetricKey::Name(name.to_owned()))
    }
    /// Text name, as stored by the cloud. Unknown ids render as `metric.{id}` so nothing is lost.
    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        match self {
            MetricKey::Id(id) => name_of(*id).map(Into::into).unwrap_or_else(|| format!("metric.{id}").into()),
            MetricKey::Name(n) => n.as_str().into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    Int(i64),
    Float(f64),
}

impl MetricValue {
    pub fn as_f64(self) -> f64 {
        match self {
            MetricValue::Int(i) => i as f64,
            MetricValue::Float(f) => f,
        }
    }
}

impl From<f64> for MetricValue {
    fn from(f: f64) -> Self {
        MetricValue::Float(f)
    }
}
impl From<i64> for MetricValue {
    fn from(i: i64) -> Self {
        MetricValue::Int(i)
    }
}
impl From<u64> for MetricValue {
    fn from(u: u64) -> Self {
        i64::try_from(u).map(MetricValue::Int).unwrap_or(MetricValue::Float(u as f64))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: MetricKey,
    pub value: MetricValue,
    pub label: Option<String>,
}

impl Metric {
    pub fn new(name: &str, value: impl Into<MetricValue>) -> Metric {
        Metric { key: MetricKey::named(name), value: value.into(), label: None }
    }
    pub fn labelled(name: &str, label: &str, value: impl Into<MetricValue>) -> Metric {
        Metric { key: MetricKey::named(name), value: value.into(), label: Some(label.to_owned()) }
    }
}

impl<C> minicbor::Encode<C> for Metric {
    fn encode<W: Write>(&self, e: &mut Encoder<W>, _ctx: &mut C) -> Result<(), EncodeError<W::Error>> {
        e.array(if self.label.is_some() { 3 } else { 2 })?;
        match &self.key {
            MetricKey::Id(id) => e.u16(*id)?,
            MetricKey::Name(n) => e.str(n)?,
        };
        match self.value {
            MetricValue::Int(i) => {
                e.i64(i)?;
            }
            MetricValue::Float(f) => encode_float(f, e)?,
        }
        if let Some(l) = &self.label {
            e.str(l)?;
        }
        Ok(())
    }
}

impl<'b, C> minicbor::Decode<'b, C> for Metric {
    fn decode(d: &mut Decoder<'b>, _ctx: &mut C) -> Result<Self, DecodeError> {
        let n = d.array()?;
        if !matches!(n, Some(2) | Some(3)) {
            return Err(DecodeError::message("metric must be a 2- or 3-element array"));
        }
        let key = match d.datatype()? {
            Type::String => {
                let s = d.str()?;
                if s.is_empty() || s.len() > MAX_METRIC_NAME_LEN {
                    return Err(DecodeError::message("metric name length out of range"));
                }
                MetricKey::Name(s.to_owned())
            }
            _ => MetricKey::Id(d.u16()?),
        };
        let value = match d.datatype()? {
            Type::F16 => MetricValue::Float(d.f16()? as f64),
            Type::F32 => MetricValue::Float(d.f32()? as f64),
            Type::F64 => MetricValue::Float(d.f64()?),
            Type::Bool => MetricValue::Int(d.bool()? as i64),
            _ => MetricValue::Int(d.i64()?),
        };
        // NaN and +/-Infinity are no measurement: refused, so the whole message is rejected and counted
        // instead of storing a value no query or chart can use.
        if let MetricValue::Float(f) = value {
            if !f.is_finite() {
                return Err(DecodeError::message("metric value must be a finite number (NaN and +/-Infinity are refused)"));
            }
        }
        let label = if n == Some(3) {
            let l = d.str()?;
            if l.len() > MAX_LABEL_LEN {
                return Err(DecodeError::message("metric label too long"));
            }
            Some(l.to_owned())
        } else {
            None
        };
        Ok(Metric { key, value, label })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_refused() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let bytes = minicbor::to_vec(Metric::new("x", f)).unwrap();
            let err = minicbor::decode::<Metric>(&bytes).unwrap_err();
            assert!(err.to_string().contains("finite"), "{f}: {err}");
        }
        let ok = minicbor::to_vec(Metric::new("x", 1.5)).unwrap();
        assert_eq!(minicbor::decode::<Metric>(&ok).unwrap().value, MetricValue::Float(1.5));
    }

    #[test]
    fn well_known_ids_are_unique() {
        for (i, (id, name)) in WELL_KNOWN.iter().enumerate() {
            for (id2, name2) in &WELL_KNOWN[i + 1..] {
                assert_ne!(id, id2);
                assert_ne!(name, name2);
            }
        }
    }

    #[test]
    fn roundtrip_and_compactness() {
        let m = Metric::labelled("disk.used_pct", "/", 42.5);
        assert_eq!(m.key, MetricKey::Id(11));
        let bytes = minicbor::to_vec(&m).unwrap();
        assert_eq!(bytes.len(), 1 + 1 + 5 + 2); // array hdr, id, f32, "/"
        assert_eq!(minicbor::decode::<Metric>(&bytes).unwrap(), m);
        let custom = Metric::new("radar.objects", 7i64);
        let back: Metric = minicbor::decode(&minicbor::to_vec(&custom).unwrap()).unwrap();
        assert_eq!(back.key.name(), "radar.objects");
        assert_eq!(back.value, MetricValue::Int(7));
    }
}

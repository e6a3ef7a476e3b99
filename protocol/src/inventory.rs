//! Inventory (birth) message: the gateway as an `EDGE_CONTROLLER` sensor and its configured children,
//! each linked by `parent` (the platform's `parentSensorId`).

use std::collections::BTreeMap;

use minicbor::{Decode, Encode};

use crate::error::ProtocolError;
use crate::ids::validate_id;
use crate::limits::{MAX_ATTRS_PER_SENSOR, MAX_SENSORS_PER_INVENTORY, MAX_TEXT_LEN};

/// Sensor types known to the platform. Types travel as text so new field-device types need no
/// protocol change; any `[A-Z0-9_]{1,32}` text is accepted.
pub struct SensorType;

impl SensorType {
    pub const EDGE_CONTROLLER: &'static str = "EDGE_CONTROLLER";
    pub const CAMERA: &'static str = "CAMERA";
    pub const NVR: &'static str = "NVR";
    pub const RADAR: &'static str = "RADAR";
    pub const ANPR: &'static str = "ANPR";
    pub const KNOWN: [&'static str; 5] = [Self::EDGE_CONTROLLER, Self::CAMERA, Self::NVR, Self::RADAR, Self::ANPR];

    pub fn validate(t: &str) -> Result<(), ProtocolError> {
        let ok = !t.is_empty() && t.len() <= 32 && t.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(ProtocolError::InvalidId {
                what: "sensor type",
                value: t.chars().take(40).collect(),
                rule: "1-32 characters from A-Z 0-9 _",
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct Inventory {
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
    /// The gateway itself first, then its children.
    #[n(5)]
    pub sensors: Vec<SensorInfo>,
    #[n(6)]
    pub agent: Option<AgentInfo>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct SensorInfo {
    #[n(0)]
    pub id: String,
    #[n(1)]
    pub sensor_type: String,
    /// `parentSensorId`: the gateway for children, absent for the gateway itself.
    #[n(2)]
    pub parent: Option<String>,
    #[n(3)]
    pub name: Option<String>,
    /// Free-form description: vendor, model, address, ...
    #[n(4)]
    pub attrs: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct AgentInfo {
    #[n(0)]
    pub version: String,
    #[n(1)]
    pub arch: String,
    #[n(2)]
    pub os: Option<String>,
    #[n(3)]
    pub hostname: Option<String>,
}

fn text(field: &'static str, s: &str) -> Result<(), ProtocolError> {
    if s.len() > MAX_TEXT_LEN {
        return Err(ProtocolError::Field { field, reason: format!("longer than {MAX_TEXT_LEN} bytes") });
    }
    Ok(())
}

impl Inventory {
    /// The attributes a cloud stores on `sensor`'s row: its own, and on the gateway's own row the
    /// agent's description (`agentVersion`, `arch`, `os`, `hostname`), which the inventory carries apart.
    pub fn stored_attrs(&self, sensor: &SensorInfo) -> BTreeMap<String, String> {
        let mut attrs = sensor.attrs.clone().unwrap_or_default();
        if let Some(a) = self.agent.as_ref().filter(|_| sensor.id == self.gateway) {
            attrs.insert("agentVersion".into(), a.version.clone());
            attrs.insert("arch".into(), a.arch.clone());
            if let Some(os) = &a.os {
                attrs.insert("os".into(), os.clone());
            }
            if let Some(h) = &a.hostname {
                attrs.insert("hostname".into(), h.clone());
            }
        }
        attrs
    }

    pub fn validate(&self) -> Result<(), ProtocolError> {
        crate::version::check_version(self.v)?;
        validate_id("gateway id", &self.gateway)?;
        if self.sensors.len() > MAX_SENSORS_PER_INVENTORY {
            return Err(ProtocolError::TooMany { what: "sensors", count: self.sensors.len(), limit: MAX_SENSORS_PER_INVENTORY });
        }
        for s in &self.sensors {
            validate_id("sensor id", &s.id)?;
            SensorType::validate(&s.sensor_type)?;
            if let Some(p) = &s.parent {
                validate_id("parent sensor id", p)?;
            }
            if let Some(n) = &s.name {
                text("name", n)?;
            }
            if let Some(a) = &s.attrs {
                if a.len() > MAX_ATTRS_PER_SENSOR {
                    return Err(ProtocolError::TooMany { what: "attrs", count: a.len(), limit: MAX_ATTRS_PER_SENSOR });
                }
                for (k, v) in a {
                    text("attrs", k)?;
                    text("attrs", v)?;
                }
            }
        }
        if let Some(a) = &self.agent {
            text("agent.version", &a.version)?;
            text("agent.arch", &a.arch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_description_rides_on_the_gateways_row_only() {
        let sensor = |id: &str| SensorInfo {
            id: id.into(),
            sensor_type: "CAMERA".into(),
            parent: None,
            name: None,
            attrs: Some(BTreeMap::from([("model".to_owned(), "X".to_owned())])),
        };
        let inv = Inventory {
            v: 1,
            gateway: "gw-1".into(),
            boot: 1,
            seq: 1,
            ts: 0,
            sensors: vec![sensor("gw-1"), sensor("cam-1")],
            agent: Some(AgentInfo { version: "1.2.3".into(), arch: "armv7".into(), os: None, hostname: Some("h".into()) }),
        };
        let gw = inv.stored_attrs(&sensor("gw-1"));
        assert_eq!(gw.get("agentVersion").map(String::as_str), Some("1.2.3"));
        assert_eq!((gw.get("hostname").map(String::as_str), gw.get("os")), (Some("h"), None));
        assert_eq!(gw.get("model").map(String::as_str), Some("X"));
        assert_eq!(inv.stored_attrs(&sensor("cam-1")), BTreeMap::from([("model".to_owned(), "X".to_owned())]));
    }
}

//! Inventory (birth message): the gateway as an `EDGE_CONTROLLER` sensor plus every configured
//! child with `parent` = the gateway. Queued at start and again whenever its content changes.

use std::collections::BTreeMap;

use scs_protocol::{encode, AgentInfo, Inventory, SensorInfo, SensorType, TopicKind, PROTOCOL_VERSION};

use crate::collect::Roots;
use crate::config::Config;
use crate::queue::{Queue, QueueError};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

fn os_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').chars().take(128).collect())
}

fn hostname(roots: &Roots) -> Option<String> {
    std::fs::read_to_string(roots.proc.join("sys/kernel/hostname")).ok().map(|h| h.trim().chars().take(128).collect())
}

pub fn agent_info(roots: &Roots) -> AgentInfo {
    AgentInfo { version: AGENT_VERSION.into(), arch: std::env::consts::ARCH.into(), os: os_name(), hostname: hostname(roots) }
}

/// The sensors this gateway announces (gateway first).
pub fn sensors(cfg: &Config) -> Vec<SensorInfo> {
    let gw = &cfg.gateway_id;
    let mut out = vec![SensorInfo {
        id: gw.clone(),
        sensor_type: SensorType::EDGE_CONTROLLER.into(),
        parent: None,
        name: Some(gw.clone()),
        attrs: None,
    }];
    for d in &cfg.devices {
        let mut attrs: BTreeMap<String, String> = d.attrs.clone();
        for (k, v) in [("vendor", &d.vendor), ("model", &d.model), ("serial", &d.serial), ("address", &d.address)] {
            if let Some(v) = v {
                attrs.insert(k.into(), v.clone());
            }
        }
        out.push(SensorInfo {
            id: d.id.clone(),
            sensor_type: d.device_type.clone(),
            parent: Some(gw.clone()),
            name: d.name.clone(),
            attrs: (!attrs.is_empty()).then_some(attrs),
        });
    }
    out
}

/// [`sensors`] with the identity each device reported (ONVIF GetDeviceInformation, ISAPI deviceInfo,
/// Dahua magicBox) in its attrs: `manufacturer`, `model`, `serialNumber`, `firmwareVersion`,
/// `hardwareId`. What the device says wins over a configured `model`; empty fields are left out. The
/// announcer re-sends the inventory when any of them changes (a replaced unit, a firmware update).
pub fn sensors_seen(cfg: &Config, devices: &crate::devices::StateCache) -> Vec<SensorInfo> {
    let mut out = sensors(cfg);
    for s in out.iter_mut() {
        // One identity copied out per device, not the whole cache: this runs at every interval.
        let Some(id) = devices.read(&s.id, |st| st.identity.clone()).flatten() else { continue };
        let attrs = s.attrs.get_or_insert_with(BTreeMap::new);
        for (k, v) in [
            ("manufacturer", &id.manufacturer),
            ("model", &id.model),
            ("serialNumber", &id.serial),
            ("firmwareVersion", &id.firmware),
            ("hardwareId", &id.hardware_id),
        ] {
            if !v.is_empty() {
                attrs.insert(k.into(), v.chars().take(128).collect());
            }
        }
    }
    out
}

/// Queues the inventory when it differs from the last one queued by this process.
pub struct Announcer {
    gateway: String,
    boot: u64,
    /// SHA-256 of the last inventory queued (without seq and ts): kept for the comparison instead of
    /// the encoded inventory itself, which is ~18 KiB on a 68-device site.
    last: Option<[u8; 32]>,
}

impl Announcer {
    pub fn new(gateway: &str, boot: u64) -> Announcer {
        Announcer { gateway: gateway.to_owned(), boot, last: None }
    }

    /// Returns the seq when something was queued.
    pub fn announce(&mut self, queue: &Queue, sensors: Vec<SensorInfo>, agent: AgentInfo) -> Result<Option<u64>, QueueError> {
        let mut inv = Inventory {
            v: PROTOCOL_VERSION,
            gateway: self.gateway.clone(),
            boot: self.boot,
            seq: 0,
            ts: 0,
            sensors,
            agent: Some(agent),
        };
        // Compare content only: seq and ts differ every time.
        let fingerprint: Option<[u8; 32]> = ring::digest::digest(&ring::digest::SHA256, &encode(&inv)).as_ref().try_into().ok();
        if fingerprint.is_some() && self.last == fingerprint {
            return Ok(None);
        }
        let ts = crate::clock::now_ms();
        let seq = queue.enqueue(TopicKind::Inventory, |seq| {
            inv.seq = seq;
            inv.ts = ts;
            encode(&inv)
        })?;
        self.last = fingerprint;
        log::info!("inventory queued (seq {seq}, {} sensors)", inv.sensors.len());
        Ok(Some(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeviceConfig, SyncMode};
    use crate::queue::QueueOptions;
    use scs_protocol::topics::topic;
    use scs_protocol::{decode_uplink, Uplink};

    #[test]
    fn identity_read_from_a_device_goes_into_its_attrs() {
        let mut cfg = Config { gateway_id: "gw-7".into(), ..Default::default() };
        cfg.devices.push(DeviceConfig {
            id: "cam-1".into(),
            device_type: "CAMERA".into(),
            model: Some("typed-in".into()),
            ..Default::default()
        });
        let cache = crate::devices::StateCache::default();
        assert_eq!(sensors_seen(&cfg, &cache), sensors(&cfg), "nothing read yet");
        cache.update("cam-1", |s| {
            s.identity = Some(Box::new(crate::devices::Identity {
                manufacturer: "Dahua".into(),
                model: "DHI-NVR4208".into(),
                firmware: "4.001".into(),
                serial: "SN-9".into(),
                hardware_id: String::new(),
            }))
        });
        let s = sensors_seen(&cfg, &cache);
        let a = s[1].attrs.as_ref().unwrap();
        assert_eq!(a["manufacturer"], "Dahua");
        assert_eq!(a["model"], "DHI-NVR4208", "the device wins over the config");
        assert_eq!(a["serialNumber"], "SN-9");
        assert_eq!(a["firmwareVersion"], "4.001");
        assert!(!a.contains_key("hardwareId"));
        assert!(s[0].attrs.is_none(), "the gateway is untouched");
    }

    #[test]
    fn gateway_and_children_with_parent() {
        let mut cfg = Config { gateway_id: "gw-7".into(), ..Default::default() };
        cfg.devices.push(DeviceConfig {
            id: "cam-1".into(),
            device_type: "CAMERA".into(),
            vendor: Some("acme".into()),
            ..Default::default()
        });
        cfg.devices.push(DeviceConfig { id: "nvr-1".into(), device_type: "NVR".into(), ..Default::default() });
        let s = sensors(&cfg);
        assert_eq!(s[0].sensor_type, "EDGE_CONTROLLER");
        assert_eq!(s[0].parent, None);
        assert!(s[1..].iter().all(|c| c.parent.as_deref() == Some("gw-7")));
        assert_eq!(s[1].attrs.as_ref().unwrap()["vendor"], "acme");

        let dir = std::env::temp_dir().join(format!("scs-inv-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let q = Queue::open(&dir.join("agent.db"), QueueOptions { max_rows: 10, max_bytes: 1 << 20, sync: SyncMode::Normal })
            .unwrap();
        let roots = Roots { proc: "/proc".into(), sys: "/sys".into() };
        let mut a = Announcer::new("gw-7", 1);
        assert_eq!(a.announce(&q, s.clone(), agent_info(&roots)).unwrap(), Some(1));
        assert_eq!(a.announce(&q, s.clone(), agent_info(&roots)).unwrap(), None, "unchanged: not queued again");
        let msg = q.get(1).unwrap().unwrap();
        let (_, m) = decode_uplink(&topic("gw-7", TopicKind::Inventory), &msg.payload).unwrap();
        let Uplink::Inventory(inv) = m else { panic!("not inventory") };
        assert_eq!(inv.sensors.len(), 3);
        let mut changed = s;
        changed.pop();
        assert_eq!(a.announce(&q, changed, agent_info(&roots)).unwrap(), Some(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

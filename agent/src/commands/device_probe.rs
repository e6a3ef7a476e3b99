//! `device.probe` (/32772/0/3): every probe tier against the target now (`devices/probe_now.rs`),
//! returned in full: per tier its class, duration and error; identity, clock offset, streams with
//! codec and resolution, device health and disks, and the sampled PLAY's fps, bitrate and loss.

use std::collections::BTreeMap;
use std::time::Duration;

use scs_protocol::Value;

use super::{CommandError, Job, Output};
use crate::devices::probe_now::{self, TierOutcome};
use crate::devices::{onvif, ErrorClass};

pub const TYPE: &str = "device.probe";
const SAMPLE_WINDOW: Duration = Duration::from_secs(3);

fn ms(d: Duration) -> Value {
    Value::Float((d.as_secs_f64() * 10_000.0).round() / 10.0)
}

fn tier(t: &TierOutcome) -> Value {
    let mut m = vec![("class", Value::from(t.class.as_str())), ("ms", ms(t.duration))];
    if let Some(e) = &t.error {
        m.push(("error", Value::Text(e.chars().take(300).collect())));
    }
    Value::map(m)
}

fn text(s: &str) -> Value {
    Value::Text(s.chars().take(200).collect())
}

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let dev = job.device()?;
    let reach_timeout = Duration::from_millis(job.ctx.config.collect.probe_timeout_ms.max(1));
    let limits = onvif::default_limits();
    let p = smol::block_on(crate::devices::http::until(job.deadline, probe_now::run(dev, limits, reach_timeout, SAMPLE_WINDOW)))
        .ok_or(CommandError::Stopped)?;
    let mut r = BTreeMap::new();
    r.insert("device".to_string(), Value::Text(dev.id.clone()));
    if let Some(t) = &job.target {
        r.insert("class".to_string(), Value::from(t.class));
    }
    let mut tiers = BTreeMap::new();
    for (name, t) in [("reach", &p.reach), ("management", &p.management), ("stream", &p.stream), ("sample", &p.sample)] {
        if let Some(t) = t {
            tiers.insert(name.to_string(), tier(t));
        }
    }
    r.insert("tiers".into(), Value::Map(tiers));
    let online = p.reach.as_ref().is_some_and(|t| t.class == ErrorClass::Ok);
    r.insert("online".into(), Value::Bool(online));
    if let Some(rtt) = p.reach_rtt_ms {
        r.insert("reachRttMs".into(), Value::Float(rtt));
    }
    if let Some(id) = &p.identity {
        r.insert(
            "identity".into(),
            Value::map([
                ("manufacturer", text(&id.manufacturer)),
                ("model", text(&id.model)),
                ("firmwareVersion", text(&id.firmware)),
                ("serialNumber", text(&id.serial)),
                ("hardwareId", text(&id.hardware_id)),
            ]),
        );
    }
    if let Some(off) = p.clock_offset_s {
        r.insert("clockOffsetSecs".into(), Value::Int(off));
    }
    if let Some(h) = &p.health {
        let mut m = BTreeMap::new();
        if let Some(v) = h.cpu_pct {
            m.insert("cpuPct".to_string(), Value::Float(v));
        }
        if let Some(v) = h.mem_used_mb {
            m.insert("memUsedMb".to_string(), Value::Float(v));
        }
        if let Some(v) = h.mem_free_mb {
            m.insert("memFreeMb".to_string(), Value::Float(v));
        }
        if let Some(v) = h.uptime_s {
            m.insert("uptimeSecs".to_string(), Value::from(v));
        }
        r.insert("health".into(), Value::Map(m));
    }
    if !p.hdds.is_empty() {
        let hdds = p
            .hdds
            .iter()
            .map(|h| {
                let mut m = vec![("id", text(&h.id)), ("status", text(&h.status))];
                if let Some(c) = h.capacity_mb {
                    m.push(("capacityMb", Value::from(c)));
                }
                if let Some(f) = h.free_mb {
                    m.push(("freeMb", Value::from(f)));
                }
                Value::map(m)
            })
            .collect();
        r.insert("hdds".into(), Value::Array(hdds));
    }
    let streams = p
        .streams
        .iter()
        .map(|s| {
            let mut m = vec![("profile", text(&s.profile))];
            if let Some(c) = s.class {
                m.push(("class", Value::from(c.as_str())));
            }
            if let Some(c) = &s.codec {
                m.push(("codec", text(c)));
            }
            if let (Some(w), Some(h)) = (s.width, s.height) {
                m.push(("width", Value::from(u64::from(w))));
                m.push(("height", Value::from(u64::from(h))));
            }
            if let Some(f) = s.fps {
                m.push(("fps", Value::Float(f)));
            }
            Value::map(m)
        })
        .collect();
    r.insert("streams".into(), Value::Array(streams));
    if let Some(s) = &p.measured {
        r.insert(
            "sampled".into(),
            Value::map([
                ("fps", Value::Float((s.fps * 100.0).round() / 100.0)),
                ("kbitPerSec", Value::Float((s.kbit_s * 10.0).round() / 10.0)),
                ("packets", Value::from(s.packets)),
                ("lost", Value::from(s.lost)),
                ("ms", ms(s.duration)),
            ]),
        );
    }
    Ok(Output::value(Value::Map(r)))
}

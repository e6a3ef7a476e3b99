//! Child devices (cameras, NVRs, radars, ANPR units): reports what the probe thread
//! (`crate::devices`) last saw. Nothing is probed here, so a dead device never delays a batch.
//! Devices without an address, or not probed yet, get no report: nothing is invented.

use scs_protocol::{DeviceReport, Metric};

use super::{CollectError, Collector, Report};
use crate::config::DeviceConfig;
use crate::devices::{class_code, DeviceState, ErrorClass, StateCache, Tier};

/// Profile tokens come from the device: cut to the protocol's label limit on a char boundary.
fn label(s: &str) -> &str {
    let max = scs_protocol::limits::MAX_LABEL_LEN;
    let end = (0..=max.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    s.get(..end).unwrap_or("")
}

/// Events per batch: well under the protocol's 256 so a burst never pushes a batch over its byte limit
/// (the rest wait for the next interval).
pub const MAX_EVENTS_PER_INTERVAL: usize = 64;

pub struct Devices {
    ids: Vec<String>,
    cache: StateCache,
}

impl Devices {
    pub fn new(devices: &[DeviceConfig], cache: StateCache) -> Devices {
        let ids = devices.iter().filter(|d| d.probe_target().is_some()).map(|d| d.id.clone()).collect();
        Devices { ids, cache }
    }
}

impl Collector for Devices {
    fn name(&self) -> &'static str {
        "devices"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        out.events.extend(self.cache.drain_events(MAX_EVENTS_PER_INTERVAL));
        let ts = crate::clock::now_ms();
        for id in &self.ids {
            // Read in place under the lock, one device at a time: cloning every device's state per
            // batch would cost a copy of the whole cache at each interval.
            let Some(metrics) = self.cache.read(id, metrics_of).flatten() else { continue };
            out.children.push(DeviceReport { sensor: id.clone(), ts, metrics });
        }
        Ok(())
    }
}

/// The metrics one device's state gives; `None` before its first reach probe.
fn metrics_of(s: &DeviceState) -> Option<Vec<Metric>> {
    let online = s.online()?;
    let mut metrics = vec![Metric::new("device.online", i64::from(online))];
    if let Some(ms) = s.reach_rtt_ms.filter(|_| online) {
        metrics.push(Metric::new("device.latency_ms", ms));
    }
    for tier in Tier::ALL {
        if let Some(r) = s.last(tier) {
            metrics.push(Metric::labelled("device.probe_class", tier.as_str(), class_code(r.class)));
            let ms = (r.duration.as_secs_f64() * 10_000.0).round() / 10.0;
            metrics.push(Metric::labelled("device.probe_ms", tier.as_str(), ms));
        }
    }
    let authed =
        [Tier::Management, Tier::Stream, Tier::Sample].iter().filter_map(|t| s.last(*t)).any(|r| r.class == ErrorClass::Ok);
    if s.auth_failed || authed {
        metrics.push(Metric::new("device.auth_ok", i64::from(!s.auth_failed)));
    }
    if let Some(off) = s.clock_offset_s {
        metrics.push(Metric::new("device.clock_offset_s", off));
    }
    for st in &s.streams {
        if let Some(c) = st.class {
            metrics.push(Metric::labelled("camera.stream_ok", label(&st.profile), i64::from(c == ErrorClass::Ok)));
        }
    }
    if let Some(h) = &s.health {
        if let Some(v) = h.cpu_pct {
            metrics.push(Metric::new("device.cpu_pct", v));
        }
        if let (Some(used), Some(free)) = (h.mem_used_mb, h.mem_free_mb) {
            if used + free > 0.0 {
                metrics.push(Metric::new("device.mem_used_pct", (used * 1000.0 / (used + free)).round() / 10.0));
            }
        }
        if let Some(u) = h.uptime_s {
            metrics.push(Metric::new("device.uptime_secs", u));
        }
    }
    for d in &s.hdds {
        let ok = d.status.eq_ignore_ascii_case("ok");
        metrics.push(Metric::labelled("nvr.hdd_ok", label(&d.id), i64::from(ok)));
        if let (Some(cap), Some(free)) = (d.capacity_mb, d.free_mb) {
            if cap > 0 {
                let used = (cap.saturating_sub(free)) as f64 * 1000.0 / cap as f64;
                metrics.push(Metric::labelled("nvr.disk_used_pct", label(&d.id), used.round() / 10.0));
            }
        }
        const MB: u64 = 1024 * 1024;
        if let Some(cap) = d.capacity_mb {
            metrics.push(Metric::labelled("nvr.hdd_capacity_bytes", label(&d.id), cap.saturating_mul(MB)));
        }
        if let Some(free) = d.free_mb {
            metrics.push(Metric::labelled("nvr.hdd_free_bytes", label(&d.id), free.saturating_mul(MB)));
        }
    }
    for c in &s.channels {
        if let Some(on) = c.online {
            metrics.push(Metric::labelled("nvr.channel_online", label(&c.id), i64::from(on)));
        }
        if let Some(rec) = c.recording {
            metrics.push(Metric::labelled("nvr.recording", label(&c.id), i64::from(rec)));
        }
    }
    if let Some(n) = s.recordings {
        metrics.push(Metric::new("nvr.recordings", n));
    }
    if let Some(m) = s.sample.as_deref() {
        metrics.push(Metric::new("camera.fps", (m.fps * 10.0).round() / 10.0));
        metrics.push(Metric::new("camera.bitrate_kbps", m.kbit_s.round()));
        let sent = m.packets + m.lost;
        if sent > 0 {
            metrics.push(Metric::new("camera.rtp_loss_pct", (m.lost as f64 * 1000.0 / sent as f64).round() / 10.0));
        }
    }
    Some(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::value;
    use std::time::{Duration, Instant};

    #[test]
    fn reports_what_the_probe_thread_saw_and_nothing_else() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let closed = {
            let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l2.local_addr().unwrap()
        }; // dropped: nothing listens there now
        let dev = |id: &str, addr: Option<String>| DeviceConfig {
            id: id.into(),
            device_type: "CAMERA".into(),
            address: addr,
            ..Default::default()
        };
        let devs =
            vec![dev("cam-up", Some(open.to_string())), dev("cam-down", Some(closed.to_string())), dev("cam-noaddr", None)];
        let cache = StateCache::default();
        let mut c = Devices::new(&devs, cache.clone());
        let mut r = Report::default();
        c.collect(&mut r).unwrap();
        assert!(r.children.is_empty(), "not probed yet: no report");

        let mut cfg = crate::config::Config { devices: devs, ..Default::default() };
        cfg.collect.probe_timeout_ms = 500;
        let probes = crate::devices::start(&cfg, Duration::from_secs(1), &cache).unwrap();
        let start = Instant::now();
        loop {
            let mut r = Report::default();
            c.collect(&mut r).unwrap();
            if r.children.len() == 2 {
                let up = r.children.iter().find(|d| d.sensor == "cam-up").unwrap();
                assert_eq!(value(&up.metrics, "device.online", None), Some(1.0));
                assert!(value(&up.metrics, "device.latency_ms", None).unwrap() >= 0.0);
                assert_eq!(value(&up.metrics, "device.probe_class", Some("reach")), Some(0.0));
                let down = r.children.iter().find(|d| d.sensor == "cam-down").unwrap();
                assert_eq!(value(&down.metrics, "device.online", None), Some(0.0));
                assert!(value(&down.metrics, "device.latency_ms", None).is_none());
                assert_eq!(value(&down.metrics, "device.probe_class", Some("reach")), Some(2.0), "refused");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no probe results: {r:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(probes);
    }
}

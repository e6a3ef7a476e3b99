//! Child devices (cameras, NVRs, radars, ANPR units): for now a real TCP reachability check of each
//! configured address, with connect latency. Protocol-level probes (ONVIF, NVR APIs) come later and
//! add metrics to the same reports. Devices without an address get no report: nothing is invented.

use std::time::Duration;

use scs_protocol::{DeviceReport, Metric};

use super::{round1, CollectError, Collector, Report};
use crate::config::DeviceConfig;

/// Result of one TCP connect attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reach {
    Up { latency_ms: f64 },
    Down,
}

/// Resolves `target` and tries each address until one accepts, all within `timeout`.
pub fn tcp_probe(target: &str, timeout: Duration) -> Reach {
    match crate::net_probe::probe(target, timeout) {
        Ok(c) => Reach::Up { latency_ms: round1(c.latency.as_secs_f64() * 1000.0) },
        Err(e) => {
            log::debug!("device probe {target}: {e}");
            Reach::Down
        }
    }
}

pub struct Devices {
    targets: Vec<(String, String)>,
    timeout: Duration,
    concurrency: usize,
}

impl Devices {
    pub fn new(devices: &[DeviceConfig], timeout: Duration, concurrency: usize) -> Devices {
        let targets = devices.iter().filter_map(|d| Some((d.id.clone(), d.probe_target()?))).collect();
        Devices { targets, timeout, concurrency: concurrency.max(1) }
    }
}

impl Collector for Devices {
    fn name(&self) -> &'static str {
        "devices"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        if self.targets.is_empty() {
            return Ok(());
        }
        // Probes run in parallel (at most `concurrency` threads) so 64 unreachable devices cost one
        // timeout, not 64.
        let per_thread = self.targets.len().div_ceil(self.concurrency);
        let timeout = self.timeout;
        let results: Vec<(usize, Reach)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .targets
                .chunks(per_thread)
                .enumerate()
                .map(|(ci, chunk)| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .enumerate()
                            .map(|(i, (_, target))| (ci * per_thread + i, tcp_probe(target, timeout)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        });
        let ts = crate::clock::now_ms();
        for (i, reach) in results {
            let Some((id, _)) = self.targets.get(i) else { continue };
            let mut metrics = Vec::with_capacity(2);
            match reach {
                Reach::Up { latency_ms } => {
                    metrics.push(Metric::new("device.online", 1i64));
                    metrics.push(Metric::new("device.latency_ms", latency_ms));
                }
                Reach::Down => metrics.push(Metric::new("device.online", 0i64)),
            }
            out.children.push(DeviceReport { sensor: id.clone(), ts, metrics });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::value;

    #[test]
    fn probes_real_listeners_and_closed_ports() {
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
        let mut c = Devices::new(&devs, Duration::from_millis(500), 2);
        let mut r = Report::default();
        c.collect(&mut r).unwrap();
        assert_eq!(r.children.len(), 2, "no report for a device without address");
        let up = r.children.iter().find(|d| d.sensor == "cam-up").unwrap();
        assert_eq!(value(&up.metrics, "device.online", None), Some(1.0));
        assert!(value(&up.metrics, "device.latency_ms", None).unwrap() >= 0.0);
        let down = r.children.iter().find(|d| d.sensor == "cam-down").unwrap();
        assert_eq!(value(&down.metrics, "device.online", None), Some(0.0));
        assert!(value(&down.metrics, "device.latency_ms", None).is_none());
    }
}

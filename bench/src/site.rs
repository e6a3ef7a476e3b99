//! A realistic site's telemetry batch: the gateway's own host and agent metrics plus its child devices
//! (cameras, NVRs with per-channel recording flags, radars with vendor metrics), and the same batch as
//! plain JSON for the size comparison.

use scs_protocol::telemetry::DeviceReport;
use scs_protocol::{Metric, MetricValue, TelemetryBatch};
use serde_json::{json, Value};

/// Small deterministic variation so values are not all identical (identical values would flatter neither
/// encoding much, but real data varies).
fn wobble(seq: u64, i: u64) -> f64 {
    ((seq.wrapping_mul(31).wrapping_add(i * 17)) % 1000) as f64 / 10.0
}

fn host_metrics(seq: u64) -> Vec<Metric> {
    let mut m = vec![
        Metric::new("cpu.usage_pct", 10.0 + wobble(seq, 1) / 4.0),
        Metric::new("load.1m", 0.25 + wobble(seq, 2) / 100.0),
        Metric::new("load.5m", 0.31),
        Metric::new("load.15m", 0.28),
        Metric::new("mem.total_bytes", 1_073_741_824u64),
        Metric::new("mem.available_bytes", 612_368_384u64 + seq * 4096),
        Metric::new("mem.used_pct", 42.9),
        Metric::new("swap.used_bytes", 0u64),
        Metric::new("uptime.secs", 864_000 + seq * 10),
    ];
    for (mount, total, used) in [("/", 7_516_192_768u64, 3_221_225_472u64), ("/data", 30_064_771_072, 12_884_901_888)] {
        m.push(Metric::labelled("disk.total_bytes", mount, total));
        m.push(Metric::labelled("disk.used_bytes", mount, used + seq * 8192));
        m.push(Metric::labelled("disk.used_pct", mount, (used as f64 / total as f64 * 1000.0).round() / 10.0));
    }
    for (zone, t) in [("cpu-thermal", 51.5), ("soc-thermal", 48.0)] {
        m.push(Metric::labelled("thermal.temp_c", zone, t + wobble(seq, 3) / 50.0));
    }
    for (iface, k) in [("eth0", 7u64), ("wwan0", 3)] {
        m.push(Metric::labelled("net.rx_bytes", iface, 9_000_000_000 + seq * 1_250_000 * k));
        m.push(Metric::labelled("net.tx_bytes", iface, 4_000_000_000 + seq * 800_000 * k));
        m.push(Metric::labelled("net.rx_errors", iface, 0u64));
        m.push(Metric::labelled("net.tx_errors", iface, 0u64));
    }
    m.extend([
        Metric::new("agent.rss_bytes", 4_718_592u64),
        Metric::new("agent.cpu_pct", 0.4),
        Metric::new("agent.queue_depth", 1u64),
        Metric::new("agent.queue_bytes", 3_100u64),
        Metric::new("agent.dropped_batches", 0u64),
        Metric::new("agent.reconnects", 2u64),
        Metric::new("agent.published", seq),
        Metric::new("agent.uptime_secs", 86_400 + seq * 10),
    ]);
    m
}

/// `devices` sensors: the gateway, then cameras, 1 NVR per 16 cameras (16 channels each) and radars.
pub fn batch(gw: &str, boot: u64, seq: u64, ts: u64, devices: usize) -> TelemetryBatch {
    let mut b = TelemetryBatch::new(gw, boot, seq, ts);
    b.devices.push(DeviceReport { sensor: gw.to_owned(), ts, metrics: host_metrics(seq) });
    let children = devices.saturating_sub(1);
    let nvrs = children.div_ceil(16).min(children);
    let radars = (children / 20).min(children - nvrs);
    let cameras = children - nvrs - radars;
    for i in 0..cameras {
        let w = wobble(seq, i as u64 + 10);
        b.devices.push(DeviceReport {
            sensor: format!("{gw}-cam-{i:03}"),
            ts,
            metrics: vec![
                Metric::new("device.online", 1i64),
                Metric::new("device.latency_ms", 1.0 + w / 20.0),
                Metric::new("camera.fps", 25i64),
                Metric::new("camera.bitrate_kbps", 4096 + (w as i64) * 10),
                Metric::new("device.temp_c", 38.5 + w / 40.0),
            ],
        });
    }
    for i in 0..nvrs {
        let mut metrics = vec![
            Metric::new("device.online", 1i64),
            Metric::new("device.latency_ms", 2.5),
            Metric::new("nvr.disk_used_pct", 71.2 + wobble(seq, 99) / 100.0),
        ];
        metrics.extend((1..=16).map(|ch| Metric::labelled("nvr.recording", &format!("ch{ch}"), 1i64)));
        b.devices.push(DeviceReport { sensor: format!("{gw}-nvr-{i:02}"), ts, metrics });
    }
    for i in 0..radars {
        b.devices.push(DeviceReport {
            sensor: format!("{gw}-radar-{i:02}"),
            ts,
            metrics: vec![
                Metric::new("device.online", 1i64),
                Metric::new("device.latency_ms", 4.0),
                Metric::new("radar.vehicles", (seq % 40) as i64),
                Metric::new("radar.speed_avg_kmh", 43.7),
            ],
        });
    }
    b
}

fn metric_value(v: MetricValue) -> Value {
    match v {
        MetricValue::Int(i) => json!(i),
        MetricValue::Float(f) => json!(f),
    }
}

/// The same batch as plain JSON: field names as in the Rust types, metric names as text, compact.
pub fn as_json(b: &TelemetryBatch) -> Vec<u8> {
    let devices: Vec<Value> = b
        .devices
        .iter()
        .map(|d| {
            let metrics: Vec<Value> = d
                .metrics
                .iter()
                .map(|m| {
                    let mut o = json!({ "name": m.key.name(), "value": metric_value(m.value) });
                    if let Some(l) = &m.label {
                        o["label"] = json!(l);
                    }
                    o
                })
                .collect();
            json!({ "sensor": d.sensor, "ts": d.ts, "metrics": metrics })
        })
        .collect();
    let mut v = json!({ "v": b.v, "gateway": b.gateway, "boot": b.boot, "seq": b.seq, "ts": b.ts, "devices": devices });
    if let Some(g) = b.gap {
        v["gap"] = json!({ "dropped": g.dropped, "firstSeq": g.first_seq, "lastSeq": g.last_seq });
    }
    serde_json::to_vec(&v).expect("serialising a serde_json::Value cannot fail")
}

/// The `[[devices]]` section of an agent config for a site of `devices` sensors: the gateway itself and
/// `devices - 1` children probed with a TCP connect each interval. Half answer on `open_port` (1 in 16 an
/// NVR), the other half refuse on `closed_port`.
pub fn devices_toml(gw: &str, devices: u64, open_port: u16, closed_port: u16) -> String {
    let mut toml = String::new();
    for i in 1..devices {
        let (ty, port) =
            if i % 16 == 0 { ("NVR", open_port) } else { ("CAMERA", if i % 2 == 0 { open_port } else { closed_port }) };
        toml.push_str(&format!(
            "[[devices]]\nid = \"{gw}-dev-{i:03}\"\ntype = \"{ty}\"\nname = \"Device {i}\"\naddress = \"127.0.0.1:{port}\"\n\n"
        ));
    }
    toml
}

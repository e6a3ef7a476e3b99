//! Turns the collectors' report of one interval into `TelemetryBatch`es and commits them to the queue.
//!
//! A batch is bounded by bytes (`MAX_UPLINK_BYTES`) as well as by device and metric counts. A site too
//! large for one message is split over as many batches as it needs, each with its own seq, so the
//! queue never refuses an interval as too large: the gateway's own report comes first, a device with
//! more metrics than one report may carry is split into several reports of the same sensor.

use scs_protocol::limits::{MAX_DEVICES_PER_BATCH, MAX_METRICS_PER_DEVICE, MAX_UPLINK_BYTES};
use scs_protocol::telemetry::Gap;
use scs_protocol::{encode, DeviceReport, Metric, TelemetryBatch};

use crate::collect::Report;
use crate::queue::{Queue, QueueError};

/// Bytes a CBOR array header may grow by when it goes from empty (1 byte) to up to 65 535 items.
const ARRAY_HEADER_GROWTH: usize = 2;

/// Encoded size of a batch header at the largest values its fields can take (seq, boot, ts and gap
/// at `u64::MAX`), with an empty device list: whatever seq and gap the queue hands out, a batch is
/// at most this plus its device reports.
fn batch_overhead(gateway: &str) -> usize {
    let mut b = TelemetryBatch::new(gateway, u64::MAX, u64::MAX, u64::MAX);
    b.gap = Some(Gap { dropped: u64::MAX, first_seq: u64::MAX, last_seq: u64::MAX });
    encode(&b).len() + ARRAY_HEADER_GROWTH
}

/// Encoded size the events add to a batch (map key 7 and the array), 0 without events.
fn events_overhead(events: &[scs_protocol::DeviceEvent]) -> usize {
    if events.is_empty() {
        return 0;
    }
    encode(&events.to_vec()).len() + 1
}

/// Encoded size of a device report without its metrics.
fn report_overhead(sensor: &str, ts: u64) -> usize {
    encode(&DeviceReport { sensor: sensor.to_owned(), ts, metrics: Vec::new() }).len() + ARRAY_HEADER_GROWTH
}

/// One sensor's metrics cut into reports that each respect the metric count and fit `budget` bytes.
fn device_reports(sensor: &str, ts: u64, metrics: &[Metric], budget: usize, out: &mut Vec<(DeviceReport, usize)>) {
    let overhead = report_overhead(sensor, ts);
    let mut current: Vec<Metric> = Vec::new();
    let mut size = overhead;
    for m in metrics {
        let len = encode(m).len();
        if !current.is_empty() && (current.len() >= MAX_METRICS_PER_DEVICE || size + len > budget) {
            out.push((DeviceReport { sensor: sensor.to_owned(), ts, metrics: std::mem::take(&mut current) }, size));
            size = overhead;
        }
        current.push(m.clone());
        size += len;
    }
    if !current.is_empty() {
        out.push((DeviceReport { sensor: sensor.to_owned(), ts, metrics: current }, size));
    }
}

/// The device lists of the batches one interval needs, in order: the gateway's own report first.
/// Each list, wrapped in a batch with any seq and gap, encodes to at most `MAX_UPLINK_BYTES`.
/// An empty report still gives one (empty) batch: it carries a pending gap and shows the agent alive.
pub fn split(gateway: &str, ts: u64, report: &Report) -> Vec<Vec<DeviceReport>> {
    // Room for the interval's device events (they ride in the first batch) is kept in every batch.
    let overhead = batch_overhead(gateway) + events_overhead(&report.events);
    let budget = MAX_UPLINK_BYTES.saturating_sub(overhead);
    let mut reports = Vec::with_capacity(report.children.len() + 1);
    device_reports(gateway, ts, &report.gateway, budget, &mut reports);
    for d in &report.children {
        device_reports(&d.sensor, d.ts, &d.metrics, budget, &mut reports);
    }
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut size = overhead;
    for (r, len) in reports {
        if !current.is_empty() && (current.len() >= MAX_DEVICES_PER_BATCH || size + len > MAX_UPLINK_BYTES) {
            batches.push(std::mem::take(&mut current));
            size = overhead;
        }
        current.push(r);
        size += len;
    }
    if !current.is_empty() || batches.is_empty() {
        batches.push(current);
    }
    batches
}

/// Encodes and commits the interval's batches, one seq each; returns their seqs. A pending gap goes
/// with the first batch.
pub fn enqueue(queue: &Queue, gateway: &str, boot: u64, report: &Report) -> Result<Vec<u64>, QueueError> {
    let ts = crate::clock::now_ms();
    let batches = split(gateway, ts, report);
    if batches.len() > 1 {
        log::info!("gateway {gateway}: interval too large for one message, sent as {} batches", batches.len());
    }
    let mut seqs = Vec::with_capacity(batches.len());
    let mut events = (!report.events.is_empty()).then(|| report.events.clone());
    for devices in batches {
        let events = events.take();
        let seq = queue.enqueue_telemetry(move |seq, gap| {
            if let Some(g) = gap {
                log::warn!(
                    "telemetry seq {seq} reports a gap: {} messages dropped (seqs {}..={})",
                    g.dropped,
                    g.first_seq,
                    g.last_seq
                );
            }
            let mut b = TelemetryBatch::new(gateway, boot, seq, ts);
            b.gap = gap;
            b.devices = devices;
            b.events = events;
            encode(&b)
        })?;
        seqs.push(seq);
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncMode;
    use crate::queue::QueueOptions;
    use scs_protocol::topics::topic;
    use scs_protocol::{decode_uplink, TopicKind, Uplink};

    fn temp_queue(tag: &str) -> (std::path::PathBuf, Queue) {
        let dir = std::env::temp_dir().join(format!("scs-tel-{tag}-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let q = Queue::open(&dir.join("agent.db"), QueueOptions { max_rows: 10_000, max_bytes: 1 << 30, sync: SyncMode::Normal })
            .unwrap();
        (dir, q)
    }

    fn batches(q: &Queue, gw: &str) -> Vec<(usize, TelemetryBatch)> {
        q.read_range(0, u64::MAX, 10_000)
            .unwrap()
            .into_iter()
            .map(|m| match decode_uplink(&topic(gw, TopicKind::Telemetry), &m.payload).unwrap().1 {
                Uplink::Telemetry(b) => (m.payload.len(), b),
                other => panic!("not telemetry: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn device_events_ride_in_the_first_batch_only() {
        let (dir, q) = temp_queue("events");
        let mut report = big_site();
        report.events = (0..64)
            .map(|i| {
                let mut e = scs_protocol::DeviceEvent::new("cam-1", i, scs_protocol::EventKind::REPLACED);
                e.detail = Some("x".repeat(200));
                e
            })
            .collect();
        let seqs = enqueue(&q, "gw-1", 9, &report).unwrap();
        assert!(seqs.len() > 1);
        let got = batches(&q, "gw-1");
        assert_eq!(got[0].1.events.as_ref().map(Vec::len), Some(64));
        assert!(got[1..].iter().all(|(_, b)| b.events.is_none()));
        for (bytes, _) in &got {
            assert!(*bytes <= MAX_UPLINK_BYTES, "{bytes}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_small_interval_is_one_batch_that_decodes() {
        let (dir, q) = temp_queue("small");
        let report = Report {
            gateway: vec![Metric::new("cpu.usage_pct", 3.5), Metric::labelled("disk.used_pct", "/", 41.0)],
            children: vec![DeviceReport { sensor: "cam-1".into(), ts: 5, metrics: vec![Metric::new("device.online", 1i64)] }],
            ..Report::default()
        };
        let seqs = enqueue(&q, "gw-1", 9, &report).unwrap();
        assert_eq!(seqs.len(), 1);
        let got = batches(&q, "gw-1");
        let b = &got[0].1;
        assert_eq!((b.boot, b.seq), (9, seqs[0]));
        assert_eq!(b.devices[0].sensor, "gw-1");
        assert_eq!(b.devices[1].sensor, "cam-1");
        assert_eq!(b.sample_count(), 3);
        // An empty interval is still one (empty) batch.
        assert_eq!(enqueue(&q, "gw-1", 9, &Report::default()).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// 1 500 cameras with 40 labelled metrics each (~3 MB of CBOR), one of them with 1 200 metrics:
    /// far more than one message may hold, by bytes, by device count and by metrics per device.
    fn big_site() -> Report {
        let metric =
            |i: usize| Metric::labelled(&format!("camera.channel_stat_{i:03}"), &format!("channel-{i:03}/stream-main"), i as f64);
        let mut children: Vec<DeviceReport> = (0..1500)
            .map(|d| DeviceReport { sensor: format!("cam-{d:04}"), ts: 7, metrics: (0..40).map(metric).collect() })
            .collect();
        children[3].metrics = (0..1200).map(metric).collect();
        Report { gateway: vec![Metric::new("cpu.usage_pct", 1.0)], children, ..Report::default() }
    }

    #[test]
    fn a_site_larger_than_one_message_is_split_by_bytes_and_loses_nothing() {
        let (dir, q) = temp_queue("big");
        let report = big_site();
        let seqs = enqueue(&q, "gw-big", 1, &report).expect("a big interval is queued, not refused as too large");
        assert!(seqs.len() > 1, "{seqs:?}");
        let got = batches(&q, "gw-big");
        assert_eq!(got.len(), seqs.len());
        for (len, b) in &got {
            assert!(*len <= MAX_UPLINK_BYTES, "batch seq {} is {len} bytes", b.seq);
        }
        // Every sample of the interval arrived, each device's metrics in order.
        let total: usize = got.iter().map(|(_, b)| b.sample_count()).sum();
        assert_eq!(total, 1 + 1499 * 40 + 1200);
        assert_eq!(got[0].1.devices[0].sensor, "gw-big", "the gateway's own report comes first");
        let cam3: Vec<Metric> =
            got.iter().flat_map(|(_, b)| &b.devices).filter(|d| d.sensor == "cam-0003").flat_map(|d| d.metrics.clone()).collect();
        assert_eq!(cam3, report.children[3].metrics);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_stay_within_size_at_the_largest_seq_and_gap() {
        let gw = "gw-with-a-rather-long-identifier-0123456789";
        for devices in split(gw, u64::MAX, &big_site()) {
            let mut b = TelemetryBatch::new(gw, u64::MAX, u64::MAX, u64::MAX);
            b.gap = Some(Gap { dropped: u64::MAX, first_seq: u64::MAX, last_seq: u64::MAX });
            b.devices = devices;
            assert!(encode(&b).len() <= MAX_UPLINK_BYTES);
            assert!(b.validate().is_ok());
        }
    }
}

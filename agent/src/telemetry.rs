//! Builds one `TelemetryBatch` per interval from the collectors' report and commits it to the queue.

use scs_protocol::limits::{MAX_DEVICES_PER_BATCH, MAX_METRICS_PER_DEVICE};
use scs_protocol::telemetry::Gap;
use scs_protocol::{encode, DeviceReport, TelemetryBatch};

use crate::collect::Report;
use crate::queue::{Queue, QueueError};

/// The batch for `seq`, with the gateway's own report first. Reports over the protocol limits are
/// trimmed (and logged) rather than producing a message the cloud would refuse.
pub fn build_batch(gateway: &str, boot: u64, seq: u64, ts: u64, report: &Report, gap: Option<Gap>) -> TelemetryBatch {
    let mut b = TelemetryBatch::new(gateway, boot, seq, ts);
    b.gap = gap;
    let mut own = report.gateway.clone();
    if own.len() > MAX_METRICS_PER_DEVICE {
        log::warn!("gateway {gateway}: {} metrics, sending the first {MAX_METRICS_PER_DEVICE}", own.len());
        own.truncate(MAX_METRICS_PER_DEVICE);
    }
    if !own.is_empty() {
        b.devices.push(DeviceReport { sensor: gateway.to_owned(), ts, metrics: own });
    }
    for d in &report.children {
        if b.devices.len() >= MAX_DEVICES_PER_BATCH {
            log::warn!("gateway {gateway}: more than {MAX_DEVICES_PER_BATCH} device reports, rest dropped");
            break;
        }
        let mut d = d.clone();
        d.metrics.truncate(MAX_METRICS_PER_DEVICE);
        b.devices.push(d);
    }
    b
}

/// Encodes and commits the batch; returns its seq.
pub fn enqueue(queue: &Queue, gateway: &str, boot: u64, report: &Report) -> Result<u64, QueueError> {
    let ts = crate::clock::now_ms();
    queue.enqueue_telemetry(|seq, gap| {
        if let Some(g) = gap {
            log::warn!(
                "telemetry seq {seq} reports a gap: {} messages dropped (seqs {}..={})",
                g.dropped,
                g.first_seq,
                g.last_seq
            );
        }
        encode(&build_batch(gateway, boot, seq, ts, report, gap))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scs_protocol::topics::topic;
    use scs_protocol::{decode_uplink, Metric, TopicKind, Uplink};

    #[test]
    fn batch_decodes_as_valid_uplink() {
        let report = Report {
            gateway: vec![Metric::new("cpu.usage_pct", 3.5), Metric::labelled("disk.used_pct", "/", 41.0)],
            children: vec![DeviceReport { sensor: "cam-1".into(), ts: 5, metrics: vec![Metric::new("device.online", 1i64)] }],
        };
        let gap = Some(Gap { dropped: 3, first_seq: 1, last_seq: 3 });
        let bytes = encode(&build_batch("gw-1", 9, 10, 1234, &report, gap));
        let (_, m) = decode_uplink(&topic("gw-1", TopicKind::Telemetry), &bytes).unwrap();
        let Uplink::Telemetry(b) = m else { panic!("not telemetry") };
        assert_eq!((b.boot, b.seq, b.gap), (9, 10, gap));
        assert_eq!(b.devices[0].sensor, "gw-1");
        assert_eq!(b.devices[1].sensor, "cam-1");
        assert_eq!(b.sample_count(), 3);
    }
}

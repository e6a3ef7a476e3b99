//! Hostile input published with `mosquitto_pub`: garbage, truncated, oversized, wrong-topic,
//! wrong-version and invalid messages are rejected and counted per gateway, and good data keeps
//! flowing through the same subscription.

mod support;

use std::time::Duration;

use scs_protocol::{encode, DeviceReport, TelemetryBatch, TopicKind};
use scs_testkit::{publish, wait_for, Mosquitto, Shim, ShimOpts};
use support::{telemetry, TestGateway, BOOT};

const T: Duration = Duration::from_secs(15);

fn hostile_input_is_counted(shim: &Shim, port: u16) {
    let gw = "gw-hostile";
    let g = TestGateway::connect(shim, port, gw);
    let t = |k: TopicKind| scs_protocol::topics::topic(gw, k);
    let good = telemetry(gw, 1, 3);
    // Hostile content from a gateway that holds its key (buggy or compromised): signed, so every
    // check after the signature is exercised. Unsigned input is the attack suite's subject.
    let publish = |port: u16, topic: &str, payload: &[u8]| scs_testkit::publish(port, topic, &g.creds.sign(topic, payload));

    publish(port, &t(TopicKind::Telemetry), b"this is not CBOR");
    g.publish(TopicKind::Telemetry, telemetry(gw, 2, 3));
    publish(port, &t(TopicKind::Telemetry), &good[..good.len() - 4]);
    publish(port, &t(TopicKind::Telemetry), &vec![0xa5; 300 * 1024]);
    publish(port, &format!("scs/v1/{gw}/up/nonsense"), &good);
    publish(port, &format!("scs/v1/{gw}/up/telemetry/extra"), &good);
    g.publish(TopicKind::Telemetry, telemetry(gw, 3, 3));
    let mut v2 = TelemetryBatch::new(gw, BOOT, 50, 1);
    v2.v = 2;
    publish(port, &t(TopicKind::Telemetry), &encode(&v2));
    // Decodes far enough to name its seq, but a sensor id is invalid: rejected receipt, agent drops it.
    let mut bad = TelemetryBatch::new(gw, BOOT, 51, 1);
    bad.devices.push(DeviceReport { sensor: "no spaces allowed".into(), ts: 1, metrics: vec![] });
    publish(port, &t(TopicKind::Telemetry), &encode(&bad));
    // Another gateway's message on this gateway's topic.
    publish(port, &t(TopicKind::Telemetry), &telemetry("gw-other", 52, 1));
    publish(port, &t(TopicKind::Inventory), &[0xbf, 0xff, 0x00]);
    g.publish(TopicKind::Telemetry, telemetry(gw, 4, 3));

    assert!(g.wait_accepted(&[2, 3, 4], T), "good data flows between bad: {:?}", g.receipts());
    assert!(g.wait_rejected(51, T), "invalid message named in a rejected receipt: {:?}", g.receipts());
    assert!(g.wait_rejected(52, T), "gateway mismatch named in a rejected receipt: {:?}", g.receipts());
    assert!(!g.rejected().contains(&50), "an unknown version is never receipted (a newer shim may take it)");

    let expected = [
        ("malformed", 3), // garbage, truncated, bad inventory
        ("too_large", 1),
        ("topic", 2),
        ("version", 1),
        ("invalid_id", 1),
        ("gateway_mismatch", 1),
    ];
    let stats = wait_for(T, "all rejections counted", || {
        let s = shim.api().get_json(&format!("/v1/gateways/{gw}/stats"));
        (s["rejected"] == 9).then_some(s)
    });
    for (reason, n) in expected {
        assert_eq!(stats["process"]["rejectedByReason"][reason], n, "{reason}: {stats}");
        let row = stats["rejections"].as_array().unwrap().iter().find(|r| r["reason"] == reason).cloned();
        assert_eq!(row.map(|r| r["count"].clone()), Some(n.into()), "durable count of {reason}: {stats}");
    }
    assert_eq!(stats["storedMessages"], 3);

    // Still healthy and still ingesting after all that.
    g.publish(TopicKind::Telemetry, telemetry(gw, 5, 3));
    assert!(g.wait_accepted(&[5], T));
    assert_eq!(shim.api().get("/healthz").status, 200);
}

#[test]
fn mosquitto_hostile_input_is_rejected_and_counted() {
    let broker = Mosquitto::start();
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    hostile_input_is_counted(&shim, broker.port());
}

#[test]
fn embedded_hostile_input_is_rejected_and_counted() {
    let shim = Shim::start(ShimOpts::default());
    hostile_input_is_counted(&shim, shim.mqtt_port().expect("embedded broker"));
}

/// A packet larger than the shim's MQTT client reads (2 MiB) costs a reconnect, is counted, and is not
/// delivered again (clean session): ingest goes on.
#[test]
fn giant_packet_does_not_stop_ingest() {
    let broker = Mosquitto::start();
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    let g = TestGateway::connect(&shim, broker.port(), "gw-giant");
    publish(broker.port(), "scs/v1/gw-giant/up/telemetry", &vec![0u8; 3 * 1024 * 1024]);
    let msg = telemetry("gw-giant", 1, 2);
    let ok = g.resend_until_accepted(TopicKind::Telemetry, 1, &msg, Duration::from_millis(300), T);
    assert!(ok, "ingest resumed after the giant packet");
    let unknown = shim.api().get_json("/v1/gateways/_unknown/stats");
    assert_eq!(unknown["process"]["rejectedByReason"]["too_large"], 1, "{unknown}");
    assert_eq!(shim.api().get("/healthz").status, 200);
}

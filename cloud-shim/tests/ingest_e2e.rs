//! End-to-end ingest through the real `scs-cloud-shim` binary: embedded broker and Mosquitto, receipts
//! only after storage, idempotent replays, and the API reading it all back.

mod support;

use std::time::Duration;

use scs_protocol::{GatewayState, TopicKind};
use scs_testkit::{wait_for, Mosquitto, Shim, ShimOpts};
use serde_json::Value;
use support::{inventory, rows_per_batch, status, telemetry, TestGateway};

const T: Duration = Duration::from_secs(15);

fn metric_rows(shim: &Shim, sensor: &str) -> usize {
    let v = shim.api().get_json(&format!("/v1/sensors/{sensor}/metrics?limit=10000"));
    v["samples"].as_array().map_or(0, Vec::len)
}

fn stored_messages(shim: &Shim, gw: &str) -> i64 {
    shim.api().get_json(&format!("/v1/gateways/{gw}/stats"))["storedMessages"].as_i64().unwrap_or(-1)
}

/// The whole path on one broker: inventory + telemetry in, receipts out, replays stored once.
fn ingest_roundtrip(shim: &Shim, mqtt_port: u16, gw: &str) {
    let g = TestGateway::connect(shim, mqtt_port, gw);
    g.publish_retained(TopicKind::Status, status(gw, GatewayState::Online));
    g.publish(TopicKind::Inventory, inventory(gw, 1));
    for seq in 2..=11 {
        g.publish(TopicKind::Telemetry, telemetry(gw, seq, 5));
    }
    assert!(g.wait_accepted(&(1..=11).collect::<Vec<_>>(), T), "receipts for 1..=11, got {:?}", g.receipts());
    // A receipt means committed: the data is readable right away.
    assert_eq!(metric_rows(shim, gw), 10 * (rows_per_batch(5) - 1));
    assert_eq!(stored_messages(shim, gw), 11);

    // Replays (agent restarted before the receipt arrived) are receipted again and store nothing.
    let before = g.accepted().len();
    for seq in 2..=6 {
        g.publish(TopicKind::Telemetry, telemetry(gw, seq, 5));
    }
    assert!(scs_testkit::wait_until(T, || g.accepted().len() >= before + 5), "duplicates must be receipted again");
    assert_eq!(metric_rows(shim, gw), 10 * (rows_per_batch(5) - 1), "no duplicate rows");
    assert_eq!(stored_messages(shim, gw), 11);
    let stats = shim.api().get_json(&format!("/v1/gateways/{gw}/stats"));
    assert_eq!(stats["process"]["duplicates"], 5, "{stats}");

    // Sensors: the gateway and its camera, linked by parentSensorId, gateway online.
    let sensors = shim.api().get_json(&format!("/v1/sensors?gatewayId={gw}"));
    let list = sensors.as_array().expect("sensors array");
    let find = |id: &str| list.iter().find(|s| s["id"] == id).cloned().unwrap_or(Value::Null);
    let gw_row = find(gw);
    assert_eq!(gw_row["type"], "EDGE_CONTROLLER", "{sensors}");
    assert_eq!(gw_row["parentSensorId"], Value::Null);
    let cam = find(&format!("{gw}-cam-1"));
    assert_eq!(cam["type"], "CAMERA", "{sensors}");
    assert_eq!(cam["parentSensorId"], gw);
    assert_eq!(cam["attrs"]["vendor"], "acme");
    assert!(cam["lastSeen"].as_i64().is_some());
    let one = wait_for(T, "gateway online", || {
        let v = shim.api().get_json(&format!("/v1/sensors/{gw}"));
        (v["status"] == "online").then_some(v)
    });
    assert_eq!(one["presence"]["online"], true, "{one}");

    // Metrics query: by name and time range, values intact.
    let v = shim.api().get_json(&format!(
        "/v1/sensors/{gw}/metrics?name=cpu.usage_pct&from={}&to={}",
        1_700_000_000_000u64 + 3000,
        1_700_000_000_000u64 + 5000
    ));
    let samples = v["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 3, "{v}");
    assert_eq!(samples[0]["ts"], 1_700_000_003_000u64);
    assert_eq!(samples[0]["value"], 13.0);
    let v = shim.api().get_json(&format!("/v1/sensors/{gw}/metrics?name=net.rx_bytes&limit=1&order=desc"));
    assert_eq!(v["samples"][0]["value"], 11_004, "integers stay integers: {v}");
    assert_eq!(v["samples"][0]["label"], "eth4");

    // Offline (what the Last Will says) reaches the sensor row.
    g.publish_retained(TopicKind::Status, status(gw, GatewayState::Offline));
    wait_for(T, "gateway offline", || (shim.api().get_json(&format!("/v1/sensors/{gw}"))["status"] == "offline").then_some(()));
    g.disconnect();
}

#[test]
fn embedded_broker_ingest_with_receipts() {
    let shim = Shim::start(ShimOpts::default());
    let port = shim.mqtt_port().expect("embedded broker port");
    ingest_roundtrip(&shim, port, "gw-emb");
}

#[test]
fn mosquitto_ingest_with_receipts() {
    let broker = Mosquitto::start();
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    ingest_roundtrip(&shim, broker.port(), "gw-mosq");
}

#[test]
fn shim_restart_keeps_data_and_dedup() {
    let broker = Mosquitto::start();
    let mut shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    let g = TestGateway::connect(&shim, broker.port(), "gw-restart");
    for seq in 1..=5 {
        g.publish(TopicKind::Telemetry, telemetry("gw-restart", seq, 3));
    }
    assert!(g.wait_accepted(&[1, 2, 3, 4, 5], T));
    shim.kill9();
    shim.start_again();
    shim.wait_ready(Duration::from_secs(30));
    // The agent replays what it had not seen receipted, plus new data.
    for seq in 3..=8 {
        g.publish(TopicKind::Telemetry, telemetry("gw-restart", seq, 3));
    }
    assert!(g.wait_accepted(&[6, 7, 8], T), "{:?}", g.receipts());
    assert_eq!(metric_rows(&shim, "gw-restart"), 8 * (rows_per_batch(3) - 1));
    assert_eq!(stored_messages(&shim, "gw-restart"), 8);
}

#[test]
fn broker_restart_resubscribes_and_ingest_continues() {
    let mut broker = Mosquitto::start();
    let shim = Shim::start(ShimOpts::with_broker(&broker.url()));
    let g = TestGateway::connect(&shim, broker.port(), "gw-brk");
    g.publish(TopicKind::Telemetry, telemetry("gw-brk", 1, 2));
    assert!(g.wait_accepted(&[1], T));
    broker.restart();
    let msg = telemetry("gw-brk", 2, 2);
    let ok = g.resend_until_accepted(TopicKind::Telemetry, 2, &msg, Duration::from_millis(300), Duration::from_secs(30));
    assert!(ok, "ingest resumed after the broker restart:\n{}", shim.logs());
    assert_eq!(shim.api().get("/healthz").status, 200);
    assert_eq!(stored_messages(&shim, "gw-brk"), 2);
}

/// `--broker mqtts://...` with `--broker-ca`: the shim's own connection to Mosquitto is TLS, verified
/// against a CA generated here; gateways use the plain listener of the same broker.
#[test]
fn mosquitto_over_tls() {
    let dir = scs_testkit::TempDir::new("broker-tls");
    let scs_testkit::TestTls { ca, cert, key, .. } = scs_testkit::generate_tls(dir.path(), &["localhost"]);
    let tls_port = scs_testkit::free_port();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        ca.display(),
        cert.display(),
        key.display()
    ));
    let mut opts = ShimOpts::with_broker(&format!("mqtts://localhost:{tls_port}"));
    opts.args = vec!["--broker-ca".into(), ca.display().to_string()];
    let shim = Shim::start(opts);
    let g = TestGateway::connect(&shim, broker.port(), "gw-mqtts");
    g.publish(TopicKind::Telemetry, telemetry("gw-mqtts", 1, 2));
    assert!(g.wait_accepted(&[1], T), "ingest and receipt over the TLS connection:\n{}", shim.logs());
}

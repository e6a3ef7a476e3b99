//! Shim end-to-end ingest rate, MQTT → store → receipt, with the real binary. A measurement, not a
//! test: ignored by default, run by `scripts/bench` (or by hand):
//!
//! ```text
//! cargo test --release -p scs-cloud-shim --test ingest_bench -- --ignored --nocapture
//! SCS_BENCH_BROKER=mosquitto cargo test ...   # through Mosquitto instead of the embedded broker
//! ```
//! Prints metric records per second from the first publish to the last receipt.

mod support;

use std::time::{Duration, Instant};

use scs_protocol::{encode, DeviceReport, Metric, TelemetryBatch, TopicKind};
use scs_testkit::{Mosquitto, Shim, ShimOpts};
use support::{TestGateway, BOOT};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A batch like a busy site's: `devices` sensors with `per_device` metrics each.
fn batch(gw: &str, seq: u64, devices: usize, per_device: usize) -> Vec<u8> {
    let ts = 1_700_000_000_000 + seq * 10_000;
    let mut b = TelemetryBatch::new(gw, BOOT, seq, ts);
    for d in 0..devices {
        let sensor = if d == 0 { gw.to_owned() } else { format!("{gw}-dev-{d}") };
        let metrics =
            (0..per_device).map(|i| Metric::labelled("net.rx_bytes", &format!("if{i}"), (seq * 7 + i as u64) as i64)).collect();
        b.devices.push(DeviceReport { sensor, ts, metrics });
    }
    encode(&b)
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn shim_ingest_rate() {
    let gateways = env_usize("SCS_BENCH_GATEWAYS", 4);
    let batches = env_usize("SCS_BENCH_BATCHES", 500) as u64;
    let (devices, per_device) = (env_usize("SCS_BENCH_DEVICES", 10), env_usize("SCS_BENCH_METRICS", 20));
    let window = env_usize("SCS_BENCH_WINDOW", 64) as u64;

    let mosquitto = (std::env::var("SCS_BENCH_BROKER").as_deref() == Ok("mosquitto")).then(Mosquitto::start);
    let shim = match &mosquitto {
        Some(m) => Shim::start(ShimOpts { rust_log: "warn".into(), ..ShimOpts::with_broker(&m.url()) }),
        None => Shim::start(ShimOpts { rust_log: "warn".into(), ..ShimOpts::default() }),
    };
    let port = mosquitto.as_ref().map_or_else(|| shim.mqtt_port().expect("embedded broker"), Mosquitto::port);
    let gws: Vec<TestGateway> = (0..gateways).map(|i| TestGateway::connect(&shim, port, &format!("gw-bench-{i}"))).collect();
    // Encode and sign up front: the figure is the shim's (verification included), not the agent's.
    let tel = |g: &TestGateway| scs_protocol::topics::topic(&g.id, TopicKind::Telemetry);
    let payloads: Vec<Vec<Vec<u8>>> = gws
        .iter()
        .map(|g| (1..=batches).map(|s| g.creds.sign(&tel(g), &batch(&g.id, s, devices, per_device))).collect())
        .collect();
    let records = gateways as u64 * batches * (devices * per_device) as u64;
    let bytes: usize = payloads.iter().flatten().map(Vec::len).sum();

    let start = Instant::now();
    std::thread::scope(|s| {
        for (g, p) in gws.iter().zip(&payloads) {
            s.spawn(move || {
                // Like the agent: a bounded window of unreceipted batches in flight.
                for (i, payload) in p.iter().enumerate() {
                    let seq = i as u64 + 1;
                    if seq > window {
                        let need = seq - window;
                        let deadline = Instant::now() + Duration::from_secs(60);
                        while !g.accepted().contains(&need) {
                            assert!(Instant::now() < deadline, "no receipt for {need} within 60 s");
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                    g.publish_raw(&tel(g), payload.clone(), false);
                }
                assert!(g.wait_accepted(&(1..=batches).collect::<Vec<_>>(), Duration::from_secs(120)));
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let broker = if mosquitto.is_some() { "mosquitto" } else { "embedded" };
    println!(
        "shim ingest ({broker} broker): {records} metric records in {} batches ({:.1} MiB) in {secs:.2} s = {:.0} records/s, {:.0} batches/s",
        gateways as u64 * batches,
        bytes as f64 / (1 << 20) as f64,
        records as f64 / secs,
        (gateways as u64 * batches) as f64 / secs
    );
    let v = shim.api().get_json("/v1/gateways/gw-bench-0/stats");
    assert_eq!(v["storedMessages"], batches, "{v}");
}

/// Per-message cost of the signature check against decoding the same message, and of signing (the
/// agent's side), for the bench's batch shape. The decode+store cost per message is the inverse of the
/// batches/s figure of `shim_ingest_rate` in the same run.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn signature_cost_per_message() {
    let (devices, per_device) = (env_usize("SCS_BENCH_DEVICES", 10), env_usize("SCS_BENCH_METRICS", 20));
    let n = env_usize("SCS_BENCH_SIG_MESSAGES", 2000);
    let (key, _) = scs_protocol::cose::SigningKey::generate().expect("key");
    let public = key.verifying_key();
    let t = scs_protocol::topics::topic("gw-bench", TopicKind::Telemetry);
    let plain: Vec<Vec<u8>> = (1..=n as u64).map(|s| batch("gw-bench", s, devices, per_device)).collect();
    let t0 = Instant::now();
    let signed: Vec<Vec<u8>> = plain.iter().map(|p| scs_protocol::cose::sign1(&key, b"gw-bench", t.as_bytes(), p)).collect();
    let sign_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t0 = Instant::now();
    for m in &signed {
        scs_protocol::cose::verify1(m, t.as_bytes(), |_| Some(public)).expect("verifies");
    }
    let verify_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t0 = Instant::now();
    for m in &plain {
        scs_protocol::decode_uplink(&t, m).expect("decodes");
    }
    let decode_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "signature cost per message ({} metrics, {} bytes): sign {sign_us:.1} us, verify {verify_us:.1} us, decode {decode_us:.1} us \
         (verify/decode = {:.2})",
        devices * per_device,
        plain.first().map_or(0, Vec::len),
        verify_us / decode_us
    );
}

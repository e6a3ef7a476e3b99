//! Ingest rate through the Worker in local workerd against the shim's own store, in the same run:
//! signed telemetry published like an agent (a window of unreceipted batches) -> embedded broker ->
//! shim -> (`--worker-url`) Worker -> Queue -> D1 -> receipt. A measurement, not a test: ignored by
//! default, run by `scripts/bench --only worker`:
//!
//! ```text
//! cargo test --release -p scs-worker --test worker_bench -- --ignored --nocapture
//! ```

mod common;
#[path = "../../cloud-shim/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{gateway_seed, require_tools, WorkerDev};
use scs_protocol::{encode, DeviceReport, Metric, TelemetryBatch, TopicKind};
use scs_testkit::{free_port, Shim, ShimOpts, TempDir};
use support::{TestGateway, BOOT};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

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

/// Publishes `batches` signed batches per gateway with a window of `window` unreceipted ones, waits for
/// every receipt, and returns the elapsed seconds.
fn drive(shim: &Shim, gws: &[TestGateway], batches: u64, window: u64, devices: usize, per_device: usize) -> f64 {
    let tel = |g: &TestGateway| scs_protocol::topics::topic(&g.id, TopicKind::Telemetry);
    let payloads: Vec<Vec<Vec<u8>>> = gws
        .iter()
        .map(|g| (1..=batches).map(|s| g.creds.sign(&tel(g), &batch(&g.id, s, devices, per_device))).collect())
        .collect();
    let _ = shim;
    let start = Instant::now();
    std::thread::scope(|s| {
        for (g, p) in gws.iter().zip(&payloads) {
            s.spawn(move || {
                for (i, payload) in p.iter().enumerate() {
                    let seq = i as u64 + 1;
                    if seq > window {
                        let need = seq - window;
                        let deadline = Instant::now() + Duration::from_secs(120);
                        while !g.accepted().contains(&need) {
                            assert!(Instant::now() < deadline, "no receipt for {need} within 120 s");
                            std::thread::sleep(Duration::from_micros(500));
                        }
                    }
                    g.publish_raw(&tel(g), payload.clone(), false);
                }
                assert!(g.wait_accepted(&(1..=batches).collect::<Vec<_>>(), Duration::from_secs(300)));
            });
        }
    });
    start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn worker_ingest_rate_against_the_shims_store() {
    if require_tools().is_none() {
        return;
    }
    let gateways = env_usize("SCS_BENCH_GATEWAYS", 2);
    let batches = env_usize("SCS_BENCH_BATCHES", 200) as u64;
    let (devices, per_device) = (env_usize("SCS_BENCH_DEVICES", 10), env_usize("SCS_BENCH_METRICS", 20));
    let window = env_usize("SCS_BENCH_WINDOW", 64) as u64;
    let records = gateways as u64 * batches * (devices * per_device) as u64;
    let ids: Vec<String> = (0..gateways).map(|i| format!("gw-wb-{i}")).collect();

    // Baseline: the shim's own SQLite store.
    let local = Shim::start(ShimOpts { rust_log: "warn".into(), ..ShimOpts::default() });
    let gws: Vec<TestGateway> = ids.iter().map(|id| TestGateway::connect(&local, local.mqtt_port().unwrap_or(0), id)).collect();
    let local_secs = drive(&local, &gws, batches, window, devices, per_device);
    drop(gws);

    // The same load through the Worker.
    let dir = TempDir::new("worker-bench");
    let port = free_port();
    let fwd = Shim::start(ShimOpts {
        rust_log: "warn".into(),
        args: vec!["--worker-url".into(), format!("http://127.0.0.1:{port}")],
        ..ShimOpts::default()
    });
    let gws: Vec<TestGateway> = ids.iter().map(|id| TestGateway::connect(&fwd, fwd.mqtt_port().unwrap_or(0), id)).collect();
    let seed = dir.join("seed.sql");
    gateway_seed(&fwd.db_path(), &seed);
    let _worker = WorkerDev::start(port, &dir.join("state"), &seed, &dir.join("worker-dev.log"), true);
    let worker_secs = drive(&fwd, &gws, batches, window, devices, per_device);

    let (lr, wr) = (records as f64 / local_secs, records as f64 / worker_secs);
    println!(
        "worker ingest (local workerd, Queue -> D1): {records} metric records in {} batches: shim store {lr:.0} records/s, \
         Worker {wr:.0} records/s, ratio {:.3}",
        gateways as u64 * batches,
        wr / lr
    );
}

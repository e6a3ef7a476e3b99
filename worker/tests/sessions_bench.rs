//! Command round trip through the Worker's Durable Object on loopback: create at the Worker -> object ->
//! long-poll -> shim -> Mosquitto -> agent -> result through ingest -> D1 -> read back. A measurement, not
//! a test: `cargo test -p scs-worker --test sessions_bench -- --ignored --nocapture` (scripts/bench step
//! `worker-commands`). Local workerd is not Cloudflare: the figure shows the design's own latency
//! (object hand-off, long-poll wake-up, ingest path) without network distance, D1 replication or cold
//! starts, so it is a floor for production, not a forecast.

mod common;
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::Site;

#[test]
#[ignore = "benchmark: run through scripts/bench"]
fn command_roundtrip_through_the_durable_object() {
    if common::require_tools().is_none() {
        return;
    }
    let n: usize = std::env::var("SCS_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let mut site = Site::start("gw-bench", 1);
    site.start_agent();
    // Warm-up: the agent is connected and the poll is waiting.
    let id = site.create(json!({"type": "device.info"}));
    site.wait_state(&id, "succeeded");
    let mut times = Vec::with_capacity(n);
    let mut last = serde_json::Value::Null;
    for _ in 0..n {
        let t = Instant::now();
        let id = site.create(json!({"type": "device.info"}));
        loop {
            let v = site.worker.api().get_json(&format!("/v1/commands/{id}"));
            if v["state"] == "succeeded" {
                last = v;
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "command {id} stuck: {v}");
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(t.elapsed());
    }
    // Where the time goes: each transition of the last command after its creation, from its audit.
    let created = last["createdAt"].as_i64().unwrap_or(0);
    let steps: Vec<String> = last["audit"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} +{} ms", e["to"].as_str().unwrap_or("?"), e["at"].as_i64().unwrap_or(0) - created))
                .collect()
        })
        .unwrap_or_default();
    println!("last command's transitions: {}", steps.join(", "));
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)].as_secs_f64() * 1000.0;
    println!("worker command round trip over {n} commands: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", pct(50), pct(99), pct(100));
}

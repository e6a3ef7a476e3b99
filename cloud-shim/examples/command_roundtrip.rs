//! Command round-trip benchmark: `POST /v1/gateways/{id}/commands` → result visible through
//! `GET /v1/commands/{id}`, on loopback with the real binaries, for the embedded broker and Mosquitto.
//!
//! ```text
//! cargo build --release -p scs-agent -p scs-cloud-shim
//! cargo run --release -p scs-cloud-shim --example command_roundtrip -- [--n 300] [--broker embedded|mosquitto|both]
//! ```
//! Prints one human line and one JSON line (`{"bench":"command_roundtrip",...}`) per broker. The client
//! polls the command every 0.5 ms, so the figures include up to that much polling delay. The commands are
//! `device.time` and `device.info` (cheap reads), one at a time, after a few unmeasured warm-up rounds.

use std::time::{Duration, Instant};

use scs_testkit::{Agent, AgentOpts, Api, Mosquitto, Shim, ShimOpts};
use serde_json::json;

const WARMUP: usize = 5;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// One command: POST, then poll until it is terminal. Returns the elapsed milliseconds.
fn round_trip(api: &Api, gateway: &str, i: usize) -> Result<f64, String> {
    // Alternating two cheap reads keeps a long run under each type's rate limit (600 per minute).
    let command_type = if i.is_multiple_of(2) { "device.time" } else { "device.info" };
    let start = Instant::now();
    let r = api.post_json(&format!("/v1/gateways/{gateway}/commands"), &json!({"type": command_type}));
    if !r.is_success() {
        return Err(format!("POST: {} {}", r.status, r.text()));
    }
    let id = r.json()["id"].as_str().ok_or("no id")?.to_owned();
    let deadline = start + Duration::from_secs(20);
    loop {
        let v = api.get_json(&format!("/v1/commands/{id}"));
        if v["terminal"] == true {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            return if v["state"] == "succeeded" { Ok(ms) } else { Err(format!("command ended {}: {}", v["state"], v["error"])) };
        }
        if Instant::now() > deadline {
            return Err(format!("command {id} not done after 20 s: {v}"));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn run(label: &str, n: usize, shim: Shim, agent_broker: &str) -> Result<(), String> {
    let gateway = format!("gw-bench-{}", std::process::id());
    let agent = Agent::start(AgentOpts::new(&gateway, agent_broker));
    let api = shim.api();
    for i in 0..WARMUP {
        round_trip(&api, &gateway, i)?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        samples.push(round_trip(&api, &gateway, i)?);
    }
    samples.sort_by(f64::total_cmp);
    let (p50, p99, max) = (percentile(&samples, 0.50), percentile(&samples, 0.99), samples[samples.len() - 1]);
    println!("command round trip ({label}): n={n} p50={p50:.2} ms p99={p99:.2} ms max={max:.2} ms (target p99 <= 20 ms)");
    println!(
        "{}",
        json!({"bench": "command_roundtrip", "broker": label, "n": n, "p50_ms": p50, "p99_ms": p99, "max_ms": max, "target_p99_ms": 20})
    );
    // Where the time goes, from the audit trail of one more command (shim clock, ms since creation).
    let r = api.post_json(&format!("/v1/gateways/{gateway}/commands"), &json!({"type": "device.time"}));
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    std::thread::sleep(Duration::from_millis(500));
    let v = api.get_json(&format!("/v1/commands/{id}"));
    let created = v["createdAt"].as_i64().unwrap_or(0);
    let steps: Vec<String> = v["audit"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| format!("{}+{}ms", x["to"].as_str().unwrap_or("?"), x["at"].as_i64().unwrap_or(0) - created))
                .collect()
        })
        .unwrap_or_default();
    println!("  one command's audit trail ({label}): {}", steps.join(" "));
    drop(agent);
    drop(shim);
    Ok(())
}

fn main() {
    let mut n = 300usize;
    let mut which = "both".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--n", Some(v)) if v.parse::<usize>().is_ok_and(|x| x > 0) => n = v.parse().unwrap_or(n),
            ("--broker", Some(v)) if ["embedded", "mosquitto", "both"].contains(&v.as_str()) => which = v,
            _ => {
                eprintln!("usage: command_roundtrip [--n N] [--broker embedded|mosquitto|both]");
                std::process::exit(2);
            }
        }
    }
    // Quiet processes: logging every command would measure the terminal, not the system.
    std::env::set_var("SCS_TEST_LOG", std::env::var("SCS_TEST_LOG").unwrap_or_else(|_| "warn".into()));
    let mut failed = false;
    if which == "embedded" || which == "both" {
        let mut shim = Shim::start(ShimOpts::default());
        shim.wait_ready(Duration::from_secs(20));
        let url = shim.mqtt_url();
        if let Err(e) = run("embedded broker", n, shim, &url) {
            eprintln!("embedded broker: {e}");
            failed = true;
        }
    }
    if which == "mosquitto" || which == "both" {
        // Mosquitto's default leaves Nagle on for its client sockets: a command written right after a
        // small PUBACK waits for the gateway's delayed ACK (~40 ms). Production brokers should set this too.
        let m = Mosquitto::start_with("set_tcp_nodelay true\n");
        let mut shim = Shim::start(ShimOpts::with_broker(&m.url()));
        shim.wait_ready(Duration::from_secs(20));
        if let Err(e) = run("mosquitto", n, shim, &m.url()) {
            eprintln!("mosquitto: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

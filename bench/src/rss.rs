//! Agent memory at steady state: the real agent against an embedded-broker shim, with `devices` devices
//! configured (the gateway and `devices - 1` children probed on loopback), sampled from /proc after a
//! warm-up. Target <= 6 MiB. Also the size of the agent binary that ran.

use std::time::{Duration, Instant};

use scs_testkit::{bin_path, free_port, Agent, AgentOpts, Shim, ShimOpts};

use crate::opts::Opts;
use crate::site;

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn run(opts: &Opts) -> Result<(), String> {
    let secs = opts.num("secs", 40)?;
    let warmup = opts.num("warmup-secs", secs / 3)?;
    let devices = opts.num("devices", 64)?.max(1);
    let interval = opts.num("interval-secs", 2)?;
    let shim = Shim::start(ShimOpts { rust_log: "warn".into(), ..ShimOpts::default() });
    // Children probed with a TCP connect each interval: half answer (a listener), half refuse.
    let open = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let open_port = open.local_addr().map_err(|e| e.to_string())?.port();
    let toml = site::devices_toml("gw-bench-rss", devices, open_port, free_port());
    let mut o = AgentOpts::new("gw-bench-rss", &shim.mqtt_url());
    // The shim's broker admits provisioned gateways only: without a bundle the agent never connects
    // and the figure would be that of an agent retrying, not of one publishing.
    o.bundle = Some(shim.add_gateway("gw-bench-rss").bundle);
    o.interval_secs = Some(interval);
    o.config_toml = Some(toml);
    o.rust_log = "warn".into();
    let mut agent = Agent::start(o);
    let pid = agent.pid().ok_or("agent has no pid")?;
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        if !agent.is_running() {
            return Err(format!("the agent exited:\n{}", agent.logs()));
        }
        if start.elapsed() >= Duration::from_secs(warmup) {
            samples.extend(status_kib(pid, "VmRSS:"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    agent.kill();
    drop(open);
    if samples.is_empty() {
        return Err("no RSS samples".into());
    }
    samples.sort_unstable();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    let bin = bin_path("scs-agent");
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    let stored = shim.api().get_json("/v1/gateways/gw-bench-rss/stats")["storedMessages"].as_u64().unwrap_or(0);
    println!(
        "agent RSS with {devices} devices at {interval} s, after {warmup} s warm-up over {} s: median {:.2} MiB, max {:.2} MiB, \
         peak (VmHWM) {:.2} MiB; {stored} messages stored (target <= 6 MiB)",
        secs - warmup,
        median as f64 / 1024.0,
        max as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    if stored == 0 {
        // An agent that never got through is not the steady state this figure is about.
        return Err(format!("the shim stored no message from the agent (not connected?):\n{}", agent.logs()));
    }
    println!("agent binary {}: {size} bytes ({:.2} MiB)", bin.display(), size as f64 / (1 << 20) as f64);
    println!(
        "BENCH rss devices={devices} interval_secs={interval} median_kib={median} max_kib={max} hwm_kib={hwm} binary_bytes={size} stored={stored}"
    );
    Ok(())
}

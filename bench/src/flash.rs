//! Flash wear: bytes the real agent makes the kernel write (`/proc/PID/io` write_bytes: its database,
//! WAL, log file) against the payload bytes it queued, with a shim on Mosquitto receipting everything.
//! Two sites: 64 devices at the default interval (target <= 4x) and the worst case, 1 device every
//! second; each once with the agent's defaults and once with the outbox as earlier agents kept it
//! (`queue.page_size = 4096`, `queue.receipt_linger_secs = 0`: each receipt deleted in a commit of its
//! own), in the same run. Prints ratios and projected bytes per day.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use scs_testkit::{free_port, Agent, Mosquitto, Shim, ShimOpts, Subscription};

use crate::opts::Opts;
use crate::site;

fn write_bytes(pid: u32) -> Result<u64, String> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).map_err(|e| format!("/proc/{pid}/io: {e}"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/io has no write_bytes"))
}

struct Run {
    batches: u64,
    payload: u64,
    written: u64,
}

/// Starts an agent reporting on `devices` devices every `interval` s, lets `warmup` telemetry batches
/// pass (start-up writes: schema, inventory, first log lines), then counts the bytes written while
/// the next `batches` batches are queued, published and receipted.
fn measure(
    mosquitto: &Mosquitto,
    shim: &Shim,
    gw: &str,
    devices: u64,
    interval: u64,
    batches: u64,
    page_size: Option<u32>,
) -> Result<Run, String> {
    let warmup = 2u64;
    let sub = Subscription::start(mosquitto.port(), &[&format!("scs/v1/{gw}/up/#")]);
    let open = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let open_port = open.local_addr().map_err(|e| e.to_string())?.port();
    let mut toml = String::new();
    if let Some(p) = page_size {
        // The outbox as earlier agents kept it: 4 KiB pages, each receipt deleted in its own commit.
        toml.push_str(&format!("[queue]\npage_size = {p}\nreceipt_linger_secs = 0\n\n"));
    }
    toml.push_str(&site::devices_toml(gw, devices, open_port, free_port()));
    // Provisioned, so the shim stores and receipts what it sends (receipts delete rows: part of the cost).
    let mut o = shim.agent_opts(gw);
    o.interval_secs = Some(interval);
    o.config_toml = Some(toml);
    // The field default: info lines go to the log file like on a gateway.
    o.rust_log = "info".into();
    let mut agent = Agent::start(o);
    let pid = agent.pid().ok_or("agent has no pid")?;
    let telemetry = |sub: &Subscription| sub.messages().into_iter().filter(|(t, _)| t.ends_with("/up/telemetry")).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(interval * (warmup + batches + 5) + 30);
    let wait_for = |agent: &mut Agent, n: u64| -> Result<(), String> {
        while telemetry(&sub) < n {
            if !agent.is_running() {
                return Err(format!("the agent exited:\n{}", agent.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!("only {} telemetry batches published, waiting for {n}", telemetry(&sub)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    };
    wait_for(&mut agent, warmup)?;
    let (w0, seen0) = (write_bytes(pid)?, sub.messages().len());
    wait_for(&mut agent, warmup + batches)?;
    let w1 = write_bytes(pid)?;
    let window = sub.messages();
    agent.kill();
    let stored = shim.api().get_json(&format!("/v1/gateways/{gw}/stats"))["storedMessages"].as_u64().unwrap_or(0);
    if stored < batches {
        return Err(format!("the shim stored only {stored} messages of {gw}: no receipts, so no deletions measured"));
    }
    drop(open);
    // Distinct messages only: a re-send is not queued again.
    let mut distinct = HashSet::new();
    let payload = window
        .get(seen0..)
        .unwrap_or_default()
        .iter()
        .filter(|(_, p)| distinct.insert(p.clone()))
        .map(|(_, p)| p.len() as u64)
        .sum();
    Ok(Run { batches, payload, written: w1.saturating_sub(w0) })
}

pub fn run(opts: &Opts) -> Result<(), String> {
    let site_interval = opts.num("interval-secs", 10)?;
    let site_batches = opts.num("site-batches", 12)?.max(1);
    let worst_batches = opts.num("worst-batches", 90)?.max(1);
    let mosquitto = Mosquitto::start();
    let shim = Shim::start(ShimOpts { rust_log: "warn".into(), ..ShimOpts::with_broker(&mosquitto.url()) });
    let mut line = String::from("BENCH flash");
    let cases = [("site", 64u64, site_interval, site_batches), ("worst", 1, 1, worst_batches)];
    for (label, devices, interval, batches) in cases {
        let mut per_batch = [0.0f64; 2];
        for (i, (variant, page_size)) in [("new", None), ("old", Some(4096u32))].into_iter().enumerate() {
            let gw = format!("gw-bench-flash-{label}-{variant}");
            let r = measure(&mosquitto, &shim, &gw, devices, interval, batches, page_size)?;
            let bytes = r.written as f64 / r.batches as f64;
            let payload = r.payload as f64 / r.batches as f64;
            let ratio = r.written as f64 / r.payload.max(1) as f64;
            let per_day = bytes * 86_400.0 / interval as f64;
            per_batch[i] = bytes;
            println!(
                "{label} ({devices} devices every {interval} s, {}): {} batches, {bytes:.0} bytes written per batch of {payload:.0} \
                 payload bytes = {ratio:.2}x; projected {:.1} MB/day",
                if page_size.is_some() { "outbox as earlier agents kept it" } else { "defaults" },
                r.batches,
                per_day / 1e6
            );
            line.push_str(&format!(
                " {label}_{variant}_devices={devices} {label}_{variant}_interval_secs={interval} {label}_{variant}_batches={} \
                 {label}_{variant}_bytes_per_batch={bytes:.0} {label}_{variant}_payload_per_batch={payload:.0} \
                 {label}_{variant}_ratio={ratio:.3} {label}_{variant}_bytes_per_day={per_day:.0}",
                r.batches
            ));
        }
        let gain = per_batch[1] / per_batch[0].max(1.0);
        println!("{label}: earlier layout writes {gain:.2}x what the defaults write");
        line.push_str(&format!(" {label}_old_vs_new={gain:.3}"));
    }
    println!("{line}");
    Ok(())
}

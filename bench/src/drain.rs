//! Backlog drain after reconnect: one day of a `devices`-device site at 10 s (8640 batches by default) is
//! committed to an agent's outbox while it is stopped; then a shim and the agent start and the time until
//! the store holds every batch (each receipted right after its commit) is measured. Target <= 60 s.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scs_protocol::TopicKind;
use scs_testkit::{Agent, Mosquitto, Shim, ShimOpts, TempDir};

use crate::opts::Opts;
use crate::{outbox, site};

/// CPU seconds (user + system) a process has used, from /proc (USER_HZ is 100 on Linux).
pub fn cpu_secs(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub fn run(opts: &Opts) -> Result<(), String> {
    let batches = opts.num("batches", 8640)?;
    let devices = opts.num("devices", 64)? as usize;
    let broker = opts.str("broker", "embedded");
    let timeout = Duration::from_secs(opts.num("timeout-secs", 900)?);
    let gw = "gw-bench-drain";
    let boot = 0x0dd5_eed0_0000_0001u64;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);

    let dir = TempDir::new("bench-drain");
    let data = dir.join("agent");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let db = data.join("agent.db");
    let per_batch = site::batch(gw, boot, 1, now, devices).sample_count() as u64;
    let mut bytes = 0usize;
    let t = Instant::now();
    scs_testkit::append_to_outbox(&db, TopicKind::Telemetry.code(), batches, 0, |seq| {
        let ts = now - (batches - seq + 1) * 10_000;
        let p = scs_protocol::encode(&site::batch(gw, boot, seq, ts, devices));
        bytes += p.len();
        p
    })
    .map_err(|e| format!("prefill {}: {e}", db.display()))?;
    println!(
        "prefilled {batches} batches of {devices} devices ({per_batch} samples each, {:.1} MiB) in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );

    let mosquitto = match broker.as_str() {
        "mosquitto" => Some(Mosquitto::start_with("max_queued_messages 1000000\n")),
        "embedded" => None,
        other => return Err(format!("--broker embedded|mosquitto, not {other:?}")),
    };
    let shim_opts = ShimOpts { rust_log: "warn".into(), ..ShimOpts::default() };
    let shim = match &mosquitto {
        Some(m) => Shim::start(ShimOpts { broker: Some(m.url()), ..shim_opts }),
        None => Shim::start(shim_opts),
    };
    // Provisioned: the shim stores only what a known gateway signed (the prefilled rows are signed as
    // they are read).
    let mut agent_opts = shim.agent_opts(gw);
    agent_opts.data_dir = Some(data.clone());
    agent_opts.interval_secs = Some(10);
    agent_opts.rust_log = "warn".into();

    let start = Instant::now();
    let mut agent = Agent::start(agent_opts);
    let mut half = None;
    // Done when the store holds every prefilled batch (receipts go out right after each commit). The
    // agent's file is no measure: receipted rows wait there for its next commit (agent/src/queue.rs).
    let mut store = None;
    let mut last_err: Option<String> = None;
    loop {
        if store.is_none() && shim.db_path().exists() {
            store = outbox::open(&shim.db_path()).ok();
        }
        let stored = match &store {
            Some(c) => match c.query_row(
                "SELECT count(*) FROM ingest_receipts WHERE gateway_id = ?1 AND kind = 'telemetry' AND seq <= ?2",
                rusqlite::params![gw, batches as i64],
                |r| r.get::<_, i64>(0),
            ) {
                Ok(n) => n as u64,
                Err(e) => {
                    last_err = Some(e.to_string());
                    0
                }
            },
            None => 0,
        };
        let depth = batches.saturating_sub(stored);
        if depth == 0 {
            break;
        }
        if half.is_none() && depth <= batches / 2 {
            half = Some(start.elapsed());
        }
        if !agent.is_running() {
            return Err(format!("the agent exited during the drain:\n{}", agent.logs()));
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "{depth} of {batches} batches not stored after {timeout:?} (store query: {last_err:?})\n{}",
                agent.logs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = start.elapsed().as_secs_f64();
    let (agent_cpu, shim_cpu) = (cpu_secs(agent.pid()), cpu_secs(shim.pid()));
    agent.kill();
    let store = outbox::open(&shim.db_path())?;
    let stored: i64 = store
        .query_row("SELECT count(*) FROM ingest_receipts WHERE gateway_id = ?1 AND kind = 'telemetry'", [gw], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if (stored as u64) < batches {
        return Err(format!("outbox empty but only {stored} of {batches} batches in the store"));
    }
    let records = per_batch * batches;
    println!(
        "drain ({broker} broker): {batches} batches, {records} metric records in {secs:.1} s = {:.0} batches/s, {:.0} records/s \
         (half the backlog after {:.1} s; target <= 60 s)",
        batches as f64 / secs,
        records as f64 / secs,
        half.map_or(0.0, |h| h.as_secs_f64())
    );
    println!("CPU during the drain: agent {agent_cpu:.1} s, shim {shim_cpu:.1} s (of {secs:.1} s wall)");
    println!(
        "BENCH drain broker={broker} batches={batches} devices={devices} records={records} secs={secs:.2} batches_per_s={:.0} records_per_s={:.0} agent_cpu_s={agent_cpu:.1} shim_cpu_s={shim_cpu:.1}",
        batches as f64 / secs,
        records as f64 / secs
    );
    Ok(())
}

//! The agent monitoring a simulated site (`scs_testkit::fakes::site`, what `scripts/fake-site` runs):
//! 64 cameras + 4 NVRs at the default tiers and concurrency, against a baseline agent with no devices
//! started in the same run, both reporting to one embedded-broker shim.
//!
//! Figures: RSS at steady state (median over the window; target <= 7 MiB), average CPU over the window
//! (utime + stime from /proc; target <= 1 % of one core), the first management round over every device
//! (the agent logs its duration; started at once with `collect.probe_stagger_secs = 0`; target <= 10 s),
//! and the p99 of the telemetry interval's deviation from nominal, with probes vs without.

use std::time::{Duration, Instant};

use scs_testkit::fakes::site::{RtspChoice, Site, SiteOpts};
use scs_testkit::{Agent, AgentOpts, Shim, ShimOpts};
use serde_json::Value;

use crate::opts::Opts;

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process, seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = text.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

/// /proc reports CPU time in USER_HZ ticks, 100 per second on every Linux ABI.
const USER_HZ: f64 = 100.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Measured {
    rss_median_kib: u64,
    /// Median of RssAnon (heap, stacks) and RssFile (binary and library pages touched): what the
    /// devices cost splits between memory they allocate and code they run.
    anon_median_kib: u64,
    file_median_kib: u64,
    rss_max_kib: u64,
    cpu_pct: f64,
    jitter_p99_ms: f64,
    jitter_max_ms: f64,
    batches: usize,
}

fn batch_times(shim: &Shim, gw: &str, from_ms: u64) -> Vec<f64> {
    let v: Value =
        shim.api().get_json(&format!("/v1/sensors/{gw}/metrics?name=agent.uptime_secs&from={from_ms}&order=asc&limit=5000"));
    v["samples"].as_array().map(|a| a.iter().filter_map(|s| s["ts"].as_f64()).collect()).unwrap_or_default()
}

fn jitter(ts: &[f64], interval_s: u64) -> (f64, f64) {
    let nominal = interval_s as f64 * 1000.0;
    let mut dev: Vec<f64> = ts.windows(2).map(|w| (w[1] - w[0] - nominal).abs()).collect();
    dev.sort_by(f64::total_cmp);
    (percentile(&dev, 0.99), dev.last().copied().unwrap_or(f64::NAN))
}

pub fn run(opts: &Opts) -> Result<(), String> {
    let secs = opts.num("secs", 600)?;
    let warmup = opts.num("warmup-secs", 60)?;
    let cameras = opts.num("cameras", 64)? as usize;
    let nvrs = opts.num("nvrs", 4)? as usize;
    let interval = opts.num("interval-secs", 10)?;
    let rtsp = match opts.str("rtsp", "fake").as_str() {
        "gst" => RtspChoice::Gst,
        "auto" => RtspChoice::Auto,
        _ => RtspChoice::Fake,
    };

    let shim = Shim::start(ShimOpts { rust_log: "warn".into(), ..ShimOpts::default() });
    // Every camera speaks ONVIF, so the management round covers all devices.
    let site = Site::start(&SiteOpts {
        cameras,
        nvrs,
        id_prefix: "bench-site".into(),
        rtsp,
        rtsp_only_encoders: false,
        ..SiteOpts::default()
    })?;
    let n_dev = site.devices.len();
    println!("site: {cameras} cameras + {nvrs} NVRs, streams from {} ({})", site.rtsp_kind, site.rtsp_base);

    let start_agent = |gw: &str, devices: &str| {
        let mut o = AgentOpts::new(gw, &shim.mqtt_url());
        // The shim's broker admits provisioned gateways only.
        o.bundle = Some(shim.add_gateway(gw).bundle);
        o.interval_secs = Some(interval);
        // Stagger 0: the first management round starts at once, so its logged duration is the round's.
        o.config_toml = Some(format!("[collect]\nprobe_stagger_secs = 0\n\n{devices}"));
        o.rust_log = "warn,scs_agent::devices=info".into();
        Agent::start(o)
    };
    let mut base = start_agent("gw-bench-base", "");
    let mut probed = start_agent("gw-bench-site", &site.config_toml());
    let (bpid, ppid) = (base.pid().ok_or("baseline agent has no pid")?, probed.pid().ok_or("agent has no pid")?);

    let t0 = Instant::now();
    let mut round: Option<(u64, u64, u64)> = None;
    println!("warm-up {warmup} s (every device's first management, stream and sampled PLAY happen here)");
    while t0.elapsed() < Duration::from_secs(warmup) {
        if !base.is_running() || !probed.is_running() {
            return Err(format!("an agent exited:\n{}\n{}", base.logs(), probed.logs()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let window_from_ms = scs_testkit::now_ms();
    let (b_cpu0, p_cpu0) = (cpu_secs(bpid).ok_or("no /proc stat")?, cpu_secs(ppid).ok_or("no /proc stat")?);
    let w0 = Instant::now();
    let (mut b_rss, mut p_rss) = (Vec::new(), Vec::new());
    let (mut b_anon, mut p_anon, mut b_file, mut p_file) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    println!("measuring for {secs} s");
    while w0.elapsed() < Duration::from_secs(secs) {
        if !base.is_running() || !probed.is_running() {
            return Err(format!("an agent exited:\n{}\n{}", base.logs(), probed.logs()));
        }
        b_rss.extend(status_kib(bpid, "VmRSS:"));
        p_rss.extend(status_kib(ppid, "VmRSS:"));
        b_anon.extend(status_kib(bpid, "RssAnon:"));
        p_anon.extend(status_kib(ppid, "RssAnon:"));
        b_file.extend(status_kib(bpid, "RssFile:"));
        p_file.extend(status_kib(ppid, "RssFile:"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let wall = w0.elapsed().as_secs_f64();
    let (b_cpu1, p_cpu1) = (cpu_secs(bpid).ok_or("no /proc stat")?, cpu_secs(ppid).ok_or("no /proc stat")?);

    for line in probed.logs().lines() {
        // "devices: first management round: 68 devices (68 ok) in 1234 ms"
        if let Some(rest) = line.split("first management round: ").nth(1) {
            let nums: Vec<u64> =
                rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect();
            if let &[n, ok, ms, ..] = nums.as_slice() {
                round = Some((n, ok, ms));
            }
        }
    }

    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let measure = |rss: &mut Vec<u64>, anon: &mut Vec<u64>, file: &mut Vec<u64>, cpu: f64, gw: &str| -> Measured {
        rss.sort_unstable();
        let ts = batch_times(&shim, gw, window_from_ms);
        let (p99, max) = jitter(&ts, interval);
        Measured {
            rss_median_kib: rss.get(rss.len() / 2).copied().unwrap_or(0),
            rss_max_kib: rss.last().copied().unwrap_or(0),
            anon_median_kib: median(anon),
            file_median_kib: median(file),
            cpu_pct: cpu / wall * 100.0,
            jitter_p99_ms: p99,
            jitter_max_ms: max,
            batches: ts.len(),
        }
    };
    let b = measure(&mut b_rss, &mut b_anon, &mut b_file, b_cpu1 - b_cpu0, "gw-bench-base");
    let p = measure(&mut p_rss, &mut p_anon, &mut p_file, p_cpu1 - p_cpu0, "gw-bench-site");

    // What the agent saw: devices online and managed, from the store.
    let api = shim.api();
    let mut online = 0;
    let mut managed = 0;
    for d in &site.devices {
        let r = api.get(&format!("/v1/sensors/{}/metrics?from={window_from_ms}&order=desc&limit=200", d.id));
        let v = if r.is_success() { r.json() } else { Value::Null };
        let samples = v["samples"].as_array().cloned().unwrap_or_default();
        let val = |n: &str, l: Option<&str>| {
            samples
                .iter()
                .find(|s| s["name"] == n && l.is_none_or(|l| s["label"].as_str() == Some(l)))
                .and_then(|s| s["value"].as_f64())
        };
        online += usize::from(val("device.online", None) == Some(1.0));
        managed += usize::from(
            val("device.probe_class", Some("management")) == Some(0.0)
                || (d.driver == "rtsp" && val("device.probe_class", Some("stream")) == Some(0.0)),
        );
    }
    let hwm = status_kib(ppid, "VmHWM:").unwrap_or(0);
    base.kill();
    probed.kill();

    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "baseline agent (no devices): RSS median {:.2} MiB (max {:.2}), CPU {:.3} % of one core, {} batches, interval jitter p99 {:.0} ms (max {:.0})",
        mib(b.rss_median_kib),
        mib(b.rss_max_kib),
        b.cpu_pct,
        b.batches,
        b.jitter_p99_ms,
        b.jitter_max_ms
    );
    println!(
        "agent with {n_dev} devices: RSS median {:.2} MiB (max {:.2}, peak {:.2}), CPU {:.3} % of one core, {} batches, interval jitter p99 {:.0} ms (max {:.0})",
        mib(p.rss_median_kib),
        mib(p.rss_max_kib),
        mib(hwm),
        p.cpu_pct,
        p.batches,
        p.jitter_p99_ms,
        p.jitter_max_ms
    );
    println!(
        "RSS split (median): baseline anon {:.2} + file {:.2} MiB, with devices anon {:.2} + file {:.2} MiB",
        mib(b.anon_median_kib),
        mib(b.file_median_kib),
        mib(p.anon_median_kib),
        mib(p.file_median_kib)
    );
    println!("devices online {online}/{n_dev}, managed (management or RTSP stream ok) {managed}/{n_dev} in the window");
    match round {
        Some((n, ok, ms)) => println!("first management round: {n} devices ({ok} ok) in {ms} ms at the default concurrency"),
        None => println!("first management round: not logged (a device never finished its first management probe)"),
    }
    let (rn, rok, rms) = round.unwrap_or((0, 0, 0));
    println!(
        "BENCH probes devices={n_dev} cameras={cameras} nvrs={nvrs} rtsp={} interval_secs={interval} window_secs={secs} \
         base_rss_kib={} site_rss_kib={} base_anon_kib={} site_anon_kib={} base_file_kib={} site_file_kib={} site_hwm_kib={hwm} base_cpu_pct={:.4} site_cpu_pct={:.4} round_devices={rn} round_ok={rok} \
         round_ms={rms} base_jitter_p99_ms={:.1} site_jitter_p99_ms={:.1} base_batches={} site_batches={} online={online} managed={managed}",
        site.rtsp_kind.replace(' ', "-"),
        b.rss_median_kib,
        p.rss_median_kib,
        b.anon_median_kib,
        p.anon_median_kib,
        b.file_median_kib,
        p.file_median_kib,
        b.cpu_pct,
        p.cpu_pct,
        b.jitter_p99_ms,
        p.jitter_p99_ms,
        b.batches,
        p.batches,
    );
    drop(site);
    Ok(())
}

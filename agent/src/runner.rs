//! `scs-agent run`: wires the parts together and runs the telemetry loop until SIGTERM.
//!
//! Threads: this one (collect + enqueue every interval, inventory, systemd watchdog), `mqtt`
//! (connection, downlinks, receipts), `publisher` (outbox -> MQTT window), and the command executor.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::collect::agent::{AgentHealth, HealthCounters};
use crate::collect::{Collectors, Roots};
use crate::config::{self, Config, ConfigError, Overrides, Source};
use crate::context::{AgentContext, AgentMetrics, Shutdown};
use crate::inventory::{self, Announcer};
use crate::publisher::Publisher;
use crate::queue::{Queue, QueueError};
use crate::settings::{Settings, SettingsError};
use crate::transport::mqtt::Security;
use crate::transport::mqtt::{self, MqttTransport, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("creating data dir {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("starting thread {name}: {source}")]
    Thread { name: &'static str, source: std::io::Error },
    #[error("another scs-agent already runs with data dir {0} (lock file agent.lock is held)")]
    AlreadyRunning(std::path::PathBuf),
    #[error("command executor: {0}")]
    Executor(#[from] crate::commands::executor::ExecutorError),
    #[error(transparent)]
    Enroll(#[from] crate::enroll::EnrollError),
    #[error(
        "gateway {gateway}: no identity in {path} (install one with `scs-agent provision BUNDLE --data-dir {dir}`, or give an enrollment file: --enroll-file, default /etc/scs/enroll.toml); \
         refusing to connect unauthenticated (--insecure-no-identity is for development only)"
    )]
    NoIdentity { gateway: String, path: std::path::PathBuf, dir: std::path::PathBuf },
}

/// Builds the collectors from the config.
pub fn collectors(cfg: &Config, ctx: &AgentContext, device_state: &crate::devices::StateCache) -> Collectors {
    let roots = Roots { proc: cfg.collect.proc_root.clone(), sys: cfg.collect.sys_root.clone() };
    let queue = ctx.queue.clone();
    let metrics = ctx.metrics.clone();
    let counters = move || {
        let q = queue.stats();
        HealthCounters {
            queue_depth: q.depth,
            queue_bytes: q.bytes,
            dropped: q.dropped_total,
            rejected: q.rejected_total,
            reconnects: AgentMetrics::get(&metrics.reconnects),
            published: AgentMetrics::get(&metrics.published),
            commands_run: AgentMetrics::get(&metrics.commands_run),
            watchdog_resets: AgentMetrics::get(&metrics.watchdog_resets),
        }
    };
    use crate::collect::*;
    let list: Vec<Box<dyn Collector>> = vec![
        Box::new(cpu::Cpu::new(&roots)),
        Box::new(load::Load::new(&roots)),
        Box::new(memory::Memory::new(&roots)),
        Box::new(disk::Disk::new(&roots, &cfg.collect.mounts)),
        Box::new(thermal::Thermal::new(&roots)),
        Box::new(uptime::Uptime::new(&roots)),
        Box::new(network::Network::new(&roots, &cfg.collect.interfaces)),
        Box::new(AgentHealth::new(&roots, ctx.started, Box::new(counters))),
        Box::new(devices::Devices::new(&cfg.devices, device_state.clone())),
    ];
    Collectors::new(list)
}

/// Opens everything and returns the shared context and the transport's keys (no threads started yet).
pub fn start(o: &Overrides) -> Result<(AgentContext, Security), RunError> {
    let (mut cfg, source, mut identity) = crate::config::load_with_identity(o)?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| RunError::DataDir { path: cfg.data_dir.clone(), source })?;
    // Held until the process exits.
    let _ = DATA_DIR_LOCK.set(lock_data_dir(&cfg.data_dir)?);
    let log_file = crate::logging::init(&cfg.log, &cfg.data_dir);
    match &source {
        Source::File(p) => log::info!("scs-agent {} starting: config {}", inventory::AGENT_VERSION, p.display()),
        Source::DefaultsOnly => log::info!("scs-agent {} starting: no config file, defaults + flags", inventory::AGENT_VERSION),
    }
    if let Source::File(p) = &source {
        let unknown = std::fs::read_to_string(p).map(|t| config::unknown_keys(&t)).unwrap_or_default();
        if !unknown.is_empty() {
            log::warn!("config {}: unknown keys ignored: {}", p.display(), unknown.join(", "));
        }
    }
    if let Some(f) = log_file {
        log::info!("logging to {}", f.display());
    }
    mqtt::install_crypto_provider();
    if let Err(e) = Shutdown::install_signal_handlers() {
        log::warn!("cannot install signal handlers ({e}); SIGTERM will kill without a clean disconnect");
    }
    // First boot of an image that carries an enrollment token: become a provisioned gateway first.
    let enroll_file = o.enroll_file.clone().unwrap_or_else(|| crate::enroll::DEFAULT_ENROLL_FILE.into());
    if identity.is_none() && enroll_file.exists() {
        crate::enroll::enroll(&enroll_file, &cfg.data_dir, &Shutdown::default())?;
        (cfg, _, identity) = crate::config::load_with_identity(o)?;
    }
    let security = match &identity {
        Some(id) => Security::from_identity(id),
        None if o.insecure_no_identity => Security::insecure(&cfg.gateway_id),
        None => {
            return Err(RunError::NoIdentity {
                gateway: cfg.gateway_id.clone(),
                path: crate::identity::path_in(&cfg.data_dir),
                dir: cfg.data_dir.clone(),
            })
        }
    };
    match &identity {
        Some(id) => log::info!(
            "identity: gateway {} from {}, signing key {:?}",
            id.gateway_id,
            crate::identity::path_in(&cfg.data_dir).display(),
            id.signing_key.verifying_key()
        ),
        None => log::warn!(
            "gateway {}: running WITHOUT an identity (--insecure-no-identity): messages are unsigned and \
             commands and receipts are not verified",
            cfg.gateway_id
        ),
    }
    let db = cfg.data_dir.join(crate::db::DB_FILE);
    let sealer = Some(security.sealer.clone());
    // First, while nothing else has the file open. A failure only costs flash wear, not data.
    match crate::db::set_page_size(&db, cfg.queue.page_size) {
        Ok(Some(old)) => log::info!("{}: page size {old} rewritten as {}", db.display(), cfg.queue.page_size),
        Ok(None) => {}
        Err(e) => log::warn!("{}: page size stays as it is: {e}", db.display()),
    }
    let queue = match Queue::open_sealed(&db, (&cfg.queue).into(), sealer.clone()) {
        Err(e) if e.is_corrupt() => {
            // A damaged file would fail every restart; keep it for analysis and start afresh.
            let aside = crate::db::quarantine(&db).map_err(|source| RunError::DataDir { path: db.clone(), source })?;
            log::error!("{e}: moved to {} and starting with an empty database", aside.display());
            Queue::open_sealed(&db, (&cfg.queue).into(), sealer)?
        }
        other => other?,
    };
    queue.set_receipt_linger(Duration::from_secs(cfg.queue.receipt_linger_secs));
    let settings = Settings::open(&db, &cfg, o.interval_secs.is_some())?;
    let boot = crate::clock::random_u64() | 1; // never 0, so "no boot" is never a valid id
    let s = queue.stats();
    log::info!(
        "gateway {} boot {boot:016x}: outbox holds {} messages ({} bytes), next seq {}",
        cfg.gateway_id,
        s.depth,
        s.bytes,
        s.next_seq
    );
    let ctx = AgentContext::new(cfg, boot, queue, settings);
    match ctx.site.load_adopted(&ctx.db_path()) {
        Ok(0) => {}
        Ok(n) => log::info!("{n} adopted devices loaded"),
        Err(e) => log::error!("adopted devices not loaded: {e}"),
    }
    Ok((ctx, security))
}

static DATA_DIR_LOCK: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Takes an exclusive lock on `{data_dir}/agent.lock`, so two agents never share one outbox (they
/// would publish the same seqs under different boot ids). The kernel drops it when the process
/// dies, however it dies.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, RunError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| RunError::DataDir { path: path.clone(), source })?;
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(RunError::AlreadyRunning(dir.to_owned()));
    }
    Ok(f)
}

fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>, RunError> {
    std::thread::Builder::new().name(name.into()).spawn(f).map_err(|source| RunError::Thread { name, source })
}

/// Starts the command executor on the downlink channel (reports interrupted commands first).
fn spawn_commands(
    ctx: &AgentContext,
    rx: mpsc::Receiver<crate::commands::Inbound>,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    Ok(crate::commands::Executor::spawn(ctx.clone(), rx)?)
}

pub fn run(o: &Overrides) -> Result<(), RunError> {
    // Before any thread starts, so every thread shares the one arena.
    one_malloc_arena();
    let (ctx, security) = match start(o) {
        // SIGTERM while still enrolling: a clean stop, not a failure.
        Err(RunError::Enroll(e @ crate::enroll::EnrollError::Stopped { .. })) => {
            log::info!("{e}");
            return Ok(());
        }
        other => other?,
    };
    let cfg = ctx.config.clone();
    let publisher = Publisher::new(
        ctx.queue.clone(),
        ctx.metrics.clone(),
        &ctx.gateway_id,
        cfg.mqtt.inflight_window,
        Duration::from_secs(cfg.mqtt.receipt_timeout_secs),
    );
    let (dl_tx, dl_rx) = mpsc::channel::<crate::commands::Inbound>();
    let transport = MqttTransport::new(&ctx, publisher.clone(), dl_tx, security)?;
    let (mqtt_done_tx, mqtt_done) = mpsc::channel::<()>();
    let mqtt_thread = spawn("mqtt", move || {
        transport.run();
        let _ = mqtt_done_tx.send(());
    })?;
    let pub_thread = {
        let shutdown = ctx.shutdown.clone();
        spawn("publisher", move || publisher.run(&shutdown))?
    };
    let cmd_thread = spawn_commands(&ctx, dl_rx)?;
    // Artifact uploads a previous run left unfinished continue from the server's committed offset.
    crate::upload::resume_pending(&ctx.data_dir, &ctx.config.upload);
    // A new binary on trial must prove itself (connected, receipted) or give way to the previous one.
    crate::update::start_health_gate(&ctx);
    // Ready once the queue is open and every thread runs; being offline is a normal state, not a failure.
    crate::sd_notify::notify_ready();
    crate::sd_notify::notify_status(&format!("gateway {}: running, broker {}", ctx.gateway_id, cfg.mqtt.broker));

    telemetry_loop(&ctx);
    crate::sd_notify::notify_stopping();

    log::info!("shutting down");
    ctx.shutdown.request();
    // The MQTT thread says goodbye (retained offline + DISCONNECT) within ~2 s, but a connect
    // attempt in progress may take up to its timeout: do not hold the exit hostage to it.
    let mqtt_wait = Duration::from_secs(cfg.mqtt.connect_timeout_secs.min(10) + 3);
    if mqtt_done.recv_timeout(mqtt_wait).is_ok() {
        if mqtt_thread.join().is_err() {
            log::error!("mqtt thread panicked");
        }
    } else {
        log::warn!("mqtt thread still busy after {mqtt_wait:?}; exiting without it");
    }
    if pub_thread.join().is_err() {
        log::error!("publisher thread panicked");
    }
    // The command thread ends when the transport drops its sender; do not wait on long commands.
    drop(cmd_thread);
    // Receipted rows not yet deleted (they wait for the next enqueue) go now, not as re-sends.
    if let Err(e) = ctx.queue.flush_receipts() {
        log::warn!("{e}");
    }
    log::info!("stopped");
    Ok(())
}

/// Hands the pages freed since the last tick back to the kernel. glibc trims only the top of each
/// heap, so the free pages left between live blocks after a burst (the probe thread's management
/// rounds, a batch being built) stay resident otherwise: about 0.4 MiB on a 68-device site.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists and has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

/// Other allocators (musl's) release freed memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// One glibc malloc arena for every thread. By default each thread that allocates gets an arena of its
/// own once the others are busy (up to 8 per core), and each keeps its own partly used pages and free
/// lists: on a 68-device site the `devices` thread's arena alone stayed at 0.85 MiB resident. The
/// agent's threads allocate little and seldom at the same moment, so sharing one arena costs no
/// measurable CPU. Measured (scripts/bench probes, 64 cameras + 4 NVRs): anonymous RSS 2.42 -> 1.90
/// MiB with devices, 0.97 -> 0.86 MiB without.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads exist.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// musl has a single heap already.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

/// Collects and enqueues a batch every interval (re-read at each tick), re-announces the inventory
/// when it changes, and feeds the systemd watchdog while the MQTT loop is alive. Returns at shutdown.
pub fn telemetry_loop(ctx: &AgentContext) {
    let cfg = &ctx.config;
    let roots = Roots { proc: cfg.collect.proc_root.clone(), sys: cfg.collect.sys_root.clone() };
    // Device probes run on their own thread; the collector below only reads their cached results,
    // so a dead camera never delays this loop or the watchdog.
    // Event baselines (serial, firmware, boot time) come from agent.db, so a restart compares with what
    // the last run saw.
    let device_state = crate::devices::StateCache::with_baselines(&ctx.db_path());
    // The configured devices plus adopted ones; `site.adopt` adds to it while running.
    let mut site_gen = ctx.site.generation();
    let mut eff = (**cfg).clone();
    eff.devices = ctx.site.all();
    let mut probes = crate::devices::start(&eff, Duration::from_secs(ctx.settings.interval_secs()), &device_state);
    let mut collectors = collectors(&eff, ctx, &device_state);
    let mut announcer = Announcer::new(&ctx.gateway_id, ctx.boot);
    let agent_info = inventory::agent_info(&roots);
    if let Err(e) = announcer.announce(&ctx.queue, inventory::sensors_seen(&eff, &device_state), agent_info.clone()) {
        log::error!("queueing inventory: {e}");
    }
    // The MQTT loop turns at least every connect timeout (+ slack) even while reconnecting.
    let mqtt_stale_after = Duration::from_secs(cfg.mqtt.connect_timeout_secs + 15);
    let mut last_tick = Instant::now();
    // First batch after one second, so CPU figures already cover a real interval.
    let mut next_tick = last_tick + Duration::from_secs(1);
    let mut last_err: Option<String> = None;
    // systemd watchdog (WatchdogSec=): pinged only while the MQTT loop turns, so a hung loop stops the
    // pings and systemd restarts the agent. None outside systemd.
    let watchdog_every = crate::sd_notify::watchdog_interval();
    let mut last_ping: Option<Instant> = None;
    while !ctx.shutdown.requested() {
        let now = Instant::now();
        let interval = Duration::from_secs(ctx.settings.interval_secs());
        // A shorter interval set remotely takes effect now, not after the old one runs out.
        next_tick = next_tick.min(last_tick + interval);
        if ctx.site.generation() != site_gen {
            site_gen = ctx.site.generation();
            let devices = ctx.site.all();
            let added: Vec<_> = devices.iter().filter(|d| !eff.devices.iter().any(|o| o.id == d.id)).cloned().collect();
            eff.devices = devices;
            match &probes {
                Some(s) => added.iter().filter_map(crate::devices::DeviceSpec::of).for_each(|spec| s.add(spec)),
                None => probes = crate::devices::start(&eff, Duration::from_secs(ctx.settings.interval_secs()), &device_state),
            }
            collectors.replace(Box::new(crate::collect::devices::Devices::new(&eff.devices, device_state.clone())));
            // Announced now rather than at the next tick, so the cloud knows the device at once.
            next_tick = now;
        }
        if now >= next_tick {
            last_tick = now;
            next_tick = now + interval;
            let report = collectors.collect_all();
            match crate::telemetry::enqueue(&ctx.queue, &ctx.gateway_id, ctx.boot, &report) {
                Ok(seqs) => {
                    log::debug!(
                        "telemetry seqs {seqs:?}: {} gateway metrics, {} devices",
                        report.gateway.len(),
                        report.children.len()
                    );
                    last_err = None;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if last_err.as_deref() != Some(&msg) {
                        log::error!("queueing telemetry for gateway {}: {msg}", ctx.gateway_id);
                    }
                    last_err = Some(msg);
                }
            }
            if let Err(e) = announcer.announce(&ctx.queue, inventory::sensors_seen(&eff, &device_state), agent_info.clone()) {
                log::error!("queueing inventory: {e}");
            }
            // Identity baselines changed by the probes since the last tick (rarely any).
            device_state.save_baselines();
            drop(report);
            release_free_memory();
        }
        if let Some(every) = watchdog_every {
            if last_ping.is_none_or(|t| t.elapsed() >= every) && mqtt_alive(ctx, mqtt_stale_after) {
                crate::sd_notify::notify_watchdog();
                last_ping = Some(Instant::now());
            }
        }
        let wait = next_tick.saturating_duration_since(Instant::now()).min(Duration::from_millis(250));
        ctx.shutdown.sleep(wait.max(Duration::from_millis(10)));
    }
    device_state.save_baselines();
}

/// True while the MQTT thread keeps turning (its heartbeat is recent).
pub fn mqtt_alive(ctx: &AgentContext, stale_after: Duration) -> bool {
    let beat = ctx.metrics.mqtt_heartbeat_ms.load(std::sync::atomic::Ordering::Relaxed);
    beat > 0 && crate::clock::now_ms().saturating_sub(beat) <= stale_after.as_millis() as u64
}

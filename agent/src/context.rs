//! What every part of the agent shares: identity, effective config, the queue, persisted settings,
//! counters and the shutdown flag. Cheap to clone; passed to the command executor and the uploader.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::queue::Queue;
use crate::settings::Settings;

#[derive(Clone)]
pub struct AgentContext {
    pub gateway_id: String,
    /// Random per agent start; with `seq` it identifies every uplink message.
    pub boot: u64,
    pub data_dir: PathBuf,
    /// The effective configuration (defaults < file < flags). Print it with `config::redacted_toml`.
    pub config: Arc<Config>,
    pub queue: Queue,
    pub settings: Settings,
    pub metrics: Arc<AgentMetrics>,
    pub shutdown: Shutdown,
    pub started: Instant,
    /// Child devices: configured plus adopted (`site.adopt`); commands resolve their target here.
    pub site: crate::devices::site::SiteDevices,
}

impl AgentContext {
    /// A context for this start: identity and data dir come from `config`; fresh counters and
    /// shutdown flag.
    pub fn new(config: Config, boot: u64, queue: Queue, settings: Settings) -> AgentContext {
        AgentContext {
            gateway_id: config.gateway_id.clone(),
            site: crate::devices::site::SiteDevices::new(&config.gateway_id, &config.devices),
            boot,
            data_dir: config.data_dir.clone(),
            config: Arc::new(config),
            queue,
            settings,
            metrics: Arc::new(AgentMetrics::default()),
            shutdown: Shutdown::default(),
            started: Instant::now(),
        }
    }

    /// `{data_dir}/agent.db`, the file every module opens its own connection to.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(crate::db::DB_FILE)
    }

    /// `{data_dir}/logs`, where `agent.log` and `agent.log.1` live.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join(crate::logging::LOG_DIR)
    }
}

/// Counters reported by the agent-health collector. Relaxed atomics: they are statistics.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// Queued messages handed to MQTT (re-sends included).
    pub published: AtomicU64,
    /// Connections lost (or torn down by the watchdog) after having been established.
    pub reconnects: AtomicU64,
    pub receipted: AtomicU64,
    pub watchdog_resets: AtomicU64,
    /// Downlink messages refused by `decode_downlink`.
    pub downlink_invalid: AtomicU64,
    /// Downlink messages refused because their signature did not verify (forged, tampered, replayed
    /// from another gateway's topic, or unsigned).
    pub downlink_unverified: AtomicU64,
    pub commands_run: AtomicU64,
    pub connected: AtomicBool,
    /// Milliseconds since the Unix epoch of the MQTT loop's last turn (it turns at least every
    /// second while healthy); the systemd watchdog is fed only while this stays fresh.
    pub mqtt_heartbeat_ms: AtomicU64,
}

impl AgentMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Process-wide stop request: set by SIGTERM/SIGINT or by a command (agent restart).
#[derive(Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

static SIGNALLED: AtomicBool = AtomicBool::new(false);

impl Shutdown {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst) || SIGNALLED.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`, waking early (in steps of at most 100 ms) when shutdown is requested.
    /// Returns true if shutdown was requested.
    pub fn sleep(&self, d: std::time::Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.requested() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep((end - now).min(std::time::Duration::from_millis(100)));
        }
    }

    /// Installs SIGTERM and SIGINT handlers that only set a flag (async-signal-safe).
    pub fn install_signal_handlers() -> std::io::Result<()> {
        extern "C" fn on_signal(_sig: libc::c_int) {
            SIGNALLED.store(true, Ordering::SeqCst);
        }
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only
            // stores to an atomic, which is async-signal-safe.
            let rc = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

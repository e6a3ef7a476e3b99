//! Test helpers for the SCS Gateway end-to-end tests: real processes on free loopback ports.
//!
//! ```no_run
//! use std::time::Duration;
//! use scs_testkit::{wait_for, Agent, AgentOpts, Mosquitto, Shim, ShimOpts};
//!
//! let broker = Mosquitto::start(); // mosquitto on 127.0.0.1:<free port>, anonymous, no persistence
//! let shim = Shim::start(ShimOpts { broker: Some(broker.url()), ..ShimOpts::default() }); // waits for /healthz
//! let agent = Agent::start(AgentOpts::new("gw-1", &broker.url())); // --interval-secs 1, fresh data dir
//! let api = shim.api(); // bearer token already set
//! let sensors = wait_for(Duration::from_secs(20), "gateway sensor", || {
//!     let s = api.get_json("/v1/sensors");
//!     s.to_string().contains("gw-1").then_some(s)
//! });
//! ```
//!
//! * Binaries: [`bin_path`] finds `scs-agent` / `scs-cloud-shim` in the same target dir as the running test
//!   (`cargo test --workspace` builds them first; `cargo test -p X` alone does not build the other crate's
//!   binary, so run `cargo build --workspace` first). Override with env `SCS_AGENT_BIN` / `SCS_SHIM_BIN`.
//! * Every process writes stdout/stderr to log files in its temp dir; when a test panics, dropping the
//!   handle prints the logs' tails and keeps the temp dir (its path is printed). `SCS_KEEP_TMP=1` keeps
//!   temp dirs always.
//! * Processes are SIGKILLed on drop. `kill()` is SIGTERM (SIGKILL after 10 s), `kill9()` is SIGKILL,
//!   `start_again()` starts with the same arguments and data dir, `restart()` is both.
//! * [`publish`] / [`Subscription`] wrap `mosquitto_pub` / `mosquitto_sub` (binary-safe) and work against
//!   Mosquitto and the shim's embedded broker alike.
//! * Every wait has a timeout: [`wait_until`] returns false, [`wait_for`] panics with what it waited for.

mod agent;
mod api;
pub mod cddl;
pub mod conformance;
pub mod conformance_artifacts;
pub mod fakes;
mod identity;
mod launcher;
mod mosquitto;
mod mqtt_cli;
mod outbox;
mod process;
pub mod releases;
mod shim;
mod tempdir;
mod tls;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use agent::{Agent, AgentOpts};
pub use api::{Api, Reply};
pub use identity::{copy_gateway, gateways_add, gateways_revoke, shim_observer_auth, GatewayCreds};
pub use launcher::Supervised;
pub use mosquitto::Mosquitto;
pub use mqtt_cli::{publish, publish_opts, set_port_auth, try_publish_opts, MqttAuth, PubOpts, Subscription};
pub use outbox::{append_to_outbox, outbox_next_seq, outbox_seqs};
pub use process::Process;
pub use shim::{Shim, ShimOpts};
pub use tempdir::TempDir;
pub use tls::{generate_tls, TestTls};

/// Token the shims started by this kit accept (`SCS_API_TOKEN`), unless `ShimOpts::token` says otherwise.
pub const TEST_TOKEN: &str = "test-token";

/// A TCP port that was free on 127.0.0.1 a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr of a bound listener").port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Root of the Cargo workspace (the parent of `testkit/`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Path of a workspace binary (`scs-agent`, `scs-cloud-shim`, ...). Looks, in order, at env
/// `SCS_AGENT_BIN`/`SCS_SHIM_BIN`, env `CARGO_BIN_EXE_<name>`, the target dir of the running test
/// executable, then `target/debug/` under the workspace root. Panics with a hint when it is missing.
pub fn bin_path(name: &str) -> PathBuf {
    let override_var = match name {
        "scs-agent" => Some("SCS_AGENT_BIN"),
        "scs-cloud-shim" => Some("SCS_SHIM_BIN"),
        _ => None,
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(v) = override_var.and_then(std::env::var_os) {
        candidates.push(v.into());
    }
    if let Some(v) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        candidates.push(v.into());
    }
    // Test executables live in target/<profile>/deps/ and examples in target/<profile>/examples/, with the
    // binaries one level up; a bench binary in target/<profile>/ has them beside it.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            match dir.file_name().and_then(|n| n.to_str()) {
                Some("deps" | "examples") => candidates.extend(dir.parent().map(|p| p.join(name))),
                _ => candidates.push(dir.join(name)),
            }
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    candidates.push(target.join("debug").join(name));
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!("binary {name} not found (looked at {candidates:?}): run cargo build --workspace first");
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` every 50 ms until it returns `Some`; panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Milliseconds since the Unix epoch, for message timestamps built by tests (the agent's own clock
/// lives in its binary, out of a test's reach).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `RUST_LOG` for started processes: the caller's `SCS_TEST_LOG`, else `info`.
pub(crate) fn default_rust_log() -> String {
    std::env::var("SCS_TEST_LOG").unwrap_or_else(|_| "info".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let p = free_port();
        assert!(p > 0);
        std::net::TcpListener::bind(("127.0.0.1", p)).expect("free port can be bound");
    }

    #[test]
    fn wait_helpers_time_out() {
        assert!(!wait_until(Duration::from_millis(120), || false));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(2), || {
            n += 1;
            n > 2
        }));
        let r = std::panic::catch_unwind(|| wait_for::<()>(Duration::from_millis(60), "nothing", || None));
        assert!(r.is_err());
    }
}

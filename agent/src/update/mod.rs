//! Agent self-updates and image-update handoff: the on-disk layout under `{data_dir}/bin`, the
//! resumable HTTPS download into the spool, signature checks with the release key, and the health
//! gate a freshly installed binary must pass before it becomes `current`.
//!
//! Layout (all under the data directory, so a read-only root filesystem works; the packaged
//! `/usr/bin/scs-agent` is never modified):
//!
//! * `bin/scs-agent-<version>`: installed binaries (written as `.tmp`, fsynced, renamed).
//! * `bin/next`: symlink to a binary to try once. `scs-agent-launch` counts the attempt in
//!   `bin/next.tries` before it runs it, and abandons it (writing `bin/rollback`) when it finds an
//!   attempt already counted, i.e. the binary exited or was killed without confirming.
//! * `bin/current`: symlink to the last confirmed binary; absent means the packaged one.
//! * `bin/pending`: the update in flight (`command id`, version, binary path), so whichever binary
//!   starts next can report the outcome of the `agent.update` command.
//! * `bin/rollback`: why the last tried binary was abandoned (written by the launcher or by the
//!   binary itself when its health check times out).
//!
//! Every step is a rename or a symlink replacement, so a power cut leaves either the old or the
//! new selection, and the launcher always has the packaged binary to fall back to.

pub mod download;
pub mod layout;

use std::time::{Duration, Instant};

use crate::context::{AgentContext, AgentMetrics};

pub use layout::Layout;

/// Environment variable `scs-agent-launch` sets for every binary it starts.
pub const LAUNCHER_ENV: &str = "SCS_AGENT_LAUNCHER";
/// Set by the launcher (to the binary's path) when it starts `bin/next` on trial.
pub const TRIAL_ENV: &str = "SCS_AGENT_TRIAL";
/// Exit status of a binary that failed its health check (the supervisor restarts the launcher).
pub const UNHEALTHY_EXIT_CODE: i32 = 70;
/// Exit status that asks the supervisor (systemd, the BusyBox loop) for an immediate restart: used by
/// `agent.restart` and by a binary that has just become current. EX_TEMPFAIL, "try again", distinct from
/// crashes (101, 134) and clean exits (0).
pub const RESTART_EXIT_CODE: i32 = 75;

pub use crate::config::{ImageTool, UpdateConfig};

/// True when this process is a new binary on trial (started by the launcher from `bin/next`).
pub fn on_trial() -> bool {
    std::env::var_os(TRIAL_ENV).is_some_and(|v| !v.is_empty())
}

/// Called once at agent start. On trial, watches health: connected and one message receipted within
/// the configured time → the binary becomes `current` and the agent restarts, so the next start (now
/// from `current`) reports the command's success; otherwise the reason is recorded and the process
/// exits, and the launcher falls back to the previous binary.
pub fn start_health_gate(ctx: &AgentContext) {
    if !on_trial() {
        return;
    }
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new().name("update-health".into()).spawn(move || health_gate(&ctx));
    if let Err(e) = spawned {
        log::error!("update: cannot start the health check thread ({e}); exiting so the previous binary runs");
        std::process::exit(UNHEALTHY_EXIT_CODE);
    }
}

fn health_gate(ctx: &AgentContext) {
    let layout = Layout::new(&ctx.data_dir);
    let limit = Duration::from_secs(ctx.config.update.health_timeout_secs);
    let end = Instant::now() + limit;
    let receipted_at_start = AgentMetrics::get(&ctx.metrics.receipted);
    log::info!("update: on trial; confirming health within {} s", limit.as_secs());
    loop {
        let connected = ctx.metrics.connected.load(std::sync::atomic::Ordering::SeqCst);
        let receipted = AgentMetrics::get(&ctx.metrics.receipted) > receipted_at_start;
        if connected && receipted {
            match layout.promote_next() {
                Ok(()) => {
                    log::warn!("update: healthy (connected, receipted); now current; restarting to report it");
                    std::process::exit(RESTART_EXIT_CODE);
                }
                Err(e) => {
                    let why = format!("could not make the new binary current: {e}");
                    layout.record_rollback(&why);
                    log::error!("update: {why}");
                    std::process::exit(UNHEALTHY_EXIT_CODE);
                }
            }
        }
        if ctx.shutdown.requested() {
            // Stopped before deciding: the launcher counts this as the one attempt.
            return;
        }
        if Instant::now() >= end {
            let why = format!(
                "the new binary was not healthy within {} s (connected: {connected}, receipted: {receipted})",
                limit.as_secs()
            );
            layout.record_rollback(&why);
            log::error!("update: {why}; exiting so the launcher runs the previous binary");
            std::process::exit(UNHEALTHY_EXIT_CODE);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Standard base64 (with or without padding, whitespace ignored); for the release key file.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8\n").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("a*"), None);
    }
}

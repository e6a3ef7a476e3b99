//! `agent.update` (destructive, needs confirmation): downloads a new agent binary over HTTPS
//! (resumable, into the spool, bounded by the declared size), verifies size, SHA-256 and the release
//! key's Ed25519 signature, installs it under `{data_dir}/bin` and restarts through the supervisor into
//! it on trial (see [`crate::update`]).
//!
//! Outcome, reported by whichever binary runs after the restart ([`recovered`]):
//! `succeeded` once the new binary confirmed its health and became `current`; otherwise `failed` with
//! `result.outcome = "rolled_back"` and the reason, the previous binary running again. Nothing is
//! installed when a check fails.

use scs_protocol::{CommandState, Value};

use super::{CommandError, Job, Output};
use crate::context::AgentContext;
use crate::update::download::{self, spool_path, verify_file};
use crate::update::layout::Pending;
use crate::update::{on_trial, Layout, LAUNCHER_ENV};

pub const TYPE: &str = "agent.update";
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let version = job.require_str("version")?;
    let url = job.require_str("url")?;
    let size = u64::try_from(job.require_int("size")?).map_err(|_| CommandError::Failed("size must be positive".into()))?;
    let sha256 = job.require_str("sha256")?;
    let signature = job.require_str("signature")?;
    let ctx = &job.ctx;
    if std::env::var_os(LAUNCHER_ENV).is_none() {
        return Err(CommandError::Failed(
            "this agent was not started through scs-agent-launch, so it cannot select a new binary".into(),
        ));
    }
    if !version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')) {
        return Err(CommandError::Failed(format!("version {version:?} has characters not allowed in a file name")));
    }
    let key = &ctx.config.update.release_key;
    // Refuse a forged update before spending bandwidth on it.
    download::verify_release_signature(key, version, size, sha256, signature).map_err(failed)?;
    let dest = fetch(job, url, size, sha256)?;
    // Checked again on the bytes: the declared values were signed, the file must match them.
    if let Err(e) = verify_file(&dest, size, sha256) {
        let _ = std::fs::remove_file(&dest);
        return Err(failed(e));
    }
    let layout = Layout::new(&ctx.data_dir);
    let binary = layout.install_binary(&dest, version).map_err(failed)?;
    let _ = std::fs::remove_file(&dest);
    let pending = Pending {
        command_id: job.id.clone(),
        version: version.to_owned(),
        binary: binary.clone(),
        previous_version: VERSION.to_owned(),
    };
    layout.stage_next(&binary, &pending).map_err(failed)?;
    log::warn!("command {}: agent {version} installed at {}; restarting into it on trial", job.id, binary.display());
    Err(CommandError::RestartRequested)
}

/// Downloads into the spool (size checked against the spool cap first) and returns the file.
pub fn fetch(job: &Job, url: &str, size: u64, sha256: &str) -> Result<std::path::PathBuf, CommandError> {
    let ctx = &job.ctx;
    let spool = crate::spool::Spool::open(&ctx.data_dir, ctx.config.upload.spool_max_bytes).map_err(failed)?;
    let dest = spool_path(spool.dir(), sha256);
    let have = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    if spool.used().saturating_sub(have).saturating_add(size) > spool.cap() {
        return Err(failed(download::DownloadError::SpoolFull { size, used: spool.used(), cap: spool.cap() }));
    }
    match download::download(&ctx.config.upload, url, &dest, size, &|| job.should_stop()) {
        Ok(n) => log::info!("command {}: downloaded {n} bytes ({have} were already there)", job.id),
        Err(_) if job.should_stop() => return Err(CommandError::Stopped),
        Err(e) => return Err(failed(e)),
    }
    Ok(dest)
}

fn failed(e: impl std::fmt::Display) -> CommandError {
    CommandError::Failed(e.to_string())
}

/// What the executor reports for an `agent.update` left by the previous agent process.
pub enum Recovered {
    /// Not decided yet (this process is the new binary on trial): leave the row as it is.
    Wait,
    Outcome {
        state: CommandState,
        result: Value,
        error: Option<String>,
    },
}

/// Decides the outcome of command `id` from the files in `{data_dir}/bin`; `None` when the layout
/// holds no update for this command (the command never got as far as staging a binary).
pub fn recovered(ctx: &AgentContext, id: &str) -> Option<Recovered> {
    let layout = Layout::new(&ctx.data_dir);
    let pending = layout.pending().filter(|p| p.command_id == id)?;
    if on_trial() && layout.has_next() {
        return Some(Recovered::Wait);
    }
    let confirmed = !layout.has_next() && layout.current().as_deref() == Some(pending.binary.as_path());
    let base = |outcome: &str| {
        vec![
            ("outcome", Value::from(outcome)),
            ("version", Value::from(pending.version.as_str())),
            ("previousVersion", Value::from(pending.previous_version.as_str())),
            ("binary", Value::from(pending.binary.display().to_string())),
        ]
    };
    let r = if confirmed {
        Recovered::Outcome { state: CommandState::Succeeded, result: Value::map(base("updated")), error: None }
    } else if layout.has_next() {
        // Staged but not started through the launcher yet (e.g. killed right after staging and
        // started by hand): the launcher will try it at the next start.
        return Some(Recovered::Wait);
    } else {
        let reason = layout.rollback_reason().unwrap_or_else(|| "the new binary did not confirm its health".into());
        let mut fields = base("rolled_back");
        fields.push(("reason", Value::from(reason.as_str())));
        fields.push(("runningVersion", Value::from(VERSION)));
        Recovered::Outcome {
            state: CommandState::Failed,
            result: Value::map(fields),
            error: Some(format!("rolled back: {reason}")),
        }
    };
    layout.finish();
    Some(r)
}

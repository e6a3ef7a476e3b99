//! Remote commands: validation against the generated registry, the durable `commands` journal
//! (a command id runs at most once), limits, timeouts and cancellation, and one file per command
//! family. The executor ([`Executor::spawn`]) consumes [`Inbound`] commands and cancels from the
//! MQTT transport and reports every state change through the outbox (`TopicKind::CommandUpdate`).

pub mod agent_restart;
pub mod agent_update;
pub mod camera;
pub mod child;
pub mod config_read;
pub mod device_info;
pub mod device_probe;
pub mod executor;
#[cfg(test)]
mod executor_tests;
pub mod image_update;
pub mod interval;
pub mod journal;
pub mod limits;
pub mod log_bundle;
pub mod log_tail;
pub mod nvr;
pub mod reboot;
pub mod site;
pub mod tcp_probe;
pub mod time;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scs_protocol::registry::CommandSpec;
use scs_protocol::{ArtifactMeta, UploadGrant, Value};

use crate::context::AgentContext;

/// What the MQTT transport hands the executor: decoded commands and cancels, and commands that failed the
/// protocol checks but carry a readable id, which are answered `rejected` rather than dropped unseen.
#[derive(Debug)]
pub enum Inbound {
    Command(scs_protocol::CommandRequest),
    Cancel(scs_protocol::CommandCancel),
    Invalid { id: String, error: String },
}

pub use executor::Executor;

/// One accepted command, as a command family's `run` sees it.
pub struct Job {
    pub ctx: AgentContext,
    pub id: String,
    pub spec: &'static CommandSpec,
    /// Validated against the registry, defaults applied.
    pub params: Value,
    /// When the command must have finished; the executor reports `timed_out` after it.
    pub deadline: Instant,
    /// Set when the command is cancelled or times out: stop now, kill children.
    pub cancel: Arc<AtomicBool>,
    /// Upload permission for commands whose registry entry has `"artifact": true`.
    pub upload: Option<UploadGrant>,
    /// When the cloud issued the command (ms since the epoch).
    pub issued_ms: u64,
    /// The child device the command targets (resolved and class-checked by the executor); `None` for
    /// a command on the gateway itself.
    pub target: Option<Target>,
}

/// A command's target device.
#[derive(Debug, Clone)]
pub struct Target {
    pub device: crate::devices::DeviceSpec,
    /// `camera` or `nvr` (`registry::target_class` of its sensor type).
    pub class: &'static str,
}

impl Job {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// True once the job must stop: cancelled, or past its deadline.
    pub fn should_stop(&self) -> bool {
        self.cancelled() || Instant::now() >= self.deadline
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps up to `d` in short steps; returns `Err(Stopped)` if the job must stop meanwhile.
    pub fn sleep(&self, d: Duration) -> Result<(), CommandError> {
        let end = Instant::now() + d;
        loop {
            if self.should_stop() {
                return Err(CommandError::Stopped);
            }
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    /// An integer parameter (validated, so present whenever it is required or has a default).
    pub fn int(&self, name: &str) -> Option<i64> {
        self.params.get(name).and_then(Value::as_i64)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    /// A required parameter; missing means the registry and the code disagree.
    pub fn require_int(&self, name: &str) -> Result<i64, CommandError> {
        self.int(name).ok_or_else(|| CommandError::Failed(format!("parameter {name} missing after validation")))
    }

    pub fn require_str(&self, name: &str) -> Result<&str, CommandError> {
        self.str(name).ok_or_else(|| CommandError::Failed(format!("parameter {name} missing after validation")))
    }

    /// The target device; missing means the registry and the executor disagree.
    pub fn device(&self) -> Result<&crate::devices::DeviceSpec, CommandError> {
        self.target
            .as_ref()
            .map(|t| &t.device)
            .ok_or_else(|| CommandError::Failed(format!("{} needs a target device", self.spec.command_type)))
    }
}

/// What a successful command returns: a result value (small; it travels in the `CommandUpdate`) and
/// the metadata of any artifacts it uploaded.
#[derive(Debug, Default)]
pub struct Output {
    pub result: Value,
    pub artifacts: Vec<ArtifactMeta>,
}

impl Output {
    pub fn value(result: Value) -> Output {
        Output { result, artifacts: Vec::new() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command ran and failed; the message is the command's `error`.
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The job noticed its cancel flag or deadline and stopped; the executor knows which.
    #[error("stopped")]
    Stopped,
    /// The agent must exit so its supervisor restarts it (agent restart).
    #[error("restart requested")]
    RestartRequested,
    #[error("{0} is not implemented by this agent build")]
    Unsupported(&'static str),
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error(transparent)]
    Probe(#[from] crate::net_probe::ProbeError),
    #[error(transparent)]
    Upload(#[from] crate::upload::UploadError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    // Device errors are boxed: they carry targets, paths and sources, and every command result would
    // otherwise grow to their size.
    #[error(transparent)]
    Snapshot(Box<crate::devices::snapshot::SnapshotError>),
    #[error(transparent)]
    Reboot(Box<crate::devices::reboot::RebootError>),
    #[error(transparent)]
    Clip(Box<crate::devices::clip::ClipError>),
    #[error(transparent)]
    Site(Box<crate::devices::site::SiteError>),
}

macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),*) => {$(
        impl From<$ty> for CommandError {
            fn from(e: $ty) -> CommandError {
                CommandError::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Snapshot: crate::devices::snapshot::SnapshotError,
    Reboot: crate::devices::reboot::RebootError,
    Clip: crate::devices::clip::ClipError,
    Site: crate::devices::site::SiteError
);

impl CommandError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> CommandError {
        CommandError::Io { what: what.into(), source }
    }
}

/// Signature every command family implements.
pub type RunFn = fn(&Job) -> Result<Output, CommandError>;

/// The implementation of a registry command type.
pub fn runner(command_type: &str) -> Option<RunFn> {
    Some(match command_type {
        device_info::TYPE => device_info::run,
        time::TYPE => time::run,
        reboot::TYPE => reboot::run,
        agent_restart::TYPE => agent_restart::run,
        interval::TYPE => interval::run,
        tcp_probe::TYPE => tcp_probe::run,
        config_read::TYPE => config_read::run,
        log_tail::TYPE => log_tail::run,
        log_bundle::TYPE => log_bundle::run,
        agent_update::TYPE => agent_update::run,
        image_update::TYPE => image_update::run,
        camera::SNAPSHOT => camera::snapshot,
        camera::REBOOT => camera::reboot,
        nvr::CLIP_EXPORT => nvr::clip_export,
        device_probe::TYPE => device_probe::run,
        site::DISCOVER => site::discover,
        site::ADOPT => site::adopt,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_registry_command_has_a_runner() {
        for c in crate::command_registry_gen::COMMANDS {
            assert!(super::runner(c.command_type).is_some(), "{} has no implementation", c.command_type);
        }
    }
}

//! `agent.restart` (/32769/0/1, execute): the agent exits with [`RESTART_EXIT_CODE`] so its
//! supervisor starts it again (systemd: `Restart=on-failure` or `RestartForceExitStatus=75`; the
//! BusyBox init script's respawn loop). The executor first records the command as restarting in
//! the journal; the next agent process reports it `succeeded` — success means "came back".

use super::{CommandError, Job, Output};

pub const TYPE: &str = "agent.restart";
pub use crate::update::RESTART_EXIT_CODE;

pub fn run(_job: &Job) -> Result<Output, CommandError> {
    Err(CommandError::RestartRequested)
}

//! `device.reboot` (/3/0/4, execute; destructive, needs confirmation): runs the configured reboot
//! argv (`[commands] reboot_command`, default `["/sbin/reboot"]`) after an optional delay. The
//! command succeeds when that program exits 0, i.e. the reboot has been initiated; the result is
//! already in the durable outbox, so it reaches the cloud after the gateway comes back.

use std::time::Duration;

use scs_protocol::Value;

use super::{child, CommandError, Job, Output};

pub const TYPE: &str = "device.reboot";

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let argv = &job.ctx.config.commands.reboot_command;
    let delay = job.int("delaySecs").unwrap_or(0).max(0) as u64;
    job.sleep(Duration::from_secs(delay))?;
    log::warn!("command {}: rebooting the gateway with {argv:?}", job.id);
    let out = child::run(job, argv)?;
    if !out.status.success() {
        return Err(CommandError::Failed(format!("reboot command {argv:?} failed ({}): {}", out.status, out.stderr.trim())));
    }
    Ok(Output::value(Value::map([
        ("initiated", Value::Bool(true)),
        ("command", Value::Array(argv.iter().map(|a| Value::from(a.as_str())).collect())),
        ("delaySecs", Value::from(delay)),
        ("output", Value::from(out.stdout.trim())),
    ])))
}

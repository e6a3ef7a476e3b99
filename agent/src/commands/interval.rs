//! `telemetry.set_interval` (/32769/0/2, write): persists a new telemetry interval through
//! `config::set_interval`; the main loop reads it at every tick, so no restart is needed.

use scs_protocol::Value;

use super::{CommandError, Job, Output};
use crate::config;

pub const TYPE: &str = "telemetry.set_interval";

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let secs = job.require_int("intervalSecs")?;
    let secs = u64::try_from(secs).map_err(|_| CommandError::Failed(format!("interval {secs} is negative")))?;
    let previous = config::interval_secs(&job.ctx);
    config::set_interval(&job.ctx, secs).map_err(|e| CommandError::Failed(e.to_string()))?;
    log::info!("command {}: telemetry interval {previous} s -> {secs} s", job.id);
    Ok(Output::value(Value::map([("intervalSecs", Value::from(secs)), ("previousSecs", Value::from(previous))])))
}

//! `telemetry.set_interval` (/32769/0/2, write): persists a new telemetry interval in the settings
//! store; the main loop reads it at every tick, so no restart is needed.

use scs_protocol::Value;

use super::{CommandError, Job, Output};

pub const TYPE: &str = "telemetry.set_interval";

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let secs = job.require_int("intervalSecs")?;
    let secs = u64::try_from(secs).map_err(|_| CommandError::Failed(format!("interval {secs} is negative")))?;
    let previous = job.ctx.settings.interval_secs();
    job.ctx.settings.set_interval_secs(secs)?;
    log::info!("command {}: telemetry interval of gateway {} {previous} s -> {secs} s", job.id, job.ctx.gateway_id);
    Ok(Output::value(Value::map([("intervalSecs", Value::from(secs)), ("previousSecs", Value::from(previous))])))
}

//! `agent.config` (/32769/0/3, read): the effective configuration (defaults < file < flags, plus the
//! persisted telemetry interval) as TOML with every secret replaced by `<redacted>`.

use scs_protocol::Value;

use super::{CommandError, Job, Output};
use crate::config;

pub const TYPE: &str = "agent.config";

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let text = config::redacted_toml(&job.ctx.config);
    Ok(Output::value(Value::map([
        ("format", Value::from("toml")),
        ("config", Value::from(text)),
        ("effectiveIntervalSecs", Value::from(job.ctx.settings.interval_secs())),
    ])))
}

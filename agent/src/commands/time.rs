//! `device.time` (/3/0/13 Current Time, read): the gateway's wall clock, so an operator can spot a
//! drifting or unset RTC (a skewed clock breaks TLS and timestamps).

use scs_protocol::Value;

use super::{CommandError, Job, Output};

pub const TYPE: &str = "device.time";

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let now = crate::clock::now_ms();
    let tz = std::fs::read_to_string("/etc/timezone").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    Ok(Output::value(Value::map([
        ("utcMs", Value::from(now)),
        ("rfc3339", Value::from(crate::clock::rfc3339_utc(now))),
        // Positive: the gateway's clock is ahead of the cloud's issue time (plus transit).
        ("offsetFromIssueMs", Value::Int(now as i64 - job.issued_ms as i64)),
        ("timezone", tz.map(Value::Text).unwrap_or(Value::Null)),
    ])))
}

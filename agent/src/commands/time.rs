//! `device.time` (/3/0/13 Current Time, read): the gateway's wall clock, so an operator can spot a
//! drifting or unset RTC (a skewed clock breaks TLS and timestamps).

use scs_protocol::Value;

use super::{CommandError, Job, Output};

pub const TYPE: &str = "device.time";

/// Civil date from days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T15:04:05.123Z`.
pub fn rfc3339_utc(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", sod / 3600, sod / 60 % 60, sod % 60, ms % 1000)
}

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let now = crate::clock::now_ms();
    let tz = std::fs::read_to_string("/etc/timezone").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    Ok(Output::value(Value::map([
        ("utcMs", Value::from(now)),
        ("rfc3339", Value::from(rfc3339_utc(now))),
        // Positive: the gateway's clock is ahead of the cloud's issue time (plus transit).
        ("offsetFromIssueMs", Value::Int(now as i64 - job.issued_ms as i64)),
        ("timezone", tz.map(Value::Text).unwrap_or(Value::Null)),
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_795_791_845_123), "2026-11-27T15:04:05.123Z");
    }
}

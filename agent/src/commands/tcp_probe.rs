//! `net.tcp_probe` (/32770/0/1, execute): can the gateway open a TCP connection to host:port, and
//! how long does the handshake take? An unreachable target is a successful probe with
//! `reachable: false`; only a broken request fails the command.

use std::time::{Duration, Instant};

use scs_protocol::Value;

use super::{CommandError, Job, Output};
use crate::net_probe::{self, ProbeError};

pub const TYPE: &str = "net.tcp_probe";

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let host = job.require_str("host")?.to_owned();
    let port = u16::try_from(job.require_int("port")?).map_err(|_| CommandError::Failed("port out of range".into()))?;
    let timeout = Duration::from_millis(job.int("timeoutMs").unwrap_or(3000).max(1) as u64);
    let attempts = job.int("attempts").unwrap_or(1).clamp(1, 10);

    let resolved_at = Instant::now();
    let addrs = match net_probe::resolve(&net_probe::host_port(&host, port), timeout.min(job.remaining())) {
        Ok(a) => a,
        Err(e @ (ProbeError::Resolve { .. } | ProbeError::ResolveTimeout { .. } | ProbeError::NoAddress { .. })) => {
            return Ok(Output::value(Value::map([
                ("host", Value::from(host)),
                ("port", Value::from(i64::from(port))),
                ("reachable", Value::Bool(false)),
                ("error", Value::from(e.to_string())),
            ])))
        }
        Err(e) => return Err(e.into()),
    };
    let resolve_ms = round_ms(resolved_at.elapsed());
    let Some(addr) = addrs.first().copied() else {
        return Err(CommandError::Failed(format!("{host} resolved to no address")));
    };

    let mut results = Vec::new();
    let mut best: Option<f64> = None;
    for _ in 0..attempts {
        if job.should_stop() {
            return Err(CommandError::Stopped);
        }
        let t = timeout.min(job.remaining());
        let start = Instant::now();
        let r = net_probe::connect(std::slice::from_ref(&addr), t);
        let ms = round_ms(start.elapsed());
        results.push(match r {
            Ok(_) => {
                best = Some(best.map_or(ms, |b: f64| b.min(ms)));
                Value::map([("ok", Value::Bool(true)), ("latencyMs", Value::Float(ms))])
            }
            Err(e) => {
                Value::map([("ok", Value::Bool(false)), ("error", Value::from(e.to_string())), ("elapsedMs", Value::Float(ms))])
            }
        });
    }
    Ok(Output::value(Value::map([
        ("host", Value::from(host)),
        ("port", Value::from(i64::from(port))),
        ("address", Value::from(addr.to_string())),
        ("resolveMs", Value::Float(resolve_ms)),
        ("reachable", Value::Bool(best.is_some())),
        ("latencyMs", best.map(Value::Float).unwrap_or(Value::Null)),
        ("attempts", Value::Array(results)),
    ])))
}

//! In-memory ingest counters per gateway, for this process since it started (the `rejections` table
//! holds the durable per-gateway rejection counts across restarts and shims).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

/// Distinct gateways tracked; beyond this (a flood of made-up ids) counts go to [`OVERFLOW_KEY`].
const MAX_GATEWAYS: usize = 4096;
const OVERFLOW_KEY: &str = "_other";
const MAX_ERROR_CHARS: usize = 300;

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayCounters {
    pub received: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Not stored because the store failed; not receipted, so the agent sends them again.
    pub failed: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub last_rejection: Option<LastRejection>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRejection {
    pub reason: String,
    pub error: String,
    pub topic: String,
    pub at: i64,
}

#[derive(Debug, Clone, Copy)]
pub enum Count<'a> {
    Stored,
    Duplicate,
    Failed,
    Rejected { reason: &'a str, error: &'a str, topic: &'a str, at: i64 },
}

#[derive(Default)]
pub struct Stats {
    gateways: Mutex<HashMap<String, GatewayCounters>>,
}

impl Stats {
    pub fn record(&self, gateway: &str, what: Count<'_>) {
        let Ok(mut map) = self.gateways.lock() else { return };
        let key = if map.contains_key(gateway) || map.len() < MAX_GATEWAYS { gateway } else { OVERFLOW_KEY };
        let c = map.entry(key.to_owned()).or_default();
        c.received += 1;
        match what {
            Count::Stored => c.stored += 1,
            Count::Duplicate => c.duplicates += 1,
            Count::Failed => c.failed += 1,
            Count::Rejected { reason, error, topic, at } => {
                c.rejected += 1;
                *c.rejected_by_reason.entry(reason.to_owned()).or_default() += 1;
                c.last_rejection = Some(LastRejection {
                    reason: reason.to_owned(),
                    error: error.chars().take(MAX_ERROR_CHARS).collect(),
                    topic: topic.chars().take(MAX_ERROR_CHARS).collect(),
                    at,
                });
            }
        }
    }

    pub fn get(&self, gateway: &str) -> GatewayCounters {
        self.gateways.lock().ok().and_then(|m| m.get(gateway).cloned()).unwrap_or_default()
    }

    /// Totals over every gateway.
    pub fn totals(&self) -> GatewayCounters {
        let mut t = GatewayCounters::default();
        if let Ok(map) = self.gateways.lock() {
            for c in map.values() {
                t.received += c.received;
                t.stored += c.stored;
                t.duplicates += c.duplicates;
                t.rejected += c.rejected;
                t.failed += c.failed;
                for (r, n) in &c.rejected_by_reason {
                    *t.rejected_by_reason.entry(r.clone()).or_default() += n;
                }
            }
        }
        t
    }
}

/// Lets through at most `burst` log lines per `window`, then one summary of how many it held back, so
/// a flood of garbage cannot flood the log.
pub struct LogThrottle {
    window: std::time::Duration,
    burst: u32,
    started: std::time::Instant,
    used: u32,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(burst: u32, window: std::time::Duration) -> LogThrottle {
        LogThrottle { window, burst, started: std::time::Instant::now(), used: 0, suppressed: 0 }
    }

    /// True when this event may be logged; logs the suppressed count when a new window opens.
    pub fn allow(&mut self) -> bool {
        if self.started.elapsed() >= self.window {
            if self.suppressed > 0 {
                log::warn!("{} more rejected messages were not logged in the last {:?}", self.suppressed, self.window);
            }
            self.started = std::time::Instant::now();
            self.used = 0;
            self.suppressed = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_gateway_and_reason() {
        let s = Stats::default();
        s.record("gw-1", Count::Stored);
        s.record("gw-1", Count::Duplicate);
        s.record("gw-1", Count::Rejected { reason: "malformed", error: "bad", topic: "t", at: 5 });
        s.record("gw-2", Count::Rejected { reason: "too_large", error: "big", topic: "t", at: 6 });
        let g1 = s.get("gw-1");
        assert_eq!((g1.received, g1.stored, g1.duplicates, g1.rejected), (3, 1, 1, 1));
        assert_eq!(g1.rejected_by_reason.get("malformed"), Some(&1));
        assert_eq!(s.totals().rejected, 2);
        assert_eq!(s.get("nobody").received, 0);
    }

    #[test]
    fn throttle_limits_bursts() {
        let mut t = LogThrottle::new(3, std::time::Duration::from_secs(3600));
        let allowed = (0..10).filter(|_| t.allow()).count();
        assert_eq!(allowed, 3);
    }
}

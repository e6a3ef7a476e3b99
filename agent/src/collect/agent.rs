//! The agent's own health: RSS (/proc/self/statm), CPU (/proc/self/stat), queue depth and bytes,
//! dropped and rejected messages, reconnects, publishes, commands run, uptime.

use std::path::PathBuf;
use std::time::Instant;

use scs_protocol::Metric;

use super::{parse_err, read, round1, CollectError, Collector, Report, Roots};

/// Counters the health collector reports, gathered from the queue and the transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounters {
    pub queue_depth: u64,
    pub queue_bytes: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub reconnects: u64,
    pub published: u64,
    pub commands_run: u64,
    pub watchdog_resets: u64,
}

pub type CounterSource = Box<dyn Fn() -> HealthCounters + Send>;

pub struct AgentHealth {
    statm: PathBuf,
    stat: PathBuf,
    page_size: u64,
    ticks_per_sec: u64,
    started: Instant,
    prev: Option<(u64, Instant)>,
    counters: CounterSource,
}

/// utime + stime (clock ticks) from a /proc/PID/stat line. The command name may contain spaces
/// and parentheses, so fields are counted after its last ')'.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')': state is field 3, so utime (14) and stime (15) are at indexes 11 and 12
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as u64
    } else {
        fallback
    }
}

impl AgentHealth {
    pub fn new(roots: &Roots, started: Instant, counters: CounterSource) -> AgentHealth {
        let mut h = AgentHealth {
            statm: roots.proc_file("self/statm"),
            stat: roots.proc_file("self/stat"),
            page_size: sysconf(libc::_SC_PAGESIZE, 4096),
            ticks_per_sec: sysconf(libc::_SC_CLK_TCK, 100),
            started,
            prev: None,
            counters,
        };
        h.prev = read(&h.stat).ok().and_then(|s| parse_cpu_ticks(&s)).map(|t| (t, Instant::now()));
        h
    }
}

impl Collector for AgentHealth {
    fn name(&self) -> &'static str {
        "agent"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        let c = (self.counters)();
        let m = &mut out.gateway;
        m.push(Metric::new("agent.queue_depth", c.queue_depth));
        m.push(Metric::new("agent.queue_bytes", c.queue_bytes));
        m.push(Metric::new("agent.dropped_batches", c.dropped));
        m.push(Metric::new("agent.rejected", c.rejected));
        m.push(Metric::new("agent.reconnects", c.reconnects));
        m.push(Metric::new("agent.published", c.published));
        m.push(Metric::new("agent.commands_run", c.commands_run));
        m.push(Metric::new("agent.watchdog_resets", c.watchdog_resets));
        m.push(Metric::new("agent.uptime_secs", self.started.elapsed().as_secs()));

        let statm = read(&self.statm)?;
        let resident: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| parse_err(&self.statm, "no resident field"))?;
        m.push(Metric::new("agent.rss_bytes", resident * self.page_size));

        let ticks = parse_cpu_ticks(&read(&self.stat)?).ok_or_else(|| parse_err(&self.stat, "no utime/stime"))?;
        let now = Instant::now();
        if let Some((prev_ticks, prev_t)) = self.prev.replace((ticks, now)) {
            let wall = now.duration_since(prev_t).as_secs_f64();
            if wall > 0.0 {
                let cpu = ticks.saturating_sub(prev_ticks) as f64 / self.ticks_per_sec as f64;
                m.push(Metric::new("agent.cpu_pct", round1(cpu * 100.0 / wall)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    const STAT: &str = "4242 (scs agent (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 100 1000 200";

    #[test]
    fn parses_stat_with_odd_command_names() {
        assert_eq!(parse_cpu_ticks(STAT), Some(300));
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn reports_rss_counters_and_cpu() {
        let t = Tree::new("agent");
        t.write("proc/self/statm", "5000 1000 300 10 0 800 0\n").write("proc/self/stat", STAT);
        let counters =
            HealthCounters { queue_depth: 7, queue_bytes: 700, dropped: 2, reconnects: 3, published: 99, ..Default::default() };
        let mut h = AgentHealth::new(&t.roots(), Instant::now(), Box::new(move || counters));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut r = Report::default();
        h.collect(&mut r).unwrap();
        let ps = sysconf(libc::_SC_PAGESIZE, 4096) as f64;
        assert_eq!(value(&r.gateway, "agent.rss_bytes", None), Some(1000.0 * ps));
        assert_eq!(value(&r.gateway, "agent.queue_depth", None), Some(7.0));
        assert_eq!(value(&r.gateway, "agent.queue_bytes", None), Some(700.0));
        assert_eq!(value(&r.gateway, "agent.dropped_batches", None), Some(2.0));
        assert_eq!(value(&r.gateway, "agent.reconnects", None), Some(3.0));
        assert_eq!(value(&r.gateway, "agent.published", None), Some(99.0));
        // unchanged tick count: 0 % CPU
        assert_eq!(value(&r.gateway, "agent.cpu_pct", None), Some(0.0));
    }

    #[test]
    fn real_self_is_readable() {
        let roots = Roots { proc: "/proc".into(), sys: "/sys".into() };
        let mut h = AgentHealth::new(&roots, Instant::now(), Box::new(HealthCounters::default));
        let mut r = Report::default();
        h.collect(&mut r).unwrap();
        assert!(value(&r.gateway, "agent.rss_bytes", None).unwrap() > 0.0);
    }
}

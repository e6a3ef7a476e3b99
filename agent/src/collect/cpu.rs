//! Gateway CPU use: the busy share of all CPUs between two reads of the `cpu` line of /proc/stat.

use std::path::PathBuf;

use scs_protocol::Metric;

use super::{parse_err, read, round1, CollectError, Collector, Report, Roots};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Parses the aggregate `cpu` line. Idle = idle + iowait; guest time is already inside user/nice.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied()? + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes { busy: total.saturating_sub(idle), total })
}

pub struct Cpu {
    path: PathBuf,
    prev: Option<CpuTimes>,
}

impl Cpu {
    /// Takes a first reading now, so the first interval already has a delta.
    pub fn new(roots: &Roots) -> Cpu {
        let path = roots.proc_file("stat");
        let prev = read(&path).ok().and_then(|t| parse_stat(&t));
        Cpu { path, prev }
    }
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        let cur = parse_stat(&read(&self.path)?).ok_or_else(|| parse_err(&self.path, "no cpu line"))?;
        if let Some(prev) = self.prev.replace(cur) {
            let dt = cur.total.saturating_sub(prev.total);
            if dt > 0 {
                let pct = cur.busy.saturating_sub(prev.busy) as f64 * 100.0 / dt as f64;
                out.gateway.push(Metric::new("cpu.usage_pct", round1(pct.clamp(0.0, 100.0))));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    #[test]
    fn usage_from_two_samples() {
        let t = Tree::new("cpu");
        t.write("proc/stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\nintr 5\n");
        let mut c = Cpu::new(&t.roots());
        // +150 busy (user 100, system 50), +50 idle, +0 iowait => 75 %
        t.write("proc/stat", "cpu  200 0 150 750 100 0 0 0 0 0\n");
        let mut r = Report::default();
        c.collect(&mut r).unwrap();
        assert_eq!(value(&r.gateway, "cpu.usage_pct", None), Some(75.0));
        // no time passed: nothing reported rather than a division by zero
        let mut r = Report::default();
        c.collect(&mut r).unwrap();
        assert!(r.gateway.is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        let t = Tree::new("cpu-bad");
        t.write("proc/stat", "intr 1 2 3\n");
        let mut c = Cpu::new(&t.roots());
        assert!(c.collect(&mut Report::default()).is_err());
        assert_eq!(parse_stat("cpu  1 x 3 4"), None);
    }
}

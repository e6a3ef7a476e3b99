//! Memory and swap from /proc/meminfo.

use std::path::PathBuf;

use scs_protocol::Metric;

use super::{parse_err, read, round1, CollectError, Collector, Report, Roots};

pub struct Memory {
    path: PathBuf,
}

impl Memory {
    pub fn new(roots: &Roots) -> Memory {
        Memory { path: roots.proc_file("meminfo") }
    }
}

/// A `Name:   1234 kB` field, in bytes.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        let text = read(&self.path)?;
        let total = field(&text, "MemTotal").ok_or_else(|| parse_err(&self.path, "no MemTotal"))?;
        // Kernels before 3.14 lack MemAvailable; free + page cache is the classic approximation.
        let available = field(&text, "MemAvailable").unwrap_or_else(|| {
            field(&text, "MemFree").unwrap_or(0) + field(&text, "Buffers").unwrap_or(0) + field(&text, "Cached").unwrap_or(0)
        });
        out.gateway.push(Metric::new("mem.total_bytes", total));
        out.gateway.push(Metric::new("mem.available_bytes", available));
        if total > 0 {
            let used = total.saturating_sub(available) as f64 * 100.0 / total as f64;
            out.gateway.push(Metric::new("mem.used_pct", round1(used)));
        }
        if let (Some(st), Some(sf)) = (field(&text, "SwapTotal"), field(&text, "SwapFree")) {
            out.gateway.push(Metric::new("swap.used_bytes", st.saturating_sub(sf)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    #[test]
    fn parses_meminfo() {
        let t = Tree::new("mem");
        t.write(
            "proc/meminfo",
            "MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     250000 kB\nSwapTotal:  2048 kB\nSwapFree: 1024 kB\n",
        );
        let mut r = Report::default();
        Memory::new(&t.roots()).collect(&mut r).unwrap();
        assert_eq!(value(&r.gateway, "mem.total_bytes", None), Some(1_024_000_000.0));
        assert_eq!(value(&r.gateway, "mem.available_bytes", None), Some(256_000_000.0));
        assert_eq!(value(&r.gateway, "mem.used_pct", None), Some(75.0));
        assert_eq!(value(&r.gateway, "swap.used_bytes", None), Some(1_048_576.0));
    }

    #[test]
    fn old_kernel_without_memavailable() {
        let t = Tree::new("mem-old");
        t.write("proc/meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 350 kB\n");
        let mut r = Report::default();
        Memory::new(&t.roots()).collect(&mut r).unwrap();
        assert_eq!(value(&r.gateway, "mem.used_pct", None), Some(50.0));
        assert!(value(&r.gateway, "swap.used_bytes", None).is_none());
    }
}

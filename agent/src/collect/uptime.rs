//! Gateway uptime from /proc/uptime.

use scs_protocol::Metric;

use super::{parse_err, read, CollectError, Collector, Report, Roots};

pub struct Uptime {
    roots: Roots,
}

impl Uptime {
    pub fn new(roots: &Roots) -> Uptime {
        Uptime { roots: roots.clone() }
    }
}

/// Seconds since boot (whole seconds).
pub fn read_uptime_secs(roots: &Roots) -> Result<u64, CollectError> {
    let path = roots.proc_file("uptime");
    let text = read(&path)?;
    let secs: f64 = text.split_whitespace().next().and_then(|f| f.parse().ok()).ok_or_else(|| parse_err(&path, "no uptime"))?;
    Ok(secs as u64)
}

impl Collector for Uptime {
    fn name(&self) -> &'static str {
        "uptime"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        out.gateway.push(Metric::new("uptime.secs", read_uptime_secs(&self.roots)?));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    #[test]
    fn parses_uptime() {
        let t = Tree::new("up");
        t.write("proc/uptime", "12345.67 2345.60\n");
        let mut r = Report::default();
        Uptime::new(&t.roots()).collect(&mut r).unwrap();
        assert_eq!(value(&r.gateway, "uptime.secs", None), Some(12345.0));
        assert_eq!(read_uptime_secs(&t.roots()).unwrap(), 12345);
    }
}

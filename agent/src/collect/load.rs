//! Load averages from /proc/loadavg.

use std::path::PathBuf;

use scs_protocol::Metric;

use super::{parse_err, read, CollectError, Collector, Report, Roots};

pub struct Load {
    path: PathBuf,
}

impl Load {
    pub fn new(roots: &Roots) -> Load {
        Load { path: roots.proc_file("loadavg") }
    }
}

impl Collector for Load {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        let text = read(&self.path)?;
        let v: Vec<f64> = text.split_whitespace().take(3).filter_map(|f| f.parse().ok()).collect();
        if v.len() != 3 {
            return Err(parse_err(&self.path, "expected three load averages"));
        }
        for (name, x) in ["load.1m", "load.5m", "load.15m"].into_iter().zip(v) {
            out.gateway.push(Metric::new(name, x));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    #[test]
    fn parses_loadavg() {
        let t = Tree::new("load");
        t.write("proc/loadavg", "0.52 1.25 2.00 1/467 12345\n");
        let mut r = Report::default();
        Load::new(&t.roots()).collect(&mut r).unwrap();
        assert_eq!(value(&r.gateway, "load.1m", None), Some(0.52));
        assert_eq!(value(&r.gateway, "load.15m", None), Some(2.0));
        t.write("proc/loadavg", "x\n");
        assert!(Load::new(&t.roots()).collect(&mut Report::default()).is_err());
    }
}

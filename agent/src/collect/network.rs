//! Per-interface byte and error counters from /proc/net/dev (cumulative; the cloud derives rates).

use std::path::PathBuf;

use scs_protocol::Metric;

use super::{read, CollectError, Collector, Report, Roots};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

pub fn parse_net_dev(text: &str) -> Vec<IfCounters> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
            let &[rx_bytes, _, rx_errors, _, _, _, _, _, tx_bytes, _, tx_errors, ..] = f.as_slice() else { return None };
            Some(IfCounters { name: name.trim().to_owned(), rx_bytes, rx_errors, tx_bytes, tx_errors })
        })
        .collect()
}

pub struct Network {
    path: PathBuf,
    wanted: Vec<String>,
}

impl Network {
    pub fn new(roots: &Roots, wanted: &[String]) -> Network {
        Network { path: roots.proc_file("net/dev"), wanted: wanted.to_vec() }
    }
}

impl Collector for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        for i in parse_net_dev(&read(&self.path)?) {
            let keep = if self.wanted.is_empty() { i.name != "lo" } else { self.wanted.contains(&i.name) };
            if !keep {
                continue;
            }
            out.gateway.push(Metric::labelled("net.rx_bytes", &i.name, i.rx_bytes));
            out.gateway.push(Metric::labelled("net.tx_bytes", &i.name, i.tx_bytes));
            out.gateway.push(Metric::labelled("net.rx_errors", &i.name, i.rx_errors));
            out.gateway.push(Metric::labelled("net.tx_errors", &i.name, i.tx_errors));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456789 1000  3    0    0     0          0         0 987654321   2000    7    0    0     0       0          0
wlan0:5 1 2 0 0 0 0 0 6 1 4 0 0 0 0 0
";

    #[test]
    fn parses_counters_and_skips_loopback() {
        let t = Tree::new("net");
        t.write("proc/net/dev", NET_DEV);
        let mut r = Report::default();
        Network::new(&t.roots(), &[]).collect(&mut r).unwrap();
        assert_eq!(value(&r.gateway, "net.rx_bytes", Some("eth0")), Some(123456789.0));
        assert_eq!(value(&r.gateway, "net.tx_bytes", Some("eth0")), Some(987654321.0));
        assert_eq!(value(&r.gateway, "net.rx_errors", Some("eth0")), Some(3.0));
        assert_eq!(value(&r.gateway, "net.tx_errors", Some("eth0")), Some(7.0));
        assert_eq!(value(&r.gateway, "net.rx_bytes", Some("wlan0")), Some(5.0));
        assert!(value(&r.gateway, "net.rx_bytes", Some("lo")).is_none());
        let mut r = Report::default();
        Network::new(&t.roots(), &["lo".into()]).collect(&mut r).unwrap();
        assert_eq!(r.gateway.len(), 4);
    }
}

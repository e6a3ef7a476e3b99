//! Collectors: one file per source. Each reads /proc or /sys (roots injectable, so tests run on
//! fixture trees) and appends metrics to a [`Report`]. A failing collector is logged and skipped;
//! the others still report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use scs_protocol::{DeviceReport, Metric};

pub mod agent;
pub mod cpu;
pub mod devices;
pub mod disk;
pub mod load;
pub mod memory;
pub mod network;
pub mod thermal;
pub mod uptime;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {what}")]
    Parse { path: PathBuf, what: &'static str },
}

/// Roots of procfs and sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
}

impl Roots {
    pub fn proc_file(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }
}

/// One interval's samples: the gateway's own metrics and one report per child device.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub gateway: Vec<Metric>,
    pub children: Vec<DeviceReport>,
    /// Device events detected since the last interval (`devices` collector).
    pub events: Vec<scs_protocol::DeviceEvent>,
}

pub trait Collector: Send {
    fn name(&self) -> &'static str;
    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError>;
}

pub(crate) fn read(path: &Path) -> Result<String, CollectError> {
    std::fs::read_to_string(path).map_err(|source| CollectError::Read { path: path.to_owned(), source })
}

pub(crate) fn parse_err(path: &Path, what: &'static str) -> CollectError {
    CollectError::Parse { path: path.to_owned(), what }
}

/// Rounds to one decimal: percentages and temperatures need no more, and short floats encode as f32.
pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs every collector each interval. A collector's error is logged once per distinct message, so
/// a permanently missing source (no thermal zones in a VM) does not flood the log.
pub struct Collectors {
    list: Vec<Box<dyn Collector>>,
    reported: HashSet<String>,
}

impl Collectors {
    pub fn new(list: Vec<Box<dyn Collector>>) -> Collectors {
        Collectors { list, reported: HashSet::new() }
    }

    /// Swaps in a collector for the one with the same name (the device list changed at run time).
    pub fn replace(&mut self, c: Box<dyn Collector>) {
        match self.list.iter_mut().find(|x| x.name() == c.name()) {
            Some(slot) => *slot = c,
            None => self.list.push(c),
        }
    }

    pub fn collect_all(&mut self) -> Report {
        let mut out = Report::default();
        for c in &mut self.list {
            if let Err(e) = c.collect(&mut out) {
                let msg = format!("collector {}: {e}", c.name());
                if self.reported.len() < 256 && self.reported.insert(msg.clone()) {
                    log::warn!("{msg}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use std::path::PathBuf;

    /// A throwaway directory tree standing in for /proc and /sys.
    pub struct Tree(pub PathBuf);

    impl Tree {
        pub fn new(tag: &str) -> Tree {
            let p = std::env::temp_dir().join(format!("scs-fix-{tag}-{}-{}", std::process::id(), crate::clock::random_u64()));
            std::fs::create_dir_all(&p).unwrap();
            Tree(p)
        }
        pub fn write(&self, rel: &str, text: &str) -> &Self {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            self
        }
        pub fn roots(&self) -> super::Roots {
            super::Roots { proc: self.0.join("proc"), sys: self.0.join("sys") }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Value of the first metric with this name (and label, if given).
    pub fn value(ms: &[scs_protocol::Metric], name: &str, label: Option<&str>) -> Option<f64> {
        ms.iter().find(|m| m.key.name() == name && m.label.as_deref() == label).map(|m| m.value.as_f64())
    }
}

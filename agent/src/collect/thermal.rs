//! Temperatures of the kernel's thermal zones (/sys/class/thermal/thermal_zone*/{type,temp}).

use std::collections::HashMap;
use std::path::PathBuf;

use scs_protocol::Metric;

use super::{round1, CollectError, Collector, Report, Roots};

pub struct Thermal {
    dir: PathBuf,
}

impl Thermal {
    pub fn new(roots: &Roots) -> Thermal {
        Thermal { dir: roots.sys.join("class/thermal") }
    }
}

impl Collector for Thermal {
    fn name(&self) -> &'static str {
        "thermal"
    }

    fn collect(&mut self, out: &mut Report) -> Result<(), CollectError> {
        // No thermal class at all (VMs, some boards) is normal: nothing to report, not an error.
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(()) };
        let mut zones: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("thermal_zone")?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        zones.sort();
        let mut used: HashMap<String, u32> = HashMap::new();
        for (n, zone) in zones {
            // A disabled zone answers EINVAL/ENODATA on temp: skip it, report the others.
            let Some(milli) = std::fs::read_to_string(zone.join("temp")).ok().and_then(|t| t.trim().parse::<i64>().ok()) else {
                continue;
            };
            let ty = std::fs::read_to_string(zone.join("type")).map(|t| t.trim().to_owned()).unwrap_or_default();
            let base = if ty.is_empty() { format!("zone{n}") } else { ty };
            // Two zones of the same type get distinct labels.
            let count = used.entry(base.clone()).or_insert(0);
            let label = if *count == 0 { base.clone() } else { format!("{base}.{count}") };
            *count += 1;
            out.gateway.push(Metric::labelled("thermal.temp_c", &label, round1(milli as f64 / 1000.0)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture::{value, Tree};

    #[test]
    fn reads_zones() {
        let t = Tree::new("thermal");
        t.write("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
            .write("sys/class/thermal/thermal_zone0/temp", "48312\n")
            .write("sys/class/thermal/thermal_zone1/type", "cpu-thermal\n")
            .write("sys/class/thermal/thermal_zone1/temp", "-5000\n")
            .write("sys/class/thermal/thermal_zone2/type", "gpu\n")
            .write("sys/class/thermal/thermal_zone2/temp", "")
            .write("sys/class/thermal/cooling_device0/type", "fan\n");
        let mut r = Report::default();
        Thermal::new(&t.roots()).collect(&mut r).unwrap();
        assert_eq!(r.gateway.len(), 2);
        assert_eq!(value(&r.gateway, "thermal.temp_c", Some("cpu-thermal")), Some(48.3));
        assert_eq!(value(&r.gateway, "thermal.temp_c", Some("cpu-thermal.1")), Some(-5.0));
    }

    #[test]
    fn no_thermal_class_is_fine() {
        let t = Tree::new("thermal-none");
        let mut r = Report::default();
        Thermal::new(&t.roots()).collect(&mut r).unwrap();
        assert!(r.gateway.is_empty());
    }
}

//! `device.info` (/3/0, read): what an operator needs to identify the gateway — model, serial,
//! firmware (the OS release), kernel, agent version, uptime — from the devicetree (ARM boards) or
//! DMI (x86), `/etc/os-release` and /proc.

use std::path::Path;

use scs_protocol::Value;

use super::{CommandError, Job, Output};

pub const TYPE: &str = "device.info";

fn read_trimmed(path: &Path) -> Option<String> {
    let raw = std::fs::read(path).ok()?;
    // Devicetree strings end in NUL.
    let s = String::from_utf8_lossy(&raw).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned();
    (!s.is_empty()).then_some(s)
}

/// `KEY=value` from an os-release file, quotes removed.
fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// `Serial : 0000...` as on Raspberry Pi kernels.
fn cpuinfo_serial(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        (k.trim() == "Serial" && !v.is_empty()).then(|| v.to_owned())
    })
}

fn opt(v: Option<String>) -> Value {
    v.map(Value::Text).unwrap_or(Value::Null)
}

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let cfg = &job.ctx.config.collect;
    let (proc_root, sys_root) = (cfg.proc_root.as_path(), cfg.sys_root.as_path());
    let dt = sys_root.join("firmware/devicetree/base");
    let dmi = sys_root.join("class/dmi/id");

    let model = read_trimmed(&dt.join("model")).or_else(|| {
        let product = read_trimmed(&dmi.join("product_name"))?;
        Some(match read_trimmed(&dmi.join("sys_vendor")) {
            Some(vendor) if !product.starts_with(&vendor) => format!("{vendor} {product}"),
            _ => product,
        })
    });
    let manufacturer = read_trimmed(&dmi.join("sys_vendor"))
        .or_else(|| read_trimmed(&dt.join("compatible")).and_then(|c| c.split(',').next().map(str::to_owned)));
    let serial = read_trimmed(&dt.join("serial-number"))
        .or_else(|| read_trimmed(&dmi.join("product_serial")))
        .or_else(|| std::fs::read_to_string(proc_root.join("cpuinfo")).ok().as_deref().and_then(cpuinfo_serial));
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let firmware = os_release_field(&os_release, "PRETTY_NAME").or_else(|| os_release_field(&os_release, "NAME"));
    let uptime_secs = std::fs::read_to_string(proc_root.join("uptime"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse::<f64>().ok()))
        .map(|f| Value::Int(f as i64))
        .unwrap_or(Value::Null);

    Ok(Output::value(Value::map([
        ("gatewayId", Value::from(job.ctx.gateway_id.as_str())),
        ("manufacturer", opt(manufacturer)),
        ("model", opt(model)),
        ("serial", opt(serial)),
        ("firmwareVersion", opt(firmware)),
        ("osVersionId", opt(os_release_field(&os_release, "VERSION_ID"))),
        ("kernel", opt(read_trimmed(&proc_root.join("sys/kernel/osrelease")))),
        ("hostname", opt(read_trimmed(&proc_root.join("sys/kernel/hostname")))),
        ("arch", Value::from(std::env::consts::ARCH)),
        ("agentVersion", Value::from(env!("CARGO_PKG_VERSION"))),
        ("agentUptimeSecs", Value::from(job.ctx.started.elapsed().as_secs())),
        ("boot", Value::from(job.ctx.boot)),
        ("uptimeSecs", uptime_secs),
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\n";
        assert_eq!(os_release_field(os, "PRETTY_NAME").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os_release_field(os, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release_field(os, "MISSING"), None);
        let cpu = "processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 00000000abcdef01\n";
        assert_eq!(cpuinfo_serial(cpu).as_deref(), Some("00000000abcdef01"));
    }
}

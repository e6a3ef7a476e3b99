//! `fake-site`: a simulated site of cameras and NVRs on 127.0.0.1 (see `scs_testkit::fakes::site`),
//! in the foreground until SIGINT/SIGTERM. Writes `devices.toml` (the agent's `[[devices]]` entries)
//! and `site.json` (a manifest) into `--out`, then prints `READY`.
//!
//! ```text
//! fake-site [--cameras N] [--nvrs M] [--out DIR] [--id-prefix P] [--rtsp auto|gst|fake]
//!           [--quirk wrong-password|no-frames|hdd-failed|clock-off]... [--all-quirks]
//!           [--camera-password PW] [--nvr-password PW]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scs_testkit::fakes::site::{Quirk, RtspChoice, Site, SiteOpts};

const USAGE: &str = "usage: fake-site [--cameras N] [--nvrs M] [--out DIR] [--id-prefix P] [--rtsp auto|gst|fake] \
                     [--quirk wrong-password|no-frames|hdd-failed|clock-off]... [--all-quirks] \
                     [--camera-password PW] [--nvr-password PW]";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn parse(args: &[String]) -> Result<(SiteOpts, PathBuf), String> {
    let mut o = SiteOpts::default();
    let mut out = PathBuf::from("fake-site");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (a.as_str(), None),
        };
        if key == "--all-quirks" {
            o.quirks = Quirk::ALL.to_vec();
            continue;
        }
        if key == "-h" || key == "--help" {
            return Err(String::new());
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("{key} needs a value"))?,
        };
        let num = |v: &str| v.parse::<usize>().map_err(|_| format!("{key} takes a number, not {v:?}"));
        match key {
            "--cameras" => o.cameras = num(&value)?,
            "--nvrs" => o.nvrs = num(&value)?,
            "--out" => out = PathBuf::from(value),
            "--id-prefix" => o.id_prefix = value,
            "--camera-password" => o.camera_pass = value,
            "--nvr-password" => o.nvr_pass = value,
            "--rtsp" => {
                o.rtsp = match value.as_str() {
                    "auto" => RtspChoice::Auto,
                    "gst" => RtspChoice::Gst,
                    "fake" => RtspChoice::Fake,
                    v => return Err(format!("--rtsp takes auto, gst or fake, not {v:?}")),
                }
            }
            "--quirk" => {
                for q in value.split(',').filter(|q| !q.is_empty()) {
                    o.quirks.push(Quirk::parse(q).ok_or_else(|| format!("unknown quirk {q:?}"))?);
                }
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if o.cameras > 512 || o.nvrs > 64 {
        return Err("at most 512 cameras and 64 NVRs".into());
    }
    Ok((o, out))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, out) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fake-site: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let site = match Site::start(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-site: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_outputs(&site, &out) {
        eprintln!("fake-site: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("fake-site: RTSP streams from {} at {}", site.rtsp_kind, site.rtsp_base);
    if let Some(n) = &site.rtsp_note {
        println!("fake-site: GStreamer not used: {n}");
    }
    for d in &site.devices {
        let quirk = d.quirk.map(|q| format!("  [quirk: {}]", q.name())).unwrap_or_default();
        println!("  {:<6} {:<18} {:<22} driver={:<9} {}{quirk}", d.device_type, d.id, d.address, d.driver, d.name);
    }
    println!("fake-site: agent config snippet {}", out.join("devices.toml").display());
    println!("fake-site: manifest {}", out.join("site.json").display());
    println!("READY");
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("fake-site: stopping");
    drop(site);
    ExitCode::SUCCESS
}

fn write_outputs(site: &Site, out: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    // Written under a temporary name and renamed, so a script polling for the file never reads half.
    let put = |name: &str, text: String| -> std::io::Result<()> {
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, out.join(name))
    };
    put("devices.toml", format!("# Written by scripts/fake-site: the simulated site's devices.\n\n{}", site.config_toml()))?;
    let manifest = serde_json::to_string_pretty(&site.manifest()).map_err(std::io::Error::other)?;
    put("site.json", manifest + "\n")
}

//! `scs-agent upload-file`: spool a file and upload it with a grant, printing one JSON line of figures.
//! For field diagnostics, the end-to-end tests (interrupted and restarted uploads) and the benchmark
//! (throughput next to curl, peak RSS). Running it again with the same `--artifact` and `--data-dir`
//! after a crash resumes from the server's committed offset without spooling the file again.
//!
//! ```text
//! scs-agent upload-file --data-dir DIR --url URL --token TOKEN --artifact ID --file PATH
//!     [--command ID] [--expires MS] [--max-bytes N] [--name NAME] [--content-type TYPE]
//!     [--ca-file PEM] [--chunk-bytes N] [--spool-max-bytes N]
//! ```

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use scs_protocol::UploadGrant;

use super::{Artifact, UploadConfig, UploadError, Uploader};
use crate::spool::{spool_error, SpoolError, SpooledFile};

pub const USAGE: &str = "usage: scs-agent upload-file --data-dir DIR --url URL --token TOKEN --artifact ID --file PATH \
[--command ID] [--expires MS] [--max-bytes N] [--name NAME] [--content-type TYPE] [--ca-file PEM] [--chunk-bytes N] \
[--spool-max-bytes N]";

struct Args {
    data_dir: PathBuf,
    file: PathBuf,
    command: String,
    grant: UploadGrant,
    name: Option<String>,
    content_type: String,
    cfg: UploadConfig,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let mut get = std::collections::HashMap::new();
    while let Some(flag) = it.next() {
        let Some(key) = flag.strip_prefix("--") else { return Err(format!("unexpected argument {flag:?}")) };
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        get.insert(key.to_string(), value.clone());
    }
    let need = |k: &str| get.get(k).cloned().ok_or_else(|| format!("--{k} is required"));
    let num = |k: &str, default: u64| -> Result<u64, String> {
        get.get(k).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{k}: not a number: {v:?}")))
    };
    let mut cfg = UploadConfig::default();
    cfg.chunk_bytes = num("chunk-bytes", cfg.chunk_bytes)?;
    cfg.spool_max_bytes = num("spool-max-bytes", cfg.spool_max_bytes)?;
    cfg.ca_file = get.get("ca-file").map(PathBuf::from);
    let known = [
        "data-dir",
        "url",
        "token",
        "artifact",
        "file",
        "command",
        "expires",
        "max-bytes",
        "name",
        "content-type",
        "ca-file",
        "chunk-bytes",
        "spool-max-bytes",
    ];
    if let Some(k) = get.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown flag --{k}"));
    }
    Ok(Args {
        data_dir: PathBuf::from(need("data-dir")?),
        file: PathBuf::from(need("file")?),
        command: get.get("command").cloned().unwrap_or_else(|| "cli".into()),
        grant: UploadGrant {
            url: need("url")?,
            token: need("token")?,
            artifact: need("artifact")?,
            expires: num("expires", u64::MAX)?,
            max_bytes: num("max-bytes", u64::MAX)?,
        },
        name: get.get("name").cloned(),
        content_type: get.get("content-type").cloned().unwrap_or_else(|| "application/octet-stream".into()),
        cfg,
    })
}

/// Runs the subcommand; returns the process exit code (0 ok, 1 upload failed, 2 usage).
pub fn main(args: &[String]) -> i32 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scs-agent upload-file: {e}\n{USAGE}");
            return 2;
        }
    };
    match run(&a) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("scs-agent upload-file: {e}");
            1
        }
    }
}

fn run(a: &Args) -> Result<String, UploadError> {
    let uploader = Uploader::new(&a.data_dir, &a.cfg)?;
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| a.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "artifact".into()));
    let spool_started = Instant::now();
    // A restarted upload reuses its spool file: nothing is copied or hashed twice.
    let reuse = uploader.progress(&a.grant.artifact)?.and_then(|p| {
        let ok = std::fs::metadata(&p.path).map(|m| m.len() == p.size).unwrap_or(false);
        ok.then_some(SpooledFile { path: p.path, size: p.size, sha256: p.sha256 })
    });
    let file = match reuse {
        Some(f) => f,
        None => spool_copy(&uploader, &a.file, &name)?,
    };
    let spool_ms = spool_started.elapsed().as_millis();
    let started = Instant::now();
    let art = Artifact { command_id: &a.command, grant: &a.grant, file: &file, name: &name, content_type: &a.content_type };
    let report = uploader.upload(&art, &AtomicBool::new(false), None)?;
    let upload_ms = started.elapsed().as_millis().max(1);
    Ok(format!(
        "{{\"artifact\":\"{}\",\"size\":{},\"sha256\":\"{}\",\"resumedFrom\":{},\"bytesSent\":{},\"resent\":{},\"retries\":{},\
\"spoolMs\":{spool_ms},\"uploadMs\":{upload_ms},\"mbPerSec\":{:.1},\"peakRssKb\":{}}}",
        report.meta.id,
        report.meta.size,
        report.meta.sha256,
        report.resumed_from,
        report.bytes_sent,
        report.resent(),
        report.retries,
        report.bytes_sent as f64 / 1e6 / (upload_ms as f64 / 1000.0),
        peak_rss_kb().unwrap_or(0)
    ))
}

fn spool_copy(uploader: &Uploader, src: &std::path::Path, name: &str) -> Result<SpooledFile, UploadError> {
    let file_err = |source: std::io::Error| UploadError::File { artifact: name.to_string(), path: src.to_path_buf(), source };
    let mut input = std::fs::File::open(src).map_err(file_err)?;
    let mut w = uploader.spool().writer(name)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf).map_err(file_err)?;
        if n == 0 {
            break;
        }
        if let Err(e) = w.write_all(buf.get(..n).unwrap_or_default()) {
            return Err(match spool_error(&e) {
                Some(SpoolError::Full { name, used, cap, wanted }) => {
                    UploadError::Spool(SpoolError::Full { name: name.clone(), used: *used, cap: *cap, wanted: *wanted })
                }
                Some(SpoolError::DiskLow { name, available, reserve }) => {
                    UploadError::Spool(SpoolError::DiskLow { name: name.clone(), available: *available, reserve: *reserve })
                }
                _ => file_err(e),
            });
        }
    }
    Ok(w.finish()?)
}

/// VmHWM of this process, in KiB.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

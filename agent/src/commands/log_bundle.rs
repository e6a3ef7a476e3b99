//! `diag.log_bundle` (/32771/0/1, execute, artifact): a `.tar.gz` of the agent's logs, its effective
//! config (secrets redacted), queue statistics and system information, written straight into the spool
//! (never fully in memory), then uploaded with the command's grant. The result carries the artifact's
//! metadata; the bytes go to the cloud's object store.
//!
//! Parameters: `sinceSecs` (log files last written within the window; rotation is by size, so this is
//! per file, not per line), `maxBytes` (bound on the bundle: logs are cut to their newest bytes to fit),
//! `include` (any of logs, config, queue, system; all by default).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;
use scs_protocol::Value;

use super::{CommandError, Job, Output};
use crate::queue::QueueStats;
use crate::spool::{spool_error, Spool, SpooledFile};
use crate::upload::{Artifact, Uploader};

pub const TYPE: &str = "diag.log_bundle";
pub const CONTENT_TYPE: &str = "application/gzip";
const DEFAULT_SINCE_SECS: u64 = 86_400;
const DEFAULT_MAX_BYTES: u64 = 16 << 20;
/// Room kept for everything that is not a log (config, system files, tar headers).
const NON_LOG_ALLOWANCE: u64 = 96 * 1024;
/// Largest slice of one /proc or /etc file taken into the bundle.
const MAX_SYSTEM_FILE: u64 = 256 * 1024;
const PARTS: [&str; 4] = ["logs", "config", "queue", "system"];

/// Everything the bundle is made of, gathered from the agent context (separate so tests can fake it).
pub struct Sources {
    pub gateway_id: String,
    pub log_dir: PathBuf,
    pub config_toml: String,
    pub queue: QueueStats,
    /// Usually `/proc`; the collectors' `proc_root`.
    pub proc_root: PathBuf,
    /// Usually `/etc`.
    pub etc_root: PathBuf,
    /// Values that must never leave the gateway (MQTT password, signing key, TLS key lines): masked with
    /// `*` wherever they occur in an included file. `identity.toml` itself is never read into a bundle.
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BundleSummary {
    pub files: Vec<String>,
    /// Log files cut to fit `maxBytes` or skipped as older than `sinceSecs`.
    pub truncated: Vec<String>,
    pub skipped: Vec<String>,
}

pub fn run(job: &Job) -> Result<Output, CommandError> {
    let grant = job.upload.as_ref().ok_or_else(|| CommandError::Failed("no upload grant came with the command".into()))?;
    let since = job.int("sinceSecs").map_or(DEFAULT_SINCE_SECS, |v| v.max(0) as u64);
    let max_bytes = job.int("maxBytes").map_or(DEFAULT_MAX_BYTES, |v| v.max(4096) as u64).min(grant.max_bytes);
    let include: Vec<String> = match job.params.get("include").and_then(Value::as_array) {
        Some(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        None => PARTS.iter().map(|s| s.to_string()).collect(),
    };
    let ctx = &job.ctx;
    let sources = Sources {
        gateway_id: ctx.gateway_id.clone(),
        log_dir: ctx.log_dir(),
        config_toml: crate::config::redacted_toml(&ctx.config),
        queue: ctx.queue.stats(),
        proc_root: ctx.config.collect.proc_root.clone(),
        etc_root: PathBuf::from("/etc"),
        secrets: identity_secrets(&ctx.data_dir),
    };
    let uploader = Uploader::new(&ctx.data_dir, &ctx.config.upload)?;
    let name = format!("log-bundle-{}-{}.tar.gz", ctx.gateway_id, now_secs());
    let (file, summary) = build(uploader.spool(), &sources, since, max_bytes, &include, &|| job.should_stop())?;
    let art = Artifact { command_id: &job.id, grant, file: &file, name: &name, content_type: CONTENT_TYPE };
    let report = match uploader.upload(&art, &job.cancel, Some(job.deadline)) {
        Ok(r) => r,
        Err(_) if job.should_stop() => return Err(CommandError::Stopped),
        Err(e) => return Err(e.into()),
    };
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::Text).collect());
    let mut result = std::collections::BTreeMap::new();
    result.insert("artifact".to_string(), Value::Text(report.meta.id.clone()));
    result.insert("name".to_string(), Value::Text(report.meta.name.clone()));
    result.insert("size".to_string(), Value::Int(report.meta.size as i64));
    result.insert("sha256".to_string(), Value::Text(report.meta.sha256.clone()));
    result.insert("files".to_string(), strings(&summary.files));
    result.insert("truncated".to_string(), strings(&summary.truncated));
    result.insert("resumedFrom".to_string(), Value::Int(report.resumed_from as i64));
    Ok(Output { result: Value::Map(result), artifacts: vec![report.meta] })
}

/// The identity's secret values, for masking; none without an (intact) identity.
fn identity_secrets(data_dir: &Path) -> Vec<String> {
    let Ok(Some(id)) = crate::identity::load(data_dir) else { return Vec::new() };
    let mut out = vec![id.mqtt_password.expose().to_owned()];
    if let Ok(text) = std::fs::read_to_string(crate::identity::path_in(data_dir)) {
        // The signing key and any PEM key body, line by line as they would appear if ever logged.
        if let Ok(t) = text.parse::<toml::Table>() {
            for field in ["signing_key", "client_key_pem"] {
                if let Some(v) = t.get(field).and_then(|v| v.as_str()) {
                    out.extend(v.lines().map(str::trim).filter(|l| !l.starts_with("-----")).map(str::to_owned));
                    out.push(v.trim().to_owned());
                }
            }
        }
    }
    out
}

/// Copies a reader, replacing every occurrence of a secret with `*` of the same length (so sizes
/// declared in tar headers stay right). Keeps the last `longest - 1` bytes back until more input
/// arrives, so a secret split across two reads is still caught.
struct Redact<R> {
    inner: R,
    secrets: Vec<Vec<u8>>,
    keep: usize,
    pending: Vec<u8>,
    ready: usize,
    eof: bool,
}

/// Shorter values are not masked: they would match ordinary text.
const MIN_SECRET_LEN: usize = 8;

impl<R: Read> Redact<R> {
    fn new(inner: R, secrets: &[String]) -> Redact<R> {
        let secrets: Vec<Vec<u8>> = secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN).map(|s| s.as_bytes().to_vec()).collect();
        let keep = secrets.iter().map(Vec::len).max().unwrap_or(1).saturating_sub(1);
        Redact { inner, secrets, keep, pending: Vec::new(), ready: 0, eof: false }
    }

    fn mask(&mut self) {
        for s in &self.secrets {
            let mut from = 0;
            while let Some(i) = self.pending.get(from..).and_then(|rest| rest.windows(s.len()).position(|w| w == s.as_slice())) {
                let start = from + i;
                if let Some(hit) = self.pending.get_mut(start..start + s.len()) {
                    hit.fill(b'*');
                }
                from = start + s.len();
            }
        }
    }
}

impl<R: Read> Read for Redact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.ready == 0 {
            if self.eof {
                return Ok(0);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                self.eof = true;
            }
            self.pending.extend_from_slice(chunk.get(..n).unwrap_or_default());
            self.mask();
            self.ready = if self.eof { self.pending.len() } else { self.pending.len().saturating_sub(self.keep) };
        }
        let n = self.ready.min(buf.len());
        for (dst, src) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *dst = src;
        }
        self.ready -= n;
        Ok(n)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// An I/O error while writing into the spool: a full spool is reported as such, not as an I/O fault.
pub(crate) fn failed_io(what: &str, e: io::Error) -> CommandError {
    match spool_error(&e) {
        Some(s) => CommandError::Failed(s.to_string()),
        None => CommandError::io(what.to_string(), e),
    }
}

/// Writes the bundle into the spool and returns the finished file (size and SHA-256 known).
pub fn build(
    spool: &Spool,
    src: &Sources,
    since_secs: u64,
    max_bytes: u64,
    include: &[String],
    stop: &dyn Fn() -> bool,
) -> Result<(SpooledFile, BundleSummary), CommandError> {
    let wants = |p: &str| include.iter().any(|i| i == p);
    let writer = spool.writer("log bundle")?;
    let mut tar = Tar { out: GzEncoder::new(writer, Compression::default()), mtime: now_secs() };
    let mut summary = BundleSummary::default();
    let prefix = format!("log-bundle-{}", src.gateway_id);
    let add = |tar: &mut Tar<_>, name: &str, data: &[u8], summary: &mut BundleSummary| -> Result<(), CommandError> {
        let full = format!("{prefix}/{name}");
        tar.add_bytes(&full, data).map_err(|e| failed_io("writing the bundle", e))?;
        summary.files.push(name.to_string());
        Ok(())
    };

    let mut manifest = format!(
        "gateway: {}\ngenerated_unix: {}\nagent_version: {}\nsince_secs: {since_secs}\nmax_bytes: {max_bytes}\nparts: {}\n",
        src.gateway_id,
        now_secs(),
        env!("CARGO_PKG_VERSION"),
        include.join(",")
    );
    if wants("config") {
        let mut text = Vec::new();
        Redact::new(src.config_toml.as_bytes(), &src.secrets)
            .read_to_end(&mut text)
            .map_err(|e| failed_io("redacting the config", e))?;
        add(&mut tar, "config.toml", &text, &mut summary)?;
    }
    if wants("queue") {
        let q = &src.queue;
        let text = format!(
            "depth: {}\nbytes: {}\nnext_seq: {}\ndropped_total: {}\nrejected_total: {}\nspool_used_bytes: {}\nspool_cap_bytes: {}\n",
            q.depth,
            q.bytes,
            q.next_seq,
            q.dropped_total,
            q.rejected_total,
            spool.used(),
            spool.cap()
        );
        add(&mut tar, "queue.txt", text.as_bytes(), &mut summary)?;
    }
    if wants("system") {
        for (name, path) in [
            ("system/version", src.proc_root.join("version")),
            ("system/uptime", src.proc_root.join("uptime")),
            ("system/loadavg", src.proc_root.join("loadavg")),
            ("system/meminfo", src.proc_root.join("meminfo")),
            ("system/mounts", src.proc_root.join("mounts")),
            ("system/os-release", src.etc_root.join("os-release")),
        ] {
            if stop() {
                return Err(CommandError::Stopped);
            }
            match read_capped(&path, MAX_SYSTEM_FILE) {
                Ok(data) => add(&mut tar, name, &data, &mut summary)?,
                Err(e) => manifest.push_str(&format!("missing: {name} ({e})\n")),
            }
        }
        let df = disk_usage(&src.proc_root.join("mounts"));
        add(&mut tar, "system/df", df.as_bytes(), &mut summary)?;
    }
    if wants("logs") {
        let budget = (max_bytes / 100 * 99).saturating_sub(NON_LOG_ALLOWANCE);
        let cutoff = SystemTime::now().checked_sub(Duration::from_secs(since_secs));
        // Newest first, so the budget goes to the most recent lines.
        let mut left = budget;
        for file in [crate::logging::LOG_FILE, crate::logging::LOG_FILE_OLD] {
            if stop() {
                return Err(CommandError::Stopped);
            }
            let path = src.log_dir.join(file);
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let recent = match (meta.modified(), cutoff) {
                (Ok(m), Some(c)) => m >= c,
                _ => true,
            };
            if !recent {
                summary.skipped.push(format!("logs/{file}"));
                continue;
            }
            let take = meta.len().min(left);
            if take < meta.len() {
                summary.truncated.push(format!("logs/{file}"));
            }
            if take == 0 {
                continue;
            }
            let mut f = File::open(&path).map_err(|e| CommandError::io(format!("opening {}", path.display()), e))?;
            // Keep the newest bytes: the tail of the file.
            f.seek(SeekFrom::Start(meta.len() - take)).map_err(|e| CommandError::io("seeking the log", e))?;
            let f = Redact::new(f, &src.secrets);
            tar.add_reader(&format!("{prefix}/logs/{file}"), take, f).map_err(|e| failed_io("writing the bundle", e))?;
            summary.files.push(format!("logs/{file}"));
            left -= take;
        }
    }
    for t in &summary.truncated {
        manifest.push_str(&format!("truncated: {t}\n"));
    }
    for s in &summary.skipped {
        manifest.push_str(&format!("older_than_window: {s}\n"));
    }
    add(&mut tar, "manifest.txt", manifest.as_bytes(), &mut summary)?;
    let gz = tar.finish().map_err(|e| failed_io("finishing the bundle", e))?;
    let writer = gz.finish().map_err(|e| failed_io("compressing the bundle", e))?;
    let file = writer.finish()?;
    if file.size > max_bytes {
        spool.remove(&file);
        return Err(CommandError::Failed(format!("bundle of {} bytes exceeds maxBytes {max_bytes}", file.size)));
    }
    Ok((file, summary))
}

fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    File::open(path)?.take(cap).read_to_end(&mut data)?;
    Ok(data)
}

/// `df`-style lines for the real filesystems in `mounts` (statvfs; pseudo filesystems skipped).
fn disk_usage(mounts: &Path) -> String {
    const PSEUDO: &[&str] = &[
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "securityfs",
        "pstore",
        "debugfs",
        "tracefs",
        "mqueue",
        "bpf",
        "configfs",
        "fusectl",
        "hugetlbfs",
        "autofs",
        "binfmt_misc",
        "nsfs",
        "rpc_pipefs",
        "efivarfs",
    ];
    let mut out = String::from("mount fstype size_bytes used_bytes avail_bytes\n");
    let Ok(text) = std::fs::read_to_string(mounts) else { return out };
    for line in text.lines().take(256) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(mnt), Some(fstype)) = (f.get(1), f.get(2)) else { continue };
        if PSEUDO.contains(fstype) {
            continue;
        }
        if let Some((size, avail, free)) = statvfs(mnt) {
            out.push_str(&format!("{mnt} {fstype} {size} {} {avail}\n", size.saturating_sub(free)));
        }
    }
    out
}

fn statvfs(mount: &str) -> Option<(u64, u64, u64)> {
    // /proc/mounts escapes spaces as \040; such mounts are rare on gateways and simply skipped.
    let c = std::ffi::CString::new(mount).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let fr = st.f_frsize as u64;
    Some((st.f_blocks as u64 * fr, st.f_bavail as u64 * fr, st.f_bfree as u64 * fr))
}

/// A minimal ustar writer: regular files only, names up to 100 bytes (ours are short and fixed).
struct Tar<W: Write> {
    out: W,
    mtime: u64,
}

impl<W: Write> Tar<W> {
    fn header(&mut self, name: &str, size: u64) -> io::Result<()> {
        let mut h = [0u8; 512];
        let name = name.as_bytes();
        if name.len() > 100 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "tar entry name longer than 100 bytes"));
        }
        for (d, s) in h.iter_mut().zip(name) {
            *d = *s;
        }
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], self.mtime);
        h[148..156].fill(b' ');
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..268].copy_from_slice(b"scs");
        h[297..300].copy_from_slice(b"scs");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let field = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(field.as_bytes());
        self.out.write_all(&h)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = size % 512;
        if rem != 0 {
            io::copy(&mut io::repeat(0).take(512 - rem), &mut self.out)?;
        }
        Ok(())
    }

    fn add_bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.header(name, data.len() as u64)?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// Copies exactly `size` bytes from `r`, zero-filling if the source turns out shorter (a log file
    /// truncated while we read it) so the archive stays well-formed.
    fn add_reader(&mut self, name: &str, size: u64, r: impl Read) -> io::Result<()> {
        self.header(name, size)?;
        let copied = io::copy(&mut r.take(size), &mut self.out)?;
        io::copy(&mut io::repeat(0).take(size - copied), &mut self.out)?;
        self.pad(size)
    }

    fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        Ok(self.out)
    }
}

/// Zero-padded octal with a trailing NUL, filling the field.
fn octal(field: &mut [u8], v: u64) {
    let Some((nul, digits)) = field.split_last_mut() else { return };
    *nul = 0;
    let s = format!("{v:0width$o}", width = digits.len());
    // Right-aligned: a value too large for the field keeps its lowest digits.
    for (d, c) in digits.iter_mut().rev().zip(s.bytes().rev()) {
        *d = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scs-bundle-{tag}-{}-{}", std::process::id(), now_secs()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    /// Parses our ustar output back: (name, contents) per entry.
    fn untar(data: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 512 <= data.len() && data[pos] != 0 {
            let h = &data[pos..pos + 512];
            let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
            let size = u64::from_str_radix(std::str::from_utf8(&h[124..135]).expect("size"), 8).expect("octal") as usize;
            let stored: u32 = u32::from_str_radix(std::str::from_utf8(&h[148..154]).expect("sum"), 8).expect("octal");
            let mut copy = h.to_vec();
            copy[148..156].fill(b' ');
            assert_eq!(stored, copy.iter().map(|&b| b as u32).sum::<u32>(), "checksum of {name}");
            pos += 512;
            out.push((name, data[pos..pos + size].to_vec()));
            pos += size.div_ceil(512) * 512;
        }
        out
    }

    #[test]
    fn bundle_has_every_part_and_respects_max_bytes() {
        let dir = temp("parts");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("logs");
        let line = "2026-01-01T00:00:00Z INFO scs_agent: hello world\n";
        std::fs::write(logs.join("agent.log"), line.repeat(2000)).expect("log");
        std::fs::write(logs.join("agent.log.1"), line.repeat(10)).expect("old log");
        let spool = Spool::open(&dir, 64 << 20).expect("spool");
        let src = Sources {
            gateway_id: "gw-1".into(),
            log_dir: logs.clone(),
            config_toml: "password = \"<redacted>\"\n".into(),
            queue: QueueStats { depth: 3, ..Default::default() },
            proc_root: PathBuf::from("/proc"),
            etc_root: PathBuf::from("/etc"),
            secrets: Vec::new(),
        };
        let all: Vec<String> = PARTS.iter().map(|s| s.to_string()).collect();
        let (file, summary) = build(&spool, &src, 3600, 1 << 20, &all, &|| false).expect("bundle");
        let mut raw = Vec::new();
        GzDecoder::new(File::open(&file.path).expect("open")).read_to_end(&mut raw).expect("gunzip");
        let entries = untar(&raw);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        for want in
            ["config.toml", "queue.txt", "system/version", "system/df", "logs/agent.log", "logs/agent.log.1", "manifest.txt"]
        {
            assert!(names.contains(&format!("log-bundle-gw-1/{want}").as_str()), "{want} missing from {names:?}");
        }
        let log = &entries.iter().find(|(n, _)| n.ends_with("logs/agent.log")).expect("log").1;
        assert_eq!(log.len(), line.len() * 2000);
        assert!(summary.truncated.is_empty());
        spool.remove(&file);

        // A small maxBytes keeps the newest part of the log and says so.
        let (file, summary) = build(&spool, &src, 3600, 100 * 1024, &["logs".to_string()], &|| false).expect("small bundle");
        assert!(file.size <= 100 * 1024);
        assert!(
            summary.truncated.iter().any(|t| t == "logs/agent.log.1") || summary.truncated.iter().any(|t| t == "logs/agent.log")
        );
        spool.remove(&file);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn redact_masks_secrets_across_read_boundaries_and_keeps_the_length() {
        let secret = "S3cr3t-Passw0rd-value";
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!("line {i} "));
            if i % 777 == 0 {
                text.push_str(secret);
            }
        }
        // Tiny reads through a 1-byte-at-a-time reader exercise every split position.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else { return Ok(0) };
                buf[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        for reader in [Box::new(text.as_bytes()) as Box<dyn Read>, Box::new(OneByte(text.as_bytes()))] {
            let mut out = Vec::new();
            Redact::new(reader, &[secret.to_string(), String::new(), "short".into()]).read_to_end(&mut out).unwrap();
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out.len(), text.len());
            assert!(!out.contains(secret));
            assert_eq!(out.matches(&"*".repeat(secret.len())).count(), 7);
            assert!(out.contains("short") || !text.contains("short"));
        }
    }

    #[test]
    fn bundle_never_carries_the_identity() {
        let dir = temp("identity");
        let k = crate::identity::tests::keys();
        let bundle_path = dir.join("b.toml");
        std::fs::write(&bundle_path, crate::identity::tests::bundle_text("gw-1", &k)).unwrap();
        let data = dir.join("data");
        crate::identity::provision(&bundle_path, &data).unwrap();
        let logs = data.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        // Even a log line that somehow quoted the password or key is masked in the bundle.
        use base64::Engine;
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(&k.gateway_pkcs8);
        std::fs::write(logs.join("agent.log"), format!("INFO x\nWARN pw={} key={key_b64}\n", k.password)).unwrap();
        let spool = Spool::open(&data, 64 << 20).unwrap();
        let src = Sources {
            gateway_id: "gw-1".into(),
            log_dir: logs,
            config_toml: format!("[mqtt]\npassword = \"<redacted>\"\nleak = \"{}\"\n", k.password),
            queue: QueueStats::default(),
            proc_root: PathBuf::from("/proc"),
            etc_root: PathBuf::from("/etc"),
            secrets: identity_secrets(&data),
        };
        let all: Vec<String> = PARTS.iter().map(|s| s.to_string()).collect();
        let (file, _) = build(&spool, &src, 3600, 1 << 20, &all, &|| false).unwrap();
        let mut raw = Vec::new();
        GzDecoder::new(File::open(&file.path).unwrap()).read_to_end(&mut raw).unwrap();
        let entries = untar(&raw);
        assert!(!entries.iter().any(|(n, _)| n.contains("identity")), "{:?}", entries.iter().map(|e| &e.0).collect::<Vec<_>>());
        let everything = String::from_utf8_lossy(&raw);
        assert!(!everything.contains(&k.password), "password in the bundle");
        assert!(!everything.contains(&key_b64), "signing key in the bundle");
        assert!(everything.contains("WARN pw=*"));
        spool.remove(&file);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn full_spool_refuses_the_bundle_and_leaves_nothing() {
        let dir = temp("full");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("logs");
        // Incompressible content, so the gzip output really exceeds the cap.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..3u32 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(logs.join("agent.log"), &noise).expect("log");
        let spool = Spool::open(&dir, 1 << 20).expect("spool");
        let src = Sources {
            gateway_id: "gw-2".into(),
            log_dir: logs,
            config_toml: String::new(),
            queue: QueueStats::default(),
            proc_root: PathBuf::from("/proc"),
            etc_root: PathBuf::from("/etc"),
            secrets: Vec::new(),
        };
        let err = build(&spool, &src, 3600, 16 << 20, &["logs".to_string()], &|| false).expect_err("spool cap");
        assert!(err.to_string().contains("spool full"), "{err}");
        assert_eq!(spool.used(), 0);
        assert_eq!(std::fs::read_dir(spool.dir()).expect("dir").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

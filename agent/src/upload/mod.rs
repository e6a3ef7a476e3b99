//! Resumable artifact uploads to the cloud's tus-like endpoint (`POST/HEAD/PATCH /v1/uploads/{id}`,
//! `POST .../finalize`; see `docs/worker-api.openapi.yaml`).
//!
//! The file comes from the spool, where its SHA-256 was computed while it was written. It is sent in
//! chunks streamed from disk (memory stays flat whatever the size). After any error the uploader asks the
//! server for its committed offset (HEAD) and continues from there, never from zero; progress survives
//! agent restarts in the `uploads` table, so [`resume_pending`] finishes what a previous run started.
//! The server verifies size and SHA-256 at finalize.

pub mod cli;
pub mod http;
pub mod progress;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scs_protocol::{ArtifactMeta, UploadGrant};
use serde::{Deserialize, Serialize};

use crate::spool::{Spool, SpoolError, SpooledFile};
use http::{PatchError, ServerState, UploadTarget};
use progress::{Progress, ProgressDb};

/// `[upload]` section of the agent config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct UploadConfig {
    /// Cap on `{data_dir}/spool` in bytes; a new artifact that does not fit is refused.
    pub spool_max_bytes: u64,
    /// Bytes per PATCH request, unless the server announces its part size (`Upload-Part-Size`).
    pub chunk_bytes: u64,
    /// PEM CA bundle for HTTPS uploads; default: the system bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub connect_timeout_secs: u64,
    /// A read or write on the connection that makes no progress for this long fails the request.
    pub io_timeout_secs: u64,
    /// Longest pause between retries (backoff doubles from 0.5 s up to this).
    pub retry_max_secs: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            spool_max_bytes: 256 << 20,
            chunk_bytes: 4 << 20,
            ca_file: None,
            connect_timeout_secs: 15,
            io_timeout_secs: 60,
            retry_max_secs: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("upload TLS roots: {0}")]
    Ca(#[from] crate::tls::CaError),
    #[error("upload TLS set-up: {0}")]
    TlsSetup(#[source] rustls::Error),
    #[error("upload progress table: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("artifact {artifact}: reading spool file {path}: {source}")]
    File { artifact: String, path: PathBuf, source: std::io::Error },
    #[error("artifact {artifact}: the server refused the upload ({status}): {message}")]
    Refused { artifact: String, status: u16, message: String },
    #[error("artifact {artifact}: the server rejected the SHA-256 after upload: {message}")]
    ChecksumRejected { artifact: String, message: String },
    #[error("artifact {artifact}: {size} bytes exceed the grant's limit of {max} bytes")]
    TooLarge { artifact: String, size: u64, max: u64 },
    #[error("artifact {artifact}: TLS: {message}")]
    Tls { artifact: String, message: String },
    #[error("artifact {artifact}: upload grant expired")]
    Expired { artifact: String },
    #[error("artifact {artifact}: upload cancelled")]
    Cancelled { artifact: String },
    #[error("artifact {artifact}: deadline passed after {attempts} attempts; last error: {last}")]
    Deadline { artifact: String, attempts: u32, last: String },
    #[error("artifact {artifact}: the server holds another upload for this artifact ({message}); not retrying")]
    Conflict { artifact: String, message: String },
    #[error(transparent)]
    Identity(#[from] Box<crate::identity::IdentityError>),
}

/// Outcome of one upload, with the figures the tests and benchmarks print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    pub meta: ArtifactMeta,
    /// Committed offset the server reported when this run started (non-zero = resumed).
    pub resumed_from: u64,
    /// Body bytes this run handed to the socket.
    pub bytes_sent: u64,
    /// Requests that failed and were retried.
    pub retries: u32,
}

impl UploadReport {
    /// Bytes sent more than once: what this run sent beyond what was still missing when it started.
    pub fn resent(&self) -> u64 {
        self.bytes_sent.saturating_sub(self.meta.size.saturating_sub(self.resumed_from))
    }
}

/// An artifact to upload: spooled bytes plus the metadata declared to the server.
pub struct Artifact<'a> {
    pub command_id: &'a str,
    pub grant: &'a UploadGrant,
    pub file: &'a SpooledFile,
    pub name: &'a str,
    pub content_type: &'a str,
}

/// HTTP statuses the upload protocol gives meaning to.
mod status {
    pub const OK: u16 = 200;
    pub const CREATED: u16 = 201;
    pub const NO_CONTENT: u16 = 204;
    pub const NOT_FOUND: u16 = 404;
    pub const REQUEST_TIMEOUT: u16 = 408;
    pub const CONFLICT: u16 = 409;
    pub const UNPROCESSABLE: u16 = 422;
    pub const TOO_MANY_REQUESTS: u16 = 429;
}

/// Why one pass over the protocol stopped.
enum Stop {
    /// Worth another pass after a pause (network, 5xx, lost upload).
    Retry(String),
    Fatal(UploadError),
}

pub struct Uploader {
    agent: ureq::Agent,
    /// HTTP Basic value from the gateway's identity (`None`: no identity installed, development mode).
    basic: Option<String>,
    cfg: UploadConfig,
    db: ProgressDb,
    spool: Spool,
}

impl Uploader {
    pub fn new(data_dir: &Path, cfg: &UploadConfig) -> Result<Uploader, UploadError> {
        std::fs::create_dir_all(data_dir).map_err(|source| UploadError::File {
            artifact: String::new(),
            path: data_dir.to_path_buf(),
            source,
        })?;
        let basic = crate::identity::load(data_dir)
            .map_err(Box::new)?
            .map(|id| http::basic_auth(&id.gateway_id, id.mqtt_password.expose()));
        Ok(Uploader {
            agent: http::build_agent(cfg)?,
            basic,
            cfg: cfg.clone(),
            db: ProgressDb::open(data_dir)?,
            spool: Spool::open(data_dir, cfg.spool_max_bytes)?,
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Progress recorded for an artifact by this or an earlier run.
    pub fn progress(&self, artifact: &str) -> Result<Option<Progress>, UploadError> {
        Ok(self.db.get(artifact)?)
    }

    /// Uploads a spooled artifact, retrying with backoff and resuming from the server's committed offset
    /// until it is finalized, the grant expires, `cancel` is set or `deadline` passes. The spool file and
    /// the progress row are removed when this returns (success or a definitive failure); only a process
    /// that dies mid-way leaves them for [`resume_pending`].
    pub fn upload(&self, a: &Artifact<'_>, cancel: &AtomicBool, deadline: Option<Instant>) -> Result<UploadReport, UploadError> {
        let artifact = a.grant.artifact.clone();
        if a.file.size > a.grant.max_bytes {
            self.abandon(&artifact, &a.file.path);
            return Err(UploadError::TooLarge { artifact, size: a.file.size, max: a.grant.max_bytes });
        }
        self.db.begin(&Progress {
            command_id: a.command_id.to_string(),
            grant: a.grant.clone(),
            path: a.file.path.clone(),
            name: a.name.to_string(),
            size: a.file.size,
            sha256: a.file.sha256.clone(),
            content_type: a.content_type.to_string(),
            server_offset: 0,
            sent_bytes: 0,
        })?;
        let result = self.run(a, cancel, deadline);
        match &result {
            Ok(r) => log::info!(
                "artifact {artifact}: uploaded {} bytes (resumed from {}, sent {}, {} retries)",
                r.meta.size,
                r.resumed_from,
                r.bytes_sent,
                r.retries
            ),
            Err(e) => log::warn!("artifact {artifact}: upload failed: {e}"),
        }
        self.abandon(&artifact, &a.file.path);
        result
    }

    fn abandon(&self, artifact: &str, path: &Path) {
        if let Err(e) = self.db.finish(artifact) {
            log::warn!("artifact {artifact}: clearing upload progress: {e}");
        }
        self.spool.remove_path(path);
    }

    fn run(&self, a: &Artifact<'_>, cancel: &AtomicBool, deadline: Option<Instant>) -> Result<UploadReport, UploadError> {
        let artifact = &a.grant.artifact;
        let target = UploadTarget {
            agent: &self.agent,
            url: format!("{}/{}", a.grant.url.trim_end_matches('/'), artifact),
            token: &a.grant.token,
            basic: self.basic.as_deref(),
        };
        let sent = AtomicU64::new(0);
        let mut resumed_from = None;
        let mut retries = 0u32;
        let mut checksum_retry_used = false;
        let mut backoff = Duration::from_millis(500);
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(UploadError::Cancelled { artifact: artifact.clone() });
            }
            if crate::clock::now_ms() >= a.grant.expires {
                return Err(UploadError::Expired { artifact: artifact.clone() });
            }
            let before = sent.load(Ordering::Relaxed);
            match self.pass(a, &target, &sent, &mut resumed_from, cancel) {
                Ok(meta) => {
                    return Ok(UploadReport {
                        meta,
                        resumed_from: resumed_from.unwrap_or(0),
                        bytes_sent: sent.load(Ordering::Relaxed),
                        retries,
                    });
                }
                Err(Stop::Fatal(UploadError::ChecksumRejected { message, .. })) if !checksum_retry_used => {
                    // The server discarded the upload. If our file still matches what we declared, the bytes
                    // were damaged on the way: start over once. Otherwise the spool file itself changed.
                    checksum_retry_used = true;
                    match hash_file(&a.file.path) {
                        Ok(h) if h == a.file.sha256 => {
                            log::warn!("artifact {artifact}: server saw other bytes ({message}); uploading again")
                        }
                        _ => {
                            return Err(UploadError::ChecksumRejected {
                                artifact: artifact.clone(),
                                message: format!("{message}; the spool file changed"),
                            })
                        }
                    }
                }
                Err(Stop::Fatal(e)) => return Err(e),
                Err(Stop::Retry(why)) => {
                    retries += 1;
                    if deadline.is_some_and(|d| Instant::now() + backoff >= d) {
                        return Err(UploadError::Deadline { artifact: artifact.clone(), attempts: retries, last: why });
                    }
                    log::info!("artifact {artifact}: {why}; retrying in {} ms", backoff.as_millis());
                    sleep_unless_cancelled(backoff, cancel);
                    // Progress during the failed pass means the path works: retry quickly next time.
                    backoff = if sent.load(Ordering::Relaxed) > before {
                        Duration::from_millis(500)
                    } else {
                        (backoff * 2).min(Duration::from_secs(self.cfg.retry_max_secs.max(1)))
                    };
                }
            }
        }
    }

    /// One pass: learn the committed offset, send the rest in chunks, finalize.
    fn pass(
        &self,
        a: &Artifact<'_>,
        t: &UploadTarget<'_>,
        sent: &AtomicU64,
        resumed_from: &mut Option<u64>,
        cancel: &AtomicBool,
    ) -> Result<ArtifactMeta, Stop> {
        let artifact = &a.grant.artifact;
        let size = a.file.size;
        let (state, part_size) = self.server_state(a, t)?;
        let mut offset = match state {
            ServerState::Complete => size,
            ServerState::Offset(o) => o,
        };
        resumed_from.get_or_insert(offset);
        // A server that stores fixed-size parts takes exactly its part size per PATCH (the last one is the
        // rest); the bytes still stream from disk, so memory stays flat whatever the part size.
        let chunk = part_size.filter(|p| *p > 0).unwrap_or(self.cfg.chunk_bytes.max(64 * 1024));
        while offset < size {
            if cancel.load(Ordering::Relaxed) {
                return Err(Stop::Fatal(UploadError::Cancelled { artifact: artifact.clone() }));
            }
            let len = (size - offset).min(chunk);
            let r = match t.patch(&a.file.path, offset, len, sent) {
                Ok(r) => r,
                Err(PatchError::File(source)) => {
                    return Err(Stop::Fatal(UploadError::File { artifact: artifact.clone(), path: a.file.path.clone(), source }))
                }
                Err(PatchError::Http(e)) => return Err(network(artifact, &format!("PATCH at {offset}"), e)),
            };
            match r.status {
                // A 409 that names the very offset we sent is not a resync: the server refuses this upload
                // (finalized with other bytes); retrying would only repeat the refusal.
                status::CONFLICT if r.offset == Some(offset) || r.offset.is_some_and(|o| o > size) => {
                    return Err(conflict(artifact, "PATCH", &r));
                }
                status::NO_CONTENT | status::OK | status::CONFLICT => match r.offset {
                    Some(o) if o <= size => offset = o,
                    _ => return Err(Stop::Retry(format!("PATCH answered {} without a usable Upload-Offset", r.status))),
                },
                s => return Err(classify(artifact, s, &r.body, "PATCH")),
            }
            if let Err(e) = self.db.record_offset(artifact, offset, sent.load(Ordering::Relaxed)) {
                log::warn!("artifact {artifact}: recording progress: {e}");
            }
        }
        let r = t.finalize().map_err(|e| network(artifact, "finalize", e))?;
        let declared = ArtifactMeta {
            id: artifact.clone(),
            name: a.name.to_string(),
            size,
            sha256: a.file.sha256.clone(),
            content_type: a.content_type.to_string(),
        };
        match r.status {
            status::OK if http::json_field(&r.body, "sha256").is_some_and(|h| h != a.file.sha256) => {
                Err(conflict(artifact, "finalize", &r))
            }
            status::OK => Ok(http::meta_from_finalize(&r.body, &declared)),
            status::UNPROCESSABLE => {
                Err(Stop::Fatal(UploadError::ChecksumRejected { artifact: artifact.clone(), message: r.body }))
            }
            status::CONFLICT => Err(Stop::Retry(format!("finalize: server has {:?} of {size} bytes", r.offset))),
            s => Err(classify(artifact, s, &r.body, "finalize")),
        }
    }

    /// HEAD for the committed offset (and the server's part size, if it has one); creates the upload when
    /// the server does not know it yet.
    fn server_state(&self, a: &Artifact<'_>, t: &UploadTarget<'_>) -> Result<(ServerState, Option<u64>), Stop> {
        let artifact = &a.grant.artifact;
        let r = t.head().map_err(|e| network(artifact, "HEAD", e))?;
        match r.status {
            status::OK if r.length.is_some_and(|l| l != a.file.size) => return Err(conflict(artifact, "HEAD", &r)),
            status::OK => {
                return match r.offset {
                    Some(o) if o >= a.file.size => Ok((ServerState::Complete, r.part_size)),
                    Some(o) => Ok((ServerState::Offset(o), r.part_size)),
                    None => Err(Stop::Retry("HEAD without Upload-Offset".into())),
                }
            }
            s if s >= 500 || s == status::CONFLICT => return Err(classify(artifact, s, &r.body, "HEAD")),
            // 404: not created yet. A refusal (401/403) has no body on HEAD: the create below gets the reason.
            _ => {}
        }
        let r = t.create(a.name, a.file.size, &a.file.sha256, a.content_type).map_err(|e| network(artifact, "create", e))?;
        match r.status {
            status::CREATED | status::OK => Ok((
                r.offset.map_or(ServerState::Offset(0), |o| {
                    if o >= a.file.size && r.body.contains("\"complete\":true") {
                        ServerState::Complete
                    } else {
                        ServerState::Offset(o)
                    }
                }),
                r.part_size,
            )),
            // Another upload (other size or SHA-256) already exists under this artifact id.
            status::CONFLICT => Err(conflict(artifact, "create", &r)),
            s => Err(classify(artifact, s, &r.body, "create")),
        }
    }
}

/// The server holds an upload for this artifact that is not ours (another size or SHA-256, or already
/// finalized with other bytes): permanent for this grant.
fn conflict(artifact: &str, what: &str, r: &http::Reply) -> Stop {
    let body: String = r.body.chars().take(200).collect();
    Stop::Fatal(UploadError::Conflict {
        artifact: artifact.to_string(),
        message: format!(
            "{what}: HTTP {}, server upload of {} bytes at offset {}: {body}",
            r.status,
            r.length.map_or("?".into(), |l| l.to_string()),
            r.offset.map_or("?".into(), |o| o.to_string())
        ),
    })
}

/// Transport errors are retried, except a TLS peer we cannot trust: retrying cannot fix a wrong CA.
fn network(artifact: &str, what: &str, e: ureq::Error) -> Stop {
    let tls = match &e {
        ureq::Error::Rustls(r) => Some(r.clone()),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).cloned(),
        ureq::Error::BadUri(_) => {
            return Stop::Fatal(UploadError::Refused {
                artifact: artifact.to_string(),
                status: 0,
                message: format!("{what}: {e}"),
            })
        }
        _ => None,
    };
    match tls {
        Some(
            r @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::NoCertificatesPresented),
        ) => Stop::Fatal(UploadError::Tls { artifact: artifact.to_string(), message: format!("{what}: {r}") }),
        _ => Stop::Retry(format!("{what}: {e}")),
    }
}

/// 4xx answers are definitive, except those that describe a passing state: 404 (upload lost: create it
/// again), 408 (stalled body), 409 (another request on the upload still running: the next HEAD resyncs)
/// and 429; 5xx are worth retrying too.
fn classify(artifact: &str, status: u16, body: &str, what: &str) -> Stop {
    let passing = [status::NOT_FOUND, status::REQUEST_TIMEOUT, status::CONFLICT, status::TOO_MANY_REQUESTS];
    if status >= 500 || passing.contains(&status) {
        Stop::Retry(format!("{what}: HTTP {status}"))
    } else {
        let message: String = body.chars().take(300).collect();
        Stop::Fatal(UploadError::Refused { artifact: artifact.to_string(), status, message: format!("{what}: {message}") })
    }
}

fn sleep_unless_cancelled(total: Duration, cancel: &AtomicBool) {
    let end = Instant::now() + total;
    while Instant::now() < end && !cancel.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())));
    }
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(buf.get(..n).unwrap_or_default());
    }
    Ok(crate::spool::hex(ctx.finish().as_ref()))
}

/// Finishes uploads a previous run left unfinished (agent restart), in a background thread. Expired
/// grants are dropped with their spool files. Call once at startup.
pub fn resume_pending(data_dir: &Path, cfg: &UploadConfig) {
    let started = std::time::SystemTime::now();
    let data_dir = data_dir.to_path_buf();
    let cfg = cfg.clone();
    let spawned = std::thread::Builder::new().name("upload-resume".into()).spawn(move || {
        let uploader = match Uploader::new(&data_dir, &cfg) {
            Ok(u) => u,
            Err(e) => return log::warn!("resuming uploads: {e}"),
        };
        let pending = match uploader.db.all() {
            Ok(p) => p,
            Err(e) => return log::warn!("resuming uploads: {e}"),
        };
        sweep_orphans(&uploader, &pending, started);
        let never = AtomicBool::new(false);
        for p in pending {
            let Ok(meta) = std::fs::metadata(&p.path) else {
                log::warn!("artifact {}: spool file {} is gone; dropping the upload", p.grant.artifact, p.path.display());
                uploader.abandon(&p.grant.artifact, &p.path);
                continue;
            };
            if meta.len() != p.size {
                uploader.abandon(&p.grant.artifact, &p.path);
                continue;
            }
            let file = SpooledFile { path: p.path.clone(), size: p.size, sha256: p.sha256.clone() };
            let a = Artifact {
                command_id: &p.command_id,
                grant: &p.grant,
                file: &file,
                name: &p.name,
                content_type: &p.content_type,
            };
            log::info!("artifact {}: resuming upload for command {}", p.grant.artifact, p.command_id);
            let _ = uploader.upload(&a, &never, None);
        }
    });
    if let Err(e) = spawned {
        log::warn!("resuming uploads: cannot start thread: {e}");
    }
}

/// Deletes finished spool files that no upload refers to (a crash between spooling and recording the
/// upload), so they stop counting against the cap. Only files older than this start are touched: a command
/// running right now may own a newer one.
fn sweep_orphans(uploader: &Uploader, pending: &[Progress], started: std::time::SystemTime) {
    let Ok(entries) = std::fs::read_dir(uploader.spool.dir()) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < started);
        if old && path.extension().is_some_and(|x| x == "dat") && !pending.iter().any(|p| p.path == path) {
            log::info!("spool: removing orphaned {}", path.display());
            uploader.spool.remove_path(&path);
        }
    }
}

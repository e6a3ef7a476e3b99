//! Camera and NVR commands on a target device: `camera.snapshot` (/32772/0/2, artifact) and
//! `camera.reboot` (/32772/0/1, destructive). The device protocol work is in `crate::devices`
//! (`snapshot.rs`, `reboot.rs`); these run it on the command's thread under the job's deadline and
//! turn it into a result (and, for the snapshot, an artifact uploaded like a log bundle).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use scs_protocol::{UploadGrant, Value};

use super::log_bundle::failed_io;
use super::{CommandError, Job, Output};
use crate::devices::{reboot, snapshot};
use crate::spool::SpooledFile;
use crate::upload::{Artifact, Uploader};

pub const SNAPSHOT: &str = "camera.snapshot";
pub const REBOOT: &str = "camera.reboot";
const DEFAULT_SNAPSHOT_MAX: u64 = 4 << 20;
/// Time kept back from the deadline for the upload after the device work.
const UPLOAD_RESERVE: Duration = Duration::from_secs(15);

pub fn snapshot(job: &Job) -> Result<Output, CommandError> {
    let grant = grant(job)?;
    let dev = job.device()?;
    let max = job.int("maxBytes").map_or(DEFAULT_SNAPSHOT_MAX, |v| v.max(4096) as u64).min(grant.max_bytes);
    let channel = job.int("channel").map_or(1, |c| c.clamp(1, 256) as u32);
    let device_deadline = job.deadline.checked_sub(UPLOAD_RESERVE).filter(|d| *d > Instant::now()).unwrap_or(job.deadline);
    let shot = smol::block_on(snapshot::take(dev, channel, max as usize, device_deadline))?;
    if job.should_stop() {
        return Err(CommandError::Stopped);
    }
    let captured_ms = crate::clock::now_ms();
    let uploader = Uploader::new(&job.ctx.data_dir, &job.ctx.config.upload)?;
    let mut w = uploader.spool().writer("snapshot")?;
    w.write_all(&shot.jpeg).map_err(|e| failed_io("spooling the snapshot", e))?;
    let file = w.finish()?;
    let name = format!("snapshot-{}-{}.jpg", dev.id, captured_ms / 1000);
    let mut result = upload(job, &uploader, grant, &file, &name, "image/jpeg")?;
    let r = &mut result.0;
    r.insert("device".into(), Value::Text(dev.id.clone()));
    r.insert("method".into(), Value::Text(shot.method.into()));
    r.insert("path".into(), Value::Text(shot.path));
    r.insert("capturedAt".into(), Value::from(captured_ms));
    if let Some(off) = shot.clock_offset_s {
        r.insert("clockOffsetSecs".into(), Value::Int(off));
    }
    Ok(Output { result: Value::Map(result.0), artifacts: vec![result.1] })
}

pub fn reboot(job: &Job) -> Result<Output, CommandError> {
    let dev = job.device()?;
    let wait = Duration::from_secs(job.int("waitSecs").map_or(240, |v| v.clamp(5, 600) as u64));
    let requested_ms = crate::clock::now_ms();
    let asked = smol::block_on(reboot::request(dev))?;
    log::warn!("device {}: reboot requested via {} (command {})", dev.id, asked.method, job.id);
    let until = (Instant::now() + wait).min(job.deadline.checked_sub(Duration::from_secs(1)).unwrap_or(job.deadline));
    let w = smol::block_on(reboot::watch(&dev.target, until, &|| job.should_stop()));
    if job.should_stop() {
        return Err(CommandError::Stopped);
    }
    if let (Some(dropped), None) = (w.dropped_ms, w.back_ms) {
        return Err(CommandError::Failed(format!(
            "device {} accepted the reboot ({}), dropped off at {} and was not back within {} s",
            dev.id,
            asked.method,
            crate::clock::rfc3339_utc(dropped),
            wait.as_secs()
        )));
    }
    let mut r = BTreeMap::new();
    r.insert("device".to_string(), Value::Text(dev.id.clone()));
    r.insert("method".into(), Value::Text(asked.method.into()));
    if let Some(m) = asked.message {
        r.insert("message".into(), Value::Text(m.chars().take(200).collect()));
    }
    r.insert("requestedAt".into(), Value::from(requested_ms));
    r.insert("dropped".into(), Value::Bool(w.dropped_ms.is_some()));
    r.insert("cameBack".into(), Value::Bool(w.back_ms.is_some()));
    if let Some(d) = w.dropped_ms {
        r.insert("droppedAt".into(), Value::from(d));
    }
    if let Some(b) = w.back_ms {
        r.insert("backAt".into(), Value::from(b));
        r.insert("downMs".into(), Value::from(b.saturating_sub(w.dropped_ms.unwrap_or(b))));
    }
    Ok(Output::value(Value::Map(r)))
}

pub(crate) fn grant(job: &Job) -> Result<&UploadGrant, CommandError> {
    job.upload.as_ref().ok_or_else(|| CommandError::Failed("no upload grant came with the command".into()))
}

/// Uploads a spooled artifact with the command's grant; the result map starts with its metadata.
pub(crate) fn upload(
    job: &Job,
    uploader: &Uploader,
    grant: &UploadGrant,
    file: &SpooledFile,
    name: &str,
    content_type: &str,
) -> Result<(BTreeMap<String, Value>, scs_protocol::ArtifactMeta), CommandError> {
    let art = Artifact { command_id: &job.id, grant, file, name, content_type };
    let report = match uploader.upload(&art, &job.cancel, Some(job.deadline)) {
        Ok(r) => r,
        Err(_) if job.should_stop() => return Err(CommandError::Stopped),
        Err(e) => return Err(e.into()),
    };
    let mut m = BTreeMap::new();
    m.insert("artifact".to_string(), Value::Text(report.meta.id.clone()));
    m.insert("name".to_string(), Value::Text(report.meta.name.clone()));
    m.insert("size".to_string(), Value::from(report.meta.size));
    m.insert("sha256".to_string(), Value::Text(report.meta.sha256.clone()));
    Ok((m, report.meta))
}

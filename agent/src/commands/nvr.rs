//! `nvr.clip_export` (/32773/0/1, artifact): one channel's recording between `from` and `to` (at most
//! [`clip::MAX_SPAN_MS`]), downloaded from the NVR (vendor API, else ONVIF replay) straight into a spool
//! file (`devices/clip.rs`), then uploaded with the command's grant. Memory stays flat whatever the
//! clip's size. The result's `method` names the path that produced the clip.

use std::io::Write;
use std::time::Instant;

use scs_protocol::Value;

use super::camera::{grant, upload};
use super::{CommandError, Job, Output};
use crate::devices::clip::{self, ClipRequest};
use crate::devices::rtsp::ReplayEnd;

pub const CLIP_EXPORT: &str = "nvr.clip_export";
const DEFAULT_MAX: u64 = 256 << 20;

fn time_param(job: &Job, name: &str) -> Result<u64, CommandError> {
    let s = job.require_str(name)?;
    clip::parse_time_ms(s).ok_or_else(|| {
        CommandError::Failed(format!("parameter {name} {s:?} is neither RFC 3339 (2026-12-06T10:00:00Z) nor milliseconds"))
    })
}

pub fn clip_export(job: &Job) -> Result<Output, CommandError> {
    let grant = grant(job)?;
    let dev = job.device()?;
    let channel = job.require_int("channel")?.clamp(1, 256) as u32;
    let (from_ms, to_ms) = (time_param(job, "from")?, time_param(job, "to")?);
    if to_ms <= from_ms || to_ms - from_ms > clip::MAX_SPAN_MS {
        return Err(CommandError::Failed(format!(
            "from..to must be a positive span of at most {} s (got {} ms)",
            clip::MAX_SPAN_MS / 1000,
            to_ms as i128 - from_ms as i128
        )));
    }
    let max_bytes = job.int("maxBytes").map_or(DEFAULT_MAX, |v| v.max(65_536) as u64).min(grant.max_bytes);
    let req = ClipRequest { channel, from_ms, to_ms, max_bytes };
    let uploader = crate::upload::Uploader::new(&job.ctx.data_dir, &job.ctx.config.upload)?;
    let mut w = uploader.spool().writer("clip")?;
    // Half the remaining time for the download, the rest for the upload of what it produced.
    let device_deadline = Instant::now() + job.remaining() / 2;
    let cancel = job.cancel.clone();
    let mut sink = |b: &[u8]| {
        if cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "command cancelled"));
        }
        w.write_all(b)
    };
    let exported = smol::block_on(clip::export(dev, req, device_deadline, &mut sink));
    if job.should_stop() {
        return Err(CommandError::Stopped);
    }
    let exported = exported?;
    let file = w.finish()?;
    let ext = match (exported.method, exported.content_type.as_deref()) {
        ("onvif", _) => "h264",
        ("dahua" | "dahua-file", _) => "dav",
        (_, Some(t)) if t.contains("mp4") => "mp4",
        _ => "bin",
    };
    let name = format!("clip-{}-ch{channel}-{}.{ext}", dev.id, from_ms / 1000);
    let content_type = exported.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
    let (mut r, meta) = upload(job, &uploader, grant, &file, &name, &content_type)?;
    r.insert("device".into(), Value::Text(dev.id.clone()));
    r.insert("method".into(), Value::Text(exported.method.into()));
    r.insert("channel".into(), Value::from(u64::from(channel)));
    r.insert("from".into(), Value::Text(crate::clock::rfc3339_utc(from_ms)));
    r.insert("to".into(), Value::Text(crate::clock::rfc3339_utc(to_ms)));
    r.insert("matches".into(), Value::from(exported.matches as u64));
    if let Some(rp) = &exported.replay {
        r.insert("nalUnits".into(), Value::from(rp.nal_units));
        r.insert("rtpPackets".into(), Value::from(rp.packets));
        r.insert("end".into(), Value::Text(rp.end.as_str().into()));
        r.insert("truncated".into(), Value::Bool(matches!(rp.end, ReplayEnd::SizeCap | ReplayEnd::TimeCap)));
        if let (Some(a), Some(b)) = (rp.first_ms, rp.last_ms) {
            r.insert("firstFrameAt".into(), Value::Text(crate::clock::rfc3339_utc(a)));
            r.insert("lastFrameAt".into(), Value::Text(crate::clock::rfc3339_utc(b)));
        }
    }
    Ok(Output { result: Value::Map(r), artifacts: vec![meta] })
}

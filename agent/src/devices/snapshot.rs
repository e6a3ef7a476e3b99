//! One JPEG from a camera: ONVIF GetSnapshotUri (the URI's path fetched from the configured address,
//! as for every XAddr), else the vendor URL (Hikvision ISAPI `/ISAPI/Streaming/channels/{ch}01/picture`,
//! Dahua `/cgi-bin/snapshot.cgi?channel={ch}`). The image is bounded in size and checked to be a whole
//! JPEG. The device clock offset comes from GetSystemDateAndTime, else from the HTTP `Date` header.

use std::time::Instant;

use super::http::Limits;
use super::onvif::{self, OnvifError};
use super::vendor_http::{self, VendorError};
use super::{DeviceSpec, Driver, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("device {device}: {source}")]
    Onvif { device: String, source: OnvifError },
    #[error("device {device}: {source}")]
    Vendor { device: String, source: VendorError },
    #[error("device {device}: {path} answered {len} bytes that are not a complete JPEG")]
    NotJpeg { device: String, path: String, len: usize },
    #[error("device {device}: no snapshot within the time allowed")]
    Timeout { device: String },
}

impl SnapshotError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SnapshotError::Onvif { source, .. } => source.class(),
            SnapshotError::Vendor { source, .. } => source.class(),
            SnapshotError::NotJpeg { .. } => ErrorClass::Parse,
            SnapshotError::Timeout { .. } => ErrorClass::Timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub jpeg: Vec<u8>,
    /// `onvif`, `isapi` or `dahua`.
    pub method: &'static str,
    /// Path fetched on the device.
    pub path: String,
    /// Device clock minus gateway clock, seconds.
    pub clock_offset_s: Option<i64>,
}

/// Methods to try, in order, for a driver. A device configured for one API gets only that one.
fn methods(driver: Driver) -> &'static [&'static str] {
    match driver {
        Driver::Onvif => &["onvif"],
        Driver::Hikvision => &["isapi"],
        Driver::Dahua => &["dahua"],
        Driver::Auto | Driver::Rtsp | Driver::Reach => &["onvif", "isapi", "dahua"],
    }
}

/// Takes a snapshot within `deadline`. Stops at the first authentication refusal: trying other APIs
/// with the same rejected credentials only counts towards a lockout.
pub async fn take(spec: &DeviceSpec, channel: u32, max_bytes: usize, deadline: Instant) -> Result<Snapshot, SnapshotError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let limits = Limits { max_body: max_bytes, timeout: timeout.min(onvif::default_limits().timeout), ..Limits::default() };
    let mut last = None;
    for m in methods(spec.driver) {
        let attempt = async {
            match *m {
                "onvif" => onvif_snapshot(spec, limits).await,
                "isapi" => vendor(spec, limits, "isapi", format!("/ISAPI/Streaming/channels/{channel}01/picture")).await,
                _ => vendor(spec, limits, "dahua", format!("/cgi-bin/snapshot.cgi?channel={channel}")).await,
            }
        };
        let r = super::http::until(deadline, attempt).await.unwrap_or(Err(SnapshotError::Timeout { device: spec.id.clone() }));
        match r {
            Ok(s) => return Ok(s),
            Err(e) if e.class() == ErrorClass::Auth || e.class().is_down() => return Err(e),
            Err(e) => {
                log::info!("snapshot via {m}: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(SnapshotError::Timeout { device: spec.id.clone() }))
}

async fn onvif_snapshot(spec: &DeviceSpec, limits: Limits) -> Result<Snapshot, SnapshotError> {
    let oerr = |source| SnapshotError::Onvif { device: spec.id.clone(), source };
    let mut c = onvif::Client::new(&spec.target, spec.credentials(), onvif::default_limits());
    let offset = c.sync_clock(onvif::DEVICE_PATH).await.map_err(oerr)?;
    let media = c.media_path(onvif::DEVICE_PATH).await.map_err(oerr)?;
    let profiles = c.profiles(&media).await.map_err(oerr)?;
    let token = profiles.first().map(|p| p.token.clone()).unwrap_or_default();
    let uri = c.snapshot_uri(&media, &token).await.map_err(oerr)?;
    // As with XAddrs, only the path is used: the announced host may be a factory or NAT address.
    let path = super::http::split_url(uri.trim(), 80).map(|(_, p)| p).unwrap_or(uri);
    let mut s = fetch(spec, limits, "onvif", &path).await?;
    s.clock_offset_s = Some(offset);
    Ok(s)
}

async fn vendor(spec: &DeviceSpec, limits: Limits, method: &'static str, path: String) -> Result<Snapshot, SnapshotError> {
    fetch(spec, limits, method, &path).await
}

async fn fetch(spec: &DeviceSpec, limits: Limits, method: &'static str, path: &str) -> Result<Snapshot, SnapshotError> {
    let verr = |source| SnapshotError::Vendor { device: spec.id.clone(), source };
    let mut c = vendor_http::Client::new(&spec.target, spec.credentials(), limits);
    let resp = c.request("GET", path, None, &[]).await.map_err(verr)?;
    if resp.status != 200 {
        return Err(verr(VendorError::Status { target: spec.target.clone(), path: path.to_owned(), status: resp.status }));
    }
    let clock_offset_s = vendor_http::date_offset_s(&resp, crate::clock::now_ms());
    if !vendor_http::is_jpeg(&resp.body) {
        return Err(SnapshotError::NotJpeg { device: spec.id.clone(), path: path.to_owned(), len: resp.body.len() });
    }
    Ok(Snapshot { jpeg: resp.body, method, path: path.to_owned(), clock_offset_s })
}

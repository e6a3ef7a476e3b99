//! Rebooting a camera or NVR and watching it go: ONVIF SystemReboot, else Hikvision ISAPI
//! `PUT /ISAPI/System/reboot`, else Dahua `GET /cgi-bin/magicBox.cgi?action=reboot`; then TCP connects
//! to its address every half second until it has refused (dropped off) and accepted again (back).

use std::time::{Duration, Instant};

use super::http::{self, Limits};
use super::onvif::{self, OnvifError};
use super::vendor_http::{self, VendorError};
use super::xml::Doc;
use super::{DeviceSpec, Driver, ErrorClass};

const POLL: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
pub enum RebootError {
    #[error("device {device}: {source}")]
    Onvif { device: String, source: OnvifError },
    #[error("device {device}: {source}")]
    Vendor { device: String, source: VendorError },
    #[error("device {device}: {path} answered HTTP {status}: {body}")]
    Refused { device: String, path: &'static str, status: u16, body: String },
}

impl RebootError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RebootError::Onvif { source, .. } => source.class(),
            RebootError::Vendor { source, .. } => source.class(),
            RebootError::Refused { .. } => ErrorClass::Fault,
        }
    }
}

/// How the reboot was asked for and what the device said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// `onvif`, `isapi` or `dahua`.
    pub method: &'static str,
    pub message: Option<String>,
}

fn methods(driver: Driver) -> &'static [&'static str] {
    match driver {
        Driver::Onvif => &["onvif"],
        Driver::Hikvision => &["isapi"],
        Driver::Dahua => &["dahua"],
        Driver::Auto | Driver::Rtsp | Driver::Reach => &["onvif", "isapi", "dahua"],
    }
}

/// Asks the device to reboot. Stops at an authentication refusal or a device that is down.
pub async fn request(spec: &DeviceSpec) -> Result<Requested, RebootError> {
    let mut last = None;
    for m in methods(spec.driver) {
        let r = match *m {
            "onvif" => onvif_reboot(spec).await,
            "isapi" => isapi_reboot(spec).await,
            _ => dahua_reboot(spec).await,
        };
        match r {
            Ok(x) => return Ok(x),
            Err(e) if e.class() == ErrorClass::Auth || e.class().is_down() => return Err(e),
            Err(e) => {
                log::info!("reboot via {m}: {e}");
                last = Some(e);
            }
        }
    }
    // `methods` is never empty, so `last` is set whenever the loop ends here.
    Err(last.unwrap_or_else(|| RebootError::Refused { device: spec.id.clone(), path: "", status: 0, body: String::new() }))
}

async fn onvif_reboot(spec: &DeviceSpec) -> Result<Requested, RebootError> {
    let oerr = |source| RebootError::Onvif { device: spec.id.clone(), source };
    let mut c = onvif::Client::new(&spec.target, spec.credentials(), onvif::default_limits());
    c.sync_clock(onvif::DEVICE_PATH).await.map_err(oerr)?;
    let text = c.call(onvif::DEVICE_PATH, "SystemReboot", "<tds:SystemReboot/>", true).await.map_err(oerr)?;
    let message = Doc::parse(&text).ok().and_then(|d| d.text("Message")).filter(|m| !m.is_empty());
    Ok(Requested { method: "onvif", message })
}

async fn vendor_reboot(
    spec: &DeviceSpec,
    method: &'static str,
    verb: &str,
    path: &'static str,
) -> Result<Requested, RebootError> {
    let mut c = vendor_http::Client::new(&spec.target, spec.credentials(), Limits::default());
    let resp =
        c.request(verb, path, None, &[]).await.map_err(|source| RebootError::Vendor { device: spec.id.clone(), source })?;
    let body: String = resp.body_str().chars().take(200).collect();
    if resp.status != 200 {
        return Err(RebootError::Refused { device: spec.id.clone(), path, status: resp.status, body });
    }
    // ISAPI answers a ResponseStatus document: its statusString is the message; Dahua answers plain text.
    let status = Doc::parse(resp.body_str()).ok().and_then(|d| d.text("statusString"));
    let message = status.unwrap_or_else(|| body.trim().to_owned());
    Ok(Requested { method, message: Some(message).filter(|b| !b.is_empty()) })
}

async fn isapi_reboot(spec: &DeviceSpec) -> Result<Requested, RebootError> {
    vendor_reboot(spec, "isapi", "PUT", "/ISAPI/System/reboot").await
}

async fn dahua_reboot(spec: &DeviceSpec) -> Result<Requested, RebootError> {
    vendor_reboot(spec, "dahua", "GET", "/cgi-bin/magicBox.cgi?action=reboot").await
}

/// When the device went away and came back (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watch {
    pub dropped_ms: Option<u64>,
    pub back_ms: Option<u64>,
}

/// Polls `target` with TCP connects until it has dropped off and come back, `until` passes or `stop`
/// says so.
pub async fn watch(target: &str, until: Instant, stop: &dyn Fn() -> bool) -> Watch {
    let mut w = Watch::default();
    while Instant::now() < until && !stop() {
        let up = http::connect(target, Instant::now() + CONNECT_TIMEOUT).await.is_ok();
        let now = crate::clock::now_ms();
        match (up, w.dropped_ms) {
            (false, None) => w.dropped_ms = Some(now),
            (true, Some(_)) => {
                w.back_ms = Some(now);
                return w;
            }
            _ => {}
        }
        smol::Timer::after(POLL).await;
    }
    w
}

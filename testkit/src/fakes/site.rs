//! A simulated site on 127.0.0.1: N cameras and M NVRs built from the fakes in this module, one real
//! RTSP server for their streams (GStreamer's when it is installed, else the in-process fake), and
//! a few devices broken on purpose. `scripts/fake-site` (`src/bin/fake-site.rs`), `scripts/demo` and
//! `scripts/bench` use it; [`Site::config_toml`] is the agent's `[[devices]]` for it.
//!
//! Cameras cycle through vendor flavours an operator meets: an ONVIF-only camera (WS-UsernameToken),
//! a Hikvision camera over ONVIF (HTTP Digest MD5, gSOAP prefixes, `driver = "auto"`), a camera with
//! SHA-256 Digest, no namespace prefixes and no GetServices, and an RTSP-only encoder (`driver = "rtsp"`).
//! NVRs alternate between Hikvision ISAPI and Dahua's HTTP CGI API (disks, channels), both behind Digest.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::dahua::{DahuaChannel, DahuaOpts, FakeDahua};
use super::gst::{self, GstOpts, GstRtsp};
use super::isapi::{FakeIsapi, IsapiOpts, Recording};
use super::onvif::{AuthMode, FakeOnvif, OnvifOpts, Prefixes};
use super::rtsp::{FakeRtsp, RtspOpts};

/// A device broken on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// The agent is configured with a password the camera does not accept: "auth broken", not "down".
    WrongPassword,
    /// The camera's RTSP server answers DESCRIBE and PLAY but never sends a frame: "stream lost".
    NoFrames,
    /// One of the NVR's disks reports `error`.
    HddFailed,
    /// The camera's clock runs 5 minutes ahead (its WS-UsernameToken check uses that clock).
    ClockOff,
}

impl Quirk {
    pub const ALL: [Quirk; 4] = [Quirk::WrongPassword, Quirk::NoFrames, Quirk::HddFailed, Quirk::ClockOff];

    pub fn name(self) -> &'static str {
        match self {
            Quirk::WrongPassword => "wrong-password",
            Quirk::NoFrames => "no-frames",
            Quirk::HddFailed => "hdd-failed",
            Quirk::ClockOff => "clock-off",
        }
    }

    pub fn parse(s: &str) -> Option<Quirk> {
        Quirk::ALL.into_iter().find(|q| q.name() == s)
    }

    fn on_nvr(self) -> bool {
        self == Quirk::HddFailed
    }
}

/// Which RTSP server serves the healthy cameras' streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtspChoice {
    /// GStreamer when installed, else the in-process fake.
    Auto,
    Gst,
    Fake,
}

#[derive(Debug, Clone)]
pub struct SiteOpts {
    pub cameras: usize,
    pub nvrs: usize,
    /// Device ids are `{prefix}-cam-01`, `{prefix}-nvr-01`, ...
    pub id_prefix: String,
    pub quirks: Vec<Quirk>,
    pub rtsp: RtspChoice,
    /// Every fourth camera is an RTSP-only encoder (no management API); `false`: all speak ONVIF.
    pub rtsp_only_encoders: bool,
    pub camera_user: String,
    pub camera_pass: String,
    pub nvr_user: String,
    pub nvr_pass: String,
}

impl Default for SiteOpts {
    fn default() -> Self {
        SiteOpts {
            cameras: 4,
            nvrs: 1,
            id_prefix: "site".into(),
            quirks: Vec::new(),
            rtsp: RtspChoice::Auto,
            rtsp_only_encoders: true,
            camera_user: "admin".into(),
            camera_pass: "cam-pass".into(),
            nvr_user: "admin".into(),
            nvr_pass: "nvr-pass".into(),
        }
    }
}

/// One device as the agent should be configured for it.
#[derive(Debug, Clone)]
pub struct SiteDevice {
    pub id: String,
    /// `CAMERA` or `NVR`.
    pub device_type: &'static str,
    pub name: String,
    /// `127.0.0.1:port` of its HTTP API (the RTSP server for an RTSP-only camera).
    pub address: String,
    pub driver: &'static str,
    pub vendor: String,
    pub model: String,
    /// What the agent is configured with (differs from the device's own for `WrongPassword`).
    pub username: String,
    pub password: String,
    /// Explicit stream URI (RTSP-only cameras).
    pub rtsp_uri: Option<String>,
    pub quirk: Option<Quirk>,
}

pub struct Site {
    pub devices: Vec<SiteDevice>,
    /// `rtsp://127.0.0.1:port` of the shared stream server.
    pub rtsp_base: String,
    /// `gstreamer` or `in-process fake`.
    pub rtsp_kind: &'static str,
    /// Why GStreamer was not used, when it was wanted.
    pub rtsp_note: Option<String>,
    _onvif: Vec<FakeOnvif>,
    _isapi: Vec<FakeIsapi>,
    _dahua: Vec<FakeDahua>,
    _rtsp: Vec<FakeRtsp>,
    _gst: Option<GstRtsp>,
}

struct CameraFlavour {
    vendor: &'static str,
    model: &'static str,
    driver: &'static str,
    auth: AuthMode,
    prefixes: Prefixes,
    no_get_services: bool,
}

const FLAVOURS: [CameraFlavour; 3] = [
    CameraFlavour {
        vendor: "FakeCam",
        model: "FC-1080",
        driver: "onvif",
        auth: AuthMode::UsernameToken,
        prefixes: Prefixes::Usual,
        no_get_services: false,
    },
    CameraFlavour {
        vendor: "HIKVISION",
        model: "DS-2CD2143G2-I",
        driver: "auto",
        auth: AuthMode::Digest("MD5"),
        prefixes: Prefixes::Gsoap,
        no_get_services: false,
    },
    CameraFlavour {
        vendor: "Generic",
        model: "IPC-4MP",
        driver: "onvif",
        auth: AuthMode::Digest("SHA-256"),
        prefixes: Prefixes::None,
        no_get_services: true,
    },
];

impl Site {
    pub fn start(o: &SiteOpts) -> Result<Site, String> {
        let (mut gst_handle, mut fakes, mut note) = (None, Vec::new(), None);
        let want_gst = o.rtsp != RtspChoice::Fake && o.cameras > 0;
        if want_gst {
            match gst::missing() {
                None => match GstRtsp::start(GstOpts {
                    user: o.camera_user.clone(),
                    pass: o.camera_pass.clone(),
                    ..GstOpts::default()
                }) {
                    Ok(g) => gst_handle = Some(g),
                    Err(e) => note = Some(e),
                },
                Some(why) => note = Some(why),
            }
            if gst_handle.is_none() && o.rtsp == RtspChoice::Gst {
                return Err(format!("GStreamer RTSP server wanted but unavailable: {}", note.unwrap_or_default()));
            }
        }
        let (rtsp_base, rtsp_kind) = match &gst_handle {
            Some(g) => (g.base().to_owned(), "gstreamer"),
            None => {
                let f =
                    FakeRtsp::start(RtspOpts { user: o.camera_user.clone(), pass: o.camera_pass.clone(), ..RtspOpts::default() });
                let base = f.base();
                fakes.push(f);
                (base, "in-process fake")
            }
        };

        // Quirks go to the last devices of their kind, so the first ones stay healthy.
        let cam_quirks: Vec<Quirk> = o.quirks.iter().copied().filter(|q| !q.on_nvr()).collect();
        let nvr_quirks: Vec<Quirk> = o.quirks.iter().copied().filter(|q| q.on_nvr()).collect();
        let quirk_for = |quirks: &[Quirk], i: usize, n: usize| -> Option<Quirk> {
            let from_end = n.checked_sub(i + 1)?;
            quirks.get(from_end).copied()
        };

        let mut devices = Vec::new();
        let mut onvif = Vec::new();
        for i in 0..o.cameras {
            let n = i + 1;
            let id = format!("{}-cam-{n:02}", o.id_prefix);
            let quirk = quirk_for(&cam_quirks, i, o.cameras);
            let password =
                if quirk == Some(Quirk::WrongPassword) { format!("{}-old", o.camera_pass) } else { o.camera_pass.clone() };
            // Every fourth camera is an RTSP-only encoder, unless it carries a quirk an RTSP-only
            // device cannot show (identity, clock).
            let rtsp_only = o.rtsp_only_encoders && i % 4 == 3 && matches!(quirk, None | Some(Quirk::NoFrames));
            let stream_base = if quirk == Some(Quirk::NoFrames) {
                let f = FakeRtsp::start(RtspOpts {
                    user: o.camera_user.clone(),
                    pass: o.camera_pass.clone(),
                    no_frames: true,
                    ..RtspOpts::default()
                });
                let b = f.base();
                fakes.push(f);
                b
            } else {
                rtsp_base.clone()
            };
            if rtsp_only {
                devices.push(SiteDevice {
                    id,
                    device_type: "CAMERA",
                    name: format!("Camera {n:02} (RTSP encoder)"),
                    address: stream_base.trim_start_matches("rtsp://").to_owned(),
                    driver: "rtsp",
                    vendor: "Encoder".into(),
                    model: "RTSP-1CH".into(),
                    username: o.camera_user.clone(),
                    password,
                    rtsp_uri: Some(format!("{stream_base}/main")),
                    quirk,
                });
                continue;
            }
            let f = FLAVOURS.get(i % 4).or(FLAVOURS.get(i % 3)).unwrap_or(&FLAVOURS[0]);
            let cam = FakeOnvif::start(OnvifOpts {
                user: o.camera_user.clone(),
                pass: o.camera_pass.clone(),
                auth: f.auth,
                prefixes: f.prefixes,
                no_get_services: f.no_get_services,
                clock_skew_s: if quirk == Some(Quirk::ClockOff) { 300 } else { 0 },
                manufacturer: f.vendor.into(),
                model: f.model.into(),
                firmware: format!("V5.7.{} build 240101", i % 10),
                serial: format!("{}-{:06}", f.model, 100 + i),
                rtsp_base: stream_base,
                ..OnvifOpts::default()
            });
            devices.push(SiteDevice {
                id,
                device_type: "CAMERA",
                name: format!("Camera {n:02} ({} {})", f.vendor, f.model),
                address: cam.target(),
                driver: f.driver,
                vendor: f.vendor.into(),
                model: f.model.into(),
                username: o.camera_user.clone(),
                password,
                rtsp_uri: None,
                quirk,
            });
            onvif.push(cam);
        }
        let mut isapi = Vec::new();
        let mut dahua = Vec::new();
        // Channel 1 has been recording for the last hour and goes on for a day, so a clip export of
        // "the last few minutes" (what scripts/demo prints) finds it.
        let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let recent = Recording { start_s: now_s - 3600, end_s: now_s + 86_400, ..IsapiOpts::default().recording };
        for i in 0..o.nvrs {
            let n = i + 1;
            let id = format!("{}-nvr-{n:02}", o.id_prefix);
            let quirk = quirk_for(&nvr_quirks, i, o.nvrs);
            let failed = quirk == Some(Quirk::HddFailed);
            // Every second NVR is a Dahua, so a site of two has one of each vendor.
            if i % 2 == 1 {
                let mut d = DahuaOpts {
                    user: o.nvr_user.clone(),
                    pass: o.nvr_pass.clone(),
                    serial: format!("6J0ABCD{:06}", 100 + i),
                    machine_name: format!("NVR-{n:02}"),
                    channels: vec![
                        DahuaChannel { connected: true, record_mode: 0 },
                        DahuaChannel { connected: true, record_mode: 0 },
                        DahuaChannel { connected: false, record_mode: 0 },
                        DahuaChannel { connected: true, record_mode: 2 },
                    ],
                    ..DahuaOpts::default()
                };
                if failed {
                    if let Some(h) = d.hdds.last_mut() {
                        h.state = "Error".into();
                        h.is_error = true;
                    }
                }
                let model = d.device_type.clone();
                let nvr = FakeDahua::start(d);
                devices.push(SiteDevice {
                    id,
                    device_type: "NVR",
                    name: format!("Recorder {n:02} (Dahua)"),
                    address: nvr.target(),
                    driver: "dahua",
                    vendor: "Dahua".into(),
                    model,
                    username: o.nvr_user.clone(),
                    password: o.nvr_pass.clone(),
                    rtsp_uri: None,
                    quirk,
                });
                dahua.push(nvr);
                continue;
            }
            let second = if failed { "error" } else { "ok" };
            let nvr = FakeIsapi::start(IsapiOpts {
                user: o.nvr_user.clone(),
                pass: o.nvr_pass.clone(),
                serial: format!("DS-7608NI-K2-8P08202401{n:02}CCRRJ{:08}WCVU", 1000 + i),
                hdds: vec![(1, "ok", 3_815_447, 1_204_000 + 1000 * i as u64), (2, second, 3_815_447, 911_000)],
                recording: recent,
                ..IsapiOpts::default()
            });
            devices.push(SiteDevice {
                id,
                device_type: "NVR",
                name: format!("Recorder {n:02} (Hikvision ISAPI)"),
                address: nvr.target(),
                driver: "hikvision",
                vendor: "HIKVISION".into(),
                model: "DS-7608NI-K2/8P".into(),
                username: o.nvr_user.clone(),
                password: o.nvr_pass.clone(),
                rtsp_uri: None,
                quirk,
            });
            isapi.push(nvr);
        }
        Ok(Site {
            devices,
            rtsp_base,
            rtsp_kind,
            rtsp_note: note,
            _onvif: onvif,
            _isapi: isapi,
            _dahua: dahua,
            _rtsp: fakes,
            _gst: gst_handle,
        })
    }

    /// The agent's `[[devices]]` entries for this site (TOML, appended to an agent config).
    pub fn config_toml(&self) -> String {
        let mut s = String::new();
        for d in &self.devices {
            let _ = writeln!(s, "[[devices]]");
            let _ = writeln!(s, "id = {}", toml_str(&d.id));
            let _ = writeln!(s, "type = {}", toml_str(d.device_type));
            let _ = writeln!(s, "name = {}", toml_str(&d.name));
            let _ = writeln!(s, "address = {}", toml_str(&d.address));
            let _ = writeln!(s, "driver = {}", toml_str(d.driver));
            let _ = writeln!(s, "vendor = {}", toml_str(&d.vendor));
            let _ = writeln!(s, "model = {}", toml_str(&d.model));
            let _ = writeln!(s, "username = {}", toml_str(&d.username));
            let _ = writeln!(s, "password = {}", toml_str(&d.password));
            if d.rtsp_uri.is_some() || d.quirk.is_some() {
                let _ = writeln!(s, "[devices.attrs]");
                if let Some(u) = &d.rtsp_uri {
                    let _ = writeln!(s, "rtsp_uri = {}", toml_str(u));
                }
                if let Some(q) = d.quirk {
                    let _ = writeln!(s, "fake_site_quirk = {}", toml_str(q.name()));
                }
            }
            s.push('\n');
        }
        s
    }

    /// Everything a script or a person needs to find the devices again.
    pub fn manifest(&self) -> Value {
        let devices: Vec<Value> = self
            .devices
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "type": d.device_type, "name": d.name, "address": d.address, "driver": d.driver,
                    "vendor": d.vendor, "model": d.model, "username": d.username, "password": d.password,
                    "rtspUri": d.rtsp_uri, "quirk": d.quirk.map(Quirk::name),
                })
            })
            .collect();
        json!({
            "rtspServer": { "base": self.rtsp_base, "kind": self.rtsp_kind, "note": self.rtsp_note },
            "cameras": self.devices.iter().filter(|d| d.device_type == "CAMERA").count(),
            "nvrs": self.devices.iter().filter(|d| d.device_type == "NVR").count(),
            "devices": devices,
        })
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_config_parses_and_quirks_land_on_distinct_devices() {
        let site = Site::start(&SiteOpts {
            cameras: 6,
            nvrs: 2,
            quirks: Quirk::ALL.to_vec(),
            rtsp: RtspChoice::Fake,
            ..SiteOpts::default()
        })
        .unwrap();
        let v: toml::Value = toml::from_str(&site.config_toml()).unwrap();
        let devs = v["devices"].as_array().unwrap();
        assert_eq!(devs.len(), 8);
        let quirks: Vec<_> = site.devices.iter().filter_map(|d| d.quirk.map(|q| (d.id.clone(), q))).collect();
        assert_eq!(quirks.len(), 4, "{quirks:?}");
        let wrong = site.devices.iter().find(|d| d.quirk == Some(Quirk::WrongPassword)).unwrap();
        assert_ne!(wrong.password, "cam-pass");
        assert!(site.devices.iter().filter(|d| d.device_type == "CAMERA").all(|d| crate::port_open(port(&d.address))));
        assert_eq!(site.manifest()["devices"].as_array().unwrap().len(), 8);
        let drivers: Vec<_> = site.devices.iter().filter(|d| d.device_type == "NVR").map(|d| d.driver).collect();
        assert_eq!(drivers, ["hikvision", "dahua"]);
        let failed = site.devices.iter().find(|d| d.quirk == Some(Quirk::HddFailed)).unwrap();
        assert_eq!(failed.driver, "dahua");
        let fake = site._dahua.first().unwrap();
        assert!(fake.opts.lock().unwrap().hdds.iter().any(|h| h.is_error && h.state == "Error"));
    }

    fn port(addr: &str) -> u16 {
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }
}

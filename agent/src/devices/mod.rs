//! Camera and NVR probes. The scheduler (`scheduler.rs`) runs every probe on its own thread with a smol
//! executor, so a dead or hostile device never delays a telemetry batch or the systemd watchdog. Drivers
//! (`onvif.rs`, `rtsp.rs`) speak the device protocols over `http.rs` / raw TCP; results land in a
//! [`StateCache`] that the telemetry collector reads without waiting on any socket.
//!
//! Every probe result carries an [`ErrorClass`]: "auth broken" and "down" are different states.

pub mod baseline;
pub mod clip;
pub mod dahua;
pub mod digest;
pub mod events;
pub mod h264;
pub mod hikvision;
pub mod http;
pub mod onvif;
pub mod probe_now;
pub mod reboot;
pub mod rtsp;
pub mod scheduler;
pub mod site;
pub mod snapshot;
pub mod vendor_http;
pub mod wsdiscovery;
pub mod xml;

#[cfg(test)]
mod clip_tests;
#[cfg(test)]
mod gst_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use crate::config::Driver;
use crate::config::{Config, DeviceConfig};

/// One device as the probes see it, built from the config.
#[derive(Clone, PartialEq)]
pub struct DeviceSpec {
    pub id: String,
    /// `host:port` of the device's HTTP (ONVIF/ISAPI/CGI) service.
    pub target: String,
    pub driver: Driver,
    pub username: Option<String>,
    pub password: Option<String>,
    /// RTSP URI configured explicitly (the `rtsp` driver, or a camera whose ONVIF media service lies).
    pub rtsp_uri: Option<String>,
}

// Hand-written so the password never reaches a log line.
impl std::fmt::Debug for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSpec")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("driver", &self.driver)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl DeviceSpec {
    /// `None` for a device without an address (nothing to probe).
    pub fn from_config(d: &DeviceConfig, driver: Driver) -> Option<DeviceSpec> {
        Some(DeviceSpec {
            id: d.id.clone(),
            target: d.probe_target()?,
            driver,
            username: d.username.clone(),
            password: d.password.as_ref().map(|p| p.expose().to_owned()),
            rtsp_uri: d.attrs.get("rtsp_uri").cloned(),
        })
    }

    /// As [`DeviceSpec::from_config`] with the device's own `driver` setting (reach only when unset).
    pub fn of(d: &DeviceConfig) -> Option<DeviceSpec> {
        DeviceSpec::from_config(d, Driver::parse(d.driver.as_deref().unwrap_or("")).unwrap_or(Driver::Reach))
    }

    /// Credentials, when both halves are configured.
    pub fn credentials(&self) -> Option<Credentials<'_>> {
        Some(Credentials { user: self.username.as_deref()?, pass: self.password.as_deref()? })
    }
}

#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub user: &'a str,
    pub pass: &'a str,
}

/// What went wrong, in the classes operators alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    Ok,
    Timeout,
    Refused,
    Unreachable,
    Dns,
    #[allow(dead_code, reason = "part of the metric contract; no probe speaks TLS to devices yet")]
    Tls,
    Auth,
    /// The device answered with a protocol-level error (SOAP fault, RTSP/HTTP error status).
    Fault,
    /// The answer was not parseable (garbage, truncated, oversized).
    Parse,
    /// The answer was well-formed but breaks the protocol (unexpected status, redirect, unknown scheme).
    Protocol,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Ok => "ok",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Refused => "refused",
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::Dns => "dns",
            ErrorClass::Tls => "tls",
            ErrorClass::Auth => "auth",
            ErrorClass::Fault => "fault",
            ErrorClass::Parse => "parse",
            ErrorClass::Protocol => "protocol",
        }
    }

    /// Classes that mean the device is not there (as opposed to there but unhappy).
    pub fn is_down(self) -> bool {
        matches!(self, ErrorClass::Timeout | ErrorClass::Refused | ErrorClass::Unreachable | ErrorClass::Dns)
    }

    /// Classifies a socket error.
    pub fn of_io(e: &std::io::Error) -> ErrorClass {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::TimedOut | K::WouldBlock => ErrorClass::Timeout,
            K::ConnectionRefused => ErrorClass::Refused,
            K::UnexpectedEof | K::InvalidData => ErrorClass::Parse,
            // ENETUNREACH, EHOSTUNREACH, resets and the rest: the path to the device is broken.
            _ => ErrorClass::Unreachable,
        }
    }
}

/// The probe tiers, from cheap and frequent to expensive and rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// TCP connect RTT.
    Reach,
    /// ONVIF/vendor identity and status.
    Management,
    /// RTSP OPTIONS + DESCRIBE.
    Stream,
    /// Short RTSP PLAY.
    Sample,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Reach, Tier::Management, Tier::Stream, Tier::Sample];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Reach => "reach",
            Tier::Management => "management",
            Tier::Stream => "stream",
            Tier::Sample => "sample",
        }
    }
}

/// One probe's outcome: class, how long it took, when it finished.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    pub tier: Tier,
    pub class: ErrorClass,
    pub duration: Duration,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
}

/// Identity as the device reports it (ONVIF GetDeviceInformation, ISAPI deviceInfo, magicBox).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
    pub serial: String,
    pub hardware_id: String,
}

/// One media profile's stream as resolved from the device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamInfo {
    pub profile: String,
    pub uri: String,
    /// Outcome of the last DESCRIBE of `uri`.
    pub class: Option<ErrorClass>,
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
}

/// One NVR channel (a camera input) as the recorder sees it. `id` is the channel number as the NVR's
/// own UI shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    /// The NVR reaches the camera on this channel.
    pub online: Option<bool>,
    /// Recording is enabled for this channel (a schedule or continuous mode, not "off").
    pub recording: Option<bool>,
}

/// Latest known state of one device. Kept boxed in the cache (68 devices = 68 of these for the agent's
/// lifetime), so what most devices lack (vendor health, a sample, an identity not read yet) is boxed or
/// empty rather than inline.
#[derive(Debug, Clone, Default)]
pub struct DeviceState {
    pub reach_rtt_ms: Option<f64>,
    /// The last result of each tier (see [`DeviceState::last`]).
    last: [Option<ProbeResult>; 4],
    pub identity: Option<Box<Identity>>,
    /// Device clock minus gateway clock, seconds (ONVIF GetSystemDateAndTime).
    pub clock_offset_s: Option<i64>,
    /// The device's streams: resolved by the management tier (or configured), measured by the stream
    /// tier. Kept here only; the scheduler reads its targets from this.
    pub streams: Vec<StreamInfo>,
    /// CPU, memory and uptime where the device reports them (ISAPI System/status).
    pub health: Option<Box<hikvision::Status>>,
    /// NVR disks (ISAPI ContentMgmt/Storage, Dahua storageDevice).
    pub hdds: Vec<hikvision::Hdd>,
    /// NVR channels (ISAPI InputProxy + record tracks, Dahua LogicDeviceManager + RecordMode).
    pub channels: Vec<Channel>,
    /// Recordings an ONVIF Profile G recorder holds (GetRecordingSummary).
    pub recordings: Option<u64>,
    /// The driver `auto` settled on for this device, once known.
    pub resolved_driver: Option<Driver>,
    /// Last sampled PLAY of the first stream.
    pub sample: Option<Box<rtsp::Sample>>,
    /// Set after an authentication failure; cleared by the next authenticated success.
    pub auth_failed: bool,
    /// What the event detector has reported so far.
    pub watch: events::Watch,
}

/// Slot of a tier in [`DeviceState::last`].
fn tier_slot(t: Tier) -> usize {
    match t {
        Tier::Reach => 0,
        Tier::Management => 1,
        Tier::Stream => 2,
        Tier::Sample => 3,
    }
}

impl DeviceState {
    pub fn record(&mut self, r: ProbeResult) {
        if let Some(slot) = self.last.get_mut(tier_slot(r.tier)) {
            *slot = Some(r);
        }
    }

    /// The last result of `tier`, if that tier has run.
    pub fn last(&self, tier: Tier) -> Option<&ProbeResult> {
        self.last.get(tier_slot(tier)).and_then(Option::as_ref)
    }

    /// Online = the last reach probe succeeded.
    pub fn online(&self) -> Option<bool> {
        self.last(Tier::Reach).map(|r| r.class == ErrorClass::Ok)
    }

    // The setters below keep the allocations already in the state when a probe reads the same shape
    // again (the usual case): a fresh copy per round would be allocated among the probe's short-lived
    // buffers, and each such small block left behind keeps a whole heap page resident once the buffers
    // are freed.

    pub fn set_identity(&mut self, id: Identity) {
        if self.identity.as_deref() != Some(&id) {
            self.identity = Some(Box::new(id));
        }
    }

    pub fn set_health(&mut self, h: hikvision::Status) {
        match &mut self.health {
            Some(b) => **b = h,
            None => self.health = Some(Box::new(h)),
        }
    }

    pub fn set_sample(&mut self, m: rtsp::Sample) {
        match &mut self.sample {
            Some(b) => **b = m,
            None => self.sample = Some(Box::new(m)),
        }
    }

    pub fn set_streams(&mut self, src: &[StreamInfo]) {
        assign(&mut self.streams, src, |d, s| {
            d.profile.clone_from(&s.profile);
            d.uri.clone_from(&s.uri);
            d.class = s.class;
            d.codec.clone_from(&s.codec);
            (d.width, d.height, d.fps) = (s.width, s.height, s.fps);
        });
    }

    pub fn set_hdds(&mut self, src: &[hikvision::Hdd]) {
        assign(&mut self.hdds, src, |d, s| {
            d.id.clone_from(&s.id);
            d.status.clone_from(&s.status);
            (d.capacity_mb, d.free_mb) = (s.capacity_mb, s.free_mb);
        });
    }

    pub fn set_channels(&mut self, src: &[Channel]) {
        assign(&mut self.channels, src, |d, s| {
            d.id.clone_from(&s.id);
            (d.online, d.recording) = (s.online, s.recording);
        });
    }
}

/// Makes `dst` equal to `src` element by element through `set`, which copies into the existing element
/// (`String::clone_from` reuses the buffer); only added elements are allocated.
fn assign<T: Clone>(dst: &mut Vec<T>, src: &[T], set: impl Fn(&mut T, &T)) {
    dst.truncate(src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        set(d, s);
    }
    if let Some(rest) = src.get(dst.len()..) {
        dst.extend_from_slice(rest);
    }
}

/// Per-device state shared between the probe thread (writer) and the telemetry collector (reader).
/// The lock is only ever held to copy a state in or out, never across I/O, so a reader waits at most
/// for one small clone.
#[derive(Debug, Clone, Default)]
pub struct StateCache {
    /// Boxed states: the table itself stays a few KiB (its buckets are pointers), each state is
    /// allocated once at its size.
    inner: Arc<Mutex<HashMap<Box<str>, Box<DeviceState>>>>,
    events: Arc<Mutex<events::Pending>>,
    /// Where the identity baselines persist (`agent.db`); `None` in memory only.
    baselines: Option<Arc<baseline::Store>>,
    /// Baselines changed since the last [`StateCache::save_baselines`], one entry per device.
    unsaved: Arc<Mutex<baseline::Rows>>,
}

impl StateCache {
    /// A cache whose event baselines (serial, firmware, boot time per device) persist in `db` and start
    /// from what an earlier run left there, so a restart neither misses a unit replaced while the agent
    /// was down nor reports every device again. If the table cannot be read the cache runs from memory
    /// (logged): events then restart from a fresh baseline, as before persistence.
    pub fn with_baselines(db: &std::path::Path) -> StateCache {
        match baseline::Store::load(db) {
            Ok((store, rows)) => {
                let mut map = HashMap::with_capacity(rows.len());
                for (id, b) in rows {
                    let mut st = Box::<DeviceState>::default();
                    st.watch.restore(b);
                    map.insert(id.into_boxed_str(), st);
                }
                StateCache { inner: Arc::new(Mutex::new(map)), baselines: Some(Arc::new(store)), ..StateCache::default() }
            }
            Err(e) => {
                log::warn!("{e}; device events start from a fresh baseline");
                StateCache::default()
            }
        }
    }

    pub fn update<R>(&self, id: &str, f: impl FnOnce(&mut DeviceState) -> R) -> R {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Looked up first: the key is allocated once per device, not at every update.
        if let Some(s) = map.get_mut(id) {
            return f(s);
        }
        f(map.entry(id.into()).or_default())
    }

    #[cfg(test)]
    pub fn get(&self, id: &str) -> Option<DeviceState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).get(id).map(|s| (**s).clone())
    }

    /// `f` applied to one device's state under the lock (`None` before the device's first result), for
    /// readers that need a few fields and not a copy.
    pub fn read<R>(&self, id: &str, f: impl FnOnce(&DeviceState) -> R) -> Option<R> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).get(id).map(|s| f(s))
    }

    #[cfg(test)]
    pub fn snapshot(&self) -> HashMap<String, DeviceState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(k, v)| (k.to_string(), (**v).clone())).collect()
    }

    /// Records a probe result, queues the events it causes and persists a changed identity baseline.
    pub fn record(&self, id: &str, r: ProbeResult) {
        let (evs, changed) = self.update(id, |s| {
            s.record(r);
            if r.class == ErrorClass::Auth {
                s.auth_failed = true;
            } else if r.class == ErrorClass::Ok && r.tier != Tier::Reach {
                s.auth_failed = false;
            }
            let evs = events::after_probe(id, s, r);
            (evs, s.watch.take_changed_baseline())
        });
        // Only when serial, firmware or boot time changed: a few rows a year per device, not one per
        // probe (flash). Written by the telemetry loop (`save_baselines`), which owns the database
        // time, so a busy database never stalls the probes.
        if let (Some(_), Some(b)) = (&self.baselines, changed) {
            let mut unsaved = self.unsaved.lock().unwrap_or_else(PoisonError::into_inner);
            match unsaved.iter_mut().find(|(k, _)| **k == *id) {
                Some((_, old)) => *old = b,
                None => unsaved.push((id.into(), b)),
            }
        }
        if evs.is_empty() {
            return;
        }
        let mut q = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        for e in evs {
            log::info!("device {id}: event {}: {}", e.kind, e.detail.as_deref().unwrap_or(""));
            q.push(e);
        }
    }

    /// Writes the baselines changed since the last call, in one transaction. On failure (logged) they
    /// stay queued for the next call, unless a newer value of the same device arrived meanwhile.
    pub fn save_baselines(&self) {
        let Some(store) = &self.baselines else { return };
        let rows = std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(PoisonError::into_inner));
        if rows.is_empty() {
            return;
        }
        if let Err(e) = store.save_all(&rows) {
            log::warn!("{e}");
            let mut unsaved = self.unsaved.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, b) in rows {
                if !unsaved.iter().any(|(k, _)| *k == id) {
                    unsaved.push((id, b));
                }
            }
        }
    }

    /// Up to `max` queued events, oldest first, for the next telemetry batch.
    pub fn drain_events(&self, max: usize) -> Vec<scs_protocol::DeviceEvent> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).drain(max)
    }
}

/// Starts the probe thread for the configured devices with an address. Reach runs at the telemetry
/// interval (within 1-60 s) so every batch carries a fresh online state; the other tiers use the
/// defaults operators run. `None` when no device has an address or the thread cannot start (logged;
/// the agent runs on without device probes rather than not at all).
pub fn start(cfg: &Config, telemetry_interval: Duration, cache: &StateCache) -> Option<scheduler::Scheduler> {
    let specs: Vec<DeviceSpec> = cfg
        .devices
        .iter()
        .filter_map(|d| DeviceSpec::from_config(d, Driver::parse(d.driver.as_deref().unwrap_or("")).unwrap_or(Driver::Reach)))
        .collect();
    if specs.is_empty() {
        return None;
    }
    let sc = scheduler::SchedulerConfig {
        concurrency: cfg.collect.probe_concurrency.max(1),
        reach: telemetry_interval.clamp(Duration::from_secs(1), Duration::from_secs(60)),
        reach_timeout: Duration::from_millis(cfg.collect.probe_timeout_ms.max(1)),
        management: Duration::from_secs(cfg.collect.probe_management_secs.max(1)),
        stream: Duration::from_secs(cfg.collect.probe_stream_secs.max(1)),
        stagger: Duration::from_secs(cfg.collect.probe_stagger_secs.min(3600)),
        ..scheduler::SchedulerConfig::default()
    };
    match scheduler::Scheduler::start(specs, sc, cache.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("device probes not started: {e}");
            None
        }
    }
}

/// Wire code of an [`ErrorClass`] in the `device.probe_class` metric (documented in docs/devices.md).
pub fn class_code(c: ErrorClass) -> i64 {
    match c {
        ErrorClass::Ok => 0,
        ErrorClass::Timeout => 1,
        ErrorClass::Refused => 2,
        ErrorClass::Unreachable => 3,
        ErrorClass::Dns => 4,
        ErrorClass::Tls => 5,
        ErrorClass::Auth => 6,
        ErrorClass::Fault => 7,
        ErrorClass::Parse => 8,
        ErrorClass::Protocol => 9,
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    fn stream(profile: &str, uri: &str, fps: f64) -> StreamInfo {
        StreamInfo { profile: profile.into(), uri: uri.into(), fps: Some(fps), ..StreamInfo::default() }
    }

    #[test]
    fn a_round_with_the_same_shape_reuses_the_state_allocations() {
        let mut s = DeviceState::default();
        s.set_streams(&[stream("main", "rtsp://10.0.0.5/main", 25.0), stream("sub", "rtsp://10.0.0.5/sub", 15.0)]);
        let uri_buf = s.streams.first().map(|x| x.uri.as_ptr());
        let vec_buf = s.streams.as_ptr();
        s.set_streams(&[stream("main", "rtsp://10.0.0.5/main", 24.9), stream("sub", "rtsp://10.0.0.5/sub", 15.0)]);
        assert_eq!(s.streams.as_ptr(), vec_buf);
        assert_eq!(s.streams.first().map(|x| x.uri.as_ptr()), uri_buf);
        assert_eq!(s.streams.first().and_then(|x| x.fps), Some(24.9));
        // Fewer, then more streams: the content follows.
        s.set_streams(&[stream("other", "rtsp://10.0.0.5/x", 5.0)]);
        assert_eq!(s.streams, [stream("other", "rtsp://10.0.0.5/x", 5.0)]);
        let three = [stream("a", "u1", 1.0), stream("b", "u2", 2.0), stream("c", "u3", 3.0)];
        s.set_streams(&three);
        assert_eq!(s.streams, three);

        let id = Identity { serial: "SN1".into(), ..Identity::default() };
        s.set_identity(id.clone());
        let boxed = s.identity.as_deref().map(|i| i as *const Identity);
        s.set_identity(id);
        assert_eq!(s.identity.as_deref().map(|i| i as *const Identity), boxed, "same identity: same box");
        s.set_identity(Identity { serial: "SN2".into(), ..Identity::default() });
        assert_eq!(s.identity.as_deref().map(|i| i.serial.as_str()), Some("SN2"));
    }
}

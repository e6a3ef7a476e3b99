//! Probe scheduler: one thread named `devices` running a smol executor, one task per (device, tier).
//!
//! * Global concurrency is a semaphore (`concurrency` probes in flight); each device also has a few
//!   session slots (cameras allow 2-4 sessions and the NVR uses some), taken by every tier that opens
//!   an application session (management, stream, sample). Reach only opens a TCP connection.
//! * Intervals are jittered by +-10 % so 64 cameras configured at once do not probe in lockstep.
//! * While a device is down (last reach failed), the application tiers wait instead of burning their
//!   timeouts, and reach backs off exponentially up to `max_backoff`.
//! * After an authentication failure every authenticated tier of that device stops for
//!   `auth_backoff`, doubling per consecutive failure up to a day: camera firmware locks an account
//!   after a handful of bad logins, and a locked account takes the VMS down with it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::lock::Semaphore;
use smol::{LocalExecutor, Timer};

use super::http::{self, Limits};
use super::{dahua, hikvision, onvif, rtsp, DeviceSpec, Driver, ErrorClass, ProbeResult, StateCache, StreamInfo, Tier};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Probes in flight across all devices.
    pub concurrency: usize,
    /// Application sessions in flight per device.
    pub slots_per_device: usize,
    pub reach: Duration,
    pub management: Duration,
    pub stream: Duration,
    /// `None`: sampled PLAY only on command.
    pub sample: Option<Duration>,
    pub sample_window: Duration,
    /// Timeout of one reach probe; application exchanges use `limits.timeout` each.
    pub reach_timeout: Duration,
    pub limits: Limits,
    pub max_backoff: Duration,
    pub auth_backoff: Duration,
    /// The application tiers' first run is spread over this window after start.
    pub stagger: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            concurrency: 16,
            slots_per_device: 2,
            reach: Duration::from_secs(45),
            management: Duration::from_secs(300),
            stream: Duration::from_secs(600),
            sample: Some(Duration::from_secs(3600)),
            sample_window: Duration::from_secs(3),
            reach_timeout: Duration::from_secs(3),
            limits: onvif::default_limits(),
            max_backoff: Duration::from_secs(600),
            auth_backoff: Duration::from_secs(900),
            stagger: Duration::from_secs(20),
        }
    }
}

/// Running scheduler; stops (and joins its thread) on drop.
pub struct Scheduler {
    stop: Option<smol::channel::Sender<()>>,
    /// Devices added while running (adopted by `site.adopt`).
    add: Option<smol::channel::Sender<DeviceSpec>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn spawn_device<'a>(ex: &LocalExecutor<'a>, shared: &Rc<Shared>, spec: DeviceSpec) {
    let dev = Rc::new(Device {
        slots: Semaphore::new(shared.cfg.slots_per_device.max(1)),
        spec,
        down_streak: Cell::new(0),
        auth_failures: Cell::new(0),
        auth_blocked_until: Cell::new(None),
    });
    for tier in tiers_for(dev.spec.driver, &shared.cfg) {
        ex.spawn(tier_loop(Rc::clone(shared), Rc::clone(&dev), tier)).detach();
    }
}

impl Scheduler {
    pub fn start(specs: Vec<DeviceSpec>, cfg: SchedulerConfig, cache: StateCache) -> std::io::Result<Scheduler> {
        let (tx, rx) = smol::channel::bounded::<()>(1);
        let (add_tx, add_rx) = smol::channel::unbounded::<DeviceSpec>();
        let thread = std::thread::Builder::new().name("devices".into()).spawn(move || {
            let ex = LocalExecutor::new();
            let n = cfg.concurrency.max(1);
            let managed = specs.iter().filter(|s| tiers_for(s.driver, &cfg).contains(&Tier::Management)).count();
            let first_round = FirstRound { start: Instant::now(), total: managed, pending: Cell::new(managed), ok: Cell::new(0) };
            let shared = Rc::new(Shared { reach: Semaphore::new(n), sessions: Semaphore::new(n), cfg, cache, first_round });
            for spec in specs {
                spawn_device(&ex, &shared, spec);
            }
            // Runs until the handle is dropped (the channels close); dropping the executor cancels
            // every probe wherever it is, which closes its sockets.
            smol::block_on(ex.run(async {
                loop {
                    let added = smol::future::or(async { add_rx.recv().await.ok() }, async {
                        let _ = rx.recv().await;
                        None
                    })
                    .await;
                    let Some(spec) = added else { break };
                    log::info!("device {}: probing from now on", spec.id);
                    spawn_device(&ex, &shared, spec);
                }
            }));
        })?;
        Ok(Scheduler { stop: Some(tx), add: Some(add_tx), thread: Some(thread) })
    }

    /// Starts probing one more device.
    pub fn add(&self, spec: DeviceSpec) {
        if let Some(tx) = &self.add {
            let _ = tx.try_send(spec);
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        drop(self.stop.take());
        drop(self.add.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Shared {
    /// Reach probes in flight: separate from sessions so slow application probes (black-holed
    /// devices holding a slot for a whole timeout) never delay the online state.
    reach: Semaphore,
    /// Application sessions in flight across all devices.
    sessions: Semaphore,
    cfg: SchedulerConfig,
    cache: StateCache,
    first_round: FirstRound,
}

/// Progress of the first management round over every device: its duration is logged once, the figure
/// behind "one management round over the site" (scripts/bench; `collect.probe_stagger_secs = 0` makes
/// the round start at once).
struct FirstRound {
    start: Instant,
    total: usize,
    pending: Cell<usize>,
    ok: Cell<usize>,
}

impl FirstRound {
    fn done(&self, class: ErrorClass) {
        if class == ErrorClass::Ok {
            self.ok.set(self.ok.get() + 1);
        }
        let left = self.pending.get().saturating_sub(1);
        self.pending.set(left);
        if left == 0 {
            log::info!(
                "devices: first management round: {} devices ({} ok) in {} ms",
                self.total,
                self.ok.get(),
                self.start.elapsed().as_millis()
            );
        }
    }
}

struct Device {
    spec: DeviceSpec,
    slots: Semaphore,
    down_streak: Cell<u32>,
    auth_failures: Cell<u32>,
    auth_blocked_until: Cell<Option<Instant>>,
}

fn tiers_for(driver: Driver, cfg: &SchedulerConfig) -> Vec<Tier> {
    let mut t = vec![Tier::Reach];
    match driver {
        Driver::Onvif | Driver::Auto => t.extend([Tier::Management, Tier::Stream]),
        Driver::Rtsp => t.push(Tier::Stream),
        Driver::Hikvision | Driver::Dahua => t.push(Tier::Management),
        Driver::Reach => {}
    }
    if cfg.sample.is_some() && t.contains(&Tier::Stream) {
        t.push(Tier::Sample);
    }
    t
}

fn interval(cfg: &SchedulerConfig, tier: Tier) -> Duration {
    match tier {
        Tier::Reach => cfg.reach,
        Tier::Management => cfg.management,
        Tier::Stream => cfg.stream,
        Tier::Sample => cfg.sample.unwrap_or(Duration::from_secs(86_400)),
    }
}

/// `d` scaled by a random factor in [0.9, 1.1).
fn jitter(d: Duration) -> Duration {
    let r = (crate::clock::random_u64() % 2000) as f64 / 10_000.0; // [0, 0.2)
    d.mul_f64(0.9 + r)
}

fn backoff(base: Duration, streak: u32, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << streak.min(16)).min(cap.max(base))
}

async fn tier_loop(shared: Rc<Shared>, dev: Rc<Device>, tier: Tier) {
    let cfg = &shared.cfg;
    let every = interval(cfg, tier);
    // Reach runs at once (a connect is cheap and the first telemetry batch wants it); the
    // application tiers start staggered so a restart does not log in to every camera at once.
    let first = match tier {
        Tier::Reach => Duration::ZERO,
        _ => every.min(cfg.stagger),
    };
    let mut first_round = tier == Tier::Management;
    let mut delay = first.mul_f64((crate::clock::random_u64() % 1000) as f64 / 1000.0);
    loop {
        Timer::after(delay).await;
        if tier != Tier::Reach {
            if let Some(until) = dev.auth_blocked_until.get() {
                let now = Instant::now();
                if until > now {
                    delay = until - now;
                    continue;
                }
            }
            if dev.down_streak.get() > 0 {
                // Down: wait for reach to see it back rather than spend a timeout here.
                delay = jitter(cfg.reach.min(every));
                continue;
            }
        }
        let result = if tier == Tier::Reach {
            let _permit = shared.reach.acquire().await;
            run_tier(&shared, &dev, tier).await
        } else {
            let _permit = shared.sessions.acquire().await;
            let _slot = dev.slots.acquire().await;
            run_tier(&shared, &dev, tier).await
        };
        let Some(result) = result else {
            // Nothing to probe on this tier yet (no stream URI known, typically because the first
            // management round has not resolved them): look again after a reach interval rather than
            // leave the stream unknown for a whole stream or sample interval after start.
            delay = jitter(every.min(cfg.reach));
            continue;
        };
        let class = result.class;
        if first_round {
            first_round = false;
            shared.first_round.done(class);
        }
        if class != ErrorClass::Ok {
            log::debug!("device {}: {} probe: {} after {:?}", dev.spec.id, tier.as_str(), class.as_str(), result.duration);
        }
        shared.cache.record(&dev.spec.id, result);
        delay = match (tier, class) {
            (Tier::Reach, c) if c.is_down() => {
                dev.down_streak.set(dev.down_streak.get().saturating_add(1));
                jitter(backoff(every, dev.down_streak.get() - 1, cfg.max_backoff))
            }
            (Tier::Reach, _) => {
                dev.down_streak.set(0);
                jitter(every)
            }
            (_, ErrorClass::Auth) => {
                let n = dev.auth_failures.get().saturating_add(1);
                dev.auth_failures.set(n);
                let wait = backoff(cfg.auth_backoff, n - 1, Duration::from_secs(86_400));
                dev.auth_blocked_until.set(Some(Instant::now() + wait));
                log::warn!(
                    "device {}: {} probe: credentials rejected; no login attempts for {}s",
                    dev.spec.id,
                    tier.as_str(),
                    wait.as_secs()
                );
                wait
            }
            (_, ErrorClass::Ok) => {
                dev.auth_failures.set(0);
                dev.auth_blocked_until.set(None);
                jitter(every)
            }
            // Other failures: retry sooner than the full interval, but not hot.
            (_, _) => jitter(every.min(cfg.reach.saturating_mul(2))),
        };
    }
}

async fn run_tier(shared: &Shared, dev: &Device, tier: Tier) -> Option<ProbeResult> {
    let start = Instant::now();
    let cfg = &shared.cfg;
    let id = &dev.spec.id;
    // Each tier's probe future is boxed: they are kilobytes each (the management rounds over 7 KiB);
    // inline, the largest would be part of every tier task's state for the agent's lifetime, boxed
    // they exist only while a probe runs (at most `concurrency` of them).
    let class = match tier {
        Tier::Reach => match Box::pin(http::connect(&dev.spec.target, start + cfg.reach_timeout)).await {
            Ok((_stream, rtt)) => {
                let ms = (rtt.as_secs_f64() * 10_000.0).round() / 10.0;
                shared.cache.update(id, |s| s.reach_rtt_ms = Some(ms));
                ErrorClass::Ok
            }
            Err(e) => {
                log::debug!("device {id}: reach: {e}");
                shared.cache.update(id, |s| s.reach_rtt_ms = None);
                e.class()
            }
        },
        Tier::Management => Box::pin(management(shared, dev)).await,
        Tier::Stream => Box::pin(stream(shared, dev)).await?,
        Tier::Sample => Box::pin(sample(shared, dev)).await?,
    };
    Some(ProbeResult { tier, class, duration: start.elapsed(), ts_ms: crate::clock::now_ms() })
}

async fn management(shared: &Shared, dev: &Device) -> ErrorClass {
    match dev.spec.driver {
        Driver::Hikvision => isapi_management(shared, dev).await,
        Driver::Dahua => dahua_management(shared, dev).await,
        Driver::Auto => auto_management(shared, dev).await,
        _ => onvif_management(shared, dev).await,
    }
}

/// `driver = "auto"`: the driver that answered last time, else ONVIF, then the vendor APIs (ISAPI,
/// Dahua CGI) when ONVIF is not there (unauthenticated GetSystemDateAndTime refused, or an HTTP error,
/// a fault or garbage). Wrong credentials or a
/// device that is down end the search: trying more APIs would only add failed logins or timeouts.
/// The first driver that completes a round is kept for the device's lifetime in this process.
async fn auto_management(shared: &Shared, dev: &Device) -> ErrorClass {
    let id = &dev.spec.id;
    match shared.cache.update(id, |s| s.resolved_driver) {
        Some(Driver::Hikvision) => return isapi_management(shared, dev).await,
        Some(Driver::Dahua) => return dahua_management(shared, dev).await,
        Some(_) => return onvif_management(shared, dev).await,
        None => {}
    }
    let not_there = |c: ErrorClass| matches!(c, ErrorClass::Fault | ErrorClass::Parse | ErrorClass::Protocol);
    // ONVIF devices answer GetSystemDateAndTime without credentials; a vendor web server that has no
    // ONVIF (or has it disabled) answers it with 401 or 404. Sent without credentials, it costs no login.
    let mut probe = onvif::Client::new(&dev.spec.target, None, shared.cfg.limits);
    let onvif_there = match probe.sync_clock(onvif::DEVICE_PATH).await {
        Ok(_) => true,
        Err(e) if e.class().is_down() => return e.class(),
        Err(e) => {
            log::debug!("device {id}: driver auto: no ONVIF: {e}");
            false
        }
    };
    let (mut class, mut found) =
        if onvif_there { (onvif_management(shared, dev).await, Driver::Onvif) } else { (ErrorClass::Fault, Driver::Onvif) };
    if !onvif_there || not_there(class) {
        let c = isapi_management(shared, dev).await;
        if c == ErrorClass::Ok || !not_there(c) {
            (class, found) = (c, Driver::Hikvision);
        } else {
            let c = dahua_management(shared, dev).await;
            if c == ErrorClass::Ok || !not_there(c) {
                (class, found) = (c, Driver::Dahua);
            }
        }
    }
    if class == ErrorClass::Ok {
        log::info!("device {id}: driver auto: {found:?}");
        shared.cache.update(id, |s| s.resolved_driver = Some(found));
    }
    class
}

async fn onvif_management(shared: &Shared, dev: &Device) -> ErrorClass {
    let spec = &dev.spec;
    let mut client = onvif::Client::new(&spec.target, spec.credentials(), shared.cfg.limits);
    // The whole round is bounded too: a device answering each call just under the per-call timeout
    // must not hold a slot for minutes.
    let round = shared.cfg.limits.timeout.saturating_mul(4);
    match http::until(Instant::now() + round, client.management(onvif::DEVICE_PATH)).await {
        None => ErrorClass::Timeout,
        Some(Ok(m)) => {
            let mut streams = m.streams;
            // Profile G (recorders): best effort, a camera without it is not failing.
            let recordings =
                match http::until(Instant::now() + shared.cfg.limits.timeout, client.recording_count(onvif::DEVICE_PATH)).await {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => {
                        log::debug!("device {}: recordings: {e}", spec.id);
                        None
                    }
                    None => None,
                };
            shared.cache.update(&spec.id, |s| {
                // Keep what the stream tier measured for URIs that did not change.
                for st in &mut streams {
                    if let Some(o) = s.streams.iter().find(|o| o.uri == st.uri) {
                        st.class = o.class;
                        st.fps = o.fps.or(st.fps);
                    }
                }
                s.set_identity(m.identity);
                s.clock_offset_s = Some(m.clock_offset_s);
                s.set_streams(&streams);
                s.recordings = recordings;
            });
            ErrorClass::Ok
        }
        Some(Err(e)) => {
            log::info!("device {}: management: {e}", spec.id);
            e.class()
        }
    }
}

async fn isapi_management(shared: &Shared, dev: &Device) -> ErrorClass {
    let spec = &dev.spec;
    let mut c = hikvision::Client::new(&spec.target, spec.credentials(), shared.cfg.limits);
    let round = async {
        let identity = c.device_info().await?;
        let health = c.status().await?;
        // Cameras have no ContentMgmt: a 404 there is not a failure of the device.
        let hdds = match c.storage().await {
            Ok(h) => h,
            Err(e) if e.class() == ErrorClass::Fault => Vec::new(),
            Err(e) => return Err(e),
        };
        let channels = c.channels().await?;
        Ok::<_, hikvision::IsapiError>((identity, health, hdds, channels))
    };
    match http::until(Instant::now() + shared.cfg.limits.timeout.saturating_mul(4), round).await {
        None => ErrorClass::Timeout,
        Some(Ok((identity, health, hdds, channels))) => {
            shared.cache.update(&spec.id, |s| {
                s.set_identity(identity);
                s.set_health(health);
                s.set_hdds(&hdds);
                s.set_channels(&channels);
            });
            ErrorClass::Ok
        }
        Some(Err(e)) => {
            log::info!("device {}: management: {e}", spec.id);
            e.class()
        }
    }
}

async fn dahua_management(shared: &Shared, dev: &Device) -> ErrorClass {
    let spec = &dev.spec;
    let mut c = dahua::Client::new(&spec.target, spec.credentials(), shared.cfg.limits);
    let round = async {
        let identity = c.identity().await?;
        // Cameras have no storage or channel CGIs: their absence is not a failure.
        let hdds = match c.storage().await {
            Ok(h) => h,
            Err(e) if e.is_absent() => Vec::new(),
            Err(e) => return Err(e),
        };
        let channels = c.channels().await?;
        Ok::<_, dahua::DahuaError>((identity, hdds, channels))
    };
    match http::until(Instant::now() + shared.cfg.limits.timeout.saturating_mul(4), round).await {
        None => ErrorClass::Timeout,
        Some(Ok((identity, hdds, channels))) => {
            shared.cache.update(&spec.id, |s| {
                s.set_identity(identity);
                s.set_hdds(&hdds);
                s.set_channels(&channels);
            });
            ErrorClass::Ok
        }
        Some(Err(e)) => {
            log::info!("device {}: management: {e}", spec.id);
            e.class()
        }
    }
}

/// The streams to check: those the management tier resolved (kept in the cache), else the configured
/// URI. Bounded: an NVR announcing 64 profiles gets its first few checked per round.
fn stream_targets(shared: &Shared, dev: &Device) -> Vec<StreamInfo> {
    let mut v = shared.cache.read(&dev.spec.id, |s| s.streams.iter().take(4).cloned().collect::<Vec<_>>()).unwrap_or_default();
    if v.is_empty() {
        if let Some(uri) = &dev.spec.rtsp_uri {
            v.push(StreamInfo { profile: "configured".into(), uri: uri.clone(), ..StreamInfo::default() });
        }
    }
    v
}

async fn stream(shared: &Shared, dev: &Device) -> Option<ErrorClass> {
    let targets = stream_targets(shared, dev);
    if targets.is_empty() {
        return None;
    }
    let mut worst = ErrorClass::Ok;
    let mut out = Vec::with_capacity(targets.len());
    for mut t in targets {
        let class = match rtsp::describe(&t.uri, dev.spec.credentials(), shared.cfg.limits).await {
            Ok(v) => {
                t.codec = Some(v.codec).filter(|c| !c.is_empty()).or(t.codec);
                t.width = v.width.or(t.width);
                t.height = v.height.or(t.height);
                t.fps = v.fps.or(t.fps);
                ErrorClass::Ok
            }
            Err(e) => {
                log::info!("device {}: stream {}: {e}", dev.spec.id, t.profile);
                e.class()
            }
        };
        t.class = Some(class);
        if worst == ErrorClass::Ok {
            worst = class;
        }
        let auth = class == ErrorClass::Auth;
        out.push(t);
        if auth {
            // Stop at the first rejection: more attempts only count towards a lockout.
            break;
        }
    }
    shared.cache.update(&dev.spec.id, |s| s.set_streams(&out));
    Some(worst)
}

async fn sample(shared: &Shared, dev: &Device) -> Option<ErrorClass> {
    let t = stream_targets(shared, dev).into_iter().next()?;
    Some(match rtsp::sample(&t.uri, dev.spec.credentials(), shared.cfg.limits, shared.cfg.sample_window).await {
        Ok((_, m)) => {
            shared.cache.update(&dev.spec.id, |s| s.set_sample(m));
            ErrorClass::Ok
        }
        Err(e) => {
            log::info!("device {}: sample {}: {e}", dev.spec.id, t.profile);
            e.class()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(30), 0, s(600)), s(30));
        assert_eq!(backoff(s(30), 3, s(600)), s(240));
        assert_eq!(backoff(s(30), 30, s(600)), s(600));
        for _ in 0..100 {
            let j = jitter(s(100));
            assert!(j >= s(90) && j < s(110), "{j:?}");
        }
    }

    /// Every (device, tier) task lives as long as the agent: its state must not carry a probe's
    /// kilobytes (protocol futures, read buffers), which belong in a box that exists while probing.
    #[test]
    fn tier_tasks_keep_small_state() {
        let shared = Rc::new(Shared {
            reach: Semaphore::new(1),
            sessions: Semaphore::new(1),
            cfg: SchedulerConfig::default(),
            cache: StateCache::default(),
            first_round: FirstRound { start: Instant::now(), total: 0, pending: Cell::new(0), ok: Cell::new(0) },
        });
        let dev = Rc::new(Device {
            spec: DeviceSpec {
                id: "cam".into(),
                target: "127.0.0.1:1".into(),
                driver: Driver::Auto,
                username: None,
                password: None,
                rtsp_uri: None,
            },
            slots: Semaphore::new(1),
            down_streak: Cell::new(0),
            auth_failures: Cell::new(0),
            auth_blocked_until: Cell::new(None),
        });
        let task = tier_loop(Rc::clone(&shared), Rc::clone(&dev), Tier::Management);
        assert!(std::mem::size_of_val(&task) <= 512, "{} bytes", std::mem::size_of_val(&task));
        // The probes themselves are larger, which is why they are boxed.
        assert!(std::mem::size_of_val(&management(&shared, &dev)) > 512);
    }

    #[test]
    fn tiers_follow_the_driver() {
        let c = SchedulerConfig::default();
        assert_eq!(tiers_for(Driver::Reach, &c), [Tier::Reach]);
        assert_eq!(tiers_for(Driver::Onvif, &c), [Tier::Reach, Tier::Management, Tier::Stream, Tier::Sample]);
        let no_sample = SchedulerConfig { sample: None, ..c };
        assert_eq!(tiers_for(Driver::Rtsp, &no_sample), [Tier::Reach, Tier::Stream]);
    }
}

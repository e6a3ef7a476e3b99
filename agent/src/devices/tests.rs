//! Driver and scheduler tests against the protocol fakes in scs-testkit, over real sockets on
//! 127.0.0.1: the fakes verify credentials for real, so a wrong digest or token fails here as it
//! would on a camera.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use scs_testkit::fakes::onvif::{AuthMode, FakeOnvif, Misbehave, OnvifOpts, Prefixes};
use scs_testkit::fakes::rtsp::{FakeRtsp, RtspOpts};

use super::http::Limits;
use super::onvif::{Client, DEVICE_PATH};
use super::scheduler::{Scheduler, SchedulerConfig};
use super::{rtsp, Credentials, DeviceSpec, Driver, ErrorClass, StateCache, Tier};

const GOOD: Credentials<'static> = Credentials { user: "admin", pass: "cam-pass" };
const BAD: Credentials<'static> = Credentials { user: "admin", pass: "wrong" };

fn limits(timeout_ms: u64) -> Limits {
    Limits { timeout: Duration::from_millis(timeout_ms), ..Limits::default() }
}

fn management(
    fake: &FakeOnvif,
    creds: Credentials<'_>,
    timeout_ms: u64,
) -> Result<super::onvif::Management, super::onvif::OnvifError> {
    let mut c = Client::new(&fake.target(), Some(creds), limits(timeout_ms));
    smol::block_on(c.management(DEVICE_PATH))
}

#[test]
fn onvif_management_with_every_auth_mode_and_prefix_style() {
    for auth in [AuthMode::UsernameToken, AuthMode::Digest("MD5"), AuthMode::Digest("SHA-256"), AuthMode::Either] {
        for prefixes in [Prefixes::Usual, Prefixes::Gsoap, Prefixes::None] {
            let fake = FakeOnvif::start(OnvifOpts { auth, prefixes, ..OnvifOpts::default() });
            let m = management(&fake, GOOD, 5000).unwrap_or_else(|e| panic!("{auth:?} {prefixes:?}: {e}"));
            assert_eq!(m.identity.manufacturer, "FakeCam");
            assert_eq!(m.identity.model, "FC-1080");
            assert_eq!(m.identity.firmware, "V5.7.3 build 240101");
            assert_eq!(m.identity.serial, "FC1080-000123");
            assert_eq!(m.identity.hardware_id, "HW-1");
            assert!(m.clock_offset_s.abs() <= 1, "{}", m.clock_offset_s);
            // The XAddr names an unreachable factory IP: only its path is used.
            assert_eq!(m.media_path, "/onvif/Media");
            let tokens: Vec<_> = m.profiles.iter().map(|p| p.token.as_str()).collect();
            assert_eq!(tokens, ["main", "sub"]);
            assert_eq!(m.profiles.first().and_then(|p| p.width), Some(1920));
            let uris: Vec<_> = m.streams.iter().map(|s| s.uri.as_str()).collect();
            assert_eq!(uris, ["rtsp://127.0.0.1:554/main", "rtsp://127.0.0.1:554/sub"]);
            assert_eq!(m.snapshot_uri, Some(format!("http://{}/onvif/snapshot.jpg", fake.target())));
            assert_eq!(fake.stats.auth_failures.load(Ordering::SeqCst), 0, "{auth:?} {prefixes:?}");
        }
    }
}

#[test]
fn clock_five_minutes_off_is_measured_and_compensated() {
    for skew in [300, -300] {
        let fake = FakeOnvif::start(OnvifOpts { clock_skew_s: skew, ..OnvifOpts::default() });
        let m = management(&fake, GOOD, 5000).unwrap();
        assert!((m.clock_offset_s - skew).abs() <= 1, "offset {} for skew {skew}", m.clock_offset_s);
    }
    // Without compensation the same device rejects the token: the fake checks Created for real.
    let fake = FakeOnvif::start(OnvifOpts { clock_skew_s: 300, ..OnvifOpts::default() });
    let mut c = Client::new(&fake.target(), Some(GOOD), limits(5000));
    let e = smol::block_on(c.device_information(DEVICE_PATH)).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth, "{e}");
}

#[test]
fn missing_get_services_falls_back_to_get_capabilities() {
    for fault_status in [200, 400, 500] {
        let fake = FakeOnvif::start(OnvifOpts { no_get_services: true, fault_status, ..OnvifOpts::default() });
        let m = management(&fake, GOOD, 5000).unwrap();
        assert_eq!(m.media_path, "/onvif/Media");
        assert!(fake.stats.actions().iter().any(|a| a == "GetCapabilities"));
    }
}

#[test]
fn wrong_credentials_are_auth_whatever_the_fault_shape_and_tried_once() {
    for (fault_status, soap11) in [(200, false), (400, false), (500, false), (400, true), (500, true)] {
        let fake = FakeOnvif::start(OnvifOpts { fault_status, soap11_faults: soap11, ..OnvifOpts::default() });
        let e = management(&fake, BAD, 5000).unwrap_err();
        if soap11 {
            // SOAP 1.1 faults carry no subcode: an honest "fault", not a guess.
            assert!(matches!(e.class(), ErrorClass::Fault | ErrorClass::Auth), "{e}");
        } else {
            assert_eq!(e.class(), ErrorClass::Auth, "{fault_status}: {e}");
        }
        assert_eq!(fake.stats.auth_failures.load(Ordering::SeqCst), 1, "one bad login per round");
    }
    for alg in ["MD5", "SHA-256"] {
        let fake = FakeOnvif::start(OnvifOpts { auth: AuthMode::Digest(alg), ..OnvifOpts::default() });
        let e = management(&fake, BAD, 5000).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Auth, "{e}");
        assert_eq!(fake.stats.auth_failures.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn unknown_digest_algorithm_is_a_protocol_error() {
    let fake = FakeOnvif::start(OnvifOpts { auth: AuthMode::Digest("SHA-512-256"), ..OnvifOpts::default() });
    let e = management(&fake, GOOD, 5000).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Protocol, "{e}");
    assert_eq!(fake.stats.auth_failures.load(Ordering::SeqCst), 0, "no guessed login sent");
}

#[test]
fn hostile_devices_give_classified_results_in_bounded_time() {
    let cases = [
        (Misbehave::GarbageHttp, ErrorClass::Parse),
        (Misbehave::GarbageXml, ErrorClass::Parse),
        (Misbehave::Truncated, ErrorClass::Parse),
        (Misbehave::Huge, ErrorClass::Parse),
        (Misbehave::Slowloris, ErrorClass::Timeout),
        (Misbehave::RedirectLoop, ErrorClass::Protocol),
        (Misbehave::Silent, ErrorClass::Timeout),
    ];
    for (misbehave, want) in cases {
        let fake = FakeOnvif::start(OnvifOpts { misbehave, ..OnvifOpts::default() });
        let start = Instant::now();
        let e = management(&fake, GOOD, 1500).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.class(), want, "{misbehave:?}: {e}");
        assert!(took < Duration::from_millis(2500), "{misbehave:?} took {took:?}");
        // One request: the first failure ends the round.
        assert_eq!(fake.stats.requests.load(Ordering::SeqCst), 1, "{misbehave:?}");
    }
}

#[test]
fn refused_and_unresolvable_targets_are_classified() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = Client::new(&format!("127.0.0.1:{port}"), Some(GOOD), limits(2000));
    assert_eq!(smol::block_on(c.sync_clock(DEVICE_PATH)).unwrap_err().class(), ErrorClass::Refused);
    let mut c = Client::new("no-such-host.invalid:80", Some(GOOD), limits(5000));
    let class = smol::block_on(c.sync_clock(DEVICE_PATH)).unwrap_err().class();
    assert!(matches!(class, ErrorClass::Dns | ErrorClass::Timeout), "{class:?}");
}

#[test]
fn rtsp_describe_reads_codec_size_and_rate_with_digest() {
    let fake = FakeRtsp::start(RtspOpts::default());
    let v = smol::block_on(rtsp::describe(&fake.uri("main"), Some(GOOD), limits(3000))).unwrap();
    assert_eq!(v.codec, "H264");
    assert_eq!((v.width, v.height), (Some(1920), Some(1080)));
    assert_eq!(v.fps, Some(25.0));
    assert_eq!(v.control.as_deref(), Some(format!("{}/trackID=0", fake.uri("main")).as_str()));

    let e = smol::block_on(rtsp::describe(&fake.uri("main"), Some(BAD), limits(3000))).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth, "{e}");
    assert_eq!(fake.stats.auth_failures.load(Ordering::SeqCst), 1);
    let e = smol::block_on(rtsp::describe(&fake.uri("main"), None, limits(3000))).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth, "{e}");
    wait_closed(&fake);
}

fn wait_closed(fake: &FakeRtsp) {
    let start = Instant::now();
    while fake.stats.open.load(Ordering::SeqCst) != 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "connections left open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rtsp_sample_measures_fps_bitrate_and_loss_and_tears_down() {
    let fake = FakeRtsp::start(RtspOpts { fps: 25, drop_every: 10, ..RtspOpts::default() });
    let window = Duration::from_secs(2);
    let (_, m) = smol::block_on(rtsp::sample(&fake.uri("main"), Some(GOOD), limits(3000), window)).unwrap();
    assert!((m.fps - 25.0).abs() <= 2.5, "fps {}", m.fps);
    // 2 packets of 1012 bytes per frame: ~405 kbit/s at 25 fps (plus the skipped ones not sent).
    assert!(m.kbit_s > 300.0 && m.kbit_s < 500.0, "kbit/s {}", m.kbit_s);
    let expect_lost = m.packets / 9;
    assert!(m.lost.abs_diff(expect_lost) <= 2, "lost {} of {} packets", m.lost, m.packets);
    wait_closed(&fake);
    assert_eq!(fake.stats.teardowns.load(Ordering::SeqCst), 1);
}

#[test]
fn rtsp_server_that_sends_no_frames_is_a_failed_sample() {
    let fake = FakeRtsp::start(RtspOpts { no_frames: true, ..RtspOpts::default() });
    let start = Instant::now();
    let e = smol::block_on(rtsp::sample(&fake.uri("main"), Some(GOOD), limits(3000), Duration::from_secs(1))).unwrap_err();
    assert!(matches!(e, rtsp::RtspError::NoFrames { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(4));
    wait_closed(&fake);
    assert_eq!(fake.stats.teardowns.load(Ordering::SeqCst), 1);
}

fn fast_config() -> SchedulerConfig {
    SchedulerConfig {
        reach: Duration::from_millis(200),
        management: Duration::from_millis(400),
        stream: Duration::from_millis(400),
        sample: None,
        reach_timeout: Duration::from_millis(300),
        limits: limits(1000),
        max_backoff: Duration::from_secs(1),
        auth_backoff: Duration::from_secs(3600),
        ..SchedulerConfig::default()
    }
}

fn spec(id: &str, target: String, driver: Driver, pass: &str) -> DeviceSpec {
    DeviceSpec { id: id.into(), target, driver, username: Some("admin".into()), password: Some(pass.into()), rtsp_uri: None }
}

fn wait(cache: &StateCache, what: &str, f: impl Fn(&StateCache) -> bool) {
    let start = Instant::now();
    while !f(cache) {
        assert!(start.elapsed() < Duration::from_secs(15), "waiting for {what}: {:?}", cache.snapshot());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn scheduler_fills_the_cache_from_onvif_and_rtsp() {
    let rtsp = FakeRtsp::start(RtspOpts::default());
    let cam = FakeOnvif::start(OnvifOpts { rtsp_base: rtsp.base(), clock_skew_s: 120, ..OnvifOpts::default() });
    let cache = StateCache::default();
    let sched =
        Scheduler::start(vec![spec("cam-1", cam.target(), Driver::Onvif, "cam-pass")], fast_config(), cache.clone()).unwrap();
    wait(&cache, "identity, clock and a described stream", |c| {
        c.get("cam-1").is_some_and(|s| {
            s.identity.is_some() && s.streams.iter().any(|st| st.class == Some(ErrorClass::Ok) && st.width == Some(1920))
        })
    });
    let s = cache.get("cam-1").unwrap();
    assert_eq!(s.online(), Some(true));
    assert!(s.reach_rtt_ms.is_some());
    assert!((s.clock_offset_s.unwrap() - 120).abs() <= 1);
    assert_eq!(s.identity.unwrap().serial, "FC1080-000123");
    assert!(!s.auth_failed);
    drop(sched);
}

#[test]
fn wrong_password_backs_off_hard_and_never_retries_in_a_loop() {
    let cam = FakeOnvif::start(OnvifOpts::default());
    let cache = StateCache::default();
    let sched =
        Scheduler::start(vec![spec("cam-1", cam.target(), Driver::Onvif, "wrong")], fast_config(), cache.clone()).unwrap();
    wait(&cache, "auth failure", |c| c.get("cam-1").is_some_and(|s| s.auth_failed));
    // Many management intervals later, still exactly one bad login.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cam.stats.auth_failures.load(Ordering::SeqCst), 1);
    let s = cache.get("cam-1").unwrap();
    assert_eq!(s.last.get(Tier::Management.as_str()).map(|r| r.class), Some(ErrorClass::Auth));
    assert_eq!(s.online(), Some(true), "auth broken is not down");
    drop(sched);
}

#[test]
fn black_holed_devices_do_not_starve_a_healthy_one() {
    // 64 devices that accept and never answer, at the default concurrency (16): the healthy camera
    // still gets its management round within a few rounds of the black holes' timeouts.
    let holes: Vec<FakeOnvif> =
        (0..64).map(|_| FakeOnvif::start(OnvifOpts { misbehave: Misbehave::Silent, ..OnvifOpts::default() })).collect();
    let rtsp = FakeRtsp::start(RtspOpts::default());
    let cam = FakeOnvif::start(OnvifOpts { rtsp_base: rtsp.base(), ..OnvifOpts::default() });
    let mut specs: Vec<DeviceSpec> =
        holes.iter().enumerate().map(|(i, h)| spec(&format!("hole-{i}"), h.target(), Driver::Onvif, "cam-pass")).collect();
    specs.push(spec("cam-ok", cam.target(), Driver::Onvif, "cam-pass"));
    let cache = StateCache::default();
    let cfg = SchedulerConfig { concurrency: 16, ..fast_config() };
    let sched = Scheduler::start(specs, cfg, cache.clone()).unwrap();
    wait(&cache, "healthy camera identity", |c| c.get("cam-ok").is_some_and(|s| s.identity.is_some()));
    wait(&cache, "black holes classified as timeouts", |c| {
        c.snapshot().values().any(|s| s.last.get(Tier::Management.as_str()).is_some_and(|r| r.class == ErrorClass::Timeout))
    });
    // Reach is not queued behind the black holes' sessions: every device keeps a fresh online state.
    let fresh = crate::clock::now_ms().saturating_sub(2000);
    wait(&cache, "every device reached in the last 2 s", |c| {
        let snap = c.snapshot();
        snap.len() == 65 && snap.values().all(|s| s.last.get(Tier::Reach.as_str()).is_some_and(|r| r.ts_ms >= fresh))
    });
    // The telemetry collector reads the cache: 65 devices, 64 of them hanging, cost no waiting.
    let configs: Vec<crate::config::DeviceConfig> = (0..64)
        .map(|i| format!("hole-{i}"))
        .chain(["cam-ok".to_owned()])
        .map(|id| crate::config::DeviceConfig {
            id,
            device_type: "CAMERA".into(),
            address: Some("127.0.0.1:1".into()),
            ..Default::default()
        })
        .collect();
    let mut collector = crate::collect::devices::Devices::new(&configs, cache.clone());
    let start = Instant::now();
    let mut report = crate::collect::Report::default();
    crate::collect::Collector::collect(&mut collector, &mut report).unwrap();
    assert!(start.elapsed() < Duration::from_millis(50), "collect took {:?}", start.elapsed());
    assert_eq!(report.children.len(), 65);
    drop(sched);
}

#[test]
fn unicast_ws_discovery_in_both_dialects_dedupes_by_endpoint() {
    use super::wsdiscovery::{unicast_probe, Dialect};
    use scs_testkit::fakes::wsdiscovery::{DiscoveryOpts, FakeDiscovery};
    for (dialect_2009, dialect) in [(false, Dialect::V2005), (true, Dialect::V2009)] {
        for metadata_version in [Some(3), None] {
            let fake =
                FakeDiscovery::start(DiscoveryOpts { dialect_2009, metadata_version, repeats: 3, ..DiscoveryOpts::default() });
            let found = smol::block_on(unicast_probe(fake.addr(), dialect, Duration::from_millis(500))).unwrap();
            assert_eq!(found.len(), 1, "three identical answers, one device: {found:?}");
            let m = found.first().unwrap();
            assert_eq!(m.endpoint, "urn:uuid:4f1a2b3c-0000-4000-8000-00408c123456");
            assert_eq!(m.xaddrs, ["http://192.0.2.1/onvif/device_service", "http://127.0.0.1:8080/onvif/device_service"]);
            assert!(m.types.iter().any(|t| t.ends_with("NetworkVideoTransmitter")));
            assert!(m.scopes.contains(&"onvif://www.onvif.org/hardware/FC-1080".to_owned()));
            assert_eq!(m.metadata_version, metadata_version);
        }
    }
    // Nobody answers: a timeout, in bounded time.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let e = smol::block_on(unicast_probe(silent.local_addr().unwrap(), Dialect::V2005, Duration::from_millis(300))).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Timeout);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn hikvision_isapi_identity_status_and_disks_with_digest() {
    use super::hikvision::Client as Isapi;
    use scs_testkit::fakes::isapi::{FakeIsapi, IsapiOpts};
    let nvr = FakeIsapi::start(IsapiOpts::default());
    let creds = Credentials { user: "admin", pass: "nvr-pass" };
    let mut c = Isapi::new(&nvr.target(), Some(creds), limits(3000));
    let id = smol::block_on(c.device_info()).unwrap();
    assert_eq!(id.model, "DS-7608NI-K2/8P");
    assert_eq!(id.firmware, "V4.30.085 build 210528");
    assert!(id.serial.starts_with("DS-7608NI"));
    let st = smol::block_on(c.status()).unwrap();
    assert_eq!((st.cpu_pct, st.uptime_s), (Some(17.0), Some(86_400)));
    assert_eq!((st.mem_used_mb, st.mem_free_mb), (Some(210.5), Some(301.5)));
    let hdds = smol::block_on(c.storage()).unwrap();
    let summary: Vec<_> = hdds.iter().map(|h| (h.id.as_str(), h.status.as_str(), h.free_mb)).collect();
    assert_eq!(summary, [("1", "ok", Some(120_000)), ("2", "error", Some(0))]);
    assert_eq!(nvr.auth_failures.load(Ordering::SeqCst), 0, "digest state reused with increasing nc");

    let mut bad = Isapi::new(&nvr.target(), Some(BAD), limits(3000));
    let e = smol::block_on(bad.device_info()).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth, "{e}");
    assert_eq!(nvr.auth_failures.load(Ordering::SeqCst), 1);
}

#[test]
fn scheduler_reads_an_isapi_nvr_and_the_collector_reports_its_disks() {
    use scs_testkit::fakes::isapi::{FakeIsapi, IsapiOpts};
    let nvr = FakeIsapi::start(IsapiOpts::default());
    let cache = StateCache::default();
    let sched =
        Scheduler::start(vec![spec("nvr-1", nvr.target(), Driver::Hikvision, "nvr-pass")], fast_config(), cache.clone()).unwrap();
    wait(&cache, "NVR identity and disks", |c| c.get("nvr-1").is_some_and(|s| s.identity.is_some() && s.hdds.len() == 2));
    let cfg = crate::config::DeviceConfig {
        id: "nvr-1".into(),
        device_type: "NVR".into(),
        address: Some(nvr.target()),
        ..Default::default()
    };
    let mut collector = crate::collect::devices::Devices::new(&[cfg], cache.clone());
    let mut report = crate::collect::Report::default();
    crate::collect::Collector::collect(&mut collector, &mut report).unwrap();
    let m = &report.children.first().unwrap().metrics;
    let v = |n: &str, l: Option<&str>| crate::collect::fixture::value(m, n, l);
    assert_eq!(v("device.online", None), Some(1.0));
    assert_eq!(v("device.cpu_pct", None), Some(17.0));
    assert_eq!(v("device.uptime_secs", None), Some(86_400.0));
    assert_eq!(v("nvr.hdd_ok", Some("1")), Some(1.0));
    assert_eq!(v("nvr.hdd_ok", Some("2")), Some(0.0));
    assert_eq!(v("nvr.disk_used_pct", Some("1")), Some(96.9));
    assert_eq!(v("device.probe_class", Some("management")), Some(0.0));
    assert_eq!(v("device.auth_ok", None), Some(1.0));
    drop(sched);
}

#[test]
fn config_driver_is_validated_and_the_password_never_printed() {
    let text = |driver: &str| {
        format!("gateway_id = \"gw\"\n[[devices]]\nid = \"cam-1\"\ntype = \"CAMERA\"\naddress = \"127.0.0.1:80\"\ndriver = \"{driver}\"\nusername = \"u\"\npassword = \"pw-cam\"\n")
    };
    for d in ["onvif", "hikvision", "dahua", "rtsp", "auto"] {
        let cfg = crate::config::parse(&text(d)).unwrap();
        crate::config::validate(&cfg).unwrap();
        assert!(crate::config::unknown_keys(&text(d)).is_empty());
        let d0 = cfg.devices.first().unwrap();
        let spec = DeviceSpec::from_config(d0, Driver::parse(d0.driver.as_deref().unwrap()).unwrap()).unwrap();
        assert!(!format!("{spec:?}").contains("pw-cam"));
        assert!(!crate::config::redacted_toml(&cfg).contains("pw-cam"));
    }
    let cfg = crate::config::parse(&text("axis")).unwrap();
    let e = crate::config::validate(&cfg).unwrap_err().to_string();
    assert!(e.contains("cam-1") && e.contains("driver"), "{e}");
}

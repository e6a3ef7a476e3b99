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
    assert_eq!(s.last(Tier::Management).map(|r| r.class), Some(ErrorClass::Auth));
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
        c.snapshot().values().any(|s| s.last(Tier::Management).is_some_and(|r| r.class == ErrorClass::Timeout))
    });
    // Reach is not queued behind the black holes' sessions: every device keeps a fresh online state.
    let fresh = crate::clock::now_ms().saturating_sub(2000);
    wait(&cache, "every device reached in the last 2 s", |c| {
        let snap = c.snapshot();
        snap.len() == 65 && snap.values().all(|s| s.last(Tier::Reach).is_some_and(|r| r.ts_ms >= fresh))
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

const DAHUA: Credentials<'static> = Credentials { user: "admin", pass: "dahua-pass" };

#[test]
fn dahua_cgi_identity_disks_and_channels_with_digest() {
    use super::dahua::Client as Dahua;
    use scs_testkit::fakes::dahua::{DahuaOpts, FakeDahua};
    for garbage_lines in [false, true] {
        let nvr = FakeDahua::start(DahuaOpts { garbage_lines, ..DahuaOpts::default() });
        let mut c = Dahua::new(&nvr.target(), Some(DAHUA), limits(3000));
        let id = smol::block_on(c.identity()).unwrap();
        assert_eq!(id.manufacturer, "Dahua");
        assert_eq!(id.model, "DHI-NVR4208-8P-4KS2");
        assert_eq!(id.serial, "6J0ABCD123456");
        assert_eq!(id.firmware, "4.001.0000000.3,build:2023-05-10");
        assert_eq!(id.hardware_id, "NVR-Lobby");
        let hdds = smol::block_on(c.storage()).unwrap();
        let got: Vec<_> = hdds.iter().map(|h| (h.id.as_str(), h.status.as_str(), h.capacity_mb, h.free_mb)).collect();
        assert_eq!(
            got,
            [("/dev/sda", "ok", Some(3_814_697), Some(2_861_023)), ("/dev/sdb", "ok", Some(1_907_349), Some(1_907_349))]
        );
        let ch = smol::block_on(c.channels()).unwrap();
        let got: Vec<_> = ch.iter().map(|c| (c.id.as_str(), c.online, c.recording)).collect();
        assert_eq!(got, [("1", Some(true), Some(true)), ("2", Some(false), Some(true)), ("3", Some(true), Some(false))]);
        assert_eq!(nvr.stats.auth_failures.load(Ordering::SeqCst), 0, "digest reused with increasing nc");
    }
    // A camera: no machine name, no NVR CGIs; neither is a failure.
    let cam = FakeDahua::start(DahuaOpts { channels: Vec::new(), no_machine_name: true, ..DahuaOpts::default() });
    let mut c = Dahua::new(&cam.target(), Some(DAHUA), limits(3000));
    assert_eq!(smol::block_on(c.identity()).unwrap().hardware_id, "");
    assert!(smol::block_on(c.channels()).unwrap().is_empty());
    assert!(smol::block_on(c.storage()).unwrap_err().is_absent());
    // Wrong password: auth, one bad login.
    let mut bad = Dahua::new(&cam.target(), Some(BAD), limits(3000));
    let e = smol::block_on(bad.identity()).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth, "{e}");
    assert_eq!(cam.stats.auth_failures.load(Ordering::SeqCst), 1);
    let mut none = Dahua::new(&cam.target(), None, limits(3000));
    assert_eq!(smol::block_on(none.identity()).unwrap_err().class(), ErrorClass::Auth);
}

#[test]
fn hikvision_isapi_channels_online_and_recording() {
    use super::hikvision::Client as Isapi;
    use scs_testkit::fakes::isapi::{FakeIsapi, IsapiOpts};
    let nvr = FakeIsapi::start(IsapiOpts::default());
    let mut c = Isapi::new(&nvr.target(), Some(Credentials { user: "admin", pass: "nvr-pass" }), limits(3000));
    let ch = smol::block_on(c.channels()).unwrap();
    let got: Vec<_> = ch.iter().map(|c| (c.id.as_str(), c.online, c.recording)).collect();
    assert_eq!(got, [("1", Some(true), Some(true)), ("2", Some(false), Some(true)), ("3", Some(true), Some(false))]);
    let cam = FakeIsapi::start(IsapiOpts { channels: Vec::new(), ..IsapiOpts::default() });
    let mut c = Isapi::new(&cam.target(), Some(Credentials { user: "admin", pass: "nvr-pass" }), limits(3000));
    assert!(smol::block_on(c.channels()).unwrap().is_empty(), "a camera has no channels");
}

#[test]
fn onvif_profile_g_counts_recordings_with_and_without_get_services() {
    for no_get_services in [false, true] {
        let nvr = FakeOnvif::start(OnvifOpts { recordings: Some(7), no_get_services, ..OnvifOpts::default() });
        let mut c = Client::new(&nvr.target(), Some(GOOD), limits(3000));
        smol::block_on(c.sync_clock(DEVICE_PATH)).unwrap();
        let (search, rec) = smol::block_on(c.recording_services(DEVICE_PATH)).unwrap();
        assert_eq!((search.as_deref(), rec.as_deref()), (Some("/onvif/search_service"), Some("/onvif/recording_service")));
        assert_eq!(smol::block_on(c.recording_count(DEVICE_PATH)).unwrap(), Some(7));
        assert!(nvr.stats.actions().iter().any(|a| a == "GetRecordingSummary"));
    }
    let cam = FakeOnvif::start(OnvifOpts::default());
    let mut c = Client::new(&cam.target(), Some(GOOD), limits(3000));
    assert_eq!(smol::block_on(c.recording_count(DEVICE_PATH)).unwrap(), None, "a camera records nothing");
}

fn collect_one(cache: &StateCache, id: &str, target: String) -> crate::collect::Report {
    let cfg =
        crate::config::DeviceConfig { id: id.into(), device_type: "NVR".into(), address: Some(target), ..Default::default() };
    let mut collector = crate::collect::devices::Devices::new(&[cfg], cache.clone());
    let mut report = crate::collect::Report::default();
    crate::collect::Collector::collect(&mut collector, &mut report).unwrap();
    report
}

#[test]
fn auto_driver_finds_dahua_and_the_collector_reports_its_nvr_metrics() {
    use scs_testkit::fakes::dahua::{DahuaOpts, FakeDahua};
    let nvr = FakeDahua::start(DahuaOpts::default());
    let cache = StateCache::default();
    let sched =
        Scheduler::start(vec![spec("nvr-1", nvr.target(), Driver::Auto, "dahua-pass")], fast_config(), cache.clone()).unwrap();
    wait(&cache, "auto settled on Dahua", |c| c.get("nvr-1").is_some_and(|s| s.resolved_driver == Some(Driver::Dahua)));
    wait(&cache, "channels", |c| c.get("nvr-1").is_some_and(|s| s.channels.len() == 3));
    let r = collect_one(&cache, "nvr-1", nvr.target());
    let m = &r.children.first().unwrap().metrics;
    let v = |n: &str, l: Option<&str>| crate::collect::fixture::value(m, n, l);
    assert_eq!(v("nvr.hdd_ok", Some("/dev/sda")), Some(1.0));
    assert_eq!(v("nvr.hdd_capacity_bytes", Some("/dev/sda")), Some(3_814_697.0 * 1_048_576.0));
    assert_eq!(v("nvr.hdd_free_bytes", Some("/dev/sdb")), Some(1_907_349.0 * 1_048_576.0));
    assert_eq!(v("nvr.channel_online", Some("1")), Some(1.0));
    assert_eq!(v("nvr.channel_online", Some("2")), Some(0.0));
    assert_eq!(v("nvr.recording", Some("3")), Some(0.0));
    assert_eq!(v("device.auth_ok", None), Some(1.0));
    // Once resolved, a round asks Dahua only.
    let before = nvr.stats.requests.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(nvr.stats.requests.load(Ordering::SeqCst) > before, "still probed");
    // ISAPI was tried once (404 here) before Dahua answered; after that only Dahua CGIs.
    let paths = nvr.paths();
    assert_eq!(paths.iter().filter(|p| !p.starts_with("/cgi-bin/")).collect::<Vec<_>>(), ["/ISAPI/System/deviceInfo"]);
    assert_eq!(paths.first().map(String::as_str), Some("/ISAPI/System/deviceInfo"), "{paths:?}");
    assert_eq!(nvr.stats.auth_failures.load(Ordering::SeqCst), 0);
    drop(sched);
}

#[test]
fn auto_driver_finds_onvif_first_and_isapi_when_onvif_is_absent() {
    use scs_testkit::fakes::isapi::{FakeIsapi, IsapiOpts};
    let cam = FakeOnvif::start(OnvifOpts { recordings: Some(3), ..OnvifOpts::default() });
    let nvr = FakeIsapi::start(IsapiOpts { pass: "cam-pass".into(), ..IsapiOpts::default() });
    let cache = StateCache::default();
    let specs =
        vec![spec("cam-1", cam.target(), Driver::Auto, "cam-pass"), spec("nvr-1", nvr.target(), Driver::Auto, "cam-pass")];
    let sched = Scheduler::start(specs, fast_config(), cache.clone()).unwrap();
    wait(&cache, "both resolved", |c| {
        c.get("cam-1").is_some_and(|s| s.resolved_driver == Some(Driver::Onvif))
            && c.get("nvr-1").is_some_and(|s| s.resolved_driver == Some(Driver::Hikvision))
    });
    let cam_state = cache.get("cam-1").unwrap();
    assert_eq!(cam_state.recordings, Some(3), "Profile G on an ONVIF recorder");
    let r = collect_one(&cache, "cam-1", cam.target());
    assert_eq!(crate::collect::fixture::value(&r.children[0].metrics, "nvr.recordings", None), Some(3.0));
    wait(&cache, "ISAPI channels", |c| c.get("nvr-1").is_some_and(|s| s.channels.len() == 3));
    assert_eq!(nvr.auth_failures.load(Ordering::SeqCst), 0);
    drop(sched);
}

#[test]
fn scheduler_reports_a_replaced_nvr_a_failed_disk_and_auth_changes_as_events() {
    use scs_protocol::EventKind;
    use scs_testkit::fakes::dahua::{DahuaOpts, FakeDahua};
    let nvr = FakeDahua::start(DahuaOpts::default());
    let cache = StateCache::default();
    let cfg = SchedulerConfig { auth_backoff: Duration::from_millis(300), ..fast_config() };
    let sched = Scheduler::start(vec![spec("nvr-1", nvr.target(), Driver::Dahua, "dahua-pass")], cfg, cache.clone()).unwrap();
    wait(&cache, "identity", |c| c.get("nvr-1").is_some_and(|s| s.identity.is_some()));
    assert!(cache.drain_events(64).is_empty(), "first sight is the baseline");
    nvr.set(|o| {
        o.serial = "6J0NEW0000001".into();
        if let Some(d) = o.hdds.get_mut(1) {
            d.state = "Error".into();
        }
    });
    let mut seen = Vec::new();
    let start = Instant::now();
    while !(seen.iter().any(|e: &scs_protocol::DeviceEvent| e.kind == EventKind::REPLACED)
        && seen.iter().any(|e| e.kind == EventKind::HDD_FAILED))
    {
        assert!(start.elapsed() < Duration::from_secs(10), "events: {seen:?}");
        seen.extend(cache.drain_events(64));
        std::thread::sleep(Duration::from_millis(50));
    }
    let replaced = seen.iter().find(|e| e.kind == EventKind::REPLACED).unwrap();
    assert_eq!(replaced.sensor, "nvr-1");
    let a = replaced.attrs.as_ref().unwrap();
    assert_eq!((a["old"].as_str(), a["new"].as_str()), ("6J0ABCD123456", "6J0NEW0000001"));
    let hdd = seen.iter().find(|e| e.kind == EventKind::HDD_FAILED).unwrap();
    assert_eq!(hdd.attrs.as_ref().unwrap()["hdd"], "/dev/sdb");
    // Credentials changed on the device, then changed back.
    nvr.set(|o| o.pass = "rotated".into());
    wait(&cache, "auth failure", |c| c.get("nvr-1").is_some_and(|s| s.auth_failed));
    nvr.set(|o| o.pass = "dahua-pass".into());
    wait(&cache, "auth back", |c| c.get("nvr-1").is_some_and(|s| !s.auth_failed));
    let kinds: Vec<String> = cache.drain_events(64).into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == EventKind::AUTH_BROKEN).count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == EventKind::AUTH_RESTORED).count(), 1, "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == EventKind::REPLACED), "reported once: {kinds:?}");
    drop(sched);
}

#[test]
fn multicast_ws_discovery_on_loopback_in_both_dialects() {
    use super::wsdiscovery::{multicast_probe_to, MULTICAST_V4};
    use scs_testkit::fakes::wsdiscovery::{DiscoveryOpts, FakeDiscovery};
    use std::net::{Ipv4Addr, SocketAddrV4};
    let lo = Ipv4Addr::LOCALHOST;
    // Two devices (one per port), each speaking one dialect; the first answers three times.
    let a = FakeDiscovery::start_multicast(
        DiscoveryOpts { repeats: 3, only_own_dialect: true, ..DiscoveryOpts::default() },
        MULTICAST_V4,
        lo,
    );
    let group = SocketAddrV4::new(MULTICAST_V4, a.port());
    let found = smol::block_on(multicast_probe_to(group, lo, 1, Duration::from_millis(500))).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].xaddrs.len(), 2);
    let b = FakeDiscovery::start_multicast(
        DiscoveryOpts {
            dialect_2009: true,
            only_own_dialect: true,
            endpoint: "urn:uuid:22222222-0000-4000-8000-000000000002".into(),
            xaddrs: vec!["http://127.0.0.1:8081/onvif/device_service".into()],
            ..DiscoveryOpts::default()
        },
        MULTICAST_V4,
        lo,
    );
    let group_b = SocketAddrV4::new(MULTICAST_V4, b.port());
    let found = smol::block_on(multicast_probe_to(group_b, lo, 1, Duration::from_millis(500))).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].endpoint, "urn:uuid:22222222-0000-4000-8000-000000000002");
    assert_eq!(a.probes.load(Ordering::SeqCst), 2, "one probe per dialect reached the first responder");
    assert_eq!(b.probes.load(Ordering::SeqCst), 2);
    // Nobody on the group: an empty result in bounded time, not an error.
    let start = Instant::now();
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let none =
        smol::block_on(multicast_probe_to(SocketAddrV4::new(MULTICAST_V4, free), lo, 1, Duration::from_millis(300))).unwrap();
    assert!(none.is_empty());
    assert!(start.elapsed() < Duration::from_secs(2));
}

//! Targeted device commands end to end with the real binaries and the camera/NVR fakes on 127.0.0.1:
//! API -> command session -> MQTT -> agent -> fake device -> upload -> tokenized download, the bytes
//! compared with what the fake served. Covers `camera.snapshot` (ONVIF and Dahua cameras),
//! `nvr.clip_export` (ISAPI recorder, several MB streamed; Dahua by time and by file search; ONVIF
//! Profile G replay written as H.264 Annex-B), `camera.reboot` seen as a drop and a return (ONVIF, ISAPI
//! and Dahua),
//! `device.probe`, `site.discover` (unicast WS-Discovery responder) and `site.adopt` (the adopted camera
//! appears under its gateway with metrics, without an agent restart); and the shim's 400 for a target
//! that is not a child of the gateway or not of a class the command accepts.

use std::time::Duration;

use scs_testkit::fakes::isapi::{FakeIsapi, IsapiOpts};
use scs_testkit::fakes::onvif::{FakeOnvif, OnvifOpts};
use scs_testkit::fakes::wsdiscovery::{DiscoveryOpts, FakeDiscovery};
use scs_testkit::{wait_for, Agent, Api, Shim, ShimOpts};
use serde_json::{json, Value};

fn client() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

fn download(shim: &Shim, url: &str) -> Vec<u8> {
    let url = if url.starts_with("http") { url.to_string() } else { shim.url(url) };
    let mut resp = client().get(&url).call().expect("GET artifact");
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    resp.body_mut().with_config().limit(u64::MAX).read_to_vec().expect("body")
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a command and waits for its terminal state; panics unless it is `want`.
fn run(api: &Api, gw: &str, body: Value, want: &str, timeout: Duration) -> Value {
    let created = api.post_json(&format!("/v1/gateways/{gw}/commands"), &body);
    assert!(created.is_success(), "create {body}: {} {}", created.status, created.text());
    let c = created.json();
    assert_eq!(c["target"], body["target"], "target stored and shown: {c}");
    let id = c["id"].as_str().expect("id").to_string();
    let done: Value = wait_for(timeout, &format!("{body} to finish"), || {
        let c = api.get_json(&format!("/v1/commands/{id}"));
        c["terminal"].as_bool().unwrap_or(false).then_some(c)
    });
    assert_eq!(done["state"], want, "{done}");
    done
}

fn artifact_bytes(shim: &Shim, cmd: &Value) -> Vec<u8> {
    let arts = cmd["artifacts"].as_array().unwrap_or_else(|| panic!("no artifacts: {cmd}"));
    assert_eq!(arts.len(), 1, "{cmd}");
    let a = &arts[0];
    let bytes = download(shim, a["url"].as_str().unwrap_or_else(|| panic!("no url: {a}")));
    assert_eq!(bytes.len() as u64, a["size"].as_u64().expect("size"));
    assert_eq!(sha256_hex(&bytes), a["sha256"].as_str().expect("sha"));
    bytes
}

fn refused(api: &Api, gw: &str, body: Value, naming: &str) {
    let r = api.post_json(&format!("/v1/gateways/{gw}/commands"), &body);
    assert_eq!(r.status, 400, "{body}: {}", r.text());
    let e = r.json();
    assert_eq!(e["field"], "target", "{e}");
    assert!(e["error"].as_str().unwrap_or("").contains(naming), "{e} should name {naming}");
}

#[test]
fn device_commands_through_api_mqtt_agent_and_fakes() {
    let cam = FakeOnvif::start(OnvifOpts { reboot_down_ms: 2500, clock_skew_s: 90, ..OnvifOpts::default() });
    let nvr = FakeIsapi::start(IsapiOpts::default());
    let adoptee = FakeOnvif::start(OnvifOpts { serial: "FC1080-ADOPTED".into(), ..OnvifOpts::default() });
    // Answers twice, and names a dead interface first, as field devices do.
    let disco = FakeDiscovery::start(DiscoveryOpts {
        xaddrs: vec!["http://192.0.2.1/onvif/device_service".into(), format!("http://{}/onvif/device_service", adoptee.target())],
        repeats: 2,
        ..DiscoveryOpts::default()
    });
    let shim = Shim::start(ShimOpts::default());
    let gw = "gw-devcmd-1";
    let mut opts = shim.agent_opts(gw);
    opts.config_toml = Some(format!(
        "[[devices]]\nid = \"cam-1\"\ntype = \"CAMERA\"\naddress = \"{}\"\ndriver = \"onvif\"\nusername = \"admin\"\npassword = \"cam-pass\"\n\
         [[devices]]\nid = \"nvr-1\"\ntype = \"NVR\"\naddress = \"{}\"\ndriver = \"hikvision\"\nusername = \"admin\"\npassword = \"nvr-pass\"\n",
        cam.target(),
        nvr.target()
    ));
    let agent = Agent::start(opts);
    let api = shim.api();
    wait_for(Duration::from_secs(30), "children announced", || {
        let s = api.get_json(&format!("/v1/sensors?parentSensorId={gw}")).to_string();
        (s.contains("cam-1") && s.contains("nvr-1")).then_some(())
    });

    // Targets the shim refuses, naming the target.
    refused(&api, gw, json!({"type": "camera.snapshot", "target": "cam-elsewhere"}), "cam-elsewhere");
    refused(&api, gw, json!({"type": "camera.snapshot", "target": "nvr-1"}), "nvr-1");
    refused(&api, gw, json!({"type": "camera.snapshot"}), "name the target");
    refused(&api, gw, json!({"type": "device.info", "target": "cam-1"}), "cam-1");
    // Another gateway's child is not this gateway's.
    refused(&api, "gw-devcmd-other", json!({"type": "camera.snapshot", "target": "cam-1"}), "cam-1");

    // Snapshot: the fake's JPEG, byte for byte, with the device clock offset (the fake runs 90 s ahead).
    let snap =
        run(&api, gw, json!({"type": "camera.snapshot", "target": "cam-1", "params": {}}), "succeeded", Duration::from_secs(60));
    println!("snapshot: {}", snap["result"]);
    assert_eq!(artifact_bytes(&shim, &snap), cam.snapshot_jpeg());
    assert_eq!(snap["result"]["method"], "onvif");
    let off = snap["result"]["clockOffsetSecs"].as_i64().unwrap_or_else(|| panic!("no clock offset: {snap}"));
    assert!((88..=92).contains(&off), "clock offset {off}");
    let hist = api.get_json(&format!("/v1/gateways/{gw}/commands"));
    assert_eq!(hist["commands"][0]["target"], "cam-1", "history shows the target");

    // Clip export: several MB streamed from the recorder, the same bytes downloaded.
    let clip = run(
        &api,
        gw,
        json!({"type": "nvr.clip_export", "target": "nvr-1",
               "params": {"channel": 1, "from": "2026-12-06T10:01:00Z", "to": "2026-12-06T10:03:00Z"}}),
        "succeeded",
        Duration::from_secs(120),
    );
    println!("clip: {}", clip["result"]);
    let want = IsapiOpts::default().recording.bytes();
    let got = artifact_bytes(&shim, &clip);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "clip bytes differ");
    // No recording in that span: a clear failure.
    let none = run(
        &api,
        gw,
        json!({"type": "nvr.clip_export", "target": "nvr-1",
               "params": {"channel": 2, "from": "2026-12-06T10:01:00Z", "to": "2026-12-06T10:03:00Z"}}),
        "failed",
        Duration::from_secs(60),
    );
    assert!(none["error"].as_str().unwrap_or("").contains("no recording of channel 2"), "{none}");

    // Full probe of the recorder.
    let probe = run(&api, gw, json!({"type": "device.probe", "target": "nvr-1"}), "succeeded", Duration::from_secs(60));
    println!("probe: {}", probe["result"]);
    assert_eq!(probe["result"]["tiers"]["management"]["class"], "ok", "{probe}");
    assert_eq!(probe["result"]["identity"]["serialNumber"], IsapiOpts::default().serial);
    assert_eq!(probe["result"]["hdds"].as_array().map(Vec::len), Some(2));

    // Reboots: the device drops off and comes back; both times in the result.
    for (target, fake_boots) in [("cam-1", &cam.power.boots), ("nvr-1", &nvr.power.boots)] {
        let r = run(
            &api,
            gw,
            json!({"type": "camera.reboot", "target": target, "confirm": true, "params": {"waitSecs": 30}}),
            "succeeded",
            Duration::from_secs(60),
        );
        println!("reboot {target}: {}", r["result"]);
        let res = &r["result"];
        assert_eq!((res["dropped"].as_bool(), res["cameBack"].as_bool()), (Some(true), Some(true)), "{r}");
        let (d, b) = (res["droppedAt"].as_u64().expect("droppedAt"), res["backAt"].as_u64().expect("backAt"));
        assert!(b > d && b - d >= 1500, "down {} ms", b - d);
        assert_eq!(fake_boots.load(std::sync::atomic::Ordering::SeqCst), 1);
        let msg = res["message"].as_str().unwrap_or("");
        assert!(msg == "Rebooting in 1 second" || msg == "OK", "device message: {r}");
    }

    // Discovery by unicast, identity read with the credentials of a configured camera.
    let found = run(
        &api,
        gw,
        json!({"type": "site.discover", "params": {"addresses": [disco.addr().to_string()], "timeoutMs": 800, "credentialsFrom": "cam-1"}}),
        "succeeded",
        Duration::from_secs(30),
    );
    println!("discover: {}", found["result"]);
    let devs = found["result"]["devices"].as_array().expect("devices");
    assert_eq!(devs.len(), 1, "deduplicated by endpoint: {found}");
    assert!(devs[0]["xaddrs"].to_string().contains(&adoptee.target()), "{found}");
    assert_eq!(devs[0]["identity"]["serialNumber"], "FC1080-ADOPTED", "{found}");

    // Adoption: announced and probed without a restart.
    run(
        &api,
        gw,
        json!({"type": "site.adopt", "params": {"id": "cam-9", "type": "CAMERA", "address": adoptee.target(),
               "driver": "onvif", "credentialsFrom": "cam-1", "name": "Adopted door"}}),
        "succeeded",
        Duration::from_secs(30),
    );
    wait_for(Duration::from_secs(30), "adopted camera announced", || {
        let s = api.get_json(&format!("/v1/sensors?parentSensorId={gw}")).to_string();
        s.contains("cam-9").then_some(())
    });
    wait_for(Duration::from_secs(30), "adopted camera metrics", || {
        let m = api.get_json("/v1/sensors/cam-9/metrics?name=device.online").to_string();
        m.contains("device.online").then_some(())
    });
    // And a command can target it at once.
    let snap9 = run(&api, gw, json!({"type": "camera.snapshot", "target": "cam-9"}), "succeeded", Duration::from_secs(60));
    assert_eq!(artifact_bytes(&shim, &snap9), adoptee.snapshot_jpeg());
    drop(agent);
}

/// Dahua commands (snapshot of a camera, its reboot seen as a drop and a return, clip export by time
/// and by file search) and the ONVIF Profile G replay export (an ONVIF-only recorder: the clip is the
/// H.264 Annex-B stream its replay server sent, NAL unit for NAL unit).
#[test]
fn dahua_commands_and_onvif_replay_export_end_to_end() {
    use scs_testkit::fakes::dahua::{DahuaOpts, FakeDahua};
    use scs_testkit::fakes::rtsp_replay::{FakeReplay, ReplayOpts};

    let dcam = FakeDahua::start(DahuaOpts { channels: vec![], reboot_down_ms: 2500, ..DahuaOpts::default() });
    let dnvr = FakeDahua::start(DahuaOpts::default());
    let replay = FakeReplay::start(ReplayOpts::default());
    let onvr = FakeOnvif::start(OnvifOpts { recordings: Some(2), rtsp_base: replay.base(), ..OnvifOpts::default() });
    let shim = Shim::start(ShimOpts::default());
    let gw = "gw-devcmd-2";
    let mut opts = shim.agent_opts(gw);
    let dev = |id: &str, ty: &str, addr: String, driver: &str, pass: &str| {
        format!(
            "[[devices]]\nid = \"{id}\"\ntype = \"{ty}\"\naddress = \"{addr}\"\ndriver = \"{driver}\"\nusername = \"admin\"\npassword = \"{pass}\"\n"
        )
    };
    opts.config_toml = Some(
        dev("dcam-1", "CAMERA", dcam.target(), "dahua", "dahua-pass")
            + &dev("dnvr-1", "NVR", dnvr.target(), "dahua", "dahua-pass")
            + &dev("onvr-1", "NVR", onvr.target(), "onvif", "cam-pass"),
    );
    let agent = Agent::start(opts);
    let api = shim.api();
    wait_for(Duration::from_secs(30), "children announced", || {
        let s = api.get_json(&format!("/v1/sensors?parentSensorId={gw}")).to_string();
        (s.contains("dcam-1") && s.contains("dnvr-1") && s.contains("onvr-1")).then_some(())
    });

    // Dahua snapshot: the camera's JPEG (a real test card), byte for byte.
    let snap = run(&api, gw, json!({"type": "camera.snapshot", "target": "dcam-1"}), "succeeded", Duration::from_secs(60));
    println!("dahua snapshot: {}", snap["result"]);
    let jpeg = artifact_bytes(&shim, &snap);
    assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]), "not a whole JPEG");
    assert_eq!(jpeg, FakeDahua::picture(1));
    assert_eq!(snap["result"]["method"], "dahua");

    // Dahua clip by time, then on firmware without it by file search: the recorder's bytes both times.
    let span = json!({"channel": 1, "from": "2026-12-06T10:01:00Z", "to": "2026-12-06T10:03:00Z"});
    let want = DahuaOpts::default().recording.bytes();
    for (quirk, method, ext) in [(false, "dahua", ".dav"), (true, "dahua-file", ".dav")] {
        dnvr.set(|o| o.no_load_by_time = quirk);
        let clip = run(
            &api,
            gw,
            json!({"type": "nvr.clip_export", "target": "dnvr-1", "params": span}),
            "succeeded",
            Duration::from_secs(120),
        );
        println!("dahua clip: {}", clip["result"]);
        assert_eq!(clip["result"]["method"], method, "{clip}");
        assert!(clip["result"]["name"].as_str().unwrap_or("").ends_with(ext), "{clip}");
        let got = artifact_bytes(&shim, &clip);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "clip bytes differ");
    }
    assert_eq!(dnvr.stats.auth_failures.load(std::sync::atomic::Ordering::SeqCst), 0);

    // ONVIF replay: frames 10..30 of the recording (10 fps), SPS and PPS first.
    let o = replay.opts.clone();
    let clip = run(
        &api,
        gw,
        json!({"type": "nvr.clip_export", "target": "onvr-1",
               "params": {"channel": 1, "from": "2026-12-06T10:00:01Z", "to": "2026-12-06T10:00:03Z"}}),
        "succeeded",
        Duration::from_secs(120),
    );
    println!("onvif clip: {}", clip["result"]);
    let res = &clip["result"];
    assert_eq!(res["method"], "onvif");
    assert_eq!(res["end"], "range_end");
    assert_eq!(res["truncated"], false);
    let (want, nals) = o.expected_annex_b(o.start_ms + 1000, o.start_ms + 3000);
    assert_eq!(res["nalUnits"].as_u64(), Some(nals as u64));
    assert!(res["name"].as_str().unwrap_or("").ends_with(".h264"), "{clip}");
    let got = artifact_bytes(&shim, &clip);
    assert!(got.starts_with(&[0, 0, 0, 1, 0x67]), "SPS first");
    assert!(got == want, "replayed H.264 differs from the recording");
    assert_eq!(replay.ranges(), ["clock=20261206T100001.000Z-20261206T100003.000Z"]);
    assert_eq!(replay.stats.teardowns.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Dahua reboot: the camera drops off and comes back.
    let r = run(
        &api,
        gw,
        json!({"type": "camera.reboot", "target": "dcam-1", "confirm": true, "params": {"waitSecs": 30}}),
        "succeeded",
        Duration::from_secs(60),
    );
    println!("dahua reboot: {}", r["result"]);
    let res = &r["result"];
    assert_eq!((res["dropped"].as_bool(), res["cameBack"].as_bool()), (Some(true), Some(true)), "{r}");
    let (d, b) = (res["droppedAt"].as_u64().expect("droppedAt"), res["backAt"].as_u64().expect("backAt"));
    assert!(b > d && b - d >= 1500, "down {} ms", b - d);
    assert_eq!((res["method"].as_str(), res["message"].as_str()), (Some("dahua"), Some("OK")), "{r}");
    assert_eq!(dcam.power.boots.load(std::sync::atomic::Ordering::SeqCst), 1);
    drop(agent);
}

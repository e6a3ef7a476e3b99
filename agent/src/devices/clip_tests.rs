//! Device command drivers against the fakes over real sockets: ONVIF Profile G replay export (ONVIF
//! device + RTSP replay server sending real RTP/H.264), and the Dahua snapshot, reboot and clip
//! export (by time and by file search). The fakes check Digest / WS-UsernameToken for real.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use scs_testkit::fakes::dahua::{DahuaOpts, FakeDahua};
use scs_testkit::fakes::h264 as fake_h264;
use scs_testkit::fakes::onvif::{FakeOnvif, OnvifOpts};
use scs_testkit::fakes::rtsp_replay::{FakeReplay, ReplayOpts};

use super::clip::{self, Clip, ClipError, ClipRequest};
use super::rtsp::ReplayEnd;
use super::{reboot, snapshot, DeviceSpec, Driver};

fn spec(target: String, driver: Driver, pass: &str) -> DeviceSpec {
    DeviceSpec { id: "nvr-t".into(), target, driver, username: Some("admin".into()), password: Some(pass.into()), rtsp_uri: None }
}

fn export(spec: &DeviceSpec, req: ClipRequest) -> (Result<Clip, ClipError>, Vec<u8>) {
    let mut out = Vec::new();
    let r = smol::block_on(clip::export(spec, req, Instant::now() + Duration::from_secs(30), &mut |b: &[u8]| {
        out.extend_from_slice(b);
        Ok(())
    }));
    (r, out)
}

/// An ONVIF recorder with two recordings whose replay URIs point at `replay`.
fn recorder(replay: &FakeReplay) -> FakeOnvif {
    FakeOnvif::start(OnvifOpts { recordings: Some(2), rtsp_base: replay.base(), ..OnvifOpts::default() })
}

fn wait_closed(replay: &FakeReplay) {
    let t = Instant::now();
    while replay.stats.open.load(Ordering::SeqCst) > 0 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(replay.stats.open.load(Ordering::SeqCst), 0, "connection left open");
}

#[test]
fn onvif_replay_writes_annex_b_h264_from_from_to_to_and_tears_down() {
    let replay = FakeReplay::start(ReplayOpts::default());
    let o = replay.opts.clone();
    let nvr = recorder(&replay);
    // Frames 10..30 of 50 (10 fps): the server sends on to the end, the client must stop at `to`.
    let (from_ms, to_ms) = (o.start_ms + 1000, o.start_ms + 3000);
    let req = ClipRequest { channel: 2, from_ms, to_ms, max_bytes: 16 << 20 };
    let (r, out) = export(&spec(nvr.target(), Driver::Onvif, "cam-pass"), req);
    let c = r.unwrap();
    assert_eq!(c.method, "onvif");
    let (want, nals) = o.expected_annex_b(from_ms, to_ms);
    // SPS then PPS from the SDP come first, each behind a 4-byte start code.
    let sps = fake_h264::sps();
    assert_eq!(out.get(..4 + sps.len()), Some(&[&[0u8, 0, 0, 1][..], &sps].concat()[..]));
    assert_eq!(out.get(4 + sps.len()..8 + sps.len()), Some(&[0u8, 0, 0, 1][..]));
    assert_eq!(out.get(8 + sps.len()), Some(&0x68));
    assert_eq!(out.len(), want.len());
    assert!(out == want, "Annex-B stream differs from the recording's NAL units");
    let rp = c.replay.clone().unwrap();
    assert_eq!((rp.nal_units, rp.bytes, c.bytes), (nals as u64, want.len() as u64, want.len() as u64));
    assert_eq!(rp.end, ReplayEnd::RangeEnd);
    assert_eq!((rp.first_ms, rp.last_ms), (Some(from_ms), Some(to_ms - 100)));
    assert_eq!((rp.video.width, rp.video.height), (Some(64), Some(48)), "SPS of the SDP parsed");
    // The recording of channel 2 is the second one listed; the replay carried the ONVIF headers.
    assert!(replay.paths().last().is_some_and(|p| p.ends_with("/replay/rec1")), "{:?}", replay.paths());
    assert_eq!(replay.ranges(), ["clock=20261206T100001.000Z-20261206T100003.000Z"]);
    assert_eq!(replay.stats.missing_require.load(Ordering::SeqCst), 0);
    assert_eq!(replay.stats.auth_failures.load(Ordering::SeqCst), 0);
    assert_eq!(nvr.stats.auth_failures.load(Ordering::SeqCst), 0);
    assert_eq!(replay.stats.teardowns.load(Ordering::SeqCst), 1);
    wait_closed(&replay);
    let acts = nvr.stats.actions();
    assert!(acts.iter().any(|a| a == "GetRecordings") && acts.iter().any(|a| a == "GetReplayUri"), "{acts:?}");
}

#[test]
fn onvif_replay_past_the_recording_ends_with_the_stream_and_respects_the_size_cap() {
    let replay = FakeReplay::start(ReplayOpts::default());
    let o = replay.opts.clone();
    let nvr = recorder(&replay);
    let s = spec(nvr.target(), Driver::Onvif, "cam-pass");
    let (from_ms, to_ms) = (o.start_ms + 2500, o.start_ms + 600_000);
    let (r, out) = export(&s, ClipRequest { channel: 1, from_ms, to_ms, max_bytes: 16 << 20 });
    let c = r.unwrap();
    let rp = c.replay.clone().unwrap();
    assert_eq!(rp.end, ReplayEnd::EndOfStream, "RTCP BYE after the last frame");
    assert!(out == o.expected_annex_b(from_ms, to_ms).0);
    assert_eq!(replay.stats.teardowns.load(Ordering::SeqCst), 1);

    // A cap of 12 KB (the recording is about 24 KB) stops inside it, never past the cap.
    let (r, out) = export(&s, ClipRequest { channel: 1, from_ms: o.start_ms, to_ms, max_bytes: 12_000 });
    let rp = r.unwrap().replay.unwrap();
    assert_eq!(rp.end, ReplayEnd::SizeCap);
    assert!(out.len() <= 12_000 && out.len() > 4_000, "{}", out.len());
    assert_eq!(out.len() as u64, rp.bytes);
    assert_eq!(replay.stats.teardowns.load(Ordering::SeqCst), 2);

    // No third recording; a span before the recording is refused by the server (457).
    let (r, out) = export(&s, ClipRequest { channel: 3, from_ms, to_ms, max_bytes: 1 << 20 });
    assert!(matches!(r, Err(ClipError::NoRecording { channel: 3, .. })), "{r:?}");
    assert!(out.is_empty());
    let late = o.start_ms + 3_600_000;
    let (r, _) = export(&s, ClipRequest { channel: 1, from_ms: late, to_ms: late + 60_000, max_bytes: 1 << 20 });
    assert!(matches!(r, Err(ClipError::NoRecording { .. })), "{r:?}");
    wait_closed(&replay);
}

#[test]
fn onvif_replay_without_the_time_extension_stops_by_the_rtp_clock() {
    let replay = FakeReplay::start(ReplayOpts { no_extension: true, ..ReplayOpts::default() });
    let o = replay.opts.clone();
    let nvr = recorder(&replay);
    let (from_ms, to_ms) = (o.start_ms + 1000, o.start_ms + 3000);
    let (r, out) =
        export(&spec(nvr.target(), Driver::Onvif, "cam-pass"), ClipRequest { channel: 1, from_ms, to_ms, max_bytes: 1 << 20 });
    let rp = r.unwrap().replay.unwrap();
    assert_eq!(rp.end, ReplayEnd::RangeEnd);
    assert!(out == o.expected_annex_b(from_ms, to_ms).0);
}

#[test]
fn onvif_replay_finds_the_recording_with_the_search_service_when_there_is_no_recording_service() {
    let replay = FakeReplay::start(ReplayOpts::default());
    let o = replay.opts.clone();
    let nvr =
        FakeOnvif::start(OnvifOpts { recordings: Some(2), search_only: true, rtsp_base: replay.base(), ..OnvifOpts::default() });
    let (from_ms, to_ms) = (o.start_ms, o.start_ms + 500);
    let (r, out) =
        export(&spec(nvr.target(), Driver::Onvif, "cam-pass"), ClipRequest { channel: 2, from_ms, to_ms, max_bytes: 1 << 20 });
    assert_eq!(r.unwrap().matches, 2);
    assert!(out == o.expected_annex_b(from_ms, to_ms).0);
    assert!(replay.paths().last().is_some_and(|p| p.ends_with("/replay/rec1")), "{:?}", replay.paths());
    let acts = nvr.stats.actions();
    for a in ["FindRecordings", "GetRecordingSearchResults", "EndSearch", "GetReplayUri"] {
        assert!(acts.iter().any(|x| x == a), "{a} missing from {acts:?}");
    }
    assert!(!acts.iter().any(|x| x == "GetRecordings"), "{acts:?}");
}

#[test]
fn onvif_replay_with_wrong_password_is_auth_and_tried_once() {
    let replay = FakeReplay::start(ReplayOpts::default());
    let nvr = recorder(&replay);
    let o = replay.opts.clone();
    let req = ClipRequest { channel: 1, from_ms: o.start_ms, to_ms: o.start_ms + 1000, max_bytes: 1 << 20 };
    let (r, out) = export(&spec(nvr.target(), Driver::Onvif, "wrong"), req);
    let e = r.unwrap_err();
    assert_eq!(e.class(), super::ErrorClass::Auth, "{e}");
    assert!(out.is_empty());
    assert_eq!(nvr.stats.auth_failures.load(Ordering::SeqCst), 1);
}

#[test]
fn dahua_snapshot_reboot_and_clip_by_time_and_by_file() {
    let fake = FakeDahua::start(DahuaOpts { channels: vec![], reboot_down_ms: 1500, ..DahuaOpts::default() });
    let s = spec(fake.target(), Driver::Dahua, "dahua-pass");

    let shot = smol::block_on(snapshot::take(&s, 2, 1 << 20, Instant::now() + Duration::from_secs(10))).unwrap();
    assert_eq!(shot.method, "dahua");
    assert_eq!(shot.path, "/cgi-bin/snapshot.cgi?channel=2");
    assert!(shot.jpeg == FakeDahua::picture(2));

    let rec = DahuaOpts::default().recording;
    let from_ms = (rec.start_s as u64 + 60) * 1000;
    let req = ClipRequest { channel: 1, from_ms, to_ms: from_ms + 120_000, max_bytes: 16 << 20 };
    let (r, out) = export(&s, req);
    let c = r.unwrap();
    assert_eq!((c.method, c.bytes), ("dahua", rec.len as u64));
    assert!(out == rec.bytes(), "clip bytes differ");

    // Firmware without the download by time: the file search, and the finder is released.
    fake.set(|o| o.no_load_by_time = true);
    let (r, out) = export(&s, req);
    let c = r.unwrap();
    assert_eq!(c.method, "dahua-file");
    assert_eq!(c.playback_uri.as_deref(), Some(FakeDahua::file_path(&rec).as_str()));
    assert!(out == rec.bytes(), "clip bytes differ");
    let finds: Vec<String> = fake
        .paths()
        .iter()
        .filter_map(|p| p.strip_prefix("/cgi-bin/mediaFileFind.cgi?action="))
        .map(|a| a.split('&').next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(finds, ["factory.create", "findFile", "findNextFile", "close", "destroy"]);
    assert!(fake.paths().iter().any(|p| p.starts_with("/cgi-bin/RPC_Loadfile/mnt/dvr/")));

    // Nothing on channel 2: a clear answer from the search, no download.
    let (r, out) = export(&s, ClipRequest { channel: 2, ..req });
    assert!(matches!(r, Err(ClipError::NoRecording { channel: 2, .. })), "{r:?}");
    assert!(out.is_empty());
    // A clip larger than the cap is refused before a byte is written.
    let (r, out) = export(&s, ClipRequest { max_bytes: 1 << 20, ..req });
    assert!(r.is_err() && out.is_empty(), "{r:?}");
    assert_eq!(fake.stats.auth_failures.load(Ordering::SeqCst), 0);

    let asked = smol::block_on(reboot::request(&s)).unwrap();
    assert_eq!((asked.method, asked.message.as_deref()), ("dahua", Some("OK")));
    let w = smol::block_on(reboot::watch(&s.target, Instant::now() + Duration::from_secs(15), &|| false));
    let (d, b) = (w.dropped_ms.unwrap(), w.back_ms.unwrap());
    assert!(b > d, "{w:?}");
    assert_eq!(fake.power.boots.load(Ordering::SeqCst), 1);
    // Back with the same API answering.
    let shot = smol::block_on(snapshot::take(&s, 1, 1 << 20, Instant::now() + Duration::from_secs(10))).unwrap();
    assert!(shot.jpeg == FakeDahua::picture(1));
}

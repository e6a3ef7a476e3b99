//! The agent's RTSP client against an RTSP server nobody in this project wrote: GStreamer's
//! gst-rtsp-server (`scripts/gst-rtsp-server.py`) serving H.264 from videotestsrc at a known size and
//! frame rate behind Digest authentication, over real sockets on 127.0.0.1. Under CI (env `CI` set)
//! a missing GStreamer fails the test; elsewhere it is skipped with a loud message.

use std::time::Duration;

use scs_testkit::fakes::gst::{self, GstOpts, GstRtsp};

use super::http::Limits;
use super::{rtsp, Credentials, ErrorClass};

const GOOD: Credentials<'static> = Credentials { user: "admin", pass: "cam-pass" };
const BAD: Credentials<'static> = Credentials { user: "admin", pass: "wrong" };

fn limits() -> Limits {
    Limits { timeout: Duration::from_secs(8), ..Limits::default() }
}

/// The server, or `None` (after a loud message) when GStreamer is missing outside CI.
fn gst_server(opts: GstOpts) -> Option<GstRtsp> {
    if let Some(why) = gst::missing() {
        assert!(
            std::env::var_os("CI").is_none(),
            "GStreamer's RTSP server is required under CI: {why} (scripts/test's install step adds \
             gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base/-good/-ugly)"
        );
        eprintln!(
            "\n!!!!!!!! SKIPPED: GStreamer RTSP server unavailable: {why}\n!!!!!!!! apt-get install \
             gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
             gstreamer1.0-plugins-ugly\n"
        );
        return None;
    }
    Some(GstRtsp::start(opts).unwrap())
}

#[test]
fn gstreamer_rtsp_describe_reports_h264_and_its_size() {
    // 360 rows are coded as 368 (23 macroblocks) with 8 cropped: the SPS cropping path is exercised.
    let Some(g) = gst_server(GstOpts { width: 640, height: 360, fps: 15, ..GstOpts::default() }) else { return };
    let v = smol::block_on(rtsp::describe(&g.uri("main"), Some(GOOD), limits())).unwrap();
    assert_eq!(v.codec, "H264");
    assert_eq!((v.width, v.height), (Some(640), Some(360)), "{v:?}");
    assert_eq!(v.fps, Some(15.0), "{v:?}");

    let e = smol::block_on(rtsp::describe(&g.uri("main"), Some(BAD), limits())).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth, "{e}");
    let e = smol::block_on(rtsp::describe(&g.uri("main"), None, limits())).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Auth, "{e}");
}

#[test]
fn gstreamer_rtsp_sampled_play_measures_its_frame_rate() {
    for (w, h, fps) in [(320u32, 240u32, 25u32), (640, 360, 10)] {
        let Some(g) = gst_server(GstOpts { width: w, height: h, fps, ..GstOpts::default() }) else { return };
        let (info, m) = smol::block_on(rtsp::sample(&g.uri("sub"), Some(GOOD), limits(), Duration::from_secs(3))).unwrap();
        assert_eq!((info.width, info.height), (Some(w), Some(h)));
        let want = f64::from(fps);
        assert!((m.fps - want).abs() <= want * 0.1, "measured {:.2} fps, served {fps}", m.fps);
        assert!(m.kbit_s > 0.0 && m.packets > 0, "{m:?}");
        assert_eq!(m.lost, 0, "no loss over loopback TCP: {m:?}");
        let e = smol::block_on(rtsp::sample(&g.uri("sub"), Some(BAD), limits(), Duration::from_secs(1))).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Auth, "{e}");
    }
}

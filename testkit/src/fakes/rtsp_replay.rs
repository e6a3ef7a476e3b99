//! A fake ONVIF replay server (ONVIF Streaming Specification, Profile G) on 127.0.0.1: RTSP/1.0 with
//! Digest (MD5, qop=auth, verified for real), every DESCRIBE/SETUP/PLAY must carry
//! `Require: onvif-replay` (else 551 Option not supported, with `Unsupported: onvif-replay`), PLAY
//! must carry `Range: clock=<from>-[<to>]` inside the recording (else 457). It then sends the recording
//! from `from` as real RTP/H.264 over TCP interleaved (RFC 6184: SPS+PPS as one STAP-A, big slices as
//! FU-A, small ones as single NAL units), each frame's first packet with the 0xABAC replay header
//! extension (NTP time of the frame, clean-point and end flags), as fast as the client reads when it
//! sent `Rate-Control: no`. Like servers seen in the field it sends on to the end of the recording
//! whatever the range end: stopping at `to` is the client's job. An RTCP BYE closes the stream; the
//! connection stays open for TEARDOWN.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::h264;
use super::http::read_request;
use super::rtsp::{challenge, digest_ok, reply};

#[derive(Debug, Clone)]
pub struct ReplayOpts {
    pub user: String,
    pub pass: String,
    /// Wall-clock time of the recording's first frame, ms since the epoch.
    pub start_ms: u64,
    pub frames: usize,
    pub gop: usize,
    pub fps: u32,
    /// Largest RTP payload; bigger NAL units go out as FU-A fragments.
    pub mtu: usize,
    /// Packets carry no 0xABAC replay extension (servers that leave it out).
    pub no_extension: bool,
}

impl Default for ReplayOpts {
    fn default() -> Self {
        ReplayOpts {
            user: "admin".into(),
            pass: "cam-pass".into(),
            // 2026-12-06T10:00:00Z
            start_ms: 1_796_551_200_000,
            frames: 50,
            gop: 10,
            fps: 10,
            mtu: 1200,
            no_extension: false,
        }
    }
}

impl ReplayOpts {
    /// The recording as access units of NAL units (no start codes).
    pub fn access_units(&self) -> Vec<Vec<Vec<u8>>> {
        h264::stream(self.frames, self.gop)
    }

    /// Wall-clock time of frame `i`, ms since the epoch.
    pub fn frame_ms(&self, i: usize) -> u64 {
        self.start_ms + i as u64 * 1000 / u64::from(self.fps.max(1))
    }

    /// What a client that stops before `to_ms` should write for a replay from `from_ms`: SPS and PPS
    /// (from the SDP) then every NAL unit of the frames in [from, to), all in Annex-B form.
    pub fn expected_annex_b(&self, from_ms: u64, to_ms: u64) -> (Vec<u8>, usize) {
        let mut nals = vec![h264::sps(), h264::pps()];
        for (i, au) in self.access_units().into_iter().enumerate() {
            let t = self.frame_ms(i);
            if t >= from_ms && t < to_ms {
                nals.extend(au);
            }
        }
        (h264::annex_b(&nals), nals.len())
    }
}

#[derive(Debug, Default)]
pub struct ReplayStats {
    pub describes: AtomicU64,
    pub plays: AtomicU64,
    pub teardowns: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Requests refused for lacking `Require: onvif-replay`.
    pub missing_require: AtomicU64,
    /// Range headers of the PLAY requests, as sent.
    pub ranges: Mutex<Vec<String>>,
    /// Paths DESCRIBEd (the recording token is the last segment).
    pub paths: Mutex<Vec<String>>,
    /// Connections currently open.
    pub open: AtomicI64,
}

pub struct FakeReplay {
    addr: SocketAddr,
    pub stats: Arc<ReplayStats>,
    pub opts: ReplayOpts,
    stop: Arc<AtomicBool>,
}

impl FakeReplay {
    pub fn start(opts: ReplayOpts) -> FakeReplay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake replay");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(ReplayStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (stats, stop, opts) = (stats.clone(), stop.clone(), opts.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (stats, opts) = (stats.clone(), opts.clone());
                    std::thread::spawn(move || {
                        stats.open.fetch_add(1, Ordering::SeqCst);
                        serve(conn, &opts, &stats);
                        stats.open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
        FakeReplay { addr, stats, opts, stop }
    }

    /// `rtsp://127.0.0.1:port`: the base the ONVIF fake's GetReplayUri answers under.
    pub fn base(&self) -> String {
        format!("rtsp://{}", self.addr)
    }

    pub fn ranges(&self) -> Vec<String> {
        self.stats.ranges.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn paths(&self) -> Vec<String> {
        self.stats.paths.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeReplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn sdp() -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Replay\r\nt=0 0\r\na=control:*\r\n\
         m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\na=x-onvif-track:VIDEO001\r\n\
         a=fmtp:96 packetization-mode=1;profile-level-id=42C00A;sprop-parameter-sets={},{}\r\n",
        super::b64(&h264::sps()),
        super::b64(&h264::pps()),
    )
}

/// `YYYYMMDDThhmmss[.fff]Z` (RFC 2326 utc-time) to ms since the epoch.
pub fn parse_clock(s: &str) -> Option<u64> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let (whole, frac) = time.split_once('.').unwrap_or((time, ""));
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        date.get(0..4)?,
        date.get(4..6)?,
        date.get(6..8)?,
        whole.get(0..2)?,
        whole.get(2..4)?,
        whole.get(4..6)?
    );
    let ms = if frac.is_empty() { 0 } else { format!("{:0<3}", frac.get(..frac.len().min(3))?).parse::<i64>().ok()? };
    u64::try_from(super::onvif::parse_utc(&iso)? * 1000 + ms).ok()
}

fn serve(mut conn: TcpStream, o: &ReplayOpts, stats: &ReplayStats) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut nonce_nc: Option<(String, u32)> = None;
    let session = "7c0ffee1";
    loop {
        let Some(req) = read_request(&mut conn) else { return };
        let guarded = matches!(req.method.as_str(), "DESCRIBE" | "SETUP" | "PLAY");
        if guarded && !req.header("require").is_some_and(|r| r.split(',').any(|t| t.trim() == "onvif-replay")) {
            stats.missing_require.fetch_add(1, Ordering::SeqCst);
            if !reply(&mut conn, &req, "551 Option not supported", "Unsupported: onvif-replay\r\n", "") {
                return;
            }
            continue;
        }
        if guarded && !digest_ok(&req, &mut nonce_nc, &o.user, &o.pass) {
            if req.header("authorization").is_some() {
                stats.auth_failures.fetch_add(1, Ordering::SeqCst);
            }
            if !reply(&mut conn, &req, "401 Unauthorized", &challenge(&mut nonce_nc), "") {
                return;
            }
            continue;
        }
        let ok = match req.method.as_str() {
            "OPTIONS" => reply(&mut conn, &req, "200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN\r\n", ""),
            "DESCRIBE" => {
                stats.describes.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut p) = stats.paths.lock() {
                    p.push(req.path.clone());
                }
                let base = format!("Content-Base: {}/\r\nContent-Type: application/sdp\r\n", req.path.trim_end_matches('/'));
                reply(&mut conn, &req, "200 OK", &base, &sdp())
            }
            "SETUP" => reply(
                &mut conn,
                &req,
                "200 OK",
                &format!("Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: {session};timeout=60\r\n"),
                "",
            ),
            "PLAY" => {
                stats.plays.fetch_add(1, Ordering::SeqCst);
                let range = req.header("range").unwrap_or("").to_owned();
                if let Ok(mut r) = stats.ranges.lock() {
                    r.push(range.clone());
                }
                let end_ms = o.frame_ms(o.frames);
                let from = range.strip_prefix("clock=").and_then(|r| r.split_once('-')).and_then(|(f, _)| parse_clock(f));
                let Some(from) = from.filter(|f| *f < end_ms) else {
                    let _ = reply(&mut conn, &req, "457 Invalid Range", "", "");
                    continue;
                };
                let cseq = req.header("cseq").and_then(|c| c.trim().parse::<u32>().ok()).unwrap_or(0);
                let paced = !req.header("rate-control").is_some_and(|v| v.trim().eq_ignore_ascii_case("no"));
                if !reply(&mut conn, &req, "200 OK", &format!("Session: {session}\r\nRange: {range}\r\nRate-Control: no\r\n"), "")
                {
                    return;
                }
                if !send_recording(&mut conn, o, from, cseq as u8, paced) {
                    return;
                }
                true
            }
            "TEARDOWN" => {
                stats.teardowns.fetch_add(1, Ordering::SeqCst);
                let _ = reply(&mut conn, &req, "200 OK", "", "");
                return;
            }
            _ => reply(&mut conn, &req, "501 Not Implemented", "", ""),
        };
        if !ok {
            return;
        }
    }
}

const SSRC: u32 = 0x0abc_def0;

fn interleaved(conn: &mut TcpStream, channel: u8, pkt: &[u8]) -> bool {
    let mut f = vec![b'$', channel];
    f.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
    f.extend_from_slice(pkt);
    conn.write_all(&f).is_ok()
}

/// NTP timestamp (seconds since 1900 in the high word, fraction in the low) of ms since the epoch.
pub fn ntp(ms: u64) -> u64 {
    let secs = ms / 1000 + 2_208_988_800;
    let frac = ((ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// Sends frames from the first at or after `from_ms` to the end of the recording, then an RTCP BYE.
fn send_recording(conn: &mut TcpStream, o: &ReplayOpts, from_ms: u64, cseq: u8, paced: bool) -> bool {
    let aus = o.access_units();
    let mut seq = 4000u16;
    let last = aus.len().saturating_sub(1);
    let frame = Duration::from_millis(1000 / u64::from(o.fps.max(1)));
    let mut first = true;
    for (i, au) in aus.iter().enumerate() {
        let t = o.frame_ms(i);
        if t < from_ms {
            continue;
        }
        // Payloads of this access unit: SPS+PPS together as STAP-A, the rest single or FU-A.
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let (params, slices): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = au.iter().partition(|n| matches!(n[0] & 0x1f, 7 | 8));
        if !params.is_empty() {
            let mut stap = vec![(params[0][0] & 0x60) | 24];
            for n in &params {
                stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
                stap.extend_from_slice(n);
            }
            payloads.push(stap);
        }
        for n in slices {
            if n.len() <= o.mtu {
                payloads.push(n.clone());
                continue;
            }
            let (hdr, body) = (n[0], &n[1..]);
            let chunks: Vec<&[u8]> = body.chunks(o.mtu - 2).collect();
            for (k, c) in chunks.iter().enumerate() {
                let s = if k == 0 { 0x80 } else { 0 };
                let e = if k + 1 == chunks.len() { 0x40 } else { 0 };
                let mut p = vec![(hdr & 0xe0) | 28, s | e | (hdr & 0x1f)];
                p.extend_from_slice(c);
                payloads.push(p);
            }
        }
        let ts = (i as u64 * 90_000 / u64::from(o.fps.max(1))) as u32;
        let idr = au.iter().any(|n| n[0] & 0x1f == 5);
        for (k, payload) in payloads.iter().enumerate() {
            let marker = if k + 1 == payloads.len() { 0x80 } else { 0 };
            let ext = k == 0 && !o.no_extension;
            let mut pkt = vec![if ext { 0x90 } else { 0x80 }, marker | 96];
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&ts.to_be_bytes());
            pkt.extend_from_slice(&SSRC.to_be_bytes());
            if ext {
                pkt.extend_from_slice(&[0xAB, 0xAC, 0, 3]);
                pkt.extend_from_slice(&ntp(t).to_be_bytes());
                let flags = if idr { 0x80 } else { 0 } | if i == last { 0x40 } else { 0 } | if first { 0x20 } else { 0 };
                pkt.extend_from_slice(&[flags, cseq, 0, 0]);
            }
            pkt.extend_from_slice(payload);
            if !interleaved(conn, 0, &pkt) {
                return false;
            }
            seq = seq.wrapping_add(1);
            first = false;
        }
        if paced {
            std::thread::sleep(frame);
        }
    }
    // RTCP BYE (RFC 3550 6.6): version 2, one source.
    let mut bye = vec![0x81, 203, 0, 1];
    bye.extend_from_slice(&SSRC.to_be_bytes());
    interleaved(conn, 1, &bye)
}

//! RTSP/1.0 (RFC 2326) stream checks: OPTIONS + DESCRIBE with Digest or Basic, SDP codec, resolution
//! and frame rate; and a sampled PLAY over TCP interleaved that measures what actually arrives (frames
//! per second, kbit/s, RTP sequence loss) — a camera that answers DESCRIBE but sends no frames is the
//! failure operators care most about. A session that was set up is always torn down; the connection
//! is closed in every case (dropping it closes the socket).

use std::time::{Duration, Instant};

use super::digest::{self, Challenge, DigestSession};
use super::http::{self, Conn, HttpError, Limits, Response};
use super::{Credentials, ErrorClass};

pub const DEFAULT_PORT: u16 = 554;

#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{uri}: not an rtsp:// URI")]
    BadUri { uri: String },
    #[error("{uri}: {source}")]
    Digest { uri: String, source: digest::DigestError },
    #[error("{uri}: {method}: credentials rejected")]
    Auth { uri: String, method: &'static str },
    #[error("{uri}: {method}: RTSP {status}")]
    Status { uri: String, method: &'static str, status: u16 },
    #[error("{uri}: SDP has no video stream")]
    NoVideo { uri: String },
    #[error("{uri}: {what}")]
    Protocol { uri: String, what: &'static str },
    #[error("{uri}: no RTP packet within the sample window")]
    NoFrames { uri: String },
}

impl RtspError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RtspError::Http(e) => e.class(),
            RtspError::BadUri { .. } | RtspError::Digest { .. } | RtspError::Protocol { .. } => ErrorClass::Protocol,
            RtspError::Auth { .. } => ErrorClass::Auth,
            RtspError::Status { status, .. } if (300..400).contains(status) => ErrorClass::Protocol,
            RtspError::Status { .. } => ErrorClass::Fault,
            RtspError::NoVideo { .. } => ErrorClass::Parse,
            // Answers but streams nothing: the stream is down even though the server is up.
            RtspError::NoFrames { .. } => ErrorClass::Timeout,
        }
    }
}

/// What DESCRIBE's SDP says about the first video stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoInfo {
    pub codec: String,
    pub payload_type: u8,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    /// `a=control` of the video media, resolved against the content base.
    pub control: Option<String>,
    /// `sprop-parameter-sets` of the video media (base64 SPS and PPS), as the SDP gives it.
    pub sprop: Option<String>,
}

/// Measured during a sampled PLAY.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub fps: f64,
    pub kbit_s: f64,
    pub packets: u64,
    pub lost: u64,
    pub duration: Duration,
}

/// One RTSP control connection with CSeq and authentication state.
struct Session<'a> {
    uri: String,
    conn: Conn,
    cseq: u32,
    creds: Option<Credentials<'a>>,
    digest: Option<DigestSession>,
    basic: bool,
    limits: Limits,
    session: Option<String>,
    /// `Require` tag sent with every request (`onvif-replay` for recordings).
    require: Option<&'static str>,
}

impl<'a> Session<'a> {
    async fn open(
        uri: &str,
        creds: Option<Credentials<'a>>,
        limits: Limits,
        deadline: Instant,
    ) -> Result<Session<'a>, RtspError> {
        let lower = uri.get(..7).map(str::to_ascii_lowercase);
        if lower.as_deref() != Some("rtsp://") {
            return Err(RtspError::BadUri { uri: uri.to_owned() });
        }
        // Credentials embedded in the URI are dropped; the configured ones are used.
        let (target, path) = http::split_url(uri, DEFAULT_PORT).ok_or_else(|| RtspError::BadUri { uri: uri.to_owned() })?;
        let clean = format!("rtsp://{target}{path}");
        let (conn, _) = Conn::open(&target, deadline).await?;
        Ok(Session { uri: clean, conn, cseq: 0, creds, digest: None, basic: false, limits, session: None, require: None })
    }

    fn auth_header(&mut self, method: &str, uri: &str) -> Result<Option<String>, RtspError> {
        let Some(c) = self.creds else { return Ok(None) };
        if let Some(d) = self.digest.as_mut() {
            return d
                .authorization(method, uri, c.user, c.pass)
                .map(Some)
                .map_err(|source| RtspError::Digest { uri: self.uri.clone(), source });
        }
        Ok(self.basic.then(|| digest::basic(c.user, c.pass)))
    }

    async fn send_once(&mut self, method: &str, uri: &str, extra: &[(&str, String)]) -> Result<Response, RtspError> {
        self.cseq += 1;
        let mut req = format!("{method} {uri} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: scs-agent\r\n", self.cseq);
        if let Some(a) = self.auth_header(method, uri)? {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        if let Some(r) = self.require {
            req.push_str(&format!("Require: {r}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.conn.send(req.as_bytes()).await?;
        if self.session.is_some() {
            // While playing, RTP frames ('$' channel len) may precede the response: skip them.
            while self.conn.peek(1).await?.first() == Some(&b'$') {
                let h = self.conn.peek(4).await?;
                let len = usize::from(u16::from_be_bytes([h.get(2).copied().unwrap_or(0), h.get(3).copied().unwrap_or(0)]));
                self.conn.take(4 + len).await?;
            }
        }
        let resp = self.conn.read_response("RTSP/1.0", &self.limits, false).await?;
        // A response for another CSeq means the server is confused; do not guess.
        if resp.header("cseq").and_then(|c| c.trim().parse::<u32>().ok()) != Some(self.cseq) {
            return Err(RtspError::Protocol { uri: self.uri.clone(), what: "CSeq mismatch" });
        }
        Ok(resp)
    }

    /// Sends a request, answering one 401 challenge.
    async fn request(&mut self, method: &'static str, uri: &str, extra: &[(&str, String)]) -> Result<Response, RtspError> {
        let resp = self.send_once(method, uri, extra).await?;
        if resp.status != 401 {
            return self.check(method, resp);
        }
        if self.creds.is_none() {
            return Err(RtspError::Auth { uri: self.uri.clone(), method });
        }
        match digest::pick(resp.headers_named("www-authenticate"))
            .map_err(|source| RtspError::Digest { uri: self.uri.clone(), source })?
        {
            Challenge::Digest(c) => self.digest = Some(DigestSession::new(c)),
            Challenge::Basic => self.basic = true,
        }
        let resp = self.send_once(method, uri, extra).await?;
        if resp.status == 401 {
            return Err(RtspError::Auth { uri: self.uri.clone(), method });
        }
        self.check(method, resp)
    }

    fn check(&self, method: &'static str, resp: Response) -> Result<Response, RtspError> {
        if resp.status == 200 {
            Ok(resp)
        } else if resp.status == 403 {
            Err(RtspError::Auth { uri: self.uri.clone(), method })
        } else {
            Err(RtspError::Status { uri: self.uri.clone(), method, status: resp.status })
        }
    }

    async fn describe(&mut self) -> Result<VideoInfo, RtspError> {
        let uri = self.uri.clone();
        // OPTIONS first: some servers only authenticate DESCRIBE, and a failing OPTIONS tells us the
        // server is not RTSP at all. A replay server may refuse OPTIONS carrying the Require tag.
        if self.require.is_none() {
            self.request("OPTIONS", &uri, &[]).await?;
        }
        let resp = self.request("DESCRIBE", &uri, &[("Accept", "application/sdp".to_owned())]).await?;
        let base = resp.header("content-base").or_else(|| resp.header("content-location")).unwrap_or(&uri).to_owned();
        let mut info = parse_sdp(resp.body_str()).ok_or_else(|| RtspError::NoVideo { uri: uri.clone() })?;
        info.control = info.control.map(|c| resolve_control(&base, &c));
        Ok(info)
    }

    async fn teardown(&mut self) {
        if self.session.is_some() {
            let uri = self.uri.clone();
            // Best effort within the remaining deadline; the socket closes on drop either way.
            let _ = self.send_once("TEARDOWN", &uri, &[]).await;
            self.session = None;
        }
    }
}

fn resolve_control(base: &str, control: &str) -> String {
    if control.contains("://") {
        control.to_owned()
    } else if control == "*" {
        base.to_owned()
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// First video media of an SDP: codec from rtpmap, size from `a=x-dimensions` or the H.264 SPS in
/// `sprop-parameter-sets`, frame rate from `a=framerate`.
pub fn parse_sdp(sdp: &str) -> Option<VideoInfo> {
    let mut info: Option<VideoInfo> = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if info.is_some() {
                break;
            }
            if let Some(rest) = m.strip_prefix("video ") {
                let pt = rest.split_whitespace().nth(2).and_then(|p| p.parse().ok()).unwrap_or(0);
                info = Some(VideoInfo { payload_type: pt, ..VideoInfo::default() });
            }
            continue;
        }
        let Some(v) = info.as_mut() else { continue };
        if let Some(r) = line.strip_prefix("a=rtpmap:") {
            let mut it = r.split_whitespace();
            let pt: Option<u8> = it.next().and_then(|p| p.parse().ok());
            if pt == Some(v.payload_type) {
                v.codec = it.next().and_then(|c| c.split('/').next()).unwrap_or("").to_ascii_uppercase();
            }
        } else if let Some(f) = line.strip_prefix("a=framerate:") {
            v.fps = f.trim().parse().ok();
        } else if let Some(d) = line.strip_prefix("a=x-dimensions:") {
            if let Some((w, h)) = d.split_once(',') {
                v.width = w.trim().parse().ok();
                v.height = h.trim().parse().ok();
            }
        } else if let Some(c) = line.strip_prefix("a=control:") {
            v.control = Some(c.trim().to_owned());
        } else if let Some(f) = line.strip_prefix("a=fmtp:") {
            let sprop = f.split(';').find_map(|p| p.trim().strip_prefix("sprop-parameter-sets="));
            v.sprop = sprop.map(str::to_owned);
            if v.width.is_none() {
                if let Some(sps) = sprop {
                    use base64::Engine as _;
                    let first = sps.split(',').next().unwrap_or("");
                    if let Ok(nal) = base64::engine::general_purpose::STANDARD.decode(first) {
                        if let Some((w, h)) = h264_sps_size(&nal) {
                            v.width = Some(w);
                            v.height = Some(h);
                        }
                    }
                }
            }
        }
    }
    info
}

/// Reads Exp-Golomb coded fields from an RBSP (emulation-prevention bytes removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let v = k.div_ceil(2) as i32;
        Some(if k % 2 == 1 { v } else { -v })
    }
}

/// Width and height from an H.264 SPS NAL unit (ITU-T H.264 7.3.2.1.1), cropping applied.
pub fn h264_sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let (&header, payload) = nal.split_first()?;
    if header & 0x1f != 7 {
        return None;
    }
    let mut data = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        data.push(b);
    }
    let mut r = Bits { data, pos: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bit()?;
        }
        r.ue()?;
        r.ue()?;
        r.bit()?;
        if r.bit()? == 1 {
            // Scaling lists: skipped by parsing their deltas.
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?;
    let w_mbs = r.ue()? + 1;
    let h_map = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?;
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    let (sub_w, sub_h) = match chroma {
        0 | 3 => (1, 1),
        2 => (2, 1),
        _ => (2, 2),
    };
    let crop_x = if chroma == 0 { 1 } else { sub_w };
    let crop_y = (if chroma == 0 { 1 } else { sub_h }) * (2 - frame_mbs_only);
    let w = (w_mbs * 16).checked_sub((cl + cr).checked_mul(crop_x)?)?;
    let h = ((2 - frame_mbs_only) * h_map * 16).checked_sub((ct + cb).checked_mul(crop_y)?)?;
    Some((w, h))
}

/// OPTIONS + DESCRIBE of `uri` within `limits.timeout`.
pub async fn describe(uri: &str, creds: Option<Credentials<'_>>, limits: Limits) -> Result<VideoInfo, RtspError> {
    let deadline = Instant::now() + limits.timeout;
    let mut s = Session::open(uri, creds, limits, deadline).await?;
    s.describe().await
}

/// DESCRIBE, SETUP of the video track over TCP interleaved, PLAY for `window`, TEARDOWN. Counts RTP
/// packets on the video channel: frames are distinct RTP timestamps, loss is the gap between the
/// sequence numbers seen and the packets received.
pub async fn sample(
    uri: &str,
    creds: Option<Credentials<'_>>,
    limits: Limits,
    window: Duration,
) -> Result<(VideoInfo, Sample), RtspError> {
    let deadline = Instant::now() + limits.timeout + window;
    let mut s = Session::open(uri, creds, limits, deadline).await?;
    let info = s.describe().await?;
    let result = play(&mut s, &info, window).await;
    s.teardown().await;
    result.map(|m| (info, m))
}

/// SETUP of the video track over TCP interleaved (RTP on channel 0, RTCP on 1); keeps the session.
async fn setup(s: &mut Session<'_>, info: &VideoInfo) -> Result<(), RtspError> {
    let track = info.control.clone().unwrap_or_else(|| s.uri.clone());
    let resp = s.request("SETUP", &track, &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1".to_owned())]).await?;
    let session = resp
        .header("session")
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| RtspError::Protocol { uri: s.uri.clone(), what: "SETUP without Session" })?;
    s.session = Some(session);
    Ok(())
}

/// Reads one interleaved frame (`$`, channel, 16-bit length, packet). `Ok(None)` at the connection's
/// deadline or end of stream.
async fn frame(s: &mut Session<'_>) -> Result<Option<(u8, Vec<u8>)>, RtspError> {
    let head = match s.conn.take(4).await {
        Ok(h) => h,
        Err(HttpError::Timeout { .. } | HttpError::Truncated { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (Some(&b'$'), Some(&chan), Some(&hi), Some(&lo)) = (head.first(), head.get(1), head.get(2), head.get(3)) else {
        return Err(RtspError::Protocol { uri: s.uri.clone(), what: "interleaved framing" });
    };
    match s.conn.take(usize::from(u16::from_be_bytes([hi, lo]))).await {
        Ok(p) => Ok(Some((chan, p))),
        Err(HttpError::Timeout { .. } | HttpError::Truncated { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn play(s: &mut Session<'_>, info: &VideoInfo, window: Duration) -> Result<Sample, RtspError> {
    setup(s, info).await?;
    let uri = s.uri.clone();
    s.request("PLAY", &uri, &[("Range", "npt=0.000-".to_owned())]).await?;

    let start = Instant::now();
    let end = start + window;
    s.conn.set_deadline(end);
    let (mut packets, mut bytes, mut frames) = (0u64, 0u64, 0u64);
    let mut last_ts: Option<u32> = None;
    let (mut first_seq, mut ext_seq): (Option<u32>, u32) = (None, 0);
    // Interleaved frames until the window ends; an RTSP response here (none expected after PLAY) is
    // a framing error.
    while let Some((chan, pkt)) = frame(s).await? {
        let len = pkt.len();
        if chan != 0 {
            continue; // RTCP
        }
        let (Some(seq_b), Some(ts_b)) = (pkt.get(2..4), pkt.get(4..8)) else { continue };
        packets += 1;
        bytes += len as u64;
        let seq = u32::from(u16::from_be_bytes(seq_b.try_into().unwrap_or_default()));
        let ts = u32::from_be_bytes(ts_b.try_into().unwrap_or_default());
        match first_seq {
            None => {
                first_seq = Some(seq);
                ext_seq = seq;
            }
            Some(_) => {
                // Extend the 16-bit sequence across wraps.
                let cur = ext_seq & 0xffff;
                let delta = (seq.wrapping_sub(cur)) & 0xffff;
                if delta < 0x8000 {
                    ext_seq = ext_seq.wrapping_add(delta);
                }
            }
        }
        if last_ts != Some(ts) {
            frames += 1;
            last_ts = Some(ts);
        }
    }
    let duration = start.elapsed().min(window).max(Duration::from_millis(1));
    s.conn.set_deadline(Instant::now() + Duration::from_secs(2));
    if packets == 0 {
        return Err(RtspError::NoFrames { uri });
    }
    let expected = u64::from(ext_seq.wrapping_sub(first_seq.unwrap_or(ext_seq))) + 1;
    let secs = duration.as_secs_f64();
    Ok(Sample {
        fps: frames as f64 / secs,
        kbit_s: bytes as f64 * 8.0 / secs / 1000.0,
        packets,
        lost: expected.saturating_sub(packets),
        duration,
    })
}

/// Why a replay export stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayEnd {
    /// A frame at or after the requested end arrived.
    RangeEnd,
    /// RTCP BYE, the server closed, or nothing more came for the idle time.
    EndOfStream,
    /// The size cap was reached (the clip is cut short).
    SizeCap,
    /// The command's time ran out (the clip is cut short).
    TimeCap,
}

impl ReplayEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayEnd::RangeEnd => "range_end",
            ReplayEnd::EndOfStream => "end_of_stream",
            ReplayEnd::SizeCap => "size_cap",
            ReplayEnd::TimeCap => "time_cap",
        }
    }
}

/// What a replay export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub video: VideoInfo,
    pub packets: u64,
    pub nal_units: u64,
    pub bytes: u64,
    /// Wall-clock time of the first and last frame written (ONVIF replay extension), ms.
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    pub end: ReplayEnd,
}

/// `YYYYMMDDThhmmss.fffZ`, the RFC 2326 utc-time of an ONVIF `Range: clock=` header.
pub fn clock_time(ms: u64) -> String {
    let iso = crate::clock::rfc3339_utc(ms);
    iso.chars().filter(|c| !matches!(c, '-' | ':')).collect()
}

/// Silence after which a replay that has sent frames is taken as ended.
const REPLAY_IDLE: Duration = Duration::from_secs(5);

/// ONVIF replay (Streaming Specification, Profile G) of a recording's `uri` from `from_ms` to `to_ms`:
/// DESCRIBE, SETUP and PLAY with `Require: onvif-replay`, `Range: clock=<from>-<to>` and
/// `Rate-Control: no` (as fast as the server can send), RTP over TCP interleaved. The H.264 video is
/// written to `sink` as an Annex-B stream, SPS and PPS from the SDP first. Stops at the first frame
/// stamped at or after `to_ms` (the 0xABAC extension's NTP time, else the RTP clock counted from
/// `from_ms`), at the end of the stream, at `max_bytes` or at `deadline`; always TEARDOWN.
pub async fn replay(
    uri: &str,
    creds: Option<Credentials<'_>>,
    limits: Limits,
    (from_ms, to_ms): (u64, u64),
    max_bytes: u64,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Replay, RtspError> {
    let control_deadline = (Instant::now() + limits.timeout).min(deadline);
    let mut s = Session::open(uri, creds, limits, control_deadline).await?;
    s.require = Some("onvif-replay");
    let result = replay_session(&mut s, (from_ms, to_ms), max_bytes, deadline, sink).await;
    s.conn.set_deadline(Instant::now() + Duration::from_secs(2));
    s.teardown().await;
    result
}

async fn replay_session(
    s: &mut Session<'_>,
    (from_ms, to_ms): (u64, u64),
    max_bytes: u64,
    deadline: Instant,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Replay, RtspError> {
    let video = s.describe().await?;
    if video.codec != "H264" {
        return Err(RtspError::Protocol { uri: s.uri.clone(), what: "recording is not H.264 (only H.264 is exported)" });
    }
    setup(s, &video).await?;
    let uri = s.uri.clone();
    let range = format!("clock={}-{}", clock_time(from_ms), clock_time(to_ms));
    s.request("PLAY", &uri, &[("Range", range), ("Rate-Control", "no".to_owned())]).await?;

    let serr = |source: std::io::Error| RtspError::Http(HttpError::Io { target: "spool".into(), source });
    let mut d = super::h264::Depacketizer::default();
    for nal in super::h264::sprop_parameter_sets(video.sprop.as_deref().unwrap_or("")) {
        d.nal(&nal, sink).map_err(serr)?;
    }
    let (mut packets, mut first_ms, mut last_ms) = (0u64, None, None);
    let mut anchor: Option<(u32, u64)> = None;
    let end = loop {
        let now = Instant::now();
        if now >= deadline {
            break ReplayEnd::TimeCap;
        }
        s.conn.set_deadline((now + REPLAY_IDLE).min(deadline));
        let Some((chan, pkt)) = frame(s).await? else {
            break if Instant::now() >= deadline { ReplayEnd::TimeCap } else { ReplayEnd::EndOfStream };
        };
        if chan != 0 {
            // RTCP on channel 1: a BYE (packet type 203) anywhere in the compound packet ends the stream.
            if chan == 1 && rtcp_has_bye(&pkt) {
                break ReplayEnd::EndOfStream;
            }
            continue;
        }
        let Some(rtp) = super::h264::parse_rtp(&pkt) else { continue };
        if rtp.payload_type != video.payload_type {
            continue;
        }
        // Frame time from the replay extension (usually on a frame's first packet only); other packets
        // and servers without the extension count on from the last stamped packet (or from `from`) by
        // the 90 kHz RTP clock.
        let t = match super::h264::onvif_time_ms(rtp.extension) {
            Some(t) => {
                anchor = Some((rtp.timestamp, t));
                t
            }
            None => {
                let (ts0, ms0) = *anchor.get_or_insert((rtp.timestamp, from_ms));
                ms0 + u64::from(rtp.timestamp.wrapping_sub(ts0)) / 90
            }
        };
        if t >= to_ms {
            break ReplayEnd::RangeEnd;
        }
        first_ms = first_ms.or(Some(t));
        last_ms = Some(t);
        // Annex-B can outgrow the payload (a STAP-A's 2-byte sizes become 4-byte start codes):
        // bound it by twice the payload so the file never passes the cap.
        if d.bytes + rtp.payload.len() as u64 * 2 + 5 > max_bytes {
            break ReplayEnd::SizeCap;
        }
        packets += 1;
        d.push(rtp.payload, sink).map_err(serr)?;
    };
    if packets == 0 {
        return Err(RtspError::NoFrames { uri });
    }
    Ok(Replay { video, packets, nal_units: d.nal_units, bytes: d.bytes, first_ms, last_ms, end })
}

fn rtcp_has_bye(mut p: &[u8]) -> bool {
    while let (Some(&pt), Some(len)) = (p.get(1), p.get(2..4)) {
        if pt == 203 {
            return true;
        }
        let words = usize::from(u16::from_be_bytes([len.first().copied().unwrap_or(0), len.get(1).copied().unwrap_or(0)]));
        match p.get((words + 1) * 4..) {
            Some(rest) => p = rest,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=1\r\na=framerate:25\r\n\
        a=fmtp:96 packetization-mode=1;profile-level-id=42C01E;sprop-parameter-sets=Z0LAKPQDwBE/Kg==,aMuMsg==\r\n";

    #[test]
    fn sdp_video_codec_size_and_rate() {
        let v = parse_sdp(SDP).unwrap();
        assert_eq!(v.codec, "H264");
        assert_eq!(v.payload_type, 96);
        assert_eq!(v.fps, Some(25.0));
        assert_eq!(v.control.as_deref(), Some("trackID=1"));
        assert_eq!((v.width, v.height), (Some(1920), Some(1080)), "from the SPS (1088 rows, 8 cropped)");
        assert_eq!(parse_sdp("v=0\r\nm=audio 0 RTP/AVP 0\r\n"), None);
        assert_eq!(resolve_control("rtsp://h/s/", "trackID=1"), "rtsp://h/s/trackID=1");
        assert_eq!(resolve_control("rtsp://h/s", "rtsp://x/y"), "rtsp://x/y");
    }

    #[test]
    fn replay_clock_and_rtcp_bye() {
        assert_eq!(clock_time(1_796_551_200_250), "20261206T100000.250Z");
        assert!(rtcp_has_bye(&[0x81, 203, 0, 1, 1, 2, 3, 4]));
        // A sender report followed by a BYE in one compound packet.
        let mut sr = vec![0x80, 200, 0, 6];
        sr.resize(28, 0);
        sr.extend_from_slice(&[0x81, 203, 0, 1, 1, 2, 3, 4]);
        assert!(rtcp_has_bye(&sr));
        assert!(!rtcp_has_bye(&sr[..28]));
        assert!(!rtcp_has_bye(&[0x80]));
    }

    #[test]
    fn sps_garbage_is_none() {
        for g in [&[][..], &[0x67], &[0x67, 0xff, 0xff], &[0x65, 1, 2, 3], &[0x67, 0, 0, 0, 0, 0, 0, 0]] {
            assert_eq!(h264_sps_size(g), None);
        }
    }
}

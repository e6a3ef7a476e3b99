//! A fake RTSP/1.0 camera on 127.0.0.1: OPTIONS, DESCRIBE (HTTP Digest MD5, qop=auth, verified for
//! real), SETUP over TCP interleaved, PLAY sending RTP packets at a set frame rate (optionally
//! skipping sequence numbers to simulate loss, or sending nothing at all), TEARDOWN. Counts sessions
//! torn down and connections still open, so tests can check a client always cleans up.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{read_request, HttpRequest};
use super::{auth_params, hex, md5_hex};

#[derive(Debug, Clone)]
pub struct RtspOpts {
    pub user: String,
    pub pass: String,
    pub fps: u32,
    /// RTP packets per frame (a frame split into fragments, as FU-A does).
    pub packets_per_frame: u32,
    pub payload_bytes: usize,
    /// Skip one sequence number every `n` packets (0: no loss).
    pub drop_every: u64,
    /// PLAY succeeds but no packet ever follows.
    pub no_frames: bool,
}

impl Default for RtspOpts {
    fn default() -> Self {
        RtspOpts {
            user: "admin".into(),
            pass: "cam-pass".into(),
            fps: 25,
            packets_per_frame: 2,
            payload_bytes: 1000,
            drop_every: 0,
            no_frames: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct RtspStats {
    pub describes: AtomicU64,
    pub auth_failures: AtomicU64,
    pub teardowns: AtomicU64,
    pub plays: AtomicU64,
    /// Connections currently open.
    pub open: AtomicI64,
}

pub struct FakeRtsp {
    addr: SocketAddr,
    pub stats: Arc<RtspStats>,
    stop: Arc<AtomicBool>,
}

/// A single-file SDP with an H.264 SPS for 1920x1080 (1088 coded rows, 8 cropped).
fn sdp(fps: u32) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=FakeCam\r\nt=0 0\r\na=control:*\r\n\
         m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\na=framerate:{fps}\r\n\
         a=fmtp:96 packetization-mode=1;profile-level-id=42C028;sprop-parameter-sets=Z0LAKPQDwBE/Kg==,aM48gA==\r\n"
    )
}

impl FakeRtsp {
    pub fn start(opts: RtspOpts) -> FakeRtsp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake RTSP");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(RtspStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (stats, stop, opts) = (stats.clone(), stop.clone(), opts.clone());
                    std::thread::spawn(move || {
                        stats.open.fetch_add(1, Ordering::SeqCst);
                        serve(conn, &opts, &stats, &stop);
                        stats.open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
        FakeRtsp { addr, stats, stop }
    }

    pub fn uri(&self, path: &str) -> String {
        format!("rtsp://{}/{path}", self.addr)
    }

    pub fn base(&self) -> String {
        format!("rtsp://{}", self.addr)
    }
}

impl Drop for FakeRtsp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

pub(crate) fn reply(conn: &mut TcpStream, req: &HttpRequest, status: &str, extra: &str, body: &str) -> bool {
    let cseq = req.header("cseq").unwrap_or("0");
    let msg = format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}Content-Length: {}\r\n\r\n{body}", body.len());
    conn.write_all(msg.as_bytes()).is_ok()
}

fn serve(mut conn: TcpStream, o: &RtspOpts, stats: &RtspStats, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut nonce_nc: Option<(String, u32)> = None;
    let session = "5f3a9c01";
    loop {
        let Some(req) = read_request(&mut conn) else { return };
        let needs_auth = matches!(req.method.as_str(), "DESCRIBE" | "SETUP" | "PLAY");
        if needs_auth {
            let ok = digest_ok(&req, &mut nonce_nc, &o.user, &o.pass);
            if !ok {
                if req.header("authorization").is_some() {
                    stats.auth_failures.fetch_add(1, Ordering::SeqCst);
                }
                if !reply(&mut conn, &req, "401 Unauthorized", &challenge(&mut nonce_nc), "") {
                    return;
                }
                continue;
            }
        }
        let ok = match req.method.as_str() {
            "OPTIONS" => reply(&mut conn, &req, "200 OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n", ""),
            "DESCRIBE" => {
                stats.describes.fetch_add(1, Ordering::SeqCst);
                let base = format!("Content-Base: {}/\r\nContent-Type: application/sdp\r\n", req.path.trim_end_matches('/'));
                reply(&mut conn, &req, "200 OK", &base, &sdp(o.fps))
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
                if !reply(&mut conn, &req, "200 OK", &format!("Session: {session}\r\n"), "") {
                    return;
                }
                stream(&mut conn, o, stop, stats);
                return;
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

/// RTSP Digest (MD5, realm `fakecam`, qop=auth) against the nonce last issued on this connection; the
/// nc must increase. On success the nc is remembered.
pub(crate) fn digest_ok(req: &HttpRequest, nonce_nc: &mut Option<(String, u32)>, user: &str, pass: &str) -> bool {
    req.header("authorization").and_then(|h| h.strip_prefix("Digest ")).map(auth_params).is_some_and(|p| {
        let g = |k: &str| p.get(k).cloned().unwrap_or_default();
        let Some((nonce, last)) = nonce_nc.as_mut() else { return false };
        let nc = u32::from_str_radix(&g("nc"), 16).unwrap_or(0);
        let ha1 = md5_hex(format!("{}:fakecam:{pass}", g("username")).as_bytes());
        let ha2 = md5_hex(format!("{}:{}", req.method, g("uri")).as_bytes());
        let want = md5_hex(format!("{ha1}:{nonce}:{}:{}:auth:{ha2}", g("nc"), g("cnonce")).as_bytes());
        let good = g("nonce") == *nonce && nc > *last && g("username") == user && g("response") == want && g("uri") == req.path;
        if good {
            *last = nc;
        }
        good
    })
}

/// A fresh Digest challenge header line for this connection.
pub(crate) fn challenge(nonce_nc: &mut Option<(String, u32)>) -> String {
    let mut raw = [0u8; 12];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    let n = hex(&raw);
    *nonce_nc = Some((n.clone(), 0));
    format!("WWW-Authenticate: Digest realm=\"fakecam\", nonce=\"{n}\", qop=\"auth\"\r\n")
}

/// Sends RTP until the client stops reading or sends TEARDOWN (read on a clone of the socket).
fn stream(conn: &mut TcpStream, o: &RtspOpts, stop: &AtomicBool, stats: &RtspStats) {
    let Ok(mut reader) = conn.try_clone() else { return };
    let done = Arc::new(AtomicBool::new(false));
    {
        let done_r = done.clone();
        let teardowns = Arc::new(AtomicU64::new(0));
        let t2 = teardowns.clone();
        std::thread::spawn(move || {
            while let Some(req) = read_request(&mut reader) {
                if req.method == "TEARDOWN" {
                    t2.fetch_add(1, Ordering::SeqCst);
                    let _ = reply(&mut reader, &req, "200 OK", "", "");
                    break;
                }
            }
            done_r.store(true, Ordering::SeqCst);
        });
        // Wait for the reader thread's verdict at the end instead of sharing the counter type.
        let start = Instant::now();
        let frame = Duration::from_secs_f64(1.0 / f64::from(o.fps.max(1)));
        let (mut seq, mut n, mut ts) = (1000u16, 0u64, 0u32);
        let mut next = start;
        while !stop.load(Ordering::SeqCst) && !done.load(Ordering::SeqCst) {
            if !o.no_frames {
                for i in 0..o.packets_per_frame {
                    n += 1;
                    if o.drop_every > 0 && n % o.drop_every == 0 {
                        seq = seq.wrapping_add(1);
                    }
                    let marker = if i + 1 == o.packets_per_frame { 0x80 } else { 0 };
                    let mut pkt = vec![0x80, marker | 96];
                    pkt.extend_from_slice(&seq.to_be_bytes());
                    pkt.extend_from_slice(&ts.to_be_bytes());
                    pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                    pkt.resize(12 + o.payload_bytes, 0x5a);
                    let mut frame_bytes = vec![b'$', 0];
                    frame_bytes.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
                    frame_bytes.extend_from_slice(&pkt);
                    if conn.write_all(&frame_bytes).is_err() {
                        done.store(true, Ordering::SeqCst);
                        break;
                    }
                    seq = seq.wrapping_add(1);
                }
                ts = ts.wrapping_add(90_000 / o.fps.max(1));
            }
            next += frame;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        // Let the reader thread answer a TEARDOWN that raced with the end of the stream.
        let wait = Instant::now();
        while !done.load(Ordering::SeqCst) && wait.elapsed() < Duration::from_secs(2) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        stats.teardowns.fetch_add(teardowns.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

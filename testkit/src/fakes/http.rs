//! Server side of HTTP/1.1 and RTSP/1.0 framing for the fakes: one request from a blocking socket.

use std::io::Read;
use std::net::TcpStream;

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one request (head capped at 64 KiB, body by Content-Length up to 1 MiB). `None` on EOF,
/// timeout or garbage.
pub fn read_request(conn: &mut TcpStream) -> Option<HttpRequest> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let len: usize =
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    if len > 1024 * 1024 {
        return None;
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).ok()?;
    Some(HttpRequest { method, path, headers, body })
}

/// A simulated power cycle for the fakes: after [`PowerCycle::trigger`], the accept loop closes its
/// listener (new connections are refused, as from a device that is down) for the given time, then
/// listens on the same port again with its uptime reset.
#[derive(Debug, Default)]
pub struct PowerCycle {
    pending_ms: std::sync::atomic::AtomicU64,
    /// Completed reboots.
    pub boots: std::sync::atomic::AtomicU64,
    /// When the device last started (ms since the epoch); 0 = never rebooted.
    pub booted_at_ms: std::sync::atomic::AtomicU64,
    /// When the listener closed and reopened for the last reboot (ms since the epoch).
    pub down_at_ms: std::sync::atomic::AtomicU64,
    pub up_at_ms: std::sync::atomic::AtomicU64,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl PowerCycle {
    /// Goes down for `down_ms` shortly (the answer to the reboot request is sent first).
    pub fn trigger(&self, down_ms: u64) {
        self.pending_ms.store(down_ms.max(1), std::sync::atomic::Ordering::SeqCst);
    }

    /// Seconds since the last (simulated) start, or `None` before any reboot.
    pub fn uptime_s(&self) -> Option<u64> {
        match self.booted_at_ms.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            t => Some(now_ms().saturating_sub(t) / 1000),
        }
    }
}

/// Accepts connections on `listener` and hands each to `handle` on its own thread until `stop`;
/// honours `power` reboots by closing and re-binding the port.
pub fn accept_loop(
    listener: std::net::TcpListener,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    power: std::sync::Arc<PowerCycle>,
    handle: std::sync::Arc<dyn Fn(TcpStream) + Send + Sync>,
) {
    use std::sync::atomic::Ordering;
    let addr = listener.local_addr().expect("local addr");
    let mut listener = Some(listener);
    while !stop.load(Ordering::SeqCst) {
        let down = power.pending_ms.swap(0, Ordering::SeqCst);
        if down > 0 {
            // Let the reboot answer leave before the port closes.
            std::thread::sleep(std::time::Duration::from_millis(100));
            listener = None;
            power.down_at_ms.store(now_ms(), Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(down));
            let mut tries = 0;
            while listener.is_none() && tries < 100 {
                listener = std::net::TcpListener::bind(addr).ok();
                if listener.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                tries += 1;
            }
            power.up_at_ms.store(now_ms(), Ordering::SeqCst);
            power.booted_at_ms.store(now_ms(), Ordering::SeqCst);
            power.boots.fetch_add(1, Ordering::SeqCst);
        }
        let Some(l) = listener.as_ref() else { return };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((conn, _)) => {
                let _ = conn.set_nonblocking(false);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let h = handle.clone();
                std::thread::spawn(move || h(conn));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// Deterministic bytes for fake media (xorshift from `seed`): tests compare what arrives with them.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small JPEG-framed image (SOI, JFIF APP0, a comment segment of deterministic bytes, EOI): what
/// the snapshot path checks. Its content is not a picture.
pub fn fake_jpeg(seed: u64, len: usize) -> Vec<u8> {
    // A real 64x48 baseline JPEG (GStreamer's SMPTE test card through jpegenc), so browsers render
    // it; `len` bytes of seeded filler ride in COM segments after its JFIF header, so every device's
    // picture differs and has the size the test asks for.
    const CARD: &[u8] = include_bytes!("testcard.jpg");
    const HEADER: usize = 20; // SOI + the APP0 JFIF segment
    let mut out = CARD[..HEADER].to_vec();
    let body = pseudo_random_bytes(seed, len.max(64));
    for seg in body.chunks(60_000) {
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((seg.len() + 2) as u16).to_be_bytes());
        // 0xFF inside a comment would be fine, but keep markers unambiguous.
        out.extend(seg.iter().map(|b| if *b == 0xFF { 0xFE } else { *b }));
    }
    out.extend_from_slice(&CARD[HEADER..]);
    out
}

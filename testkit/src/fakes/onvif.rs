//! A fake ONVIF camera on 127.0.0.1: device and media services over real HTTP/1.1, verifying
//! WS-UsernameToken (PasswordDigest, Created within 5 s of its own clock, nonces never reused) and
//! HTTP Digest (RFC 7616 MD5 / SHA-256, qop=auth, nc increasing per nonce) for real. Quirk switches
//! reproduce what field devices do: other namespace prefixes, SOAP 1.1 faults, faults with HTTP 200 /
//! 400 / 500, no GetServices, a clock minutes off, and outright hostile answers.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::http::{accept_loop, fake_jpeg, read_request, HttpRequest, PowerCycle};
use super::{auth_params, b64, b64_decode, hex, md5_hex, sha256_hex};

/// How the device wants clients to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// WS-UsernameToken in the SOAP header (most cameras).
    UsernameToken,
    /// HTTP Digest with the given `algorithm=` token; an unknown token tests the client's refusal.
    Digest(&'static str),
    /// Either is accepted.
    Either,
}

/// Namespace prefix style of the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefixes {
    /// `s:`, `tds:`, `trt:`, `tt:`.
    Usual,
    /// gSOAP style: `SOAP-ENV:`, `ns1:`, `ns2:`, `ns3:`.
    Gsoap,
    /// No prefixes, default namespaces declared on each element.
    None,
}

/// Answers that are not ONVIF at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    No,
    /// Bytes that are not HTTP.
    GarbageHttp,
    /// HTTP 200 whose body is not XML.
    GarbageXml,
    /// Content-Length promises more than is sent, then the connection closes.
    Truncated,
    /// A 100 MB XML body, streamed without a length.
    Huge,
    /// One header byte every 200 ms, forever.
    Slowloris,
    /// 302 to the same path.
    RedirectLoop,
    /// Accepts the connection and never answers.
    Silent,
}

#[derive(Debug, Clone)]
pub struct OnvifOpts {
    pub user: String,
    pub pass: String,
    pub auth: AuthMode,
    pub prefixes: Prefixes,
    /// HTTP status of SOAP faults (200, 400 or 500 in the field).
    pub fault_status: u16,
    /// SOAP 1.1 fault shape (faultcode/faultstring) instead of SOAP 1.2 Code/Subcode/Reason.
    pub soap11_faults: bool,
    pub no_get_services: bool,
    /// Device clock minus real time, seconds.
    pub clock_skew_s: i64,
    pub misbehave: Misbehave,
    pub manufacturer: String,
    pub model: String,
    pub firmware: String,
    pub serial: String,
    /// Stream URIs are `{rtsp_base}/{profile token}`, replay URIs `{rtsp_base}/replay/{recording token}`.
    pub rtsp_base: String,
    /// `Some(n)`: an ONVIF Profile G recorder holding `n` recordings `rec0`.. (search, recording and
    /// replay services; GetReplayUri answers for them).
    pub recordings: Option<u32>,
    /// The recorder has no recording (control) service: clients find recordings with FindRecordings.
    pub search_only: bool,
    /// After SystemReboot the device refuses connections for this long, then is back with its
    /// uptime reset.
    pub reboot_down_ms: u64,
    /// Seed and size of the JPEG served at the GetSnapshotUri address (HTTP Digest, as cameras do).
    pub snapshot_seed: u64,
    pub snapshot_len: usize,
}

impl Default for OnvifOpts {
    fn default() -> Self {
        OnvifOpts {
            user: "admin".into(),
            pass: "cam-pass".into(),
            auth: AuthMode::UsernameToken,
            prefixes: Prefixes::Usual,
            fault_status: 400,
            soap11_faults: false,
            no_get_services: false,
            clock_skew_s: 0,
            misbehave: Misbehave::No,
            manufacturer: "FakeCam".into(),
            model: "FC-1080".into(),
            firmware: "V5.7.3 build 240101".into(),
            serial: "FC1080-000123".into(),
            rtsp_base: "rtsp://127.0.0.1:554".into(),
            recordings: None,
            search_only: false,
            reboot_down_ms: 2000,
            snapshot_seed: 7,
            snapshot_len: 20_000,
        }
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct OnvifStats {
    pub requests: AtomicU64,
    /// Requests whose credentials were present but wrong (what locks real accounts).
    pub auth_failures: AtomicU64,
    pub actions: Mutex<Vec<String>>,
}

impl OnvifStats {
    pub fn actions(&self) -> Vec<String> {
        self.actions.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

pub struct FakeOnvif {
    addr: SocketAddr,
    pub stats: Arc<OnvifStats>,
    /// Simulated reboots (SystemReboot).
    pub power: Arc<PowerCycle>,
    stop: Arc<AtomicBool>,
    pub opts: Arc<Mutex<OnvifOpts>>,
}

impl FakeOnvif {
    pub fn start(opts: OnvifOpts) -> FakeOnvif {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake ONVIF");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(OnvifStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let opts = Arc::new(Mutex::new(opts));
        let state = Arc::new(Mutex::new(AuthState::default()));
        let power = Arc::new(PowerCycle::default());
        {
            let (stats, stop, opts, power) = (stats.clone(), stop.clone(), opts.clone(), power.clone());
            let handle: Arc<dyn Fn(TcpStream) + Send + Sync> = {
                let (stop, power) = (stop.clone(), power.clone());
                Arc::new(move |conn| serve(conn, addr, &opts, &stats, &state, &stop, &power))
            };
            std::thread::spawn(move || accept_loop(listener, stop, power, handle));
        }
        FakeOnvif { addr, stats, power, stop, opts }
    }

    /// The JPEG served at the snapshot URI.
    pub fn snapshot_jpeg(&self) -> Vec<u8> {
        let o = self.opts.lock().map(|o| o.clone()).unwrap_or_default();
        fake_jpeg(o.snapshot_seed, o.snapshot_len)
    }

    /// `127.0.0.1:port`
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    pub fn set(&self, f: impl FnOnce(&mut OnvifOpts)) {
        if let Ok(mut o) = self.opts.lock() {
            f(&mut o);
        }
    }
}

impl Drop for FakeOnvif {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

#[derive(Default)]
struct AuthState {
    /// Issued Digest nonces and the last nc seen for each.
    nonces: HashMap<String, u32>,
    /// WS-Security nonces already used.
    wsse_nonces: std::collections::HashSet<String>,
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn serve(
    mut conn: TcpStream,
    addr: SocketAddr,
    opts: &Mutex<OnvifOpts>,
    stats: &OnvifStats,
    state: &Mutex<AuthState>,
    stop: &AtomicBool,
    power: &PowerCycle,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&mut conn) else { return };
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let o = opts.lock().map(|o| o.clone()).unwrap_or_default();
    match o.misbehave {
        Misbehave::No => {}
        Misbehave::GarbageHttp => {
            let _ = conn.write_all(b"\x00\xff\xfeSSH-2.0-garbage\r\n\r\n\x01\x02");
            return;
        }
        Misbehave::GarbageXml => {
            let body = "this is <<< not xml &&& at all </b></a>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        Misbehave::Truncated => {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<s:Envelope><s:Body><tds:GetSystemDa");
            return;
        }
        Misbehave::Huge => {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\n\r\n<Envelope><Body>");
            let chunk = "<x>padding</x>".repeat(1000);
            let mut sent = 0usize;
            while sent < 100_000_000 {
                if conn.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
                sent += chunk.len();
            }
            return;
        }
        Misbehave::Slowloris => {
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
                if stop.load(Ordering::SeqCst) || conn.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            return;
        }
        Misbehave::RedirectLoop => {
            let _ = write!(conn, "HTTP/1.1 302 Found\r\nLocation: http://{addr}{}\r\nContent-Length: 0\r\n\r\n", req.path);
            return;
        }
        Misbehave::Silent => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
            return;
        }
    }
    if req.method == "GET" && req.path == "/onvif/snapshot.jpg" {
        serve_snapshot(&mut conn, &req, &o, stats, state);
        return;
    }
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let action = first_body_element(&body).unwrap_or_default();
    if let Ok(mut a) = stats.actions.lock() {
        a.push(action.clone());
    }
    let p = Names::of(o.prefixes);
    let device_now = now_s() + o.clock_skew_s;
    if action != "GetSystemDateAndTime" {
        match check_auth(&req, &body, &o, state, device_now) {
            Ok(()) => {}
            Err(AuthFail::Challenge) => {
                let nonce = {
                    let n = hex(&rand16());
                    if let Ok(mut s) = state.lock() {
                        s.nonces.insert(n.clone(), 0);
                    }
                    n
                };
                let alg = if let AuthMode::Digest(a) = o.auth { a } else { "MD5" };
                let _ = write!(
                    conn,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"fakecam\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"op4que\", algorithm={alg}\r\nContent-Length: 0\r\n\r\n"
                );
                return;
            }
            Err(AuthFail::Rejected(why)) => {
                stats.auth_failures.fetch_add(1, Ordering::SeqCst);
                let f = fault(&p, &o, "Sender", "ter:NotAuthorized", &format!("Sender not authorized: {why}"));
                respond(&mut conn, o.fault_status, &f);
                return;
            }
        }
    }
    let token = elem_text(&body, "ProfileToken").unwrap_or_else(|| "main".into());
    let rec_token = elem_text(&body, "RecordingToken").unwrap_or_default();
    let (status, xml) = answer(&action, &token, &rec_token, &o, &p, device_now, addr);
    respond(&mut conn, status, &xml);
    if action == "SystemReboot" && status == 200 {
        power.trigger(o.reboot_down_ms);
    }
}

/// The snapshot URI: a JPEG behind HTTP Digest (whatever the SOAP auth mode), with a `Date` header
/// on the device's clock.
fn serve_snapshot(conn: &mut TcpStream, req: &HttpRequest, o: &OnvifOpts, stats: &OnvifStats, state: &Mutex<AuthState>) {
    if let Ok(mut a) = stats.actions.lock() {
        a.push("GET snapshot".into());
    }
    match check_digest(req, o, state) {
        Ok(()) => {}
        Err(AuthFail::Challenge) => {
            let n = hex(&rand16());
            if let Ok(mut s) = state.lock() {
                s.nonces.insert(n.clone(), 0);
            }
            let _ = write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"fakecam\", qop=\"auth\", nonce=\"{n}\", opaque=\"op4que\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n"
            );
            return;
        }
        Err(AuthFail::Rejected(_)) => {
            stats.auth_failures.fetch_add(1, Ordering::SeqCst);
            let _ = write!(conn, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    }
    let jpeg = fake_jpeg(o.snapshot_seed, o.snapshot_len);
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nDate: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        imf_date(now_s() + o.clock_skew_s),
        jpeg.len()
    );
    let _ = conn.write_all(&jpeg);
    let _ = conn.flush();
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) of Unix seconds.
pub fn imf_date(t: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(t);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][t.div_euclid(86_400).rem_euclid(7) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(mo - 1) as usize];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{mi:02}:{s:02} GMT")
}

fn respond(conn: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/soap+xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
    let mut rest = Vec::new();
    let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = conn.read_to_end(&mut rest);
}

fn rand16() -> [u8; 16] {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b
}

enum AuthFail {
    /// No usable credentials for Digest: send a 401 challenge.
    Challenge,
    /// Credentials present but wrong.
    Rejected(String),
}

/// HTTP Digest (RFC 7616, MD5 or SHA-256, qop=auth) against the issued nonces; nc must increase.
fn check_digest(req: &HttpRequest, o: &OnvifOpts, state: &Mutex<AuthState>) -> Result<(), AuthFail> {
    let Some(h) = req.header("authorization") else { return Err(AuthFail::Challenge) };
    let Some(params) = h.strip_prefix("Digest ").map(auth_params) else { return Err(AuthFail::Challenge) };
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut st = state.lock().map_err(|_| AuthFail::Challenge)?;
    let nonce = get("nonce");
    let Some(last_nc) = st.nonces.get(&nonce).copied() else { return Err(AuthFail::Challenge) };
    let nc = u32::from_str_radix(&get("nc"), 16).unwrap_or(0);
    if nc <= last_nc {
        return Err(AuthFail::Rejected(format!("nc {nc} reused")));
    }
    let hash = |s: &str| match get("algorithm").to_ascii_uppercase().as_str() {
        "SHA-256" => sha256_hex(s.as_bytes()),
        _ => md5_hex(s.as_bytes()),
    };
    if get("uri") != req.path {
        return Err(AuthFail::Rejected("uri mismatch".into()));
    }
    let ha1 = hash(&format!("{}:fakecam:{}", get("username"), o.pass));
    let ha2 = hash(&format!("{}:{}", req.method, req.path));
    let want = hash(&format!("{ha1}:{nonce}:{}:{}:auth:{ha2}", get("nc"), get("cnonce")));
    if get("username") != o.user || get("response") != want || get("qop") != "auth" || get("opaque") != "op4que" {
        return Err(AuthFail::Rejected("digest response".into()));
    }
    st.nonces.insert(nonce, nc);
    Ok(())
}

fn check_auth(req: &HttpRequest, body: &str, o: &OnvifOpts, state: &Mutex<AuthState>, device_now: i64) -> Result<(), AuthFail> {
    let digest_ok = || check_digest(req, o, state);
    let wsse_ok = || -> Result<(), AuthFail> {
        let (Some(user), Some(pw), Some(nonce), Some(created)) =
            (elem_text(body, "Username"), elem_text(body, "Password"), elem_text(body, "Nonce"), elem_text(body, "Created"))
        else {
            return Err(AuthFail::Rejected("no UsernameToken".into()));
        };
        let raw = b64_decode(&nonce).ok_or_else(|| AuthFail::Rejected("nonce not base64".into()))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&raw);
        ctx.update(created.as_bytes());
        ctx.update(o.pass.as_bytes());
        if user != o.user || b64(ctx.finish().as_ref()) != pw {
            return Err(AuthFail::Rejected("password digest".into()));
        }
        let t = parse_utc(&created).ok_or_else(|| AuthFail::Rejected("Created unparseable".into()))?;
        if (t - device_now).abs() > 5 {
            return Err(AuthFail::Rejected(format!("Created {created} is {}s off the device clock", t - device_now)));
        }
        let mut st = state.lock().map_err(|_| AuthFail::Challenge)?;
        if !st.wsse_nonces.insert(nonce) {
            return Err(AuthFail::Rejected("nonce replayed".into()));
        }
        Ok(())
    };
    match o.auth {
        AuthMode::UsernameToken => wsse_ok(),
        AuthMode::Digest(_) => digest_ok(),
        AuthMode::Either => match digest_ok() {
            Ok(()) => Ok(()),
            Err(AuthFail::Rejected(w)) => Err(AuthFail::Rejected(w)),
            Err(AuthFail::Challenge) => wsse_ok(),
        },
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` to Unix seconds.
pub(crate) fn parse_utc(s: &str) -> Option<i64> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, mi) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let sec = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + dd - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Calendar parts (year, month, day, hour, minute, second) of Unix seconds, UTC.
pub fn utc_parts(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let sod = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod / 60 % 60, sod % 60)
}

/// Text of the first element with this local name (any prefix).
pub fn elem_text(xml: &str, local: &str) -> Option<String> {
    let mut pos = 0;
    while let Some(i) = xml[pos..].find('<') {
        let start = pos + i + 1;
        let end = start + xml[start..].find('>')?;
        let tag = &xml[start..end];
        let name = tag.split_whitespace().next().unwrap_or("");
        if name.rsplit(':').next() == Some(local) && !tag.ends_with('/') {
            let close = xml[end..].find("</")? + end;
            return Some(xml[end + 1..close].trim().to_string());
        }
        pos = end;
    }
    None
}

fn first_body_element(xml: &str) -> Option<String> {
    let mut pos = 0;
    let mut in_body = false;
    while let Some(i) = xml[pos..].find('<') {
        let start = pos + i + 1;
        let end = start + xml[start..].find('>')?;
        let tag = &xml[start..end];
        pos = end;
        if tag.starts_with('/') || tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or("").trim_end_matches('/');
        let local = name.rsplit(':').next().unwrap_or("");
        if in_body {
            return Some(local.to_string());
        }
        if local == "Body" {
            in_body = true;
        }
    }
    None
}

/// Element name builders for one prefix style.
struct Names {
    env: &'static str,
    dev: &'static str,
    media: &'static str,
    tt: &'static str,
    style: Prefixes,
}

const NS_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_DEV: &str = "http://www.onvif.org/ver10/device/wsdl";
const NS_MEDIA: &str = "http://www.onvif.org/ver10/media/wsdl";
const NS_TT: &str = "http://www.onvif.org/ver10/schema";
const NS_SEARCH: &str = "http://www.onvif.org/ver10/search/wsdl";
const NS_RECORDING: &str = "http://www.onvif.org/ver10/recording/wsdl";
const NS_REPLAY: &str = "http://www.onvif.org/ver10/replay/wsdl";

impl Names {
    fn of(style: Prefixes) -> Names {
        match style {
            Prefixes::Usual => Names { env: "s:", dev: "tds:", media: "trt:", tt: "tt:", style },
            Prefixes::Gsoap => Names { env: "SOAP-ENV:", dev: "ns1:", media: "ns2:", tt: "ns3:", style },
            Prefixes::None => Names { env: "", dev: "", media: "", tt: "", style },
        }
    }

    fn envelope(&self, body: &str) -> String {
        match self.style {
            Prefixes::None => {
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Envelope xmlns=\"{NS_ENV}\"><Body>{body}</Body></Envelope>")
            }
            _ => {
                let (e, d, m, t) = (
                    self.env.trim_end_matches(':'),
                    self.dev.trim_end_matches(':'),
                    self.media.trim_end_matches(':'),
                    self.tt.trim_end_matches(':'),
                );
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{e}:Envelope xmlns:{e}=\"{NS_ENV}\" xmlns:{d}=\"{NS_DEV}\" xmlns:{m}=\"{NS_MEDIA}\" xmlns:{t}=\"{NS_TT}\" xmlns:ter=\"http://www.onvif.org/ver10/error\">\n  <{e}:Body>{body}</{e}:Body>\n</{e}:Envelope>"
                )
            }
        }
    }

    /// `<prefix:name xmlns=...>` opening for a response element in namespace `ns`.
    fn open(&self, prefix: &str, name: &str, ns: &str) -> String {
        match self.style {
            Prefixes::None => format!("<{name} xmlns=\"{ns}\">"),
            _ => format!("<{prefix}{name}>"),
        }
    }
}

fn fault(p: &Names, o: &OnvifOpts, code: &str, subcode: &str, reason: &str) -> String {
    let e = p.env;
    if o.soap11_faults {
        return p.envelope(&format!("<{e}Fault><faultcode>{e}{code}</faultcode><faultstring>{reason}</faultstring></{e}Fault>"));
    }
    p.envelope(&format!(
        "<{e}Fault><{e}Code><{e}Value>{e}{code}</{e}Value><{e}Subcode><{e}Value>{subcode}</{e}Value></{e}Subcode></{e}Code>\
         <{e}Reason><{e}Text xml:lang=\"en\">{reason}</{e}Text></{e}Reason></{e}Fault>"
    ))
}

fn answer(
    action: &str,
    token: &str,
    rec_token: &str,
    o: &OnvifOpts,
    p: &Names,
    device_now: i64,
    addr: SocketAddr,
) -> (u16, String) {
    let (d, m, t) = (p.dev, p.media, p.tt);
    let tag = |pre: &str, name: &str, v: &str| format!("<{pre}{name}>{v}</{pre}{name}>");
    let body = match action {
        "GetSystemDateAndTime" => {
            let (y, mo, dd, h, mi, s) = utc_parts(device_now);
            format!(
                "{}<{d}SystemDateAndTime><{t}DateTimeType>NTP</{t}DateTimeType><{t}DaylightSavings>false</{t}DaylightSavings>\
                 <{t}UTCDateTime><{t}Date><{t}Year>{y}</{t}Year><{t}Month>{mo}</{t}Month><{t}Day>{dd}</{t}Day></{t}Date>\
                 <{t}Time><{t}Hour>{h}</{t}Hour><{t}Minute>{mi}</{t}Minute><{t}Second>{s}</{t}Second></{t}Time></{t}UTCDateTime>\
                 </{d}SystemDateAndTime></{d}GetSystemDateAndTimeResponse>",
                p.open(d, "GetSystemDateAndTimeResponse", NS_DEV)
            )
        }
        "GetDeviceInformation" => format!(
            "{}{}{}{}{}{}</{d}GetDeviceInformationResponse>",
            p.open(d, "GetDeviceInformationResponse", NS_DEV),
            tag(d, "Manufacturer", &o.manufacturer),
            tag(d, "Model", &o.model),
            tag(d, "FirmwareVersion", &o.firmware),
            tag(d, "SerialNumber", &o.serial),
            tag(d, "HardwareId", "HW-1")
        ),
        "GetServices" if o.no_get_services => {
            return (o.fault_status, fault(p, o, "Receiver", "ter:ActionNotSupported", "GetServices not supported"));
        }
        // The XAddrs name a factory address nobody can reach: clients must use the path only.
        "GetServices" => format!(
            "{}<{d}Service><{d}Namespace>{NS_DEV}</{d}Namespace><{d}XAddr>http://192.0.2.1/onvif/device_service</{d}XAddr></{d}Service>\
             <{d}Service><{d}Namespace>{NS_MEDIA}</{d}Namespace><{d}XAddr>http://192.0.2.1:8080/onvif/Media</{d}XAddr></{d}Service>{}\
             </{d}GetServicesResponse>",
            p.open(d, "GetServicesResponse", NS_DEV),
            if o.recordings.is_some() {
                format!(
                    "<{d}Service><{d}Namespace>{NS_SEARCH}</{d}Namespace><{d}XAddr>http://192.0.2.1/onvif/search_service</{d}XAddr></{d}Service>\
                     {}<{d}Service><{d}Namespace>{NS_REPLAY}</{d}Namespace><{d}XAddr>http://192.0.2.1/onvif/replay_service</{d}XAddr></{d}Service>",
                    if o.search_only {
                        String::new()
                    } else {
                        format!("<{d}Service><{d}Namespace>{NS_RECORDING}</{d}Namespace><{d}XAddr>http://192.0.2.1/onvif/recording_service</{d}XAddr></{d}Service>")
                    }
                )
            } else {
                String::new()
            }
        ),
        "GetCapabilities" => format!(
            "{}<{d}Capabilities><{t}Media><{t}XAddr>http://192.0.2.1/onvif/Media</{t}XAddr></{t}Media>{}</{d}Capabilities></{d}GetCapabilitiesResponse>",
            p.open(d, "GetCapabilitiesResponse", NS_DEV),
            if o.recordings.is_some() {
                format!(
                    "<{t}Extension><{t}Recording><{t}XAddr>http://192.0.2.1/onvif/recording_service</{t}XAddr></{t}Recording>\
                     <{t}Search><{t}XAddr>http://192.0.2.1/onvif/search_service</{t}XAddr></{t}Search>\
                     <{t}Replay><{t}XAddr>http://192.0.2.1/onvif/replay_service</{t}XAddr></{t}Replay></{t}Extension>"
                )
            } else {
                String::new()
            }
        ),
        "GetRecordingSummary" if o.recordings.is_some() => format!(
            "{}<{d}Summary><{t}DataFrom>2026-01-01T00:00:00Z</{t}DataFrom><{t}DataUntil>2026-12-06T10:00:00Z</{t}DataUntil>\
             <{t}NumberRecordings>{}</{t}NumberRecordings></{d}Summary></{d}GetRecordingSummaryResponse>",
            p.open(d, "GetRecordingSummaryResponse", NS_SEARCH),
            o.recordings.unwrap_or(0)
        ),
        // One page with every recording, the search already complete.
        "FindRecordings" if o.recordings.is_some() => format!(
            "{}<{d}SearchToken>search-1</{d}SearchToken></{d}FindRecordingsResponse>",
            p.open(d, "FindRecordingsResponse", NS_SEARCH)
        ),
        "GetRecordingSearchResults" if o.recordings.is_some() => format!(
            "{}<{d}ResultList><{t}SearchState>Completed</{t}SearchState>{}</{d}ResultList></{d}GetRecordingSearchResultsResponse>",
            p.open(d, "GetRecordingSearchResultsResponse", NS_SEARCH),
            (0..o.recordings.unwrap_or(0))
                .map(|i| format!(
                    "<{t}RecordingInformation><{t}RecordingToken>rec{i}</{t}RecordingToken><{t}Source><{t}SourceId>ch{i}</{t}SourceId>\
                     <{t}Name>channel {i}</{t}Name></{t}Source><{t}RecordingStatus>Recording</{t}RecordingStatus></{t}RecordingInformation>"
                ))
                .collect::<String>()
        ),
        "EndSearch" if o.recordings.is_some() => format!(
            "{}<{d}Endpoint>2026-12-06T10:00:00Z</{d}Endpoint></{d}EndSearchResponse>",
            p.open(d, "EndSearchResponse", NS_SEARCH)
        ),
        "GetRecordings" if o.recordings.is_some() && !o.search_only => format!(
            "{}{}</{d}GetRecordingsResponse>",
            p.open(d, "GetRecordingsResponse", NS_RECORDING),
            (0..o.recordings.unwrap_or(0))
                .map(|i| format!(
                    "<{d}RecordingItem><{t}RecordingToken>rec{i}</{t}RecordingToken><{t}Configuration><{t}Source><{t}SourceId>ch{i}</{t}SourceId>\
                     </{t}Source><{t}Content>channel {i}</{t}Content></{t}Configuration></{d}RecordingItem>"
                ))
                .collect::<String>()
        ),
        // Replay URIs of the recordings GetRecordings lists (`rec0`, `rec1`, ...), under `rtsp_base`.
        "GetReplayUri" if o.recordings.is_some() => {
            let n = o.recordings.unwrap_or(0);
            let known = rec_token.strip_prefix("rec").and_then(|i| i.parse::<u32>().ok()).is_some_and(|i| i < n);
            if !known {
                return (o.fault_status, fault(p, o, "Sender", "ter:InvalidArgVal", "ter:NoRecording"));
            }
            format!(
                "{}<{d}Uri>{}/replay/{rec_token}</{d}Uri></{d}GetReplayUriResponse>",
                p.open(d, "GetReplayUriResponse", NS_REPLAY),
                o.rtsp_base
            )
        }
        "GetProfiles" => {
            let prof = |token: &str, w: u32, h: u32| {
                format!(
                    "<{m}Profiles token=\"{token}\" fixed=\"true\"><{t}Name>{token}_stream</{t}Name><{t}VideoEncoderConfiguration token=\"enc_{token}\">\
                     <{t}Name>enc</{t}Name><{t}Encoding>H264</{t}Encoding><{t}Resolution><{t}Width>{w}</{t}Width><{t}Height>{h}</{t}Height></{t}Resolution>\
                     </{t}VideoEncoderConfiguration></{m}Profiles>"
                )
            };
            format!("{}{}{}</{m}GetProfilesResponse>", p.open(m, "GetProfilesResponse", NS_MEDIA), prof("main", 1920, 1080), prof("sub", 640, 360))
        }
        "GetStreamUri" | "GetSnapshotUri" => {
            let uri = if action == "GetStreamUri" {
                format!("{}/{token}", o.rtsp_base)
            } else {
                format!("http://{addr}/onvif/snapshot.jpg")
            };
            format!(
                "{}<{m}MediaUri><{t}Uri>{uri}</{t}Uri><{t}InvalidAfterConnect>false</{t}InvalidAfterConnect></{m}MediaUri></{m}{action}Response>",
                p.open(m, &format!("{action}Response"), NS_MEDIA)
            )
        }
        "SystemReboot" => format!(
            "{}<{d}Message>Rebooting in 1 second</{d}Message></{d}SystemRebootResponse>",
            p.open(d, "SystemRebootResponse", NS_DEV)
        ),
        _ => return (o.fault_status, fault(p, o, "Receiver", "ter:ActionNotSupported", "unknown action")),
    };
    (200, p.envelope(&body))
}

//! A fake Dahua NVR (or camera) speaking the HTTP CGI API on 127.0.0.1: magicBox identity,
//! storageDevice getDeviceAllInfo, LogicDeviceManager getCameraState and configManager RecordMode, as
//! `key=value` text behind HTTP Digest (MD5, qop=auth), verified for real (response, uri, nc never
//! reused per nonce). Device commands: `snapshot.cgi` (a real JPEG per channel),
//! `magicBox.cgi?action=reboot` (down for a while, then back), and one recording exported either by
//! time (`loadfile.cgi?action=startLoad`) or found with `mediaFileFind.cgi` (factory.create, findFile,
//! findNextFile, close, destroy) and fetched from `/cgi-bin/RPC_Loadfile/<FilePath>`. Everything is switchable at runtime through [`FakeDahua::set`] (a replaced unit
//! is a new serial), and quirk switches reproduce field firmware: banner/garbage lines in answers, a
//! missing `getMachineName`, and a camera without the NVR CGIs.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::http::{accept_loop, fake_jpeg, read_request, PowerCycle};
use super::isapi::Recording;
use super::{auth_params, hex, md5_hex};

/// One disk: device name, `State` word (`Success`, `Error`, ...), total and used bytes, a partition
/// error flag.
#[derive(Debug, Clone)]
pub struct DahuaHdd {
    pub name: String,
    pub state: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub is_error: bool,
}

/// One channel: the NVR reaches its camera, and its RecordMode (0 schedule, 1 manual, 2 off).
#[derive(Debug, Clone, Copy)]
pub struct DahuaChannel {
    pub connected: bool,
    pub record_mode: u32,
}

#[derive(Debug, Clone)]
pub struct DahuaOpts {
    pub user: String,
    pub pass: String,
    pub serial: String,
    pub device_type: String,
    pub firmware: String,
    pub machine_name: String,
    pub hdds: Vec<DahuaHdd>,
    /// Empty: a camera (storage and channel CGIs answer 404 ... or 400 as some firmware does).
    pub channels: Vec<DahuaChannel>,
    /// Answers start with a banner line and carry a line without `=`.
    pub garbage_lines: bool,
    /// `getMachineName` answers 400 (older firmware).
    pub no_machine_name: bool,
    pub reboot_down_ms: u64,
    /// The one recording the NVR holds (channel 1-based, as the CGIs count for media files).
    pub recording: Recording,
    /// `loadfile.cgi?action=startLoad` answers 400, as on firmware that only has mediaFileFind +
    /// RPC_Loadfile.
    pub no_load_by_time: bool,
}

impl Default for DahuaOpts {
    fn default() -> Self {
        const TB: u64 = 1_000_000_000_000;
        DahuaOpts {
            user: "admin".into(),
            pass: "dahua-pass".into(),
            serial: "6J0ABCD123456".into(),
            device_type: "DHI-NVR4208-8P-4KS2".into(),
            firmware: "4.001.0000000.3,build:2023-05-10".into(),
            machine_name: "NVR-Lobby".into(),
            hdds: vec![
                DahuaHdd {
                    name: "/dev/sda".into(),
                    state: "Success".into(),
                    total_bytes: 4 * TB,
                    used_bytes: TB,
                    is_error: false,
                },
                DahuaHdd {
                    name: "/dev/sdb".into(),
                    state: "Success".into(),
                    total_bytes: 2 * TB,
                    used_bytes: 0,
                    is_error: false,
                },
            ],
            channels: vec![
                DahuaChannel { connected: true, record_mode: 0 },
                DahuaChannel { connected: false, record_mode: 0 },
                DahuaChannel { connected: true, record_mode: 2 },
            ],
            garbage_lines: false,
            no_machine_name: false,
            reboot_down_ms: 2000,
            // 2026-12-06T10:00:00Z .. 10:15:00Z on channel 1, 3 MiB.
            recording: Recording { channel: 1, start_s: 1_796_551_200, end_s: 1_796_552_100, len: 3 << 20, seed: 23 },
            no_load_by_time: false,
        }
    }
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct DahuaStats {
    pub requests: AtomicU64,
    /// Requests whose Digest credentials were present but wrong.
    pub auth_failures: AtomicU64,
    pub paths: Mutex<Vec<String>>,
}

pub struct FakeDahua {
    addr: SocketAddr,
    pub stats: Arc<DahuaStats>,
    pub opts: Arc<Mutex<DahuaOpts>>,
    /// Simulated reboots (`magicBox.cgi?action=reboot`).
    pub power: Arc<PowerCycle>,
    stop: Arc<AtomicBool>,
}

/// mediaFileFind objects: id -> whether findFile matched and the match is still to be returned.
type Finds = Mutex<std::collections::HashMap<String, bool>>;

impl FakeDahua {
    pub fn start(o: DahuaOpts) -> FakeDahua {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake Dahua");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(DahuaStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let opts = Arc::new(Mutex::new(o));
        let power = Arc::new(PowerCycle::default());
        let nonces: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
        let finds: Arc<Finds> = Arc::default();
        {
            let (stats, opts, p2) = (stats.clone(), opts.clone(), power.clone());
            let handle: Arc<dyn Fn(TcpStream) + Send + Sync> =
                Arc::new(move |conn| serve(conn, &opts, &stats, &nonces, &finds, &p2));
            let (stop, power) = (stop.clone(), power.clone());
            std::thread::spawn(move || accept_loop(listener, stop, power, handle));
        }
        FakeDahua { addr, stats, opts, power, stop }
    }

    /// The JPEG of `/cgi-bin/snapshot.cgi?channel={ch}`.
    pub fn picture(channel: u32) -> Vec<u8> {
        fake_jpeg(200 + u64::from(channel), 25_000)
    }

    /// Where the recording lives on the NVR's disk, as findNextFile reports it.
    pub fn file_path(r: &Recording) -> String {
        let (y, mo, d, h, mi, s) = super::onvif::utc_parts(r.start_s);
        let (_, _, _, eh, emi, es) = super::onvif::utc_parts(r.end_s);
        format!(
            "/mnt/dvr/{y:04}-{mo:02}-{d:02}/{:03}/dav/{h:02}/{h:02}.{mi:02}.{s:02}-{eh:02}.{emi:02}.{es:02}[R][0@0][0].dav",
            r.channel
        )
    }

    /// `127.0.0.1:port`
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Changes the device while it runs (a new serial = a replaced unit, a failed disk, ...).
    pub fn set(&self, f: impl FnOnce(&mut DahuaOpts)) {
        if let Ok(mut o) = self.opts.lock() {
            f(&mut o);
        }
    }

    pub fn paths(&self) -> Vec<String> {
        self.stats.paths.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for FakeDahua {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn reply(conn: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain;charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve(
    mut conn: TcpStream,
    opts: &Mutex<DahuaOpts>,
    stats: &DahuaStats,
    nonces: &Mutex<Vec<(String, u32)>>,
    finds: &Finds,
    power: &PowerCycle,
) {
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Some(req) = read_request(&mut conn) else { return };
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let o = opts.lock().map(|o| o.clone()).unwrap_or_else(|e| e.into_inner().clone());
    let realm = format!("Login to {}", o.serial);
    // A response to the realm of another serial (the unit was swapped mid-session) is a stale
    // challenge, answered with a fresh one, not a failed login.
    let verdict = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Digest "))
        .map(auth_params)
        .filter(|p| p.get("realm").is_some_and(|r| *r == realm))
        .map(|p| {
            let g = |k: &str| p.get(k).cloned().unwrap_or_default();
            let mut ns = nonces.lock().unwrap_or_else(|e| e.into_inner());
            let nc = u32::from_str_radix(&g("nc"), 16).unwrap_or(0);
            let Some(entry) = ns.iter_mut().find(|(n, _)| *n == g("nonce")) else { return false };
            let ha1 = md5_hex(format!("{}:{realm}:{}", g("username"), o.pass).as_bytes());
            let ha2 = md5_hex(format!("{}:{}", req.method, req.path).as_bytes());
            let want = md5_hex(format!("{ha1}:{}:{}:{}:auth:{ha2}", entry.0, g("nc"), g("cnonce")).as_bytes());
            let ok = nc > entry.1
                && g("username") == o.user
                && g("realm") == realm
                && g("response") == want
                && g("uri") == req.path
                && g("qop") == "auth";
            if ok {
                entry.1 = nc;
            }
            ok
        });
    if verdict != Some(true) {
        if verdict == Some(false) {
            stats.auth_failures.fetch_add(1, Ordering::SeqCst);
        }
        let mut raw = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
        let n = hex(&raw);
        nonces.lock().unwrap_or_else(|e| e.into_inner()).push((n.clone(), 0));
        let _ = write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"{realm}\", qop=\"auth\", nonce=\"{n}\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    if let Ok(mut p) = stats.paths.lock() {
        p.push(req.path.clone());
    }
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    if commands(&mut conn, &o, path, query, finds, power) {
        return;
    }
    let nvr = !o.channels.is_empty();
    let mut lines: Vec<String> = match (path, query) {
        ("/cgi-bin/magicBox.cgi", "action=getDeviceType") => vec![format!("type={}", o.device_type)],
        ("/cgi-bin/magicBox.cgi", "action=getSerialNo") => vec![format!("sn={}", o.serial)],
        ("/cgi-bin/magicBox.cgi", "action=getSoftwareVersion") => vec![format!("version={}", o.firmware)],
        ("/cgi-bin/magicBox.cgi", "action=getMachineName") if !o.no_machine_name => vec![format!("name={}", o.machine_name)],
        ("/cgi-bin/storageDevice.cgi", "action=getDeviceAllInfo") if nvr => o
            .hdds
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                [
                    format!("list.info[{i}].Detail[0].IsError={}", d.is_error),
                    format!("list.info[{i}].Detail[0].Path=/dev/{}1", d.name.trim_start_matches("/dev/")),
                    format!("list.info[{i}].Detail[0].TotalBytes={}.000000", d.total_bytes),
                    format!("list.info[{i}].Detail[0].Type=ReadWrite"),
                    format!("list.info[{i}].Detail[0].UsedBytes={}.000000", d.used_bytes),
                    format!("list.info[{i}].Name={}", d.name),
                    format!("list.info[{i}].State={}", d.state),
                ]
            })
            .collect(),
        ("/cgi-bin/LogicDeviceManager.cgi", "action=getCameraState&uniqueChannels[0]=-1") if nvr => o
            .channels
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                [
                    format!("states[{i}].channel={i}"),
                    format!("states[{i}].connectionState={}", if c.connected { "Connected" } else { "Unconnect" }),
                ]
            })
            .collect(),
        ("/cgi-bin/configManager.cgi", "action=getConfig&name=RecordMode") if nvr => o
            .channels
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                [format!("table.RecordMode[{i}].Mode={}", c.record_mode), format!("table.RecordMode[{i}].ModeExtra1=2")]
            })
            .collect(),
        ("/cgi-bin/magicBox.cgi", _) => {
            reply(&mut conn, "400 Bad Request", "Error\r\nBad Request!\r\n");
            return;
        }
        _ => {
            reply(&mut conn, "404 Not Found", "Error\r\n");
            return;
        }
    };
    if o.garbage_lines {
        lines.insert(0, "\u{feff}OK".into());
        lines.push("<<garbage without an equals sign>>".into());
        lines.push(String::new());
    }
    let body = lines.join("\r\n") + "\r\n";
    reply(&mut conn, "200 OK", &body);
}

/// Query parameters, `%20` and `+` decoded (Dahua clients send times as `2026-12-06%2010:00:00`).
fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%20", " ").replace('+', " ")))
        .collect()
}

fn param<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `2026-12-06 10:00:00` (the NVR's local time; the fake runs on UTC) to Unix seconds.
fn dahua_time(s: &str) -> Option<i64> {
    super::onvif::parse_utc(&format!("{}Z", s.trim().replacen(' ', "T", 1)))
}

fn overlaps(r: &Recording, channel: Option<&str>, from: Option<&str>, to: Option<&str>) -> bool {
    let (Some(f), Some(t)) = (from.and_then(dahua_time), to.and_then(dahua_time)) else { return false };
    channel.and_then(|c| c.parse::<u32>().ok()) == Some(r.channel) && f < r.end_s && t > r.start_s
}

fn send_recording(conn: &mut TcpStream, r: &Recording) {
    let bytes = r.bytes();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: Application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    for piece in bytes.chunks(128 * 1024) {
        if conn.write_all(piece).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Snapshot, reboot and recording export. `true` when the request was one of them (answered).
fn commands(conn: &mut TcpStream, o: &DahuaOpts, path: &str, query: &str, finds: &Finds, power: &PowerCycle) -> bool {
    let p = params(query);
    let r = &o.recording;
    match (path, param(&p, "action")) {
        ("/cgi-bin/snapshot.cgi", _) => {
            let ch = param(&p, "channel").and_then(|c| c.parse::<u32>().ok()).unwrap_or(1);
            let jpeg = FakeDahua::picture(ch);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                jpeg.len()
            );
            let _ = conn.write_all(&jpeg);
        }
        ("/cgi-bin/magicBox.cgi", Some("reboot")) => {
            reply(conn, "200 OK", "OK\r\n");
            power.trigger(o.reboot_down_ms);
        }
        ("/cgi-bin/loadfile.cgi", Some("startLoad")) => {
            if o.no_load_by_time {
                reply(conn, "400 Bad Request", "Error\r\nBad Request!\r\n");
            } else if overlaps(r, param(&p, "channel"), param(&p, "startTime"), param(&p, "endTime")) {
                send_recording(conn, r);
            } else {
                reply(conn, "404 Not Found", "Error\r\nNo data\r\n");
            }
        }
        ("/cgi-bin/mediaFileFind.cgi", Some(action)) => {
            let mut f = finds.lock().unwrap_or_else(|e| e.into_inner());
            let object = param(&p, "object").unwrap_or("").to_owned();
            let body = match action {
                "factory.create" => {
                    let id = format!("{}", 8137 + f.len());
                    f.insert(id.clone(), false);
                    format!("result={id}\r\n")
                }
                "findFile" if f.contains_key(&object) => {
                    let hit = overlaps(
                        r,
                        param(&p, "condition.Channel"),
                        param(&p, "condition.StartTime"),
                        param(&p, "condition.EndTime"),
                    );
                    f.insert(object, hit);
                    "OK\r\n".to_owned()
                }
                "findNextFile" if f.contains_key(&object) => {
                    if f.insert(object, false) == Some(true) {
                        let t = |s: i64| {
                            let (y, mo, d, h, mi, sec) = super::onvif::utc_parts(s);
                            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{sec:02}")
                        };
                        format!(
                            "found=1\r\nitems[0].Channel={}\r\nitems[0].Cluster=0\r\nitems[0].Disk=0\r\nitems[0].StartTime={}\r\n\
                             items[0].EndTime={}\r\nitems[0].Type=dav\r\nitems[0].FilePath={}\r\nitems[0].Length={}\r\n\
                             items[0].VideoStream=Main\r\nitems[0].Flags[0]=Timing\r\n",
                            r.channel - 1,
                            t(r.start_s),
                            t(r.end_s),
                            FakeDahua::file_path(r),
                            r.len
                        )
                    } else {
                        "found=0\r\n".to_owned()
                    }
                }
                "close" if f.contains_key(&object) => "OK\r\n".to_owned(),
                "destroy" if f.remove(&object).is_some() => "OK\r\n".to_owned(),
                _ => {
                    reply(conn, "400 Bad Request", "Error\r\nBad Request!\r\n");
                    return true;
                }
            };
            reply(conn, "200 OK", &body);
        }
        _ if path.starts_with("/cgi-bin/RPC_Loadfile/") => {
            if path.trim_start_matches("/cgi-bin/RPC_Loadfile") == FakeDahua::file_path(r) {
                send_recording(conn, r);
            } else {
                reply(conn, "404 Not Found", "Error\r\n");
            }
        }
        _ => return false,
    }
    true
}

//! A fake Hikvision NVR speaking ISAPI on 127.0.0.1: deviceInfo, System/status,
//! ContentMgmt/Storage, InputProxy channel status and record tracks behind HTTP Digest (MD5,
//! qop=auth), verified for real. Device commands: `PUT /ISAPI/System/reboot` (down for a while, then
//! back with its uptime reset), the channel picture, and a recording found by
//! `POST /ISAPI/ContentMgmt/search` and fetched by `GET /ISAPI/ContentMgmt/download` (several MB of
//! deterministic bytes, sent in pieces).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::http::{accept_loop, fake_jpeg, pseudo_random_bytes, read_request, PowerCycle};
use super::onvif::elem_text;
use super::{auth_params, hex, md5_hex};

#[derive(Debug, Clone)]
pub struct IsapiOpts {
    pub user: String,
    pub pass: String,
    pub serial: String,
    /// (id, status, capacity MB, free MB)
    pub hdds: Vec<(u32, &'static str, u64, u64)>,
    /// (online, recording enabled) per channel 1..; empty = a camera (InputProxy and tracks 404).
    pub channels: Vec<(bool, bool)>,
    pub reboot_down_ms: u64,
    /// The one recording: channel, start and end (Unix seconds), size and seed of its bytes.
    pub recording: Recording,
}

#[derive(Debug, Clone, Copy)]
pub struct Recording {
    pub channel: u32,
    pub start_s: i64,
    pub end_s: i64,
    pub len: usize,
    pub seed: u64,
}

impl Recording {
    pub fn bytes(&self) -> Vec<u8> {
        pseudo_random_bytes(self.seed, self.len)
    }
}

impl Default for IsapiOpts {
    fn default() -> Self {
        IsapiOpts {
            user: "admin".into(),
            pass: "nvr-pass".into(),
            serial: "DS-7608NI-K2-8P0820240101CCRRJ12345678WCVU".into(),
            hdds: vec![(1, "ok", 3_815_447, 120_000), (2, "error", 3_815_447, 0)],
            channels: vec![(true, true), (false, true), (true, false)],
            reboot_down_ms: 2000,
            // 2026-12-06T10:00:00Z .. 10:15:00Z on channel 1, 6 MiB.
            recording: Recording { channel: 1, start_s: 1_796_551_200, end_s: 1_796_552_100, len: 6 << 20, seed: 11 },
        }
    }
}

pub struct FakeIsapi {
    addr: SocketAddr,
    pub auth_failures: Arc<AtomicU64>,
    pub power: Arc<PowerCycle>,
    /// Paths requested, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeIsapi {
    pub fn start(o: IsapiOpts) -> FakeIsapi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake ISAPI");
        let addr = listener.local_addr().expect("local addr");
        let auth_failures = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let nonces: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
        let power = Arc::new(PowerCycle::default());
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let (fails, stop, power, requests) = (auth_failures.clone(), stop.clone(), power.clone(), requests.clone());
            let p2 = power.clone();
            let handle: Arc<dyn Fn(TcpStream) + Send + Sync> =
                Arc::new(move |conn| serve(conn, &o, &fails, &nonces, &p2, &requests));
            std::thread::spawn(move || accept_loop(listener, stop, power, handle));
        }
        FakeIsapi { addr, auth_failures, power, requests, stop }
    }

    /// The JPEG of `/ISAPI/Streaming/channels/{ch}01/picture`.
    pub fn picture(channel: u32) -> Vec<u8> {
        fake_jpeg(100 + u64::from(channel), 30_000)
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeIsapi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut conn: TcpStream,
    o: &IsapiOpts,
    fails: &AtomicU64,
    nonces: &Mutex<Vec<(String, u32)>>,
    power: &PowerCycle,
    requests: &Mutex<Vec<String>>,
) {
    let Some(req) = read_request(&mut conn) else { return };
    if let Ok(mut r) = requests.lock() {
        r.push(format!("{} {}", req.method, req.path));
    }
    let verdict = req.header("authorization").and_then(|h| h.strip_prefix("Digest ")).map(auth_params).map(|p| {
        let g = |k: &str| p.get(k).cloned().unwrap_or_default();
        let mut ns = nonces.lock().expect("nonces");
        let nc = u32::from_str_radix(&g("nc"), 16).unwrap_or(0);
        let Some(entry) = ns.iter_mut().find(|(n, _)| *n == g("nonce")) else { return false };
        let ha1 = md5_hex(format!("{}:isapi:{}", g("username"), o.pass).as_bytes());
        let ha2 = md5_hex(format!("{}:{}", req.method, req.path).as_bytes());
        let want = md5_hex(format!("{ha1}:{}:{}:{}:auth:{ha2}", entry.0, g("nc"), g("cnonce")).as_bytes());
        let ok = nc > entry.1 && g("username") == o.user && g("response") == want && g("uri") == req.path;
        if ok {
            entry.1 = nc;
        }
        ok
    });
    if verdict != Some(true) {
        if verdict == Some(false) {
            fails.fetch_add(1, Ordering::SeqCst);
        }
        let mut raw = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
        let n = hex(&raw);
        nonces.lock().expect("nonces").push((n.clone(), 0));
        let _ = write!(conn, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest qop=\"auth\", realm=\"isapi\", nonce=\"{n}\", stale=\"FALSE\"\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    const NS: &str = "xmlns=\"http://www.hikvision.com/ver20/XMLSchema\" version=\"2.0\"";
    let body = match req.path.as_str() {
        "/ISAPI/System/deviceInfo" => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeviceInfo {NS}><deviceName>Network Video Recorder</deviceName><model>DS-7608NI-K2/8P</model>\
             <serialNumber>{}</serialNumber><macAddress>44:19:b6:00:00:01</macAddress><firmwareVersion>V4.30.085</firmwareVersion>\
             <firmwareReleasedDate>build 210528</firmwareReleasedDate><deviceType>NVR</deviceType></DeviceInfo>",
            o.serial
        ),
        "/ISAPI/System/reboot" if req.method == "PUT" => {
            let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ResponseStatus {NS}><requestURL>/ISAPI/System/reboot</requestURL><statusCode>1</statusCode><statusString>OK</statusString><subStatusCode>ok</subStatusCode></ResponseStatus>");
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = conn.flush();
            power.trigger(o.reboot_down_ms);
            return;
        }
        p if p.starts_with("/ISAPI/Streaming/channels/") && p.ends_with("/picture") => {
            let ch = p.trim_start_matches("/ISAPI/Streaming/channels/").trim_end_matches("/picture");
            let ch: u32 = ch.parse::<u32>().map(|c| c / 100).unwrap_or(0);
            let jpeg = FakeIsapi::picture(ch);
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", jpeg.len());
            let _ = conn.write_all(&jpeg);
            return;
        }
        "/ISAPI/ContentMgmt/search" if req.method == "POST" => search(&String::from_utf8_lossy(&req.body), &o.recording),
        "/ISAPI/ContentMgmt/download" => {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let uri = elem_text(&body, "playbackURI").unwrap_or_default();
            if uri.replace("&amp;", "&") != playback_uri(&o.recording) {
                let _ = write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            let bytes = o.recording.bytes();
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len());
            // In pieces with pauses, as a recorder reading from disk sends it.
            for piece in bytes.chunks(256 * 1024) {
                if conn.write_all(piece).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            return;
        }
        "/ISAPI/System/status" => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeviceStatus {NS}><currentDeviceTime>2026-12-06T10:00:00+00:00</currentDeviceTime>\
             <deviceUpTime>{}</deviceUpTime><CPUList><CPU><cpuDescription>ARM</cpuDescription><cpuUtilization>17</cpuUtilization></CPU></CPUList>\
             <MemoryList><Memory><memoryDescription>DDR</memoryDescription><memoryUsage>210.5</memoryUsage><memoryAvailable>301.5</memoryAvailable></Memory></MemoryList></DeviceStatus>",
            power.uptime_s().unwrap_or(86_400)
        ),
        "/ISAPI/ContentMgmt/Storage" => {
            let hdds: String = o
                .hdds
                .iter()
                .map(|(id, st, cap, free)| {
                    format!("<hdd version=\"2.0\"><id>{id}</id><hddName>hdd{id}</hddName><status>{st}</status><hddType>SATA</hddType><capacity>{cap}</capacity><freeSpace>{free}</freeSpace><property>RW</property></hdd>")
                })
                .collect();
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<storage {NS}><hddList size=\"8\">{hdds}</hddList><nasList size=\"8\"></nasList><workMode>group</workMode></storage>")
        }
        "/ISAPI/ContentMgmt/InputProxy/channels/status" if !o.channels.is_empty() => {
            let list: String = o
                .channels
                .iter()
                .enumerate()
                .map(|(i, (online, _))| {
                    format!(
                        "<InputProxyChannelStatus version=\"2.0\"><id>{}</id><sourceInputPortDescriptor><proxyProtocol>HIKVISION</proxyProtocol>\
                         <addressingFormatType>ipaddress</addressingFormatType><ipAddress>192.168.254.{}</ipAddress><managePortNo>8000</managePortNo>\
                         </sourceInputPortDescriptor><online>{online}</online><chanDetectResult>{}</chanDetectResult></InputProxyChannelStatus>",
                        i + 1,
                        i + 2,
                        if *online { "connect" } else { "offline" }
                    )
                })
                .collect();
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InputProxyChannelStatusList {NS}>{list}</InputProxyChannelStatusList>")
        }
        "/ISAPI/ContentMgmt/record/tracks" if !o.channels.is_empty() => {
            let list: String = o
                .channels
                .iter()
                .enumerate()
                .flat_map(|(i, (_, rec))| {
                    // Main (x01) and sub (x02) stream tracks; only the main one records.
                    [(100 * (i + 1) + 1, *rec), (100 * (i + 1) + 2, false)]
                })
                .map(|(t, en)| {
                    format!(
                        "<Track version=\"2.0\"><id>{t}</id><Channel>{t}</Channel><Enable>{en}</Enable><Description>trackType=standard</Description>\
                         <LoopEnable>true</LoopEnable><TrackSchedule><ScheduleBlock><ScheduleAction><Actions><Record>true</Record></Actions>\
                         </ScheduleAction></ScheduleBlock></TrackSchedule></Track>"
                    )
                })
                .collect();
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TrackList {NS}>{list}</TrackList>")
        }
        _ => {
            let _ = write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    };
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn isapi_time(t: i64) -> String {
    let (y, mo, d, h, mi, s) = super::onvif::utc_parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn compact_time(t: i64) -> String {
    isapi_time(t).replace(['-', ':'], "")
}

/// The recording's playback URI, as Hikvision recorders announce it.
pub fn playback_uri(r: &Recording) -> String {
    format!(
        "rtsp://127.0.0.1/Streaming/tracks/{}01/?starttime={}&endtime={}&name=ch{:02}_0800000000000{}&size={}",
        r.channel,
        compact_time(r.start_s),
        compact_time(r.end_s),
        r.channel,
        r.seed,
        r.len
    )
}

fn parse_isapi_time(s: &str) -> Option<i64> {
    let s = s.trim().strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + dd - 1;
    Some((era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// CMSearchResult: the recording when the track and the span overlap it, else NO MATCHES.
fn search(body: &str, r: &Recording) -> String {
    const NS: &str = "xmlns=\"http://www.isapi.org/ver20/XMLSchema\" version=\"2.0\"";
    let track = elem_text(body, "trackID").unwrap_or_default();
    let from = elem_text(body, "startTime").and_then(|t| parse_isapi_time(&t));
    let to = elem_text(body, "endTime").and_then(|t| parse_isapi_time(&t));
    let id = elem_text(body, "searchID").unwrap_or_default();
    let hit = track == format!("{}01", r.channel) && matches!((from, to), (Some(f), Some(t)) if f < r.end_s && t > r.start_s);
    if !hit {
        return format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CMSearchResult {NS}><searchID>{id}</searchID><responseStatus>true</responseStatus>\
             <responseStatusStrg>NO MATCHES</responseStatusStrg><numOfMatches>0</numOfMatches><matchList/></CMSearchResult>"
        );
    }
    let uri = playback_uri(r).replace('&', "&amp;");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CMSearchResult {NS}><searchID>{id}</searchID><responseStatus>true</responseStatus>\
         <responseStatusStrg>OK</responseStatusStrg><numOfMatches>1</numOfMatches><matchList><searchMatchItem>\
         <sourceID>{{0000}}</sourceID><trackID>{}01</trackID><timeSpan><startTime>{}</startTime><endTime>{}</endTime></timeSpan>\
         <mediaSegmentDescriptor><contentType>video</contentType><codecType>H.264-BP</codecType><playbackURI>{uri}</playbackURI></mediaSegmentDescriptor>\
         <metadataMatches><metadataDescriptor>recordType.meta.hikvision.com/timing</metadataDescriptor></metadataMatches>\
         </searchMatchItem></matchList></CMSearchResult>",
        r.channel,
        isapi_time(r.start_s),
        isapi_time(r.end_s)
    )
}

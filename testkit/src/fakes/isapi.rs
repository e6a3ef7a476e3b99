//! A fake Hikvision NVR speaking ISAPI on 127.0.0.1: deviceInfo, System/status,
//! ContentMgmt/Storage, InputProxy channel status and record tracks behind HTTP Digest (MD5,
//! qop=auth), verified for real.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::http::read_request;
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
}

impl Default for IsapiOpts {
    fn default() -> Self {
        IsapiOpts {
            user: "admin".into(),
            pass: "nvr-pass".into(),
            serial: "DS-7608NI-K2-8P0820240101CCRRJ12345678WCVU".into(),
            hdds: vec![(1, "ok", 3_815_447, 120_000), (2, "error", 3_815_447, 0)],
            channels: vec![(true, true), (false, true), (true, false)],
        }
    }
}

pub struct FakeIsapi {
    addr: SocketAddr,
    pub auth_failures: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FakeIsapi {
    pub fn start(o: IsapiOpts) -> FakeIsapi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake ISAPI");
        let addr = listener.local_addr().expect("local addr");
        let auth_failures = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let nonces: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
        {
            let (fails, stop) = (auth_failures.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (o, fails, nonces) = (o.clone(), fails.clone(), nonces.clone());
                    std::thread::spawn(move || serve(conn, &o, &fails, &nonces));
                }
            });
        }
        FakeIsapi { addr, auth_failures, stop }
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

fn serve(mut conn: TcpStream, o: &IsapiOpts, fails: &AtomicU64, nonces: &Mutex<Vec<(String, u32)>>) {
    let Some(req) = read_request(&mut conn) else { return };
    let verdict = req.header("authorization").and_then(|h| h.strip_prefix("Digest ")).map(auth_params).map(|p| {
        let g = |k: &str| p.get(k).cloned().unwrap_or_default();
        let mut ns = nonces.lock().expect("nonces");
        let nc = u32::from_str_radix(&g("nc"), 16).unwrap_or(0);
        let Some(entry) = ns.iter_mut().find(|(n, _)| *n == g("nonce")) else { return false };
        let ha1 = md5_hex(format!("{}:isapi:{}", g("username"), o.pass).as_bytes());
        let ha2 = md5_hex(format!("GET:{}", req.path).as_bytes());
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
        "/ISAPI/System/status" => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeviceStatus {NS}><currentDeviceTime>2026-12-06T10:00:00+00:00</currentDeviceTime>\
             <deviceUpTime>86400</deviceUpTime><CPUList><CPU><cpuDescription>ARM</cpuDescription><cpuUtilization>17</cpuUtilization></CPU></CPUList>\
             <MemoryList><Memory><memoryDescription>DDR</memoryDescription><memoryUsage>210.5</memoryUsage><memoryAvailable>301.5</memoryAvailable></Memory></MemoryList></DeviceStatus>"
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

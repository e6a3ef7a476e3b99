//! A unicast WS-Discovery responder on 127.0.0.1 (UDP): answers each Probe with ProbeMatches in the
//! chosen dialect, RelatesTo the probe's MessageID, optionally twice (as devices do on retransmission
//! or per interface) and with several XAddrs, the first of them dead.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::onvif::elem_text;

#[derive(Debug, Clone)]
pub struct DiscoveryOpts {
    /// `true`: 2009/01 OASIS namespaces; `false`: 2005/04 (ONVIF).
    pub dialect_2009: bool,
    pub endpoint: String,
    pub xaddrs: Vec<String>,
    pub scopes: Vec<String>,
    pub metadata_version: Option<u32>,
    /// Answer each probe this many times.
    pub repeats: u32,
    /// Ignore probes in the other dialect (a device that speaks only one).
    pub only_own_dialect: bool,
}

impl Default for DiscoveryOpts {
    fn default() -> Self {
        DiscoveryOpts {
            dialect_2009: false,
            endpoint: "urn:uuid:4f1a2b3c-0000-4000-8000-00408c123456".into(),
            xaddrs: vec!["http://192.0.2.1/onvif/device_service".into(), "http://127.0.0.1:8080/onvif/device_service".into()],
            scopes: vec!["onvif://www.onvif.org/type/video_encoder".into(), "onvif://www.onvif.org/hardware/FC-1080".into()],
            metadata_version: Some(1),
            repeats: 1,
            only_own_dialect: false,
        }
    }
}

pub struct FakeDiscovery {
    addr: SocketAddr,
    pub probes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FakeDiscovery {
    pub fn start(o: DiscoveryOpts) -> FakeDiscovery {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind fake WS-Discovery");
        Self::serve(sock, o)
    }

    /// A responder joined to multicast group `group` on the interface owning `iface` (127.0.0.1 in
    /// tests), listening on a free port: probes sent to `group:port()` reach it.
    pub fn start_multicast(o: DiscoveryOpts, group: std::net::Ipv4Addr, iface: std::net::Ipv4Addr) -> FakeDiscovery {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind fake WS-Discovery");
        sock.join_multicast_v4(&group, &iface).expect("join multicast group");
        Self::serve(sock, o)
    }

    fn serve(sock: UdpSocket, o: DiscoveryOpts) -> FakeDiscovery {
        let addr = sock.local_addr().expect("local addr");
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let probes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (probes, stop) = (probes.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = sock.recv_from(&mut buf) else { continue };
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if !text.contains("Probe") {
                        continue;
                    }
                    probes.fetch_add(1, Ordering::SeqCst);
                    let id = elem_text(&text, "MessageID").unwrap_or_default();
                    // Answer only in the dialect of the probe, as devices do.
                    let dialect_2009 = text.contains("ws-dd/ns/discovery/2009/01");
                    if o.only_own_dialect && dialect_2009 != o.dialect_2009 {
                        continue;
                    }
                    let reply = answer(&o, &id);
                    for _ in 0..o.repeats {
                        let _ = sock.send_to(reply.as_bytes(), peer);
                    }
                }
            });
        }
        FakeDiscovery { addr, probes, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for FakeDiscovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn answer(o: &DiscoveryOpts, relates_to: &str) -> String {
    let (d, a) = if o.dialect_2009 {
        ("http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01", "http://www.w3.org/2005/08/addressing")
    } else {
        ("http://schemas.xmlsoap.org/ws/2005/04/discovery", "http://schemas.xmlsoap.org/ws/2004/08/addressing")
    };
    let mv = o.metadata_version.map(|v| format!("<wsdd:MetadataVersion>{v}</wsdd:MetadataVersion>")).unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:wsa=\"{a}\" xmlns:wsdd=\"{d}\" xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\"><SOAP-ENV:Header>\
         <wsa:MessageID>urn:uuid:00000000-0000-4000-8000-000000000001</wsa:MessageID><wsa:RelatesTo>{relates_to}</wsa:RelatesTo>\
         <wsa:Action>{d}/ProbeMatches</wsa:Action></SOAP-ENV:Header><SOAP-ENV:Body><wsdd:ProbeMatches><wsdd:ProbeMatch>\
         <wsa:EndpointReference><wsa:Address>{}</wsa:Address></wsa:EndpointReference><wsdd:Types>dn:NetworkVideoTransmitter</wsdd:Types>\
         <wsdd:Scopes>{}</wsdd:Scopes><wsdd:XAddrs>{}</wsdd:XAddrs>{mv}</wsdd:ProbeMatch></wsdd:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>",
        o.endpoint,
        o.scopes.join(" "),
        o.xaddrs.join(" ")
    )
}

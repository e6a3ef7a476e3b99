//! WS-Discovery (2005/04 draft as ONVIF uses it, and the 2009/01 OASIS standard): a Probe for
//! NetworkVideoTransmitter sent by UDP unicast to a known address or by multicast to the site LAN, ProbeMatch parsing by local name (the
//! two dialects differ only in namespaces), and de-duplication by endpoint reference, since a device
//! answers once per interface and repeats itself on retransmission.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use smol::net::UdpSocket;

use super::http::until;
use super::xml::{Doc, XmlError};
use super::ErrorClass;

pub const PORT: u16 = 3702;
/// A ProbeMatches answer larger than this is not from a camera.
const MAX_DATAGRAM: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `http://schemas.xmlsoap.org/ws/2005/04/discovery` (ONVIF devices).
    V2005,
    /// `http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01`.
    V2009,
}

impl Dialect {
    fn ns(self) -> (&'static str, &'static str, &'static str) {
        // (discovery namespace, addressing namespace, multicast To)
        match self {
            Dialect::V2005 => (
                "http://schemas.xmlsoap.org/ws/2005/04/discovery",
                "http://schemas.xmlsoap.org/ws/2004/08/addressing",
                "urn:schemas-xmlsoap-org:ws:2005:04:discovery",
            ),
            Dialect::V2009 => (
                "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01",
                "http://www.w3.org/2005/08/addressing",
                "urn:docs-oasis-open-org:ws-dd:ns:discovery:2009:01",
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("system random source failed")]
    Random,
    #[error("{addr}: no ProbeMatch within the timeout")]
    NoAnswer { addr: SocketAddr },
    #[error("{addr}: unparseable ProbeMatches: {source}")]
    Xml { addr: SocketAddr, source: XmlError },
}

impl DiscoveryError {
    pub fn class(&self) -> ErrorClass {
        match self {
            DiscoveryError::Io { source, .. } => ErrorClass::of_io(source),
            DiscoveryError::Random => ErrorClass::Protocol,
            DiscoveryError::NoAnswer { .. } => ErrorClass::Timeout,
            DiscoveryError::Xml { .. } => ErrorClass::Parse,
        }
    }
}

/// One discovered device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// Endpoint reference address, usually `urn:uuid:...`: the device's stable identity.
    pub endpoint: String,
    pub types: Vec<String>,
    pub scopes: Vec<String>,
    /// Service addresses in the device's order; the first may be dead (a stale interface).
    pub xaddrs: Vec<String>,
    pub metadata_version: Option<u32>,
}

/// `urn:uuid:` with 122 random bits (RFC 4122 version 4).
pub fn new_message_id() -> Result<String, DiscoveryError> {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).map_err(|_| DiscoveryError::Random)?;
    let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15] = b;
    Ok(format!(
        "urn:uuid:{b0:02x}{b1:02x}{b2:02x}{b3:02x}-{b4:02x}{b5:02x}-{:02x}{b7:02x}-{:02x}{b9:02x}-{b10:02x}{b11:02x}{b12:02x}{b13:02x}{b14:02x}{b15:02x}",
        (b6 & 0x0f) | 0x40,
        (b8 & 0x3f) | 0x80,
    ))
}

/// A Probe for NetworkVideoTransmitter.
pub fn probe_message(message_id: &str, dialect: Dialect) -> String {
    let (d, a, to) = dialect.ns();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"{a}\" xmlns:d=\"{d}\" xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\"><s:Header>\
         <a:Action s:mustUnderstand=\"1\">{d}/Probe</a:Action><a:MessageID>{message_id}</a:MessageID>\
         <a:To s:mustUnderstand=\"1\">{to}</a:To></s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types>\
         </d:Probe></s:Body></s:Envelope>"
    )
}

/// ProbeMatch entries of one ProbeMatches message (either dialect).
pub fn parse_probe_matches(xml: &str) -> Result<Vec<Match>, XmlError> {
    let doc = Doc::parse(xml)?;
    let words = |s: Option<String>| -> Vec<String> { s.unwrap_or_default().split_whitespace().map(str::to_owned).collect() };
    Ok(doc
        .find("ProbeMatch")
        .iter()
        .filter_map(|m| {
            let endpoint = m.find("EndpointReference").first().and_then(|e| e.child_text("Address"))?;
            if endpoint.is_empty() {
                return None;
            }
            Some(Match {
                endpoint,
                types: words(m.child_text("Types")),
                scopes: words(m.child_text("Scopes")),
                xaddrs: words(m.child_text("XAddrs")),
                metadata_version: m.child_text("MetadataVersion").and_then(|v| v.parse().ok()),
            })
        })
        .collect())
}

/// Merges matches with the same endpoint reference: XAddrs and scopes united in first-seen order,
/// the highest metadata version kept.
pub fn dedupe(matches: Vec<Match>) -> Vec<Match> {
    let mut out: Vec<Match> = Vec::new();
    for m in matches {
        match out.iter_mut().find(|o| o.endpoint == m.endpoint) {
            Some(o) => {
                for x in m.xaddrs {
                    if !o.xaddrs.contains(&x) {
                        o.xaddrs.push(x);
                    }
                }
                for s in m.scopes {
                    if !o.scopes.contains(&s) {
                        o.scopes.push(s);
                    }
                }
                o.metadata_version = o.metadata_version.max(m.metadata_version);
            }
            None => out.push(m),
        }
    }
    out
}

/// Sends a Probe to `addr` and collects ProbeMatches until `timeout` (answers to other message ids
/// and unparseable datagrams are skipped, so one broken sender cannot hide a good one).
pub async fn unicast_probe(addr: SocketAddr, dialect: Dialect, timeout: Duration) -> Result<Vec<Match>, DiscoveryError> {
    let io = |source| DiscoveryError::Io { addr, source };
    let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(bind).await.map_err(io)?;
    let id = new_message_id()?;
    sock.send_to(probe_message(&id, dialect).as_bytes(), addr).await.map_err(io)?;
    let (found, last_err) = collect(&sock, &[id], Instant::now() + timeout, addr).await?;
    if found.is_empty() {
        return Err(last_err.unwrap_or(DiscoveryError::NoAnswer { addr }));
    }
    Ok(dedupe(found))
}

/// ProbeMatches relating to one of `ids` until `deadline`; the last parse error is kept for callers
/// that report "nothing found" with its reason.
async fn collect(
    sock: &UdpSocket,
    ids: &[String],
    deadline: Instant,
    addr: SocketAddr,
) -> Result<(Vec<Match>, Option<DiscoveryError>), DiscoveryError> {
    let io = |source| DiscoveryError::Io { addr, source };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut found = Vec::new();
    let mut last_err = None;
    while let Some(r) = until(deadline, sock.recv_from(&mut buf)).await {
        let (n, _) = r.map_err(io)?;
        let text = std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or("");
        let relates = Doc::parse(text).ok().and_then(|d| d.text("RelatesTo"));
        if !relates.is_some_and(|r| ids.contains(&r)) {
            continue;
        }
        match parse_probe_matches(text) {
            Ok(m) => found.extend(m),
            Err(source) => last_err = Some(DiscoveryError::Xml { addr, source }),
        }
    }
    Ok((found, last_err))
}

/// The WS-Discovery IPv4 multicast group.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);

/// Multicast Probe on the site LAN (commissioning): one Probe per dialect to 239.255.255.250:3702
/// out of the interface that owns `iface` (0.0.0.0: the default route's), with multicast TTL `ttl`
/// (1 keeps it on the LAN). Answers arrive by unicast; they are merged by endpoint reference. No answer
/// at all is an empty list, not an error: an empty site is a valid result.
pub async fn multicast_probe(iface: Ipv4Addr, ttl: u32, timeout: Duration) -> Result<Vec<Match>, DiscoveryError> {
    multicast_probe_to(SocketAddrV4::new(MULTICAST_V4, PORT), iface, ttl, timeout).await
}

/// [`multicast_probe`] to another group or port (tests use a free port).
pub async fn multicast_probe_to(
    group: SocketAddrV4,
    iface: Ipv4Addr,
    ttl: u32,
    timeout: Duration,
) -> Result<Vec<Match>, DiscoveryError> {
    let addr = SocketAddr::V4(group);
    let io = |source| DiscoveryError::Io { addr, source };
    // Binding to the interface's address selects it for multicast output on Linux (the route lookup
    // for a multicast destination uses the device owning the bound source address), without
    // IP_MULTICAST_IF, which std does not expose.
    let std_sock = std::net::UdpSocket::bind((iface, 0)).map_err(io)?;
    std_sock.set_multicast_ttl_v4(ttl.clamp(1, 255)).map_err(io)?;
    // A responder on this host (the gateway itself, or tests) hears the probe too.
    std_sock.set_multicast_loop_v4(true).map_err(io)?;
    let sock = UdpSocket::try_from(std_sock).map_err(io)?;
    let mut ids = Vec::with_capacity(2);
    for dialect in [Dialect::V2005, Dialect::V2009] {
        let id = new_message_id()?;
        sock.send_to(probe_message(&id, dialect).as_bytes(), addr).await.map_err(io)?;
        ids.push(id);
    }
    let (found, last_err) = collect(&sock, &ids, Instant::now() + timeout, addr).await?;
    if let Some(e) = last_err {
        log::info!("WS-Discovery: {e}");
    }
    Ok(dedupe(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_uuid_v4() {
        let a = new_message_id().unwrap();
        let b = new_message_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        assert_eq!(a.get(23..24), Some("4"));
        let p = probe_message(&a, Dialect::V2005);
        assert!(p.contains("NetworkVideoTransmitter") && p.contains("2005/04/discovery/Probe"));
        assert!(Doc::parse(&p).is_ok());
    }

    #[test]
    fn garbage_matches_are_errors_or_empty() {
        assert!(parse_probe_matches("not xml").is_err());
        assert_eq!(parse_probe_matches("<a><ProbeMatch><XAddrs>http://x</XAddrs></ProbeMatch></a>").unwrap(), vec![]);
    }
}

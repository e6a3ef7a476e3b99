//! WS-Discovery (2005/04 draft as ONVIF uses it, and the 2009/01 OASIS standard): a Probe for
//! NetworkVideoTransmitter sent by UDP unicast to a known address, ProbeMatch parsing by local name (the
//! two dialects differ only in namespaces), and de-duplication by endpoint reference, since a device
//! answers once per interface and repeats itself on retransmission.

use std::net::SocketAddr;
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
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut found = Vec::new();
    let mut last_err = None;
    while let Some(r) = until(deadline, sock.recv_from(&mut buf)).await {
        let (n, _) = r.map_err(io)?;
        let text = std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or("");
        let relates = Doc::parse(text).ok().and_then(|d| d.text("RelatesTo"));
        if relates.as_deref() != Some(id.as_str()) {
            continue;
        }
        match parse_probe_matches(text) {
            Ok(m) => found.extend(m),
            Err(source) => last_err = Some(DiscoveryError::Xml { addr, source }),
        }
    }
    if found.is_empty() {
        return Err(last_err.unwrap_or(DiscoveryError::NoAnswer { addr }));
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

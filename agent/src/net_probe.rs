//! TCP reachability: resolve a `host:port` with a deadline, then time a TCP handshake. Used by the
//! child-device collector (every interval) and the `net.tcp_probe` command.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot resolve {target}: {source}")]
    Resolve { target: String, source: std::io::Error },
    #[error("cannot resolve {target}: no answer within {timeout:?}")]
    ResolveTimeout { target: String, timeout: Duration },
    #[error("{target} resolved to no address")]
    NoAddress { target: String },
    #[error("cannot start a resolver thread for {target}: {source}")]
    Thread { target: String, source: std::io::Error },
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("no time left to connect to {target}")]
    NoTimeLeft { target: String },
}

/// `host:port`, bracketing a bare IPv6 address so the port stays separate.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `target` (`host:port`, `[v6]:port`) within `timeout`. A literal address needs no
/// lookup; a name is resolved on a short-lived thread, because the system resolver takes no timeout
/// of its own. After a timeout that thread finishes in the background when the resolver gives up.
pub fn resolve(target: &str, timeout: Duration) -> Result<Vec<SocketAddr>, ProbeError> {
    resolve_with(target, timeout, system_lookup)
}

type Lookup = fn(&str) -> std::io::Result<Vec<SocketAddr>>;

fn system_lookup(target: &str) -> std::io::Result<Vec<SocketAddr>> {
    target.to_socket_addrs().map(Iterator::collect)
}

fn resolve_with(target: &str, timeout: Duration, lookup: Lookup) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (tx, rx) = mpsc::channel();
    let owned = target.to_owned();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = tx.send(lookup(&owned));
        })
        .map_err(|source| ProbeError::Thread { target: target.to_owned(), source })?;
    let addrs = match rx.recv_timeout(timeout) {
        Ok(r) => r.map_err(|source| ProbeError::Resolve { target: target.to_owned(), source })?,
        Err(_) => return Err(ProbeError::ResolveTimeout { target: target.to_owned(), timeout }),
    };
    if addrs.is_empty() {
        return Err(ProbeError::NoAddress { target: target.to_owned() });
    }
    Ok(addrs)
}

/// A completed TCP handshake: which address answered and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Connected {
    pub addr: SocketAddr,
    pub latency: Duration,
}

/// Tries each address in turn until one completes a TCP handshake, all within `timeout` in total.
/// The error is the last address's.
pub fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<Connected, ProbeError> {
    let start = Instant::now();
    let mut last = None;
    for &addr in addrs {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        let t = Instant::now();
        match TcpStream::connect_timeout(&addr, left) {
            Ok(_) => return Ok(Connected { addr, latency: t.elapsed() }),
            Err(source) => last = Some(ProbeError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or_else(|| ProbeError::NoTimeLeft { target: format!("{addrs:?}") }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves `target` and connects to it, both within `timeout` in total (as `net.tcp_probe` does).
    fn probe(target: &str, timeout: Duration) -> Result<Connected, ProbeError> {
        let start = Instant::now();
        let addrs = resolve(target, timeout)?;
        connect(&addrs, timeout.saturating_sub(start.elapsed()))
    }

    #[test]
    fn probes_a_real_listener_and_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        let c = probe(&open.to_string(), Duration::from_secs(2)).unwrap();
        assert_eq!(c.addr, open);
        drop(l);
        assert!(matches!(probe(&open.to_string(), Duration::from_secs(2)), Err(ProbeError::Connect { .. })));
    }

    #[test]
    fn host_port_brackets_bare_ipv6() {
        assert_eq!(host_port("10.0.0.5", 80), "10.0.0.5:80");
        assert_eq!(host_port("cam.local", 554), "cam.local:554");
        assert_eq!(host_port("fe80::1", 554), "[fe80::1]:554");
        assert_eq!(host_port("[fe80::1]", 554), "[fe80::1]:554");
    }

    #[test]
    fn names_are_resolved_and_bad_ones_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let addrs = resolve(&format!("localhost:{port}"), Duration::from_secs(5)).unwrap();
        assert!(addrs.iter().all(|a| a.port() == port && a.ip().is_loopback()), "{addrs:?}");
        assert!(matches!(resolve("no port here", Duration::from_secs(5)), Err(ProbeError::Resolve { .. })));
        assert!(matches!(connect(&[], Duration::from_secs(1)), Err(ProbeError::NoTimeLeft { .. })));
    }

    #[test]
    fn a_resolver_that_does_not_answer_in_time_is_a_timeout() {
        fn hanging(_: &str) -> std::io::Result<Vec<SocketAddr>> {
            std::thread::sleep(Duration::from_secs(3));
            Ok(Vec::new())
        }
        let start = Instant::now();
        let r = resolve_with("camera.example:80", Duration::from_millis(100), hanging);
        assert!(matches!(r, Err(ProbeError::ResolveTimeout { .. })), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "waited for the resolver: {:?}", start.elapsed());
        // A literal address never waits for a resolver.
        assert_eq!(resolve_with("10.0.0.5:554", Duration::ZERO, hanging).unwrap(), vec!["10.0.0.5:554".parse().unwrap()]);
    }
}

//! TCP_NODELAY for the embedded broker's connections.
//!
//! rumqttd never sets TCP_NODELAY on the sockets it accepts and has no option for it, so every small
//! MQTT packet written right after another one waits for the peer's delayed ACK (~40 ms per hop on
//! Linux). On Linux an accepted socket is cloned from its listening socket and keeps the listener's
//! TCP_NODELAY. The listener lives in this process, so once rumqttd has bound it we find it among
//! `/proc/self/fd` (a TCP socket whose local port is the broker's and which is listening) and set the
//! option there; every connection accepted afterwards has Nagle off without touching rumqttd.

use std::io;
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrokerSocketError {
    #[error("no listening TCP socket on MQTT port {port} in this process after {waited:?}")]
    ListenerNotFound { port: u16, waited: Duration },
    #[error("cannot list this process's sockets (MQTT port {port}): {source}")]
    Scan { port: u16, source: io::Error },
    #[error("cannot set TCP_NODELAY on the socket of MQTT port {port}: {source}")]
    SetOption { port: u16, source: io::Error },
    #[cfg(not(target_os = "linux"))]
    #[error("setting TCP_NODELAY on rumqttd's sockets needs Linux (/proc/self/fd, inherited socket options)")]
    Unsupported,
}

/// What [`disable_nagle`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodelayReport {
    /// Listening sockets on the port that now carry TCP_NODELAY (one per listener; normally 1).
    pub listeners: usize,
    /// Connections accepted before the listener was changed, switched one by one.
    pub already_accepted: usize,
}

/// Waits up to `timeout` for a listening TCP socket on `port` in this process, sets TCP_NODELAY on it
/// (connections accepted later inherit it), then sets it on any connection accepted in the meantime.
#[cfg(target_os = "linux")]
pub fn disable_nagle(port: u16, timeout: Duration) -> Result<NodelayReport, BrokerSocketError> {
    use std::time::Instant;

    let deadline = Instant::now() + timeout;
    let listeners = loop {
        let listeners: Vec<_> = sockets_on_port(port)?.into_iter().filter(|s| s.listening).collect();
        if !listeners.is_empty() {
            break listeners;
        }
        if Instant::now() >= deadline {
            return Err(BrokerSocketError::ListenerNotFound { port, waited: timeout });
        }
        // rumqttd binds from its own thread right after it starts: normally a few milliseconds.
        std::thread::sleep(Duration::from_millis(2));
    };
    for l in &listeners {
        sys::set_nodelay(l.fd).map_err(|source| BrokerSocketError::SetOption { port, source })?;
    }
    // A client that completed its handshake before the listener changed was cloned without the option.
    let mut already_accepted = 0;
    for s in sockets_on_port(port)?.into_iter().filter(|s| !s.listening && !s.nodelay) {
        sys::set_nodelay(s.fd).map_err(|source| BrokerSocketError::SetOption { port, source })?;
        already_accepted += 1;
    }
    Ok(NodelayReport { listeners: listeners.len(), already_accepted })
}

#[cfg(not(target_os = "linux"))]
pub fn disable_nagle(_port: u16, _timeout: Duration) -> Result<NodelayReport, BrokerSocketError> {
    Err(BrokerSocketError::Unsupported)
}

/// A TCP socket of this process whose local port is the one asked for.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy)]
struct PortSocket {
    fd: std::os::fd::RawFd,
    listening: bool,
    nodelay: bool,
}

/// The TCP sockets of this process bound to local `port`: the listener(s) and the server side of
/// accepted connections (a client connected to `port` has it as its remote port, not its local one).
#[cfg(target_os = "linux")]
fn sockets_on_port(port: u16) -> Result<Vec<PortSocket>, BrokerSocketError> {
    let scan = |source| BrokerSocketError::Scan { port, source };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(scan)? {
        let entry = entry.map_err(scan)?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
        // Any of these failing means the descriptor is not a TCP socket (or was closed meanwhile): skip.
        if sys::local_tcp_port(fd) != Some(port) {
            continue;
        }
        let (Ok(listening), Ok(nodelay)) = (sys::is_listening(fd), sys::nodelay(fd)) else { continue };
        found.push(PortSocket { fd, listening, nodelay });
    }
    Ok(found)
}

/// The few socket calls std does not offer for descriptors it does not own.
///
/// These descriptors belong to other code in this process (rumqttd's runtime, or a test's sockets). The
/// calls below only query a socket or set one TCP option on it: they never close, read, write or take
/// ownership. If a descriptor is closed and its number reused between the scan and a call, the call
/// fails (ENOTSOCK/EBADF) or acts on whatever socket now has that number, and we only ever set
/// TCP_NODELAY on a TCP socket whose local port is the broker's, i.e. a broker socket.
#[cfg(target_os = "linux")]
mod sys {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::os::fd::RawFd;

    use libc::{c_int, c_void, socklen_t};

    fn get_int(fd: RawFd, level: c_int, name: c_int) -> io::Result<c_int> {
        let mut value: c_int = 0;
        let mut len = size_of::<c_int>() as socklen_t;
        // SAFETY: `value` and `len` are live locals and `len` is the size of `value`; getsockopt writes at
        // most `len` bytes. The descriptor is only queried (see the module comment).
        let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast::<c_void>(), &mut len) };
        if rc == 0 {
            Ok(value)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The local port of `fd` when it is an IPv4/IPv6 stream socket; `None` for anything else.
    pub(super) fn local_tcp_port(fd: RawFd) -> Option<u16> {
        if get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()? != libc::SOCK_STREAM {
            return None;
        }
        // SAFETY: sockaddr_storage is plain data for which all-zero bytes are a valid value.
        let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as socklen_t;
        // SAFETY: `addr` is large enough for any address family and `len` says so; getsockname writes at
        // most `len` bytes into it. The descriptor is only queried.
        let rc = unsafe { libc::getsockname(fd, (&raw mut addr).cast::<libc::sockaddr>(), &mut len) };
        if rc != 0 {
            return None;
        }
        // Ports are stored in network byte order.
        match c_int::from(addr.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel filled `addr` with a sockaddr_in (family AF_INET); sockaddr_storage is
                // at least as large and as aligned.
                let v4 = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in>() };
                Some(u16::from_be(v4.sin_port))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for a sockaddr_in6 (family AF_INET6).
                let v6 = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in6>() };
                Some(u16::from_be(v6.sin6_port))
            }
            _ => None,
        }
    }

    pub(super) fn is_listening(fd: RawFd) -> io::Result<bool> {
        get_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).map(|v| v != 0)
    }

    pub(super) fn nodelay(fd: RawFd) -> io::Result<bool> {
        get_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY).map(|v| v != 0)
    }

    pub(super) fn set_nodelay(fd: RawFd) -> io::Result<()> {
        let on: c_int = 1;
        // SAFETY: `on` is a live c_int and the length passed is its size; setsockopt only reads it. Setting
        // TCP_NODELAY changes when the socket's owner's writes leave, never what they contain.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const on).cast::<c_void>(),
                size_of::<c_int>() as socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Read;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Instant;

    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// The server side of connections accepted on `port`, waiting (5 s max) until there are `n`.
    fn accepted_on(port: u16, n: usize) -> Vec<PortSocket> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let accepted: Vec<_> = sockets_on_port(port).unwrap().into_iter().filter(|s| !s.listening).collect();
            if accepted.len() >= n {
                return accepted;
            }
            assert!(Instant::now() < deadline, "{} of {n} connections accepted on port {port} after 5 s", accepted.len());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // Control: without the fix an accepted socket has Nagle on, and the scan reports it, so the tests
    // below would see a missing option.
    #[test]
    fn scan_reports_nagle_on_for_a_default_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let found = sockets_on_port(port).unwrap();
        assert_eq!(found.iter().filter(|s| s.listening).count(), 1, "{found:?}");
        let accepted: Vec<_> = found.iter().filter(|s| !s.listening).collect();
        assert_eq!(accepted.len(), 1, "the client's own socket must not count: {found:?}");
        assert!(!accepted[0].nodelay, "{found:?}");
    }

    #[test]
    fn connections_accepted_later_inherit_nodelay_from_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let report = disable_nagle(port, Duration::from_secs(1)).unwrap();
        assert_eq!(report, NodelayReport { listeners: 1, already_accepted: 0 });
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(server.nodelay().unwrap(), "accepted socket did not inherit TCP_NODELAY");
    }

    #[test]
    fn connections_accepted_before_the_change_are_switched_too() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!server.nodelay().unwrap());
        let report = disable_nagle(port, Duration::from_secs(1)).unwrap();
        assert_eq!(report, NodelayReport { listeners: 1, already_accepted: 1 });
        assert!(server.nodelay().unwrap());
    }

    #[test]
    fn no_listener_is_an_error_after_the_timeout() {
        let port = free_port();
        let err = disable_nagle(port, Duration::from_millis(20)).unwrap_err();
        assert!(matches!(err, BrokerSocketError::ListenerNotFound { port: p, .. } if p == port), "{err}");
    }

    // The real thing: rumqttd's accepted sockets, server side, have TCP_NODELAY after `broker::start`.
    #[test]
    fn embedded_broker_connections_have_nodelay() {
        let port = free_port();
        let dir = crate::store::test_support::TestDir::new("nodelay");
        let store = crate::store::Store::open(dir.path()).unwrap();
        let auth = crate::broker::BrokerAuth {
            registry: crate::identity::Registry::open(store.path()).unwrap(),
            shim_secret: "s".into(),
        };
        crate::broker::start(SocketAddr::from(([127, 0, 0, 1], port)), auth).unwrap();
        let listeners: Vec<_> = sockets_on_port(port).unwrap().into_iter().filter(|s| s.listening).collect();
        assert_eq!(listeners.len(), 1, "{listeners:?}");
        assert!(listeners[0].nodelay, "{listeners:?}");
        let mut clients: Vec<_> = (0..3).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
        let accepted = accepted_on(port, clients.len());
        assert!(accepted.iter().all(|s| s.nodelay), "accepted by rumqttd without TCP_NODELAY: {accepted:?}");
        // The client side is the client's business: ours were left at the default.
        assert!(clients.iter().all(|c| !c.nodelay().unwrap()));
        // Nothing was sent, so rumqttd is still waiting for CONNECT, not closing: the sockets were live.
        clients[0].set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(clients[0].read(&mut buf).map_err(|e| e.kind()), Err(std::io::ErrorKind::WouldBlock));
    }
}

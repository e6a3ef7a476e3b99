//! Addresses that black-hole on 127.0.0.1, without root or a network namespace:
//! * [`Silent`]: accepts every connection and never sends a byte (a hung device or a firewall that
//!   proxies the handshake);
//! * [`SynDrop`]: a listener whose accept queue is full (backlog 0, one connection queued and never
//!   accepted), so the kernel drops every further SYN and a connect hangs until the client gives up,
//!   as with a device behind a dropping firewall or a powered-off host on a switched LAN.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accepts and never answers; holds every connection open until dropped.
pub struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind silent listener");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                // Drain what the client sends (so it never blocks on a full window) and answer nothing.
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                if let Ok(c) = conn.try_clone() {
                    if let Ok(mut h) = held.lock() {
                        h.push(c);
                    }
                }
                let stop3 = stop2.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while !stop3.load(Ordering::SeqCst) {
                        match conn.read(&mut buf) {
                            Ok(0) => return,
                            Ok(_) => {}
                            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        Silent { addr, stop }
    }

    /// `127.0.0.1:port`
    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// A port where connects hang: the listen backlog is 0 and already holds one connection that is
/// never accepted, so the kernel drops further SYNs (`ListenOverflows`) instead of refusing them.
pub struct SynDrop {
    addr: SocketAddr,
    _listener: TcpListener,
    _filler: TcpStream,
}

impl SynDrop {
    pub fn start() -> SynDrop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind SYN-drop listener");
        // Linux lets a listening socket call listen() again to change its backlog.
        // SAFETY: a valid, owned listening socket fd; listen() has no memory effects.
        let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
        assert_eq!(rc, 0, "listen(0): {}", std::io::Error::last_os_error());
        let addr = listener.local_addr().expect("local addr");
        let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("fill the accept queue");
        let s = SynDrop { addr, _listener: listener, _filler: filler };
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
            "the kernel still completes handshakes on a full backlog-0 listener: SYN-drop not reproducible here"
        );
        s
    }

    /// `127.0.0.1:port`
    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

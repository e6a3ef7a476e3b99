//! The real agent binary speaks systemd's notify protocol: READY=1 after start, STATUS=..., WATCHDOG=1
//! at half of $WATCHDOG_USEC while its MQTT loop turns (here: while it keeps retrying a closed port,
//! the normal offline state), and STOPPING=1 on SIGTERM. Our socket stands in for systemd.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("scs-sdnotify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there during the test.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_agent(dir: &Scratch, watchdog_usec: &str) -> (UnixDatagram, Killed) {
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let cfg = dir.0.join("agent.toml");
    std::fs::write(&cfg, format!("gateway_id = \"gw-sdnotify\"\n\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{}\"\n", closed_port()))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_scs-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .arg("--insecure-no-identity")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", watchdog_usec)
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (sock, Killed(child))
}

/// Collects datagrams until `done` says so or the deadline passes.
fn collect(sock: &UnixDatagram, deadline: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < deadline && !done(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = Scratch::new("full");
    // WatchdogSec=2 -> a ping about every second.
    let (sock, mut agent) = start_agent(&dir, "2000000");
    let pings = |m: &[String]| m.iter().filter(|s| s.as_str() == "WATCHDOG=1").count();
    let got = collect(&sock, Duration::from_secs(30), |m| m.iter().any(|s| s == "READY=1") && pings(m) >= 3);
    assert_eq!(got.first().map(String::as_str), Some("READY=1"), "READY=1 must come first: {got:?}");
    assert!(got.iter().any(|s| s.starts_with("STATUS=") && s.contains("gw-sdnotify")), "{got:?}");
    assert!(pings(&got) >= 3, "expected watchdog pings while the MQTT loop retries: {got:?}");

    let pid = agent.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let got = collect(&sock, Duration::from_secs(20), |m| m.iter().any(|s| s == "STOPPING=1"));
    assert!(got.iter().any(|s| s == "STOPPING=1"), "STOPPING=1 on SIGTERM: {got:?}");
    let start = Instant::now();
    while agent.0.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(agent.0.try_wait().unwrap().is_some(), "agent did not exit after SIGTERM");
}

#[test]
fn no_watchdog_pings_when_systemd_asked_for_none() {
    let dir = Scratch::new("nowd");
    let (sock, _agent) = start_agent(&dir, "0");
    let got = collect(&sock, Duration::from_secs(3), |m| m.iter().any(|s| s == "WATCHDOG=1"));
    assert!(got.iter().any(|s| s == "READY=1"), "{got:?}");
    assert!(!got.iter().any(|s| s == "WATCHDOG=1"), "pinged without a watchdog: {got:?}");
}

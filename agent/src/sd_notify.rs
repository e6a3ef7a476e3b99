//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`) without a crate: one datagram per state
//! change to the unix socket named by `$NOTIFY_SOCKET`.
//!
//! Outside systemd (no `$NOTIFY_SOCKET`, e.g. BusyBox init or a shell) every call is a cheap no-op, so
//! callers never need to know how the agent was started. The one exception is the watchdog: the BusyBox
//! supervisor (`packaging/scs-agent-supervise`) sets `$WATCHDOG_USEC` as systemd does, plus
//! `$SCS_HEARTBEAT_FILE`, and each watchdog ping then also writes the system uptime in whole seconds to
//! that file, which the supervisor compares with its own reading of `/proc/uptime`.
//!
//! Usage from the main loop:
//! ```ignore
//! sd_notify::notify_ready();                        // once, after the first successful start
//! if let Some(every) = sd_notify::watchdog_interval() {
//!     // every `every`, and only while the MQTT loop shows progress:
//!     sd_notify::notify_watchdog();
//! }
//! sd_notify::notify_status("connected to mqtts://broker:8883");
//! ```

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a notification could not be delivered. The agent logs it and carries on: a failed ping only
/// means systemd may restart us, which is the watchdog's job anyway.
#[derive(Debug, thiserror::Error)]
pub enum SdNotifyError {
    #[error("NOTIFY_SOCKET {socket:?} is not a usable socket address: {reason}")]
    BadAddress { socket: String, reason: String },
    #[error("sending {state:?} to NOTIFY_SOCKET {socket:?}: {source}")]
    Send { socket: String, state: String, source: io::Error },
}

/// Where notifications go: a filesystem path, or a Linux abstract name (`@name` in `$NOTIFY_SOCKET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl NotifyTarget {
    /// Parses a `$NOTIFY_SOCKET` value. Empty means "not under systemd".
    pub fn parse(raw: &str) -> Option<NotifyTarget> {
        if raw.is_empty() {
            None
        } else if let Some(name) = raw.strip_prefix('@') {
            Some(NotifyTarget::Abstract(name.as_bytes().to_vec()))
        } else {
            Some(NotifyTarget::Path(PathBuf::from(raw)))
        }
    }

    fn describe(&self) -> String {
        match self {
            NotifyTarget::Path(p) => p.display().to_string(),
            NotifyTarget::Abstract(name) => format!("@{}", String::from_utf8_lossy(name)),
        }
    }

    fn address(&self) -> Result<SocketAddr, SdNotifyError> {
        let bad = |e: io::Error| SdNotifyError::BadAddress { socket: self.describe(), reason: e.to_string() };
        match self {
            NotifyTarget::Path(p) => SocketAddr::from_pathname(p).map_err(bad),
            NotifyTarget::Abstract(name) => abstract_address(name).map_err(bad),
        }
    }

    /// Sends one notification datagram, e.g. `"READY=1"` or `"WATCHDOG=1\nSTATUS=ok"`.
    pub fn send(&self, state: &str) -> Result<(), SdNotifyError> {
        let addr = self.address()?;
        let send_err = |source| SdNotifyError::Send { socket: self.describe(), state: state.to_owned(), source };
        let sock = UnixDatagram::unbound().map_err(send_err)?;
        let sent = sock.send_to_addr(state.as_bytes(), &addr).map_err(send_err)?;
        if sent != state.len() {
            // Datagrams are all-or-nothing; a short count would mean a truncated message.
            return Err(send_err(io::Error::new(io::ErrorKind::WriteZero, "short datagram")));
        }
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "abstract unix sockets exist only on Linux"))
}

/// The target named by `$NOTIFY_SOCKET`, if the agent runs under systemd with `Type=notify`.
pub fn target_from_env() -> Option<NotifyTarget> {
    std::env::var("NOTIFY_SOCKET").ok().as_deref().and_then(NotifyTarget::parse)
}

/// Sends `state` if `$NOTIFY_SOCKET` is set; `Ok(false)` when there is nobody to tell.
pub fn notify(state: &str) -> Result<bool, SdNotifyError> {
    match target_from_env() {
        Some(target) => target.send(state).map(|()| true),
        None => Ok(false),
    }
}

fn notify_logged(state: &str) {
    if let Err(e) = notify(state) {
        log::warn!("sd_notify: {e}");
    }
}

/// Tells systemd the agent is up (`Type=notify` start completes). Call once after the first
/// successful start of the main loop.
pub fn notify_ready() {
    notify_logged("READY=1");
}

/// Watchdog keep-alive. Call at [`watchdog_interval`] from the main loop, only while it makes
/// progress, so a hung MQTT loop stops the pings and systemd restarts the agent.
pub fn notify_watchdog() {
    notify_logged("WATCHDOG=1");
    if let Some(path) = std::env::var_os("SCS_HEARTBEAT_FILE").filter(|p| !p.is_empty()) {
        if let Err(e) = write_heartbeat(Path::new(&path), Path::new("/proc/uptime")) {
            log::warn!("watchdog heartbeat {}: {e}", Path::new(&path).display());
        }
    }
}

/// Writes the whole seconds of `uptime` (a `/proc/uptime` file) to `path`, replacing it atomically so the
/// supervisor never reads a half-written number. Uptime rather than wall time: the clock of a gateway that
/// booted at 1970 jumps when NTP sets it, uptime does not.
fn write_heartbeat(path: &Path, uptime: &Path) -> io::Result<()> {
    let text = std::fs::read_to_string(uptime)?;
    let secs = text
        .split(|c: char| c == '.' || c.is_whitespace())
        .next()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {}: {text:?}", uptime.display())))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{secs}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Free-form one-line status shown by `systemctl status scs-agent`.
pub fn notify_status(status: &str) {
    // A newline would start a new KEY=VALUE assignment; keep the status on one line.
    let line: String = status.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    notify_logged(&format!("STATUS={line}"));
}

/// Tells systemd a clean shutdown has begun.
pub fn notify_stopping() {
    notify_logged("STOPPING=1");
}

/// How often to send `WATCHDOG=1`: half of systemd's `WatchdogSec` (from `$WATCHDOG_USEC`), the
/// margin sd_watchdog_enabled(3) recommends. `None` when no watchdog is configured for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    ping_interval(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// `$WATCHDOG_PID`, when set, names the process the watchdog is meant for; a child that inherited
/// the environment must not ping on the parent's behalf.
fn ping_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scs-sd-notify-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = temp_dir();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let target = NotifyTarget::parse(path.to_str().unwrap()).unwrap();
        target.send("READY=1").unwrap();
        assert_eq!(recv(&server), "READY=1");
        target.send("WATCHDOG=1\nSTATUS=connected").unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1\nSTATUS=connected");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("scs-sd-notify-test-{}", std::process::id());
        let server = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let target = NotifyTarget::parse(&format!("@{name}")).unwrap();
        assert_eq!(target, NotifyTarget::Abstract(name.as_bytes().to_vec()));
        target.send("READY=1").unwrap();
        assert_eq!(recv(&server), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let target = NotifyTarget::Path(temp_dir().join("nobody-listens.sock"));
        let err = target.send("READY=1").unwrap_err();
        assert!(err.to_string().contains("nobody-listens.sock"), "{err}");
    }

    #[test]
    fn heartbeat_is_the_whole_uptime_seconds_replaced_atomically() {
        let dir = temp_dir();
        let uptime = dir.join("uptime");
        let beat = dir.join("heartbeat");
        std::fs::write(&uptime, "12345.67 54321.00\n").unwrap();
        write_heartbeat(&beat, &uptime).unwrap();
        assert_eq!(std::fs::read_to_string(&beat).unwrap(), "12345\n");
        std::fs::write(&uptime, "12400.01 54321.00\n").unwrap();
        write_heartbeat(&beat, &uptime).unwrap();
        assert_eq!(std::fs::read_to_string(&beat).unwrap(), "12400\n");
        assert!(!dir.join("heartbeat.tmp").exists());
        std::fs::write(&uptime, "garbage").unwrap();
        assert!(write_heartbeat(&beat, &uptime).is_err());
        // A failed read leaves the last good beat in place, so the supervisor judges by it.
        assert_eq!(std::fs::read_to_string(&beat).unwrap(), "12400\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_notify_socket_means_not_under_systemd() {
        assert_eq!(NotifyTarget::parse(""), None);
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_pid_only() {
        assert_eq!(ping_interval(Some("30000000"), None, 42), Some(Duration::from_secs(15)));
        assert_eq!(ping_interval(Some("30000000"), Some("42"), 42), Some(Duration::from_secs(15)));
        assert_eq!(ping_interval(Some("30000000"), Some("43"), 42), None);
        assert_eq!(ping_interval(Some("0"), None, 42), None);
        assert_eq!(ping_interval(Some("soon"), None, 42), None);
        assert_eq!(ping_interval(None, None, 42), None);
    }
}

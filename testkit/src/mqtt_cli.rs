//! `mosquitto_pub` / `mosquitto_sub` wrappers. Payloads are binary-safe: publish reads stdin (`-s`),
//! subscribe prints each payload as hex (`-F '%t %x'`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// MQTT login for `mosquitto_pub` / `mosquitto_sub` (`-u`, `-P`, `-i`), or TLS client identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MqttAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// Client id; `None` lets the tool pick one (with a unique suffix for subscriptions).
    pub client_id: Option<String>,
    /// `--cafile`, `--cert`, `--key` for an mTLS broker.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
}

impl MqttAuth {
    pub fn password(username: &str, password: &str, client_id: Option<&str>) -> MqttAuth {
        MqttAuth {
            username: Some(username.to_owned()),
            password: Some(password.to_owned()),
            client_id: client_id.map(str::to_owned),
            tls: None,
        }
    }

    fn apply(&self, cmd: &mut Command, unique: bool) {
        if let Some(u) = &self.username {
            cmd.args(["-u", u]);
        }
        if let Some(p) = &self.password {
            cmd.args(["-P", p]);
        }
        if let Some(id) = &self.client_id {
            // Several tools at once with one login need distinct ids (a broker drops the older one).
            let id = if unique {
                format!("{id}-{}-{}", std::process::id(), PROBE_COUNTER.fetch_add(1, Ordering::Relaxed))
            } else {
                id.clone()
            };
            cmd.args(["-i", &id]);
        }
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--cafile").arg(ca).arg("--cert").arg(cert).arg("--key").arg(key);
        }
    }
}

/// Login used on a port when a call names none: the shim registers its own observer login for its
/// embedded broker, so tests that only watch traffic need no credentials of their own.
static PORT_AUTH: Mutex<Vec<(u16, MqttAuth)>> = Mutex::new(Vec::new());

/// Makes `auth` the default login for `port` (replacing an earlier one).
pub fn set_port_auth(port: u16, auth: MqttAuth) {
    let mut v = PORT_AUTH.lock().expect("port auth lock");
    v.retain(|(p, _)| *p != port);
    v.push((port, auth));
}

fn port_auth(port: u16) -> Option<MqttAuth> {
    PORT_AUTH.lock().ok()?.iter().find(|(p, _)| *p == port).map(|(_, a)| a.clone())
}

/// Options for [`publish_opts`].
#[derive(Debug, Clone)]
pub struct PubOpts {
    pub qos: u8,
    pub retain: bool,
    /// `None`: the port's default login ([`set_port_auth`]), if any.
    pub auth: Option<MqttAuth>,
}

impl Default for PubOpts {
    fn default() -> Self {
        PubOpts { qos: 1, retain: false, auth: None }
    }
}

/// Like [`publish_opts`], returning whether `mosquitto_pub` succeeded (a refused login is `false`).
pub fn try_publish_opts(port: u16, topic: &str, payload: &[u8], opts: &PubOpts) -> Result<(), String> {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-q", &opts.qos.to_string()]);
    if let Some(a) = opts.auth.clone().or_else(|| port_auth(port)) {
        a.apply(&mut cmd, a.username.as_deref() == Some("scs-shim"));
    }
    cmd.arg(if payload.is_empty() { "-n" } else { "-s" });
    if opts.retain {
        cmd.arg("-r");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn mosquitto_pub: {e} (apt-get install mosquitto-clients)"));
    if let Some(mut stdin) = child.stdin.take() {
        if !payload.is_empty() {
            let _ = stdin.write_all(payload);
        }
    }
    let out = child.wait_with_output().expect("wait for mosquitto_pub");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Publishes one message to the broker on 127.0.0.1:`port` at QoS 1. Panics if `mosquitto_pub` fails.
pub fn publish(port: u16, topic: &str, payload: &[u8]) {
    publish_opts(port, topic, payload, &PubOpts::default());
}

pub fn publish_opts(port: u16, topic: &str, payload: &[u8], opts: &PubOpts) {
    // `-s` refuses empty input; `-n` sends a zero-length message (see try_publish_opts).
    if let Err(e) = try_publish_opts(port, topic, payload, opts) {
        panic!("mosquitto_pub to {topic} on port {port} failed: {e}");
    }
}

static PROBE_COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Default)]
struct Shared {
    subscribed: bool,
    messages: Vec<(String, Vec<u8>)>,
    ended: bool,
}

/// A running `mosquitto_sub` collecting every message on its filters (QoS 1).
pub struct Subscription {
    child: Child,
    shared: Arc<(Mutex<Shared>, Condvar)>,
}

impl Subscription {
    /// Starts `mosquitto_sub` on 127.0.0.1:`port` and waits (10 s max) until the subscription is live.
    pub fn start(port: u16, filters: &[&str]) -> Subscription {
        Subscription::start_auth(port, filters, None)
    }

    /// Like [`Subscription::start`] with a login (`None`: the port's default login, if any).
    pub fn start_auth(port: u16, filters: &[&str], auth: Option<&MqttAuth>) -> Subscription {
        Subscription::spawn(port, filters, auth, true)
    }

    /// For a client whose ACL forbids the probe topic: no probe, just `settle` time for the SUBACK. Prove
    /// the subscription works with a message it is allowed to receive.
    pub fn start_unprobed(port: u16, filters: &[&str], auth: Option<&MqttAuth>, settle: Duration) -> Subscription {
        let sub = Subscription::spawn(port, filters, auth, false);
        std::thread::sleep(settle);
        sub
    }

    fn spawn(port: u16, filters: &[&str], auth: Option<&MqttAuth>, probed: bool) -> Subscription {
        let auth = auth.cloned().or_else(|| port_auth(port));
        // mosquitto_sub flushes message lines but not its debug output, so liveness is proven by a probe
        // message on a private topic rather than by watching for the SUBACK.
        let probe = format!("scs-testkit/probe/{}-{}", std::process::id(), PROBE_COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-F", "%t %x", "-t", &probe]);
        if let Some(a) = &auth {
            a.apply(&mut cmd, true);
        }
        for f in filters {
            cmd.args(["-t", f]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn mosquitto_sub: {e} (apt-get install mosquitto-clients)"));
        let stdout = child.stdout.take().expect("stdout was piped");
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let s2 = Arc::clone(&shared);
        let probe2 = probe.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (lock, cv) = &*s2;
                let mut st = lock.lock().expect("subscription lock");
                if let Some((topic, hex)) = line.rsplit_once(' ') {
                    if topic == probe2 {
                        st.subscribed = true;
                    } else if let Some(bytes) = decode_hex(hex) {
                        st.messages.push((topic.to_owned(), bytes));
                    }
                }
                cv.notify_all();
            }
            let (lock, cv) = &*s2;
            if let Ok(mut st) = lock.lock() {
                st.ended = true;
            }
            cv.notify_all();
        });
        let sub = Subscription { child, shared };
        if !probed {
            return sub;
        }
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            publish_opts(port, &probe, b"", &PubOpts { qos: 0, retain: false, auth: auth.clone() });
            if sub.wait(Duration::from_millis(200), |s| s.subscribed || s.ended) {
                break;
            }
            assert!(Instant::now() < end, "mosquitto_sub on port {port} did not receive its probe within 10 s");
        }
        assert!(sub.shared.0.lock().expect("lock").subscribed, "mosquitto_sub on port {port} exited");
        sub
    }

    fn wait(&self, timeout: Duration, mut pred: impl FnMut(&Shared) -> bool) -> bool {
        let (lock, cv) = &*self.shared;
        let end = Instant::now() + timeout;
        let mut st = lock.lock().expect("subscription lock");
        loop {
            if pred(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= end || st.ended {
                return false;
            }
            st = cv.wait_timeout(st, end - now).expect("subscription lock").0;
        }
    }

    /// Every message received so far, `(topic, payload)`, in arrival order.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.shared.0.lock().expect("subscription lock").messages.clone()
    }

    /// Messages received so far on exactly `topic`.
    pub fn payloads_on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.messages().into_iter().filter(|(t, _)| t == topic).map(|(_, p)| p).collect()
    }

    /// Waits until a message on a topic ending with `topic_suffix` has arrived; returns its payload.
    pub fn wait_for_topic(&self, topic_suffix: &str, timeout: Duration) -> Option<Vec<u8>> {
        let mut found = None;
        self.wait(timeout, |s| {
            found = s.messages.iter().find(|(t, _)| t.ends_with(topic_suffix)).map(|(_, p)| p.clone());
            found.is_some()
        });
        found
    }

    /// Waits until at least `n` messages in total have arrived.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |s| s.messages.len() >= n)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex() {
        assert_eq!(super::decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(super::decode_hex(""), Some(vec![]));
        assert_eq!(super::decode_hex("0"), None);
        assert_eq!(super::decode_hex("zz"), None);
    }
}

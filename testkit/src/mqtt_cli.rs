//! `mosquitto_pub` / `mosquitto_sub` wrappers. Payloads are binary-safe: publish reads stdin (`-s`),
//! subscribe prints each payload as hex (`-F '%t %x'`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Options for [`publish_opts`].
#[derive(Debug, Clone)]
pub struct PubOpts {
    pub qos: u8,
    pub retain: bool,
}

impl Default for PubOpts {
    fn default() -> Self {
        PubOpts { qos: 1, retain: false }
    }
}

/// Publishes one message to the broker on 127.0.0.1:`port` at QoS 1. Panics if `mosquitto_pub` fails.
pub fn publish(port: u16, topic: &str, payload: &[u8]) {
    publish_opts(port, topic, payload, &PubOpts::default());
}

pub fn publish_opts(port: u16, topic: &str, payload: &[u8], opts: &PubOpts) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-q", &opts.qos.to_string()]);
    // `-s` refuses empty input; `-n` sends a zero-length message.
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
            stdin.write_all(payload).expect("write payload to mosquitto_pub");
        }
    }
    let out = child.wait_with_output().expect("wait for mosquitto_pub");
    assert!(out.status.success(), "mosquitto_pub to {topic} on port {port} failed: {}", String::from_utf8_lossy(&out.stderr));
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
        // mosquitto_sub flushes message lines but not its debug output, so liveness is proven by a probe
        // message on a private topic rather than by watching for the SUBACK.
        let probe = format!("scs-testkit/probe/{}-{}", std::process::id(), PROBE_COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-F", "%t %x", "-t", &probe]);
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
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            publish_opts(port, &probe, b"", &PubOpts { qos: 0, retain: false });
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

//! A private Mosquitto broker on a free loopback port.

use std::path::PathBuf;
use std::time::Duration;

use crate::mqtt_cli::Subscription;
use crate::process::Process;
use crate::tempdir::TempDir;
use crate::{free_port, port_open};

const MOSQUITTO_PATHS: [&str; 3] = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"];

pub struct Mosquitto {
    // Declared before `dir` so the process dies before its directory is removed.
    proc: Process,
    port: u16,
    dir: TempDir,
}

impl Mosquitto {
    /// Starts Mosquitto listening on 127.0.0.1:<free port>, anonymous, persistence off; waits until the
    /// port accepts connections.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// Like [`Mosquitto::start`] with extra lines appended to the config file
    /// (e.g. `"max_queued_messages 100000\n"`).
    pub fn start_with(extra_conf: &str) -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        let text = format!(
            "# written by scs-testkit\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n\
             log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             connection_messages true\n{extra_conf}\n"
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        let bin = mosquitto_bin();
        let proc = Process::spawn("mosquitto", &bin, vec!["-c".into(), conf.into_os_string()], Vec::new(), dir.path());
        let mut m = Mosquitto { proc, port, dir };
        m.wait_listening();
        m
    }

    /// Starts Mosquitto with a whole config of the caller's making (`conf(port)`: listener, TLS, ACL...)
    /// plus persistence off and logging to stderr; waits until the port accepts connections.
    pub fn start_conf(conf: impl FnOnce(u16) -> String) -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let port = free_port();
        let path = dir.join("mosquitto.conf");
        let text = format!(
            "# written by scs-testkit\npersistence false\nlog_dest stderr\nlog_type all\nconnection_messages true\n{}\n",
            conf(port)
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let proc =
            Process::spawn("mosquitto", &mosquitto_bin(), vec!["-c".into(), path.into_os_string()], Vec::new(), dir.path());
        let mut m = Mosquitto { proc, port, dir };
        m.wait_listening();
        m
    }

    fn wait_listening(&mut self) {
        let port = self.port;
        self.proc.wait_ready(Duration::from_secs(10), &format!("listening on 127.0.0.1:{port}"), || port_open(port));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:{port}`, the form both binaries take.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Stops the broker (SIGTERM); clients see the connection drop.
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts the broker again on the same port (after `stop`/`kill9`) and waits until it listens.
    pub fn start_again(&mut self) {
        self.proc.start_again();
        self.wait_listening();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// Publishes one binary-safe message with `mosquitto_pub` (QoS 1).
    pub fn publish(&self, topic: &str, payload: &[u8]) {
        crate::mqtt_cli::publish(self.port, topic, payload);
    }

    /// Subscribes with `mosquitto_sub` and waits for the SUBACK.
    pub fn subscribe(&self, filter: &str) -> Subscription {
        Subscription::start(self.port, &[filter])
    }
}

fn mosquitto_bin() -> PathBuf {
    for p in MOSQUITTO_PATHS {
        if std::path::Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("mosquitto not found at {MOSQUITTO_PATHS:?}: run scripts/test (it installs it) or apt-get install mosquitto");
}

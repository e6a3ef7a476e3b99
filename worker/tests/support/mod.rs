//! A cloud of real processes for the command-session tests: Mosquitto, the Worker (`common::WorkerDev`),
//! shims bridging them with `--worker-url`, and the agent of one provisioned gateway. Every shim and
//! the Worker hold one cloud key, as a deployment does.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use scs_testkit::{copy_gateway, free_port, gateways_add, Agent, AgentOpts, GatewayCreds, Mosquitto, Shim, ShimOpts, TempDir};
use serde_json::Value as Json;

use crate::common::{gateway_seed, WorkerDev};

pub const WAIT: Duration = Duration::from_secs(60);

/// The cloud key of this test process (PKCS#8 as ring writes it); the Worker reads it from the
/// environment (`CLOUD_SIGNING_KEY`, which scripts/worker-dev puts in .dev.vars).
fn cloud_key() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| {
        let (_, pkcs8) = scs_protocol::cose::SigningKey::generate().unwrap();
        let secret = base64::engine::general_purpose::STANDARD.encode(&pkcs8);
        // SAFETY: set once, before any Worker is spawned, to the same value for every test.
        unsafe { std::env::set_var("CLOUD_SIGNING_KEY", secret) };
        pkcs8
    })
}

fn install_key(data_dir: &Path) {
    let keys = data_dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let f = keys.join("cloud-sign.pk8");
    std::fs::write(&f, cloud_key()).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub struct Site {
    // Processes first: they stop before their directories go.
    pub agent: Option<Agent>,
    pub shims: Vec<Shim>,
    pub worker: WorkerDev,
    pub broker: Mosquitto,
    pub creds: GatewayCreds,
    pub gw: String,
    dir: TempDir,
    _dirs: Vec<TempDir>,
}

impl Site {
    pub fn start(gw: &str, shims: usize) -> Site {
        let broker = Mosquitto::start();
        let dir = TempDir::new("sessions");
        let dirs: Vec<TempDir> = (0..shims).map(|_| TempDir::new("bridge")).collect();
        let urls = Some((broker.url(), "http://127.0.0.1:9".to_owned()));
        let urls = urls.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        for d in &dirs {
            install_key(d.path());
        }
        let creds = gateways_add(dirs[0].path(), gw, &dir.join("gw.bundle.toml"), urls);
        for d in &dirs[1..] {
            gateways_add(d.path(), "gw-placeholder", &d.path().join("p.toml"), urls);
            copy_gateway(dirs[0].path(), d.path(), gw);
        }
        let seed = dir.join("seed.sql");
        gateway_seed(&dirs[0].path().join("scs.db"), &seed);
        let worker = WorkerDev::start(free_port(), &dir.join("state"), &seed, &dir.join("worker-dev.log"), true);
        let shims = dirs
            .iter()
            .map(|d| {
                let mut o = ShimOpts::with_broker(&broker.url());
                o.data_dir = Some(d.path().to_owned());
                o.args = vec!["--worker-url".into(), worker.url(), "--share-group".into(), "g".into()];
                let mut s = Shim::start(o);
                s.wait_ready(WAIT);
                s
            })
            .collect();
        Site { agent: None, shims, worker, broker, creds, gw: gw.into(), dir, _dirs: dirs }
    }

    pub fn start_agent(&mut self) {
        let mut o = AgentOpts::new(&self.gw, &self.broker.url());
        o.bundle = Some(self.creds.bundle.clone());
        self.agent = Some(Agent::start(o));
    }

    pub fn create(&self, body: Json) -> String {
        let r = self.worker.api().post_json(&format!("/v1/gateways/{}/commands", self.gw), &body);
        assert_eq!(r.status, 201, "POST {body}: {}\n{}", r.text(), self.logs());
        assert_eq!(r.json()["state"], "queued");
        r.json()["id"].as_str().unwrap().to_owned()
    }

    pub fn wait_state(&self, id: &str, state: &str) -> Json {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.worker.api().get_json(&format!("/v1/commands/{id}"));
            if v["state"] == state {
                return v;
            }
            assert!(Instant::now() < deadline, "command {id} never reached {state}: {v}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join("worker-dev.log")).unwrap_or_default();
        for sh in &self.shims {
            s.push_str(&sh.logs());
        }
        if let Some(a) = &self.agent {
            s.push_str(&a.logs());
        }
        s
    }
}

//! Shared by the Worker's end-to-end tests and benchmark: the tool check and `scripts/worker-dev` as a
//! process group.
#![allow(dead_code, reason = "each test binary uses a part")]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scs_testkit::{wait_until, workspace_root, Api, TEST_TOKEN};

pub fn tools_present() -> bool {
    let root = workspace_root();
    let script = format!(". '{}/scripts/worker-tools-env' && scs_worker_tools_present", root.display());
    Command::new("bash").args(["-c", &script]).status().is_ok_and(|s| s.success())
}

/// `None` (after a loud message) when the tools are missing outside CI; panics under CI.
pub fn require_tools() -> Option<()> {
    if tools_present() {
        return Some(());
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty());
    assert!(!ci, "CI is set but the Worker tools are missing: run scripts/install-worker-tools");
    eprintln!("\n!!!!!!!! SKIPPED: Worker tools missing (scripts/install-worker-tools); workerd tests did not run !!!!!!!!\n");
    None
}

/// `scripts/worker-dev` in its own process group, so killing the group takes workerd with wrangler.
pub struct WorkerDev {
    child: Option<Child>,
    pub port: u16,
    state: PathBuf,
    seed: PathBuf,
    logs: PathBuf,
}

impl WorkerDev {
    pub fn start(port: u16, state: &Path, seed: &Path, logs: &Path, build: bool) -> WorkerDev {
        let mut w = WorkerDev { child: None, port, state: state.to_owned(), seed: seed.to_owned(), logs: logs.to_owned() };
        w.spawn(build);
        w
    }

    pub fn spawn(&mut self, build: bool) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.logs).unwrap();
        let child = Command::new(workspace_root().join("scripts/worker-dev"))
            .arg(self.port.to_string())
            .arg(&self.state)
            .env("SCS_API_TOKEN", TEST_TOKEN)
            .env("SCS_WORKER_SEED_SQL", &self.seed)
            .env("SCS_WORKER_NO_BUILD", if build { "0" } else { "1" })
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let api = self.api();
        // The first start builds the Worker (release wasm): minutes on a busy machine.
        let ok = wait_until(Duration::from_secs(900), || api.try_get("/healthz").is_ok_and(|r| r.status == 200));
        assert!(ok, "worker-dev did not answer /healthz; logs:\n{}", std::fs::read_to_string(&self.logs).unwrap_or_default());
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signals the process group this test created for the child.
            unsafe {
                libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = c.wait();
        }
        let port = self.port;
        assert!(wait_until(Duration::from_secs(20), || !scs_testkit::port_open(port)), "workerd still listens");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url(), Some(TEST_TOKEN))
    }

    /// The local D1 file (read after the Worker stopped).
    pub fn d1_file(&self) -> PathBuf {
        let dir = self.state.join("wrangler/v3/d1/miniflare-D1DatabaseObject");
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "sqlite") && !p.ends_with("metadata.sqlite"))
            .expect("a D1 sqlite file")
    }
}

impl Drop for WorkerDev {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as in kill().
            unsafe {
                libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

/// The gateway rows of a shim's store as SQL for the Worker's D1 (gateways are provisioned with the
/// shim's CLI; docs/deploy.md does the same with sqlite3).
pub fn gateway_seed(shim_db: &Path, out: &Path) {
    let c = rusqlite::Connection::open(shim_db).unwrap();
    let mut stmt = c.prepare("SELECT id, hex(public_key), mqtt_password_sha256, status, created_ms FROM gateways").unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(format!(
                "INSERT OR REPLACE INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES ('{}', X'{}', '{}', '{}', {});\n",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?
            ))
        })
        .unwrap()
        .collect::<Result<String, _>>()
        .unwrap();
    std::fs::write(out, rows).unwrap();
}

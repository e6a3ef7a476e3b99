//! The agent started through the real `packaging/scs-agent-launch` in a restart loop, as systemd's
//! `Restart=always` and the BusyBox supervisor run it, so `agent.update` can restart into a new binary.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{bin_path, workspace_root};

/// The launcher in a restart loop: restarted 300 ms after every exit until dropped. Its output (every
/// start's) is appended to `{dir}/agent.out`.
pub struct Supervised {
    child: Arc<Mutex<Option<Child>>>,
    stop: Arc<AtomicBool>,
    /// How many times the launcher was started.
    pub starts: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervised {
    /// `scs-agent-launch run --config CONFIG --gateway-id GW --data-dir DATA --interval-secs 1`, with the
    /// packaged binary being this build's `scs-agent`.
    pub fn start(dir: &Path, data: &Path, gw: &str, config: &Path) -> Supervised {
        let launcher = workspace_root().join("packaging/scs-agent-launch");
        let args: Vec<String> = vec![
            launcher.display().to_string(),
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--gateway-id".into(),
            gw.into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--interval-secs".into(),
            "1".into(),
        ];
        let child: Arc<Mutex<Option<Child>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicU64::new(0));
        let (c, s, n) = (child.clone(), stop.clone(), starts.clone());
        let log = dir.join("agent.out");
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open agent.out");
                let spawned = Command::new("/bin/sh")
                    .args(&args)
                    .env("SCS_AGENT_PACKAGED", bin_path("scs-agent"))
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().expect("clone agent.out"))
                    .stderr(out)
                    .spawn()
                    .expect("start scs-agent-launch");
                n.fetch_add(1, Ordering::SeqCst);
                *c.lock().unwrap_or_else(|p| p.into_inner()) = Some(spawned);
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                    let mut g = c.lock().unwrap_or_else(|p| p.into_inner());
                    let Some(ch) = g.as_mut() else { break };
                    if s.load(Ordering::SeqCst) {
                        let _ = ch.kill();
                        let _ = ch.wait();
                        return;
                    }
                    if !matches!(ch.try_wait(), Ok(None)) {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Supervised { child, stop, starts, thread: Some(thread) }
    }

    /// Process id of the running launcher (after its `exec`, the agent's).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(Child::id)
    }

    /// SIGKILL to the running process; the loop starts it again.
    pub fn kill9(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on a child's pid has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

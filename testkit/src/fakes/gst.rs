//! GStreamer's RTSP server (`scripts/gst-rtsp-server.py`, Debian's gir1.2-gst-rtsp-server-1.0) as a
//! child process: the RTSP implementation nobody in this project wrote, serving H.264 at a known size
//! and frame rate behind Digest authentication. Killed when the handle drops (and, through
//! PR_SET_PDEATHSIG, when the process that started it dies).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::workspace_root;

#[derive(Debug, Clone)]
pub struct GstOpts {
    pub user: String,
    pub pass: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Paths served (`/main`, `/sub`).
    pub mounts: Vec<String>,
}

impl Default for GstOpts {
    fn default() -> Self {
        GstOpts {
            user: "admin".into(),
            pass: "cam-pass".into(),
            width: 640,
            height: 360,
            fps: 15,
            mounts: vec!["/main".into(), "/sub".into()],
        }
    }
}

pub struct GstRtsp {
    child: Child,
    base: String,
    pub opts: GstOpts,
}

/// The interpreter Debian's python3-gi is installed for (a virtualenv's python3 may lack it).
const PYTHON: &str = "/usr/bin/python3";

/// Why GStreamer's RTSP server cannot run here, or `None` when it can.
pub fn missing() -> Option<String> {
    let probe = "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); \
                 from gi.repository import Gst, GstRtspServer; Gst.init(None); \
                 import sys; sys.exit(0 if Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay') else 3)";
    match Command::new(PYTHON).args(["-c", probe]).stdout(Stdio::null()).stderr(Stdio::piped()).output() {
        Err(e) => Some(format!("{PYTHON}: {e}")),
        Ok(o) if o.status.code() == Some(3) => Some("x264enc or rtph264pay missing (gstreamer1.0-plugins-ugly / -good)".into()),
        Ok(o) if !o.status.success() => Some(format!(
            "python3-gi / gir1.2-gst-rtsp-server-1.0 missing: {}",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
        )),
        Ok(_) => None,
    }
}

impl GstRtsp {
    /// Starts the server on a free loopback port and waits (up to 20 s) for it to listen.
    pub fn start(opts: GstOpts) -> Result<GstRtsp, String> {
        let script = workspace_root().join("scripts").join("gst-rtsp-server.py");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script).args(["--port", "0", "--user", &opts.user, "--password", &opts.pass]).args([
            "--width",
            &opts.width.to_string(),
            "--height",
            &opts.height.to_string(),
            "--fps",
            &opts.fps.to_string(),
        ]);
        for m in &opts.mounts {
            cmd.args(["--mount", m]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("{PYTHON} {}: {e}", script.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(uri) = line.strip_prefix("READY ") {
                    let _ = tx.send(uri.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(base) => Ok(GstRtsp { child, base, opts }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!("gst-rtsp-server.py did not become ready ({status})"))
            }
        }
    }

    /// `rtsp://127.0.0.1:port`
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `rtsp://127.0.0.1:port/{path}`
    pub fn uri(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GstRtsp {
    fn drop(&mut self) {
        // SIGTERM lets the main loop quit; SIGKILL if it does not within 2 s.
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..40 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

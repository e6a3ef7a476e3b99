//! One child process with its arguments remembered, so it can be killed (gracefully or with SIGKILL) and
//! started again identically. Output goes to append-mode log files that survive restarts.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The handle methods `Agent` and `Shim` pass straight to their `proc: Process` field, written once.
/// `start_again`/`restart` stay per type: a shim waits for readiness after starting, an agent does not.
macro_rules! delegate_to_process {
    () => {
        pub fn pid(&self) -> Option<u32> {
            self.proc.pid()
        }

        pub fn is_running(&mut self) -> bool {
            self.proc.is_running()
        }

        /// SIGTERM (graceful), SIGKILL after 10 s.
        pub fn kill(&mut self) {
            self.proc.kill();
        }

        pub fn kill9(&mut self) {
            self.proc.kill9();
        }

        pub fn logs(&self) -> String {
            self.proc.logs()
        }

        pub fn process(&mut self) -> &mut Process {
            &mut self.proc
        }
    };
}
pub(crate) use delegate_to_process;

#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Process {
    /// Starts `program args` with extra `envs`, logging to `{log_dir}/{name}.stdout.log` / `.stderr.log`.
    pub fn spawn(name: &str, program: &Path, args: Vec<OsString>, envs: Vec<(String, String)>, log_dir: &Path) -> Process {
        let mut p = Process {
            name: name.to_owned(),
            program: program.to_owned(),
            args,
            envs,
            stdout_log: log_dir.join(format!("{name}.stdout.log")),
            stderr_log: log_dir.join(format!("{name}.stderr.log")),
            child: None,
            starts: 0,
        };
        p.start_again();
        p
    }

    fn log_file(&self, path: &Path) -> File {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open log {}: {e}", path.display()));
        let _ = writeln!(f, "=== [testkit] start #{} of {} ===", self.starts, self.name);
        f
    }

    /// Starts the process again with the same arguments. No-op if it is still running.
    pub fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        self.starts += 1;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(self.log_file(&self.stdout_log))
            .stderr(self.log_file(&self.stderr_log));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Whether the process is alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Exit status if the process has exited (and was not killed by us yet).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the pid of our own child that has not been reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// SIGTERM, wait up to 10 s for a clean exit, then SIGKILL.
    pub fn kill(&mut self) {
        if !self.is_running() {
            self.child = None;
            return;
        }
        self.signal(libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if !self.is_running() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[testkit] {} ignored SIGTERM for 10 s; sending SIGKILL", self.name);
        self.kill9();
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `kill()` then `start_again()`.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    pub fn stdout_log(&self) -> &Path {
        &self.stdout_log
    }

    pub fn stderr_log(&self) -> &Path {
        &self.stderr_log
    }

    /// Both logs, whole.
    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout_log).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        format!("--- {} stdout ---\n{out}--- {} stderr ---\n{err}", self.name, self.name)
    }

    /// Polls `ready` until it holds. Panics naming `what` if the process exits first or `timeout` passes;
    /// the logs' tails are printed when the panic drops this process.
    pub fn wait_ready(&mut self, timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
        let ok = crate::wait_until(timeout, || {
            if !self.is_running() {
                panic!("{} exited before {what}", self.name);
            }
            ready()
        });
        if !ok {
            panic!("{}: not {what} within {timeout:?}", self.name);
        }
    }

    /// Prints the last `lines` lines of both logs to stderr (shown by the test harness on failure).
    pub fn print_log_tails(&self, lines: usize) {
        for (what, path) in [("stdout", &self.stdout_log), ("stderr", &self.stderr_log)] {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            eprintln!("----- {} {what} ({}), last {} lines -----", self.name, path.display(), all.len() - from);
            for l in &all[from..] {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tails(80);
        }
        self.kill9();
    }
}

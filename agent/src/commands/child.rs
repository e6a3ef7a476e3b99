//! Running external programs for commands: explicit argv (never a shell), own process group, output
//! captured up to a cap, and the whole group killed when the job is cancelled or times out, so a
//! program's own children cannot outlive the command.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{CommandError, Job};

/// Bytes kept of each of stdout and stderr.
pub const CAPTURE_LIMIT: usize = 16 * 1024;
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct ChildOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Reads a pipe to its end, keeping the first `CAPTURE_LIMIT` bytes; draining the rest keeps the
/// child from blocking on a full pipe.
fn capture(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = CAPTURE_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
                }
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// SIGKILL to every process in the group led by `pgid`.
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return };
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Runs `argv` until it exits, or until the job must stop (cancel or deadline): then the process
/// group is killed and `Err(Stopped)` returned.
pub fn run(job: &Job, argv: &[String]) -> Result<ChildOutput, CommandError> {
    let (prog, args) = argv.split_first().ok_or_else(|| CommandError::Failed("empty command line".into()))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A new process group with the child as leader: one kill reaches its descendants too.
        .process_group(0)
        .spawn()
        .map_err(|e| CommandError::io(format!("starting {prog}"), e))?;
    let pid = child.id();
    let out = child.stdout.take().map(capture);
    let err = child.stderr.take().map(capture);
    let status = loop {
        if job.should_stop() {
            kill_group(pid);
            let _ = child.wait();
            log::info!("command {} ({}): killed process group {pid} ({prog})", job.id, job.spec.command_type);
            return Err(CommandError::Stopped);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                kill_group(pid);
                let _ = child.wait();
                return Err(CommandError::io(format!("waiting for {prog}"), e));
            }
        }
    };
    // Descendants that kept the pipes open would block the readers: they belong to the command.
    kill_group(pid);
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(ChildOutput { status, stdout, stderr })
}

//! Executor tests against a real `agent.db` (journal + outbox) in a temp dir and real child processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use scs_protocol::registry::{CommandSpec, Safety};
use scs_protocol::topics::topic;
use scs_protocol::{
    decode_uplink, CommandCancel, CommandRequest, CommandState, CommandUpdate, TopicKind, Uplink, Value, PROTOCOL_VERSION,
};

use super::executor::{Executor, Options};
use super::journal::Journal;
use super::{CommandError, Inbound, Job, Output, RunFn};
use crate::config::{CommandsConfig, Config};
use crate::context::AgentContext;
use crate::queue::{Queue, QueueOptions};
use crate::settings::Settings;

const GW: &str = "gw-exec";

struct Rig {
    dir: PathBuf,
    ctx: AgentContext,
    tx: Option<Sender<Inbound>>,
    handle: Option<JoinHandle<()>>,
    restarts: Arc<AtomicU32>,
    reboot: Vec<String>,
    registry: &'static [CommandSpec],
    runner: fn(&str) -> Option<RunFn>,
}

/// Waits (polling, up to `secs`) until `cond` holds; fails the test naming `what` if it never does.
fn wait(secs: u64, what: &str, cond: impl FnMut() -> bool) {
    assert!(scs_testkit::wait_until(Duration::from_secs(secs), cond), "timed out after {secs} s waiting for {what}");
}

fn config(dir: &Path, reboot: &[String]) -> Config {
    Config {
        gateway_id: GW.into(),
        data_dir: dir.to_owned(),
        commands: CommandsConfig { reboot_command: reboot.to_vec() },
        ..Config::default()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scs-exec-{name}-{}-{}", std::process::id(), crate::clock::random_u64()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Rig {
    /// A rig whose reboot command is `reboot(dir)` (the dir lets it write marker files).
    fn new(name: &str, reboot: impl Fn(&Path) -> Vec<String>) -> Rig {
        Rig::with_registry(name, reboot, crate::command_registry_gen::COMMANDS)
    }

    fn with_registry(name: &str, reboot: impl Fn(&Path) -> Vec<String>, registry: &'static [CommandSpec]) -> Rig {
        let dir = temp_dir(name);
        let argv = reboot(&dir);
        Rig::start(dir, argv, registry, super::runner)
    }

    /// A rig whose command types are implemented by `runner` instead of the agent's own.
    fn with_runner(name: &str, registry: &'static [CommandSpec], runner: fn(&str) -> Option<RunFn>) -> Rig {
        Rig::start(temp_dir(name), argv(&["true"]), registry, runner)
    }

    fn start(dir: PathBuf, reboot: Vec<String>, registry: &'static [CommandSpec], runner: fn(&str) -> Option<RunFn>) -> Rig {
        let cfg = config(&dir, &reboot);
        let db = dir.join("agent.db");
        let queue = Queue::open(&db, QueueOptions::from(&cfg.queue)).unwrap();
        let settings = Settings::open(&db, &cfg, false).unwrap();
        let ctx = AgentContext::new(cfg, crate::clock::random_u64() >> 12, queue, settings);
        let restarts = Arc::new(AtomicU32::new(0));
        let r = Arc::clone(&restarts);
        let opts = Options {
            registry,
            on_restart: Arc::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }),
            runner,
        };
        let (tx, rx) = channel();
        let handle = Executor::spawn_with(ctx.clone(), rx, opts).unwrap();
        Rig { dir, ctx, tx: Some(tx), handle: Some(handle), restarts, reboot, registry, runner }
    }

    /// Stops the executor thread (like an agent exit) and starts a new one on the same database.
    fn restart(mut self) -> Rig {
        self.stop();
        let (dir, reboot, registry, runner) = (self.dir.clone(), std::mem::take(&mut self.reboot), self.registry, self.runner);
        // The directory must outlive this rig: skip Drop's cleanup.
        std::mem::forget(self);
        Rig::start(dir, reboot, registry, runner)
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }

    fn send(&self, d: Inbound) {
        self.tx.as_ref().unwrap().send(d).unwrap();
    }

    fn command(&self, id: &str, ty: &str, params: Value, confirm: bool) {
        self.send(Inbound::Command(request(id, ty, params, confirm, 0)));
    }

    /// Every command update queued so far, in seq order.
    fn updates(&self) -> Vec<CommandUpdate> {
        let t = topic(GW, TopicKind::CommandUpdate);
        self.ctx
            .queue
            .read_range(0, u64::MAX, 10_000)
            .unwrap()
            .into_iter()
            .filter(|q| q.kind == TopicKind::CommandUpdate)
            .map(|q| match decode_uplink(&t, &q.payload).unwrap().1 {
                Uplink::Command(u) => u,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn states(&self, id: &str) -> Vec<CommandState> {
        self.updates().into_iter().filter(|u| u.id == id).map(|u| u.state).collect()
    }

    fn terminal(&self, id: &str) -> Option<CommandUpdate> {
        self.updates().into_iter().find(|u| u.id == id && u.state.is_terminal())
    }

    fn wait_terminal(&self, id: &str) -> CommandUpdate {
        wait(10, &format!("a terminal state of {id}"), || self.terminal(id).is_some());
        self.terminal(id).unwrap()
    }

    fn wait_state(&self, id: &str, state: CommandState) {
        wait(10, &format!("{id} {}", state.as_str()), || self.states(id).contains(&state));
    }

    /// Sends a harmless command and waits for its outcome. Commands are decided in order on one
    /// thread, so once it is done every command and cancel sent before it has been decided too.
    fn sync(&self, marker: &str) {
        self.command(marker, "device.time", empty(), false);
        self.wait_terminal(marker);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn request(id: &str, ty: &str, params: Value, confirm: bool, timeout_secs: u32) -> CommandRequest {
    let now = crate::clock::now_ms();
    CommandRequest {
        v: PROTOCOL_VERSION,
        id: id.into(),
        command_type: ty.into(),
        params,
        issued: now,
        expires: now + 60_000,
        timeout_secs,
        confirm,
        upload: None,
        requested_by: Some("test".into()),
        target: None,
    }
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn harmless(_: &Path) -> Vec<String> {
    argv(&["true"])
}

fn empty() -> Value {
    Value::Map(Default::default())
}

/// True while `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn wait_pid_file(path: &Path) -> u32 {
    scs_testkit::wait_for(Duration::from_secs(5), &format!("a pid in {}", path.display()), || {
        std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok())
    })
}

#[test]
fn happy_path_reports_accepted_running_succeeded() {
    let rig = Rig::new("happy", harmless);
    rig.command("c1", "device.info", empty(), false);
    let done = rig.wait_terminal("c1");
    assert_eq!(rig.states("c1"), [CommandState::Accepted, CommandState::Running, CommandState::Succeeded]);
    let r = done.result.unwrap();
    assert_eq!(r.get("gatewayId").and_then(Value::as_str), Some(GW));
    assert!(r.get("agentVersion").is_some() && r.get("uptimeSecs").is_some());

    rig.command("c2", "telemetry.set_interval", Value::map([("intervalSecs", Value::Int(42))]), false);
    assert_eq!(rig.wait_terminal("c2").state, CommandState::Succeeded);
    assert_eq!(rig.ctx.settings.interval_secs(), 42);

    rig.command("c3", "device.time", empty(), false);
    let t = rig.wait_terminal("c3").result.unwrap();
    assert!(t.get("rfc3339").and_then(Value::as_str).is_some_and(|s| s.ends_with('Z')));
}

#[test]
fn invalid_commands_are_rejected_with_field_and_rule() {
    let rig = Rig::new("reject", harmless);
    rig.command("bad-port", "net.tcp_probe", Value::map([("host", "127.0.0.1".into()), ("port", Value::Int(70000))]), false);
    let u = rig.wait_terminal("bad-port");
    assert_eq!(u.state, CommandState::Rejected);
    let e = u.error.unwrap();
    assert!(e.contains("\"port\"") && e.contains("max"), "{e}");
    assert_eq!(rig.states("bad-port"), [CommandState::Rejected], "never accepted");

    rig.command("bad-host", "net.tcp_probe", Value::map([("host", "x;rm -rf /".into()), ("port", Value::Int(1))]), false);
    assert!(rig.wait_terminal("bad-host").error.unwrap().contains("pattern"));

    rig.command("no-confirm", "device.reboot", empty(), false);
    let u = rig.wait_terminal("no-confirm");
    assert_eq!(u.state, CommandState::Rejected);
    assert!(u.error.unwrap().contains("confirm"));

    rig.command("unknown", "device.selfdestruct", empty(), true);
    assert!(rig.wait_terminal("unknown").error.unwrap().contains("unknown command type"));

    let mut old = request("late", "device.info", empty(), false, 0);
    old.expires = crate::clock::now_ms() - 5_000;
    rig.send(Inbound::Command(old));
    assert_eq!(rig.wait_terminal("late").state, CommandState::Expired);

    // `expires` 0 is not "never expires".
    let mut zero = request("zero-expiry", "device.info", empty(), false, 0);
    zero.expires = 0;
    rig.send(Inbound::Command(zero));
    assert_eq!(rig.wait_terminal("zero-expiry").state, CommandState::Expired);
}

#[test]
fn a_command_id_runs_at_most_once_across_redelivery_and_restart() {
    // The reboot program appends a line per run to a file in the rig's dir.
    let rig = Rig::new("once", |d| argv(&["sh", "-c", "echo x >> \"$0\"", d.join("runs").to_str().unwrap()]));
    let marker = rig.dir.join("runs");
    rig.command("r1", "device.reboot", empty(), true);
    assert_eq!(rig.wait_terminal("r1").state, CommandState::Succeeded);
    rig.command("r1", "device.reboot", empty(), true);
    rig.sync("after-redelivery");
    let rig = rig.restart();
    rig.command("r1", "device.reboot", empty(), true);
    rig.sync("after-restart");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1, "ran more than once");
    assert_eq!(rig.states("r1"), [CommandState::Accepted, CommandState::Running, CommandState::Succeeded]);
}

#[test]
fn a_command_failing_the_protocol_checks_is_rejected_once() {
    let rig = Rig::new("invalid", harmless);
    let invalid = || Inbound::Invalid { id: "bad1".into(), error: "invalid field params: must be a map".into() };
    rig.send(invalid());
    assert_eq!(rig.wait_terminal("bad1").error.as_deref(), Some("invalid field params: must be a map"));
    // A redelivery, and even a valid command under the same id, are duplicates: never reported or run.
    rig.send(invalid());
    rig.command("bad1", "device.time", empty(), false);
    // Commands are decided in order, so once this one is done the duplicates have been seen.
    rig.command("after", "device.time", empty(), false);
    rig.wait_terminal("after");
    assert_eq!(rig.states("bad1"), [CommandState::Rejected]);
}

#[test]
fn timeout_kills_the_child_process_group() {
    let rig = Rig::new("timeout", |d| argv(&["sh", "-c", "sleep 30 & echo $! > \"$0\"; wait", d.join("pid").to_str().unwrap()]));
    let pidfile = rig.dir.join("pid");
    rig.send(Inbound::Command(request("slow", "device.reboot", empty(), true, 1)));
    let grandchild = wait_pid_file(&pidfile);
    assert!(alive(grandchild));
    let u = rig.wait_terminal("slow");
    assert_eq!(u.state, CommandState::TimedOut, "{u:?}");
    wait(3, &format!("sleep {grandchild} to be killed by the timeout"), || !alive(grandchild));
}

#[test]
fn cancel_during_and_before_execution() {
    let rig = Rig::new("cancel", |d| argv(&["sh", "-c", "echo $$ > \"$0\"; exec sleep 30", d.join("pid").to_str().unwrap()]));
    let pidfile = rig.dir.join("pid");
    rig.command("long", "device.reboot", empty(), true);
    let pid = wait_pid_file(&pidfile);
    rig.send(Inbound::Cancel(CommandCancel { v: PROTOCOL_VERSION, id: "long".into() }));
    let u = rig.wait_terminal("long");
    assert_eq!(u.state, CommandState::Cancelled);
    wait(3, &format!("child {pid} to be killed by the cancel"), || !alive(pid));

    // Cancel first: the command that arrives later is not run.
    rig.send(Inbound::Cancel(CommandCancel { v: PROTOCOL_VERSION, id: "early".into() }));
    rig.command("early", "device.info", empty(), false);
    rig.sync("after-early");
    assert_eq!(rig.states("early"), [CommandState::Cancelled]);
}

#[test]
fn unfinished_commands_are_reported_interrupted_after_a_crash() {
    let rig = Rig::new("interrupted", harmless);
    let dir = rig.dir.clone();
    // What a kill -9 mid-command leaves behind: a journal row in state running.
    let j = Journal::open(&dir.join("agent.db")).unwrap();
    j.insert("mid", "device.reboot", CommandState::Accepted, 7, crate::clock::now_ms()).unwrap();
    j.set_state("mid", "running", None, None, crate::clock::now_ms()).unwrap();
    j.mark_reported("mid", CommandState::Running).unwrap();
    drop(j);
    let rig = rig.restart();
    let u = rig.wait_terminal("mid");
    assert_eq!(u.state, CommandState::Interrupted);
    assert!(u.error.unwrap().contains("outcome is unknown"));
    // Reported once: another restart does not repeat it (recovery runs before `spawn_with` returns).
    let rig = rig.restart();
    assert_eq!(rig.states("mid"), [CommandState::Interrupted]);
}

#[test]
fn agent_restart_succeeds_only_after_the_restart() {
    let rig = Rig::new("restart", harmless);
    rig.command("rs", "agent.restart", empty(), false);
    wait(5, "the restart hook", || rig.restarts.load(Ordering::SeqCst) > 0);
    assert_eq!(rig.states("rs"), [CommandState::Accepted, CommandState::Running], "no success before the restart");
    let first_boot = rig.ctx.boot;
    let rig = rig.restart();
    let u = rig.wait_terminal("rs");
    assert_eq!(u.state, CommandState::Succeeded);
    let r = u.result.unwrap();
    assert_eq!(r.get("previousBoot").and_then(Value::as_i64), Some(first_boot as i64));
    assert_eq!(r.get("boot").and_then(Value::as_i64), Some(rig.ctx.boot as i64));
}

#[test]
fn rate_and_concurrency_limits_are_enforced() {
    let rig = Rig::new("limits", harmless);
    // device.reboot: rate limit 1 per 600 s.
    rig.command("rb1", "device.reboot", empty(), true);
    assert_eq!(rig.wait_terminal("rb1").state, CommandState::Succeeded);
    rig.command("rb2", "device.reboot", empty(), true);
    let u = rig.wait_terminal("rb2");
    assert_eq!(u.state, CommandState::Rejected);
    assert!(u.error.unwrap().contains("rate limit"));
    drop(rig);

    // Concurrency: a registry whose reboot has no rate limit but one slot.
    static REBOOT_ONE_AT_A_TIME: [CommandSpec; 1] = [CommandSpec {
        command_type: "device.reboot",
        title: "",
        description: "",
        path: "/3/0/4",
        operation: scs_protocol::registry::Operation::Execute,
        timeout_secs: 30,
        artifact: false,
        safety: Safety { destructive: true, requires_confirmation: true, ..Safety::HARMLESS_GATEWAY },
        params: &[],
    }];
    let rig = Rig::with_registry("conc", |_| argv(&["sleep", "30"]), &REBOOT_ONE_AT_A_TIME);
    rig.command("a", "device.reboot", empty(), true);
    rig.wait_state("a", CommandState::Running);
    rig.command("b", "device.reboot", empty(), true);
    let u = rig.wait_terminal("b");
    assert_eq!(u.state, CommandState::Rejected);
    assert!(u.error.unwrap().contains("maxConcurrentPerGateway"));
    rig.send(Inbound::Cancel(CommandCancel { v: PROTOCOL_VERSION, id: "a".into() }));
    assert_eq!(rig.wait_terminal("a").state, CommandState::Cancelled);
    rig.command("c", "device.reboot", empty(), true);
    rig.wait_state("c", CommandState::Running);
    rig.send(Inbound::Cancel(CommandCancel { v: PROTOCOL_VERSION, id: "c".into() }));
    rig.wait_terminal("c");
}

#[test]
fn tcp_probe_measures_a_local_listener() {
    let rig = Rig::new("probe", harmless);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    rig.command("p1", "net.tcp_probe", Value::map([("host", "127.0.0.1".into()), ("port", Value::Int(port.into()))]), false);
    let r = rig.wait_terminal("p1").result.unwrap();
    assert_eq!(r.get("reachable"), Some(&Value::Bool(true)));
    assert!(r.get("latencyMs").and_then(Value::as_f64).is_some());
    drop(l);
    rig.command("p2", "net.tcp_probe", Value::map([("host", "127.0.0.1".into()), ("port", Value::Int(port.into()))]), false);
    let r = rig.wait_terminal("p2").result.unwrap();
    assert_eq!(r.get("reachable"), Some(&Value::Bool(false)));
}

#[test]
fn config_read_redacts_and_log_tail_reads_the_log() {
    let rig = Rig::new("cfg", harmless);
    rig.command("cfg", "agent.config", empty(), false);
    let r = rig.wait_terminal("cfg").result.unwrap();
    assert!(r.get("config").and_then(Value::as_str).is_some_and(|t| t.contains(GW)));

    rig.command("nolog", "agent.log_tail", empty(), false);
    assert_eq!(rig.wait_terminal("nolog").state, CommandState::Failed);
    let logs = rig.dir.join(crate::logging::LOG_DIR);
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join(crate::logging::LOG_FILE), "[t INFO  a] hello\n[t ERROR a] boom\n").unwrap();
    rig.command("log", "agent.log_tail", Value::map([("lines", Value::Int(5)), ("minLevel", "error".into())]), false);
    let r = rig.wait_terminal("log").result.unwrap();
    let lines = r.get("lines").and_then(Value::as_array).unwrap();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].as_str().unwrap().ends_with("boom"));
}

/// A job that ignores its cancel flag and its deadline, as a hung driver call would: it returns only
/// once a `release` file appears in the data dir.
fn stuck_job(job: &Job) -> Result<Output, CommandError> {
    let release = job.ctx.data_dir.join("release");
    while !release.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Output::value(Value::from("released")))
}

fn stuck_runner(command_type: &str) -> Option<RunFn> {
    (command_type == "test.stuck").then_some(stuck_job as RunFn)
}

static STUCK_ONE_AT_A_TIME: [CommandSpec; 1] = [CommandSpec {
    command_type: "test.stuck",
    title: "",
    description: "",
    path: "/32769/0/99",
    operation: scs_protocol::registry::Operation::Execute,
    timeout_secs: 1,
    artifact: false,
    safety: Safety::HARMLESS_GATEWAY, // one at a time
    params: &[],
}];

#[test]
fn a_stopped_job_that_keeps_running_keeps_its_concurrency_slot() {
    let rig = Rig::with_runner("stuck", &STUCK_ONE_AT_A_TIME, stuck_runner);
    rig.command("s1", "test.stuck", empty(), false);
    // Reported after its timeout and the wind-down, although its worker still runs.
    assert_eq!(rig.wait_terminal("s1").state, CommandState::TimedOut);
    rig.command("s2", "test.stuck", empty(), false);
    let u = rig.wait_terminal("s2");
    assert_eq!(u.state, CommandState::Rejected, "a second job ran beside the stuck one: {u:?}");
    assert!(u.error.unwrap().contains("maxConcurrentPerGateway"));

    // Once the stuck worker really ends, its slot is free again.
    std::fs::write(rig.dir.join("release"), b"").unwrap();
    let mut n = 0;
    wait(10, "the slot to be released", || {
        n += 1;
        let id = format!("s3-{n}");
        rig.command(&id, "test.stuck", empty(), false);
        rig.wait_terminal(&id).state == CommandState::Succeeded
    });
}

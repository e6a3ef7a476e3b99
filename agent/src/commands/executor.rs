//! The command executor: one thread deciding on every command and cancel the MQTT transport hands
//! over, and one supervisor thread (plus a worker thread) per running command.
//!
//! Decision order for a command: already in the journal → ignored (at-most-once); past `expires` →
//! `expired`; unknown type, missing confirmation or bad parameters → `rejected` with the field and
//! rule; rate or concurrency limit → `rejected`; otherwise `accepted`, then `running`, then one of
//! `succeeded | failed | timed_out | cancelled`. The journal row is written before the matching update
//! is queued, so a crash between the two is repaired at the next start ([`Journal::recover`]).
//! A command that failed the protocol checks but has a readable id arrives as
//! `Inbound::Invalid` and is journalled and reported `rejected` with the protocol error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scs_protocol::limits::MAX_UPLINK_BYTES;
use scs_protocol::registry::{check_command, target_class, CommandSpec};
use scs_protocol::{
    encode, ArtifactMeta, CommandCancel, CommandRequest, CommandState, CommandUpdate, TopicKind, Value, PROTOCOL_VERSION,
};

use super::journal::{Journal, JournalError, Pending, RESTARTING};
use super::limits::{check_rate, Concurrency, Slot};
use super::Inbound;
use super::{agent_restart, runner, CommandError, Job, Output, RunFn, Target};
use crate::context::{AgentContext, AgentMetrics};
use crate::devices::DeviceSpec;
use crate::queue::QueueError;

/// How long a stopped job gets to wind down (kill its children) before the outcome is reported anyway.
/// Its concurrency slot stays taken until the job really returns.
const WIND_DOWN: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);
/// Room left in an update for everything but the result value.
const UPDATE_OVERHEAD: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("queueing update for command {id}: {source}")]
    Queue { id: String, source: QueueError },
    #[error("starting the command executor thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What the executor does when `agent.restart` has been recorded: by default exit the process with
/// [`agent_restart::RESTART_EXIT_CODE`]; tests substitute a recorder.
pub type RestartHook = Arc<dyn Fn() + Send + Sync>;

pub struct Options {
    pub registry: &'static [CommandSpec],
    pub on_restart: RestartHook,
    /// The implementation of each command type; tests substitute jobs that misbehave.
    pub runner: fn(&str) -> Option<RunFn>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            registry: crate::command_registry_gen::COMMANDS,
            on_restart: Arc::new(|| {
                log::warn!("exiting with status {} so the supervisor restarts the agent", agent_restart::RESTART_EXIT_CODE);
                std::process::exit(agent_restart::RESTART_EXIT_CODE)
            }),
            runner,
        }
    }
}

/// Cuts an error text to what `CommandUpdate::validate` accepts, on a character boundary.
fn truncate_error(e: &str) -> String {
    let max = scs_protocol::limits::MAX_TEXT_LEN * 4;
    if e.len() <= max {
        return e.to_owned();
    }
    let mut end = max;
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    e[..end].to_owned()
}

/// A command's terminal (or intermediate) outcome, as reported.
struct Outcome {
    state: CommandState,
    result: Option<Value>,
    error: Option<String>,
    artifacts: Vec<ArtifactMeta>,
}

impl Outcome {
    fn state(state: CommandState) -> Outcome {
        Outcome { state, result: None, error: None, artifacts: Vec::new() }
    }
    fn error(state: CommandState, error: impl Into<String>) -> Outcome {
        Outcome { error: Some(error.into()), ..Outcome::state(state) }
    }
}

/// A command between `accepted` and its terminal state.
struct Active {
    cancel_requested: AtomicBool,
}

struct Shared {
    ctx: AgentContext,
    opts: Options,
    journal: Mutex<Journal>,
    concurrency: Concurrency,
    active: Mutex<HashMap<String, Arc<Active>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent across a panic (SQLite rolls back).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Executor;

impl Executor {
    /// Opens the journal, reports what an earlier agent process left unfinished, and starts the
    /// thread that consumes `rx` until it closes or shutdown is requested.
    pub fn spawn(ctx: AgentContext, rx: Receiver<Inbound>) -> Result<JoinHandle<()>, ExecutorError> {
        Executor::spawn_with(ctx, rx, Options::default())
    }

    pub fn spawn_with(ctx: AgentContext, rx: Receiver<Inbound>, opts: Options) -> Result<JoinHandle<()>, ExecutorError> {
        let journal = Journal::open(&ctx.db_path())?;
        let shared = Arc::new(Shared {
            ctx,
            opts,
            journal: Mutex::new(journal),
            concurrency: Concurrency::default(),
            active: Mutex::new(HashMap::new()),
        });
        shared.recover()?;
        std::thread::Builder::new().name("commands".into()).spawn(move || shared.serve(rx)).map_err(ExecutorError::Thread)
    }
}

impl Shared {
    fn serve(self: Arc<Self>, rx: Receiver<Inbound>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Inbound::Command(req)) => {
                    let id = req.id.clone();
                    if let Err(e) = Arc::clone(&self).on_command(req) {
                        log::error!("command {id}: {e}");
                    }
                }
                Ok(Inbound::Cancel(c)) => {
                    if let Err(e) = self.on_cancel(&c) {
                        log::error!("cancel of command {}: {e}", c.id);
                    }
                }
                Ok(Inbound::Invalid { id, error }) => {
                    if let Err(e) = self.on_invalid_command(&id, error) {
                        log::error!("command {id}: {e}");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.ctx.shutdown.requested() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        log::debug!("command executor stopped");
    }

    /// Reports commands an earlier agent process left behind: unfinished ones are `interrupted`,
    /// an agent restart that led here `succeeded`, decided-but-unreported outcomes are sent now.
    fn recover(&self) -> Result<(), ExecutorError> {
        let now = crate::clock::now_ms();
        let pending = lock(&self.journal).recover(now)?;
        for p in pending {
            let outcome = self.recovered_outcome(&p);
            let Some(outcome) = outcome else { continue };
            log::warn!(
                "command {} ({}) left {} by the previous agent run: reporting {}",
                p.id,
                p.command_type,
                p.state,
                outcome.state.as_str()
            );
            self.finish(&p.id, outcome)?;
        }
        Ok(())
    }

    fn recovered_outcome(&self, p: &Pending) -> Option<Outcome> {
        let st = p.state.as_str();
        // Updates decide their outcome from what the next binary or boot finds on disk.
        let unfinished = st == RESTARTING || matches!(st, "accepted" | "running");
        let update = match p.command_type.as_str() {
            super::agent_update::TYPE if unfinished => super::agent_update::recovered(&self.ctx, &p.id),
            super::image_update::TYPE if unfinished => super::image_update::recovered(&self.ctx, &p.id),
            _ => None,
        };
        match update {
            Some(super::agent_update::Recovered::Wait) => return None,
            Some(super::agent_update::Recovered::Outcome { state, result, error }) => {
                return Some(Outcome { state, result: Some(result), error, artifacts: Vec::new() })
            }
            None => {}
        }
        if st == RESTARTING {
            return Some(Outcome {
                result: Some(Value::map([
                    ("restarted", Value::Bool(true)),
                    ("previousBoot", Value::from(p.boot)),
                    ("boot", Value::from(self.ctx.boot)),
                    ("agentVersion", Value::from(env!("CARGO_PKG_VERSION"))),
                ])),
                ..Outcome::state(CommandState::Succeeded)
            });
        }
        match CommandState::parse(st)? {
            s @ (CommandState::Accepted | CommandState::Running) => Some(Outcome::error(
                CommandState::Interrupted,
                format!("the agent stopped (crash, kill or reboot) while the command was {}; its outcome is unknown", s.as_str()),
            )),
            s if s.is_terminal() => Some(Outcome {
                state: s,
                result: p.result.as_deref().and_then(|b| minicbor::decode::<Value>(b).ok()),
                error: p.error.clone(),
                artifacts: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Decides on a delivered command; starts it if accepted.
    fn on_command(self: Arc<Self>, req: CommandRequest) -> Result<(), ExecutorError> {
        let now = crate::clock::now_ms();
        let journal = lock(&self.journal);
        if journal.contains(&req.id)? {
            log::info!("command {} ({}) delivered again: already handled, not run twice", req.id, req.command_type);
            return Ok(());
        }
        let decision = self.decide(&journal, &req, now);
        let (state, spec_params_slot, reason) = match decision {
            Ok((spec, params, slot, target)) => (CommandState::Accepted, Some((spec, params, slot, target)), None),
            Err((state, reason)) => (state, None, Some(reason)),
        };
        if !journal.insert(&req.id, &req.command_type, state, self.ctx.boot, now)? {
            return Ok(());
        }
        drop(journal);
        let Some((spec, params, slot, target)) = spec_params_slot else {
            let reason = reason.unwrap_or_default();
            log::warn!("command {} ({}) {}: {reason}", req.id, req.command_type, state.as_str());
            return self.finish(&req.id, Outcome::error(state, reason));
        };
        log::info!("command {} ({}) accepted", req.id, spec.command_type);
        self.report(&req.id, &Outcome::state(CommandState::Accepted))?;
        let active = Arc::new(Active { cancel_requested: AtomicBool::new(false) });
        lock(&self.active).insert(req.id.clone(), Arc::clone(&active));
        let me = Arc::clone(&self);
        let id = req.id.clone();
        let started = std::thread::Builder::new()
            .name(format!("cmd-{}", spec.command_type))
            .spawn(move || me.supervise(req, spec, params, slot, target, active));
        if let Err(e) = started {
            lock(&self.active).remove(&id);
            return self.finish(&id, Outcome::error(CommandState::Failed, format!("cannot start a thread: {e}")));
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        journal: &Journal,
        req: &CommandRequest,
        now: u64,
    ) -> Result<(&'static CommandSpec, Value, Slot, Option<Target>), (CommandState, String)> {
        // `expires` 0 is not "never": every command the cloud sends carries a real expiry.
        if now > req.expires || req.expires == 0 {
            let late = (now - req.expires) / 1000;
            return Err((CommandState::Expired, format!("arrived {late} s after it expired")));
        }
        let (spec, params) = check_command(self.opts.registry, &req.command_type, &req.params, req.confirm)
            .map_err(|e| (CommandState::Rejected, e.to_string()))?;
        let target = self.resolve_target(spec, req.target.as_deref()).map_err(|e| (CommandState::Rejected, e))?;
        if (self.opts.runner)(spec.command_type).is_none() {
            return Err((CommandState::Rejected, CommandError::Unsupported(spec.command_type).to_string()));
        }
        check_rate(journal, spec, now).map_err(|e| (CommandState::Rejected, e.to_string()))?;
        let slot = self.concurrency.try_acquire(spec).map_err(|e| (CommandState::Rejected, e.to_string()))?;
        Ok((spec, params, slot, target))
    }

    /// The device a command names, checked against this gateway's devices and the spec's target
    /// classes. No target (or the gateway's own id) means the gateway.
    fn resolve_target(&self, spec: &'static CommandSpec, target: Option<&str>) -> Result<Option<Target>, String> {
        let classes = spec.safety.targets.join(", ");
        let Some(id) = target.filter(|t| *t != self.ctx.gateway_id) else {
            if spec.targets("gateway") {
                return Ok(None);
            }
            return Err(format!("{} targets {classes}: name the target device", spec.command_type));
        };
        let Some(d) = self.ctx.site.find(id) else {
            return Err(format!("target {id} is not a device of gateway {}", self.ctx.gateway_id));
        };
        let Some(class) = target_class(&d.device_type).filter(|c| spec.targets(c)) else {
            return Err(format!("{} targets {classes}, not target {id} (type {})", spec.command_type, d.device_type));
        };
        let device = DeviceSpec::of(&d).ok_or_else(|| format!("target {id} has no address"))?;
        Ok(Some(Target { device, class }))
    }

    /// A command that failed the protocol checks: `rejected` with the protocol error, once per id
    /// (a redelivery, or an id already handled, is ignored like any duplicate command).
    fn on_invalid_command(&self, id: &str, error: String) -> Result<(), ExecutorError> {
        let journal = lock(&self.journal);
        if !journal.insert(id, "", CommandState::Rejected, self.ctx.boot, crate::clock::now_ms())? {
            log::info!("invalid command {id} delivered again: already handled, not reported twice");
            return Ok(());
        }
        drop(journal);
        log::warn!("command {id} rejected: {error}");
        self.finish(id, Outcome::error(CommandState::Rejected, error))
    }

    fn on_cancel(&self, c: &CommandCancel) -> Result<(), ExecutorError> {
        if let Some(a) = lock(&self.active).get(&c.id) {
            log::info!("command {}: cancel requested", c.id);
            a.cancel_requested.store(true, Ordering::SeqCst);
            return Ok(());
        }
        let now = crate::clock::now_ms();
        let journal = lock(&self.journal);
        if journal.contains(&c.id)? {
            log::info!("cancel of command {}: already finished, nothing to do", c.id);
            return Ok(());
        }
        // Cancelled before it arrived: remember the id so a late delivery never runs it.
        journal.insert(&c.id, "", CommandState::Cancelled, self.ctx.boot, now)?;
        drop(journal);
        log::info!("command {} cancelled before it reached the gateway", c.id);
        self.finish(&c.id, Outcome::error(CommandState::Cancelled, "cancelled before the gateway received it"))
    }

    fn supervise(
        self: Arc<Self>,
        req: CommandRequest,
        spec: &'static CommandSpec,
        params: Value,
        slot: Slot,
        target: Option<Target>,
        active: Arc<Active>,
    ) {
        let id = req.id.clone();
        let outcome = self.execute(req, spec, params, slot, target, &active);
        // The restart hook normally ends the process here.
        let restart = outcome.is_none();
        let result = match outcome {
            Some(o) => self.finish(&id, o),
            None => {
                lock(&self.journal).set_state(&id, RESTARTING, None, None, crate::clock::now_ms()).map_err(ExecutorError::from)
            }
        };
        if let Err(e) = result {
            log::error!("command {id}: {e}");
        }
        lock(&self.active).remove(&id);
        if restart {
            (self.opts.on_restart)();
        }
    }

    /// Runs an accepted command to its outcome; `None` means the agent must restart. The worker
    /// thread owns `slot` and frees it only when the job has really returned, so a job that ignores
    /// its cancel flag keeps counting against the concurrency limit after its outcome is reported.
    fn execute(
        &self,
        req: CommandRequest,
        spec: &'static CommandSpec,
        params: Value,
        slot: Slot,
        target: Option<Target>,
        active: &Active,
    ) -> Option<Outcome> {
        let id = req.id.clone();
        let Some(run) = (self.opts.runner)(spec.command_type) else {
            return Some(Outcome::error(CommandState::Failed, CommandError::Unsupported(spec.command_type).to_string()));
        };
        let now = crate::clock::now_ms();
        if let Err(e) = lock(&self.journal).set_state(&id, CommandState::Running.as_str(), None, None, now) {
            return Some(Outcome::error(CommandState::Failed, e.to_string()));
        }
        if let Err(e) = self.report(&id, &Outcome::state(CommandState::Running)) {
            log::error!("command {id}: {e}");
        }
        AgentMetrics::add(&self.ctx.metrics.commands_run, 1);
        // The request may ask for less time than the registry allows, never more.
        let secs = match req.timeout_secs {
            0 => spec.timeout_secs,
            t => t.min(spec.timeout_secs),
        };
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            ctx: self.ctx.clone(),
            id: id.clone(),
            spec,
            params,
            deadline,
            cancel: Arc::clone(&cancel),
            upload: req.upload,
            issued_ms: req.issued,
            target,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new().name(format!("run-{}", spec.command_type)).spawn(move || {
            let result = run(&job);
            // Freed before the result is handed over: once the outcome is known, the place is free.
            drop(slot);
            let _ = tx.send(result);
        });
        if let Err(e) = worker {
            return Some(Outcome::error(CommandState::Failed, format!("cannot start a thread: {e}")));
        }
        let stop = |state: CommandState, why: String| {
            cancel.store(true, Ordering::SeqCst);
            // Give the job the chance to kill its children before the outcome is final.
            let _ = rx.recv_timeout(WIND_DOWN);
            Outcome::error(state, why)
        };
        let result = loop {
            match rx.recv_timeout(POLL) {
                Ok(r) => break r,
                Err(RecvTimeoutError::Timeout) => {
                    if active.cancel_requested.load(Ordering::SeqCst) {
                        return Some(stop(CommandState::Cancelled, "cancelled while running".into()));
                    }
                    if Instant::now() >= deadline {
                        return Some(stop(CommandState::TimedOut, format!("no result within {secs} s; stopped")));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Some(Outcome::error(CommandState::Failed, "the command ended without a result"));
                }
            }
        };
        Some(match result {
            Ok(Output { result, artifacts }) => {
                Outcome { state: CommandState::Succeeded, result: Some(result), error: None, artifacts }
            }
            Err(CommandError::RestartRequested) => return None,
            Err(CommandError::Stopped) if active.cancel_requested.load(Ordering::SeqCst) => {
                Outcome::error(CommandState::Cancelled, "cancelled while running")
            }
            Err(CommandError::Stopped) => Outcome::error(CommandState::TimedOut, format!("no result within {secs} s; stopped")),
            Err(e) => Outcome::error(CommandState::Failed, e.to_string()),
        })
    }

    /// Records a terminal (or pre-run) outcome in the journal, then queues it.
    fn finish(&self, id: &str, mut outcome: Outcome) -> Result<(), ExecutorError> {
        let encoded_result = outcome.result.as_ref().map(encode);
        if encoded_result.as_ref().is_some_and(|b| b.len() > MAX_UPLINK_BYTES - UPDATE_OVERHEAD) {
            let n = encoded_result.as_ref().map_or(0, Vec::len);
            outcome = Outcome::error(CommandState::Failed, format!("result of {n} bytes is too large for a command update"));
        }
        let blob = outcome.result.as_ref().map(encode);
        lock(&self.journal).set_state(
            id,
            outcome.state.as_str(),
            blob.as_deref(),
            outcome.error.as_deref(),
            crate::clock::now_ms(),
        )?;
        self.report(id, &outcome)
    }

    /// Queues a `CommandUpdate` durably (it reaches the cloud whenever the gateway is online).
    fn report(&self, id: &str, o: &Outcome) -> Result<(), ExecutorError> {
        let mut update = CommandUpdate {
            v: PROTOCOL_VERSION,
            gateway: self.ctx.gateway_id.clone(),
            boot: self.ctx.boot,
            seq: 0,
            ts: crate::clock::now_ms(),
            id: id.to_owned(),
            state: o.state,
            result: o.result.clone(),
            error: o.error.as_deref().map(truncate_error),
            artifacts: (!o.artifacts.is_empty()).then(|| o.artifacts.clone()),
        };
        self.ctx
            .queue
            .enqueue(TopicKind::CommandUpdate, |seq| {
                update.seq = seq;
                encode(&update)
            })
            .map_err(|source| ExecutorError::Queue { id: id.to_owned(), source })?;
        lock(&self.journal).mark_reported(id, o.state)?;
        Ok(())
    }
}

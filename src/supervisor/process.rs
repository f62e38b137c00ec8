//! Running a manifest across processes: the supervisor side (create the rings, start one worker
//! per process group, run its own part, watch the workers) and the worker side.
//!
//! Data flows through shared-memory rings; control flows through ipc-channel. Each worker
//! connects to a one-shot server whose name it finds in `TRIBUTARY_IPC`, says
//! [`ToSupervisor::Hello`] (handing over a sender the supervisor uses for [`ToWorker::Stop`]),
//! reports its counts every 250 ms, and ends with [`ToSupervisor::Done`] or
//! [`ToSupervisor::Failed`]. The supervisor notices a worker's death at once through a pidfd.

use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcOneShotServer, IpcSender};
use serde::{Deserialize, Serialize};

use crate::manifest::build::{build_local, ProcResources};
use crate::manifest::schema::Restart;
use crate::manifest::{self, Manifest};
use crate::pipeline::StopHandle;
use crate::registry::Registry;
use crate::run::Report;
use crate::shm::{Ring, ShmRegion};
use crate::supervisor::plan::Plan;
use crate::supervisor::restart::{Cause, Decision, Failure, Policy, Restarts, SUPERVISOR_GROUP};
use crate::supervisor::signals::{self, SignalEvent};
use crate::RunError;

/// Bytes of each shared-memory ring between two processes.
const RING_BYTES: usize = 4 << 20;
/// The environment variable that tells a worker where its rings' descriptors start.
const ENV_FD_BASE: &str = "TRIBUTARY_FD_BASE";
/// The environment variable that tells a worker the descriptor of the cycle counters.
const ENV_CONTROL_FD: &str = "TRIBUTARY_CONTROL_FD";
/// The environment variable that tells a worker the descriptor of the recovery slots.
const ENV_SLOTS_FD: &str = "TRIBUTARY_SLOTS_FD";
/// The environment variable that tells a worker the name of its control server.
const ENV_IPC: &str = "TRIBUTARY_IPC";
/// The environment variable that makes a worker take checkpoints, every so many milliseconds.
const ENV_CHECKPOINT_MS: &str = "TRIBUTARY_CHECKPOINT_MS";
/// Set for a worker that replaces one that died: it takes over the rings.
const ENV_RESUME: &str = "TRIBUTARY_RESUME";
/// The environment variable that tells a restarted worker the descriptor of its checkpoint.
const ENV_RESTORE_FD: &str = "TRIBUTARY_RESTORE_FD";
/// How often the live status refreshes.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often workers report their counts and heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);

/// A control message from a worker to the supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToSupervisor {
    /// The worker is up; `control` carries the supervisor's messages to it.
    Hello {
        /// The worker's process group.
        group: String,
        /// The worker's process id.
        pid: u32,
        /// Where the supervisor sends [`ToWorker`] messages.
        control: IpcSender<ToWorker>,
    },
    /// Elements produced so far per operator (consumed, for a sink).
    Progress {
        /// Operator name and count.
        counts: Vec<(String, u64)>,
        /// The worker's heartbeat: moves while its runtime thread is free to run tasks.
        heartbeat: u64,
    },
    /// A checkpoint of the worker (see [`crate::checkpoint`]), encoded.
    Checkpoint {
        /// [`crate::checkpoint::Checkpoint::to_bytes`].
        bytes: Vec<u8>,
    },
    /// The worker's part finished (or was stopped) and drained.
    Done {
        /// Its counts, drops, notes.
        report: Report,
    },
    /// An operator of the worker failed; the worker drained what it had accepted.
    Failed {
        /// The operator that failed first.
        operator: String,
        /// Every failure, one per line.
        message: String,
        /// True for a data error (a bad input line), which restarts do not retry.
        data_error: bool,
        /// What the worker produced before it ended.
        report: Report,
    },
}

/// A control message from the supervisor to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Stop gracefully: sources end, what is in flight drains, sinks flush.
    Stop,
}

/// How a manifest run ended, for the exit status.
#[derive(Debug)]
pub enum Outcome {
    /// Every sink flushed; exit 0.
    Success(Report),
    /// Stopped by a signal (or a [`StopHandle`]) and drained; exit 128 + the signal.
    Stopped {
        /// What every process produced until it stopped.
        report: Report,
        /// The signal that stopped the run, if one did.
        signal: Option<i32>,
    },
    /// Something failed; the message says what; exit non-zero.
    Failed {
        /// What failed, naming the operator or the process group.
        message: String,
        /// What was produced before (as much as is known).
        report: Report,
    },
}

fn fail(msg: impl Into<String>) -> Outcome {
    Outcome::Failed {
        message: msg.into(),
        report: Report::default(),
    }
}

/// How `run_manifest_with` runs.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// A handle that stops the run gracefully from outside.
    pub stop: Option<StopHandle>,
    /// Handle SIGINT and SIGTERM (stop gracefully; a second one kills at once).
    pub signals: bool,
    /// Show live per-operator counts on standard error (only if it is a terminal).
    pub live: bool,
    /// The application's custom operator kinds (empty: built-ins only).
    pub registry: Registry,
    /// Fault injection: kill random workers while the run goes on.
    pub chaos: Option<ChaosOptions>,
}

/// Fault injection for testing recovery: SIGKILL a random worker process at random times.
#[derive(Clone, Debug)]
pub struct ChaosOptions {
    /// Seed of the random choices (the same seed makes the same choices).
    pub seed: u64,
    /// How many kills at most over the whole run.
    pub kills: u32,
    /// Mean time between kills (each delay is uniform in [0.5, 1.5] times this).
    pub every: Duration,
    /// How many operators panic (once each, in one of their first batches) in the first attempt.
    pub panics: u32,
}

/// The state of the fault injection of one run (it spans attempts).
struct ChaosState {
    opts: ChaosOptions,
    rng: Mutex<u64>,
    done: std::sync::atomic::AtomicU32,
    /// The planned panics (operator, call), handed out to the first attempt only.
    panics: Mutex<Option<Vec<(String, u64)>>>,
}

impl ChaosState {
    fn new(opts: ChaosOptions) -> Self {
        ChaosState {
            rng: Mutex::new(opts.seed ^ 0x9e37_79b9_7f4a_7c15),
            opts,
            done: Default::default(),
            panics: Mutex::new(None),
        }
    }

    /// Chooses which operators of `m` panic, and at which call.
    fn plan(&self, m: &Manifest) {
        if self.opts.panics == 0 {
            return;
        }
        // Operators with inputs (sources are not restarted in place).
        let with_inputs: Vec<&str> = m
            .operators
            .iter()
            .filter(|o| !o.inputs.is_empty())
            .map(|o| o.name.as_str())
            .collect();
        if with_inputs.is_empty() {
            return;
        }
        let k = with_inputs.len() as u64;
        let list: Vec<(String, u64)> = (0..self.opts.panics)
            .map(|_| {
                let op = with_inputs[(self.next() % k) as usize];
                (op.to_string(), 1 + self.next() % 3)
            })
            .collect();
        for (op, call) in &list {
            tracing::warn!(operator = %op, call, "chaos: this operator will panic");
        }
        *lock(&self.panics) = Some(list);
    }

    /// A pseudo-random number (splitmix64).
    fn next(&self) -> u64 {
        let mut s = lock(&self.rng);
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Kills a worker whose heartbeat has not moved for longer than its group's timeout.
fn watchdog(sh: Arc<Shared>, timeouts: Vec<(String, Duration)>, done: Arc<Done>) {
    while !done.wait(Duration::from_millis(20)) {
        let mut ws = lock(&sh.workers);
        for w in ws.iter_mut() {
            let Some((_, t)) = timeouts.iter().find(|(g, _)| *g == w.group) else {
                continue;
            };
            if w.exit.is_some() || w.control.is_none() || w.hung.is_some() || w.closed {
                continue;
            }
            if w.beat.1.elapsed() > *t {
                let pid = w.child.id();
                tracing::warn!(group = %w.group, pid, timeout = ?t, "no heartbeat: killing the worker");
                w.hung = Some(*t);
                // SAFETY: plain syscall on a child not yet reaped (exit is None under the lock).
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// Kills a random started worker after each random delay until the kills run out or `done`.
fn chaos_loop(sh: Arc<Shared>, c: Arc<ChaosState>, done: Arc<Done>) {
    loop {
        if c.done.load(Ordering::Acquire) >= c.opts.kills {
            return;
        }
        let every = c.opts.every.as_micros().max(1) as u64;
        let delay = Duration::from_micros(every / 2 + c.next() % every);
        if done.wait(delay) {
            return;
        }
        let ws = lock(&sh.workers);
        let live: Vec<usize> = (0..ws.len())
            .filter(|&i| ws[i].exit.is_none() && ws[i].control.is_some())
            .collect();
        if live.is_empty() {
            continue;
        }
        let w = &ws[live[(c.next() % live.len() as u64) as usize]];
        let pid = w.child.id();
        // SAFETY: plain syscall on a child that has not been reaped (exit is None under the lock).
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
            let n = c.done.fetch_add(1, Ordering::AcqRel) + 1;
            tracing::warn!(group = %w.group, pid, kill = n, "chaos: killed the worker with SIGKILL");
        }
    }
}

/// A stop that may come before the run it stops exists.
#[derive(Default)]
struct LateStop {
    requested: AtomicBool,
    handle: Mutex<Option<StopHandle>>,
}

impl LateStop {
    fn stop(&self) {
        self.requested.store(true, Ordering::Release);
        if let Some(h) = lock(&self.handle).as_ref() {
            h.stop();
        }
    }

    fn kill(&self) {
        self.requested.store(true, Ordering::Release);
        if let Some(h) = lock(&self.handle).as_ref() {
            h.kill();
        }
    }

    fn set(&self, h: StopHandle) {
        if self.requested.load(Ordering::Acquire) {
            h.stop();
        }
        *lock(&self.handle) = Some(h);
    }

    fn progress(&self) -> Vec<(String, u64)> {
        lock(&self.handle)
            .as_ref()
            .map(|h| h.progress())
            .unwrap_or_default()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the supervisor knows of one worker.
struct Worker {
    group: String,
    child: Child,
    exit: Option<ExitStatus>,
    control: Option<IpcSender<ToWorker>>,
    progress: Vec<(String, u64)>,
    report: Option<Report>,
    failure: Option<String>,
    /// The failure was a data error (not retried).
    data_error: bool,
    /// The last heartbeat value and when it last moved.
    beat: (u64, Instant),
    /// The watchdog killed it: it made no progress for longer than its heartbeat timeout.
    hung: Option<Duration>,
    /// The control channel is closed (or never opened): no more messages will come.
    closed: bool,
    /// Readable once the process exits.
    pidfd: Option<OwnedFd>,
    /// Killed on purpose to be restarted with another group (a strategy): its end is no failure.
    replaced: bool,
}

/// The supervisor's state, shared by the main thread, the watcher, the control threads and
/// the signal thread.
#[derive(Default)]
struct Shared {
    workers: Mutex<Vec<Worker>>,
    changed: Condvar,
    /// A worker died (or could not be waited for): the attempt failed, everything was killed.
    fatal: Mutex<Option<Failure>>,
    /// A person (a signal) or the embedding application asked the run to stop.
    user_stopped: AtomicBool,
    local: LateStop,
    /// The last checkpoint of each worker group.
    checkpoints: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// Group restarts under way (the watcher waits for them).
    restarting: std::sync::atomic::AtomicUsize,
    /// The restart decision already made about the failure in `fatal` (a group restart that
    /// could not resume falls back to replaying the pipeline, or gave up).
    decided: Mutex<Option<Decision>>,
    /// Every restart of the run, by group.
    restarts: Mutex<Restarts>,
}

impl Shared {
    /// Forgets the previous attempt's workers (all reaped) before the next one starts.
    fn reset(&self) {
        lock(&self.workers).clear();
        *lock(&self.fatal) = None;
        *lock(&self.decided) = None;
        // A replay starts every group afresh: older checkpoints do not apply.
        lock(&self.checkpoints).clear();
        // A stop the last attempt made on its own (after a failure) does not carry over.
        let user = self.stop_requested();
        self.local.requested.store(user, Ordering::Release);
        *lock(&self.local.handle) = None;
    }

    /// Stops the run for good: no restart follows.
    fn user_stop(&self) {
        self.user_stopped.store(true, Ordering::Release);
        self.stop();
    }

    fn stop_requested(&self) -> bool {
        self.user_stopped.load(Ordering::Acquire)
    }

    /// Sleeps up to `d`, waking early when a stop is requested; true if one was.
    fn wait_stop(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop_requested() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
        }
        self.stop_requested()
    }

    /// Stops every part of the run gracefully.
    fn stop(&self) {
        self.local.stop();
        for w in lock(&self.workers).iter() {
            if let (Some(c), None) = (&w.control, w.exit) {
                let _ = c.send(ToWorker::Stop);
            }
            // A worker that has not said hello yet gets `Stop` when it does.
        }
    }

    /// Kills every worker that is still running (callers hold the workers' lock).
    fn kill_locked(&self, workers: &mut [Worker]) {
        for w in workers.iter_mut() {
            kill_group_of(w);
        }
        for w in workers.iter_mut().filter(|w| w.exit.is_none()) {
            let _ = w.child.kill();
        }
    }

    /// Kills every worker and stops the local run at once.
    fn kill(&self) {
        let mut ws = lock(&self.workers);
        self.kill_locked(&mut ws);
        drop(ws);
        self.local.kill();
    }

    fn worker_progress(&self) -> Vec<(String, u64)> {
        lock(&self.workers)
            .iter()
            .flat_map(|w| w.progress.iter().cloned())
            .collect()
    }
}

/// Runs a validated manifest: the supervisor's own operators here, each process group in a
/// worker process, all joined by shared-memory rings. `stop` stops it gracefully.
pub fn run_manifest(m: &Manifest, stop: Option<StopHandle>) -> Outcome {
    run_manifest_with(
        m,
        &RunOptions {
            stop,
            ..RunOptions::default()
        },
    )
}

/// Runs a validated manifest with options (signals, live status, chaos).
///
/// Call it from the main thread (or one that outlives the run): workers die with the thread
/// that started them (PR_SET_PDEATHSIG).
///
/// A failure that the restart policy of its group allows to retry replays the whole pipeline
/// from its sources, after the policy's backoff: files are written again from the start, and
/// sinks that cannot rewind (standard output, commands) skip what they already wrote, so a
/// deterministic pipeline ends with the outputs of a run without failures.
pub fn run_manifest_with(m: &Manifest, opts: &RunOptions) -> Outcome {
    let plan = Plan::new(m);
    let started = Instant::now();
    let shared = Arc::new(Shared::default());
    // Live status only on a terminal: never in tests, CI or pipes.
    let live = opts.live && std::io::stderr().is_terminal();
    if opts.signals {
        let sh = shared.clone();
        let installed = signals::install(move |ev| match ev {
            SignalEvent::Stop(_) => sh.user_stop(),
            SignalEvent::Kill(sig) => {
                sh.kill();
                if live {
                    eprint!("\r\x1b[K");
                }
                eprintln!("error: stopped at once by a second signal; outputs may be incomplete");
                std::process::exit(signals::exit_status(sig) as i32);
            }
        });
        if let Err(e) = installed {
            return fail(format!("cannot install the signal handlers: {e}"));
        }
    }
    if let Some(s) = opts.stop.clone() {
        // Forward an outside stop to every part of the run.
        let sh = shared.clone();
        std::thread::spawn(move || {
            while !s.is_stopped() {
                std::thread::sleep(Duration::from_millis(20));
            }
            sh.user_stop();
        });
    }
    // Groups pinned to CPUs this machine (or this process) does not offer fail before anything
    // starts.
    for g in &m.groups {
        if let Some(cpus) = &g.cpus {
            if let Err(e) = crate::affinity::for_group(&g.name, cpus) {
                return fail(e);
            }
        }
    }
    // What survives restarts: one slot per operator (sinks' written counts, sources' clocks).
    let slots = match ShmRegion::create("tributary-slots", m.operators.len().max(1) * 8) {
        Ok(r) => Arc::new(r),
        Err(e) => return fail(format!("cannot create the recovery slots: {e}")),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return fail(format!(
                "cannot find this program's executable to start workers: {e}"
            ))
        }
    };
    let live_done = Arc::new(Done::default());
    let live = live.then(|| {
        let sh = shared.clone();
        let done = live_done.clone();
        std::thread::spawn(move || live_status(sh, done))
    });
    let chaos = opts.chaos.clone().map(|c| Arc::new(ChaosState::new(c)));
    if let Some(c) = &chaos {
        c.plan(m);
    }
    // A source that cannot replay its input makes a restart unable to repeat the run.
    let no_replay = m
        .operators
        .iter()
        .find(|o| matches!(o.kind.as_str(), "source.stdin" | "source.exec"));
    let mut recovering: Option<(String, Instant)> = None;
    let outcome = loop {
        let ctx = AttemptCtx {
            m,
            plan: &plan,
            opts,
            shared: &shared,
            slots: &slots,
            exe: &exe,
            chaos: chaos.clone(),
        };
        let (outcome, failure) = run_attempt(&ctx, &mut recovering);
        let Some(failure) = failure else {
            break outcome;
        };
        if shared.stop_requested() {
            break outcome;
        }
        let policy = Policy::for_group(m, &failure.group);
        let decided = lock(&shared.decided).take();
        let decision = match decided {
            Some(d) => d,
            None if no_replay.is_some() => Decision::Restart(Duration::ZERO),
            None => lock(&shared.restarts).decide(&failure, &policy, Instant::now()),
        };
        let decision = match (decision, no_replay) {
            (Decision::Restart(_), Some(src))
                if policy.restart != Restart::Temporary && failure.cause != Cause::DataError =>
            {
                Decision::GiveUp(format!(
                    "{}\nnot restarted: source \"{}\" ({}) cannot replay its input",
                    failure.message, src.name, src.kind
                ))
            }
            (Decision::Restart(_), Some(_)) => {
                lock(&shared.restarts).decide(&failure, &policy, Instant::now())
            }
            (d, _) => d,
        };
        match decision {
            Decision::Restart(delay) => {
                tracing::warn!(
                    group = %failure.group,
                    cause = failure.cause.label(),
                    delay_ms = delay.as_millis() as u64,
                    "{}; restarting the pipeline from its sources",
                    failure.message.lines().next().unwrap_or_default()
                );
                recovering = Some((failure.group.clone(), Instant::now()));
                if shared.wait_stop(delay) {
                    break outcome;
                }
            }
            Decision::Ignore => break outcome,
            Decision::GiveUp(message) => {
                let report = match outcome {
                    Outcome::Failed { report, .. }
                    | Outcome::Success(report)
                    | Outcome::Stopped { report, .. } => report,
                };
                break Outcome::Failed { message, report };
            }
        }
    };
    live_done.set();
    if let Some(l) = live {
        let _ = l.join();
    }
    let lines = lock(&shared.restarts).summary_lines();
    let with_restarts = |mut r: Report| {
        r.restarts.splice(0..0, lines.iter().cloned());
        r.wall = started.elapsed();
        r
    };
    match outcome {
        Outcome::Success(r) => Outcome::Success(with_restarts(r)),
        Outcome::Stopped { report, signal } => Outcome::Stopped {
            report: with_restarts(report),
            signal,
        },
        Outcome::Failed { message, report } => Outcome::Failed {
            message,
            report: with_restarts(report),
        },
    }
}

/// What every attempt of a run shares.
struct AttemptCtx<'a> {
    m: &'a Manifest,
    plan: &'a Plan,
    opts: &'a RunOptions,
    shared: &'a Arc<Shared>,
    slots: &'a Arc<ShmRegion>,
    exe: &'a Path,
    chaos: Option<Arc<ChaosState>>,
}

/// One attempt of the run: rings, workers and the local part, from the sources to the sinks.
/// Returns how it ended and, if it failed, the failure the restart policy decides about.
fn run_attempt(
    ctx: &AttemptCtx,
    recovering: &mut Option<(String, Instant)>,
) -> (Outcome, Option<Failure>) {
    let AttemptCtx {
        m,
        plan,
        opts,
        shared,
        slots,
        exe,
        ..
    } = *ctx;
    let started = Instant::now();
    shared.reset();
    let fail = |msg: String| (fail(msg), None);
    // Shared memory: one ring per link that crosses processes, one counter per cycle spanning them.
    let mut rings = Vec::with_capacity(plan.rings.len());
    for r in &plan.rings {
        match Ring::create_region(RING_BYTES) {
            Ok(reg) => rings.push(reg),
            Err(e) => {
                return fail(format!(
                    "cannot create the ring for stream \"{}\": {e}",
                    r.stream
                ))
            }
        }
    }
    let control = if plan.spanning.is_empty() {
        None
    } else {
        match ShmRegion::create("tributary-cycles", plan.spanning.len() * 8) {
            Ok(reg) => {
                for (i, c) in plan.spanning.iter().enumerate() {
                    // SAFETY: the region holds one aligned i64 per spanning cycle.
                    let a = unsafe { &*(reg.as_ptr() as *const AtomicI64).add(i) };
                    a.store(c.initial, std::sync::atomic::Ordering::Release);
                }
                Some(Arc::new(reg))
            }
            Err(e) => return fail(format!("cannot create the cycle counters: {e}")),
        }
    };
    // Workers: the same executable in the worker role, one per process group.
    let fd_base = rings
        .iter()
        .map(|r| r.fd().as_raw_fd())
        .chain(control.iter().map(|c| c.fd().as_raw_fd()))
        .chain(std::iter::once(slots.fd().as_raw_fd()))
        .max()
        .unwrap_or(2)
        + 4;
    // Planned panics go to the first attempt only: to this process's operators here, and to
    // each worker's through its environment.
    let panics = ctx
        .chaos
        .as_ref()
        .and_then(|c| lock(&c.panics).take())
        .unwrap_or_default();
    for (op, call) in &panics {
        if m.operators
            .iter()
            .position(|o| &o.name == op)
            .is_some_and(|i| plan.op_proc[i] == 0)
        {
            crate::recovery::plan_panic(op, *call);
        }
    }
    // This process's own ends of its rings (the spawner keeps every ring for restarts).
    let mut own = Vec::with_capacity(rings.len());
    for (ri, reg) in rings.iter().enumerate() {
        let r = &plan.rings[ri];
        if plan.op_proc[r.producer] == 0 || plan.op_proc[r.consumer] == 0 {
            match reg.inheritable_fd().and_then(ShmRegion::from_fd) {
                Ok(x) => own.push(Some(x)),
                Err(e) => return fail(format!("ring for stream \"{}\": {e}", r.stream)),
            }
        } else {
            own.push(None);
        }
    }
    let spawner = Arc::new(Spawner {
        m: m.clone(),
        plan: plan.clone(),
        exe: exe.to_path_buf(),
        fd_base,
        rings,
        control: control.clone(),
        slots: slots.clone(),
        checkpoint_ms: (0..plan.procs.len())
            .map(|p| resumable(m, plan, p).ok().map(|_| checkpoint_every_ms()))
            .collect(),
        panics,
    });
    for p in 1..plan.procs.len() {
        if let Err(e) = spawner.spawn(shared, p, None, false) {
            shared.kill();
            return fail(e);
        }
    }
    let mut res = ProcResources {
        rings: own,
        control,
        slots: Some(slots.clone()),
        checkpoints: None,
    };
    let part = match build_local(m, plan, 0, &mut res, &opts.registry) {
        Ok(p) => p,
        Err(e) => {
            shared.kill();
            return fail(e.to_string());
        }
    };
    shared.local.set(part.graph.stop_handle());
    // Groups whose clean shutdown (a signal sent to them alone) is not restarted.
    let ignore_shutdown: Vec<String> = m
        .groups
        .iter()
        .filter(|g| g.restart != Restart::Permanent)
        .map(|g| g.name.clone())
        .collect();
    // Groups that restart alone from their checkpoints, and the thread that restarts them.
    let resumable_groups: Vec<String> = (1..plan.procs.len())
        .filter(|&p| spawner.checkpoint_ms[p].is_some())
        .map(|p| plan.procs[p].clone())
        .collect();
    let (restart_tx, restart_rx) = std::sync::mpsc::channel();
    let restarter = {
        let sh = shared.clone();
        let sp = spawner.clone();
        std::thread::Builder::new()
            .name("tributary-restart".into())
            .spawn(move || restarter(sh, sp, restart_rx))
    };
    let watcher = {
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("tributary-watch".into())
            .spawn(move || watch(sh, ignore_shutdown, resumable_groups, restart_tx))
    };
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            shared.kill();
            return fail(format!("cannot start the thread that watches workers: {e}"));
        }
    };
    let attempt_done = Arc::new(Done::default());
    let chaos = ctx.chaos.clone().map(|c| {
        let sh = shared.clone();
        let done = attempt_done.clone();
        std::thread::spawn(move || chaos_loop(sh, c, done))
    });
    let timeouts: Vec<(String, Duration)> = m
        .groups
        .iter()
        .filter_map(|g| g.heartbeat_timeout.map(|t| (g.name.clone(), t)))
        .collect();
    let watchdog = (!timeouts.is_empty()).then(|| {
        let sh = shared.clone();
        let done = attempt_done.clone();
        std::thread::spawn(move || watchdog(sh, timeouts, done))
    });
    let recovery = recovering.take().map(|(group, since)| {
        // The restarted pipeline counts as recovered once every worker said hello.
        let sh = shared.clone();
        let done = attempt_done.clone();
        std::thread::spawn(move || {
            while !done.wait(Duration::from_millis(1)) {
                if lock(&sh.workers).iter().all(|w| w.control.is_some()) {
                    return Some((group, since.elapsed()));
                }
            }
            None
        })
    });
    let result = part.graph.run();
    if matches!(result, Err(RunError::Failed(..))) {
        // An operator failed here: the workers' sources stop too, so everything drains.
        shared.stop();
    }
    let mut errors = vec![];
    for r in part.relays {
        // A relay to a worker that died never ends: give up on it then.
        while !r.is_finished() && lock(&shared.fatal).is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if r.is_finished() {
            match r.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push("a link thread panicked".into()),
            }
        }
    }
    let _ = watcher.join();
    if let Ok(r) = restarter {
        let _ = r.join();
    }
    attempt_done.set();
    // What the workers started themselves (commands of exec nodes) ends with the attempt.
    for w in lock(&shared.workers).iter_mut() {
        kill_group_of(w);
    }
    if let Some(c) = chaos {
        let _ = c.join();
    }
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    if let Some(Ok(Some((group, took)))) = recovery.map(|h| h.join()) {
        tracing::info!(group = %group, ms = took.as_millis() as u64, "recovered");
        lock(&shared.restarts).recovered(&group, took);
    }
    let fatal = lock(&shared.fatal).clone();
    // Give each control channel a moment to deliver the worker's last report.
    {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut ws = lock(&shared.workers);
        while ws.iter().any(|w| !w.closed) && Instant::now() < deadline {
            ws = shared
                .changed
                .wait_timeout(ws, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    // One report for the whole run.
    let mut parts = vec![];
    let mut failure = None;
    match result {
        Ok(r) => parts.push(r),
        Err(RunError::Stopped(r)) => parts.push(*r),
        Err(RunError::Failed(f, r)) => {
            parts.push(*r);
            if let Some(first) = f.first() {
                let group = m
                    .operators
                    .iter()
                    .find(|o| o.name == first.operator)
                    .and_then(|o| o.group.clone())
                    .unwrap_or_else(|| SUPERVISOR_GROUP.to_string());
                failure = Some(Failure {
                    group,
                    cause: if first.error.data_error {
                        Cause::DataError
                    } else {
                        Cause::OperatorFailed
                    },
                    message: first.to_string(),
                });
            }
            errors.extend(f.iter().map(|x| x.to_string()));
        }
        Err(e) => errors.push(e.to_string()),
    }
    for w in lock(&shared.workers).iter() {
        if let Some(r) = &w.report {
            parts.push(r.clone());
        } else {
            // It died: its last counts are the best that is known.
            parts.push(Report {
                streams: w
                    .progress
                    .iter()
                    .filter(|(op, _)| {
                        m.operators
                            .iter()
                            .any(|o| &o.name == op && o.outputs.len() == 1)
                    })
                    .cloned()
                    .collect(),
                ..Report::default()
            });
        }
        if let Some(f) = &w.failure {
            errors.push(f.clone());
            if failure.is_none() {
                failure = Some(Failure {
                    group: w.group.clone(),
                    cause: if w.data_error {
                        Cause::DataError
                    } else {
                        Cause::OperatorFailed
                    },
                    message: f.clone(),
                });
            }
        }
    }
    let mut report = crate::supervisor::merge(m, &parts);
    report.wall = started.elapsed();
    if let Some(f) = fatal {
        let message = f.message.clone();
        return (Outcome::Failed { message, report }, Some(f));
    }
    if !errors.is_empty() {
        return (
            Outcome::Failed {
                message: errors.join("\n"),
                report,
            },
            failure,
        );
    }
    let stopped = shared.stop_requested();
    if stopped {
        return (
            Outcome::Stopped {
                report,
                signal: signals::received(),
            },
            None,
        );
    }
    (Outcome::Success(report), None)
}

/// How often workers take checkpoints by default (`TRIBUTARY_CHECKPOINT_MS` overrides it;
/// 0 turns them off, and with them restarts of one group alone).
const CHECKPOINT_EVERY_MS: u64 = 100;

fn checkpoint_every_ms() -> u64 {
    std::env::var("TRIBUTARY_CHECKPOINT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CHECKPOINT_EVERY_MS)
}

/// Whether process `p` can be restarted alone from its checkpoints; if not, why (then a
/// failure there replays the whole pipeline from its sources).
fn resumable(m: &Manifest, plan: &Plan, p: usize) -> Result<(), String> {
    if p == 0 {
        return Err("the supervisor's own operators are not a worker".into());
    }
    if checkpoint_every_ms() == 0 {
        return Err("checkpoints are off".into());
    }
    let ops: Vec<usize> = (0..m.operators.len())
        .filter(|&i| plan.op_proc[i] == p)
        .collect();
    if let Some(&i) = ops
        .iter()
        .find(|&&i| matches!(m.operators[i].kind.as_str(), "source.stdin" | "source.exec"))
    {
        return Err(format!(
            "source \"{}\" ({}) cannot replay its input",
            m.operators[i].name, m.operators[i].kind
        ));
    }
    // Feedback cycles keep counts of what is in flight that a checkpoint does not hold.
    let on_cycle = |i: usize| {
        let mut seen = vec![false; m.operators.len()];
        let mut stack: Vec<usize> = plan.feeds[i].clone();
        while let Some(x) = stack.pop() {
            if x == i {
                return true;
            }
            if !std::mem::replace(&mut seen[x], true) {
                stack.extend(plan.feeds[x].iter().copied());
            }
        }
        false
    };
    if let Some(&i) = ops.iter().find(|&&i| on_cycle(i)) {
        return Err(format!(
            "operator \"{}\" is on a feedback cycle",
            m.operators[i].name
        ));
    }
    Ok(())
}

/// Starts worker processes: at the start of an attempt, and again when a group is restarted
/// from its checkpoint.
struct Spawner {
    m: Manifest,
    plan: Plan,
    exe: std::path::PathBuf,
    /// Where the rings' descriptors start in a worker (the three below it: cycle counters,
    /// recovery slots, checkpoint).
    fd_base: i32,
    /// Every ring of the attempt (workers come and go; the rings stay).
    rings: Vec<ShmRegion>,
    control: Option<Arc<ShmRegion>>,
    slots: Arc<ShmRegion>,
    /// For each process: how often it checkpoints (None: it does not; it cannot resume).
    checkpoint_ms: Vec<Option<u64>>,
    /// Planned panics (fault injection), for the first start of each worker.
    panics: Vec<(String, u64)>,
}

impl Spawner {
    /// Starts the worker of process `p`. `replace`: the index of the worker it replaces (a
    /// restart: it resumes from `shared`'s checkpoint of its group). Returns its index.
    fn spawn(
        &self,
        shared: &Arc<Shared>,
        p: usize,
        replace: Option<usize>,
        panics_too: bool,
    ) -> Result<usize, String> {
        let (m, plan) = (&self.m, &self.plan);
        let name = &plan.procs[p];
        let (server, server_name) = IpcOneShotServer::<ToSupervisor>::new()
            .map_err(|e| format!("cannot create the control channel of group \"{name}\": {e}"))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("__worker")
            .arg(&m.path)
            .arg(name)
            .env(ENV_FD_BASE, self.fd_base.to_string())
            .env(ENV_IPC, &server_name)
            .stdin(
                // The worker hosting `source.stdin` reads the supervisor's standard input.
                if (0..m.operators.len())
                    .any(|i| plan.op_proc[i] == p && m.operators[i].kind == "source.stdin")
                {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                },
            );
        // The checkpoint goes first: its descriptor may have a number a ring is moved to.
        let mut restore = None;
        if let Some(ms) = self.checkpoint_ms[p] {
            cmd.env(ENV_CHECKPOINT_MS, ms.to_string());
            if replace.is_some() {
                cmd.env(ENV_RESUME, "1");
                if let Some(bytes) = lock(&shared.checkpoints).get(name) {
                    let region = write_checkpoint(bytes)?;
                    region.pass_to_child(&mut cmd, self.fd_base - 3);
                    cmd.env(ENV_RESTORE_FD, (self.fd_base - 3).to_string());
                    restore = Some(region);
                }
            }
        }
        if let Some(c) = &self.control {
            c.pass_to_child(&mut cmd, self.fd_base - 1);
            cmd.env(ENV_CONTROL_FD, (self.fd_base - 1).to_string());
        }
        let mine: Vec<String> = self
            .panics
            .iter()
            .filter(|_| panics_too || replace.is_none())
            .filter(|(op, _)| {
                m.operators
                    .iter()
                    .position(|o| &o.name == op)
                    .is_some_and(|i| plan.op_proc[i] == p)
            })
            .map(|(op, call)| format!("{op}:{call}"))
            .collect();
        if !mine.is_empty() {
            cmd.env(crate::recovery::ENV_CHAOS_PANICS, mine.join(";"));
        }
        self.slots.pass_to_child(&mut cmd, self.fd_base - 2);
        cmd.env(ENV_SLOTS_FD, (self.fd_base - 2).to_string());
        for (ri, r) in plan.rings.iter().enumerate() {
            if plan.op_proc[r.producer] == p || plan.op_proc[r.consumer] == p {
                self.rings[ri].pass_to_child(&mut cmd, self.fd_base + ri as i32);
            }
        }
        // Each worker leads a process group of its own, with the commands it starts, which the
        // supervisor kills when the worker ends (a terminal's Ctrl-C reaches only the
        // supervisor, which stops them in order).
        cmd.process_group(0);
        die_with_parent(&mut cmd);
        if let Some(cpus) = m
            .groups
            .iter()
            .find(|g| &g.name == name)
            .and_then(|g| g.cpus.as_ref())
        {
            let set = crate::affinity::for_group(name, cpus)?;
            // SAFETY: applying the set is one system call, and allocates nothing.
            unsafe { cmd.pre_exec(move || set.apply()) };
        }
        let mut ws = lock(&shared.workers);
        if let Some(old) = replace.and_then(|i| ws.get_mut(i)) {
            // What the worker it replaces started dies with it.
            kill_group_of(old);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the worker of group \"{name}\": {e}"))?;
        drop(restore);
        let worker = Worker {
            group: name.clone(),
            pidfd: pidfd_open(child.id()).ok(),
            child,
            exit: None,
            control: None,
            progress: vec![],
            report: None,
            failure: None,
            data_error: false,
            beat: (0, Instant::now()),
            hung: None,
            closed: false,
            replaced: false,
        };
        let index = match replace {
            Some(i) => {
                ws[i] = worker;
                i
            }
            None => {
                ws.push(worker);
                ws.len() - 1
            }
        };
        drop(ws);
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(format!("control:{name}"))
            .spawn(move || serve_worker(sh, index, server))
            .map_err(|e| format!("cannot start the control thread of group \"{name}\": {e}"))?;
        Ok(index)
    }
}

/// Kills the process group that worker `w` leads: its leftovers (commands of exec nodes), or
/// the worker itself while it runs.
fn kill_group_of(w: &mut Worker) {
    // SAFETY: plain syscall; the group id is the worker's pid, which leads its own group.
    unsafe { libc::killpg(w.child.id() as libc::pid_t, libc::SIGKILL) };
}

/// Restarts groups whose worker died, from their checkpoints, per their policy and the
/// supervisor's strategy; runs until the watcher hangs up.
fn restarter(
    sh: Arc<Shared>,
    spawner: Arc<Spawner>,
    rx: std::sync::mpsc::Receiver<(usize, Failure)>,
) {
    while let Ok((index, f)) = rx.recv() {
        restart_group(&sh, &spawner, index, f);
        sh.restarting.fetch_sub(1, Ordering::AcqRel);
        sh.changed.notify_all();
    }
}

/// Gives up on the attempt: `f` becomes its failure (everything is killed), with `decision`
/// already made about it.
fn end_attempt(sh: &Shared, f: Failure, decision: Decision) {
    *lock(&sh.decided) = Some(decision);
    let mut ws = lock(&sh.workers);
    sh.kill_locked(&mut ws);
    *lock(&sh.fatal) = Some(f);
    drop(ws);
    sh.local.kill();
}

/// Waits until worker `i` has exited and its control channel is drained (its last
/// checkpoint is in), at most `d`.
fn wait_gone(sh: &Shared, i: usize, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    let mut ws = lock(&sh.workers);
    while !(ws[i].exit.is_some() && ws[i].closed) {
        if Instant::now() > deadline {
            return false;
        }
        ws = sh
            .changed
            .wait_timeout(ws, Duration::from_millis(10))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

fn restart_group(sh: &Arc<Shared>, sp: &Spawner, index: usize, f: Failure) {
    let (m, plan) = (&sp.m, &sp.plan);
    let since = Instant::now();
    wait_gone(sh, index, Duration::from_secs(2));
    let policy = Policy::for_group(m, &f.group);
    let decision = lock(&sh.restarts).decide(&f, &policy, Instant::now());
    let delay = match decision {
        Decision::Restart(d) => d,
        Decision::Ignore => {
            // A transient or temporary group shut down cleanly: its streams end where they are.
            return;
        }
        Decision::GiveUp(msg) => {
            let failure = Failure {
                message: msg.clone(),
                ..f
            };
            end_attempt(sh, failure, Decision::GiveUp(msg));
            return;
        }
    };
    // Which groups restart with it (OTP strategies, over groups in file order).
    let p = plan.proc_index(&f.group).unwrap_or(0);
    let set: Vec<usize> = match m.supervisor.strategy {
        crate::manifest::schema::Strategy::OneForOne => vec![p],
        crate::manifest::schema::Strategy::RestForOne => (p..plan.procs.len()).collect(),
        crate::manifest::schema::Strategy::OneForAll => (1..plan.procs.len()).collect(),
    };
    tracing::warn!(
        group = %f.group,
        cause = f.cause.label(),
        delay_ms = delay.as_millis() as u64,
        restarting = %set.iter().map(|&q| plan.procs[q].as_str()).collect::<Vec<_>>().join(","),
        "{}; restarting from the last checkpoint",
        f.message.lines().next().unwrap_or_default()
    );
    if sh.wait_stop(delay) {
        sh.kill();
        return;
    }
    // The others of the set stop now (their ends are no failures).
    let mut others = vec![];
    {
        let mut ws = lock(&sh.workers);
        for &q in &set {
            if let Some(i) = ws.iter().position(|w| w.group == plan.procs[q]) {
                if i != index && ws[i].exit.is_none() {
                    ws[i].replaced = true;
                    // SAFETY: plain syscall on a child not yet reaped (exit is None under the lock).
                    unsafe { libc::kill(ws[i].child.id() as libc::pid_t, libc::SIGKILL) };
                }
                others.push((q, i));
            }
        }
    }
    for &(_, i) in &others {
        wait_gone(sh, i, Duration::from_secs(2));
    }
    // A restarted producer resumes after the last frame it finished; one it died inside
    // (a frame larger than its ring, written in pieces) may be partly read already.
    for (ri, r) in plan.rings.iter().enumerate() {
        if set.contains(&plan.op_proc[r.producer])
            && Ring::state(&sp.rings[ri]).map_or(true, |st| st.partial)
        {
            let f = Failure {
                message: format!(
                    "{}; group \"{}\" died inside a frame of stream \"{}\": replaying the pipeline",
                    f.message, plan.procs[plan.op_proc[r.producer]], r.stream
                ),
                ..f.clone()
            };
            end_attempt(sh, f, Decision::Restart(Duration::ZERO));
            return;
        }
    }
    // Can each resume? Its input rings must still hold what its checkpoint read up to.
    let cps = lock(&sh.checkpoints).clone();
    for &(q, _) in &others {
        let cp = match cps
            .get(&plan.procs[q])
            .map(|b| crate::checkpoint::Checkpoint::from_bytes(b))
        {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                let f = Failure {
                    message: format!("{}; {e}", f.message),
                    ..f.clone()
                };
                end_attempt(sh, f, Decision::Restart(Duration::ZERO));
                return;
            }
            None => None,
        };
        for (ri, r) in plan.rings.iter().enumerate() {
            if plan.op_proc[r.consumer] != q {
                continue;
            }
            let pos = cp.as_ref().and_then(|c| c.input(ri)).map_or(0, |i| i.pos);
            let state = Ring::state(&sp.rings[ri]);
            if !state.as_ref().is_ok_and(|st| st.committed <= pos) {
                let f = Failure {
                    message: format!(
                        "{}; stream \"{}\" no longer holds what group \"{}\" must read again: replaying the pipeline",
                        f.message, r.stream, plan.procs[q]
                    ),
                    ..f.clone()
                };
                end_attempt(sh, f, Decision::Restart(Duration::ZERO));
                return;
            }
        }
    }
    if sh.stop_requested() {
        sh.kill();
        return;
    }
    let mut started = vec![];
    for &(q, i) in &others {
        match sp.spawn(sh, q, Some(i), false) {
            Ok(i) => started.push((plan.procs[q].clone(), i)),
            Err(e) => {
                let f = Failure {
                    message: e.clone(),
                    ..f.clone()
                };
                end_attempt(sh, f, Decision::GiveUp(e));
                return;
            }
        }
    }
    // Recovered once every restarted worker said hello.
    while !sh.stop_requested() && lock(&sh.fatal).is_none() {
        let ws = lock(&sh.workers);
        if started
            .iter()
            .all(|(_, i)| ws[*i].control.is_some() || ws[*i].exit.is_some())
        {
            break;
        }
        drop(ws);
        std::thread::sleep(Duration::from_micros(500));
    }
    let took = since.elapsed();
    tracing::info!(group = %f.group, ms = took.as_millis() as u64, "recovered");
    lock(&sh.restarts).recovered(&f.group, took);
}

/// Accepts worker `index`'s control connection and handles its messages until it closes.
fn serve_worker(sh: Arc<Shared>, index: usize, server: IpcOneShotServer<ToSupervisor>) {
    if let Ok((rx, first)) = server.accept() {
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            handle_message(&sh, index, m);
            msg = rx.recv().ok();
        }
    }
    lock(&sh.workers)[index].closed = true;
    sh.changed.notify_all();
}

fn handle_message(sh: &Shared, index: usize, m: ToSupervisor) {
    let failed = matches!(m, ToSupervisor::Failed { .. });
    record_message(sh, index, m);
    if failed {
        // Like a local failure: every source stops, so the pipeline drains and ends.
        sh.stop();
    }
}

fn record_message(sh: &Shared, index: usize, m: ToSupervisor) {
    let mut ws = lock(&sh.workers);
    let w = &mut ws[index];
    match m {
        ToSupervisor::Hello {
            group,
            pid,
            control,
        } => {
            tracing::debug!(group = %group, pid, "worker started");
            if sh.local.requested.load(Ordering::Acquire) {
                let _ = control.send(ToWorker::Stop);
            }
            w.control = Some(control);
            w.beat = (0, Instant::now());
        }
        ToSupervisor::Progress { counts, heartbeat } => {
            w.progress = counts;
            if heartbeat != w.beat.0 {
                w.beat = (heartbeat, Instant::now());
            }
        }
        ToSupervisor::Checkpoint { bytes } => {
            let group = w.group.clone();
            drop(ws);
            lock(&sh.checkpoints).insert(group, bytes);
        }
        ToSupervisor::Done { report } => w.report = Some(report),
        ToSupervisor::Failed {
            operator,
            message,
            data_error,
            report,
        } => {
            tracing::debug!(group = %w.group, operator = %operator, data_error, "worker failed");
            w.report = Some(report);
            w.failure = Some(message);
            w.data_error = data_error;
        }
    }
}

/// Opens a pidfd for `pid`: readable once the process exits.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn describe(group: &str, pid: u32, status: ExitStatus) -> String {
    match status.signal() {
        Some(sig) => {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {sig}"));
            format!("process group \"{group}\" (pid {pid}) was killed by {name}")
        }
        None => format!(
            "process group \"{group}\" (pid {pid}) exited with status {}",
            status.code().unwrap_or(-1)
        ),
    }
}

/// Waits for every worker, woken by their pidfds the moment one exits. A worker that dies
/// (a signal, a status other than 0 and 1) kills the others and stops the local run; one
/// that exits 1 (an operator failed there, after draining) lets the others finish.
fn watch(
    sh: Arc<Shared>,
    ignore_shutdown: Vec<String>,
    resumable: Vec<String>,
    restart: std::sync::mpsc::Sender<(usize, Failure)>,
) {
    loop {
        let (live, fds, all_fds) = {
            let ws = lock(&sh.workers);
            let live: Vec<usize> = (0..ws.len()).filter(|&i| ws[i].exit.is_none()).collect();
            let fds: Vec<i32> = live
                .iter()
                .filter_map(|&i| ws[i].pidfd.as_ref().map(|f| f.as_raw_fd()))
                .collect();
            let all = fds.len() == live.len();
            (live, fds, all)
        };
        if live.is_empty() {
            if sh.restarting.load(Ordering::Acquire) == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            // SAFETY: these pidfds belong to workers not yet reaped; only this thread reaps
            // them, and a worker's entry (and pidfd) is replaced only after it was reaped.
            let borrowed: Vec<std::os::fd::BorrowedFd<'_>> = fds
                .iter()
                .map(|&fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
                .collect();
            let mut pfds: Vec<PollFd> = borrowed
                .iter()
                .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
                .collect();
            // Without pidfds (an old kernel), fall back to polling every 20 ms; while a group
            // restarts, new workers join the watch within 20 ms.
            let restarting = sh.restarting.load(Ordering::Acquire) > 0;
            let timeout = if all_fds && !restarting { 1000u16 } else { 20 };
            let _ = poll(&mut pfds, PollTimeout::from(timeout));
        }
        let mut ws = lock(&sh.workers);
        let mut fatal = None;
        let mut exited_one = vec![];
        for &i in &live {
            let w = &mut ws[i];
            if w.exit.is_some() {
                continue;
            }
            match w.child.try_wait() {
                Ok(Some(status)) => {
                    w.exit = Some(status);
                    let pid = w.child.id();
                    tracing::debug!(group = %w.group, pid, %status, "worker exited");
                    if w.replaced {
                        // Killed to restart with another group: not a failure.
                        continue;
                    }
                    // A worker stopped by a signal sent to it alone drained and ended its
                    // streams: that is handled below, like a worker that exits 1.
                    if resumable.contains(&w.group)
                        && !matches!(status.code(), Some(1) | Some(130) | Some(143))
                        && !status.success()
                        && !sh.stop_requested()
                        && lock(&sh.fatal).is_none()
                    {
                        let f = match w.hung {
                            Some(t) => Failure {
                                group: w.group.clone(),
                                cause: Cause::Hung,
                                message: format!(
                                    "process group \"{}\" (pid {pid}) made no progress for {t:?} (heartbeat_timeout) and was killed",
                                    w.group
                                ),
                            },
                            None => Failure {
                                group: w.group.clone(),
                                cause: Cause::Crashed,
                                message: describe(&w.group, pid, status),
                            },
                        };
                        sh.restarting.fetch_add(1, Ordering::AcqRel);
                        if restart.send((i, f)).is_err() {
                            sh.restarting.fetch_sub(1, Ordering::AcqRel);
                        }
                        continue;
                    }
                    // Stopped cleanly by a signal sent to it alone (not by the supervisor).
                    let shutdown =
                        matches!(status.code(), Some(130) | Some(143)) && !sh.stop_requested();
                    if status.code() == Some(1) {
                        exited_one.push(i);
                    } else if shutdown && ignore_shutdown.contains(&w.group) {
                        tracing::info!(group = %w.group, pid, "the worker was shut down by a signal; not restarted (its policy is not permanent)");
                    } else if let (Some(t), None) = (w.hung, &fatal) {
                        fatal = Some(Failure {
                            group: w.group.clone(),
                            cause: Cause::Hung,
                            message: format!(
                                "process group \"{}\" (pid {pid}) made no progress for {t:?} (heartbeat_timeout) and was killed",
                                w.group
                            ),
                        });
                    } else if !status.success() && fatal.is_none() {
                        fatal = Some(Failure {
                            group: w.group.clone(),
                            cause: if shutdown {
                                Cause::Shutdown
                            } else {
                                Cause::Crashed
                            },
                            message: describe(&w.group, pid, status),
                        });
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    fatal.get_or_insert_with(|| Failure {
                        group: w.group.clone(),
                        cause: Cause::Crashed,
                        message: format!("cannot wait for process group \"{}\": {e}", w.group),
                    });
                }
            }
        }
        if let Some(f) = fatal {
            sh.kill_locked(&mut ws);
            *lock(&sh.fatal) = Some(f);
            drop(ws);
            sh.local.kill();
            // Reap the rest.
            let mut ws = lock(&sh.workers);
            for w in ws.iter_mut().filter(|w| w.exit.is_none()) {
                w.exit = w.child.wait().ok();
            }
            drop(ws);
            sh.changed.notify_all();
            return;
        }
        // Exit status 1: an operator failed there. If it said so over the control channel, it
        // drained and ended its streams, so the others finish; if it never said so (it failed
        // while starting), nothing will end its streams: that is fatal.
        for i in exited_one {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !ws[i].closed && Instant::now() < deadline {
                ws = sh
                    .changed
                    .wait_timeout(ws, Duration::from_millis(20))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if ws[i].failure.is_none() {
                let w = &ws[i];
                let msg = Failure {
                    group: w.group.clone(),
                    cause: Cause::Crashed,
                    message: format!(
                        "process group \"{}\" (pid {}) failed before it could run (exit status 1; its error is above)",
                        w.group,
                        w.child.id()
                    ),
                };
                sh.kill_locked(&mut ws);
                *lock(&sh.fatal) = Some(msg);
                drop(ws);
                sh.local.kill();
                let mut ws = lock(&sh.workers);
                for w in ws.iter_mut().filter(|w| w.exit.is_none()) {
                    w.exit = w.child.wait().ok();
                }
                return;
            }
        }
        drop(ws);
        sh.changed.notify_all();
    }
}

/// Terminal width of standard error, or 100.
fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    100
}

/// A flag that wakes the threads sleeping between periodic reports as soon as the run is over.
#[derive(Default)]
struct Done {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Done {
    fn set(&self) {
        *lock(&self.flag) = true;
        self.cv.notify_all();
    }

    /// Sleeps up to `d` or until set; true once set.
    fn wait(&self, d: Duration) -> bool {
        let g = lock(&self.flag);
        if *g {
            return true;
        }
        *self
            .cv
            .wait_timeout(g, d)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }
}

/// Shows per-operator counts and rates on one refreshing line of standard error (a terminal)
/// until `done`; then clears the line.
fn live_status(sh: Arc<Shared>, done: Arc<Done>) {
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    let mut last_t = Instant::now();
    while !done.wait(PROGRESS_EVERY) {
        let now = Instant::now();
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
        last_t = now;
        let mut counts = sh.local.progress();
        counts.extend(sh.worker_progress());
        let mut line = String::new();
        for (name, n) in &counts {
            let prev = last.insert(name.clone(), *n).unwrap_or(0);
            let rate = (n.saturating_sub(prev)) as f64 / dt;
            if !line.is_empty() {
                line.push_str(" | ");
            }
            line.push_str(&format!("{name} {n} ({rate:.0}/s)"));
        }
        let width = term_width().saturating_sub(1);
        let shown: String = line.chars().take(width).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{shown}");
        let _ = err.flush();
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[K");
    let _ = err.flush();
}

/// Makes the child die when the supervisor dies, even by SIGKILL.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the supervisor exited"));
            }
            Ok(())
        });
    }
}

/// A region holding a checkpoint: its length (u64, little-endian), then its bytes.
fn write_checkpoint(bytes: &[u8]) -> Result<ShmRegion, String> {
    let region = ShmRegion::create("tributary-checkpoint", bytes.len() + 8)
        .map_err(|e| format!("cannot hand over the checkpoint: {e}"))?;
    // SAFETY: the fresh region is at least len + 8 bytes long and mapped only here.
    unsafe {
        let p = region.as_ptr();
        std::ptr::copy_nonoverlapping((bytes.len() as u64).to_le_bytes().as_ptr(), p, 8);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(8), bytes.len());
    }
    Ok(region)
}

/// Reads what [`write_checkpoint`] wrote.
fn read_checkpoint(region: &ShmRegion) -> Result<crate::checkpoint::Checkpoint, String> {
    if region.len() < 8 {
        return Err("checkpoint: region too small".into());
    }
    // SAFETY: the region is mapped and at least 8 bytes long; nothing writes it any more.
    let all = unsafe { std::slice::from_raw_parts(region.as_ptr(), region.len()) };
    let n = u64::from_le_bytes(all[..8].try_into().expect("8 bytes")) as usize;
    let bytes = all
        .get(8..8 + n)
        .ok_or("checkpoint: length beyond the region")?;
    crate::checkpoint::Checkpoint::from_bytes(bytes)
}

fn env_fd(name: &str) -> Result<Option<i32>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v} is not a descriptor number")),
        Err(_) => Ok(None),
    }
}

/// The worker role: runs the operators of process group `group` of the manifest at `path`.
///
/// An empty error means the failure was already reported to the supervisor, which prints it.
///
/// SIGINT and SIGTERM (or a `Stop` from the supervisor) stop it gracefully; a second signal
/// ends it at once.
pub fn run_worker(path: &Path, group: &str) -> Result<(), String> {
    run_worker_with(path, group, &Registry::default())
}

/// [`run_worker`] with the application's custom operator kinds.
pub fn run_worker_with(path: &Path, group: &str, reg: &Registry) -> Result<(), String> {
    let local = Arc::new(LateStop::default());
    {
        let local = local.clone();
        signals::install(move |ev| match ev {
            SignalEvent::Stop(_) => local.stop(),
            SignalEvent::Kill(sig) => std::process::exit(signals::exit_status(sig) as i32),
        })
        .map_err(|e| format!("cannot install the signal handlers: {e}"))?;
    }
    // The control channel: hello now, counts while running, the outcome at the end.
    let to_sup = match std::env::var(ENV_IPC) {
        Ok(name) => {
            let tx = IpcSender::<ToSupervisor>::connect(name)
                .map_err(|e| format!("cannot connect to the supervisor's control channel: {e}"))?;
            let (ctl_tx, ctl_rx) = ipc::channel::<ToWorker>()
                .map_err(|e| format!("cannot create the control channel: {e}"))?;
            tx.send(ToSupervisor::Hello {
                group: group.to_string(),
                pid: std::process::id(),
                control: ctl_tx,
            })
            .map_err(|e| format!("cannot greet the supervisor: {e}"))?;
            let local = local.clone();
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || {
                    while let Ok(ToWorker::Stop) = ctl_rx.recv() {
                        local.stop();
                    }
                })
                .map_err(|e| format!("cannot start the control thread: {e}"))?;
            Some(tx)
        }
        Err(_) => None,
    };
    crate::recovery::plan_panics_from_env();
    let m = manifest::load_with(path, &reg.kinds()).map_err(|d| d.render())?;
    let plan = Plan::new(&m);
    let proc = plan
        .proc_index(group)
        .ok_or_else(|| format!("no process group \"{group}\" in {}", path.display()))?;
    let base = env_fd(ENV_FD_BASE)?.ok_or("started without its rings (TRIBUTARY_FD_BASE)")?;
    let control = match env_fd(ENV_CONTROL_FD)? {
        // SAFETY: the supervisor handed this descriptor to this process, and nothing else owns it.
        Some(fd) => Some(Arc::new(
            ShmRegion::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
                .map_err(|e| format!("cycle counters: {e}"))?,
        )),
        None => None,
    };
    let mut rings = Vec::with_capacity(plan.rings.len());
    for (ri, r) in plan.rings.iter().enumerate() {
        if plan.op_proc[r.producer] == proc || plan.op_proc[r.consumer] == proc {
            // SAFETY: as above, one descriptor per ring this process touches.
            let fd = unsafe { OwnedFd::from_raw_fd(base + ri as i32) };
            rings.push(Some(
                ShmRegion::from_fd(fd).map_err(|e| format!("ring \"{}\": {e}", r.stream))?,
            ));
        } else {
            rings.push(None);
        }
    }
    let slots = match env_fd(ENV_SLOTS_FD)? {
        // SAFETY: the supervisor handed this descriptor to this process, and nothing else owns it.
        Some(fd) => Some(Arc::new(
            ShmRegion::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
                .map_err(|e| format!("recovery slots: {e}"))?,
        )),
        None => None,
    };
    // Checkpoints: taken when the supervisor asks for them; a restarted worker resumes.
    let checkpoints = match std::env::var(ENV_CHECKPOINT_MS) {
        Ok(ms) => {
            let every = ms
                .parse::<u64>()
                .map_err(|_| format!("{ENV_CHECKPOINT_MS}={ms} is not a number of milliseconds"))?;
            let restore = match env_fd(ENV_RESTORE_FD)? {
                Some(fd) => {
                    // SAFETY: the supervisor handed this descriptor to this process alone.
                    let region = ShmRegion::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
                        .map_err(|e| format!("checkpoint: {e}"))?;
                    Some(read_checkpoint(&region)?)
                }
                None => None,
            };
            Some((
                Duration::from_millis(every.max(1)),
                crate::manifest::build::CheckpointSetup {
                    quiesce: crate::checkpoint::Quiesce::new(),
                    resume: std::env::var_os(ENV_RESUME).is_some(),
                    restore,
                },
            ))
        }
        Err(_) => None,
    };
    let every = checkpoints.as_ref().map(|c| c.0);
    let mut res = ProcResources {
        rings,
        control,
        slots,
        checkpoints: checkpoints.map(|c| c.1),
    };
    let mut part = build_local(&m, &plan, proc, &mut res, reg).map_err(|e| e.to_string())?;
    if let (Some(every), Some(c), Some(tx)) = (every, &res.checkpoints, to_sup.clone()) {
        let q = c.quiesce.clone();
        let send: Box<dyn Fn(&crate::checkpoint::Checkpoint) -> bool + Send> =
            Box::new(move |ck| {
                tx.send(ToSupervisor::Checkpoint {
                    bytes: ck.to_bytes(),
                })
                .is_ok()
            });
        part.graph.on_start(Box::new(move || {
            actix::spawn(crate::checkpoint::coordinate(q, every, send));
        }));
    }
    local.set(part.graph.stop_handle());
    let done = Arc::new(Done::default());
    let mut graph = part.graph;
    let beat = graph.heartbeat();
    let progress = to_sup.clone().map(|tx| {
        let local = local.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.wait(HEARTBEAT_EVERY) {
                let counts = local.progress();
                let heartbeat = beat.load(Ordering::Relaxed);
                if tx
                    .send(ToSupervisor::Progress { counts, heartbeat })
                    .is_err()
                {
                    return;
                }
            }
        })
    });
    let result = graph.run();
    let (report, failures, mut errors) = match result {
        Ok(r) => (r, vec![], vec![]),
        Err(RunError::Stopped(r)) => (*r, vec![], vec![]),
        Err(RunError::Failed(f, r)) => (*r, f, vec![]),
        Err(e) => (Report::default(), vec![], vec![e.to_string()]),
    };
    let failed_outcome = |errors: &[String], report: Report| {
        let mut messages: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        messages.extend(errors.iter().cloned());
        ToSupervisor::Failed {
            operator: failures
                .first()
                .map(|f| f.operator.clone())
                .unwrap_or_default(),
            message: messages.join("\n"),
            data_error: failures
                .first()
                .map(|f| f.error.data_error)
                .unwrap_or(false),
            report,
        }
    };
    // A failure is reported before the links drain: the supervisor then stops the sources of
    // every process, which is what lets the links into this one end.
    let mut early = None;
    if !failures.is_empty() || !errors.is_empty() {
        let outcome = failed_outcome(&errors, report.clone());
        let message = match &outcome {
            ToSupervisor::Failed { message, .. } => message.clone(),
            _ => String::new(),
        };
        let reported = match &to_sup {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        };
        early = Some((reported, message));
    }
    for r in part.relays {
        match r.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("a link thread panicked".into()),
        }
    }
    done.set();
    if let Some(p) = progress {
        let _ = p.join();
    }
    if let Some((reported, message)) = early {
        return if reported {
            Err(String::new())
        } else {
            Err(message)
        };
    }
    let outcome = if failures.is_empty() && errors.is_empty() {
        ToSupervisor::Done { report }
    } else {
        failed_outcome(&errors, report)
    };
    let failed = matches!(outcome, ToSupervisor::Failed { .. });
    let message = match &outcome {
        ToSupervisor::Failed { message, .. } => message.clone(),
        _ => String::new(),
    };
    let reported = match &to_sup {
        Some(tx) => tx.send(outcome).is_ok(),
        None => false,
    };
    match (failed, reported) {
        (false, _) => Ok(()),
        // The supervisor prints it: say nothing here.
        (true, true) => Err(String::new()),
        (true, false) => Err(message),
    }
}

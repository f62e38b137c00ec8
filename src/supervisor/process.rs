//! Running a manifest across processes: the supervisor side (create the rings, start one worker
//! per process group, run its own part, watch the workers) and the worker side.
//!
//! Data flows through shared-memory rings; control flows through ipc-channel. Each worker
//! connects to a one-shot server whose name it finds in `TRIBUTARY_IPC`, says
//! [`ToSupervisor::Hello`] (handing over a sender the supervisor uses for [`ToWorker::Stop`]),
//! reports its counts every 250 ms, and ends with [`ToSupervisor::Done`] or
//! [`ToSupervisor::Failed`]. The supervisor notices a worker's death at once through a pidfd.

use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
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
const RING_BYTES: usize = 1 << 20;
/// The environment variable that tells a worker where its rings' descriptors start.
const ENV_FD_BASE: &str = "TRIBUTARY_FD_BASE";
/// The environment variable that tells a worker the descriptor of the cycle counters.
const ENV_CONTROL_FD: &str = "TRIBUTARY_CONTROL_FD";
/// The environment variable that tells a worker the descriptor of the recovery slots.
const ENV_SLOTS_FD: &str = "TRIBUTARY_SLOTS_FD";
/// The environment variable that tells a worker the name of its control server.
const ENV_IPC: &str = "TRIBUTARY_IPC";
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
}

/// The supervisor's state, shared by the main thread, the watcher, the control threads and
/// the signal thread.
#[derive(Default)]
struct Shared {
    workers: Mutex<Vec<Worker>>,
    changed: Condvar,
    /// The workers' process group (0 before the first worker starts).
    pgid: AtomicI32,
    /// A worker died (or could not be waited for): the attempt failed, everything was killed.
    fatal: Mutex<Option<Failure>>,
    /// A person (a signal) or the embedding application asked the run to stop.
    user_stopped: AtomicBool,
    local: LateStop,
}

impl Shared {
    /// Forgets the previous attempt's workers (all reaped) before the next one starts.
    fn reset(&self) {
        lock(&self.workers).clear();
        self.pgid.store(0, Ordering::Release);
        *lock(&self.fatal) = None;
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
        if workers.iter().any(|w| w.exit.is_none()) {
            let pgid = self.pgid.load(Ordering::Acquire);
            if pgid > 0 {
                // SAFETY: plain syscall; the group still has an unreaped member, so its id is ours.
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
            }
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
    let mut restarts = Restarts::default();
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
        let (outcome, failure) = run_attempt(&ctx, &mut recovering, &mut restarts);
        let Some(failure) = failure else {
            break outcome;
        };
        if shared.stop_requested() {
            break outcome;
        }
        let policy = Policy::for_group(m, &failure.group);
        let decision = match no_replay {
            Some(src)
                if policy.restart != Restart::Temporary && failure.cause != Cause::DataError =>
            {
                Decision::GiveUp(format!(
                    "{}\nnot restarted: source \"{}\" ({}) cannot replay its input",
                    failure.message, src.name, src.kind
                ))
            }
            _ => restarts.decide(&failure, &policy, Instant::now()),
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
    let lines = restarts.summary_lines();
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
    restarts: &mut Restarts,
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
        + 3;
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
    let mut control_threads = vec![];
    for (p, name) in plan.procs.iter().enumerate().skip(1) {
        let (server, server_name) = match IpcOneShotServer::<ToSupervisor>::new() {
            Ok(x) => x,
            Err(e) => {
                shared.kill();
                return fail(format!(
                    "cannot create the control channel of group \"{name}\": {e}"
                ));
            }
        };
        let mut cmd = Command::new(exe);
        cmd.arg("__worker")
            .arg(&m.path)
            .arg(name)
            .env(ENV_FD_BASE, fd_base.to_string())
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
        if let Some(c) = &control {
            c.pass_to_child(&mut cmd, fd_base - 1);
            cmd.env(ENV_CONTROL_FD, (fd_base - 1).to_string());
        }
        let mine: Vec<String> = panics
            .iter()
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
        slots.pass_to_child(&mut cmd, fd_base - 2);
        cmd.env(ENV_SLOTS_FD, (fd_base - 2).to_string());
        for (ri, r) in plan.rings.iter().enumerate() {
            if plan.op_proc[r.producer] == p || plan.op_proc[r.consumer] == p {
                rings[ri].pass_to_child(&mut cmd, fd_base + ri as i32);
            }
        }
        // Workers live in a process group of their own, which the supervisor kills on failure
        // (a terminal's Ctrl-C reaches only the supervisor, which stops them in order).
        cmd.process_group(shared.pgid.load(Ordering::Acquire));
        die_with_parent(&mut cmd);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                shared.kill();
                return fail(format!("cannot start the worker of group \"{name}\": {e}"));
            }
        };
        let _ =
            shared
                .pgid
                .compare_exchange(0, child.id() as i32, Ordering::AcqRel, Ordering::Acquire);
        let index = {
            let mut ws = lock(&shared.workers);
            ws.push(Worker {
                group: name.clone(),
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
            });
            ws.len() - 1
        };
        let sh = shared.clone();
        control_threads.push(
            std::thread::Builder::new()
                .name(format!("control:{name}"))
                .spawn(move || serve_worker(sh, index, server)),
        );
    }
    let mut res = ProcResources {
        rings: rings
            .into_iter()
            .enumerate()
            .map(|(ri, reg)| {
                let r = &plan.rings[ri];
                (plan.op_proc[r.producer] == 0 || plan.op_proc[r.consumer] == 0).then_some(reg)
            })
            .collect(),
        control,
        slots: Some(slots.clone()),
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
    let watcher = {
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("tributary-watch".into())
            .spawn(move || watch(sh, ignore_shutdown))
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
    attempt_done.set();
    // What the workers started themselves (commands of exec nodes) ends with the attempt.
    let pgid = shared.pgid.load(Ordering::Acquire);
    if pgid > 0 {
        // SAFETY: plain syscall; the group is the one this attempt's workers were put in.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    if let Some(c) = chaos {
        let _ = c.join();
    }
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    if let Some(Ok(Some((group, took)))) = recovery.map(|h| h.join()) {
        tracing::info!(group = %group, ms = took.as_millis() as u64, "recovered");
        restarts.recovered(&group, took);
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
fn watch(sh: Arc<Shared>, ignore_shutdown: Vec<String>) {
    let pidfds: Vec<Option<OwnedFd>> = lock(&sh.workers)
        .iter()
        .map(|w| pidfd_open(w.child.id()).ok())
        .collect();
    loop {
        let live: Vec<usize> = lock(&sh.workers)
            .iter()
            .enumerate()
            .filter(|(_, w)| w.exit.is_none())
            .map(|(i, _)| i)
            .collect();
        if live.is_empty() {
            return;
        }
        let all_fds = live.iter().all(|&i| pidfds[i].is_some());
        {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut fds: Vec<PollFd> = live
                .iter()
                .filter_map(|&i| pidfds[i].as_ref())
                .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            // Without pidfds (an old kernel), fall back to polling every 20 ms.
            let timeout = if all_fds { 1000u16 } else { 20 };
            let _ = poll(&mut fds, PollTimeout::from(timeout));
        }
        let mut ws = lock(&sh.workers);
        let mut fatal = None;
        let mut exited_one = vec![];
        for &i in &live {
            let w = &mut ws[i];
            match w.child.try_wait() {
                Ok(Some(status)) => {
                    w.exit = Some(status);
                    let pid = w.child.id();
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
    let mut res = ProcResources {
        rings,
        control,
        slots,
    };
    let part = build_local(&m, &plan, proc, &mut res, reg).map_err(|e| e.to_string())?;
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

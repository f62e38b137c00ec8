//! What a running pipeline shares between its actors: completion, failures, counts; and the
//! report a run returns.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::operator::OpError;

/// The failure of one operator, as the run reports it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("operator \"{operator}\" failed: {}{}", message_of(&self.operator, &self.error), element_suffix(&self.error))]
pub struct OperatorFailure {
    /// The operator's name.
    pub operator: String,
    /// What went wrong.
    pub error: OpError,
}

/// The failure's message without a leading `operator "NAME": ` (the report names it already).
fn message_of<'a>(operator: &str, e: &'a OpError) -> &'a str {
    let prefix = format!("operator \"{operator}\": ");
    e.message
        .strip_prefix(prefix.as_str())
        .unwrap_or(&e.message)
}

fn element_suffix(e: &OpError) -> String {
    match &e.element {
        Some(el) => format!(" (element: {el})"),
        None => String::new(),
    }
}

/// How a run went: per-stream counts, drops, failures, wall time.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Elements produced on each named stream, in stream order.
    pub streams: Vec<(String, u64)>,
    /// Elements dropped by lossy links, per stream.
    pub drops: Vec<(String, u64)>,
    /// End-of-run notes from operators (e.g. unmatched zip tails).
    pub notes: Vec<(String, String)>,
    /// Wall time of the run.
    pub wall: Duration,
    /// Restarts per group, one line each (how often, why, recovery time).
    #[serde(default)]
    pub restarts: Vec<String>,
}

impl Report {
    /// Elements produced on the stream called `name`, if it exists.
    pub fn count(&self, name: &str) -> Option<u64> {
        self.streams.iter().find(|(n, _)| n == name).map(|x| x.1)
    }

    /// Total drops over every stream.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|x| x.1).sum()
    }
}

/// How an operator is restarted in place after it fails (a panic, a script error): its state
/// is put back as it was before the failing batch, which is processed again after a backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpRestart {
    /// At most this many restarts within `within`; the next failure ends the run.
    pub max_restarts: u32,
    /// The restart-intensity period.
    pub within: Duration,
    /// First and largest delay before a restart (doubling in between).
    pub backoff: (Duration, Duration),
}

/// The restart intensity and backoff of one restartable part (OTP's "at most N within T"):
/// shared by operators restarted in place and by the supervisor's groups.
#[derive(Clone, Debug, Default)]
pub(crate) struct RestartBudget {
    /// When each restart within the current period happened.
    recent: std::collections::VecDeque<Instant>,
    /// Restarts in a row (the backoff), reset after `within` without one.
    streak: u32,
    last: Option<Instant>,
}

impl RestartBudget {
    /// Records a restart at `now` and returns the delay before it, or, when `limits` allow no
    /// more, the number of restarts already made within the period.
    pub(crate) fn next(&mut self, limits: &OpRestart, now: Instant) -> Result<Duration, usize> {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > limits.within)
        {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= limits.max_restarts {
            return Err(self.recent.len());
        }
        if self
            .last
            .is_some_and(|t| now.duration_since(t) > limits.within)
        {
            self.streak = 0;
        }
        let (first, cap) = limits.backoff;
        let delay = first
            .checked_mul(1u32.checked_shl(self.streak.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(cap)
            .min(cap);
        self.streak += 1;
        self.last = Some(now);
        self.recent.push_back(now);
        Ok(delay)
    }

    /// Restarts within the current period (as of the last one).
    pub(crate) fn recent(&self) -> usize {
        self.recent.len()
    }
}

/// What a finished run left behind.
pub(crate) struct Outcome {
    pub failures: Vec<OperatorFailure>,
    pub counts: Vec<Option<Vec<u64>>>,
    pub notes: Vec<(String, String)>,
    /// In-place restarts per operator: (operator, how many, the last cause).
    pub restarts: Vec<(String, u32, String)>,
}

struct Inner {
    failures: Vec<OperatorFailure>,
    counts: Vec<Option<Vec<u64>>>,
    notes: Vec<(String, String)>,
    restarts: Vec<(String, u32, String)>,
    finished: bool,
}

/// State shared by every actor of one run.
pub(crate) struct RunShared {
    live: AtomicUsize,
    failed: AtomicBool,
    stopping: AtomicBool,
    progress: Vec<AtomicU64>,
    inner: Mutex<Inner>,
    done: Condvar,
    stopper: Mutex<Option<Box<dyn Fn() + Send>>>,
    names: Vec<Arc<str>>,
    /// The process's checkpoint pause, when it takes checkpoints.
    quiesce: std::sync::OnceLock<Arc<crate::checkpoint::Quiesce>>,
}

impl RunShared {
    pub(crate) fn new(names: Vec<Arc<str>>) -> Arc<Self> {
        let n = names.len();
        Arc::new(RunShared {
            live: AtomicUsize::new(n),
            failed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            progress: (0..n).map(|_| AtomicU64::new(0)).collect(),
            inner: Mutex::new(Inner {
                failures: vec![],
                counts: vec![None; n],
                notes: vec![],
                restarts: vec![],
                finished: n == 0,
            }),
            done: Condvar::new(),
            stopper: Mutex::new(None),
            names,
            quiesce: std::sync::OnceLock::new(),
        })
    }

    /// Makes this run take checkpoints through `q`.
    pub(crate) fn set_quiesce(&self, q: Arc<crate::checkpoint::Quiesce>) {
        let _ = self.quiesce.set(q);
    }

    /// The run's checkpoint pause, if it takes checkpoints.
    pub(crate) fn quiesce(&self) -> Option<Arc<crate::checkpoint::Quiesce>> {
        self.quiesce.get().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what to call when the run is over (stops the actor system).
    pub(crate) fn set_stopper(&self, f: Box<dyn Fn() + Send>) {
        *self.stopper.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        if self.lock().finished {
            self.stop();
        }
    }

    fn stop(&self) {
        if let Some(f) = self
            .stopper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            f();
        }
    }

    fn finish(&self, mut inner: std::sync::MutexGuard<'_, Inner>) {
        if !inner.finished {
            inner.finished = true;
            drop(inner);
            self.done.notify_all();
            self.stop();
        }
    }

    /// An operator finished normally, with its per-output counts.
    pub(crate) fn node_done(&self, id: usize, counts: Vec<u64>, note: Option<String>) {
        let mut inner = self.lock();
        inner.counts[id] = Some(counts);
        if let Some(n) = note {
            inner.notes.push((self.names[id].to_string(), n));
        }
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish(inner);
        }
    }

    /// An operator failed: the run stops.
    pub(crate) fn fail(&self, _id: usize, name: &str, error: OpError) {
        let mut inner = self.lock();
        inner.failures.push(OperatorFailure {
            operator: name.to_string(),
            error,
        });
        self.failed.store(true, Ordering::Release);
    }

    /// Operator `id` was restarted in place after `cause`.
    pub(crate) fn op_restarted(&self, id: usize, cause: &str) {
        let name = self.names[id].to_string();
        let mut inner = self.lock();
        match inner.restarts.iter_mut().find(|r| r.0 == name) {
            Some(r) => {
                r.1 += 1;
                r.2 = cause.to_string();
            }
            None => inner.restarts.push((name, 1, cause.to_string())),
        }
    }

    /// True once some operator failed (sources then stop and the pipeline drains).
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Asks the run to stop gracefully: sources end, and what is in flight drains.
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// True once a graceful stop was asked for (sources then end, like after a failure).
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Records how many elements node `id` has produced so far (for live status).
    pub(crate) fn set_progress(&self, id: usize, produced: u64) {
        if let Some(p) = self.progress.get(id) {
            p.store(produced, Ordering::Relaxed);
        }
    }

    /// Elements produced so far by each node, with the node's name.
    pub(crate) fn progress(&self) -> Vec<(String, u64)> {
        self.names
            .iter()
            .zip(&self.progress)
            .map(|(n, p)| (n.to_string(), p.load(Ordering::Relaxed)))
            .collect()
    }

    /// Stops the run from outside at once, without draining (e.g. a second signal).
    pub(crate) fn cancel(&self) {
        let inner = self.lock();
        self.finish(inner);
    }

    /// Blocks until the run is over.
    pub(crate) fn wait(&self) {
        let mut inner = self.lock();
        while !inner.finished {
            inner = self.done.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The failures, the per-node output counts of nodes that finished, and their notes.
    pub(crate) fn outcome(&self) -> Outcome {
        let inner = self.lock();
        Outcome {
            failures: inner.failures.clone(),
            counts: inner.counts.clone(),
            notes: inner.notes.clone(),
            restarts: inner.restarts.clone(),
        }
    }

    /// True if every node finished.
    pub(crate) fn all_done(&self) -> bool {
        self.live.load(Ordering::Acquire) == 0
    }
}

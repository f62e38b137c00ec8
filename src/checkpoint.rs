//! Checkpoints of a worker process: its operators' states at a stream position, so that a
//! worker that dies restarts from there instead of from the sources.
//!
//! A checkpoint is taken at a quiet point of the process: its sources and its ring readers
//! pause (readers at a frame boundary), every operator finishes what it holds, and every
//! ring writer has put what it was given into its ring. Then the checkpoint holds
//! - each operator's state ([`crate::Operator::snapshot`]), which inputs ended, whether it is
//!   done, its counts;
//! - for each ring into the process, the byte position read up to (and whether its end was
//!   read);
//! - for each ring out of the process, the elements written into it so far.
//!
//! The worker sends it to the supervisor, and only then commits the readers' positions:
//! rings into the process retain every byte read since the last commit (the producer waits
//! when the ring is full of them), so a restarted worker reads again from its checkpoint.
//! Its ring writers skip the elements their ring already holds, so nothing is duplicated
//! downstream. Everything runs on the worker's one runtime thread, so the quiet point is
//! checked between the actors' turns.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::link::local::{End, Waker};
use crate::operator::OpResult;
use crate::shm::RingCommit;

/// One operator's part of a checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeCkpt {
    /// The operator's snapshot (None: it has no state).
    pub state: Option<Vec<u8>>,
    /// Which inputs had ended.
    pub ended: Vec<bool>,
    /// The operator had finished (its end work done, its outputs closed).
    pub done: bool,
    /// Elements emitted per output.
    pub counts: Vec<u64>,
    /// Elements taken from the inputs.
    pub consumed: u64,
}

/// Where a ring into the process was read up to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InputPos {
    /// The ring (its index in the plan).
    pub ring: usize,
    /// Bytes read (a frame boundary).
    pub pos: u64,
    /// The end of the stream was read (`Some(cycle)`).
    pub end: Option<bool>,
}

/// A worker's checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Its number within the worker's life.
    pub seq: u64,
    /// Every operator of the worker's graph, by node index.
    pub nodes: Vec<NodeCkpt>,
    /// Rings into the process.
    pub inputs: Vec<InputPos>,
    /// Rings out of the process: (ring, elements written).
    pub outputs: Vec<(usize, u64)>,
}

impl Checkpoint {
    /// Encodes it for the supervisor (and the restarted worker).
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    /// Decodes what [`Checkpoint::to_bytes`] made.
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        bincode::serde::decode_from_slice(b, bincode::config::standard())
            .map(|x| x.0)
            .map_err(|e| format!("corrupt checkpoint: {e}"))
    }

    /// Where ring `ring` into the process was read up to.
    pub fn input(&self, ring: usize) -> Option<&InputPos> {
        self.inputs.iter().find(|i| i.ring == ring)
    }

    /// Elements written into ring `ring` out of the process.
    pub fn output(&self, ring: usize) -> Option<u64> {
        self.outputs.iter().find(|o| o.0 == ring).map(|o| o.1)
    }
}

/// Asks an operator's actor for its part of a checkpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TakeCheckpoint(pub tokio::sync::oneshot::Sender<OpResult<NodeCkpt>>);

/// What the coordinator knows of one operator.
struct NodeHook {
    /// Its actor, while it runs.
    addr: Option<Recipient<TakeCheckpoint>>,
    /// True while it holds work: outputs that did not fit, a batch to retry.
    holding: Arc<AtomicBool>,
    /// True when its inputs are all empty.
    inputs_empty: Box<dyn Fn() -> bool + Send>,
    /// Its last word once it finished.
    last: Option<NodeCkpt>,
}

/// The pause that lets a worker reach a quiet point, and what the coordinator needs of every
/// operator, reader and writer of the process.
#[derive(Default)]
pub struct Quiesce {
    paused: AtomicBool,
    /// Sources that found the pause on, to wake when it ends.
    parked: Mutex<Vec<Waker>>,
    resume: tokio::sync::Notify,
    /// A reader retains more than half its ring: checkpoint soon.
    wanted: AtomicBool,
    /// Wakes the coordinator when `wanted` is set.
    wanted_now: tokio::sync::Notify,
    nodes: Mutex<Vec<Option<NodeHook>>>,
    /// No more checkpoints will be taken: readers stop retaining.
    finished: AtomicBool,
    readers: Mutex<Vec<Arc<ReadControl>>>,
    writers: Mutex<Vec<Arc<dyn WriterStatus>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Quiesce {
    /// A new, unpaused one.
    pub fn new() -> Arc<Self> {
        Arc::new(Quiesce::default())
    }

    /// True while a checkpoint is being taken (sources and readers wait).
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// A source found the pause on: `w` wakes it when it ends.
    pub(crate) fn park(&self, w: Waker) {
        lock(&self.parked).push(w);
    }

    /// Waits (in a task) until the pause is off.
    pub(crate) async fn wait_resume(&self) {
        loop {
            let mut n = std::pin::pin!(self.resume.notified());
            n.as_mut().enable();
            if !self.paused() {
                return;
            }
            n.await;
        }
    }

    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    fn unpause(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.resume.notify_waiters();
        let parked = std::mem::take(&mut *lock(&self.parked));
        for w in parked {
            w();
        }
    }

    /// True once no more checkpoints will be taken (readers then stop retaining).
    pub(crate) fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// No more checkpoints: release what every reader holds, and let them stop retaining.
    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        for r in lock(&self.readers).iter() {
            r.commit.commit(r.read.load(Ordering::SeqCst));
        }
    }

    /// Asks for a checkpoint soon (a reader's retained bytes fill half its ring).
    pub(crate) fn want(&self) {
        if !self.wanted.swap(true, Ordering::AcqRel) {
            // A permit is kept if the coordinator is not waiting yet: no request is lost.
            self.wanted_now.notify_one();
        }
    }

    /// Registers operator `id`'s actor.
    pub(crate) fn register_node(
        &self,
        id: usize,
        addr: Recipient<TakeCheckpoint>,
        holding: Arc<AtomicBool>,
        inputs_empty: Box<dyn Fn() -> bool + Send>,
    ) {
        let mut nodes = lock(&self.nodes);
        if nodes.len() <= id {
            nodes.resize_with(id + 1, || None);
        }
        nodes[id] = Some(NodeHook {
            addr: Some(addr),
            holding,
            inputs_empty,
            last: None,
        });
    }

    /// Operator `id` finished: `last` is its part of every later checkpoint.
    pub(crate) fn node_done(&self, id: usize, last: NodeCkpt) {
        if let Some(Some(h)) = lock(&self.nodes).get_mut(id) {
            h.addr = None;
            h.last = Some(last);
        }
    }

    /// Registers a ring reader of the process.
    pub(crate) fn add_reader(&self, r: Arc<ReadControl>) {
        lock(&self.readers).push(r);
    }

    /// Registers a ring writer of the process.
    pub(crate) fn add_writer(&self, w: Arc<dyn WriterStatus>) {
        lock(&self.writers).push(w);
    }

    /// True at a quiet point (call on the runtime thread, between the actors' turns).
    fn quiet(&self) -> bool {
        lock(&self.nodes)
            .iter()
            .flatten()
            .all(|h| h.last.is_some() || (!h.holding.load(Ordering::Acquire) && (h.inputs_empty)()))
            && lock(&self.readers).iter().all(|r| r.settled().is_some())
            && lock(&self.writers).iter().all(|w| w.idle())
    }

    /// Every operator's part, at a quiet point.
    async fn nodes(&self) -> Result<Vec<NodeCkpt>, String> {
        let asks: Vec<(usize, Result<NodeCkpt, Recipient<TakeCheckpoint>>)> = lock(&self.nodes)
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                None => (i, Ok(NodeCkpt::default())),
                Some(h) => match (&h.last, &h.addr) {
                    (Some(l), _) => (i, Ok(l.clone())),
                    (None, Some(a)) => (i, Err(a.clone())),
                    (None, None) => (i, Ok(NodeCkpt::default())),
                },
            })
            .collect();
        let mut out = Vec::with_capacity(asks.len());
        for (i, ask) in asks {
            match ask {
                Ok(c) => out.push(c),
                Err(addr) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    addr.do_send(TakeCheckpoint(tx));
                    match rx.await {
                        Ok(Ok(c)) => out.push(c),
                        Ok(Err(e)) => return Err(e.message),
                        // It finished meanwhile: its last word is there now.
                        Err(_) => {
                            match lock(&self.nodes)[i].as_ref().and_then(|h| h.last.clone()) {
                                Some(c) => out.push(c),
                                None => return Err(format!("operator {i} went away")),
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A ring writer's side of a checkpoint.
pub(crate) trait WriterStatus: Send + Sync {
    /// The ring (its index in the plan).
    fn ring(&self) -> usize;
    /// True when everything given to it is in its ring.
    fn idle(&self) -> bool;
    /// Elements in complete frames in its ring.
    fn elems(&self) -> u64;
    /// True while it drops what its operator makes again after a restart (its ring holds it
    /// already): no checkpoint can be taken until the operator caught up, which it only does
    /// while the process is not paused.
    fn replaying(&self) -> bool;
}

/// A ring reader's side of a checkpoint: it parks at a frame boundary while the process is
/// paused, and says where.
pub struct ReadControl {
    ring: usize,
    /// The position it is settled at (a frame boundary, nothing pending), or [`BUSY`].
    state: AtomicU64,
    /// What it had read when it last went to sleep.
    read: AtomicU64,
    ended: Mutex<Option<bool>>,
    commit: RingCommit,
    pub(crate) quiesce: Arc<Quiesce>,
}

const BUSY: u64 = u64::MAX;

impl ReadControl {
    /// The control of the reader of ring `ring`, committing through `commit`.
    pub(crate) fn new(ring: usize, commit: RingCommit, quiesce: Arc<Quiesce>) -> Arc<Self> {
        Arc::new(ReadControl {
            ring,
            state: AtomicU64::new(BUSY),
            read: AtomicU64::new(0),
            ended: Mutex::new(None),
            commit,
            quiesce,
        })
    }

    /// The reader is at `pos`, a frame boundary, with nothing pending.
    pub(crate) fn settle(&self, pos: u64) {
        self.state.store(pos, Ordering::SeqCst);
    }

    /// The reader goes to sleep having read up to `pos`.
    pub(crate) fn sleeping_at(&self, pos: u64) {
        self.read.store(pos, Ordering::SeqCst);
    }

    /// The reader is about to read.
    pub(crate) fn busy(&self) {
        self.state.store(BUSY, Ordering::SeqCst);
    }

    /// The reader read the end of the stream, which ends at `pos`.
    pub(crate) fn ended(&self, pos: u64, cycle: bool) {
        *lock(&self.ended) = Some(cycle);
        self.settle(pos);
    }

    fn settled(&self) -> Option<u64> {
        let s = self.state.load(Ordering::SeqCst);
        (s != BUSY).then_some(s)
    }
}

/// Runs the checkpoints of a worker (a task on its runtime thread): every `every`, or sooner
/// when a reader asks, until the process finishes. `send` hands each checkpoint to the
/// supervisor and returns false if it could not.
pub(crate) async fn coordinate(
    q: Arc<Quiesce>,
    every: Duration,
    send: Box<dyn Fn(&Checkpoint) -> bool + Send>,
) {
    struct Finish<'a>(&'a Quiesce);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.finish();
        }
    }
    let _finish = Finish(&q);
    let mut seq = 0u64;
    let mut last = Instant::now();
    loop {
        // Sleep until the period is over or a reader asks: an idle worker wakes once a period.
        let left = every.saturating_sub(last.elapsed());
        if !left.is_zero() && !q.wanted.load(Ordering::Acquire) {
            let mut sleep = std::pin::pin!(actix::clock::sleep(left));
            let mut asked = std::pin::pin!(q.wanted_now.notified());
            std::future::poll_fn(|cx| {
                if sleep.as_mut().poll(cx).is_ready() || asked.as_mut().poll(cx).is_ready() {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
            if last.elapsed() < every && !q.wanted.load(Ordering::Acquire) {
                continue;
            }
        }
        q.wanted.store(false, Ordering::Release);
        q.pause();
        let taken = take(&q, seq).await;
        // The period runs from the end of this attempt: the process runs unpaused for at least
        // that long before the next pause (an attempt may wait a second for a quiet point).
        last = Instant::now();
        let missed = !matches!(taken, Ok(Some(_)));
        match taken {
            Ok(Some(c)) => {
                if !send(&c) {
                    q.unpause();
                    return;
                }
                seq += 1;
                for r in lock(&q.readers).iter() {
                    if let Some(pos) = c.input(r.ring).map(|i| i.pos) {
                        r.commit.commit(pos);
                    }
                }
                tracing::trace!(seq, "checkpoint taken");
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("checkpoint skipped: {e}"),
        }
        q.unpause();
        let all_done = lock(&q.nodes).iter().flatten().all(|h| h.last.is_some());
        if all_done {
            return;
        }
        if missed {
            // What kept the process from a quiet point needs it to run: no request cuts the
            // next period short (a reader asks again once it read more).
            q.wanted.store(false, Ordering::Release);
        }
        // Sources and readers woken by the unpause run before the coordinator looks again.
        tokio::task::yield_now().await;
    }
}

/// Waits for the quiet point (up to a second) and takes the checkpoint; None if the point
/// was not reached in time.
async fn take(q: &Quiesce, seq: u64) -> Result<Option<Checkpoint>, String> {
    if lock(&q.writers).iter().any(|w| w.replaying()) {
        // Paused, it would not catch up: not quiet before the deadline, whatever it is.
        return Ok(None);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut spins = 0u32;
    while !q.quiet() {
        if Instant::now() > deadline {
            return Ok(None);
        }
        spins += 1;
        if spins < 64 {
            tokio::task::yield_now().await;
        } else {
            actix::clock::sleep(Duration::from_millis(1)).await;
        }
    }
    let nodes = q.nodes().await?;
    // Positions only after the operators answered: nothing moved meanwhile (paused, quiet).
    let mut inputs = vec![];
    for r in lock(&q.readers).iter() {
        let Some(pos) = r.settled() else {
            return Ok(None);
        };
        inputs.push(InputPos {
            ring: r.ring,
            pos,
            end: *lock(&r.ended),
        });
    }
    let outputs = lock(&q.writers)
        .iter()
        .map(|w| (w.ring(), w.elems()))
        .collect();
    Ok(Some(Checkpoint {
        seq,
        nodes,
        inputs,
        outputs,
    }))
}

/// An end read from a ring, as a link end.
pub(crate) fn end_of(cycle: bool) -> End {
    End { cycle }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Runs the coordinator of an empty process (no operators: it ends after one checkpoint)
    /// with a period of a minute; `ask` says whether a reader asks for a checkpoint. Returns
    /// the checkpoints sent within `limit`.
    fn sent_within(ask: bool, limit: Duration) -> usize {
        let sent = Arc::new(AtomicUsize::new(0));
        let s2 = sent.clone();
        actix::System::new().block_on(async move {
            let q = Quiesce::new();
            let send = Box::new(move |_: &Checkpoint| {
                s2.fetch_add(1, Ordering::SeqCst);
                true
            });
            if ask {
                // Once the coordinator sleeps.
                let q2 = q.clone();
                actix::spawn(async move {
                    actix::clock::sleep(Duration::from_millis(50)).await;
                    q2.want();
                });
            }
            let _ =
                actix::clock::timeout(limit, coordinate(q, Duration::from_secs(60), send)).await;
        });
        sent.load(Ordering::SeqCst)
    }

    #[test]
    fn a_reader_asking_for_a_checkpoint_gets_one_at_once_not_after_the_period() {
        assert_eq!(sent_within(true, Duration::from_secs(10)), 1);
    }

    /// An operator that answers every checkpoint request with an empty part.
    struct Answering;
    impl actix::Actor for Answering {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<TakeCheckpoint> for Answering {
        type Result = ();
        fn handle(&mut self, m: TakeCheckpoint, _: &mut Self::Context) {
            let _ = m.0.send(Ok(NodeCkpt::default()));
        }
    }

    /// A writer whose operator must make `left` elements again before it is caught up.
    struct Replaying {
        left: AtomicU64,
    }
    impl WriterStatus for Replaying {
        fn ring(&self) -> usize {
            0
        }
        fn idle(&self) -> bool {
            !self.replaying()
        }
        fn elems(&self) -> u64 {
            0
        }
        fn replaying(&self) -> bool {
            self.left.load(Ordering::SeqCst) > 0
        }
    }

    #[test]
    fn a_process_replaying_after_a_restart_runs_until_it_caught_up_and_is_then_checkpointed() {
        // Its source makes one element per turn and stops while the process is paused (as
        // sources and readers do): a coordinator that pauses again at once after an attempt
        // that found no quiet point would keep it from ever catching up.
        let sent = Arc::new(AtomicUsize::new(0));
        let s2 = sent.clone();
        let w = Arc::new(Replaying {
            left: AtomicU64::new(200),
        });
        let w2 = w.clone();
        actix::System::new().block_on(async move {
            let q = Quiesce::new();
            let addr = actix::Actor::start(Answering);
            q.register_node(
                0,
                addr.recipient(),
                Arc::new(AtomicBool::new(false)),
                Box::new(|| true),
            );
            q.add_writer(w2.clone());
            let q2 = q.clone();
            actix::spawn(async move {
                while w2.left.load(Ordering::SeqCst) > 0 {
                    q2.wait_resume().await;
                    w2.left.fetch_sub(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            });
            let s3 = s2.clone();
            let send = Box::new(move |_: &Checkpoint| {
                s3.fetch_add(1, Ordering::SeqCst);
                true
            });
            actix::spawn(coordinate(q, Duration::from_millis(1), send));
            let deadline = Instant::now() + Duration::from_secs(10);
            while s2.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                actix::clock::sleep(Duration::from_millis(5)).await;
            }
        });
        assert_eq!(
            w.left.load(Ordering::SeqCst),
            0,
            "the replay did not finish"
        );
        assert!(sent.load(Ordering::SeqCst) > 0, "no checkpoint after it");
    }

    #[test]
    fn without_a_request_the_coordinator_waits_for_its_period() {
        assert_eq!(sent_within(false, Duration::from_millis(300)), 0);
    }
}

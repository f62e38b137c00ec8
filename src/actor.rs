//! The actor that runs one operator: it owns the operator's output streams, wakes when an
//! input has data, and consumes everything available in batches.
//!
//! Flow control: a push that does not fit in a link stays pending in the producer, which then
//! stops taking input until the consumer frees room and wakes it. End-of-stream: once every
//! input has ended (or its cycle went quiet) the operator does its end work, flushes what is
//! pending, and closes its outputs.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use actix::prelude::*;

use crate::checkpoint::{NodeCkpt, Quiesce, TakeCheckpoint};
use crate::cycle::CycleCounter;
use crate::link::local::{Channel, End, Recv, Waker};
use crate::operator::{Gen, OpError, OpResult, Operator, Outputs};
use crate::run::{OpRestart, RestartBudget, RunShared};
use crate::Value;

/// How many input batches an actor handles per wake-up before yielding to its neighbours.
const BATCHES_PER_WAKE: usize = 64;

/// Makes `dst` a copy of `b` (kept to retry the batch after a restart in place), reusing its
/// memory: a batch of scalar [`Value`]s (the common case) is copied as plain memory rather than
/// element by element.
#[allow(clippy::ptr_arg)] // `Vec`s (sized) to downcast safely through `Any`
/// Returns true when the copy holds only scalars (it can then be emptied with
/// [`forget_scalars`]).
fn copy_batch_into<T: Clone + 'static>(b: &Vec<T>, dst: &mut Vec<T>) -> bool {
    let src = b as &dyn std::any::Any;
    let to = dst as &mut dyn std::any::Any;
    if let (Some(vs), Some(to)) = (
        src.downcast_ref::<Vec<Value>>(),
        to.downcast_mut::<Vec<Value>>(),
    ) {
        if crate::value::copy_scalars_into(vs, to) {
            return true;
        }
    }
    crate::value::clear_batch(dst);
    dst.extend_from_slice(b);
    false
}

/// Moves the memory of the empty `from` into `to`, when `to` has none and both hold the
/// same element type.
#[allow(clippy::ptr_arg)] // `Vec`s (sized) to downcast through `Any`
fn reuse_as<T: 'static, U: 'static>(from: &mut Vec<T>, to: &mut Vec<U>) {
    if to.capacity() == 0 {
        if let Some(from) = (from as &mut dyn std::any::Any).downcast_mut::<Vec<U>>() {
            debug_assert!(from.is_empty());
            std::mem::swap(from, to);
        }
    }
}

/// Empties a copy that [`copy_batch_into`] said holds only scalars, without looking at it.
fn forget_scalars<T>(copy: &mut Vec<T>) {
    // SAFETY: the copy holds scalar `Value`s only (see `copy_batch_into`), which own no
    // memory: not running their drops leaks nothing.
    unsafe { copy.set_len(0) }
}

/// At most how many elements a source is asked for per call (less when its links are smaller:
/// a batch never exceeds the capacity of the links it goes to).
pub(crate) const SOURCE_BATCH: usize = 8192;

/// The message that schedules an operator actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// One input port of an operator.
pub(crate) struct InPort<T> {
    pub chan: Arc<Channel<T>>,
    /// True when the link is inside the operator's own feedback cycle.
    pub intra: bool,
    pub ended: bool,
    pub force_end: bool,
}

/// One output port: the links to every consumer, each with what did not fit yet.
pub(crate) struct OutPort<T> {
    pub links: Vec<(Arc<Channel<T>>, Vec<T>)>,
    pub count: u64,
}

impl<T: Clone> OutPort<T> {
    fn blocked(&self) -> bool {
        self.links.iter().any(|(_, p)| !p.is_empty())
    }

    fn send(&mut self, batch: Vec<T>) {
        if batch.is_empty() {
            return;
        }
        self.count += batch.len() as u64;
        let n = self.links.len();
        if n == 0 {
            return;
        }
        let mut batch = Some(batch);
        for (i, (chan, pending)) in self.links.iter_mut().enumerate() {
            let b = if i + 1 == n {
                batch.take().unwrap_or_default()
            } else {
                batch.clone().unwrap_or_default()
            };
            if pending.is_empty() {
                if let Some(rest) = chan.push(b) {
                    *pending = rest;
                }
            } else {
                pending.extend(b);
            }
        }
    }

    /// Pushes what is pending; true when nothing is left.
    fn flush(&mut self) -> bool {
        let mut clear = true;
        for (chan, pending) in &mut self.links {
            if !pending.is_empty() {
                if let Some(rest) = chan.push(std::mem::take(pending)) {
                    *pending = rest;
                    clear = false;
                }
            }
        }
        clear
    }

    fn close(&self, end: End) {
        for (chan, _) in &self.links {
            chan.close(end);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Starting,
    Running,
    Finishing,
    Done,
}

/// Everything the actor needs besides the operator itself.
pub(crate) struct Wiring<O: Operator> {
    pub id: usize,
    pub name: Arc<str>,
    pub inputs: Vec<InPort<O::In>>,
    pub outputs: Vec<OutPort<O::Out>>,
    pub cycle: Option<Arc<CycleCounter>>,
    pub run: Arc<RunShared>,
    /// A source fed from outside the graph: it stops, like other sources, when the run fails.
    pub channel_source: bool,
    /// In-place restarts after a failure (none: a failure ends the run).
    pub restart: Option<OpRestart>,
    /// Where a restarted worker's operator resumes (see [`crate::checkpoint`]).
    pub restore: Option<NodeCkpt>,
    /// Tasks feeding this operator's inputs from outside (ring readers), run in its context.
    pub feeds: Vec<crate::pipeline::BoundDriver>,
}

/// What an operator restarted in place has to do again: process this batch of input `port`.
/// (Sources are not restarted in place: a source's position is restored only into a fresh
/// instance, so a failing source ends the run like before.)
enum Retry<T> {
    Batch(usize, Vec<T>),
}

/// The actix actor running one operator.
pub(crate) struct OpActor<O: Operator> {
    op: Box<O>,
    w: Wiring<O>,
    out: Outputs<O::Out>,
    phase: Phase,
    cycle_ended: bool,
    /// Elements taken from the inputs so far (the live status of a sink).
    consumed: u64,
    /// Work to do again after an in-place restart, and when.
    retry: Option<(Retry<O::In>, Instant)>,
    /// In-place restarts: the intensity limit and the backoff.
    budget: RestartBudget,
    /// Calls of `on_batch` / `generate` so far (where fault injection plans its panics).
    calls: u64,
    /// Checkpoints: the process's pause, and this actor's "holds work" flag.
    quiesce: Option<(Arc<Quiesce>, Arc<AtomicBool>)>,
    /// Wakes this actor (set once it started).
    waker: Option<Waker>,
    /// The timer of a source that waits between elements (made at its first wait; `Err` when
    /// the OS gave none, and tokio's timers serve).
    pacer: Option<Result<crate::pacer::Pacer, ()>>,
    /// Memory for the copy of each batch kept for a restart in place (empty between batches).
    spare: Vec<O::In>,
    /// Whether a feed task is being polled in this actor, and whether it woke the actor.
    direct: Arc<AtomicU8>,
    /// Feed tasks still running in this actor's context: it stops only once they are done.
    feeding: usize,
    /// At most this many elements of an input batch per call (see [`OpActor::adapt_take`]).
    take_limit: usize,
}

/// Elements an operator is first given per call: the limit doubles while its outputs stay
/// within [`OUTPUT_BATCH`] elements and [`crate::operator::SOURCE_BATCH_BYTES`] bytes.
const FIRST_TAKE: usize = 64;
/// Output elements per call beyond which an operator is given fewer input elements.
const OUTPUT_BATCH: usize = 8192;

/// About how many bytes of strings, arrays and maps `batch` holds, from its first and last
/// elements (0 for elements other than `Value`s): enough to see an operator whose outputs
/// are much larger than its inputs.
fn estimate_bytes<T: 'static>(batch: &[T]) -> usize {
    match crate::value::as_values(batch) {
        Some([first, .., last]) => first
            .heap_bytes()
            .max(last.heap_bytes())
            .saturating_mul(batch.len()),
        Some([one]) => one.heap_bytes(),
        _ => 0,
    }
}

/// [`OpActor::direct`]: no feed task is being polled; a wake-up is a mailbox message.
const DIRECT_IDLE: u8 = 0;
/// A feed task is being polled: a wake-up only notes itself, and the actor pumps after it.
const DIRECT_INSIDE: u8 = 1;
/// As [`DIRECT_INSIDE`], and a wake-up came.
const DIRECT_WOKEN: u8 = 2;

/// A task feeding an actor's inputs from outside the graph (a ring reader), polled inside the
/// actor's context: what it pushes into the actor's links is handled right after, in the same
/// poll, instead of through a wake-up message and another scheduling round.
struct Feeding {
    task: crate::pipeline::FeedTask,
    /// Counted in the actor's `feeding` (it keeps the actor alive): a ring reader, which also
    /// feeds other consumers. An operator's own task ([`Operator::take_task`]) is not.
    counted: bool,
}

impl<O: Operator> ActorFuture<OpActor<O>> for Feeding {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut OpActor<O>,
        ctx: &mut Context<OpActor<O>>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        act.direct.store(DIRECT_INSIDE, Ordering::Release);
        let r = this.task.as_mut().poll(task);
        if act.direct.swap(DIRECT_IDLE, Ordering::AcqRel) == DIRECT_WOKEN {
            act.on_wake(ctx);
        }
        if r.is_ready() && this.counted {
            act.feeding -= 1;
            if act.phase == Phase::Done {
                // The operator finished before the feed did (it failed, or the run stopped).
                ctx.stop();
            }
        }
        r
    }
}

impl<O: Operator> OpActor<O> {
    pub(crate) fn new(op: O, mut w: Wiring<O>) -> Self {
        let n = w.outputs.len();
        let restore = w.restore.take();
        let quiesce = w
            .run
            .quiesce()
            .map(|q| (q, Arc::new(AtomicBool::new(false))));
        let mut a = OpActor {
            op: Box::new(op),
            w,
            out: Outputs::new(n),
            phase: Phase::Starting,
            consumed: 0,
            cycle_ended: false,
            retry: None,
            budget: RestartBudget::default(),
            calls: 0,
            quiesce,
            waker: None,
            pacer: None,
            spare: Vec::new(),
            direct: Arc::new(AtomicU8::new(DIRECT_IDLE)),
            feeding: 0,
            take_limit: FIRST_TAKE,
        };
        if let Some(c) = restore {
            a.resume_from(c);
        }
        a
    }

    /// Puts the operator where a checkpoint left it: its state, ended inputs and counts; it
    /// does not start again, and one that had finished only closes its outputs.
    fn resume_from(&mut self, c: NodeCkpt) {
        if let Some(s) = &c.state {
            if let Err(e) = self.op.restore(s) {
                tracing::error!(operator = %self.w.name, "cannot restore the checkpoint: {}", e.message);
                self.w.run.fail(self.w.id, &self.w.name, e);
                return;
            }
        }
        for (p, ended) in self.w.inputs.iter_mut().zip(&c.ended) {
            if *ended {
                p.ended = true;
                p.chan.disconnect_consumer();
            }
        }
        for (p, n) in self.w.outputs.iter_mut().zip(&c.counts) {
            p.count = *n;
        }
        self.consumed = c.consumed;
        self.phase = if c.done {
            Phase::Finishing
        } else {
            Phase::Running
        };
    }

    /// This operator's part of a checkpoint (taken at a quiet point).
    fn checkpoint(&self) -> OpResult<NodeCkpt> {
        Ok(NodeCkpt {
            state: self.op.snapshot()?,
            ended: self.w.inputs.iter().map(|p| p.ended).collect(),
            done: self.phase == Phase::Done,
            counts: self.w.outputs.iter().map(|p| p.count).collect(),
            consumed: self.consumed,
        })
    }

    /// Fault injection: panics (inside the guard) when a panic is planned for this call.
    fn chaos(due: bool, call: u64) {
        if due {
            panic!("chaos: injected panic at call {call}");
        }
    }

    /// Runs `on_batch`; with a restart policy, a failure (not a data error) puts the state back
    /// as it was before the batch and schedules the batch again. Ok(false): deferred.
    fn process(
        &mut self,
        ctx: &mut Context<Self>,
        port: usize,
        mut b: Vec<O::In>,
    ) -> OpResult<bool> {
        if self.w.restart.is_none() {
            self.guarded(|op, out| op.on_batch(port, b, out))?;
            return Ok(true);
        }
        let saved = self.op.snapshot()?;
        self.calls += 1;
        let (call, panic_due) = (
            self.calls,
            crate::recovery::panic_due(&self.w.name, self.calls),
        );
        if self.op.reads_batches() {
            // The operator leaves the batch as it was when it fails: no copy is kept.
            if self.out.len() == 1 {
                // The memory of the last batch read holds this one's output.
                reuse_as(&mut self.spare, self.out.port_mut(0));
            }
            return match self.guarded(|op, out| {
                Self::chaos(panic_due, call);
                op.on_batch_ref(port, &b, out)
            }) {
                Ok(()) => {
                    crate::value::clear_batch(&mut b);
                    self.spare = b;
                    Ok(true)
                }
                Err(e) if e.data_error => Err(e),
                Err(e) => self.restart_in_place(ctx, e, saved, Retry::Batch(port, b)),
            };
        }
        let mut copy = std::mem::take(&mut self.spare);
        let scalars = copy_batch_into(&b, &mut copy);
        match self.guarded(|op, out| {
            Self::chaos(panic_due, call);
            op.on_batch(port, b, out)
        }) {
            Ok(()) => {
                // Kept for the next batch's copy (emptied: it holds nothing alive meanwhile).
                if scalars {
                    forget_scalars(&mut copy);
                } else {
                    crate::value::clear_batch(&mut copy);
                }
                self.spare = copy;
                Ok(true)
            }
            Err(e) if e.data_error => Err(e),
            Err(e) => self.restart_in_place(ctx, e, saved, Retry::Batch(port, copy)),
        }
    }

    /// The operator failed with `e` on the work `again`: undo the attempt (its outputs, its
    /// state) and schedule `again` after the backoff, unless restarts ran out (then the error,
    /// after one last attempt that lets what preceded the failing element through).
    fn restart_in_place(
        &mut self,
        ctx: &mut Context<Self>,
        e: OpError,
        saved: Option<Vec<u8>>,
        again: Retry<O::In>,
    ) -> OpResult<bool> {
        let Some(policy) = self.w.restart else {
            return Err(e);
        };
        for p in 0..self.out.len() {
            let _ = self.out.take(p);
        }
        if let Some(s) = &saved {
            if let Err(r) = self.op.restore(s) {
                tracing::warn!(operator = %self.w.name, "cannot restart in place: {}", r.message);
                return Err(e);
            }
        }
        let cause = match &e.element {
            Some(el) => format!("{} (element: {el})", e.message),
            None => e.message.clone(),
        };
        let now = Instant::now();
        let delay = match self.budget.next(&policy, now) {
            Ok(d) => d,
            Err(n) => {
                let Retry::Batch(port, b) = again;
                let last = self.guarded(|op, out| op.on_batch(port, b, out));
                return match last {
                    Ok(()) => Ok(true),
                    Err(mut e) => {
                        e.message = format!(
                            "{} (restarted {n} times within {:?}, max_restarts = {}: giving up)",
                            e.message, policy.within, policy.max_restarts
                        );
                        Err(e)
                    }
                };
            }
        };
        tracing::warn!(
            operator = %self.w.name,
            restart = self.budget.recent(),
            max_restarts = policy.max_restarts,
            delay_ms = delay.as_millis() as u64,
            "{cause}; restarting the operator in place"
        );
        self.w.run.op_restarted(self.w.id, &cause);
        self.retry = Some((again, now + delay));
        ctx.notify_later(Wake, delay);
        Ok(false)
    }

    /// Does the work an in-place restart deferred, once its time has come. Ok(false): not yet
    /// (or it failed again and was deferred once more).
    fn do_retry(&mut self, ctx: &mut Context<Self>) -> OpResult<bool> {
        let Some((again, at)) = self.retry.take() else {
            return Ok(true);
        };
        if Instant::now() < at {
            // Woken early (new input): the timer wakes it again when it is time.
            self.retry = Some((again, at));
            return Ok(false);
        }
        let Retry::Batch(port, b) = again;
        let n = b.len() as i64;
        if !self.process(ctx, port, b)? {
            return Ok(false);
        }
        self.distribute();
        if self.w.inputs[port].intra {
            self.cycle_sub(n);
        }
        Ok(true)
    }

    fn guarded<R>(
        &mut self,
        f: impl FnOnce(&mut O, &mut Outputs<O::Out>) -> OpResult<R>,
    ) -> OpResult<R> {
        let (op, out) = (&mut *self.op, &mut self.out);
        crate::operator::catch_panic(|| f(op, out))
    }

    /// Bounds what one call makes from `n_in` input elements: an operator whose outputs are
    /// much larger (a map from numbers to camera frames, a flat map) is given fewer input
    /// elements per call, so that one call's output, which waits whole until its links take
    /// it, stays within about [`OUTPUT_BATCH`] elements and
    /// [`crate::operator::SOURCE_BATCH_BYTES`] bytes; otherwise the limit grows again.
    fn adapt_take(&mut self, n_in: usize) {
        let (mut n_out, mut bytes) = (0usize, 0usize);
        for i in 0..self.out.len() {
            let p = self.out.port_mut(i);
            n_out += p.len();
            bytes = bytes.saturating_add(estimate_bytes(p));
        }
        let max_bytes = crate::operator::SOURCE_BATCH_BYTES;
        if n_out > OUTPUT_BATCH || bytes > max_bytes {
            let by_count = n_in.saturating_mul(OUTPUT_BATCH) / n_out.max(1);
            let by_bytes = (n_in as u128 * max_bytes as u128 / bytes.max(1) as u128) as usize;
            self.take_limit = by_count.min(by_bytes).max(1);
        } else if n_in >= self.take_limit {
            self.take_limit = if self.take_limit >= 1 << 20 {
                usize::MAX
            } else {
                self.take_limit * 2
            };
        }
    }

    /// Moves what the operator wrote into its output links.
    fn distribute(&mut self) {
        for (i, port) in self.w.outputs.iter_mut().enumerate() {
            let b = self.out.take(i);
            port.send(b);
        }
    }

    /// How many elements a source produces per call: its smallest output link's capacity,
    /// at most [`SOURCE_BATCH`].
    fn source_batch(&self) -> usize {
        self.w
            .outputs
            .iter()
            .flat_map(|p| p.links.iter().map(|(c, _)| c.config().capacity))
            .min()
            .unwrap_or(SOURCE_BATCH)
            .clamp(1, SOURCE_BATCH)
    }

    fn blocked(&self) -> bool {
        self.w.outputs.iter().any(OutPort::blocked)
    }

    fn flush(&mut self) -> bool {
        let mut clear = true;
        for p in &mut self.w.outputs {
            clear &= p.flush();
        }
        clear
    }

    /// The operator failed: what it already produced still flows downstream, its outputs end
    /// (so everything accepted before the failure is processed and written), its inputs are
    /// let go, and the run reports the failure once it has drained.
    fn fail(&mut self, ctx: &mut Context<Self>, e: OpError) {
        tracing::debug!(operator = %self.w.name, "{}{}", e.message, e.element.as_deref().map(|el| format!(" (element: {el})")).unwrap_or_default());
        self.w.run.fail(self.w.id, &self.w.name, e);
        self.distribute();
        for p in &mut self.w.inputs {
            p.chan.disconnect_consumer();
            p.ended = true;
        }
        self.phase = Phase::Finishing;
        if let Err(e) = self.pump_inner(ctx) {
            // Already failing: only the first failure is reported.
            let _ = e;
        }
    }

    /// Removes `n` reasons for the cycle to live; ends the cycle here if it went quiet.
    fn cycle_sub(&mut self, n: i64) {
        if let Some(c) = &self.w.cycle {
            if c.sub(n) {
                self.end_cycle();
            }
        }
    }

    fn end_cycle(&mut self) {
        self.cycle_ended = true;
        for p in &mut self.w.inputs {
            if p.intra {
                p.force_end = true;
            }
        }
    }

    /// Pumps again `d` from now (a source's wait, [`Gen::Wait`]).
    fn wake_after(&mut self, d: std::time::Duration, ctx: &mut Context<Self>) {
        let pacer = self.pacer.get_or_insert_with(|| {
            crate::pacer::Pacer::new().map_err(|e| {
                tracing::debug!(operator = %self.w.name, error = %e, "no timerfd: tokio timers pace this source");
            })
        });
        let Ok(p) = pacer else {
            ctx.notify_later(Wake, d);
            return;
        };
        match p.arm(d) {
            Ok(false) => {}
            Ok(true) => {
                let fired = p.fired();
                ctx.spawn(actix::fut::wrap_future(fired).map(
                    |r: std::io::Result<()>, act: &mut Self, ctx: &mut Context<Self>| match r {
                        Ok(()) => <Self as Handler<Wake>>::handle(act, Wake, ctx),
                        Err(e) => {
                            act.drop_pacer(&e);
                            ctx.notify(Wake);
                        }
                    },
                ));
            }
            Err(e) => {
                self.drop_pacer(&e);
                ctx.notify_later(Wake, d);
            }
        }
    }

    /// The timerfd failed: tokio timers pace this source from now on.
    fn drop_pacer(&mut self, e: &std::io::Error) {
        tracing::debug!(operator = %self.w.name, error = %e, "timerfd failed: tokio timers pace this source");
        self.pacer = Some(Err(()));
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        if let Err(e) = self.pump_inner(ctx) {
            self.fail(ctx, e);
        }
        let produced = if self.w.outputs.is_empty() {
            self.consumed
        } else {
            self.w.outputs.iter().map(|p| p.count).sum()
        };
        self.w.run.set_progress(self.w.id, produced);
    }

    fn pump_inner(&mut self, ctx: &mut Context<Self>) -> OpResult {
        if self.phase == Phase::Done || !self.flush() {
            return Ok(());
        }
        if self.phase == Phase::Starting {
            self.guarded(|op, out| op.start(out))?;
            if let Some(task) = self.op.take_task() {
                ctx.spawn(Feeding {
                    task,
                    counted: false,
                });
            }
            self.distribute();
            self.phase = Phase::Running;
            self.cycle_sub(1);
            if self.blocked() {
                return Ok(());
            }
        }
        if self.phase == Phase::Running
            && (self.w.inputs.is_empty() || self.w.channel_source)
            && (self.w.run.is_failed() || self.w.run.is_stopping())
        {
            // Another operator failed, or the run is being stopped: sources stop (a source fed
            // from a channel lets its feeder go), so the rest of the pipeline drains.
            for p in &mut self.w.inputs {
                p.chan.disconnect_consumer();
                p.ended = true;
            }
            self.phase = Phase::Finishing;
        }
        if self.phase == Phase::Running {
            if self.w.inputs.is_empty() {
                if let (Some((q, _)), Some(w)) = (&self.quiesce, &self.waker) {
                    if q.paused() {
                        // A checkpoint is being taken: wait for its end.
                        q.park(w.clone());
                        return Ok(());
                    }
                }
                let max = self.source_batch();
                match self.guarded(|op, out| op.generate(out, max))? {
                    Gen::More => {
                        self.distribute();
                        if !self.blocked() {
                            ctx.notify(Wake);
                        }
                        return Ok(());
                    }
                    Gen::Wait(d) => {
                        self.distribute();
                        self.wake_after(d, ctx);
                        return Ok(());
                    }
                    Gen::Done => {
                        self.distribute();
                        self.phase = Phase::Finishing;
                    }
                }
            } else {
                self.consume(ctx)?;
            }
        }
        if self.phase == Phase::Finishing && self.flush() {
            let end = End {
                cycle: self.cycle_ended,
            };
            for p in &self.w.outputs {
                p.close(end);
            }
            for p in &self.w.inputs {
                if !p.chan.is_closed() || !p.chan.is_empty() {
                    // A cycle ended while data was still on its way here: say so, and let
                    // producers that still push go on without waiting for us.
                    let n = p.chan.disconnect_consumer();
                    if n > 0 {
                        tracing::warn!(operator = %self.w.name, "{n} elements arrived after the feedback cycle ended and were dropped");
                    }
                }
            }
            self.phase = Phase::Done;
            if let Some((q, _)) = &self.quiesce {
                match self.checkpoint() {
                    Ok(c) => q.node_done(self.w.id, c),
                    Err(e) => {
                        tracing::warn!(operator = %self.w.name, "no final checkpoint: {}", e.message)
                    }
                }
            }
            let counts = self.w.outputs.iter().map(|p| p.count).collect();
            self.w.run.node_done(self.w.id, counts, self.op.end_note());
            ctx.stop();
        }
        Ok(())
    }

    fn consume(&mut self, ctx: &mut Context<Self>) -> OpResult {
        if !self.do_retry(ctx)? || self.blocked() {
            return Ok(());
        }
        let mut budget = BATCHES_PER_WAKE;
        loop {
            let mut progressed = false;
            for port in 0..self.w.inputs.len() {
                if self.w.inputs[port].ended {
                    continue;
                }
                match self.w.inputs[port].chan.take_up_to(self.take_limit) {
                    Recv::Batch(b) => {
                        progressed = true;
                        let n = b.len() as i64;
                        self.consumed += n as u64;
                        if !self.process(ctx, port, b)? {
                            // Restarted in place: the batch is done again after the backoff.
                            return Ok(());
                        }
                        self.adapt_take(n as usize);
                        self.distribute();
                        if self.w.inputs[port].intra {
                            self.cycle_sub(n);
                        }
                        if self.blocked() {
                            return Ok(());
                        }
                    }
                    Recv::End(end) => {
                        progressed = true;
                        self.end_port(port, end)?;
                    }
                    Recv::Empty => {
                        if self.w.inputs[port].force_end {
                            progressed = true;
                            self.end_port(port, End { cycle: true })?;
                        }
                    }
                }
            }
            if self.w.inputs.iter().all(|p| p.ended) {
                self.guarded(|op, out| op.finish(out))?;
                self.distribute();
                self.phase = Phase::Finishing;
                return Ok(());
            }
            if !progressed {
                return Ok(());
            }
            budget -= 1;
            if budget == 0 {
                ctx.notify(Wake);
                return Ok(());
            }
        }
    }

    fn end_port(&mut self, port: usize, end: End) -> OpResult {
        let p = &mut self.w.inputs[port];
        p.ended = true;
        let intra = p.intra;
        if end.cycle && intra && !self.cycle_ended {
            self.end_cycle();
        }
        self.guarded(|op, out| op.on_end(port, out))?;
        self.distribute();
        if !intra {
            self.cycle_sub(1);
        }
        Ok(())
    }
}

impl<O: Operator> Actor for OpActor<O> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        if let Some((q, holding)) = &self.quiesce {
            let inputs: Vec<_> = self.w.inputs.iter().map(|p| p.chan.clone()).collect();
            q.register_node(
                self.w.id,
                addr.clone().recipient(),
                holding.clone(),
                Box::new(move || inputs.iter().all(|c| c.is_empty())),
            );
        }
        let direct = self.direct.clone();
        let waker: Waker = Arc::new(move || {
            // Inside a feed task's poll the actor pumps right after it: note the wake-up only.
            // The exchange fails when no feed task is being polled (or one noted it already).
            if direct
                .compare_exchange(
                    DIRECT_INSIDE,
                    DIRECT_WOKEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err_and(|s| s == DIRECT_IDLE)
            {
                addr.do_send(Wake);
            }
        });
        self.waker = Some(waker.clone());
        for p in &self.w.inputs {
            p.chan.set_consumer_waker(waker.clone());
        }
        for p in &self.w.outputs {
            for (chan, _) in &p.links {
                chan.set_producer_waker(waker.clone());
            }
        }
        for driver in std::mem::take(&mut self.w.feeds) {
            self.feeding += 1;
            ctx.spawn(Feeding {
                task: driver(),
                counted: true,
            });
        }
        ctx.notify(Wake);
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        // A feed task also feeds this stream's other consumers: it runs to its end (and
        // stops the actor then, see `Feeding`).
        if self.feeding > 0 {
            Running::Continue
        } else {
            Running::Stop
        }
    }
}

impl<O: Operator> Handler<Wake> for OpActor<O> {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.on_wake(ctx);
    }
}

impl<O: Operator> OpActor<O> {
    /// Runs the operator on what is there, then records whether it holds work (checkpoints).
    fn on_wake(&mut self, ctx: &mut Context<Self>) {
        self.pump(ctx);
        if let Some((_, holding)) = &self.quiesce {
            holding.store(
                self.retry.is_some() || (self.phase != Phase::Done && self.blocked()),
                Ordering::Release,
            );
        }
    }
}

impl<O: Operator> Handler<TakeCheckpoint> for OpActor<O> {
    type Result = ();

    fn handle(&mut self, m: TakeCheckpoint, _: &mut Context<Self>) {
        let _ = m.0.send(self.checkpoint());
    }
}

#[cfg(test)]
mod copy_tests {
    use super::{copy_batch_into, forget_scalars};
    use crate::Value;

    #[test]
    fn a_kept_copy_is_exactly_the_batch_whatever_the_buffer_held() {
        let scalars = vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::Null,
            Value::Bool(true),
        ];
        let mixed = vec![Value::Str("a".into()), Value::Int(7)];
        // Reused buffers: longer, shorter, holding strings, holding scalars.
        let mut dst = vec![Value::Str("stale".into()); 9];
        assert!(copy_batch_into(&scalars, &mut dst), "scalars");
        assert_eq!(dst, scalars);
        assert!(!copy_batch_into(&mixed, &mut dst), "a string is no scalar");
        assert_eq!(dst, mixed);
        assert!(copy_batch_into(&scalars[..1].to_vec(), &mut dst));
        assert_eq!(dst, vec![Value::Int(1)]);
        forget_scalars(&mut dst);
        assert!(dst.is_empty());
        // Not Values: copied element by element.
        let mut ints = vec![9u64; 3];
        assert!(!copy_batch_into(&vec![1u64, 2], &mut ints));
        assert_eq!(ints, vec![1, 2]);
    }
}

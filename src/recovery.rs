//! What a run keeps across restarts: one 64-bit slot per operator, in shared memory that the
//! supervisor creates once per run and hands to every worker it starts, again and again.
//!
//! A restart replays the pipeline from its replayable sources (see `supervisor::restart`). Two
//! things must not start over with it:
//! - what a sink that cannot rewind (standard output, a command's input) has already written:
//!   [`SkipWritten`] counts it in the sink's slot and skips that many elements after a restart;
//! - the clock of a paced source: its slot holds the time of its first element, so a
//!   restarted source emits what is already due at once and keeps its original schedule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::operator::{load_state, save_state, Gen, OpResult, Operator, Outputs};

/// One shared 64-bit cell of recovery state (a sink's written count, a source's start time).
#[derive(Clone)]
pub struct Slot {
    cell: *const AtomicU64,
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: the cell is an atomic that lives as long as `_owner`; atomics may be shared.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl Slot {
    /// A slot in this process's memory (for tests and single-process runs).
    pub fn local() -> Self {
        let owner = Arc::new(AtomicU64::new(0));
        Slot {
            cell: Arc::as_ptr(&owner),
            _owner: owner,
        }
    }

    /// A slot at `cell`, kept alive by `owner`.
    ///
    /// # Safety
    /// `cell` must point to an aligned `AtomicU64` that stays valid as long as `owner` lives.
    pub unsafe fn shared(cell: *const AtomicU64, owner: Arc<dyn Send + Sync>) -> Self {
        Slot {
            cell,
            _owner: owner,
        }
    }

    fn cell(&self) -> &AtomicU64 {
        // SAFETY: see the constructors.
        unsafe { &*self.cell }
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.cell().load(Ordering::Acquire)
    }

    /// Stores `v`.
    pub fn set(&self, v: u64) {
        self.cell().store(v, Ordering::Release)
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({})", self.get())
    }
}

/// Wraps a sink that cannot rewind its output: skips the elements an earlier attempt of the run
/// already wrote, and records in `slot` how many have been written once each batch is out.
///
/// A crash between a batch being written and the count being stored repeats that one batch.
/// Its snapshot is the inner sink's with the elements seen; a restored one goes on counting
/// from there (the slot, shared across attempts, still says what was written).
pub struct SkipWritten<O> {
    inner: O,
    slot: Slot,
    /// Elements seen in this attempt.
    seen: u64,
}

impl<O> SkipWritten<O> {
    /// `inner`, skipping what `slot` says was already written.
    pub fn new(inner: O, slot: Slot) -> Self {
        SkipWritten {
            inner,
            slot,
            seen: 0,
        }
    }
}

impl<O: Operator> Operator for SkipWritten<O> {
    type In = O::In;
    type Out = O::Out;

    fn start(&mut self, out: &mut Outputs<O::Out>) -> OpResult {
        self.inner.start(out)
    }

    fn on_batch(
        &mut self,
        port: usize,
        mut batch: Vec<O::In>,
        out: &mut Outputs<O::Out>,
    ) -> OpResult {
        let done = self.slot.get();
        let n = batch.len() as u64;
        let first = self.seen;
        self.seen += n;
        if self.seen <= done {
            return Ok(());
        }
        if first < done {
            batch.drain(..(done - first) as usize);
        }
        self.inner.on_batch(port, batch, out)?;
        self.slot.set(self.seen);
        Ok(())
    }

    fn on_end(&mut self, port: usize, out: &mut Outputs<O::Out>) -> OpResult {
        self.inner.on_end(port, out)
    }

    fn finish(&mut self, out: &mut Outputs<O::Out>) -> OpResult {
        self.inner.finish(out)
    }

    fn generate(&mut self, out: &mut Outputs<O::Out>, max: usize) -> OpResult<Gen> {
        self.inner.generate(out, max)
    }

    fn end_note(&self) -> Option<String> {
        self.inner.end_note()
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let st = (self.seen, self.inner.snapshot()?);
        save_state("a sink", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (seen, inner): (u64, Option<Vec<u8>>) = load_state("a sink", state)?;
        if let Some(b) = inner {
            self.inner.restore(&b)?;
        }
        self.seen = seen;
        Ok(())
    }
}

/// Microseconds since the Unix epoch (never 0, which marks an unset slot).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
        .max(1)
}

/// Panics planned by fault injection: (operator, the call at which it panics), in this process.
static PANICS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());
/// True while some panic is planned (so that operators pay one atomic load, not a lock).
static ANY_PANIC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The environment variable that hands planned panics to a worker: `op:call;op:call`.
pub const ENV_CHAOS_PANICS: &str = "TRIBUTARY_CHAOS_PANICS";

/// Plans that operator `op` panics at its `call`-th batch (or `generate` call), once.
pub fn plan_panic(op: &str, call: u64) {
    PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((op.to_string(), call));
    ANY_PANIC.store(true, Ordering::Release);
}

/// Plans the panics listed in [`ENV_CHAOS_PANICS`], if set.
pub fn plan_panics_from_env() {
    if let Ok(v) = std::env::var(ENV_CHAOS_PANICS) {
        for item in v.split(';').filter(|s| !s.is_empty()) {
            if let Some((op, call)) = item.rsplit_once(':') {
                if let Ok(call) = call.parse() {
                    plan_panic(op, call);
                }
            }
        }
    }
}

/// True (once) if operator `op` is planned to panic at call `call`.
pub fn panic_due(op: &str, call: u64) -> bool {
    if !ANY_PANIC.load(Ordering::Acquire) {
        return false;
    }
    let mut p = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    match p.iter().position(|(o, c)| o == op && *c == call) {
        Some(i) => {
            p.swap_remove(i);
            if p.is_empty() {
                ANY_PANIC.store(false, Ordering::Release);
            }
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is given; its snapshot is how many elements that was.
    struct Rec(Arc<std::sync::Mutex<Vec<i64>>>, u64);

    impl Operator for Rec {
        type In = i64;
        type Out = i64;
        fn on_batch(&mut self, _p: usize, b: Vec<i64>, _o: &mut Outputs<i64>) -> OpResult {
            self.1 += b.len() as u64;
            self.0.lock().unwrap().extend(b);
            Ok(())
        }
        fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
            save_state("rec", &self.1).map(Some)
        }
        fn restore(&mut self, state: &[u8]) -> OpResult {
            self.1 = load_state("rec", state)?;
            Ok(())
        }
    }

    fn feed(op: &mut SkipWritten<Rec>, batches: &[&[i64]]) {
        let mut out = Outputs::new(0);
        for b in batches {
            op.on_batch(0, b.to_vec(), &mut out).unwrap();
        }
    }

    #[test]
    fn a_planned_panic_is_due_once() {
        plan_panic("recovery-test-op", 3);
        assert!(!panic_due("recovery-test-op", 2));
        assert!(panic_due("recovery-test-op", 3));
        assert!(!panic_due("recovery-test-op", 3));
    }

    #[test]
    fn a_second_attempt_writes_only_what_the_first_did_not() {
        let slot = Slot::local();
        let seen = Arc::new(std::sync::Mutex::new(vec![]));
        let input: Vec<i64> = (0..10).collect();
        // The first attempt writes 0..6, then "crashes".
        feed(
            &mut SkipWritten::new(Rec(seen.clone(), 0), slot.clone()),
            &[&input[..3], &input[3..6]],
        );
        assert_eq!(slot.get(), 6);
        // The second replays everything, in other batch sizes.
        feed(
            &mut SkipWritten::new(Rec(seen.clone(), 0), slot.clone()),
            &[&input[..4], &input[4..5], &input[5..]],
        );
        assert_eq!(*seen.lock().unwrap(), input);
        assert_eq!(slot.get(), 10);
    }

    #[test]
    fn a_restored_wrapper_forwards_to_its_sink_and_keeps_its_count() {
        let slot = Slot::local();
        let seen = Arc::new(std::sync::Mutex::new(vec![]));
        let input: Vec<i64> = (0..10).collect();
        // Writes 0..4, snapshots, writes 4..7, then "crashes".
        let mut first = SkipWritten::new(Rec(seen.clone(), 0), slot.clone());
        feed(&mut first, &[&input[..4]]);
        let snap = first.snapshot().unwrap().unwrap();
        feed(&mut first, &[&input[4..7]]);
        // Restored, it is given the rest from the snapshot's position: 4.. (what was written
        // after the snapshot is skipped by the slot's count).
        let mut second = SkipWritten::new(Rec(seen.clone(), 0), slot.clone());
        second.restore(&snap).unwrap();
        assert_eq!((second.seen, second.inner.1), (4, 4));
        feed(&mut second, &[&input[4..6], &input[6..]]);
        assert_eq!(*seen.lock().unwrap(), input);
        assert_eq!(slot.get(), 10);
        assert_eq!(second.inner.1, 7);
    }
}

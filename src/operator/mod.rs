//! The one generic operator mechanism, and IoTPy's operator families built on it.
//!
//! Every operator is an [`Operator`]: inputs, outputs, its own state, and a batch transition
//! (`on_batch`) that consumes everything available on an input at once, plus end work
//! (`on_end`, `finish`). Sources implement `generate`. The actor in `crate::actor` runs it;
//! each family module is a thin layer of constructors on the graph builder.
//!
//! Every operator can serialize its state ([`Operator::snapshot`]) and put it back into a
//! fresh instance built the same way ([`Operator::restore`]): the basis of checkpoints and
//! restarts. The closures of the Rust API are opaque: what a closure captures is not part of
//! its operator's snapshot (an operator whose only state would be in its closure has none).
//! The `_with_state` forms keep their `S` in the operator instead ([`OpState`]), where it is
//! part of the snapshot: hence `S: `[`StateType`] (serde).

use std::fmt::Debug;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::emit::Emit;

pub mod checked;
pub mod element;
pub mod exec;
pub mod list;
pub mod merge;
pub mod multi;
pub mod sink;
pub mod source;
pub mod split;
#[cfg(test)]
pub(crate) mod testkit;
pub mod timed;
pub mod window;

/// About how many bytes (of strings, arrays, maps) a source puts in one batch at most,
/// whatever its element count: large elements go a few at a time.
pub const SOURCE_BATCH_BYTES: usize = 4 << 20;

/// What a stream can carry: any cloneable, sendable, serializable value.
pub trait Element: Clone + Send + Unpin + Debug + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Unpin + Debug + Serialize + DeserializeOwned + 'static> Element for T {}

/// The failure of an operator on some input: a script error, a bad shape, a bad input line.
///
/// Serializable, so that a failure a source holds back is part of its snapshot.
#[derive(Clone, Debug, thiserror::Error, Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct OpError {
    /// What went wrong.
    pub message: String,
    /// The element being processed, as text, when known.
    pub element: Option<String>,
    /// True for a data error (a bad input line under `on_error = "fail"`): never retried.
    pub data_error: bool,
}

/// A task an operator has the runtime poll on its actor's thread ([`Operator::take_task`]).
pub type OpTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

thread_local! {
    /// How many [`catching`] calls this thread is inside.
    static CATCHING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, catching a panic that the caller handles (an operator's failure): while it runs,
/// [`panic_is_handled`] is true on this thread.
pub fn catching<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(c.get() - 1));
    r
}

/// Runs an operator's callback, turning a panic into its [`OpError`].
pub fn catch_panic<R>(f: impl FnOnce() -> OpResult<R>) -> OpResult<R> {
    catching(f).unwrap_or_else(|p| Err(OpError::from_panic(p.as_ref())))
}

/// True while a panic on this thread is caught and handled ([`catching`]); a panic anywhere
/// else is a bug of the runtime, which the binary's panic hook answers by ending the process.
pub fn panic_is_handled() -> bool {
    CATCHING.with(|c| c.get() > 0)
}

impl OpError {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        OpError {
            message: message.into(),
            element: None,
            data_error: false,
        }
    }

    /// A data error (a bad input line): the run stops and restart policies do not retry it.
    pub fn data(message: impl Into<String>) -> Self {
        OpError {
            data_error: true,
            ..OpError::new(message)
        }
    }

    /// The error for a panic caught at the operator boundary (its message, if it has one).
    pub fn from_panic(p: &(dyn std::any::Any + Send)) -> Self {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        OpError::new(format!("panicked: {msg}"))
    }

    /// Attaches the element being processed.
    pub fn with_element(mut self, e: &impl Debug) -> Self {
        if self.element.is_none() {
            self.element = Some(format!("{e:?}"));
        }
        self
    }
}

/// The result type of operator callbacks.
pub type OpResult<T = ()> = Result<T, OpError>;

/// Encodes `x` (part of an operator's snapshot) with [`crate::codec`]; `what` names the
/// operator in the error.
pub fn save_state<T: Serialize + ?Sized>(what: &str, x: &T) -> OpResult<Vec<u8>> {
    crate::codec::to_bytes(x).map_err(|e| OpError::new(format!("cannot snapshot {what}: {e}")))
}

/// Decodes a state encoded by [`save_state`]; `what` names the operator in the error.
pub fn load_state<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> OpResult<T> {
    crate::codec::from_bytes(bytes).map_err(|e| OpError::new(format!("cannot restore {what}: {e}")))
}

/// The error of `restore` on an operator that cannot resume where it was (a source that cannot
/// replay what it read, a sink whose elements live in the caller's memory).
pub fn cannot_restore(kind: &str, why: &str) -> OpError {
    OpError::new(format!("{kind}: cannot restore ({why})"))
}

/// The state the function of a stateful form carries from call to call (the `S` of
/// `map_element_with_state` and the like). The operator holds it, rather than the closure, so
/// that it is part of the operator's snapshot.
pub trait OpState: Send + 'static {
    /// The state's encoding (`None`: there is none).
    fn save(&self) -> OpResult<Option<Vec<u8>>>;
    /// Puts back a state encoded by `save`.
    fn load(&mut self, bytes: &[u8]) -> OpResult;
}

/// No state: the stateless forms.
impl OpState for () {
    fn save(&self) -> OpResult<Option<Vec<u8>>> {
        Ok(None)
    }
    fn load(&mut self, _bytes: &[u8]) -> OpResult {
        Ok(())
    }
}

/// A state that may be absent (`None`: the form is stateless; the manifest's `state`).
impl<S: Serialize + DeserializeOwned + Send + 'static> OpState for Option<S> {
    fn save(&self) -> OpResult<Option<Vec<u8>>> {
        self.as_ref()
            .map(|s| save_state("the state", s))
            .transpose()
    }
    fn load(&mut self, bytes: &[u8]) -> OpResult {
        *self = Some(load_state("the state", bytes)?);
        Ok(())
    }
}

/// The state `S` of a stateful form of the Rust API (any serde type).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FnState<S>(pub S);

impl<S: Serialize + DeserializeOwned + Send + 'static> OpState for FnState<S> {
    fn save(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("the state", &self.0).map(Some)
    }
    fn load(&mut self, bytes: &[u8]) -> OpResult {
        self.0 = load_state("the state", bytes)?;
        Ok(())
    }
}

/// What a stateful form's state type must be: serializable, so that it is part of snapshots.
pub trait StateType: Serialize + DeserializeOwned + Send + 'static {}
impl<S: Serialize + DeserializeOwned + Send + 'static> StateType for S {}

/// What a source did on one call of `generate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gen {
    /// It may have more right away: call again.
    More,
    /// Call again after this pause (pacing, or polling an external feed).
    Wait(Duration),
    /// Exhausted: the source's outputs end.
    Done,
}

/// The output buffers an operator writes into during one callback, one per output port.
pub struct Outputs<T> {
    ports: Vec<Vec<T>>,
}

impl<T> Outputs<T> {
    /// Buffers for `n` output ports.
    pub fn new(n: usize) -> Self {
        Outputs {
            ports: (0..n).map(|_| Vec::new()).collect(),
        }
    }

    /// The number of output ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// True when the operator has no outputs (a sink).
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Appends an element to port 0.
    #[inline]
    pub fn push(&mut self, x: T) {
        self.ports[0].push(x);
    }

    /// Appends an element to `port`.
    #[inline]
    pub fn push_to(&mut self, port: usize, x: T) {
        self.ports[port].push(x);
    }

    /// Appends what `e` emits to `port`.
    #[inline]
    pub fn emit(&mut self, port: usize, e: Emit<T>) {
        e.push_into(&mut self.ports[port]);
    }

    /// Hands a whole vector to `port` (no copy when the port's buffer is empty).
    #[inline]
    pub fn put_vec(&mut self, port: usize, mut v: Vec<T>) {
        let p = &mut self.ports[port];
        if p.is_empty() {
            std::mem::swap(p, &mut v);
        } else {
            p.append(&mut v);
        }
    }

    /// The buffer of `port`, to extend directly.
    #[inline]
    pub fn port_mut(&mut self, port: usize) -> &mut Vec<T> {
        &mut self.ports[port]
    }

    /// Emits entry j of `entries` on output j (split and multi results); `what` names the
    /// operator family in the error when the number of entries is not the number of outputs.
    pub fn emit_each(&mut self, what: &str, entries: Vec<Emit<T>>) -> OpResult {
        if entries.len() != self.ports.len() {
            return Err(OpError::new(format!(
                "{what}: the result has {} entries; expected {} (one per output)",
                entries.len(),
                self.ports.len()
            )));
        }
        for (p, e) in entries.into_iter().enumerate() {
            self.emit(p, e);
        }
        Ok(())
    }

    /// Takes the buffer of `port`, leaving an empty one with room for as many elements, so an
    /// operator that emits element by element does not regrow its buffer on every batch.
    pub fn take(&mut self, port: usize) -> Vec<T> {
        let n = self.ports[port].len();
        if n == 0 {
            return Vec::new();
        }
        std::mem::replace(&mut self.ports[port], Vec::with_capacity(n))
    }
}

/// An operator: the batch transition the actor runs whenever an input has data.
///
/// Inputs share one element type and outputs another (the dynamic [`crate::Value`] in
/// manifests). Implement `on_batch`; override the others as the family needs.
pub trait Operator: Send + 'static {
    /// The element type of every input.
    type In: Element;
    /// The element type of every output.
    type Out: Element;

    /// Called once before any input arrives (e.g. `prepend` emits its values here).
    fn start(&mut self, _out: &mut Outputs<Self::Out>) -> OpResult {
        Ok(())
    }

    /// Consumes one batch that arrived on input `port`.
    fn on_batch(
        &mut self,
        port: usize,
        batch: Vec<Self::In>,
        out: &mut Outputs<Self::Out>,
    ) -> OpResult {
        let _ = (batch, out);
        Err(OpError::new(format!("this operator has no input {port}")))
    }

    /// True if the operator implements [`Operator::on_batch_ref`]: the runtime then gives it
    /// batches to read, and keeps no copy of each batch for a restart in place (the batch
    /// itself is given again).
    fn reads_batches(&self) -> bool {
        false
    }

    /// Like [`Operator::on_batch`], reading the batch instead of taking it: it must be left
    /// as it was, also when the call fails. Called only when [`Operator::reads_batches`].
    fn on_batch_ref(
        &mut self,
        port: usize,
        batch: &[Self::In],
        out: &mut Outputs<Self::Out>,
    ) -> OpResult {
        self.on_batch(port, batch.to_vec(), out)
    }

    /// A task the runtime polls inside the operator's actor, on its thread, once `start`
    /// succeeded (e.g. reading a command's output into the operator's own input without a
    /// thread of its own). It is dropped when the actor stops.
    fn take_task(&mut self) -> Option<OpTask> {
        None
    }

    /// Input `port` has ended (after its last batch).
    fn on_end(&mut self, _port: usize, _out: &mut Outputs<Self::Out>) -> OpResult {
        Ok(())
    }

    /// Every input has ended: do the end work (flush windows, emit what zips hold).
    fn finish(&mut self, _out: &mut Outputs<Self::Out>) -> OpResult {
        Ok(())
    }

    /// For sources (operators without inputs): produce up to about `max` elements.
    fn generate(&mut self, _out: &mut Outputs<Self::Out>, _max: usize) -> OpResult<Gen> {
        Ok(Gen::Done)
    }

    /// A line for the end-of-run log, when the operator has something to say (e.g. what a zip discarded).
    fn end_note(&self) -> Option<String> {
        None
    }

    /// The operator's state, serialized, for a checkpoint or a restart (`None`: it has none).
    ///
    /// The state is everything that affects future outputs (window buffers, zip queues, which
    /// inputs ended, a stateful function's `S`, a source's position, what a sink wrote);
    /// derived caches are left out. Taken between callbacks; the bytes are [`crate::codec`]'s.
    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Puts back a state taken by `snapshot` (on a fresh instance built the same way).
    ///
    /// Called before `start`, which still runs and does only what the restored state has not
    /// done already (a restored `prepend` does not emit its values again; a restored
    /// `sink.file` does not truncate its file). What follows is the rest of the inputs: the
    /// outputs continue exactly where they were when the snapshot was taken. A source that
    /// cannot replay (standard input, a command, a channel) returns an error.
    fn restore(&mut self, state: &[u8]) -> OpResult {
        let _ = state;
        Ok(())
    }
}

/// A boxed operator is an operator (for builders that choose it at run time).
impl<O: Operator + ?Sized> Operator for Box<O> {
    type In = O::In;
    type Out = O::Out;

    fn start(&mut self, out: &mut Outputs<Self::Out>) -> OpResult {
        (**self).start(out)
    }

    fn on_batch(
        &mut self,
        port: usize,
        batch: Vec<Self::In>,
        out: &mut Outputs<Self::Out>,
    ) -> OpResult {
        (**self).on_batch(port, batch, out)
    }

    fn reads_batches(&self) -> bool {
        (**self).reads_batches()
    }

    fn take_task(&mut self) -> Option<OpTask> {
        (**self).take_task()
    }

    fn on_batch_ref(
        &mut self,
        port: usize,
        batch: &[Self::In],
        out: &mut Outputs<Self::Out>,
    ) -> OpResult {
        (**self).on_batch_ref(port, batch, out)
    }

    fn on_end(&mut self, port: usize, out: &mut Outputs<Self::Out>) -> OpResult {
        (**self).on_end(port, out)
    }

    fn finish(&mut self, out: &mut Outputs<Self::Out>) -> OpResult {
        (**self).finish(out)
    }

    fn generate(&mut self, out: &mut Outputs<Self::Out>, max: usize) -> OpResult<Gen> {
        (**self).generate(out, max)
    }

    fn end_note(&self) -> Option<String> {
        (**self).end_note()
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        (**self).snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        (**self).restore(state)
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    #[test]
    fn a_panic_inside_catch_panic_is_handled_and_becomes_the_operators_error() {
        assert!(!panic_is_handled());
        let seen = std::sync::atomic::AtomicBool::new(false);
        let r: OpResult<()> = catch_panic(|| {
            seen.store(panic_is_handled(), std::sync::atomic::Ordering::Relaxed);
            let inner = catching(|| panic!("inner"));
            assert!(
                inner.is_err() && panic_is_handled(),
                "nested: still handled"
            );
            panic!("boom at {}", 7)
        });
        assert!(seen.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(r.unwrap_err().message, "panicked: boom at 7");
        assert!(!panic_is_handled(), "outside again once it returned");
    }
}

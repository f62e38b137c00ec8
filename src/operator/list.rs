//! List family and low-level `iot`: functions over whole batches (`map_list`, `sink_list`),
//! and over the pending input with explicit consumption (`iot`, `iot_merge`).
//!
//! Batch boundaries are unspecified: these operators are deterministic only when their
//! functions ignore them.

use std::marker::PhantomData;

use crate::emit::Emit;
use crate::operator::{
    load_state, save_state, Element, FnState, OpError, OpResult, OpState, Operator, Outputs,
    StateType,
};
use crate::pipeline::{Graph, Stream};

/// Calls a fallible function on each batch; the vector it returns is spliced into the output.
/// `S` is the state of a stateful form (`()` for none), passed to `f` and part of the snapshot.
pub struct MapList<T, U, S, F> {
    f: F,
    state: S,
    _t: PhantomData<fn(T) -> U>,
}

impl<T, U> MapList<T, U, (), ()> {
    /// An operator calling `f` on each batch (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(mut f: G) -> MapList<T, U, (), impl FnMut(&[T], &mut ()) -> OpResult<Vec<U>>>
    where
        G: FnMut(&[T]) -> Result<Vec<U>, OpError>,
    {
        MapList::with_state((), move |b: &[T], _: &mut ()| f(b))
    }
}

impl<T, U, S, F> MapList<T, U, S, F>
where
    F: FnMut(&[T], &mut S) -> Result<Vec<U>, OpError>,
{
    /// An operator calling `f(batch, &mut state)` on each batch.
    pub fn with_state(state: S, f: F) -> Self {
        MapList {
            f,
            state,
            _t: PhantomData,
        }
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for MapList<T, U, S, F>
where
    F: FnMut(&[T], &mut S) -> Result<Vec<U>, OpError> + Send + 'static,
{
    type In = T;
    type Out = U;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        if batch.is_empty() {
            return Ok(());
        }
        let r = (self.f)(&batch, &mut self.state).map_err(|e| e.with_element(&batch))?;
        if !out.is_empty() {
            out.put_vec(0, r);
        }
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        self.state.save()
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        self.state.load(state)
    }
}

/// The `iot` family: elements wait in a pending buffer per input until the function says it
/// consumed them. `f(pending, eos, &mut state, out)` returns how many leading elements of each
/// input it consumed and writes what it emits into `out`. The snapshot holds the pending
/// elements and the state `S` (`()` for none).
pub struct Iot<T, U, S, F> {
    pending: Vec<Vec<T>>,
    f: F,
    state: S,
    discarded: usize,
    _u: PhantomData<fn() -> U>,
}

/// What an `iot` function returns: how many leading elements of each input it consumed.
type Consumed = OpResult<Vec<usize>>;

impl<T, U> Iot<T, U, (), ()> {
    /// A stateless `iot` over `n_in` inputs.
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        n_in: usize,
        mut f: G,
    ) -> Iot<T, U, (), impl FnMut(&[Vec<T>], bool, &mut (), &mut Outputs<U>) -> Consumed>
    where
        G: FnMut(&[Vec<T>], bool, &mut Outputs<U>) -> Consumed,
    {
        Iot::with_state(
            n_in,
            (),
            move |p: &[Vec<T>], eos, _: &mut (), out: &mut Outputs<U>| f(p, eos, out),
        )
    }
}

impl<T, U, S, F> Iot<T, U, S, F>
where
    F: FnMut(&[Vec<T>], bool, &mut S, &mut Outputs<U>) -> Consumed,
{
    /// An `iot` over `n_in` inputs whose function carries `state`.
    pub fn with_state(n_in: usize, state: S, f: F) -> Self {
        Iot {
            pending: (0..n_in).map(|_| Vec::new()).collect(),
            f,
            state,
            discarded: 0,
            _u: PhantomData,
        }
    }

    fn call(&mut self, eos: bool, out: &mut Outputs<U>) -> OpResult {
        let consumed = (self.f)(&self.pending, eos, &mut self.state, out)?;
        if consumed.len() != self.pending.len() {
            return Err(OpError::new(format!(
                "iot: consumed has {} entries for {} inputs",
                consumed.len(),
                self.pending.len()
            )));
        }
        for (p, c) in self.pending.iter_mut().zip(consumed) {
            if c > p.len() {
                return Err(OpError::new(format!(
                    "iot: consumed {c} but only {} elements are pending",
                    p.len()
                )));
            }
            p.drain(..c);
        }
        Ok(())
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for Iot<T, U, S, F>
where
    F: FnMut(&[Vec<T>], bool, &mut S, &mut Outputs<U>) -> Consumed + Send + 'static,
{
    type In = T;
    type Out = U;

    fn on_batch(&mut self, port: usize, mut batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        if batch.is_empty() {
            return Ok(());
        }
        let n = self.pending.len();
        let p = self
            .pending
            .get_mut(port)
            .ok_or_else(|| OpError::new(format!("iot has {n} inputs, not {}", port + 1)))?;
        if p.is_empty() {
            std::mem::swap(p, &mut batch);
        } else {
            p.append(&mut batch);
        }
        self.call(false, out)
    }

    fn finish(&mut self, out: &mut Outputs<U>) -> OpResult {
        if self.pending.iter().any(|p| !p.is_empty()) {
            self.call(true, out)?;
            self.discarded = self.pending.iter().map(Vec::len).sum();
            self.pending.iter_mut().for_each(Vec::clear);
        }
        Ok(())
    }

    fn end_note(&self) -> Option<String> {
        (self.discarded > 0).then(|| {
            format!(
                "discarded {} unconsumed elements at end-of-stream",
                self.discarded
            )
        })
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let st = (&self.pending, self.discarded, self.state.save()?);
        save_state("iot", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (pending, discarded, st): (Vec<Vec<T>>, usize, Option<Vec<u8>>) =
            load_state("iot", state)?;
        if pending.len() != self.pending.len() {
            return Err(OpError::new(format!(
                "iot: cannot restore a state of {} inputs into one of {}",
                pending.len(),
                self.pending.len()
            )));
        }
        self.pending = pending;
        self.discarded = discarded;
        if let Some(b) = st {
            self.state.load(&b)?;
        }
        Ok(())
    }
}

impl Graph {
    /// `map_list`: `f(batch)` for each batch that arrives; its result is spliced into the output.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..5i64);
    /// let y = g.map_list(&x, |b: &[i64]| b.iter().filter(|v| *v % 2 == 1).map(|v| v * 10).collect());
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![10, 30]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::map_list_with_state`] is.
    pub fn map_list<T, U, F>(&mut self, s: &Stream<T>, mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Vec<U> + Send + 'static,
    {
        self.try_map_list(s, move |b: &[T]| Ok(f(b)))
    }

    /// `map_list` with a fallible function.
    pub fn try_map_list<T, U, F>(&mut self, s: &Stream<T>, f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Result<Vec<U>, OpError> + Send + 'static,
    {
        self.add_unary("map_list", MapList::new(f), &[s])
    }

    /// Stateful `map_list`: `f(batch, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn map_list_with_state<T, U, S, F>(
        &mut self,
        s: &Stream<T>,
        state: S,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        S: StateType,
        F: FnMut(&[T], &mut S) -> Vec<U> + Send + 'static,
    {
        let op = MapList::with_state(FnState(state), move |b: &[T], st: &mut FnState<S>| {
            Ok(f(b, &mut st.0))
        });
        self.add_unary("map_list", op, &[s])
    }

    /// `sink_list`: calls `f` on each batch (side effects only).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tributary::Graph;
    /// let total = Arc::new(Mutex::new(0i64));
    /// let t2 = total.clone();
    /// let mut g = Graph::new();
    /// let x = g.source_iter(1..=4i64);
    /// g.sink_list(&x, move |b: &[i64]| *t2.lock().unwrap() += b.iter().sum::<i64>());
    /// g.run().unwrap();
    /// assert_eq!(*total.lock().unwrap(), 10);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::sink_list_with_state`] is.
    pub fn sink_list<T, F>(&mut self, s: &Stream<T>, mut f: F)
    where
        T: Element,
        F: FnMut(&[T]) + Send + 'static,
    {
        self.try_sink_list(s, move |b: &[T]| {
            f(b);
            Ok(())
        })
    }

    /// `sink_list` with a fallible function.
    pub fn try_sink_list<T, F>(&mut self, s: &Stream<T>, mut f: F)
    where
        T: Element,
        F: FnMut(&[T]) -> OpResult + Send + 'static,
    {
        let op = MapList::new(move |b: &[T]| f(b).map(|()| Vec::<T>::new()));
        self.add_sink("sink_list", op, &[s])
    }

    /// Stateful `sink_list`: `f(batch, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn sink_list_with_state<T, S, F>(&mut self, s: &Stream<T>, state: S, mut f: F)
    where
        T: Element,
        S: StateType,
        F: FnMut(&[T], &mut S) + Send + 'static,
    {
        let op = MapList::with_state(FnState(state), move |b: &[T], st: &mut FnState<S>| {
            f(b, &mut st.0);
            Ok(Vec::<T>::new())
        });
        self.add_sink("sink_list", op, &[s])
    }

    /// `iot`: `f(pending, eos)` returns `(consumed, emitted)`; the `consumed` leading elements
    /// are dropped, the rest are presented again with newer ones. Every element is first
    /// presented with `eos = false`; at end-of-stream, if elements remain unconsumed, `f` is
    /// called once more with `eos = true`, and what is still left is discarded (and logged).
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![2i64, 3, 4]);
    /// // Consume pairs, emit their products.
    /// let y = g.iot(&x, |p: &[i64], _eos| {
    ///     let n = 2 * (p.len() / 2);
    ///     (n, p[..n].chunks(2).map(|c| c[0] * c[1]).collect())
    /// });
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![6]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::iot_with_state`] is.
    pub fn iot<T, U, F>(&mut self, s: &Stream<T>, mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T], bool) -> (usize, Vec<U>) + Send + 'static,
    {
        self.try_iot(s, move |p: &[T], eos| Ok(f(p, eos)))
    }

    /// `iot` with a fallible function.
    pub fn try_iot<T, U, F>(&mut self, s: &Stream<T>, mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T], bool) -> Result<(usize, Vec<U>), OpError> + Send + 'static,
    {
        let op = Iot::new(1, move |p: &[Vec<T>], eos, out: &mut Outputs<U>| {
            let (c, v) = f(&p[0], eos)?;
            out.put_vec(0, v);
            Ok(vec![c])
        });
        self.add_unary("iot", op, &[s])
    }

    /// Stateful `iot`: `f(pending, eos, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn iot_with_state<T, U, S, F>(&mut self, s: &Stream<T>, state: S, mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        S: StateType,
        F: FnMut(&[T], bool, &mut S) -> (usize, Vec<U>) + Send + 'static,
    {
        let op = Iot::with_state(
            1,
            FnState(state),
            move |p: &[Vec<T>], eos, st: &mut FnState<S>, out: &mut Outputs<U>| {
                let (c, v) = f(&p[0], eos, &mut st.0);
                out.put_vec(0, v);
                Ok(vec![c])
            },
        );
        self.add_unary("iot", op, &[s])
    }

    /// `iot` with `n` outputs: `emitted` holds one array per output (a wrong count is an error).
    pub fn try_iot_multi<T, U, F>(&mut self, s: &Stream<T>, n: usize, mut f: F) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T], bool) -> Result<(usize, Vec<Vec<U>>), OpError> + Send + 'static,
    {
        let op = Iot::new(1, move |p: &[Vec<T>], eos, out: &mut Outputs<U>| {
            let (c, v) = f(&p[0], eos)?;
            out.emit_each("iot", v.into_iter().map(Emit::Many).collect())?;
            Ok(vec![c])
        });
        self.add_operator("iot", op, &[s], n)
    }

    /// `iot_merge`: like `iot` over several inputs; `f(pending, eos)` gets one pending slice
    /// per input and returns `(consumed per input, emitted)`.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2, 3]);
    /// let b = g.source_iter(vec![10i64, 20]);
    /// // Zip: add elements pairwise as both inputs have them.
    /// let y = g.iot_merge(&[&a, &b], |p: &[Vec<i64>], _eos| {
    ///     let n = p[0].len().min(p[1].len());
    ///     (vec![n, n], (0..n).map(|i| p[0][i] + p[1][i]).collect())
    /// });
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![11, 22]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::iot_merge_with_state`] is.
    pub fn iot_merge<T, U, F>(&mut self, ins: &[&Stream<T>], mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[Vec<T>], bool) -> (Vec<usize>, Vec<U>) + Send + 'static,
    {
        self.try_iot_merge(ins, move |p: &[Vec<T>], eos| Ok(f(p, eos)))
    }

    /// `iot_merge` with a fallible function.
    pub fn try_iot_merge<T, U, F>(&mut self, ins: &[&Stream<T>], mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[Vec<T>], bool) -> Result<(Vec<usize>, Vec<U>), OpError> + Send + 'static,
    {
        let op = Iot::new(ins.len(), move |p: &[Vec<T>], eos, out: &mut Outputs<U>| {
            let (c, v) = f(p, eos)?;
            out.put_vec(0, v);
            Ok(c)
        });
        self.add_unary("iot_merge", op, ins)
    }

    /// Stateful `iot_merge`: `f(pending, eos, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn iot_merge_with_state<T, U, S, F>(
        &mut self,
        ins: &[&Stream<T>],
        state: S,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        S: StateType,
        F: FnMut(&[Vec<T>], bool, &mut S) -> (Vec<usize>, Vec<U>) + Send + 'static,
    {
        let op = Iot::with_state(
            ins.len(),
            FnState(state),
            move |p: &[Vec<T>], eos, st: &mut FnState<S>, out: &mut Outputs<U>| {
                let (c, v) = f(p, eos, &mut st.0);
                out.put_vec(0, v);
                Ok(c)
            },
        );
        self.add_unary("iot_merge", op, ins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testkit::{
        cut, cuts, run_rr as run_batched, run_whole, run_with_restore, split_at,
    };
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    type Calls = Arc<Mutex<Vec<(Vec<i64>, bool)>>>;

    /// The catalog's pairs example, recording every call.
    fn pairs(calls: Calls) -> impl Operator<In = i64, Out = i64> {
        Iot::new(1, move |p: &[Vec<i64>], eos, out: &mut Outputs<i64>| {
            calls.lock().unwrap().push((p[0].clone(), eos));
            let n = 2 * (p[0].len() / 2);
            out.port_mut(0)
                .extend(p[0][..n].chunks(2).map(|c| c[0] * c[1]));
            Ok(vec![n])
        })
    }

    #[test]
    fn iot_pairs_example_emits_6_and_leaves_the_4() {
        let calls: Calls = Default::default();
        let mut op = pairs(calls.clone());
        let mut out = Outputs::new(1);
        op.on_batch(0, vec![2, 3, 4], &mut out).unwrap();
        op.on_end(0, &mut out).unwrap();
        op.finish(&mut out).unwrap();
        assert_eq!(out.take(0), vec![6]);
        assert_eq!(
            *calls.lock().unwrap(),
            vec![(vec![2, 3, 4], false), (vec![4], true)]
        );
        assert_eq!(
            op.end_note().as_deref(),
            Some("discarded 1 unconsumed elements at end-of-stream")
        );
    }

    #[test]
    fn iot_presents_every_element_with_eos_false_and_calls_eos_only_if_something_remains() {
        let calls: Calls = Default::default();
        let got = run_batched(
            pairs(calls.clone()),
            vec![vec![vec![1], vec![2, 3], vec![4]]],
            1,
        )
        .unwrap();
        assert_eq!(got[0], vec![2, 12]);
        let calls = calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                (vec![1], false),
                (vec![1, 2, 3], false),
                (vec![3, 4], false)
            ]
        );
    }

    #[test]
    fn iot_consuming_more_than_pending_is_an_error() {
        let op = Iot::new(1, |p: &[Vec<i64>], _, _: &mut Outputs<i64>| {
            Ok(vec![p[0].len() + 2])
        });
        let e = run_whole(op, vec![vec![1, 2, 3]], 1).unwrap_err();
        assert_eq!(e.message, "iot: consumed 5 but only 3 elements are pending");
        let op = Iot::new(2, |_: &[Vec<i64>], _, _: &mut Outputs<i64>| Ok(vec![0]));
        let e = run_whole(op, vec![vec![1], vec![2]], 1).unwrap_err();
        assert_eq!(e.message, "iot: consumed has 1 entries for 2 inputs");
    }

    #[test]
    fn iot_with_several_outputs_checks_the_emitted_arrays() {
        let op = Iot::new(1, |p: &[Vec<i64>], _, out: &mut Outputs<i64>| {
            let (ev, od): (Vec<i64>, Vec<i64>) = p[0].iter().partition(|v| *v % 2 == 0);
            out.emit_each("iot", vec![ev, od].into_iter().map(Emit::Many).collect())?;
            Ok(vec![p[0].len()])
        });
        let got = run_whole(op, vec![(0..5).collect()], 2).unwrap();
        assert_eq!(got, vec![vec![0, 2, 4], vec![1, 3]]);
        let op = Iot::new(1, |p: &[Vec<i64>], _, out: &mut Outputs<i64>| {
            out.emit_each(
                "iot",
                vec![p[0].clone()].into_iter().map(Emit::Many).collect(),
            )?;
            Ok(vec![p[0].len()])
        });
        let e = run_whole(op, vec![vec![1]], 2).unwrap_err();
        assert_eq!(
            e.message,
            "iot: the result has 1 entries; expected 2 (one per output)"
        );
    }

    fn zip_sum() -> impl Operator<In = i64, Out = i64> {
        Iot::new(2, |p: &[Vec<i64>], _, out: &mut Outputs<i64>| {
            let n = p[0].len().min(p[1].len());
            out.port_mut(0).extend((0..n).map(|i| p[0][i] + p[1][i]));
            Ok(vec![n, n])
        })
    }

    #[test]
    fn iot_merge_calls_once_more_at_the_end_with_the_unmatched_rest() {
        let eos_calls = Arc::new(Mutex::new(vec![]));
        let e2 = eos_calls.clone();
        let op = Iot::new(2, move |p: &[Vec<i64>], eos, _: &mut Outputs<i64>| {
            if eos {
                e2.lock().unwrap().push((p[0].clone(), p[1].clone()));
            }
            let n = p[0].len().min(p[1].len());
            Ok(vec![n, n])
        });
        let got = run_whole(op, vec![vec![1, 2, 3], vec![10]], 1).unwrap();
        assert!(got[0].is_empty());
        assert_eq!(*eos_calls.lock().unwrap(), vec![(vec![2, 3], vec![])]);
    }

    #[test]
    fn map_list_splices_and_sink_list_sees_every_element() {
        let op = MapList::new(|b: &[i64]| Ok(b.iter().flat_map(|v| [*v, *v]).collect()));
        let got = run_batched(op, vec![vec![vec![1, 2], vec![], vec![3]]], 1).unwrap();
        assert_eq!(got[0], vec![1, 1, 2, 2, 3, 3]);
        let op = MapList::new(|b: &[i64]| -> Result<Vec<i64>, OpError> {
            if b.contains(&3) {
                Err(OpError::new("three"))
            } else {
                Ok(vec![])
            }
        });
        let e = run_batched(op, vec![vec![vec![1], vec![2, 3]]], 1).unwrap_err();
        assert_eq!(e.element.as_deref(), Some("[2, 3]"));
    }

    #[test]
    fn graph_runs_the_list_family_and_iot_with_state() {
        let mut g = Graph::new();
        let x = g.source_iter(0..10_000i64);
        let doubled = g.map_list(&x, |b: &[i64]| b.iter().map(|v| v * 2).collect());
        let seen = Arc::new(Mutex::new(0usize));
        let s2 = seen.clone();
        g.sink_list_with_state(&x, 0usize, move |b: &[i64], n: &mut usize| {
            *n += b.len();
            *s2.lock().unwrap() = *n;
        });
        let running = g.iot_with_state(&x, 0i64, |p: &[i64], _eos, total: &mut i64| {
            *total += p.iter().sum::<i64>();
            (p.len(), vec![*total])
        });
        let (cd, cr) = (g.collect(&doubled), g.collect(&running));
        g.name_next("pairs");
        let y = g.iot(&x, |p: &[i64], _| {
            (p.len() - p.len() % 3, vec![]) as (usize, Vec<i64>)
        });
        let _ = g.collect(&y);
        let report = g.run().unwrap();
        assert_eq!(cd.take(), (0..10_000).map(|v| v * 2).collect::<Vec<_>>());
        assert_eq!(*seen.lock().unwrap(), 10_000);
        assert_eq!(cr.take().last(), Some(&(0..10_000).sum::<i64>()));
        assert!(
            report
                .notes
                .iter()
                .any(|(op, n)| op == "pairs" && n.contains("discarded 1 ")),
            "{:?}",
            report.notes
        );
    }

    proptest! {
        #[test]
        fn iot_and_map_list_do_not_depend_on_batching_when_fn_ignores_it(
            xs in prop::collection::vec(-100i64..100, 0..50), c in cuts(), c2 in cuts(),
        ) {
            let calls: Calls = Default::default();
            let whole = run_whole(pairs(calls.clone()), vec![xs.clone()], 1).unwrap();
            let split = run_batched(pairs(calls), vec![split_at(&xs, &c)], 1).unwrap();
            prop_assert_eq!(whole, split);
            let ml = || MapList::new(|b: &[i64]| Ok(b.iter().map(|v| v + 1).collect()));
            prop_assert_eq!(
                run_whole(ml(), vec![xs.clone()], 1).unwrap(),
                run_batched(ml(), vec![split_at(&xs, &c)], 1).unwrap()
            );
            let ys: Vec<i64> = xs.iter().map(|v| v * 3).collect();
            prop_assert_eq!(
                run_whole(zip_sum(), vec![xs.clone(), ys.clone()], 1).unwrap(),
                run_batched(zip_sum(), vec![split_at(&xs, &c), split_at(&ys, &c2)], 1).unwrap()
            );
        }

        #[test]
        fn list_operators_resume_from_a_snapshot(
            xs in prop::collection::vec(-100i64..100, 0..50), c in cuts(), c2 in cuts(),
            order in prop::collection::vec(0usize..2, 0..20), k in cut(),
        ) {
            let calls: Calls = Default::default();
            let one = vec![split_at(&xs, &c)];
            let (got, want) = run_with_restore(|| pairs(calls.clone()), one.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let ys: Vec<i64> = xs.iter().map(|v| v * 3).collect();
            let two = vec![split_at(&xs, &c), split_at(&ys, &c2)];
            let (got, want) = run_with_restore(zip_sum, two, &order, k, 1);
            prop_assert_eq!(got, want);
            // A stateful map_list numbering its batches, and a stateful iot (running sum,
            // consuming all but the last element).
            let numbered = || MapList::with_state(FnState(0i64), |b: &[i64], n: &mut FnState<i64>| {
                n.0 += 1;
                Ok(b.iter().map(|v| v * 1000 + n.0).collect())
            });
            let (got, want) = run_with_restore(numbered, one.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let running = || Iot::with_state(
                1,
                FnState(0i64),
                |p: &[Vec<i64>], eos, t: &mut FnState<i64>, out: &mut Outputs<i64>| {
                    let n = if eos { p[0].len() } else { p[0].len().saturating_sub(1) };
                    for v in &p[0][..n] {
                        t.0 += v;
                        out.push(t.0);
                    }
                    Ok(vec![n])
                },
            );
            let (got, want) = run_with_restore(running, one, &[], k, 1);
            prop_assert_eq!(got, want);
        }
    }
}

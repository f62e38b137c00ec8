//! Element family: one call per element (`map_element`, `filter_element`, `sink_element`,
//! `copy`, `prepend`, `exponential_smoothing`).

use std::marker::PhantomData;

use crate::emit::{Emit, IntoEmit};
use crate::operator::{
    load_state, save_state, Element, FnState, OpError, OpResult, OpState, Operator, Outputs,
    StateType,
};
use crate::pipeline::{Graph, Stream};

/// Applies a fallible function to each element; what it returns is emitted. `S` is the state
/// of a stateful form (`()` for none), passed to `f` and part of the snapshot.
pub struct MapElement<T, U, S, F> {
    f: F,
    state: S,
    _t: PhantomData<fn(T) -> U>,
}

impl<T, U> MapElement<T, U, (), ()> {
    /// An operator calling `f` on each element (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(mut f: G) -> MapElement<T, U, (), impl FnMut(T, &mut ()) -> OpResult<Emit<U>>>
    where
        G: FnMut(T) -> Result<Emit<U>, OpError>,
    {
        MapElement::with_state((), move |x, _: &mut ()| f(x))
    }
}

impl<T, U, S, F> MapElement<T, U, S, F>
where
    F: FnMut(T, &mut S) -> Result<Emit<U>, OpError>,
{
    /// An operator calling `f(x, &mut state)` on each element.
    pub fn with_state(state: S, f: F) -> Self {
        MapElement {
            f,
            state,
            _t: PhantomData,
        }
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for MapElement<T, U, S, F>
where
    F: FnMut(T, &mut S) -> Result<Emit<U>, OpError> + Send + 'static,
{
    type In = T;
    type Out = U;

    #[inline]
    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        let o = out.port_mut(0);
        o.reserve(batch.len());
        for x in batch {
            (self.f)(x, &mut self.state)?.push_into(o);
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

/// A stateless map of a reference to each element: it reads its batches, so the runtime
/// keeps no copy of them to give again after a restart in place (what a function that only
/// looks at its input, such as a conversion, needs; a large element is not copied for it).
pub struct MapRef<T, U, F> {
    f: F,
    _t: PhantomData<fn(&T) -> U>,
}

impl<T: Element, U: Element, F> Operator for MapRef<T, U, F>
where
    F: FnMut(&T) -> Result<Emit<U>, OpError> + Send + 'static,
{
    type In = T;
    type Out = U;

    fn on_batch(&mut self, port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        self.on_batch_ref(port, &batch, out)?;
        crate::value::drop_batch(batch);
        Ok(())
    }

    fn reads_batches(&self) -> bool {
        true
    }

    fn on_batch_ref(&mut self, _port: usize, batch: &[T], out: &mut Outputs<U>) -> OpResult {
        let o = out.port_mut(0);
        o.reserve(batch.len());
        for x in batch {
            (self.f)(x)?.push_into(o);
        }
        Ok(())
    }
}

/// Keeps the elements for which a predicate holds (reuses the batch in place). `S` as for
/// [`MapElement`].
pub struct FilterElement<T, S, F> {
    f: F,
    state: S,
    _t: PhantomData<fn(T)>,
}

impl<T> FilterElement<T, (), ()> {
    /// A filter keeping the elements for which `f` holds (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(mut f: G) -> FilterElement<T, (), impl FnMut(&T, &mut ()) -> OpResult<bool>>
    where
        G: FnMut(&T) -> Result<bool, OpError>,
    {
        FilterElement::with_state((), move |x: &T, _: &mut ()| f(x))
    }
}

impl<T, S, F> FilterElement<T, S, F>
where
    F: FnMut(&T, &mut S) -> Result<bool, OpError>,
{
    /// A filter deciding with `f(&x, &mut state)`.
    pub fn with_state(state: S, f: F) -> Self {
        FilterElement {
            f,
            state,
            _t: PhantomData,
        }
    }
}

impl<T: Element, S: OpState, F> Operator for FilterElement<T, S, F>
where
    F: FnMut(&T, &mut S) -> Result<bool, OpError> + Send + 'static,
{
    type In = T;
    type Out = T;

    #[inline]
    fn on_batch(&mut self, _port: usize, mut batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        let mut err = None;
        let state = &mut self.state;
        batch.retain(|x| {
            if err.is_some() {
                return false;
            }
            match (self.f)(x, state) {
                Ok(k) => k,
                Err(e) => {
                    err = Some(e.with_element(x));
                    false
                }
            }
        });
        out.put_vec(0, batch);
        err.map_or(Ok(()), Err)
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        self.state.save()
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        self.state.load(state)
    }
}

/// Copies every element of its input to each of its outputs.
pub struct Copy<T>(PhantomData<fn(T)>);

impl<T: Element> Operator for Copy<T> {
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        let n = out.len();
        for p in 1..n {
            out.port_mut(p).extend(batch.iter().cloned());
        }
        if n > 0 {
            out.put_vec(0, batch);
        }
        Ok(())
    }
}

/// Emits fixed values first, then copies its input (seeds feedback loops). Its state is
/// whether the values were emitted.
pub struct Prepend<T> {
    values: Vec<T>,
    done: bool,
}

impl<T> Prepend<T> {
    /// Emits `values`, then its input.
    pub fn new(values: Vec<T>) -> Self {
        Prepend {
            values,
            done: false,
        }
    }
}

impl<T: Element> Operator for Prepend<T> {
    type In = T;
    type Out = T;

    fn start(&mut self, out: &mut Outputs<T>) -> OpResult {
        let values = std::mem::take(&mut self.values);
        if !self.done {
            out.put_vec(0, values);
            self.done = true;
        }
        Ok(())
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        out.put_vec(0, batch);
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("prepend", &self.done).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        self.done = load_state("prepend", state)?;
        Ok(())
    }
}

impl Graph {
    /// `map_element`: emits `f(x)` for each element `x` (a value, `Emit::Skip`, or `Emit::Many`).
    ///
    /// ```
    /// use tributary::{Graph, Emit};
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![1i64, -2, 3]);
    /// let y = g.map_element(&x, |v| if v > 0 { Emit::One(v * 2) } else { Emit::Skip });
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![2, 6]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::map_element_with_state`] is.
    pub fn map_element<T, U, R, F>(&mut self, s: &Stream<T>, mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(T) -> R + Send + 'static,
    {
        self.add_unary(
            "map_element",
            MapElement::new(move |x| Ok(f(x).into_emit())),
            &[s],
        )
    }

    /// `map_element` with a fallible function: an `Err` fails the operator.
    pub fn try_map_element<T, U, F>(&mut self, s: &Stream<T>, f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(T) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        self.add_unary("map_element", MapElement::new(f), &[s])
    }

    /// `map_element` of a reference to each element ([`MapRef`]): no element is copied for
    /// a restart in place.
    pub fn try_map_element_ref<T, U, F>(&mut self, s: &Stream<T>, f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&T) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        self.add_unary("map_element", MapRef { f, _t: PhantomData }, &[s])
    }

    /// Stateful `map_element`: `f(x, &mut state)`; IoTPy's `(out, state)` form.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![1i64, 2, 3]);
    /// let running = g.map_element_with_state(&x, 0i64, |v, total| { *total += v; *total });
    /// let out = g.collect(&running);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![1, 3, 6]);
    /// ```
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn map_element_with_state<T, U, S, R, F>(
        &mut self,
        s: &Stream<T>,
        state: S,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        S: StateType,
        R: IntoEmit<U>,
        F: FnMut(T, &mut S) -> R + Send + 'static,
    {
        let op = MapElement::with_state(FnState(state), move |x, st: &mut FnState<S>| {
            Ok(f(x, &mut st.0).into_emit())
        });
        self.add_unary("map_element", op, &[s])
    }

    /// `filter_element`: keeps the elements for which `f` is true.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..6i64);
    /// let even = g.filter_element(&x, |v| v % 2 == 0);
    /// let out = g.collect(&even);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![0, 2, 4]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::filter_element_with_state`] is.
    pub fn filter_element<T, F>(&mut self, s: &Stream<T>, mut f: F) -> Stream<T>
    where
        T: Element,
        F: FnMut(&T) -> bool + Send + 'static,
    {
        self.add_unary(
            "filter_element",
            FilterElement::new(move |x: &T| Ok(f(x))),
            &[s],
        )
    }

    /// `filter_element` with a fallible predicate: an `Err` fails the operator.
    pub fn try_filter_element<T, F>(&mut self, s: &Stream<T>, f: F) -> Stream<T>
    where
        T: Element,
        F: FnMut(&T) -> Result<bool, OpError> + Send + 'static,
    {
        self.add_unary("filter_element", FilterElement::new(f), &[s])
    }

    /// Stateful `filter_element`: `f(&x, &mut state)` decides.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn filter_element_with_state<T, S, F>(
        &mut self,
        s: &Stream<T>,
        state: S,
        mut f: F,
    ) -> Stream<T>
    where
        T: Element,
        S: StateType,
        F: FnMut(&T, &mut S) -> bool + Send + 'static,
    {
        let op = FilterElement::with_state(FnState(state), move |x: &T, st: &mut FnState<S>| {
            Ok(f(x, &mut st.0))
        });
        self.add_unary("filter_element", op, &[s])
    }

    /// `copy`: `n` streams that each receive every element of `s`.
    pub fn copy<T: Element>(&mut self, s: &Stream<T>, n: usize) -> Vec<Stream<T>> {
        self.add_operator("copy", Copy(PhantomData), &[s], n)
    }

    /// `prepend`: emits `values`, then every element of `s` (seeds feedback loops).
    pub fn prepend<T: Element>(&mut self, s: &Stream<T>, values: Vec<T>) -> Stream<T> {
        self.add_unary("prepend", Prepend::new(values), &[s])
    }

    /// `exponential_smoothing`: `s = alpha*s + (1-alpha)*x` per element, starting from `initial`.
    ///
    /// `alpha` weights the previous value, as in IoTPy.
    pub fn exponential_smoothing(
        &mut self,
        s: &Stream<f64>,
        alpha: f64,
        initial: f64,
    ) -> Stream<f64> {
        self.map_element_with_state(s, initial, move |x, st| {
            *st = alpha * *st + (1.0 - alpha) * x;
            *st
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testkit::{chunks, cut, run_batched, run_with_restore, whole};
    use proptest::prelude::*;

    fn map_op() -> impl Operator<In = i64, Out = i64> {
        MapElement::new(|x: i64| {
            Ok(if x % 3 == 0 {
                Emit::Skip
            } else if x % 3 == 1 {
                Emit::One(x * 10)
            } else {
                Emit::Many(vec![x, x])
            })
        })
    }

    fn filter_op() -> impl Operator<In = i64, Out = i64> {
        FilterElement::new(|x: &i64| Ok(x % 2 == 0))
    }

    #[test]
    fn a_map_of_references_emits_as_a_map_and_leaves_its_batch_as_it_was() {
        let f = |x: &i64| {
            if *x == 7 {
                return Err(OpError::new("seven"));
            }
            Ok(match x % 3 {
                0 => Emit::Skip,
                1 => Emit::One(x * 10),
                _ => Emit::Many(vec![*x, *x]),
            })
        };
        let mut op = MapRef { f, _t: PhantomData };
        assert!(op.reads_batches());
        let got = run_batched(
            MapRef { f, _t: PhantomData },
            whole(vec![vec![0, 1, 2, 3, 4]]),
            &[],
            1,
        );
        assert_eq!(got, vec![vec![10, 2, 2, 40]]);
        let batch = vec![1, 7, 4];
        let mut out = Outputs::new(1);
        let e = op.on_batch_ref(0, &batch, &mut out).unwrap_err();
        assert_eq!(e.message, "seven");
        assert_eq!(batch, vec![1, 7, 4], "left as it was");
        assert_eq!(out.take(0), vec![10], "what came before the failure");
    }

    #[test]
    fn map_emits_nothing_one_or_many_per_element() {
        let got = run_batched(map_op(), whole(vec![vec![0, 1, 2, 3, 4]]), &[], 1);
        assert_eq!(got, vec![vec![10, 2, 2, 40]]);
    }

    #[test]
    fn a_failing_filter_keeps_what_came_before_and_names_the_element() {
        let op = FilterElement::new(|x: &i64| {
            if *x == 3 {
                Err(OpError::new("three"))
            } else {
                Ok(true)
            }
        });
        // What the operator wrote before failing stays in its outputs: the actor sends it on.
        let mut op = op;
        let mut out = Outputs::new(1);
        let e = op.on_batch(0, vec![1, 2, 3, 4], &mut out).unwrap_err();
        assert_eq!(out.take(0), vec![1, 2]);
        assert_eq!(e.element.as_deref(), Some("3"));
    }

    #[test]
    fn prepend_emits_its_values_before_any_input_even_with_no_input() {
        let got = run_batched(Prepend::new(vec![7, 8]), whole(vec![vec![]]), &[], 1);
        assert_eq!(got, vec![vec![7, 8]]);
    }

    proptest! {
        #[test]
        fn element_operators_do_not_depend_on_batching(
            xs in prop::collection::vec(-1000i64..1000, 0..300),
            sizes in prop::collection::vec(1usize..50, 1..8),
        ) {
            let batched = vec![chunks(&xs, &sizes)];
            prop_assert_eq!(
                run_batched(map_op(), batched.clone(), &[], 1),
                run_batched(map_op(), whole(vec![xs.clone()]), &[], 1)
            );
            prop_assert_eq!(
                run_batched(filter_op(), batched.clone(), &[], 1),
                run_batched(filter_op(), whole(vec![xs.clone()]), &[], 1)
            );
            prop_assert_eq!(
                run_batched(Copy::<i64>(PhantomData), batched.clone(), &[], 3),
                vec![xs.clone(), xs.clone(), xs.clone()]
            );
            let pre = || Prepend::new(vec![-1, -2]);
            let mut want = vec![-1, -2];
            want.extend(&xs);
            prop_assert_eq!(run_batched(pre(), batched, &[], 1), vec![want]);
        }

        #[test]
        fn element_operators_resume_from_a_snapshot(
            xs in prop::collection::vec(-1000i64..1000, 0..100),
            sizes in prop::collection::vec(1usize..9, 1..5),
            k in cut(),
        ) {
            let b = vec![chunks(&xs, &sizes)];
            let (got, want) = run_with_restore(map_op, b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let (got, want) = run_with_restore(filter_op, b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let (got, want) = run_with_restore(|| Copy::<i64>(PhantomData), b.clone(), &[], k, 2);
            prop_assert_eq!(got, want);
            let (got, want) = run_with_restore(|| Prepend::new(vec![-1, -2]), b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            // Running sums: the state decides every output.
            let running = || MapElement::with_state(FnState(0i64), |x: i64, s: &mut FnState<i64>| {
                s.0 += x;
                Ok(Emit::One(s.0))
            });
            let (got, want) = run_with_restore(running, b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            // Keeps an element when it is above every earlier one.
            let records = || FilterElement::with_state(FnState(i64::MIN), |x: &i64, m: &mut FnState<i64>| {
                let keep = *x > m.0;
                m.0 = m.0.max(*x);
                Ok(keep)
            });
            let (got, want) = run_with_restore(records, b, &[], k, 1);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn stateless_element_operators_have_no_snapshot_and_stateful_ones_do() {
        assert!(map_op().snapshot().unwrap().is_none());
        assert!(filter_op().snapshot().unwrap().is_none());
        let op =
            MapElement::with_state(FnState(7u8), |x: i64, _: &mut FnState<u8>| Ok(Emit::One(x)));
        let b = op.snapshot().unwrap().unwrap();
        let mut fresh =
            MapElement::with_state(FnState(0u8), |x: i64, _: &mut FnState<u8>| Ok(Emit::One(x)));
        fresh.restore(&b).unwrap();
        assert_eq!(fresh.state.0, 7);
        assert!(fresh.restore(&[1, 2, 3]).is_err());
    }
}

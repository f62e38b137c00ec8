//! Many-to-many: `multi_element` zips its inputs like `zip_map`, then splits each result
//! like `split_element` (the [`Zip`] operator with several outputs).

use crate::emit::Emit;
use crate::operator::merge::{rows, Zip};
use crate::operator::{Element, FnState, OpError, OpState, Operator, Outputs, StateType};
use crate::pipeline::{Graph, Stream};

/// The `multi_element` operator over `n` inputs: `f(row)` per row, entry j to output j.
pub fn multi_element_op<T, U, F>(n: usize, mut f: F) -> impl Operator<In = T, Out = U>
where
    T: Element,
    U: Element,
    F: FnMut(Vec<T>) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
{
    multi_element_op_with_state(n, (), move |row, _: &mut ()| f(row))
}

/// The stateful `multi_element` operator: `f(row, &mut state)` per row (the state is part of
/// the snapshot, with the zip's queues).
pub fn multi_element_op_with_state<T, U, S, F>(
    n: usize,
    state: S,
    mut f: F,
) -> impl Operator<In = T, Out = U>
where
    T: Element,
    U: Element,
    S: OpState,
    F: FnMut(Vec<T>, &mut S) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
{
    Zip::with_state(n, state, move |cols, st: &mut S, out: &mut Outputs<U>| {
        for row in rows(cols) {
            out.emit_each("multi_element", f(row, st)?)?;
        }
        Ok(())
    })
}

impl Graph {
    /// `multi_element` with `n_out` outputs: `f(xs)`, `xs` holding the i-th element of every
    /// input, returns one [`Emit`] per output. Unmatched tails are discarded at the end.
    ///
    /// ```
    /// use tributary::{Emit, Graph};
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2, 3]);
    /// let b = g.source_iter(vec![10i64, 20, 30]);
    /// let outs = g.multi_element(&[&a, &b], 2, |xs: &[i64]| {
    ///     vec![Emit::One(xs[0] + xs[1]), if xs[0] % 2 == 1 { Emit::One(xs[1]) } else { Emit::Skip }]
    /// });
    /// let (s, odd) = (g.collect(&outs[0]), g.collect(&outs[1]));
    /// g.run().unwrap();
    /// assert_eq!(s.take(), vec![11, 22, 33]);
    /// assert_eq!(odd.take(), vec![10, 30]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::multi_element_with_state`] is.
    pub fn multi_element<T, U, F>(
        &mut self,
        inputs: &[&Stream<T>],
        n_out: usize,
        mut f: F,
    ) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Vec<Emit<U>> + Send + 'static,
    {
        let op = multi_element_op(inputs.len(), move |xs: Vec<T>| Ok(f(&xs)));
        self.add_operator("multi_element", op, inputs, n_out)
    }

    /// `multi_element` with a fallible function taking the row by value: an `Err`, or a
    /// result whose length is not `n_out`, fails the operator.
    pub fn try_multi_element<T, U, F>(
        &mut self,
        inputs: &[&Stream<T>],
        n_out: usize,
        f: F,
    ) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(Vec<T>) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
    {
        self.add_operator(
            "multi_element",
            multi_element_op(inputs.len(), f),
            inputs,
            n_out,
        )
    }

    /// Stateful `multi_element`: `f(xs, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn multi_element_with_state<T, U, S, F>(
        &mut self,
        inputs: &[&Stream<T>],
        n_out: usize,
        state: S,
        mut f: F,
    ) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        S: StateType,
        F: FnMut(&[T], &mut S) -> Vec<Emit<U>> + Send + 'static,
    {
        let op = multi_element_op_with_state(
            inputs.len(),
            FnState(state),
            move |xs: Vec<T>, st: &mut FnState<S>| Ok(f(&xs, &mut st.0)),
        );
        self.add_operator("multi_element", op, inputs, n_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testkit::{
        chunks, cut, run_batched, run_with_restore, try_run_batched, whole,
    };
    use proptest::prelude::*;

    fn op(n: usize) -> impl Operator<In = i64, Out = i64> {
        multi_element_op(n, |xs: Vec<i64>| {
            let s: i64 = xs.iter().sum();
            Ok(vec![
                Emit::One(s),
                if s % 2 == 0 {
                    Emit::Many(xs)
                } else {
                    Emit::Skip
                },
            ])
        })
    }

    #[test]
    fn multi_element_zips_then_splits_and_discards_unmatched_tails() {
        let mut o = op(2);
        let mut out = Outputs::new(2);
        o.on_batch(0, vec![1, 2, 3], &mut out).unwrap();
        o.on_batch(1, vec![1, 10], &mut out).unwrap();
        o.on_end(1, &mut out).unwrap();
        o.on_end(0, &mut out).unwrap();
        o.finish(&mut out).unwrap();
        assert_eq!(out.take(0), vec![2, 12]);
        assert_eq!(out.take(1), vec![1, 1, 2, 10]);
        assert_eq!(
            o.end_note().as_deref(),
            Some("discarded 1 unmatched elements of input 0")
        );
    }

    #[test]
    fn a_multi_result_of_the_wrong_length_is_an_error() {
        let o = multi_element_op(1, |xs: Vec<i64>| Ok(vec![Emit::One(xs[0])]));
        let (_, r) = try_run_batched(o, whole(vec![vec![1]]), &[], 3);
        assert!(r.unwrap_err().message.contains("expected 3"));
    }

    #[test]
    fn multi_element_runs_end_to_end() {
        let mut g = Graph::new();
        let a = g.source_iter(vec![1i64, 2, 3]);
        let b = g.source_iter(vec![10i64, 20, 30]);
        let outs = g.multi_element_with_state(&[&a, &b], 2, 0i64, |xs: &[i64], n| {
            *n += 1;
            vec![Emit::One(xs[0] * xs[1]), Emit::One(*n)]
        });
        let (p, n) = (g.collect(&outs[0]), g.collect(&outs[1]));
        g.run().unwrap();
        assert_eq!(p.take(), vec![10, 40, 90]);
        assert_eq!(n.take(), vec![1, 2, 3]);
    }

    proptest! {
        #[test]
        fn multi_element_does_not_depend_on_batching(
            inputs in prop::collection::vec(prop::collection::vec(-100i64..100, 0..20), 1..4),
            sizes in prop::collection::vec(1usize..5, 1..6),
            order in prop::collection::vec(0usize..4, 0..30),
        ) {
            let n = inputs.len();
            let once = run_batched(op(n), whole(inputs.clone()), &[], 2);
            let split: Vec<Vec<Vec<i64>>> = inputs.iter().enumerate().map(|(i, x)| chunks(x, &sizes[i % sizes.len()..])).collect();
            let batched = run_batched(op(n), split, &order, 2);
            prop_assert_eq!(once, batched);
        }

        #[test]
        fn multi_element_resumes_from_a_snapshot(
            inputs in prop::collection::vec(prop::collection::vec(-100i64..100, 0..20), 1..4),
            sizes in prop::collection::vec(1usize..5, 1..6),
            order in prop::collection::vec(0usize..4, 0..30),
            k in cut(),
        ) {
            let n = inputs.len();
            let split: Vec<Vec<Vec<i64>>> = inputs.iter().enumerate().map(|(i, x)| chunks(x, &sizes[i % sizes.len()..])).collect();
            let (got, want) = run_with_restore(|| op(n), split.clone(), &order, k, 2);
            prop_assert_eq!(got, want);
            let counting = || multi_element_op_with_state(n, FnState(0i64), |xs: Vec<i64>, c: &mut FnState<i64>| {
                c.0 += 1;
                Ok(vec![Emit::One(c.0), Emit::One(xs.iter().sum::<i64>() + c.0)])
            });
            let (got, want) = run_with_restore(counting, split, &order, k, 2);
            prop_assert_eq!(got, want);
        }
    }
}

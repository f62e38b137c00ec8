//! Element family: one call per element (`map_element`, `filter_element`, `sink_element`,
//! `copy`, `prepend`, `exponential_smoothing`).

use std::marker::PhantomData;

use crate::emit::{Emit, IntoEmit};
use crate::operator::{Element, OpError, OpResult, Operator, Outputs};
use crate::pipeline::{Graph, Stream};

/// Applies a fallible function to each element; what it returns is emitted.
pub struct MapElement<T, U, F> {
    f: F,
    _t: PhantomData<fn(T) -> U>,
}

impl<T, U, F> MapElement<T, U, F>
where
    F: FnMut(T) -> Result<Emit<U>, OpError>,
{
    /// An operator calling `f` on each element.
    pub fn new(f: F) -> Self {
        MapElement { f, _t: PhantomData }
    }
}

impl<T: Element, U: Element, F> Operator for MapElement<T, U, F>
where
    F: FnMut(T) -> Result<Emit<U>, OpError> + Send + 'static,
{
    type In = T;
    type Out = U;

    #[inline]
    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        let o = out.port_mut(0);
        o.reserve(batch.len());
        for x in batch {
            (self.f)(x)?.push_into(o);
        }
        Ok(())
    }
}

/// Keeps the elements for which a predicate holds (reuses the batch in place).
pub struct FilterElement<T, F> {
    f: F,
    _t: PhantomData<fn(T)>,
}

impl<T: Element, F> Operator for FilterElement<T, F>
where
    F: FnMut(&T) -> Result<bool, OpError> + Send + 'static,
{
    type In = T;
    type Out = T;

    #[inline]
    fn on_batch(&mut self, _port: usize, mut batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        let mut err = None;
        batch.retain(|x| {
            if err.is_some() {
                return false;
            }
            match (self.f)(x) {
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

/// Emits fixed values first, then copies its input (seeds feedback loops).
pub struct Prepend<T> {
    values: Vec<T>,
}

impl<T: Element> Operator for Prepend<T> {
    type In = T;
    type Out = T;

    fn start(&mut self, out: &mut Outputs<T>) -> OpResult {
        out.put_vec(0, std::mem::take(&mut self.values));
        Ok(())
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        out.put_vec(0, batch);
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
    pub fn map_element_with_state<T, U, S, R, F>(
        &mut self,
        s: &Stream<T>,
        mut state: S,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        S: Send + 'static,
        R: IntoEmit<U>,
        F: FnMut(T, &mut S) -> R + Send + 'static,
    {
        self.add_unary(
            "map_element",
            MapElement::new(move |x| Ok(f(x, &mut state).into_emit())),
            &[s],
        )
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
    pub fn filter_element<T, F>(&mut self, s: &Stream<T>, mut f: F) -> Stream<T>
    where
        T: Element,
        F: FnMut(&T) -> bool + Send + 'static,
    {
        self.add_unary(
            "filter_element",
            FilterElement {
                f: move |x: &T| Ok(f(x)),
                _t: PhantomData,
            },
            &[s],
        )
    }

    /// `filter_element` with a fallible predicate: an `Err` fails the operator.
    pub fn try_filter_element<T, F>(&mut self, s: &Stream<T>, f: F) -> Stream<T>
    where
        T: Element,
        F: FnMut(&T) -> Result<bool, OpError> + Send + 'static,
    {
        self.add_unary("filter_element", FilterElement { f, _t: PhantomData }, &[s])
    }

    /// Stateful `filter_element`: `f(&x, &mut state)` decides.
    pub fn filter_element_with_state<T, S, F>(
        &mut self,
        s: &Stream<T>,
        mut state: S,
        mut f: F,
    ) -> Stream<T>
    where
        T: Element,
        S: Send + 'static,
        F: FnMut(&T, &mut S) -> bool + Send + 'static,
    {
        self.add_unary(
            "filter_element",
            FilterElement {
                f: move |x: &T| Ok(f(x, &mut state)),
                _t: PhantomData,
            },
            &[s],
        )
    }

    /// `copy`: `n` streams that each receive every element of `s`.
    pub fn copy<T: Element>(&mut self, s: &Stream<T>, n: usize) -> Vec<Stream<T>> {
        self.add_operator("copy", Copy(PhantomData), &[s], n)
    }

    /// `prepend`: emits `values`, then every element of `s` (seeds feedback loops).
    pub fn prepend<T: Element>(&mut self, s: &Stream<T>, values: Vec<T>) -> Stream<T> {
        self.add_unary("prepend", Prepend { values }, &[s])
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
    use crate::operator::testkit::{chunks, run_batched, whole};
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
        FilterElement {
            f: |x: &i64| Ok(x % 2 == 0),
            _t: PhantomData,
        }
    }

    #[test]
    fn map_emits_nothing_one_or_many_per_element() {
        let got = run_batched(map_op(), whole(vec![vec![0, 1, 2, 3, 4]]), &[], 1);
        assert_eq!(got, vec![vec![10, 2, 2, 40]]);
    }

    #[test]
    fn a_failing_filter_keeps_what_came_before_and_names_the_element() {
        let op = FilterElement {
            f: |x: &i64| {
                if *x == 3 {
                    Err(OpError::new("three"))
                } else {
                    Ok(true)
                }
            },
            _t: PhantomData,
        };
        // What the operator wrote before failing stays in its outputs: the actor sends it on.
        let mut op = op;
        let mut out = Outputs::new(1);
        let e = op.on_batch(0, vec![1, 2, 3, 4], &mut out).unwrap_err();
        assert_eq!(out.take(0), vec![1, 2]);
        assert_eq!(e.element.as_deref(), Some("3"));
    }

    #[test]
    fn prepend_emits_its_values_before_any_input_even_with_no_input() {
        let got = run_batched(Prepend { values: vec![7, 8] }, whole(vec![vec![]]), &[], 1);
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
            let pre = || Prepend { values: vec![-1, -2] };
            let mut want = vec![-1, -2];
            want.extend(&xs);
            prop_assert_eq!(run_batched(pre(), batched, &[], 1), vec![want]);
        }
    }
}

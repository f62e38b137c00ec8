//! Many-to-many: `multi_element` zips its inputs like `zip_map`, then splits each result
//! like `split_element` (the [`Zip`] operator with several outputs).

use crate::emit::Emit;
use crate::operator::merge::{rows, Zip};
use crate::operator::split::emit_split;
use crate::operator::{Element, OpError, Operator, Outputs};
use crate::pipeline::{Graph, Stream};

/// The `multi_element` operator over `n` inputs: `f(row)` per row, entry j to output j.
pub fn multi_element_op<T, U, F>(n: usize, mut f: F) -> impl Operator<In = T, Out = U>
where
    T: Element,
    U: Element,
    F: FnMut(Vec<T>) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
{
    Zip::new(n, move |cols, out: &mut Outputs<U>| {
        for row in rows(cols) {
            emit_split(f(row)?, out)?;
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
    pub fn multi_element<T, U, F>(&mut self, inputs: &[&Stream<T>], n_out: usize, mut f: F) -> Vec<Stream<U>>
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
    pub fn try_multi_element<T, U, F>(&mut self, inputs: &[&Stream<T>], n_out: usize, f: F) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(Vec<T>) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
    {
        self.add_operator("multi_element", multi_element_op(inputs.len(), f), inputs, n_out)
    }

    /// Stateful `multi_element`: `f(xs, &mut state)`.
    pub fn multi_element_with_state<T, U, S, F>(
        &mut self,
        inputs: &[&Stream<T>],
        n_out: usize,
        mut state: S,
        mut f: F,
    ) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        S: Send + 'static,
        F: FnMut(&[T], &mut S) -> Vec<Emit<U>> + Send + 'static,
    {
        let op = multi_element_op(inputs.len(), move |xs: Vec<T>| Ok(f(&xs, &mut state)));
        self.add_operator("multi_element", op, inputs, n_out)
    }
}

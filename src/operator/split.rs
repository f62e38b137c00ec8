//! Split family: one input, several outputs (`split_element`, `unzip`, `separate` alias
//! `unmix`, `timed_unzip`), all over one operator, [`SplitElement`], whose function returns one
//! [`Emit`] per output.

use std::marker::PhantomData;

use crate::emit::Emit;
use crate::operator::merge::TimedPair;
use crate::operator::{Element, FnState, OpError, OpResult, OpState, Operator, Outputs, StateType};
use crate::pipeline::{Graph, Stream};
use crate::value::Value;

/// Calls a fallible function on each element; entry j of its result goes to output j. `S` is
/// the state of a stateful form (`()` for none), its snapshot.
pub struct SplitElement<T, U, S, F> {
    f: F,
    state: S,
    _t: PhantomData<fn(T) -> U>,
}

impl<T, U> SplitElement<T, U, (), ()> {
    /// A split calling `f` on each element (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        mut f: G,
    ) -> SplitElement<T, U, (), impl FnMut(T, &mut ()) -> OpResult<Vec<Emit<U>>>>
    where
        G: FnMut(T) -> Result<Vec<Emit<U>>, OpError>,
    {
        SplitElement::with_state((), move |x, _: &mut ()| f(x))
    }
}

impl<T, U, S, F> SplitElement<T, U, S, F>
where
    F: FnMut(T, &mut S) -> Result<Vec<Emit<U>>, OpError>,
{
    /// A split calling `f(x, &mut state)` on each element.
    pub fn with_state(state: S, f: F) -> Self {
        SplitElement {
            f,
            state,
            _t: PhantomData,
        }
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for SplitElement<T, U, S, F>
where
    F: FnMut(T, &mut S) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
{
    type In = T;
    type Out = U;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        for x in batch {
            out.emit_each("split", (self.f)(x, &mut self.state)?)?;
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

/// An element `unzip` takes apart: a `Value` array, or a `Vec<T>`.
pub trait ArrayLike: Element {
    /// The entry type.
    type Item: Element;
    /// The entries (an error if the element is not an array).
    fn into_items(self) -> Result<Vec<Self::Item>, OpError>;
}

impl ArrayLike for Value {
    type Item = Value;
    fn into_items(self) -> Result<Vec<Value>, OpError> {
        match self {
            Value::Array(a) => Ok(a),
            other => Err(OpError::new(format!(
                "unzip expects an array, found a {}",
                other.type_name()
            ))
            .with_element(&other)),
        }
    }
}

impl<T: Element> ArrayLike for Vec<T> {
    type Item = T;
    fn into_items(self) -> Result<Vec<T>, OpError> {
        Ok(self)
    }
}

/// An element `separate` routes: `[j, v]` as a `Value`, or a typed `(j, v)`.
pub trait Indexed: Element {
    /// The routed value's type.
    type Item: Element;
    /// The output index and the value (an error if the element has no integer index).
    fn into_index(self) -> Result<(i64, Self::Item), OpError>;
}

impl Indexed for Value {
    type Item = Value;
    fn into_index(self) -> Result<(i64, Value), OpError> {
        match self {
            Value::Array(a) if a.len() == 2 && a[0].as_i64().is_some() => {
                let j = a[0].as_i64().unwrap_or(-1);
                Ok((j, a.into_iter().nth(1).unwrap_or_default()))
            }
            other => Err(OpError::new(format!(
                "separate expects [j, v] with an integer j, found {other}"
            ))
            .with_element(&other)),
        }
    }
}

impl<T: Element> Indexed for (usize, T) {
    type Item = T;
    fn into_index(self) -> Result<(i64, T), OpError> {
        Ok((i64::try_from(self.0).unwrap_or(i64::MAX), self.1))
    }
}

/// The `unzip` function for `n` outputs: entry j to output j; shorter emits nothing on the
/// missing outputs, longer is an error.
pub fn unzip_fn<A: ArrayLike>(n: usize) -> impl FnMut(A) -> Result<Vec<Emit<A::Item>>, OpError> {
    move |x| {
        let items = x.into_items()?;
        if items.len() > n {
            return Err(OpError::new(format!(
                "unzip: an array of {} entries for {n} outputs",
                items.len()
            ))
            .with_element(&items));
        }
        let mut v: Vec<Emit<A::Item>> = items.into_iter().map(Emit::One).collect();
        v.resize_with(n, || Emit::Skip);
        Ok(v)
    }
}

/// The `separate` function for `n` outputs: `[j, v]` emits `v` on output j.
pub fn separate_fn<I: Indexed>(n: usize) -> impl FnMut(I) -> Result<Vec<Emit<I::Item>>, OpError> {
    move |x| {
        let (j, v) = x.into_index()?;
        if j < 0 || j as u64 >= n as u64 {
            return Err(OpError::new(format!(
                "separate: index {j} is out of range for {n} outputs"
            ))
            .with_element(&(j, v)));
        }
        let mut out: Vec<Emit<I::Item>> = (0..n).map(|_| Emit::Skip).collect();
        out[j as usize] = Emit::One(v);
        Ok(out)
    }
}

/// The `timed_unzip` function for `n` outputs: `[t, [v_0, ..]]` emits `[t, v_j]` on output j
/// for each present `v_j` (null, or `None`, is absent); more entries than outputs is an error.
pub fn timed_unzip_fn<E: TimedPair>(
    n: usize,
) -> impl FnMut(E::Zipped) -> Result<Vec<Emit<E>>, OpError> {
    move |z| {
        let (t, vs) = E::unzipped(z)?;
        if vs.len() > n {
            return Err(
                OpError::new(format!("timed_unzip: {} values for {n} outputs", vs.len()))
                    .with_element(&(t, vs)),
            );
        }
        let mut out: Vec<Emit<E>> = vs
            .into_iter()
            .map(|v| v.map_or(Emit::Skip, |v| Emit::One(E::from_parts(t.clone(), v))))
            .collect();
        out.resize_with(n, || Emit::Skip);
        Ok(out)
    }
}

fn into_array<U, const N: usize>(v: Vec<Stream<U>>) -> [Stream<U>; N] {
    match v.try_into() {
        Ok(a) => a,
        Err(_) => unreachable!("add_operator returns one stream per output"),
    }
}

impl Graph {
    /// `split_element`: `f(x)` returns one [`Emit`] per output; entry j goes to output j
    /// (`Emit::Skip` emits nothing there).
    ///
    /// ```
    /// use tributary::{Emit, Graph};
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..5i64);
    /// let [even, odd] = g.split_element(&x, |v| {
    ///     if v % 2 == 0 { [Emit::One(v), Emit::Skip] } else { [Emit::Skip, Emit::One(v)] }
    /// });
    /// let (e, o) = (g.collect(&even), g.collect(&odd));
    /// g.run().unwrap();
    /// assert_eq!(e.take(), vec![0, 2, 4]);
    /// assert_eq!(o.take(), vec![1, 3]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::split_element_with_state`] is.
    pub fn split_element<T, U, F, const N: usize>(
        &mut self,
        s: &Stream<T>,
        mut f: F,
    ) -> [Stream<U>; N]
    where
        T: Element,
        U: Element,
        F: FnMut(T) -> [Emit<U>; N] + Send + 'static,
    {
        let op = SplitElement::new(move |x| Ok(Vec::from(f(x))));
        into_array(self.add_operator("split_element", op, &[s], N))
    }

    /// Stateful `split_element`: `f(x, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn split_element_with_state<T, U, S, F, const N: usize>(
        &mut self,
        s: &Stream<T>,
        state: S,
        mut f: F,
    ) -> [Stream<U>; N]
    where
        T: Element,
        U: Element,
        S: StateType,
        F: FnMut(T, &mut S) -> [Emit<U>; N] + Send + 'static,
    {
        let op = SplitElement::with_state(FnState(state), move |x, st: &mut FnState<S>| {
            Ok(Vec::from(f(x, &mut st.0)))
        });
        into_array(self.add_operator("split_element", op, &[s], N))
    }

    /// `split_element` with a number of outputs known at run time, and a fallible function:
    /// a result whose length is not `n`, or an `Err`, fails the operator.
    pub fn try_split_element<T, U, F>(&mut self, s: &Stream<T>, n: usize, f: F) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(T) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
    {
        self.add_operator("split_element", SplitElement::new(f), &[s], n)
    }

    /// `unzip` into `n` outputs: entry j of each array goes to output j (nulls included); a
    /// shorter array emits nothing on the missing outputs, a longer one fails the operator.
    /// Works on `Value` arrays and on `Vec<T>`.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![vec![1i64, 10], vec![2], vec![3, 30]]);
    /// let outs = g.unzip(&x, 2);
    /// let (a, b) = (g.collect(&outs[0]), g.collect(&outs[1]));
    /// g.run().unwrap();
    /// assert_eq!(a.take(), vec![1, 2, 3]);
    /// assert_eq!(b.take(), vec![10, 30]);
    /// ```
    pub fn unzip<A: ArrayLike>(&mut self, s: &Stream<A>, n: usize) -> Vec<Stream<A::Item>> {
        self.add_operator("unzip", SplitElement::new(unzip_fn::<A>(n)), &[s], n)
    }

    /// `separate` (alias `unmix`): `[j, v]` (typed: `(j, v)`) emits `v` on output j; a `j`
    /// that is not an integer in range fails the operator.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![(0usize, 'x'), (2, 'y'), (0, 'z')]);
    /// let outs = g.separate(&x, 3);
    /// let c: Vec<_> = outs.iter().map(|s| g.collect(s)).collect();
    /// g.run().unwrap();
    /// assert_eq!(c[0].take(), vec!['x', 'z']);
    /// assert_eq!(c[1].take(), Vec::<char>::new());
    /// assert_eq!(c[2].take(), vec!['y']);
    /// ```
    pub fn separate<I: Indexed>(&mut self, s: &Stream<I>, n: usize) -> Vec<Stream<I::Item>> {
        self.add_operator("separate", SplitElement::new(separate_fn::<I>(n)), &[s], n)
    }

    /// `unmix`: IoTPy's other name for [`Graph::separate`].
    pub fn unmix<I: Indexed>(&mut self, s: &Stream<I>, n: usize) -> Vec<Stream<I::Item>> {
        self.separate(s, n)
    }

    /// `timed_unzip` into `n` outputs, the inverse of [`Graph::timed_zip`]: `[t, [v_0, ..]]`
    /// emits `[t, v_j]` on output j for each non-null `v_j` (typed: `(t, vec![Some(v_0), ..])`
    /// emits `(t, v_j)` for each `Some`).
    ///
    /// ```
    /// use tributary::{Graph, Value};
    /// let mut g = Graph::new();
    /// let z = g.source_iter(vec![Value::from_json(r#"[1, ["a", null]]"#).unwrap()]);
    /// let outs = g.timed_unzip::<Value>(&z, 2);
    /// let (a, b) = (g.collect(&outs[0]), g.collect(&outs[1]));
    /// g.run().unwrap();
    /// assert_eq!(a.take(), vec![Value::from_json(r#"[1, "a"]"#).unwrap()]);
    /// assert!(b.take().is_empty());
    /// ```
    pub fn timed_unzip<E: TimedPair>(&mut self, s: &Stream<E::Zipped>, n: usize) -> Vec<Stream<E>> {
        self.add_operator(
            "timed_unzip",
            SplitElement::new(timed_unzip_fn::<E>(n)),
            &[s],
            n,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::merge::TimedZip;
    use crate::operator::testkit::{
        chunks, cut, run_batched, run_with_restore, try_run_batched, whole,
    };
    use proptest::prelude::*;

    fn v(s: &str) -> Value {
        Value::from_json(s).unwrap()
    }

    fn vs(lines: &[&str]) -> Vec<Value> {
        lines.iter().map(|s| v(s)).collect()
    }

    #[test]
    fn unzip_keeps_nulls_and_short_arrays_emit_nothing_on_missing_outputs() {
        let op = SplitElement::new(unzip_fn::<Value>(3));
        let got = run_batched(
            op,
            whole(vec![vs(&["[1, null, 3]", "[4]", "[]", "[null, 5, 6]"])]),
            &[],
            3,
        );
        assert_eq!(
            got,
            vec![vs(&["1", "4", "null"]), vs(&["null", "5"]), vs(&["3", "6"])]
        );
    }

    #[test]
    fn unzip_of_a_longer_array_or_a_non_array_is_an_error() {
        let op = SplitElement::new(unzip_fn::<Value>(2));
        let (got, r) = try_run_batched(op, vec![vec![vs(&["[1, 2]"]), vs(&["[1, 2, 3]"])]], &[], 2);
        assert_eq!(got, vec![vs(&["1"]), vs(&["2"])]);
        let e = r.unwrap_err();
        assert_eq!(e.message, "unzip: an array of 3 entries for 2 outputs");
        assert!(e.element.is_some());
        let (_, r) = try_run_batched(
            SplitElement::new(unzip_fn::<Value>(2)),
            whole(vec![vs(&["7"])]),
            &[],
            2,
        );
        assert!(r.unwrap_err().message.contains("expects an array"));
    }

    #[test]
    fn separate_routes_by_index_and_rejects_a_bad_index() {
        let op = SplitElement::new(separate_fn::<Value>(3));
        let got = run_batched(
            op,
            whole(vec![vs(&[
                r#"[0, "x"]"#,
                r#"[2, "y"]"#,
                r#"[0, "z"]"#,
                r#"[1, "w"]"#,
            ])]),
            &[],
            3,
        );
        assert_eq!(
            got,
            vec![vs(&[r#""x""#, r#""z""#]), vs(&[r#""w""#]), vs(&[r#""y""#])]
        );
        for bad in ["[3, 1]", "[-1, 1]", "[1.0, 1]", "[\"a\", 1]", "[1]"] {
            let op = SplitElement::new(separate_fn::<Value>(3));
            let (_, r) = try_run_batched(op, whole(vec![vs(&[bad])]), &[], 3);
            let e = r.expect_err(bad);
            assert!(e.message.contains("separate"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn timed_unzip_treats_null_as_absent_and_inverts_timed_zip() {
        let z = vs(&[
            r#"[1, ["a", null]]"#,
            r#"[2, [null, "A"]]"#,
            r#"[3, ["b", "B"]]"#,
            r#"[4, []]"#,
        ]);
        let op = SplitElement::new(timed_unzip_fn::<Value>(2));
        let got = run_batched(op, whole(vec![z.clone()]), &[], 2);
        assert_eq!(
            got,
            vec![
                vs(&[r#"[1, "a"]"#, r#"[3, "b"]"#]),
                vs(&[r#"[2, "A"]"#, r#"[3, "B"]"#])
            ]
        );
        let rezipped = run_batched(TimedZip::<Value>::new(2), whole(got), &[], 1);
        assert_eq!(rezipped[0], z[..3].to_vec());
        let (_, r) = try_run_batched(
            SplitElement::new(timed_unzip_fn::<Value>(1)),
            whole(vec![vs(&["[1, [1, 2]]"])]),
            &[],
            1,
        );
        assert!(r.unwrap_err().message.contains("2 values for 1 outputs"));
    }

    #[test]
    fn split_results_of_the_wrong_length_are_errors() {
        let op = SplitElement::new(|x: i64| Ok(vec![Emit::One(x)]));
        let (_, r) = try_run_batched(op, whole(vec![vec![1]]), &[], 2);
        assert_eq!(
            r.unwrap_err().message,
            "split: the result has 1 entries; expected 2 (one per output)"
        );
    }

    #[test]
    fn the_split_family_runs_end_to_end() {
        let mut g = Graph::new();
        let x = g.source_iter(0..7i64);
        let [even, odd] = g.split_element(&x, |v| {
            if v % 2 == 0 {
                [Emit::One(v), Emit::Skip]
            } else {
                [Emit::Skip, Emit::One(v)]
            }
        });
        let [lo, hi] = g.split_element_with_state(&x, 0i64, |v, n| {
            *n += 1;
            if v < 3 {
                [Emit::One(*n), Emit::Skip]
            } else {
                [Emit::Skip, Emit::One(*n)]
            }
        });
        let tried = g.try_split_element(&x, 1, |v| Ok(vec![Emit::Many(vec![v, v])]));
        let u = g.source_iter(vs(&[r#"[1, "a"]"#, r#"[2, "b"]"#, r#"[3, "c"]"#]));
        let unz = g.unzip(&u, 2);
        let p = g.source_iter(vec![(1usize, 'a'), (0, 'b')]);
        let sep = g.unmix(&p, 2);
        let t = g.source_iter(vec![
            (1i64, vec![Some('a'), None]),
            (2, vec![None, Some('b')]),
        ]);
        let tu = g.timed_unzip::<(i64, char)>(&t, 2);
        let c = [even, odd, lo, hi, tried[0]].map(|s| g.collect(&s));
        let cu: Vec<_> = unz.iter().map(|s| g.collect(s)).collect();
        let cs: Vec<_> = sep.iter().map(|s| g.collect(s)).collect();
        let ct: Vec<_> = tu.iter().map(|s| g.collect(s)).collect();
        g.run().unwrap();
        let got: Vec<Vec<i64>> = c.iter().map(|c| c.take()).collect();
        assert_eq!(
            got,
            vec![
                vec![0, 2, 4, 6],
                vec![1, 3, 5],
                vec![1, 2, 3],
                vec![4, 5, 6, 7],
                vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6],
            ]
        );
        assert_eq!(cu[0].take(), vs(&["1", "2", "3"]));
        assert_eq!(cu[1].take(), vs(&[r#""a""#, r#""b""#, r#""c""#]));
        assert_eq!(cs[0].take(), vec!['b']);
        assert_eq!(cs[1].take(), vec!['a']);
        assert_eq!(ct[0].take(), vec![(1, 'a')]);
        assert_eq!(ct[1].take(), vec![(2, 'b')]);
    }

    proptest! {
        #[test]
        fn splits_do_not_depend_on_batching(
            xs in prop::collection::vec(prop::collection::vec(prop::option::of(-9i64..9), 0..4), 0..30),
            sizes in prop::collection::vec(1usize..5, 1..6),
        ) {
            // unzip over Vec<Option<i64>> (None standing for null), at most 3 outputs.
            let once = run_batched(SplitElement::new(unzip_fn::<Vec<Option<i64>>>(3)), whole(vec![xs.clone()]), &[], 3);
            let batched = run_batched(SplitElement::new(unzip_fn::<Vec<Option<i64>>>(3)), vec![chunks(&xs, &sizes)], &[], 3);
            prop_assert_eq!(&once, &batched);
            // separate on (j, v) pairs made from the same data.
            let pairs: Vec<(usize, i64)> = xs.iter().map(|a| (a.len() % 3, a.iter().flatten().sum())).collect();
            let once = run_batched(SplitElement::new(separate_fn::<(usize, i64)>(3)), whole(vec![pairs.clone()]), &[], 3);
            let batched = run_batched(SplitElement::new(separate_fn::<(usize, i64)>(3)), vec![chunks(&pairs, &sizes)], &[], 3);
            prop_assert_eq!(&once, &batched);
            // timed_unzip of rows with strictly increasing times.
            let rows: Vec<(i64, Vec<Option<i64>>)> = xs.iter().cloned().enumerate().map(|(i, r)| (i as i64, r)).collect();
            let once = run_batched(SplitElement::new(timed_unzip_fn::<(i64, i64)>(3)), whole(vec![rows.clone()]), &[], 3);
            let batched = run_batched(SplitElement::new(timed_unzip_fn::<(i64, i64)>(3)), vec![chunks(&rows, &sizes)], &[], 3);
            prop_assert_eq!(&once, &batched);
            // split_element.
            let f = || SplitElement::new(|x: (i64, Vec<Option<i64>>)| Ok(vec![Emit::One(x.0), Emit::Many(x.1.into_iter().flatten().collect())]));
            let once = run_batched(f(), whole(vec![rows.clone()]), &[], 2);
            let batched = run_batched(f(), vec![chunks(&rows, &sizes)], &[], 2);
            prop_assert_eq!(once, batched);
        }

        #[test]
        fn splits_resume_from_a_snapshot(
            xs in prop::collection::vec(-50i64..50, 0..60),
            sizes in prop::collection::vec(1usize..5, 1..6),
            k in cut(),
        ) {
            let b = vec![chunks(&xs, &sizes)];
            let parity = || SplitElement::new(|x: i64| {
                Ok(if x % 2 == 0 { vec![Emit::One(x), Emit::Skip] } else { vec![Emit::Skip, Emit::One(x)] })
            });
            let (got, want) = run_with_restore(parity, b.clone(), &[], k, 2);
            prop_assert_eq!(got, want);
            // Stateful: the running maximum on output 0, new records on output 1.
            let records = || SplitElement::with_state(FnState(i64::MIN), |x: i64, m: &mut FnState<i64>| {
                let rec = x > m.0;
                m.0 = m.0.max(x);
                Ok(vec![Emit::One(m.0), if rec { Emit::One(x) } else { Emit::Skip }])
            });
            let (got, want) = run_with_restore(records, b, &[], k, 2);
            prop_assert_eq!(got, want);
        }
    }
}

//! Merge family: zips (`zip_map`, `zip_stream`, `merge_list`, the arithmetic and comparison
//! zips), `timed_zip`, and the asynchronous merges (`merge_asynch`, `blend`, `mix`, `weave`,
//! `timed_mix`).
//!
//! Every zip is a thin layer over one mechanism: a [`ZipBuffer`] (one queue per input, the
//! common prefix is popped) inside the [`Zip`] operator, which hands the popped columns to a
//! closure. `multi_element` (in `multi.rs`) is the same operator with several outputs.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::marker::PhantomData;

use crate::emit::{Emit, IntoEmit};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::operator::{
    load_state, save_state, Element, FnState, OpError, OpResult, OpState, Operator, Outputs,
    StateType,
};
use crate::pipeline::{Graph, Stream};
use crate::value::Value;

/// Per-input queues of a zip: rows are popped once every input has an element.
///
/// Once an input has ended with nothing queued, what other inputs hold or receive can never
/// be matched: it is discarded at once and counted. All of it is the zip's snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct ZipBuffer<T> {
    queues: Vec<VecDeque<T>>,
    ended: Vec<bool>,
    discarded: Vec<u64>,
}

impl<T> ZipBuffer<T> {
    /// A buffer for `n` inputs.
    pub fn new(n: usize) -> Self {
        ZipBuffer {
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            ended: vec![false; n],
            discarded: vec![0; n],
        }
    }

    /// True once some input has ended with nothing queued: no more rows can form.
    fn dead(&self) -> bool {
        self.queues
            .iter()
            .zip(&self.ended)
            .any(|(q, &e)| e && q.is_empty())
    }

    fn discard_all(&mut self) {
        for (q, d) in self.queues.iter_mut().zip(&mut self.discarded) {
            *d += q.len() as u64;
            q.clear();
        }
    }

    /// Queues a batch that arrived on input `port`.
    pub fn push(&mut self, port: usize, batch: Vec<T>) {
        if self.dead() {
            self.discarded[port] += batch.len() as u64;
        } else {
            self.queues[port].extend(batch);
        }
    }

    /// Input `port` has ended.
    pub fn end(&mut self, port: usize) {
        self.ended[port] = true;
        if self.dead() {
            self.discard_all();
        }
    }

    /// Pops the common prefix: one column (equal-length vector) per input, or `None` if empty.
    pub fn take_columns(&mut self) -> Option<Vec<Vec<T>>> {
        let k = self.queues.iter().map(VecDeque::len).min().unwrap_or(0);
        if k == 0 {
            return None;
        }
        let cols = self
            .queues
            .iter_mut()
            .map(|q| q.drain(..k).collect())
            .collect();
        if self.dead() {
            self.discard_all();
        }
        Some(cols)
    }

    /// End of every input: whatever is left is unmatched; discard and count it.
    pub fn finish(&mut self) {
        self.discard_all();
    }

    /// Elements discarded so far, per input.
    pub fn discarded(&self) -> &[u64] {
        &self.discarded
    }

    /// The end-of-run note: how many unmatched elements of which inputs were discarded.
    pub fn note(&self) -> Option<String> {
        let parts: Vec<String> = self
            .discarded
            .iter()
            .enumerate()
            .filter(|(_, &d)| d > 0)
            .map(|(i, d)| format!("discarded {d} unmatched elements of input {i}"))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Turns columns (one equal-length vector per input) into rows (one element per input).
pub fn rows<T>(cols: Vec<Vec<T>>) -> impl Iterator<Item = Vec<T>> {
    let k = cols.first().map_or(0, Vec::len);
    let mut its: Vec<_> = cols.into_iter().map(Vec::into_iter).collect();
    (0..k).map(move |_| its.iter_mut().filter_map(Iterator::next).collect())
}

/// The zip operator: pops the common prefix of its inputs and hands the columns to `f`,
/// which writes to any of the outputs. `S` is the state of a stateful form (`()` for none).
/// The snapshot holds the queues, which inputs ended, the discard counts, and the state.
pub struct Zip<T, U, S, F> {
    buf: ZipBuffer<T>,
    f: F,
    state: S,
    _u: PhantomData<fn() -> U>,
}

impl<T, U> Zip<T, U, (), ()> {
    /// A zip of `n` inputs calling `f` on each common prefix (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        n: usize,
        mut f: G,
    ) -> Zip<T, U, (), impl FnMut(Vec<Vec<T>>, &mut (), &mut Outputs<U>) -> OpResult>
    where
        G: FnMut(Vec<Vec<T>>, &mut Outputs<U>) -> OpResult,
    {
        Zip::with_state(n, (), move |cols, _: &mut (), out: &mut Outputs<U>| {
            f(cols, out)
        })
    }
}

impl<T, U, S, F> Zip<T, U, S, F>
where
    F: FnMut(Vec<Vec<T>>, &mut S, &mut Outputs<U>) -> OpResult,
{
    /// A zip of `n` inputs calling `f(columns, &mut state, out)` on each common prefix.
    pub fn with_state(n: usize, state: S, f: F) -> Self {
        Zip {
            buf: ZipBuffer::new(n),
            f,
            state,
            _u: PhantomData,
        }
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for Zip<T, U, S, F>
where
    F: FnMut(Vec<Vec<T>>, &mut S, &mut Outputs<U>) -> OpResult + Send + 'static,
{
    type In = T;
    type Out = U;

    fn on_batch(&mut self, port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        self.buf.push(port, batch);
        match self.buf.take_columns() {
            Some(cols) => (self.f)(cols, &mut self.state, out),
            None => Ok(()),
        }
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("a zip", &(&self.buf, self.state.save()?)).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (buf, st): (ZipBuffer<T>, Option<Vec<u8>>) = load_state("a zip", state)?;
        if buf.queues.len() != self.buf.queues.len() {
            return Err(OpError::new(format!(
                "cannot restore a zip of {} inputs into one of {}",
                buf.queues.len(),
                self.buf.queues.len()
            )));
        }
        self.buf = buf;
        if let Some(b) = st {
            self.state.load(&b)?;
        }
        Ok(())
    }

    fn on_end(&mut self, port: usize, _out: &mut Outputs<U>) -> OpResult {
        self.buf.end(port);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Outputs<U>) -> OpResult {
        self.buf.finish();
        Ok(())
    }

    fn end_note(&self) -> Option<String> {
        self.buf.note()
    }
}

/// The `zip_map` operator over `n` inputs: `f(row)` per row, emitted on the one output.
pub fn zip_map_op<T, U, F>(n: usize, mut f: F) -> impl Operator<In = T, Out = U>
where
    T: Element,
    U: Element,
    F: FnMut(Vec<T>) -> Result<Emit<U>, OpError> + Send + 'static,
{
    zip_map_op_with_state(n, (), move |row, _: &mut ()| f(row))
}

/// The stateful `zip_map` operator: `f(row, &mut state)` per row.
pub fn zip_map_op_with_state<T, U, S, F>(
    n: usize,
    state: S,
    mut f: F,
) -> impl Operator<In = T, Out = U>
where
    T: Element,
    U: Element,
    S: OpState,
    F: FnMut(Vec<T>, &mut S) -> Result<Emit<U>, OpError> + Send + 'static,
{
    Zip::with_state(n, state, move |cols, st: &mut S, out: &mut Outputs<U>| {
        let o = out.port_mut(0);
        for row in rows(cols) {
            f(row, st)?.push_into(o);
        }
        Ok(())
    })
}

/// The `merge_list` operator: `f(columns)` per common prefix, its result spliced.
pub fn merge_list_op<T, U, F>(n: usize, mut f: F) -> impl Operator<In = T, Out = U>
where
    T: Element,
    U: Element,
    F: FnMut(Vec<Vec<T>>) -> Result<Vec<U>, OpError> + Send + 'static,
{
    merge_list_op_with_state(n, (), move |cols, _: &mut ()| f(cols))
}

/// The stateful `merge_list` operator: `f(columns, &mut state)` per common prefix.
pub fn merge_list_op_with_state<T, U, S, F>(
    n: usize,
    state: S,
    mut f: F,
) -> impl Operator<In = T, Out = U>
where
    T: Element,
    U: Element,
    S: OpState,
    F: FnMut(Vec<Vec<T>>, &mut S) -> Result<Vec<U>, OpError> + Send + 'static,
{
    Zip::with_state(n, state, move |cols, st: &mut S, out: &mut Outputs<U>| {
        let v = f(cols, st)?;
        out.port_mut(0).extend(v);
        Ok(())
    })
}

/// Arithmetic for the `add`, `sub`, `mul`, `div` zips: integer overflow and integer division
/// by zero are errors; integer `/` truncates; `Value` mixes integers and floats as Rhai does.
pub trait ZipArith: Element {
    /// `a + b`.
    fn add(self, b: Self) -> Result<Self, String>;
    /// `a - b`.
    fn sub(self, b: Self) -> Result<Self, String>;
    /// `a * b`.
    fn mul(self, b: Self) -> Result<Self, String>;
    /// `a / b`.
    fn div(self, b: Self) -> Result<Self, String>;
}

macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl ZipArith for $t {
            fn add(self, b: Self) -> Result<Self, String> {
                self.checked_add(b).ok_or_else(|| format!("integer overflow: {self} + {b}"))
            }
            fn sub(self, b: Self) -> Result<Self, String> {
                self.checked_sub(b).ok_or_else(|| format!("integer overflow: {self} - {b}"))
            }
            fn mul(self, b: Self) -> Result<Self, String> {
                self.checked_mul(b).ok_or_else(|| format!("integer overflow: {self} * {b}"))
            }
            fn div(self, b: Self) -> Result<Self, String> {
                if b == 0 {
                    return Err(format!("division by zero: {self} / 0"));
                }
                self.checked_div(b).ok_or_else(|| format!("integer overflow: {self} / {b}"))
            }
        }
    )*};
}
arith_int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl ZipArith for $t {
            fn add(self, b: Self) -> Result<Self, String> { Ok(self + b) }
            fn sub(self, b: Self) -> Result<Self, String> { Ok(self - b) }
            fn mul(self, b: Self) -> Result<Self, String> { Ok(self * b) }
            fn div(self, b: Self) -> Result<Self, String> { Ok(self / b) }
        }
    )*};
}
arith_float!(f32, f64);

fn value_arith(
    a: Value,
    b: Value,
    sym: &str,
    int: fn(i64, i64) -> Result<i64, String>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, String> {
    match (&a, &b) {
        (Value::Int(x), Value::Int(y)) => int(*x, *y).map(Value::Int),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => Ok(Value::Float(float(x, y))),
            _ => Err(format!(
                "cannot compute {} {sym} {}: {a} {sym} {b}",
                a.type_name(),
                b.type_name()
            )),
        },
    }
}

impl ZipArith for Value {
    fn add(self, b: Self) -> Result<Self, String> {
        value_arith(self, b, "+", ZipArith::add, |x, y| x + y)
    }
    fn sub(self, b: Self) -> Result<Self, String> {
        value_arith(self, b, "-", ZipArith::sub, |x, y| x - y)
    }
    fn mul(self, b: Self) -> Result<Self, String> {
        value_arith(self, b, "*", ZipArith::mul, |x, y| x * y)
    }
    fn div(self, b: Self) -> Result<Self, String> {
        value_arith(self, b, "/", ZipArith::div, |x, y| x / y)
    }
}

/// A timestamp of a `Value` stream: an integer or a float, ordered numerically (integers
/// exactly), kept as written for the output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamp(pub Value);

impl PartialEq for Stamp {
    fn eq(&self, o: &Self) -> bool {
        self.partial_cmp(o) == Some(Ordering::Equal)
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        match (&self.0, &o.0) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }
}

/// A time with one optional value per input: what `timed_zip` emits, in typed form.
pub type TimedRow<Tm, V> = (Tm, Vec<Option<V>>);

/// An element carrying a time and a value: `[t, v]` as a [`Value`], or a typed `(Tm, T)`.
/// It fixes what the timed merges emit for it.
pub trait TimedPair: Element {
    /// The timestamp type.
    type Time: PartialOrd + Clone + Debug + Send + Serialize + DeserializeOwned + 'static;
    /// The value type.
    type V: Clone + Debug + Send + Serialize + DeserializeOwned + 'static;
    /// What `timed_zip` emits: `[t, [v_0, ..]]` (null for absent), or `(t, Vec<Option<V>>)`.
    type Zipped: Element;
    /// What `timed_mix` emits: `[t, [i, v]]`, or `(t, (i, v))`.
    type Mixed: Element;
    /// Splits the element into its time and value (an error if it is not a timed pair).
    fn into_parts(self) -> Result<(Self::Time, Self::V), OpError>;
    /// Builds an element from a time and a value.
    fn from_parts(t: Self::Time, v: Self::V) -> Self;
    /// Builds a `timed_zip` output.
    fn zipped(t: Self::Time, vs: Vec<Option<Self::V>>) -> Self::Zipped;
    /// Reads a `timed_zip` output back (for `timed_unzip`; null means absent for `Value`).
    fn unzipped(z: Self::Zipped) -> Result<TimedRow<Self::Time, Self::V>, OpError>;
    /// Builds a `timed_mix` output.
    fn mixed(t: Self::Time, i: usize, v: Self::V) -> Self::Mixed;
}

impl TimedPair for Value {
    type Time = Stamp;
    type V = Value;
    type Zipped = Value;
    type Mixed = Value;

    fn into_parts(self) -> Result<(Stamp, Value), OpError> {
        match self {
            Value::Array(a) if a.len() == 2 && a[0].as_f64().is_some() => {
                let mut it = a.into_iter();
                let t = it.next().unwrap_or_default();
                Ok((Stamp(t), it.next().unwrap_or_default()))
            }
            other => Err(OpError::new(format!(
                "expected a [t, v] pair with a numeric t, found {other}"
            ))
            .with_element(&other)),
        }
    }

    fn from_parts(t: Stamp, v: Value) -> Value {
        Value::Array(vec![t.0, v])
    }

    fn zipped(t: Stamp, vs: Vec<Option<Value>>) -> Value {
        let vs = vs.into_iter().map(Option::unwrap_or_default).collect();
        Value::Array(vec![t.0, Value::Array(vs)])
    }

    fn unzipped(z: Value) -> Result<(Stamp, Vec<Option<Value>>), OpError> {
        let (t, vs) = z.into_parts()?;
        match vs {
            Value::Array(vs) => Ok((
                t,
                vs.into_iter()
                    .map(|v| (!v.is_null()).then_some(v))
                    .collect(),
            )),
            other => Err(OpError::new(format!(
                "expected [t, [v_0, ..]], found a {} as the second entry",
                other.type_name()
            ))
            .with_element(&Value::Array(vec![t.0, other]))),
        }
    }

    fn mixed(t: Stamp, i: usize, v: Value) -> Value {
        Value::Array(vec![t.0, Value::Array(vec![Value::Int(i as i64), v])])
    }
}

impl<Tm, T> TimedPair for (Tm, T)
where
    Tm: Element + PartialOrd,
    T: Element,
{
    type Time = Tm;
    type V = T;
    type Zipped = (Tm, Vec<Option<T>>);
    type Mixed = (Tm, (usize, T));

    fn into_parts(self) -> Result<(Tm, T), OpError> {
        Ok(self)
    }
    fn from_parts(t: Tm, v: T) -> Self {
        (t, v)
    }
    fn zipped(t: Tm, vs: Vec<Option<T>>) -> Self::Zipped {
        (t, vs)
    }
    fn unzipped(z: Self::Zipped) -> Result<(Tm, Vec<Option<T>>), OpError> {
        Ok(z)
    }
    fn mixed(t: Tm, i: usize, v: T) -> Self::Mixed {
        (t, (i, v))
    }
}

/// Splits a timed element and checks that its time is comparable and above `last`.
fn timed_parts<E: TimedPair>(
    x: E,
    port: usize,
    last: Option<&E::Time>,
    strict: bool,
) -> Result<(E::Time, E::V), OpError> {
    let (t, v) = x.into_parts()?;
    let bad = match last {
        _ if t.partial_cmp(&t).is_none() => Some("is not comparable".to_string()),
        Some(l) if strict && t.partial_cmp(l) != Some(Ordering::Greater) => {
            Some(format!("does not increase strictly (after {l:?})"))
        }
        _ => None,
    };
    match bad {
        Some(why) => {
            Err(OpError::new(format!("input {port}: the time {t:?} {why}")).with_element(&(t, v)))
        }
        None => Ok((t, v)),
    }
}

/// `timed_zip`: per input a queue of `(t, v)`; the entry for the smallest pending `t` is
/// emitted once every input has a pending element or has ended. The snapshot holds the
/// queues, each input's last time, and which inputs ended.
pub struct TimedZip<E: TimedPair> {
    queues: Vec<VecDeque<(E::Time, E::V)>>,
    last: Vec<Option<E::Time>>,
    ended: Vec<bool>,
}

impl<E: TimedPair> TimedZip<E> {
    /// A timed zip of `n` inputs.
    pub fn new(n: usize) -> Self {
        TimedZip {
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            last: vec![None; n],
            ended: vec![false; n],
        }
    }

    fn drain(&mut self, out: &mut Outputs<E::Zipped>) {
        loop {
            let waiting = self
                .queues
                .iter()
                .zip(&self.ended)
                .any(|(q, &e)| q.is_empty() && !e);
            if waiting {
                return;
            }
            let mut t_min: Option<&E::Time> = None;
            for q in &self.queues {
                if let Some((t, _)) = q.front() {
                    match t_min {
                        Some(m) if m <= t => {}
                        _ => t_min = Some(t),
                    }
                }
            }
            let Some(t) = t_min.cloned() else { return };
            let vs = self
                .queues
                .iter_mut()
                .map(|q| match q.front() {
                    Some((tq, _)) if *tq == t => q.pop_front().map(|x| x.1),
                    _ => None,
                })
                .collect();
            out.push(E::zipped(t, vs));
        }
    }
}

impl<E: TimedPair> Operator for TimedZip<E> {
    type In = E;
    type Out = E::Zipped;

    fn on_batch(&mut self, port: usize, batch: Vec<E>, out: &mut Outputs<E::Zipped>) -> OpResult {
        for x in batch {
            let (t, v) = timed_parts(x, port, self.last[port].as_ref(), true)?;
            self.last[port] = Some(t.clone());
            self.queues[port].push_back((t, v));
        }
        self.drain(out);
        Ok(())
    }

    fn on_end(&mut self, port: usize, out: &mut Outputs<E::Zipped>) -> OpResult {
        self.ended[port] = true;
        self.drain(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Outputs<E::Zipped>) -> OpResult {
        self.ended.iter_mut().for_each(|e| *e = true);
        self.drain(out);
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let st = (&self.queues, &self.last, &self.ended);
        save_state("timed_zip", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        type Queues<E> = Vec<VecDeque<(<E as TimedPair>::Time, <E as TimedPair>::V)>>;
        type Last<E> = Vec<Option<<E as TimedPair>::Time>>;
        let (queues, last, ended): (Queues<E>, Last<E>, Vec<bool>) =
            load_state("timed_zip", state)?;
        let n = self.queues.len();
        if queues.len() != n || last.len() != n || ended.len() != n {
            return Err(OpError::new(format!(
                "timed_zip: cannot restore a state of {} inputs into one of {n}",
                queues.len()
            )));
        }
        self.queues = queues;
        self.last = last;
        self.ended = ended;
        Ok(())
    }
}

/// Asynchronous merge: `f(i, x)` for every element `x` of input `i`, in arrival order. `S`
/// is the state of a stateful form (`()` for none), its snapshot.
pub struct MergeAsynch<T, U, S, F> {
    f: F,
    state: S,
    _t: PhantomData<fn(T) -> U>,
}

impl<T, U> MergeAsynch<T, U, (), ()> {
    /// A merge calling `f(input index, element)` (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        mut f: G,
    ) -> MergeAsynch<T, U, (), impl FnMut(usize, T, &mut ()) -> OpResult<Emit<U>>>
    where
        G: FnMut(usize, T) -> Result<Emit<U>, OpError>,
    {
        MergeAsynch::with_state((), move |i, x, _: &mut ()| f(i, x))
    }
}

impl<T, U, S, F> MergeAsynch<T, U, S, F>
where
    F: FnMut(usize, T, &mut S) -> Result<Emit<U>, OpError>,
{
    /// A merge calling `f(input index, element, &mut state)`.
    pub fn with_state(state: S, f: F) -> Self {
        MergeAsynch {
            f,
            state,
            _t: PhantomData,
        }
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for MergeAsynch<T, U, S, F>
where
    F: FnMut(usize, T, &mut S) -> Result<Emit<U>, OpError> + Send + 'static,
{
    type In = T;
    type Out = U;

    fn on_batch(&mut self, port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        let o = out.port_mut(0);
        for x in batch {
            (self.f)(port, x, &mut self.state)?.push_into(o);
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

/// `weave`: every element of every input, in arrival order (no copy: batches are passed on).
pub struct Weave<T>(PhantomData<fn(T)>);

impl<T> Default for Weave<T> {
    fn default() -> Self {
        Weave(PhantomData)
    }
}

impl<T: Element> Operator for Weave<T> {
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        out.put_vec(0, batch);
        Ok(())
    }
}

/// `timed_mix`: `[t, [i, v]]` in arrival order, dropping (and counting) any element whose
/// `t` is not above the last emitted one. The snapshot holds that time and the count.
pub struct TimedMix<E: TimedPair> {
    last: Option<E::Time>,
    dropped: u64,
}

impl<E: TimedPair> Default for TimedMix<E> {
    fn default() -> Self {
        TimedMix {
            last: None,
            dropped: 0,
        }
    }
}

impl<E: TimedPair> Operator for TimedMix<E> {
    type In = E;
    type Out = E::Mixed;

    fn on_batch(&mut self, port: usize, batch: Vec<E>, out: &mut Outputs<E::Mixed>) -> OpResult {
        for x in batch {
            let (t, v) = timed_parts(x, port, None, false)?;
            if self.last.as_ref().is_some_and(|l| t <= *l) {
                self.dropped += 1;
                continue;
            }
            self.last = Some(t.clone());
            out.push(E::mixed(t, port, v));
        }
        Ok(())
    }

    fn end_note(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "dropped {} elements whose time was not above the last emitted one",
                self.dropped
            )
        })
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("timed_mix", &(&self.last, self.dropped)).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        (self.last, self.dropped) = load_state("timed_mix", state)?;
        Ok(())
    }
}

impl Graph {
    /// `zip_map`: output i is `f(xs)`, `xs` holding the i-th element of every input; emitted
    /// once every input has its i-th element. Unmatched tails are discarded at the end (and
    /// counted in the report's notes).
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2, 3]);
    /// let b = g.source_iter(vec![10i64, 20, 30, 40]);
    /// let s = g.zip_map(&[&a, &b], |xs: &[i64]| xs.iter().sum::<i64>());
    /// let out = g.collect(&s);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![11, 22, 33]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::zip_map_with_state`] is.
    pub fn zip_map<T, U, R, F>(&mut self, inputs: &[&Stream<T>], mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(&[T]) -> R + Send + 'static,
    {
        let op = zip_map_op(inputs.len(), move |xs: Vec<T>| Ok(f(&xs).into_emit()));
        self.add_unary("zip_map", op, inputs)
    }

    /// `zip_map` with a fallible function taking the row by value: an `Err` fails the operator.
    pub fn try_zip_map<T, U, F>(&mut self, inputs: &[&Stream<T>], f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(Vec<T>) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        self.add_unary("zip_map", zip_map_op(inputs.len(), f), inputs)
    }

    /// Stateful `zip_map`: `f(xs, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn zip_map_with_state<T, U, S, R, F>(
        &mut self,
        inputs: &[&Stream<T>],
        state: S,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        S: StateType,
        R: IntoEmit<U>,
        F: FnMut(&[T], &mut S) -> R + Send + 'static,
    {
        let op = zip_map_op_with_state(
            inputs.len(),
            FnState(state),
            move |xs: Vec<T>, st: &mut FnState<S>| Ok(f(&xs, &mut st.0).into_emit()),
        );
        self.add_unary("zip_map", op, inputs)
    }

    /// `zip_stream`: emits the rows of the zip as vectors (`Vec<T>`; one entry per input).
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2]);
    /// let b = g.source_iter(vec![3i64, 4]);
    /// let z = g.zip_stream(&[&a, &b]);
    /// let out = g.collect(&z);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![vec![1, 3], vec![2, 4]]);
    /// ```
    pub fn zip_stream<T: Element>(&mut self, inputs: &[&Stream<T>]) -> Stream<Vec<T>> {
        let op = zip_map_op(inputs.len(), |xs: Vec<T>| Ok(Emit::One(xs)));
        self.add_unary("zip_stream", op, inputs)
    }

    /// `zip_stream` over `Value` streams: each row is emitted as a `Value` array.
    pub fn zip_stream_values(&mut self, inputs: &[&Stream<Value>]) -> Stream<Value> {
        let op = zip_map_op(inputs.len(), |xs: Vec<Value>| {
            Ok(Emit::One(Value::Array(xs)))
        });
        self.add_unary("zip_stream", op, inputs)
    }

    /// `merge_list` (alias `zip_map_list`): `f(batches)` on the common prefix of the inputs,
    /// one equal-length slice per input; the vector it returns is spliced into the output.
    /// Batch boundaries are unspecified: deterministic only if `f` ignores them.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2, 3]);
    /// let b = g.source_iter(vec![10i64, 20, 30]);
    /// let s = g.merge_list(&[&a, &b], |bs: &[Vec<i64>]| {
    ///     bs[0].iter().zip(&bs[1]).map(|(x, y)| x * y).collect()
    /// });
    /// let out = g.collect(&s);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![10, 40, 90]);
    /// ```
    pub fn merge_list<T, U, F>(&mut self, inputs: &[&Stream<T>], mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[Vec<T>]) -> Vec<U> + Send + 'static,
    {
        let op = merge_list_op(inputs.len(), move |cols: Vec<Vec<T>>| Ok(f(&cols)));
        self.add_unary("merge_list", op, inputs)
    }

    /// `merge_list` with a fallible function taking the batches by value.
    pub fn try_merge_list<T, U, F>(&mut self, inputs: &[&Stream<T>], f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(Vec<Vec<T>>) -> Result<Vec<U>, OpError> + Send + 'static,
    {
        self.add_unary("merge_list", merge_list_op(inputs.len(), f), inputs)
    }

    /// `timed_zip` over `[t, v]` `Value` elements or typed `(t, v)` pairs: emits, for each
    /// distinct `t` in increasing order, `[t, [v_0, ..]]` (typed: `(t, vec![Some(v_0), ..])`)
    /// with null (`None`) where an input has no element at `t`. Each input's `t` must increase
    /// strictly. The entry for `t` is emitted once every input has a pending element or has
    /// ended, so everything is emitted by the end of the stream.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![(1i64, 'a'), (3, 'b')]);
    /// let y = g.source_iter(vec![(2i64, 'A'), (3, 'B')]);
    /// let z = g.timed_zip(&[&x, &y]);
    /// let out = g.collect(&z);
    /// g.run().unwrap();
    /// assert_eq!(
    ///     out.take(),
    ///     vec![(1, vec![Some('a'), None]), (2, vec![None, Some('A')]), (3, vec![Some('b'), Some('B')])]
    /// );
    /// ```
    pub fn timed_zip<E: TimedPair>(&mut self, inputs: &[&Stream<E>]) -> Stream<E::Zipped> {
        self.add_unary("timed_zip", TimedZip::<E>::new(inputs.len()), inputs)
    }

    /// `merge_asynch`: `f(i, x)` for every element `x` of input `i`, in the order elements
    /// reach the operator (each input's order kept; not deterministic across inputs).
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2]);
    /// let b = g.source_iter(vec![10i64]);
    /// let m = g.merge_asynch(&[&a, &b], |i, x| x * if i == 0 { 1 } else { -1 });
    /// let out = g.collect(&m);
    /// g.run().unwrap();
    /// let mut got = out.take();
    /// got.sort();
    /// assert_eq!(got, vec![-10, 1, 2]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::merge_asynch_with_state`] is.
    pub fn merge_asynch<T, U, R, F>(&mut self, inputs: &[&Stream<T>], mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(usize, T) -> R + Send + 'static,
    {
        let op = MergeAsynch::new(move |i, x| Ok(f(i, x).into_emit()));
        self.add_unary("merge_asynch", op, inputs)
    }

    /// `merge_asynch` with a fallible function: an `Err` fails the operator.
    pub fn try_merge_asynch<T, U, F>(&mut self, inputs: &[&Stream<T>], f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(usize, T) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        self.add_unary("merge_asynch", MergeAsynch::new(f), inputs)
    }

    /// Stateful `merge_asynch`: `f(i, x, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn merge_asynch_with_state<T, U, S, R, F>(
        &mut self,
        inputs: &[&Stream<T>],
        state: S,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        S: StateType,
        R: IntoEmit<U>,
        F: FnMut(usize, T, &mut S) -> R + Send + 'static,
    {
        let op = MergeAsynch::with_state(FnState(state), move |i, x, st: &mut FnState<S>| {
            Ok(f(i, x, &mut st.0).into_emit())
        });
        self.add_unary("merge_asynch", op, inputs)
    }

    /// `blend`: IoTPy's other name for [`Graph::merge_asynch`].
    pub fn blend<T, U, R, F>(&mut self, inputs: &[&Stream<T>], f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(usize, T) -> R + Send + 'static,
    {
        self.merge_asynch(inputs, f)
    }

    /// `mix`: every element as `(i, x)`, `i` its input's index, in arrival order.
    pub fn mix<T: Element>(&mut self, inputs: &[&Stream<T>]) -> Stream<(usize, T)> {
        let op = MergeAsynch::new(|i, x| Ok(Emit::One((i, x))));
        self.add_unary("mix", op, inputs)
    }

    /// `mix` over `Value` streams: every element as `[i, x]`.
    pub fn mix_values(&mut self, inputs: &[&Stream<Value>]) -> Stream<Value> {
        let op =
            MergeAsynch::new(|i, x| Ok(Emit::One(Value::Array(vec![Value::Int(i as i64), x]))));
        self.add_unary("mix", op, inputs)
    }

    /// `weave`: every element of every input, in arrival order, each input's order kept.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2, 3]);
    /// let b = g.source_iter(vec![10i64, 20]);
    /// let w = g.weave(&[&a, &b]);
    /// let out = g.collect(&w);
    /// g.run().unwrap();
    /// let got = out.take();
    /// assert_eq!(got.iter().filter(|x| **x < 10).copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    /// assert_eq!(got.iter().filter(|x| **x >= 10).copied().collect::<Vec<_>>(), vec![10, 20]);
    /// ```
    pub fn weave<T: Element>(&mut self, inputs: &[&Stream<T>]) -> Stream<T> {
        self.add_unary("weave", Weave::default(), inputs)
    }

    /// `timed_mix`: `[t, [i, v]]` (typed: `(t, (i, v))`) in arrival order; an element whose `t`
    /// is not above the last emitted `t` is dropped and counted.
    pub fn timed_mix<E: TimedPair>(&mut self, inputs: &[&Stream<E>]) -> Stream<E::Mixed> {
        self.add_unary("timed_mix", TimedMix::<E>::default(), inputs)
    }

    fn zip2<T: Element, U: Element>(
        &mut self,
        kind: &str,
        a: &Stream<T>,
        b: &Stream<T>,
        f: fn(T, T) -> Result<U, String>,
    ) -> Stream<U> {
        let op = zip_map_op(2, move |xs: Vec<T>| {
            let mut it = xs.into_iter();
            match (it.next(), it.next()) {
                (Some(x), Some(y)) => f(x, y).map(Emit::One).map_err(OpError::new),
                _ => Ok(Emit::Skip),
            }
        });
        self.add_unary(kind, op, &[a, b])
    }

    /// `a + b`, element by element (a zip). Integer overflow fails the operator.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(vec![1i64, 2, 3]);
    /// let b = g.source_iter(vec![10i64, 20, 30]);
    /// let s = g.add(&a, &b);
    /// let le = g.le(&a, &b);
    /// let (s, le) = (g.collect(&s), g.collect(&le));
    /// g.run().unwrap();
    /// assert_eq!(s.take(), vec![11, 22, 33]);
    /// assert_eq!(le.take(), vec![true, true, true]);
    /// ```
    pub fn add<T: ZipArith>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<T> {
        self.zip2("add", a, b, ZipArith::add)
    }

    /// `a - b`, element by element.
    pub fn sub<T: ZipArith>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<T> {
        self.zip2("sub", a, b, ZipArith::sub)
    }

    /// `a * b`, element by element.
    pub fn mul<T: ZipArith>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<T> {
        self.zip2("mul", a, b, ZipArith::mul)
    }

    /// `a / b`, element by element; integer division truncates, integer division by zero fails.
    pub fn div<T: ZipArith>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<T> {
        self.zip2("div", a, b, ZipArith::div)
    }

    /// `a < b`, element by element.
    pub fn lt<T: Element + PartialOrd>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<bool> {
        self.zip2("lt", a, b, |x, y| Ok(x < y))
    }

    /// `a <= b`, element by element (IoTPy's `__le__` computed `>=`; this is `<=`).
    pub fn le<T: Element + PartialOrd>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<bool> {
        self.zip2("le", a, b, |x, y| Ok(x <= y))
    }

    /// `a == b`, element by element.
    pub fn eq<T: Element + PartialEq>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<bool> {
        self.zip2("eq", a, b, |x, y| Ok(x == y))
    }

    /// `a != b`, element by element.
    pub fn ne<T: Element + PartialEq>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<bool> {
        self.zip2("ne", a, b, |x, y| Ok(x != y))
    }

    /// `a > b`, element by element.
    pub fn gt<T: Element + PartialOrd>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<bool> {
        self.zip2("gt", a, b, |x, y| Ok(x > y))
    }

    /// `a >= b`, element by element.
    pub fn ge<T: Element + PartialOrd>(&mut self, a: &Stream<T>, b: &Stream<T>) -> Stream<bool> {
        self.zip2("ge", a, b, |x, y| Ok(x >= y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn sum_op(n: usize) -> impl Operator<In = i64, Out = i64> {
        zip_map_op(n, |xs: Vec<i64>| Ok(Emit::One(xs.iter().sum())))
    }

    #[test]
    fn zip_map_discards_unmatched_tails_and_says_so() {
        let mut op = sum_op(2);
        let mut out = Outputs::new(1);
        op.on_batch(0, vec![1, 2, 3, 4, 5], &mut out).unwrap();
        op.on_batch(1, vec![10, 20], &mut out).unwrap();
        op.on_end(1, &mut out).unwrap();
        op.on_end(0, &mut out).unwrap();
        op.finish(&mut out).unwrap();
        assert_eq!(out.take(0), vec![11, 22]);
        assert_eq!(
            op.end_note().as_deref(),
            Some("discarded 3 unmatched elements of input 0")
        );
    }

    #[test]
    fn zip_counts_what_arrives_after_a_shorter_input_ended() {
        let got = run_batched(sum_op(2), vec![vec![vec![1]], vec![]], &[1, 0], 1);
        assert_eq!(got, vec![Vec::<i64>::new()]);
        let mut op = Zip::new(2, |_c: Vec<Vec<i64>>, _o: &mut Outputs<i64>| Ok(()));
        let mut out = Outputs::new(1);
        op.on_end(1, &mut out).unwrap();
        op.on_batch(0, vec![1, 2], &mut out).unwrap();
        assert_eq!(op.buf.discarded(), &[2, 0]);
    }

    #[test]
    fn zip_map_null_results_emit_null() {
        let op = zip_map_op(2, |_xs: Vec<Value>| Ok(Emit::One(Value::Null)));
        let got = run_batched(op, whole(vec![vs(&["1", "2"]), vs(&["3", "4"])]), &[], 1);
        assert_eq!(got[0], vec![Value::Null, Value::Null]);
    }

    #[test]
    fn zip_map_errors_fail_the_operator() {
        let op = zip_map_op(2, |xs: Vec<i64>| {
            if xs[1] == 0 {
                Err(OpError::new("division by zero"))
            } else {
                Ok(Emit::One(xs[0] / xs[1]))
            }
        });
        let (_, r) = try_run_batched(op, whole(vec![vec![4, 6], vec![2, 0]]), &[], 1);
        assert!(r.unwrap_err().message.contains("division by zero"));
    }

    #[test]
    fn arithmetic_zips_check_overflow_and_mix_values_like_rhai() {
        assert_eq!(
            ZipArith::add(i64::MAX, 1).unwrap_err(),
            format!("integer overflow: {} + 1", i64::MAX)
        );
        assert!(ZipArith::div(1i64, 0)
            .unwrap_err()
            .contains("division by zero"));
        assert_eq!(ZipArith::div(7i64, 2), Ok(3));
        assert_eq!(
            ZipArith::div(Value::Int(7), Value::Int(2)),
            Ok(Value::Int(3))
        );
        assert_eq!(
            ZipArith::add(Value::Int(1), Value::Float(0.5)),
            Ok(Value::Float(1.5))
        );
        assert!(ZipArith::mul(Value::Int(1), Value::Str("a".into())).is_err());
    }

    #[test]
    fn arithmetic_and_comparison_zips_run_end_to_end() {
        let mut g = Graph::new();
        let a = g.source_iter(vec![1i64, 5, 3]);
        let b = g.source_iter(vec![2i64, 5, 1, 9]);
        let outs = [
            g.lt(&a, &b),
            g.le(&a, &b),
            g.eq(&a, &b),
            g.ne(&a, &b),
            g.gt(&a, &b),
            g.ge(&a, &b),
        ];
        let sums = [g.add(&a, &b), g.sub(&a, &b), g.mul(&a, &b), g.div(&a, &b)];
        let cs: Vec<_> = outs.iter().map(|s| g.collect(s)).collect();
        let ns: Vec<_> = sums.iter().map(|s| g.collect(s)).collect();
        let report = g.run().unwrap();
        let got: Vec<Vec<bool>> = cs.iter().map(|c| c.take()).collect();
        assert_eq!(
            got,
            vec![
                vec![true, false, false],
                vec![true, true, false],
                vec![false, true, false],
                vec![true, false, true],
                vec![false, false, true],
                vec![false, true, true],
            ]
        );
        let got: Vec<Vec<i64>> = ns.iter().map(|c| c.take()).collect();
        assert_eq!(
            got,
            vec![
                vec![3, 10, 4],
                vec![-1, 0, 2],
                vec![2, 25, 3],
                vec![0, 1, 3]
            ]
        );
        assert!(report
            .notes
            .iter()
            .any(|(_, n)| n == "discarded 1 unmatched elements of input 1"));
    }

    #[test]
    fn merge_list_splices_what_f_returns_for_the_common_prefix() {
        let op = merge_list_op(2, |cols: Vec<Vec<i64>>| {
            Ok(cols[0]
                .iter()
                .zip(&cols[1])
                .flat_map(|(a, b)| [*a, *b])
                .collect())
        });
        let got = run_batched(
            op,
            vec![vec![vec![1], vec![2, 3]], vec![vec![10, 20, 30]]],
            &[1, 0, 0],
            1,
        );
        assert_eq!(got[0], vec![1, 10, 2, 20, 3, 30]);
    }

    /// The example of case 06 (IoTPy c13), with its expected z.jsonl.
    #[test]
    fn timed_zip_emits_the_rest_at_end_of_stream() {
        let x = vs(&[
            r#"[1, "a"]"#,
            r#"[3, "b"]"#,
            r#"[10, "d"]"#,
            r#"[15, "e"]"#,
            r#"[17, "f"]"#,
            r#"[21, "g"]"#,
            r#"[23, "h"]"#,
            r#"[40, "i"]"#,
            r#"[55, "j"]"#,
            r#"[97, "k"]"#,
        ]);
        let y = vs(&[
            r#"[2, "A"]"#,
            r#"[3, "B"]"#,
            r#"[9, "D"]"#,
            r#"[20, "E"]"#,
            r#"[21, "F"]"#,
            r#"[23, "G"]"#,
            r#"[29, "H"]"#,
            r#"[55, "I"]"#,
        ]);
        let want = vs(&[
            r#"[1, ["a", null]]"#,
            r#"[2, [null, "A"]]"#,
            r#"[3, ["b", "B"]]"#,
            r#"[9, [null, "D"]]"#,
            r#"[10, ["d", null]]"#,
            r#"[15, ["e", null]]"#,
            r#"[17, ["f", null]]"#,
            r#"[20, [null, "E"]]"#,
            r#"[21, ["g", "F"]]"#,
            r#"[23, ["h", "G"]]"#,
            r#"[29, [null, "H"]]"#,
            r#"[40, ["i", null]]"#,
            r#"[55, ["j", "I"]]"#,
            r#"[97, ["k", null]]"#,
        ]);
        let got = run_batched(
            TimedZip::<Value>::new(2),
            whole(vec![x.clone(), y.clone()]),
            &[],
            1,
        );
        assert_eq!(got[0], want);
        // Before the end, [97, ["k", null]] waits for y.
        let mut op = TimedZip::<Value>::new(2);
        let mut out = Outputs::new(1);
        op.on_batch(0, x, &mut out).unwrap();
        op.on_batch(1, y, &mut out).unwrap();
        assert_eq!(out.take(0), want[..13].to_vec());
        op.on_end(1, &mut out).unwrap();
        assert_eq!(out.take(0), want[13..].to_vec());
        // End to end, written as jsonl lines.
        let mut g = Graph::new();
        let (sx, sy) = (g.source_iter(x_of(&want, 0)), g.source_iter(x_of(&want, 1)));
        let z = g.timed_zip(&[&sx, &sy]);
        let c = g.collect(&z);
        g.run().unwrap();
        let lines: Vec<String> = c.take().iter().map(Value::to_json).collect();
        let expected = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/cases/06-timed-zip-window/expected/z.jsonl"
        ))
        .unwrap_or_else(|_| want.iter().map(|w| w.to_json() + "\n").collect());
        assert_eq!(lines, expected.lines().collect::<Vec<_>>());
    }

    /// Input `j` of a timed zip's output (its non-null entries).
    fn x_of(z: &[Value], j: usize) -> Vec<Value> {
        z.iter()
            .filter_map(|e| {
                let a = e.as_array()?;
                let v = a[1].as_array()?[j].clone();
                (!v.is_null()).then(|| Value::Array(vec![a[0].clone(), v]))
            })
            .collect()
    }

    #[test]
    fn timed_zip_rejects_times_that_do_not_increase() {
        let (got, r) = try_run_batched(
            TimedZip::<(i64, char)>::new(1),
            whole(vec![vec![(1, 'a'), (1, 'b')]]),
            &[],
            1,
        );
        assert_eq!(got[0], vec![]);
        let e = r.unwrap_err();
        assert!(
            e.message.contains("does not increase strictly"),
            "{}",
            e.message
        );
        let (_, r) = try_run_batched(
            TimedZip::<Value>::new(1),
            whole(vec![vs(&["[\"t\", 1]"])]),
            &[],
            1,
        );
        assert!(r.unwrap_err().message.contains("expected a [t, v] pair"));
    }

    #[test]
    fn timed_mix_drops_and_counts_late_times() {
        let mut op = TimedMix::<Value>::default();
        let mut out = Outputs::new(1);
        op.on_batch(0, vs(&["[1, \"a\"]", "[5, \"b\"]"]), &mut out)
            .unwrap();
        op.on_batch(
            1,
            vs(&["[5, \"X\"]", "[3, \"Y\"]", "[6.5, \"Z\"]"]),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.take(0),
            vs(&["[1, [0, \"a\"]]", "[5, [0, \"b\"]]", "[6.5, [1, \"Z\"]]"])
        );
        assert_eq!(
            op.end_note().as_deref(),
            Some("dropped 2 elements whose time was not above the last emitted one")
        );
    }

    #[test]
    fn weave_and_mix_keep_each_inputs_order() {
        let mut g = Graph::new();
        let a = g.source_iter(0..3000i64);
        let b = g.source_iter(10_000..12_000i64);
        let w = g.weave(&[&a, &b]);
        let m = g.mix(&[&a, &b]);
        let (cw, cm) = (g.collect(&w), g.collect(&m));
        g.run().unwrap();
        let got = cw.take();
        assert_eq!(got.len(), 5000);
        assert_eq!(
            got.iter()
                .filter(|x| **x < 10_000)
                .copied()
                .collect::<Vec<_>>(),
            (0..3000).collect::<Vec<_>>()
        );
        assert_eq!(
            got.iter()
                .filter(|x| **x >= 10_000)
                .copied()
                .collect::<Vec<_>>(),
            (10_000..12_000).collect::<Vec<_>>()
        );
        let got = cm.take();
        assert_eq!(
            got.iter()
                .filter(|x| x.0 == 0)
                .map(|x| x.1)
                .collect::<Vec<_>>(),
            (0..3000).collect::<Vec<_>>()
        );
        assert_eq!(
            got.iter()
                .filter(|x| x.0 == 1)
                .map(|x| x.1)
                .collect::<Vec<_>>(),
            (10_000..12_000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn mix_values_and_blend_tag_elements_with_their_input() {
        let mut op = MergeAsynch::new(|i, x: Value| {
            Ok(Emit::One(Value::Array(vec![Value::Int(i as i64), x])))
        });
        let mut out = Outputs::new(1);
        op.on_batch(1, vs(&["\"b\""]), &mut out).unwrap();
        op.on_batch(0, vs(&["\"a\""]), &mut out).unwrap();
        assert_eq!(out.take(0), vs(&["[1, \"b\"]", "[0, \"a\"]"]));
    }

    #[test]
    fn a_feedback_cycle_through_weave_ends_by_itself() {
        let mut g = Graph::new();
        let seed = g.source_iter(vec![1i64]);
        let fb = g.stream::<i64>("fb");
        let n = g.weave(&[&seed, &fb]);
        let m = g.map_element(&n, |x| x * 3);
        let filtered = g.filter_element(&m, |x| *x < 100);
        g.connect(&filtered, &fb);
        let (cn, cm) = (g.collect(&n), g.collect(&m));
        g.run().unwrap();
        assert_eq!(cn.take(), vec![1, 3, 9, 27, 81]);
        assert_eq!(cm.take(), vec![3, 9, 27, 81, 243]);
    }

    /// Strictly increasing times, random gaps.
    fn times(max_len: usize) -> impl Strategy<Value = Vec<(i64, i64)>> {
        prop::collection::vec((1i64..4, -5i64..5), 0..max_len).prop_map(|v| {
            let mut t = 0;
            v.into_iter()
                .map(|(d, x)| {
                    t += d;
                    (t, x)
                })
                .collect()
        })
    }

    fn split_all<T: Clone>(inputs: &[Vec<T>], sizes: &[usize]) -> Vec<Vec<Vec<T>>> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, x)| chunks(x, &sizes[i % sizes.len()..]))
            .collect()
    }

    proptest! {
        #[test]
        fn zips_do_not_depend_on_batching(
            inputs in prop::collection::vec(prop::collection::vec(-100i64..100, 0..20), 1..4),
            sizes in prop::collection::vec(1usize..5, 1..6),
            order in prop::collection::vec(0usize..4, 0..30),
        ) {
            let n = inputs.len();
            let once = run_batched(sum_op(n), whole(inputs.clone()), &[], 1);
            let batched = run_batched(sum_op(n), split_all(&inputs, &sizes), &order, 1);
            prop_assert_eq!(&once, &batched);
            let min = inputs.iter().map(Vec::len).min().unwrap_or(0);
            prop_assert_eq!(once[0].len(), min);
            let mk = |n| merge_list_op(n, |cols: Vec<Vec<i64>>| {
                Ok(rows(cols).map(|r| r.iter().product::<i64>()).collect())
            });
            let a = run_batched(mk(n), whole(inputs.clone()), &[], 1);
            let b = run_batched(mk(n), split_all(&inputs, &sizes), &order, 1);
            prop_assert_eq!(a, b);
            let mut op = Zip::new(n, |_c: Vec<Vec<i64>>, _o: &mut Outputs<i64>| Ok(()));
            let mut out = Outputs::new(1);
            for (i, x) in inputs.iter().enumerate() {
                op.on_batch(i, x.clone(), &mut out).unwrap();
            }
            op.finish(&mut out).unwrap();
            let discarded: u64 = inputs.iter().map(|x| (x.len() - min) as u64).sum();
            prop_assert_eq!(op.buf.discarded().iter().sum::<u64>(), discarded);
        }

        #[test]
        fn timed_zip_does_not_depend_on_batching(
            inputs in prop::collection::vec(times(15), 1..4),
            sizes in prop::collection::vec(1usize..5, 1..6),
            order in prop::collection::vec(0usize..4, 0..30),
        ) {
            let n = inputs.len();
            let once = run_batched(TimedZip::<(i64, i64)>::new(n), whole(inputs.clone()), &[], 1);
            let batched = run_batched(TimedZip::<(i64, i64)>::new(n), split_all(&inputs, &sizes), &order, 1);
            prop_assert_eq!(&once, &batched);
            // Every element appears once, at its time, in increasing time order.
            let total: usize = inputs.iter().map(Vec::len).sum();
            let present: usize = once[0].iter().map(|(_, v)| v.iter().flatten().count()).sum();
            prop_assert_eq!(total, present);
            prop_assert!(once[0].windows(2).all(|w| w[0].0 < w[1].0));
        }

        #[test]
        fn zips_resume_from_a_snapshot(
            inputs in prop::collection::vec(prop::collection::vec(-100i64..100, 0..20), 1..4),
            sizes in prop::collection::vec(1usize..5, 1..6),
            order in prop::collection::vec(0usize..4, 0..30),
            k in cut(),
        ) {
            let n = inputs.len();
            let b = split_all(&inputs, &sizes);
            let (got, want) = run_with_restore(|| sum_op(n), b.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            let mk = || merge_list_op(n, |cols: Vec<Vec<i64>>| {
                Ok(rows(cols).map(|r| r.iter().product::<i64>()).collect())
            });
            let (got, want) = run_with_restore(mk, b.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            let numbered = || zip_map_op_with_state(n, FnState(0i64), |xs: Vec<i64>, c: &mut FnState<i64>| {
                c.0 += 1;
                Ok(Emit::One(xs.iter().sum::<i64>() * 1000 + c.0))
            });
            let (got, want) = run_with_restore(numbered, b.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            let batches = || merge_list_op_with_state(n, FnState(0i64), |cols: Vec<Vec<i64>>, c: &mut FnState<i64>| {
                c.0 += cols[0].len() as i64;
                Ok(vec![c.0])
            });
            let (got, want) = run_with_restore(batches, b.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            // Asynchronous merges, in the delivery order.
            let tagged = || MergeAsynch::with_state(FnState(0i64), |i, x: i64, c: &mut FnState<i64>| {
                c.0 += x;
                Ok(Emit::One((i as i64, c.0)))
            });
            let (got, want) = run_with_restore(tagged, b.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            let (got, want) = run_with_restore(Weave::<i64>::default, b, &order, k, 1);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn timed_merges_resume_from_a_snapshot(
            inputs in prop::collection::vec(times(15), 1..4),
            sizes in prop::collection::vec(1usize..5, 1..6),
            order in prop::collection::vec(0usize..4, 0..30),
            k in cut(),
        ) {
            let n = inputs.len();
            let b = split_all(&inputs, &sizes);
            let (got, want) = run_with_restore(|| TimedZip::<(i64, i64)>::new(n), b.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            let (got, want) = run_with_restore(TimedMix::<(i64, i64)>::default, b, &order, k, 1);
            prop_assert_eq!(got, want);
            // Over values: times are stamps.
            let vals: Vec<Vec<Vec<Value>>> = split_all(&inputs, &sizes)
                .into_iter()
                .map(|p| p.into_iter().map(|b| b.into_iter().map(|(t, x)| Value::Array(vec![Value::Int(t), Value::Int(x)])).collect()).collect())
                .collect();
            let (got, want) = run_with_restore(|| TimedZip::<Value>::new(n), vals.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            let (got, want) = run_with_restore(TimedMix::<Value>::default, vals, &order, k, 1);
            prop_assert_eq!(got, want);
        }
    }
}

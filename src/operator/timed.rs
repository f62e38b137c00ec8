//! Timed windows (`timed_window`): windows of `[t, v]` elements by timestamp.
//!
//! Window `k` is `[start + k*step, start + k*step + duration)`; it is complete once an element
//! with `t >=` its end arrives, and then, if it holds any element, it is handed to the function
//! and the result emitted with the window's end. Timestamps are `f64` ([`Time`]): typed streams
//! carry `(Time, T)` pairs; manifest streams carry `Value` arrays `[t, v]` whose `t` may be an
//! integer or a float, and emit `[end, result]` with an integer `end` when `start`, `step` and
//! `duration` were all given as integers ([`Timed::integer`]). Integers convert to `f64`
//! exactly up to 2^53.

use std::marker::PhantomData;

use crate::emit::{Emit, IntoEmit};
use crate::operator::window::Agg;
use crate::operator::{
    load_state, save_state, Element, FnState, OpError, OpResult, OpState, Operator, Outputs,
    StateType,
};
use crate::pipeline::{Graph, Stream};
use crate::value::Value;

/// A timestamp.
pub type Time = f64;

/// How a timed window moves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timed {
    /// Length of each window (> 0).
    pub duration: Time,
    /// Time between the starts of consecutive windows (> 0; may differ from `duration`).
    pub step: Time,
    /// Start of window 0.
    pub start: Time,
    /// At end-of-stream, emit the windows still holding elements (as if `t = +inf` arrived).
    pub flush: bool,
    /// Emit `end` as an integer on `Value` streams (all three parameters given as integers).
    pub integer: bool,
}

impl Timed {
    /// Windows of `duration` every `step`, from 0, without flush; `end` is a float.
    pub fn new(duration: Time, step: Time) -> Timed {
        Timed {
            duration,
            step,
            start: 0.0,
            flush: false,
            integer: false,
        }
    }

    /// Integer parameters: on `Value` streams `end` is emitted as an integer.
    pub fn ints(duration: i64, step: i64, start: i64) -> Timed {
        Timed {
            duration: duration as f64,
            step: step as f64,
            start: start as f64,
            flush: false,
            integer: true,
        }
    }

    /// The parameters as a manifest gives them: `step` defaults to `duration`, `start` to 0.
    pub fn from_values(
        duration: &Value,
        step: Option<&Value>,
        start: Option<&Value>,
    ) -> Result<Timed, String> {
        let num = |name: &str, v: &Value| {
            v.as_f64()
                .ok_or_else(|| format!("{name} must be a number, got {}", v.type_name()))
        };
        let step = step.unwrap_or(duration);
        let zero = Value::Int(0);
        let start = start.unwrap_or(&zero);
        let t = Timed {
            duration: num("duration", duration)?,
            step: num("step", step)?,
            start: num("start", start)?,
            flush: false,
            integer: [duration, step, start]
                .iter()
                .all(|v| matches!(v, Value::Int(_))),
        };
        t.check().map_err(|e| e.message)?;
        Ok(t)
    }

    /// The same windows starting at `start` (`end` stays an integer only if `start` is one).
    pub fn starting_at(self, start: Time) -> Timed {
        Timed {
            start,
            integer: self.integer && start.fract() == 0.0,
            ..self
        }
    }

    /// The same windows, flushed at end-of-stream.
    pub fn flushed(self) -> Timed {
        Timed {
            flush: true,
            ..self
        }
    }

    /// Checks `duration > 0`, `step > 0` and a finite `start`.
    pub fn check(&self) -> OpResult {
        if !(self.duration > 0.0 && self.duration.is_finite()) {
            return Err(OpError::new(format!(
                "duration must be a positive number, got {}",
                self.duration
            )));
        }
        if !(self.step > 0.0 && self.step.is_finite()) {
            return Err(OpError::new(format!(
                "step must be a positive number, got {}",
                self.step
            )));
        }
        if !self.start.is_finite() {
            return Err(OpError::new(format!(
                "start must be finite, got {}",
                self.start
            )));
        }
        Ok(())
    }

    /// Start of window `k`.
    #[inline]
    pub fn begin(&self, k: u64) -> Time {
        self.start + k as f64 * self.step
    }

    /// End (exclusive) of window `k`.
    #[inline]
    pub fn end(&self, k: u64) -> Time {
        self.begin(k) + self.duration
    }

    /// The first window ending after `x` (`x` finite).
    fn first_ending_after(&self, x: Time) -> u64 {
        let q = ((x - self.start - self.duration) / self.step).floor();
        let mut k = if q < 0.0 { 0 } else { q as u64 + 1 };
        while k > 0 && self.end(k - 1) > x {
            k -= 1;
        }
        while self.end(k) <= x {
            k += 1;
        }
        k
    }

    /// `end` as a manifest value: an integer when the parameters are integers.
    pub fn end_value(&self, end: Time) -> Value {
        if self.integer {
            Value::Int(end as i64)
        } else {
            Value::Float(end)
        }
    }
}

/// An element that carries a timestamp.
pub trait Timestamped: Element {
    /// The element's timestamp, or why it has none.
    fn time(&self) -> Result<Time, OpError>;
}

impl<T: Element> Timestamped for (Time, T) {
    #[inline]
    fn time(&self) -> Result<Time, OpError> {
        Ok(self.0)
    }
}

impl Timestamped for Value {
    /// A `[t, v]` array with a numeric `t`.
    fn time(&self) -> Result<Time, OpError> {
        match self.as_array() {
            Some([t, _]) => t.as_f64().ok_or_else(|| {
                OpError::new(format!("timestamp must be a number, got {}", t.type_name()))
            }),
            _ => Err(OpError::new("a timed element must be a [t, v] array")),
        }
    }
}

/// The owned form of [`TimedWindows::progress`], to restore.
pub type TimedProgress<E> = (Vec<E>, Vec<Time>, u64, Option<Time>);

/// The buffer of the timed-window family: elements in timestamp order, from the start of the
/// next window on; windows come out in order, each as one contiguous slice.
#[derive(Clone, Debug)]
pub struct TimedWindows<E> {
    p: Timed,
    buf: Vec<E>,
    times: Vec<Time>,
    /// Index in `buf` of the first element still needed.
    head: usize,
    /// The next window.
    next: u64,
    last: Option<Time>,
}

impl<E: std::fmt::Debug> TimedWindows<E> {
    /// An empty buffer for windows `p`.
    pub fn new(p: Timed) -> Self {
        TimedWindows {
            p,
            buf: Vec::new(),
            times: Vec::new(),
            head: 0,
            next: 0,
            last: None,
        }
    }

    /// Takes element `e` with timestamp `t`: first hands `f(k, window)` every window that `t`
    /// completes (non-empty ones only), then keeps `e` if a window holds it.
    pub fn push(&mut self, e: E, t: Time, f: &mut impl FnMut(u64, &[E]) -> OpResult) -> OpResult {
        if t.is_nan() {
            return Err(OpError::new("timestamp is NaN").with_element(&e));
        }
        if let Some(prev) = self.last {
            if t < prev {
                return Err(OpError::new(format!(
                    "timestamp {t} is smaller than the previous {prev}"
                ))
                .with_element(&e));
            }
        }
        self.last = Some(t);
        self.complete_until(t, f)?;
        if self.p.begin(self.next) <= t && t < self.p.end(self.next) {
            self.buf.push(e);
            self.times.push(t);
        }
        Ok(())
    }

    /// Hands out every window ending at or before `t` that holds an element.
    pub fn complete_until(
        &mut self,
        t: Time,
        f: &mut impl FnMut(u64, &[E]) -> OpResult,
    ) -> OpResult {
        loop {
            if self.head == self.times.len() {
                if t.is_finite() {
                    self.next = self.next.max(self.p.first_ending_after(t));
                }
                break;
            }
            // Skip the empty windows that end before the first element held.
            self.next = self
                .next
                .max(self.p.first_ending_after(self.times[self.head]));
            let end = self.p.end(self.next);
            if end > t {
                break;
            }
            let n = self.times[self.head..].partition_point(|&x| x < end);
            let w = &self.buf[self.head..self.head + n];
            f(self.next, w).map_err(|e| e.with_element(&w))?;
            self.next += 1;
            let begin = self.p.begin(self.next);
            self.head += self.times[self.head..].partition_point(|&x| x < begin);
        }
        Ok(())
    }

    /// End work with flush: as if an element with timestamp +inf arrived.
    pub fn flush(&mut self, f: &mut impl FnMut(u64, &[E]) -> OpResult) -> OpResult {
        self.complete_until(Time::INFINITY, f)
    }

    /// What changes as elements arrive (the state a snapshot keeps): the held elements and
    /// their times (from the first still needed), the next window, the last timestamp.
    pub fn progress(&self) -> (&[E], &[Time], u64, Option<Time>) {
        (
            &self.buf[self.head..],
            &self.times[self.head..],
            self.next,
            self.last,
        )
    }

    /// Puts back what [`TimedWindows::progress`] gave (into a buffer with the same windows).
    pub fn set_progress(&mut self, (buf, times, next, last): TimedProgress<E>) {
        self.buf = buf;
        self.times = times;
        self.head = 0;
        self.next = next;
        self.last = last;
    }

    /// Drops the elements no later window needs.
    pub fn compact(&mut self) {
        if self.head > 0 {
            self.buf.drain(..self.head);
            self.times.drain(..self.head);
            self.head = 0;
        }
    }
}

/// The `timed_window` operator: `f(end, window, &mut state, out)` writes what a complete
/// window produces; `S` is the state of a stateful form (`()` for none). The snapshot holds
/// the elements still held, the next window, the last timestamp, and the state.
pub struct TimedWindow<E, U, S, F> {
    p: Timed,
    state: TimedWindows<E>,
    fn_state: S,
    f: F,
    _u: PhantomData<fn() -> U>,
}

impl<E: std::fmt::Debug, U> TimedWindow<E, U, (), ()> {
    /// Windows `p` handed to `f` (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        p: Timed,
        mut f: G,
    ) -> TimedWindow<E, U, (), impl FnMut(Time, &[E], &mut (), &mut Outputs<U>) -> OpResult>
    where
        G: FnMut(Time, &[E], &mut Outputs<U>) -> OpResult,
    {
        TimedWindow::with_state(p, (), move |end, w: &[E], _: &mut (), out| f(end, w, out))
    }
}

impl<E: std::fmt::Debug, U, S, F> TimedWindow<E, U, S, F>
where
    F: FnMut(Time, &[E], &mut S, &mut Outputs<U>) -> OpResult,
{
    /// Windows `p` handed to `f(end, window, &mut state, out)`.
    pub fn with_state(p: Timed, state: S, f: F) -> Self {
        TimedWindow {
            p,
            state: TimedWindows::new(p),
            fn_state: state,
            f,
            _u: PhantomData,
        }
    }
}

impl<E: Timestamped, U: Element, S: OpState, F> Operator for TimedWindow<E, U, S, F>
where
    F: FnMut(Time, &[E], &mut S, &mut Outputs<U>) -> OpResult + Send + 'static,
{
    type In = E;
    type Out = U;

    fn start(&mut self, _out: &mut Outputs<U>) -> OpResult {
        self.p.check()
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<E>, out: &mut Outputs<U>) -> OpResult {
        let (p, f, st) = (self.p, &mut self.f, &mut self.fn_state);
        let mut g = |k: u64, w: &[E]| f(p.end(k), w, st, out);
        for e in batch {
            let t = e.time().map_err(|err| err.with_element(&e))?;
            self.state.push(e, t, &mut g)?;
        }
        self.state.compact();
        Ok(())
    }

    fn finish(&mut self, out: &mut Outputs<U>) -> OpResult {
        if self.p.flush {
            let (p, f, st) = (self.p, &mut self.f, &mut self.fn_state);
            self.state
                .flush(&mut |k: u64, w: &[E]| f(p.end(k), w, st, out))?;
        }
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let st = (self.state.progress(), self.fn_state.save()?);
        save_state("timed_window", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (progress, st): (TimedProgress<E>, Option<Vec<u8>>) =
            load_state("timed_window", state)?;
        self.state.set_progress(progress);
        if let Some(b) = st {
            self.fn_state.load(&b)?;
        }
        Ok(())
    }
}

impl Graph {
    /// `timed_window`: emits `(end, f(window))` for each complete window holding elements.
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::timed::Timed;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![(2.0, 1i64), (7.0, 2), (11.0, 3), (24.0, 4)]);
    /// let y = g.timed_window(&x, Timed::new(10.0, 5.0), |w: &[(f64, i64)]| {
    ///     w.iter().map(|e| e.1).sum::<i64>()
    /// });
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![(10.0, 3), (15.0, 5), (20.0, 3)]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::timed_window_with_state`] is.
    pub fn timed_window<T, U, R, F>(
        &mut self,
        s: &Stream<(Time, T)>,
        p: Timed,
        mut f: F,
    ) -> Stream<(Time, U)>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(&[(Time, T)]) -> R + Send + 'static,
    {
        self.try_timed_window(s, p, move |w: &[(Time, T)]| Ok(f(w).into_emit()))
    }

    /// `timed_window` with a fallible function.
    pub fn try_timed_window<T, U, F>(
        &mut self,
        s: &Stream<(Time, T)>,
        p: Timed,
        mut f: F,
    ) -> Stream<(Time, U)>
    where
        T: Element,
        U: Element,
        F: FnMut(&[(Time, T)]) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        let op = TimedWindow::new(
            p,
            move |end, w: &[(Time, T)], out: &mut Outputs<(Time, U)>| {
                out.emit(0, f(w)?.map(|u| (end, u)));
                Ok(())
            },
        );
        self.add_unary("timed_window", op, &[s])
    }

    /// Stateful `timed_window`: `f(window, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn timed_window_with_state<T, U, S, R, F>(
        &mut self,
        s: &Stream<(Time, T)>,
        p: Timed,
        state: S,
        mut f: F,
    ) -> Stream<(Time, U)>
    where
        T: Element,
        U: Element,
        S: StateType,
        R: IntoEmit<U>,
        F: FnMut(&[(Time, T)], &mut S) -> R + Send + 'static,
    {
        let op = TimedWindow::with_state(
            p,
            FnState(state),
            move |end, w: &[(Time, T)], st: &mut FnState<S>, out: &mut Outputs<(Time, U)>| {
                out.emit(0, f(w, &mut st.0).into_emit().map(|u| (end, u)));
                Ok(())
            },
        );
        self.add_unary("timed_window", op, &[s])
    }

    /// `timed_window` with a built-in reducer over the values.
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::{timed::Timed, window::Agg};
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![(0.5, 1.0), (1.2, 3.0), (3.9, 5.0)]);
    /// let y = g.timed_window_agg(&x, Timed::new(1.5, 1.5).flushed(), Agg::Mean);
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![(1.5, 2.0), (4.5, 5.0)]);
    /// ```
    pub fn timed_window_agg(
        &mut self,
        s: &Stream<(Time, f64)>,
        p: Timed,
        agg: Agg,
    ) -> Stream<(Time, f64)> {
        let mut vs = Vec::new();
        self.timed_window(s, p, move |w: &[(Time, f64)]| {
            vs.clear();
            vs.extend(w.iter().map(|e| e.1));
            agg.reduce_f64(&vs)
        })
    }

    /// `timed_window` over manifest values: elements `[t, v]`, outputs `[end, f(window)]`
    /// (`end` an integer when [`Timed::integer`]).
    pub fn try_timed_window_value<F>(
        &mut self,
        s: &Stream<Value>,
        p: Timed,
        mut f: F,
    ) -> Stream<Value>
    where
        F: FnMut(&[Value]) -> Result<Emit<Value>, OpError> + Send + 'static,
    {
        let op = TimedWindow::new(p, move |end, w: &[Value], out: &mut Outputs<Value>| {
            let end = p.end_value(end);
            out.emit(0, f(w)?.map(|u| Value::Array(vec![end.clone(), u])));
            Ok(())
        });
        self.add_unary("timed_window", op, &[s])
    }

    /// `timed_window` over manifest values with a built-in reducer of the `v`s.
    ///
    /// ```
    /// use tributary::{Graph, Value};
    /// use tributary::operator::{timed::Timed, window::Agg};
    /// let v = |t: i64, x: i64| Value::Array(vec![Value::Int(t), Value::Int(x)]);
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![v(2, 1), v(7, 2), v(11, 3), v(24, 4)]);
    /// let y = g.timed_window_agg_value(&x, Timed::ints(10, 5, 0), Agg::Sum);
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![v(10, 3), v(15, 5), v(20, 3)]);
    /// ```
    pub fn timed_window_agg_value(
        &mut self,
        s: &Stream<Value>,
        p: Timed,
        agg: Agg,
    ) -> Stream<Value> {
        self.try_timed_window_value(s, p, move |w: &[Value]| {
            let vs: Vec<Value> = w
                .iter()
                .map(|e| e.as_array().map_or(Value::Null, |a| a[1].clone()))
                .collect();
            agg.reduce(&vs).map(Emit::One)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testkit::{
        cut, cuts, run_rr as run_batched, run_whole, run_with_restore, split_at,
    };
    use proptest::prelude::*;

    type Pair = (Time, i64);

    /// A typed `timed_window` emitting `(end, values)` for each window.
    fn values(p: Timed) -> impl Operator<In = Pair, Out = (Time, Vec<i64>)> {
        TimedWindow::new(p, |end, w: &[Pair], out: &mut Outputs<(Time, Vec<i64>)>| {
            out.push((end, w.iter().map(|e| e.1).collect()));
            Ok(())
        })
    }

    fn sums(p: Timed) -> impl Operator<In = Pair, Out = (Time, i64)> {
        TimedWindow::new(p, |end, w: &[Pair], out: &mut Outputs<(Time, i64)>| {
            out.push((end, w.iter().map(|e| e.1).sum()));
            Ok(())
        })
    }

    fn v(t: impl Into<Value>, x: impl Into<Value>) -> Value {
        Value::Array(vec![t.into(), x.into()])
    }

    fn value_sums(p: Timed) -> impl Operator<In = Value, Out = Value> {
        TimedWindow::new(p, move |end, w: &[Value], out: &mut Outputs<Value>| {
            let vs: Vec<Value> = w.iter().map(|e| e.as_array().unwrap()[1].clone()).collect();
            out.push(Value::Array(vec![p.end_value(end), Agg::Sum.reduce(&vs)?]));
            Ok(())
        })
    }

    const EXAMPLE: [Pair; 4] = [(2.0, 1), (7.0, 2), (11.0, 3), (24.0, 4)];

    #[test]
    fn the_catalog_example_with_step_below_duration() {
        let got = run_whole(sums(Timed::new(10.0, 5.0)), vec![EXAMPLE.to_vec()], 1).unwrap();
        assert_eq!(got[0], vec![(10.0, 3), (15.0, 5), (20.0, 3)]);
    }

    #[test]
    fn flush_acts_as_if_t_infinity_arrived() {
        let got = run_whole(
            sums(Timed::new(10.0, 5.0).flushed()),
            vec![EXAMPLE.to_vec()],
            1,
        )
        .unwrap();
        assert_eq!(
            got[0],
            vec![(10.0, 3), (15.0, 5), (20.0, 3), (25.0, 4), (30.0, 4)]
        );
    }

    #[test]
    fn integer_parameters_emit_integer_ends_on_values() {
        let xs: Vec<Value> = EXAMPLE.iter().map(|(t, x)| v(*t as i64, *x)).collect();
        let p = Timed::from_values(&Value::Int(10), Some(&Value::Int(5)), None).unwrap();
        assert!(p.integer);
        let got = run_whole(value_sums(p.flushed()), vec![xs.clone()], 1).unwrap();
        assert_eq!(
            got[0],
            vec![v(10, 3), v(15, 5), v(20, 3), v(25, 4), v(30, 4)]
        );
        // A float parameter makes every end a float.
        let p = Timed::from_values(&Value::Float(10.0), Some(&Value::Int(5)), None).unwrap();
        let got = run_whole(value_sums(p), vec![xs], 1).unwrap();
        assert_eq!(got[0], vec![v(10.0, 3), v(15.0, 5), v(20.0, 3)]);
    }

    #[test]
    fn integer_and_float_timestamps_mix() {
        let xs = vec![v(1, 1), v(1.5, 2), v(2, 3), v(4.0, 4)];
        let got = run_whole(value_sums(Timed::ints(2, 2, 0)), vec![xs], 1).unwrap();
        assert_eq!(got[0], vec![v(2, 3), v(4, 3)]);
    }

    #[test]
    fn windows_holding_no_element_emit_nothing_and_do_not_call_fn() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c2 = calls.clone();
        let op = TimedWindow::new(
            Timed::new(1.0, 1.0).flushed(),
            move |end, w: &[Pair], out: &mut Outputs<Time>| {
                c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                assert!(!w.is_empty());
                out.push(end);
                Ok(())
            },
        );
        let got = run_whole(op, vec![vec![(0.5, 1), (5.5, 2), (1e15, 3)]], 1).unwrap();
        assert_eq!(got[0], vec![1.0, 6.0, 1e15 + 1.0]);
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn duration_below_step_leaves_gaps() {
        let xs = vec![(0.5, 1), (2.0, 2), (5.2, 3), (7.0, 4), (10.9, 5)];
        let got = run_whole(values(Timed::new(1.0, 5.0).flushed()), vec![xs], 1).unwrap();
        assert_eq!(
            got[0],
            vec![(1.0, vec![1]), (6.0, vec![3]), (11.0, vec![5])]
        );
    }

    #[test]
    fn fractional_durations_and_steps_work() {
        let xs = vec![(0.1, 1), (0.3, 2), (0.6, 3), (0.9, 4)];
        let got = run_whole(values(Timed::new(0.5, 0.25)), vec![xs.clone()], 1).unwrap();
        assert_eq!(got[0], vec![(0.5, vec![1, 2]), (0.75, vec![2, 3])]);
        let got = run_whole(values(Timed::new(0.5, 0.25).flushed()), vec![xs], 1).unwrap();
        assert_eq!(
            got[0],
            vec![
                (0.5, vec![1, 2]),
                (0.75, vec![2, 3]),
                (1.0, vec![3, 4]),
                (1.25, vec![4])
            ]
        );
    }

    #[test]
    fn start_shifts_windows_and_earlier_elements_belong_to_none() {
        let xs = vec![(1.0, 1), (3.0, 2), (4.0, 3), (9.0, 4)];
        let got = run_whole(values(Timed::new(3.0, 3.0).starting_at(2.5)), vec![xs], 1).unwrap();
        assert_eq!(got[0], vec![(5.5, vec![2, 3])]);
    }

    #[test]
    fn a_decreasing_timestamp_is_an_operator_error() {
        let e = run_whole(
            sums(Timed::new(10.0, 5.0)),
            vec![vec![(5.0, 1), (3.0, 2)]],
            1,
        )
        .unwrap_err();
        assert_eq!(e.message, "timestamp 3 is smaller than the previous 5");
        assert_eq!(e.element.as_deref(), Some("(3.0, 2)"));
        // Equal timestamps are fine.
        assert!(run_whole(
            sums(Timed::new(1.0, 1.0)),
            vec![vec![(5.0, 1), (5.0, 2)]],
            1
        )
        .is_ok());
    }

    #[test]
    fn bad_elements_and_parameters_are_errors() {
        let e = run_whole(
            value_sums(Timed::ints(1, 1, 0)),
            vec![vec![Value::Int(3)]],
            1,
        )
        .unwrap_err();
        assert_eq!(e.message, "a timed element must be a [t, v] array");
        let e = run_whole(value_sums(Timed::ints(1, 1, 0)), vec![vec![v("x", 1)]], 1).unwrap_err();
        assert_eq!(e.message, "timestamp must be a number, got string");
        let e = run_whole(sums(Timed::new(0.0, 1.0)), vec![vec![]], 1).unwrap_err();
        assert!(e.message.starts_with("duration must be a positive number"));
        assert!(Timed::from_values(&Value::Int(1), Some(&Value::Int(-1)), None).is_err());
    }

    #[test]
    fn null_values_flow_through_timed_windows() {
        let xs = vec![v(0, Value::Null), v(1, 2), v(3, 0)];
        let p = Timed::ints(2, 2, 0);
        let op = TimedWindow::new(p, move |end, w: &[Value], out: &mut Outputs<Value>| {
            out.push(Value::Array(vec![
                p.end_value(end),
                Value::Array(w.to_vec()),
            ]));
            Ok(())
        });
        let got = run_whole(op, vec![xs], 1).unwrap();
        assert_eq!(
            got[0],
            vec![v(2, Value::Array(vec![v(0, Value::Null), v(1, 2)]))]
        );
    }

    #[test]
    fn graph_runs_timed_windows_typed_and_over_values() {
        let mut g = Graph::new();
        let x = g.source_iter(EXAMPLE.to_vec());
        let y = g.timed_window(&x, Timed::new(10.0, 5.0).flushed(), |w: &[Pair]| {
            w.len() as i64
        });
        let vals = g.source_iter(
            EXAMPLE
                .iter()
                .map(|(t, x)| v(*t as i64, *x))
                .collect::<Vec<_>>(),
        );
        let z = g.timed_window_agg_value(&vals, Timed::ints(10, 5, 0), Agg::Max);
        let (cy, cz) = (g.collect(&y), g.collect(&z));
        g.run().unwrap();
        assert_eq!(
            cy.take(),
            vec![(10.0, 2), (15.0, 2), (20.0, 1), (25.0, 1), (30.0, 1)]
        );
        assert_eq!(cz.take(), vec![v(10, 2), v(15, 3), v(20, 3)]);
    }

    /// The definition, computed directly.
    fn reference(p: Timed, xs: &[Pair]) -> Vec<(Time, Vec<i64>)> {
        let mut out = vec![];
        let Some(last) = xs.last().map(|x| x.0) else {
            return out;
        };
        let mut k = 0;
        while p.begin(k) <= last {
            let w: Vec<i64> = xs
                .iter()
                .filter(|x| p.begin(k) <= x.0 && x.0 < p.end(k))
                .map(|x| x.1)
                .collect();
            if !w.is_empty() && (p.flush || last >= p.end(k)) {
                out.push((p.end(k), w));
            }
            k += 1;
        }
        out
    }

    fn timed_strategy() -> impl Strategy<Value = Timed> {
        let d = prop::sample::select(vec![0.5, 1.0, 2.0, 3.0, 10.0]);
        let s = prop::sample::select(vec![0.25, 1.0, 2.0, 5.0]);
        let st = prop::sample::select(vec![0.0, 1.0, 2.5]);
        (d, s, st, any::<bool>()).prop_map(|(d, s, st, f)| Timed {
            flush: f,
            ..Timed::new(d, s).starting_at(st)
        })
    }

    fn series() -> impl Strategy<Value = Vec<Pair>> {
        prop::collection::vec(
            prop::sample::select(vec![0.0, 0.25, 0.5, 1.0, 3.0, 7.5]),
            0..40,
        )
        .prop_map(|gaps| {
            let mut t = 0.0;
            gaps.iter()
                .enumerate()
                .map(|(i, g)| {
                    t += g;
                    (t, i as i64)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn timed_window_does_not_depend_on_batching_and_matches_the_definition(
            p in timed_strategy(), xs in series(), c in cuts(),
        ) {
            let whole = run_whole(values(p), vec![xs.clone()], 1).unwrap();
            let split = run_batched(values(p), vec![split_at(&xs, &c)], 1).unwrap();
            prop_assert_eq!(&whole, &split);
            prop_assert_eq!(&whole[0], &reference(p, &xs));
        }

        #[test]
        fn timed_windows_resume_from_a_snapshot(
            p in timed_strategy(), xs in series(), c in cuts(), k in cut(),
        ) {
            let b = vec![split_at(&xs, &c)];
            let (got, want) = run_with_restore(|| values(p), b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let numbered = || TimedWindow::with_state(
                p,
                FnState(0i64),
                |end, w: &[Pair], n: &mut FnState<i64>, out: &mut Outputs<(Time, i64)>| {
                    n.0 += 1;
                    out.push((end, n.0 * 100 + w.len() as i64));
                    Ok(())
                },
            );
            let (got, want) = run_with_restore(numbered, b, &[], k, 1);
            prop_assert_eq!(got, want);
        }
    }
}

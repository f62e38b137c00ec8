//! Count windows (`map_window`, `map_window_list`, `sink_window`, `split_window`, `merge_window`,
//! `multi_window`, `sliding_window_with_startup`) on one shared [`WindowState`], and the
//! built-in reducers [`Agg`].
//!
//! Window `k` holds input elements `[k*step, k*step + window)` and is handed to the function once
//! its last element has arrived, whatever the batching. Only the elements a later window still
//! needs are kept, so memory is bounded by `window` plus one input batch.

use std::marker::PhantomData;
use std::str::FromStr;

use crate::emit::{Emit, IntoEmit};
use crate::operator::{
    load_state, save_state, Element, FnState, OpError, OpResult, OpState, Operator, Outputs,
    StateType,
};
use crate::pipeline::{Graph, Stream};
use crate::value::Value;

/// How a count window moves: `window` elements, advancing by `step`; `flush` emits the
/// incomplete windows at end-of-stream (truncated) instead of dropping them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    /// Elements per window (at least 1).
    pub window: usize,
    /// Elements between the starts of consecutive windows (at least 1).
    pub step: usize,
    /// At end-of-stream, emit every not-yet-emitted window holding at least one element.
    pub flush: bool,
}

impl Count {
    /// A window of `window` elements moving by `step`, without flush.
    pub fn new(window: usize, step: usize) -> Count {
        Count {
            window,
            step,
            flush: false,
        }
    }

    /// The same windows, flushed at end-of-stream.
    pub fn flushed(self) -> Count {
        Count {
            flush: true,
            ..self
        }
    }

    /// Checks `window >= 1` and `step >= 1`.
    pub fn check(&self) -> OpResult {
        if self.window == 0 {
            return Err(OpError::new("window must be an integer >= 1, got 0"));
        }
        if self.step == 0 {
            return Err(OpError::new("step must be an integer >= 1, got 0"));
        }
        Ok(())
    }
}

/// The owned form of [`WindowState::progress`], to restore.
pub type WindowProgress<T> = (Vec<T>, u64, u64, u64);

/// The buffer every count-window operator is built on: elements arrive in any batches, and
/// windows come out in order, each as one contiguous slice.
///
/// Window `j` covers input indices `[j*step + shift, j*step + shift + window)`, clipped at 0
/// (`shift` is 0 for ordinary windows and `step - window` for `sliding_window_with_startup`,
/// whose first windows grow). The buffer holds the input elements from the start of the next
/// window on; elements in gaps (`step > window`) are never stored.
#[derive(Clone, Debug)]
pub struct WindowState<T> {
    window: u64,
    step: u64,
    shift: i64,
    buf: Vec<T>,
    /// Input index of `buf[0]`.
    base: u64,
    /// Input elements received so far.
    arrived: u64,
    /// Index of the next window to hand out.
    next: u64,
}

impl<T> WindowState<T> {
    /// Ordinary count windows.
    pub fn new(c: Count) -> Self {
        Self::with_shift(c, 0)
    }

    /// Growing-then-sliding windows: window `j` ends at `(j+1)*step` and starts `window` earlier.
    pub fn with_startup(c: Count) -> Self {
        Self::with_shift(c, c.step as i64 - c.window as i64)
    }

    fn with_shift(c: Count, shift: i64) -> Self {
        WindowState {
            window: c.window as u64,
            step: c.step as u64,
            shift,
            buf: Vec::new(),
            base: 0,
            arrived: 0,
            next: 0,
        }
    }

    /// The input index range `[start, end)` of window `j`.
    #[inline]
    pub fn bounds(&self, j: u64) -> (u64, u64) {
        let s = (j * self.step) as i64 + self.shift;
        (s.max(0) as u64, (s + self.window as i64) as u64)
    }

    /// Appends a batch of input elements.
    pub fn push(&mut self, batch: Vec<T>) {
        let n = batch.len() as u64;
        if self.buf.is_empty() {
            // Elements before the next window's start (a gap) are never needed.
            let need = self.bounds(self.next).0;
            let skip = need.saturating_sub(self.arrived).min(n);
            self.base = self.arrived + skip;
            if skip == 0 {
                self.buf = batch;
            } else {
                self.buf.extend(batch.into_iter().skip(skip as usize));
            }
        } else {
            self.buf.extend(batch);
        }
        self.arrived += n;
    }

    /// True when the next window is complete.
    #[inline]
    pub fn ready(&self) -> bool {
        self.bounds(self.next).1 <= self.arrived
    }

    /// True when the next window holds at least one element (it may be incomplete).
    pub fn has_any(&self) -> bool {
        self.bounds(self.next).0 < self.arrived
    }

    /// The elements of input indices `[a, b)`, which must still be buffered.
    #[inline]
    pub fn slice(&self, a: u64, b: u64) -> &[T] {
        &self.buf[(a - self.base) as usize..(b - self.base) as usize]
    }

    /// The next window, truncated to the elements present.
    pub fn current(&self) -> &[T] {
        let (s, e) = self.bounds(self.next);
        let e = e.min(self.arrived);
        self.slice(s.min(e), e)
    }

    /// The index of the next window.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Moves on to the following window.
    #[inline]
    pub fn advance(&mut self) {
        self.next += 1;
    }

    /// What changes as elements arrive (the state a snapshot keeps): the buffered elements,
    /// the input index of the first, how many arrived, and the next window.
    pub fn progress(&self) -> (&[T], u64, u64, u64) {
        (&self.buf, self.base, self.arrived, self.next)
    }

    /// Puts back what [`WindowState::progress`] gave (into a buffer with the same windows).
    pub fn set_progress(&mut self, (buf, base, arrived, next): WindowProgress<T>) {
        self.buf = buf;
        self.base = base;
        self.arrived = arrived;
        self.next = next;
    }

    /// Drops the elements no later window needs.
    pub fn compact(&mut self) {
        let keep = self.bounds(self.next).0.min(self.arrived);
        if keep > self.base {
            self.buf.drain(..(keep - self.base) as usize);
            self.base = keep;
        }
    }

    /// Input elements received that no emitted window used (what a zip discards at the end).
    pub fn unmatched(&self) -> u64 {
        self.arrived - self.bounds(self.next).0.min(self.arrived)
    }

    /// Hands every complete window, in order, to `f`, then drops what is no longer needed.
    pub fn drain_ready(&mut self, f: impl FnMut(&[T]) -> OpResult) -> OpResult
    where
        T: std::fmt::Debug,
    {
        self.drain_while(Self::ready, f)
    }

    /// End work with flush: every remaining window holding an element, truncated, in order.
    pub fn drain_partial(&mut self, f: impl FnMut(&[T]) -> OpResult) -> OpResult
    where
        T: std::fmt::Debug,
    {
        self.drain_while(Self::has_any, f)
    }

    fn drain_while(
        &mut self,
        more: fn(&Self) -> bool,
        mut f: impl FnMut(&[T]) -> OpResult,
    ) -> OpResult
    where
        T: std::fmt::Debug,
    {
        while more(self) {
            let w = self.current();
            f(w).map_err(|e| e.with_element(&w))?;
            self.advance();
        }
        self.compact();
        Ok(())
    }
}

/// One input, count windows: the operator behind `map_window`, `map_window_list`,
/// `sink_window`, `split_window` and `sliding_window_with_startup`. `f` writes what a window
/// produces into the outputs; `S` is the state of a stateful form (`()` for none). The
/// snapshot holds the buffered elements, the window positions, whether `initial` was emitted,
/// and the state.
pub struct CountWindow<T, U, S, F> {
    count: Count,
    state: WindowState<T>,
    initial: Option<U>,
    fn_state: S,
    f: F,
}

/// What a window function returns.
type FnResult = OpResult;

impl<T, U> CountWindow<T, U, (), ()> {
    /// Ordinary windows; `initial` is emitted `window` times before the first result.
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        count: Count,
        initial: Option<U>,
        mut f: G,
    ) -> CountWindow<T, U, (), impl FnMut(&[T], &mut (), &mut Outputs<U>) -> FnResult>
    where
        G: FnMut(&[T], &mut Outputs<U>) -> FnResult,
    {
        CountWindow::with_state(count, initial, (), move |w: &[T], _: &mut (), out| {
            f(w, out)
        })
    }

    /// `sliding_window_with_startup` windows.
    #[allow(clippy::type_complexity)]
    pub fn with_startup<G>(
        count: Count,
        mut f: G,
    ) -> CountWindow<T, U, (), impl FnMut(&[T], &mut (), &mut Outputs<U>) -> FnResult>
    where
        G: FnMut(&[T], &mut Outputs<U>) -> FnResult,
    {
        CountWindow::startup_with_state(count, (), move |w: &[T], _: &mut (), out| f(w, out))
    }
}

impl<T, U, S, F> CountWindow<T, U, S, F>
where
    F: FnMut(&[T], &mut S, &mut Outputs<U>) -> FnResult,
{
    /// Ordinary windows handed to `f(window, &mut state, out)`; `initial` as for `new`.
    pub fn with_state(count: Count, initial: Option<U>, state: S, f: F) -> Self {
        CountWindow {
            count,
            state: WindowState::new(count),
            initial,
            fn_state: state,
            f,
        }
    }

    /// `sliding_window_with_startup` windows handed to `f(window, &mut state, out)`.
    pub fn startup_with_state(count: Count, state: S, f: F) -> Self {
        CountWindow {
            count,
            state: WindowState::with_startup(count),
            initial: None,
            fn_state: state,
            f,
        }
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for CountWindow<T, U, S, F>
where
    F: FnMut(&[T], &mut S, &mut Outputs<U>) -> FnResult + Send + 'static,
{
    type In = T;
    type Out = U;

    fn start(&mut self, out: &mut Outputs<U>) -> OpResult {
        self.count.check()?;
        if let Some(v) = self.initial.take() {
            if !out.is_empty() {
                out.port_mut(0)
                    .extend(std::iter::repeat(v).take(self.count.window));
            }
        }
        Ok(())
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        self.state.push(batch);
        let (f, st) = (&mut self.f, &mut self.fn_state);
        self.state.drain_ready(|w| f(w, st, out))
    }

    fn finish(&mut self, out: &mut Outputs<U>) -> OpResult {
        if self.count.flush {
            let (f, st) = (&mut self.f, &mut self.fn_state);
            self.state.drain_partial(|w| f(w, st, out))?;
        }
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let initial_done = self.initial.is_none();
        let st = (self.state.progress(), initial_done, self.fn_state.save()?);
        save_state("a window", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (progress, initial_done, st): (WindowProgress<T>, bool, Option<Vec<u8>>) =
            load_state("a window", state)?;
        self.state.set_progress(progress);
        if initial_done {
            self.initial = None;
        }
        if let Some(b) = st {
            self.fn_state.load(&b)?;
        }
        Ok(())
    }
}

/// Several inputs, each with its own count windows: the operator behind `merge_window` and
/// `multi_window`. Window `k` goes to `f` (one slice per input) once every input has it. The
/// snapshot holds every input's buffer and positions, and the state `S` (`()` for none).
pub struct MultiWindow<T, U, S, F> {
    counts: Vec<Count>,
    states: Vec<WindowState<T>>,
    f: F,
    fn_state: S,
    discarded: u64,
    _u: PhantomData<fn() -> U>,
}

impl<T, U> MultiWindow<T, U, (), ()> {
    /// `counts` holds one entry per input, or one entry for all `n_in` inputs.
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        n_in: usize,
        counts: &[Count],
        mut f: G,
    ) -> MultiWindow<T, U, (), impl FnMut(&[&[T]], &mut (), &mut Outputs<U>) -> FnResult>
    where
        G: FnMut(&[&[T]], &mut Outputs<U>) -> FnResult,
    {
        MultiWindow::with_state(n_in, counts, (), move |ws: &[&[T]], _: &mut (), out| {
            f(ws, out)
        })
    }
}

impl<T, U, S, F> MultiWindow<T, U, S, F>
where
    F: FnMut(&[&[T]], &mut S, &mut Outputs<U>) -> FnResult,
{
    /// Windows handed to `f(windows, &mut state, out)`; `counts` as for `new`.
    pub fn with_state(n_in: usize, counts: &[Count], state: S, f: F) -> Self {
        let counts: Vec<Count> = if counts.len() == 1 {
            vec![counts[0]; n_in]
        } else {
            counts.to_vec()
        };
        MultiWindow {
            states: counts.iter().map(|c| WindowState::new(*c)).collect(),
            counts,
            f,
            fn_state: state,
            discarded: 0,
            _u: PhantomData,
        }
    }
}

impl<T: Element, U: Element, S: OpState, F> Operator for MultiWindow<T, U, S, F>
where
    F: FnMut(&[&[T]], &mut S, &mut Outputs<U>) -> FnResult + Send + 'static,
{
    type In = T;
    type Out = U;

    fn start(&mut self, _out: &mut Outputs<U>) -> OpResult {
        if self.counts.is_empty() {
            return Err(OpError::new(
                "window and step must be given for every input",
            ));
        }
        self.counts.iter().try_for_each(Count::check)
    }

    fn on_batch(&mut self, port: usize, batch: Vec<T>, out: &mut Outputs<U>) -> OpResult {
        let n = self.states.len();
        let st = self.states.get_mut(port).ok_or_else(|| {
            OpError::new(format!(
                "{n} window/step entries for more inputs (input {port})"
            ))
        })?;
        st.push(batch);
        while self.states.iter().all(WindowState::ready) {
            let ws: Vec<&[T]> = self.states.iter().map(WindowState::current).collect();
            (self.f)(&ws, &mut self.fn_state, out).map_err(|e| e.with_element(&ws))?;
            self.states.iter_mut().for_each(WindowState::advance);
        }
        self.states.iter_mut().for_each(WindowState::compact);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Outputs<U>) -> OpResult {
        self.discarded = self.states.iter().map(WindowState::unmatched).sum();
        Ok(())
    }

    fn end_note(&self) -> Option<String> {
        (self.discarded > 0).then(|| {
            format!(
                "discarded {} input elements left unmatched at end-of-stream",
                self.discarded
            )
        })
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let progress: Vec<_> = self.states.iter().map(WindowState::progress).collect();
        let st = (progress, self.discarded, self.fn_state.save()?);
        save_state("a window", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (progress, discarded, st): (Vec<WindowProgress<T>>, u64, Option<Vec<u8>>) =
            load_state("a window", state)?;
        if progress.len() != self.states.len() {
            return Err(OpError::new(format!(
                "cannot restore a window state of {} inputs into one of {}",
                progress.len(),
                self.states.len()
            )));
        }
        for (w, p) in self.states.iter_mut().zip(progress) {
            w.set_progress(p);
        }
        self.discarded = discarded;
        if let Some(b) = st {
            self.fn_state.load(&b)?;
        }
        Ok(())
    }
}

/// Built-in reducers for a window's elements (the manifest's `agg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    /// Sum: an integer for integers, a float as soon as one element is a float.
    Sum,
    /// Arithmetic mean, a float.
    Mean,
    /// The smallest element, unchanged.
    Min,
    /// The largest element, unchanged.
    Max,
    /// Population standard deviation, a float.
    Std,
    /// How many elements, an integer.
    Count,
}

impl FromStr for Agg {
    type Err = String;

    fn from_str(s: &str) -> Result<Agg, String> {
        Ok(match s {
            "sum" => Agg::Sum,
            "mean" => Agg::Mean,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "std" => Agg::Std,
            "count" => Agg::Count,
            _ => {
                return Err(format!(
                    "unknown agg \"{s}\" (expected sum, mean, min, max, std or count)"
                ))
            }
        })
    }
}

fn number(agg: Agg, v: &Value) -> Result<f64, OpError> {
    v.as_f64().ok_or_else(|| {
        OpError::new(format!("{}: {} is not a number", agg.name(), v.type_name())).with_element(v)
    })
}

impl Agg {
    /// The manifest name (`"sum"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Agg::Sum => "sum",
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Std => "std",
            Agg::Count => "count",
        }
    }

    /// Reduces dynamic values by the number rules: integer sums stay integers (overflow is an
    /// error), min/max return the chosen element unchanged, mean/std are floats.
    pub fn reduce(&self, xs: &[Value]) -> Result<Value, OpError> {
        match self {
            Agg::Count => Ok(Value::Int(xs.len() as i64)),
            Agg::Sum => {
                let mut int: Option<i64> = Some(0);
                let mut float = 0.0;
                for v in xs {
                    match (int, v) {
                        (Some(a), Value::Int(b)) => {
                            int = Some(a.checked_add(*b).ok_or_else(|| {
                                OpError::new("sum: integer overflow").with_element(v)
                            })?)
                        }
                        (Some(a), _) => {
                            float = a as f64 + number(*self, v)?;
                            int = None;
                        }
                        (None, _) => float += number(*self, v)?,
                    }
                }
                Ok(int.map_or(Value::Float(float), Value::Int))
            }
            Agg::Mean | Agg::Std => {
                if xs.is_empty() {
                    return Err(OpError::new(format!("{}: empty window", self.name())));
                }
                let fs = xs
                    .iter()
                    .map(|v| number(*self, v))
                    .collect::<Result<Vec<f64>, _>>()?;
                Ok(Value::Float(self.reduce_f64(&fs)))
            }
            Agg::Min | Agg::Max => {
                let mut best: Option<&Value> = None;
                for v in xs {
                    let x = number(*self, v)?;
                    let better = match best {
                        None => true,
                        Some(b) => {
                            let ord = match (v, b) {
                                (Value::Int(p), Value::Int(q)) => p.partial_cmp(q),
                                _ => x.partial_cmp(&b.as_f64().unwrap_or(f64::NAN)),
                            };
                            let want = if *self == Agg::Min {
                                std::cmp::Ordering::Less
                            } else {
                                std::cmp::Ordering::Greater
                            };
                            ord == Some(want)
                        }
                    };
                    if better {
                        best = Some(v);
                    }
                }
                best.cloned()
                    .ok_or_else(|| OpError::new(format!("{}: empty window", self.name())))
            }
        }
    }

    /// Reduces floats (sequential sum; mean and std divide by the length).
    pub fn reduce_f64(&self, xs: &[f64]) -> f64 {
        let n = xs.len() as f64;
        match self {
            Agg::Sum => xs.iter().sum(),
            Agg::Mean => xs.iter().sum::<f64>() / n,
            Agg::Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
            Agg::Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Agg::Count => n,
            Agg::Std => {
                let m = xs.iter().sum::<f64>() / n;
                (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt()
            }
        }
    }
}

/// `map_window_agg` over floats: sum and mean slide in O(1) per element (each element is added
/// once when it enters and subtracted once when it leaves, with compensation); the other
/// reducers run over the window slice.
pub struct WindowAgg {
    count: Count,
    agg: Agg,
    state: WindowState<f64>,
    /// Scratch: suffix sums of the current block.
    suffix: Vec<f64>,
    /// Scratch: prefix sums of the block after it.
    prefix: Vec<f64>,
}

impl WindowAgg {
    /// A sliding `agg` over `count` windows.
    pub fn new(count: Count, agg: Agg) -> Self {
        WindowAgg {
            count,
            agg,
            state: WindowState::new(count),
            suffix: Vec::new(),
            prefix: Vec::new(),
        }
    }
}

impl Operator for WindowAgg {
    type In = f64;
    type Out = f64;

    fn start(&mut self, _out: &mut Outputs<f64>) -> OpResult {
        self.count.check()
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<f64>, out: &mut Outputs<f64>) -> OpResult {
        self.state.push(batch);
        if !matches!(self.agg, Agg::Sum | Agg::Mean) {
            let agg = self.agg;
            let o = out.port_mut(0);
            return self.state.drain_ready(|w| {
                o.push(agg.reduce_f64(w));
                Ok(())
            });
        }
        // Sum and mean. With step >= window each element is in at most one window: sum each
        // directly. With step < window, blocks of `window` elements: a window starting at
        // offset `off` of block k is the suffix of block k from `off` plus the first `off`
        // elements of block k+1, so each element is added about twice (once in a suffix scan,
        // once in a prefix scan) and each window costs one more addition, whatever its size.
        // No running sum is carried, so rounding never accumulates from window to window.
        let o = out.port_mut(0);
        let st = &mut self.state;
        let (step, window, base) = (st.step, st.window, st.base);
        let w = window as usize;
        let buf = &st.buf[..];
        let at = |i: u64| (i - base) as usize;
        let scale = if self.agg == Agg::Mean {
            1.0 / window as f64
        } else {
            1.0
        };
        let mut j = st.next;
        if step >= window {
            while j * step + window <= st.arrived {
                let s0 = at(j * step);
                o.push(buf[s0..s0 + w].iter().sum::<f64>() * scale);
                j += 1;
            }
        } else {
            // Blocks sit at absolute positions [k*window, (k+1)*window), so every sum is taken
            // over the same elements in the same order however the input was batched.
            let (suf, pre) = (&mut self.suffix, &mut self.prefix);
            let mut block = u64::MAX;
            while j * step + window <= st.arrived {
                let s0 = j * step;
                let k = s0 / window;
                let bstart = k * window;
                let off = (s0 - bstart) as usize;
                if k != block {
                    block = k;
                    // Suffix sums of block k, from its end back to this window's start (block k
                    // has arrived: it ends at or before this window's end).
                    suf.clear();
                    suf.resize(w, 0.0);
                    let lo = at(s0);
                    let mut acc = 0.0;
                    for (d, x) in suf[off..].iter_mut().zip(&buf[lo..lo + (w - off)]).rev() {
                        acc += x;
                        *d = acc;
                    }
                    // Prefix sums of block k+1, as far as it has arrived (windows starting in
                    // block k need at most its first window-1 elements).
                    let nstart = at(bstart + window);
                    let navail = (buf.len() - nstart).min(w - 1);
                    pre.clear();
                    let mut acc = 0.0;
                    for &x in &buf[nstart..nstart + navail] {
                        acc += x;
                        pre.push(acc);
                    }
                }
                let total = if off == 0 {
                    suf[0]
                } else {
                    suf[off] + pre[off - 1]
                };
                o.push(total * scale);
                j += 1;
            }
        }
        st.next = j;
        st.compact();
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("a window", &self.state.progress()).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let p: WindowProgress<f64> = load_state("a window", state)?;
        self.state.set_progress(p);
        Ok(())
    }

    fn finish(&mut self, out: &mut Outputs<f64>) -> OpResult {
        if self.count.flush {
            let agg = self.agg;
            let o = out.port_mut(0);
            self.state.drain_partial(|w| {
                o.push(agg.reduce_f64(w));
                Ok(())
            })?;
        }
        Ok(())
    }
}

fn try_emit_one<T, U>(
    mut f: impl FnMut(&[T]) -> Result<Emit<U>, OpError>,
) -> impl FnMut(&[T], &mut Outputs<U>) -> OpResult {
    move |w, out| {
        out.emit(0, f(w)?);
        Ok(())
    }
}

impl Graph {
    /// `map_window`: emits `f(window)` for each complete count window.
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::window::Count;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..7i64);
    /// let y = g.map_window(&x, Count::new(3, 2), |w: &[i64]| w.iter().sum::<i64>());
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![3, 9, 15]); // [0,1,2], [2,3,4], [4,5,6]
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::map_window_with_state`] is.
    pub fn map_window<T, U, R, F>(&mut self, s: &Stream<T>, count: Count, mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(&[T]) -> R + Send + 'static,
    {
        self.try_map_window_initial(s, count, None, move |w: &[T]| Ok(f(w).into_emit()))
    }

    /// `map_window` with a fallible function: an `Err` fails the operator.
    pub fn try_map_window<T, U, F>(&mut self, s: &Stream<T>, count: Count, f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        self.try_map_window_initial(s, count, None, f)
    }

    /// `map_window` whose output begins with `window` copies of `initial` (IoTPy's
    /// `initial_value`; the input is not pre-filled).
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::window::Count;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(1..=5i64);
    /// let y = g.map_window_initial(&x, Count::new(2, 2), 0, |w: &[i64]| w.iter().sum::<i64>());
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![0, 0, 3, 7]);
    /// ```
    pub fn map_window_initial<T, U, R, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        initial: U,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(&[T]) -> R + Send + 'static,
    {
        self.try_map_window_initial(s, count, Some(initial), move |w: &[T]| Ok(f(w).into_emit()))
    }

    /// The general `map_window`: optional `initial_value`, fallible function (manifests).
    pub fn try_map_window_initial<T, U, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        initial: Option<U>,
        f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        self.add_unary(
            "map_window",
            CountWindow::new(count, initial, try_emit_one(f)),
            &[s],
        )
    }

    /// Stateful `map_window`: `f(window, &mut state)`.
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::window::Count;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..6i64);
    /// // Running total of window sums.
    /// let y = g.map_window_with_state(&x, Count::new(2, 2), 0i64, |w: &[i64], t: &mut i64| {
    ///     *t += w.iter().sum::<i64>();
    ///     *t
    /// });
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![1, 6, 15]);
    /// ```
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn map_window_with_state<T, U, S, R, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
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
        let op = CountWindow::with_state(
            count,
            None,
            FnState(state),
            move |w: &[T], st: &mut FnState<S>, out: &mut Outputs<U>| {
                out.emit(0, f(w, &mut st.0).into_emit());
                Ok(())
            },
        );
        self.add_unary("map_window", op, &[s])
    }

    /// `map_window_list`: each window's result vector is spliced into the output.
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::window::Count;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..4i64);
    /// let y = g.map_window_list(&x, Count::new(2, 2), |w: &[i64]| w.iter().rev().copied().collect());
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![1, 0, 3, 2]);
    /// ```
    pub fn map_window_list<T, U, F>(&mut self, s: &Stream<T>, count: Count, mut f: F) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Vec<U> + Send + 'static,
    {
        self.try_map_window_list(s, count, move |w: &[T]| Ok(f(w)))
    }

    /// `map_window_list` with a fallible function.
    pub fn try_map_window_list<T, U, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Result<Vec<U>, OpError> + Send + 'static,
    {
        self.add_unary(
            "map_window_list",
            CountWindow::new(count, None, move |w: &[T], out: &mut Outputs<U>| {
                out.put_vec(0, f(w)?);
                Ok(())
            }),
            &[s],
        )
    }

    /// `sink_window`: calls `f` on each window (side effects only).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tributary::Graph;
    /// use tributary::operator::window::Count;
    /// let seen = Arc::new(Mutex::new(vec![]));
    /// let s2 = seen.clone();
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..5i64);
    /// g.sink_window(&x, Count::new(2, 2).flushed(), move |w: &[i64]| s2.lock().unwrap().push(w.to_vec()));
    /// g.run().unwrap();
    /// assert_eq!(*seen.lock().unwrap(), vec![vec![0, 1], vec![2, 3], vec![4]]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::sink_window_with_state`] is.
    pub fn sink_window<T, F>(&mut self, s: &Stream<T>, count: Count, mut f: F)
    where
        T: Element,
        F: FnMut(&[T]) + Send + 'static,
    {
        self.try_sink_window(s, count, move |w: &[T]| {
            f(w);
            Ok(())
        })
    }

    /// `sink_window` with a fallible function.
    pub fn try_sink_window<T, F>(&mut self, s: &Stream<T>, count: Count, mut f: F)
    where
        T: Element,
        F: FnMut(&[T]) -> OpResult + Send + 'static,
    {
        self.add_sink(
            "sink_window",
            CountWindow::new(count, None, move |w: &[T], _: &mut Outputs<T>| f(w)),
            &[s],
        )
    }

    /// Stateful `sink_window`: `f(window, &mut state)`.
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn sink_window_with_state<T, S, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        state: S,
        mut f: F,
    ) where
        T: Element,
        S: StateType,
        F: FnMut(&[T], &mut S) + Send + 'static,
    {
        let op = CountWindow::<T, T, _, _>::with_state(
            count,
            None,
            FnState(state),
            move |w: &[T], st: &mut FnState<S>, _: &mut Outputs<T>| {
                f(w, &mut st.0);
                Ok(())
            },
        );
        self.add_sink("sink_window", op, &[s])
    }

    /// `split_window`: `f(window)` gives one entry per output.
    ///
    /// ```
    /// use tributary::{Emit, Graph};
    /// use tributary::operator::window::Count;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..6i64);
    /// let [lo, hi] = g.split_window(&x, Count::new(2, 2), |w: &[i64]| [Emit::One(w[0]), Emit::One(w[1])]);
    /// let (a, b) = (g.collect(&lo), g.collect(&hi));
    /// g.run().unwrap();
    /// assert_eq!((a.take(), b.take()), (vec![0, 2, 4], vec![1, 3, 5]));
    /// ```
    pub fn split_window<T, U, F, const N: usize>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        mut f: F,
    ) -> [Stream<U>; N]
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> [Emit<U>; N] + Send + 'static,
    {
        let v = self.try_split_window(s, count, N, move |w: &[T]| Ok(f(w).into()));
        std::array::from_fn(|i| v[i])
    }

    /// `split_window` with a fallible function returning one entry per each of `n` outputs
    /// (a wrong length is an error).
    pub fn try_split_window<T, U, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        n: usize,
        mut f: F,
    ) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
    {
        self.add_operator(
            "split_window",
            CountWindow::new(count, None, move |w: &[T], out: &mut Outputs<U>| {
                out.emit_each("split_window", f(w)?)
            }),
            &[s],
            n,
        )
    }

    /// `merge_window`: window `k` of every input (one `Count` each, or one for all) goes to `f`
    /// once every input has it; unmatched tails are discarded at the end (and logged).
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::window::Count;
    /// let mut g = Graph::new();
    /// let a = g.source_iter(0..6i64);
    /// let b = g.source_iter(vec![10i64, 20, 30]);
    /// let y = g.merge_window(&[&a, &b], &[Count::new(2, 2), Count::new(1, 1)], |ws: &[&[i64]]| {
    ///     ws[0].iter().sum::<i64>() + ws[1][0]
    /// });
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![11, 25, 39]);
    /// ```
    pub fn merge_window<T, U, R, F>(
        &mut self,
        ins: &[&Stream<T>],
        counts: &[Count],
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(&[&[T]]) -> R + Send + 'static,
    {
        self.try_merge_window(ins, counts, move |ws: &[&[T]]| Ok(f(ws).into_emit()))
    }

    /// `merge_window` with a fallible function.
    pub fn try_merge_window<T, U, F>(
        &mut self,
        ins: &[&Stream<T>],
        counts: &[Count],
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[&[T]]) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        let op = MultiWindow::new(
            ins.len(),
            counts,
            move |ws: &[&[T]], out: &mut Outputs<U>| {
                out.emit(0, f(ws)?);
                Ok(())
            },
        );
        self.add_unary("merge_window", op, ins)
    }

    /// `multi_window`: like `merge_window`, with one result entry per each of `n` outputs.
    pub fn multi_window<T, U, F>(
        &mut self,
        ins: &[&Stream<T>],
        counts: &[Count],
        n: usize,
        mut f: F,
    ) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(&[&[T]]) -> Vec<Emit<U>> + Send + 'static,
    {
        self.try_multi_window(ins, counts, n, move |ws: &[&[T]]| Ok(f(ws)))
    }

    /// `multi_window` with a fallible function (a result of the wrong length is an error).
    pub fn try_multi_window<T, U, F>(
        &mut self,
        ins: &[&Stream<T>],
        counts: &[Count],
        n: usize,
        mut f: F,
    ) -> Vec<Stream<U>>
    where
        T: Element,
        U: Element,
        F: FnMut(&[&[T]]) -> Result<Vec<Emit<U>>, OpError> + Send + 'static,
    {
        let op = MultiWindow::new(
            ins.len(),
            counts,
            move |ws: &[&[T]], out: &mut Outputs<U>| out.emit_each("multi_window", f(ws)?),
        );
        self.add_operator("multi_window", op, ins, n)
    }

    /// `sliding_window_with_startup`: output `k >= 1` is `f` of elements
    /// `[max(0, k*step - window), k*step)`, emitted once `k*step` elements have arrived.
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::window::Count;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..30i64);
    /// let y = g.sliding_window_with_startup(&x, Count::new(10, 3), |w: &[i64]| w.iter().sum::<i64>());
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![3, 15, 36, 65, 95, 125, 155, 185, 215, 245]);
    /// ```
    pub fn sliding_window_with_startup<T, U, R, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        mut f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        R: IntoEmit<U>,
        F: FnMut(&[T]) -> R + Send + 'static,
    {
        self.try_sliding_window_with_startup(s, count, move |w: &[T]| Ok(f(w).into_emit()))
    }

    /// `sliding_window_with_startup` with a fallible function.
    pub fn try_sliding_window_with_startup<T, U, F>(
        &mut self,
        s: &Stream<T>,
        count: Count,
        f: F,
    ) -> Stream<U>
    where
        T: Element,
        U: Element,
        F: FnMut(&[T]) -> Result<Emit<U>, OpError> + Send + 'static,
    {
        self.add_unary(
            "sliding_window_with_startup",
            CountWindow::with_startup(count, try_emit_one(f)),
            &[s],
        )
    }

    /// `map_window` with a built-in reducer over floats; `Sum` and `Mean` slide in O(1) per
    /// element.
    ///
    /// ```
    /// use tributary::Graph;
    /// use tributary::operator::window::{Agg, Count};
    /// let mut g = Graph::new();
    /// let x = g.source_iter((0..6).map(f64::from));
    /// let y = g.map_window_agg(&x, Count::new(3, 1), Agg::Sum);
    /// let out = g.collect(&y);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![3.0, 6.0, 9.0, 12.0]);
    /// ```
    pub fn map_window_agg(&mut self, s: &Stream<f64>, count: Count, agg: Agg) -> Stream<f64> {
        self.add_unary("map_window", WindowAgg::new(count, agg), &[s])
    }

    /// `map_window` with a built-in reducer over dynamic values (the manifest's `agg`).
    pub fn map_window_agg_value(
        &mut self,
        s: &Stream<Value>,
        count: Count,
        agg: Agg,
    ) -> Stream<Value> {
        self.try_map_window(s, count, move |w: &[Value]| agg.reduce(w).map(Emit::One))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testkit::{
        cut, cuts, run_rr as run_batched, run_whole, run_with_restore, split_at,
    };
    use proptest::prelude::*;

    /// A `map_window` that emits each window as a vector.
    fn windows(count: Count) -> impl Operator<In = i64, Out = Vec<i64>> {
        CountWindow::new(count, None, |w: &[i64], out: &mut Outputs<Vec<i64>>| {
            out.push(w.to_vec());
            Ok(())
        })
    }

    fn startup(count: Count) -> impl Operator<In = i64, Out = Vec<i64>> {
        CountWindow::with_startup(count, |w: &[i64], out: &mut Outputs<Vec<i64>>| {
            out.push(w.to_vec());
            Ok(())
        })
    }

    fn sums(count: Count, initial: Option<i64>) -> impl Operator<In = i64, Out = i64> {
        CountWindow::new(count, initial, |w: &[i64], out: &mut Outputs<i64>| {
            out.push(w.iter().sum());
            Ok(())
        })
    }

    #[test]
    fn initial_value_prefixes_window_copies_without_prefilling_the_input() {
        let got = run_whole(
            sums(Count::new(2, 2), Some(0)),
            vec![vec![1, 2, 3, 4, 5]],
            1,
        )
        .unwrap();
        assert_eq!(got[0], vec![0, 0, 3, 7]);
    }

    #[test]
    fn incomplete_windows_are_dropped_without_flush() {
        let got = run_whole(windows(Count::new(3, 1)), vec![(0..5).collect()], 1).unwrap();
        assert_eq!(got[0], vec![vec![0, 1, 2], vec![1, 2, 3], vec![2, 3, 4]]);
    }

    #[test]
    fn flush_emits_every_window_holding_an_element_truncated_in_order() {
        let got = run_whole(
            windows(Count::new(3, 1).flushed()),
            vec![(0..5).collect()],
            1,
        )
        .unwrap();
        assert_eq!(
            got[0],
            vec![
                vec![0, 1, 2],
                vec![1, 2, 3],
                vec![2, 3, 4],
                vec![3, 4],
                vec![4]
            ]
        );
    }

    #[test]
    fn step_greater_than_window_skips_the_gaps() {
        let got = run_whole(windows(Count::new(2, 5)), vec![(0..12).collect()], 1).unwrap();
        assert_eq!(got[0], vec![vec![0, 1], vec![5, 6], vec![10, 11]]);
        // A gap at the end holds nothing to flush; a started window is flushed.
        let got = run_whole(
            windows(Count::new(2, 5).flushed()),
            vec![(0..9).collect()],
            1,
        )
        .unwrap();
        assert_eq!(got[0], vec![vec![0, 1], vec![5, 6]]);
        let got = run_whole(
            windows(Count::new(2, 5).flushed()),
            vec![(0..11).collect()],
            1,
        )
        .unwrap();
        assert_eq!(got[0], vec![vec![0, 1], vec![5, 6], vec![10]]);
    }

    #[test]
    fn gap_elements_split_across_batches_are_skipped() {
        let batches = vec![vec![0, 1, 2], vec![3], vec![4, 5, 6, 7, 8, 9, 10], vec![11]];
        let got = run_batched(windows(Count::new(2, 5)), vec![batches], 1).unwrap();
        assert_eq!(got[0], vec![vec![0, 1], vec![5, 6], vec![10, 11]]);
    }

    #[test]
    fn sliding_window_with_startup_grows_then_slides() {
        let sums =
            CountWindow::with_startup(Count::new(10, 3), |w: &[i64], out: &mut Outputs<i64>| {
                out.push(w.iter().sum());
                Ok(())
            });
        let got = run_whole(sums, vec![(0..30).collect()], 1).unwrap();
        assert_eq!(got[0], vec![3, 15, 36, 65, 95, 125, 155, 185, 215, 245]);
    }

    #[test]
    fn sliding_window_with_startup_flush_emits_the_truncated_tail() {
        let got = run_whole(
            startup(Count::new(4, 2).flushed()),
            vec![(0..5).collect()],
            1,
        )
        .unwrap();
        // [0,2), [0,4), then flushed [2,6) -> [2,3,4] and [4,8) -> [4].
        assert_eq!(
            got[0],
            vec![vec![0, 1], vec![0, 1, 2, 3], vec![2, 3, 4], vec![4]]
        );
    }

    #[test]
    fn null_values_flow_through_windows() {
        let op = CountWindow::new(
            Count::new(2, 1),
            None,
            |w: &[Value], out: &mut Outputs<Value>| {
                out.push(Value::Array(w.to_vec()));
                Ok(())
            },
        );
        let got = run_whole(op, vec![vec![Value::Null, Value::Int(1), Value::Null]], 1).unwrap();
        assert_eq!(
            got[0],
            vec![
                Value::Array(vec![Value::Null, Value::Int(1)]),
                Value::Array(vec![Value::Int(1), Value::Null]),
            ]
        );
        assert_eq!(
            Agg::Count.reduce(&[Value::Null, Value::Null]).unwrap(),
            Value::Int(2)
        );
    }

    #[test]
    fn a_zero_window_or_step_is_an_error_not_a_panic() {
        let e = run_whole(sums(Count::new(0, 1), None), vec![vec![1]], 1).unwrap_err();
        assert!(
            e.message.contains("window must be an integer >= 1"),
            "{}",
            e.message
        );
        let e = run_whole(sums(Count::new(2, 0), None), vec![vec![1]], 1).unwrap_err();
        assert!(e.message.contains("step must be"), "{}", e.message);
    }

    #[test]
    fn a_failing_function_reports_the_window() {
        let op = CountWindow::new(Count::new(2, 2), None, |w: &[i64], _: &mut Outputs<i64>| {
            if w[0] == 2 {
                Err(OpError::new("no twos"))
            } else {
                Ok(())
            }
        });
        let e = run_whole(op, vec![vec![0, 1, 2, 3]], 1).unwrap_err();
        assert_eq!(e.message, "no twos");
        assert_eq!(e.element.as_deref(), Some("[2, 3]"));
    }

    fn merged(counts: &[Count]) -> impl Operator<In = i64, Out = Vec<Vec<i64>>> {
        MultiWindow::new(
            2,
            counts,
            |ws: &[&[i64]], out: &mut Outputs<Vec<Vec<i64>>>| {
                out.push(ws.iter().map(|w| w.to_vec()).collect());
                Ok(())
            },
        )
    }

    #[test]
    fn merge_window_pairs_windows_with_different_sizes_per_input() {
        let op = merged(&[Count::new(2, 2), Count::new(3, 1)]);
        let got = run_whole(op, vec![(0..7).collect(), (10..15).collect()], 1).unwrap();
        assert_eq!(
            got[0],
            vec![
                vec![vec![0, 1], vec![10, 11, 12]],
                vec![vec![2, 3], vec![11, 12, 13]],
                vec![vec![4, 5], vec![12, 13, 14]],
            ]
        );
    }

    #[test]
    fn merge_window_discards_and_notes_unmatched_tails() {
        let mut op = merged(&[Count::new(1, 1)]);
        let mut out = Outputs::new(1);
        op.start(&mut out).unwrap();
        op.on_batch(0, vec![1, 2, 3, 4], &mut out).unwrap();
        op.on_batch(1, vec![5], &mut out).unwrap();
        op.on_end(0, &mut out).unwrap();
        op.on_end(1, &mut out).unwrap();
        op.finish(&mut out).unwrap();
        assert_eq!(out.take(0), vec![vec![vec![1], vec![5]]]);
        assert_eq!(
            op.end_note().as_deref(),
            Some("discarded 3 input elements left unmatched at end-of-stream")
        );
    }

    #[test]
    fn multi_and_split_window_check_the_result_length() {
        let op = MultiWindow::new(
            1,
            &[Count::new(1, 1)],
            |ws: &[&[i64]], out: &mut Outputs<i64>| {
                out.emit_each(
                    "multi_window",
                    vec![Emit::One(ws[0][0]), Emit::Skip, Emit::One(1)],
                )
            },
        );
        let e = run_whole(op, vec![vec![1]], 2).unwrap_err();
        assert!(
            e.message
                .contains("multi_window: the result has 3 entries; expected 2 (one per output)"),
            "{}",
            e.message
        );
        let op = CountWindow::new(
            Count::new(2, 2),
            None,
            |w: &[i64], out: &mut Outputs<i64>| {
                out.emit_each("split_window", vec![Emit::One(w[0]), Emit::One(w[1])])
            },
        );
        let got = run_whole(op, vec![(0..5).collect()], 2).unwrap();
        assert_eq!(got, vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn agg_follows_the_number_rules() {
        let ints = [Value::Int(1), Value::Int(2), Value::Int(4)];
        assert_eq!(Agg::Sum.reduce(&ints).unwrap(), Value::Int(7));
        assert_eq!(
            Agg::Sum
                .reduce(&[Value::Int(1), Value::Float(0.5), Value::Int(1)])
                .unwrap(),
            Value::Float(2.5)
        );
        assert_eq!(Agg::Mean.reduce(&ints).unwrap(), Value::Float(7.0 / 3.0));
        assert_eq!(
            Agg::Min
                .reduce(&[Value::Float(2.0), Value::Int(1)])
                .unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            Agg::Max
                .reduce(&[Value::Int(3), Value::Float(2.5)])
                .unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            Agg::Max
                .reduce(&[Value::Int(3), Value::Float(3.0)])
                .unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            Agg::Std.reduce(&[Value::Int(1), Value::Int(3)]).unwrap(),
            Value::Float(1.0)
        );
        assert_eq!(Agg::Count.reduce(&ints).unwrap(), Value::Int(3));
        let e = Agg::Sum
            .reduce(&[Value::Int(i64::MAX), Value::Int(1)])
            .unwrap_err();
        assert_eq!(e.message, "sum: integer overflow");
        let e = Agg::Mean.reduce(&[Value::Int(1), Value::Null]).unwrap_err();
        assert_eq!(e.message, "mean: null is not a number");
        assert_eq!("std".parse::<Agg>(), Ok(Agg::Std));
        assert!("median".parse::<Agg>().is_err());
    }

    #[test]
    fn incremental_sum_and_mean_match_the_slice_reducers() {
        let xs: Vec<f64> = (0..5000)
            .map(|i| ((i * 7919) % 1000) as f64 * 0.37 - 100.0)
            .collect();
        for count in [
            Count::new(100, 1),
            Count::new(7, 3),
            Count::new(3, 7),
            Count::new(5, 5).flushed(),
        ] {
            for agg in [Agg::Sum, Agg::Mean] {
                let fast = run_whole(WindowAgg::new(count, agg), vec![xs.clone()], 1).unwrap();
                let slow = run_whole(
                    CountWindow::new(count, None, move |w: &[f64], out: &mut Outputs<f64>| {
                        out.push(agg.reduce_f64(w));
                        Ok(())
                    }),
                    vec![xs.clone()],
                    1,
                )
                .unwrap();
                assert_eq!(fast[0].len(), slow[0].len());
                for (a, b) in fast[0].iter().zip(&slow[0]) {
                    assert!(
                        (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
                        "{count:?} {agg:?}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn incremental_sum_recovers_after_infinities_and_nan() {
        let xs = vec![1.0, f64::INFINITY, 2.0, 3.0, f64::NAN, 4.0, 5.0, 6.0];
        let got = run_whole(WindowAgg::new(Count::new(2, 1), Agg::Sum), vec![xs], 1).unwrap();
        let want = [
            f64::INFINITY,
            f64::INFINITY,
            5.0,
            f64::NAN,
            f64::NAN,
            9.0,
            11.0,
        ];
        assert_eq!(got[0].len(), want.len());
        for (a, b) in got[0].iter().zip(want) {
            assert!(a == &b || (a.is_nan() && b.is_nan()), "{a} vs {b}");
        }
    }

    #[test]
    fn the_other_float_reducers_run_over_the_slice() {
        let got = run_whole(
            WindowAgg::new(Count::new(2, 1), Agg::Max),
            vec![vec![1.0, 3.0, 2.0]],
            1,
        )
        .unwrap();
        assert_eq!(got[0], vec![3.0, 3.0]);
        let got = run_whole(
            WindowAgg::new(Count::new(2, 2), Agg::Count),
            vec![vec![1.0, 3.0, 2.0]],
            1,
        )
        .unwrap();
        assert_eq!(got[0], vec![2.0]);
    }

    #[test]
    fn graph_runs_map_window_agg_like_the_closure_over_the_slice() {
        let xs: Vec<f64> = (0..200_000).map(|i| (i % 1000) as f64 * 0.5).collect();
        let mut g = Graph::new();
        let s = g.source_iter(xs.clone());
        let a = g.map_window_agg(&s, Count::new(100, 1), Agg::Sum);
        let b = g.map_window(&s, Count::new(100, 1), |w: &[f64]| w.iter().sum::<f64>());
        let (ca, cb) = (g.collect(&a), g.collect(&b));
        g.run().unwrap();
        let (a, b) = (ca.take(), cb.take());
        assert_eq!(a.len(), 200_000 - 99);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
    }

    #[test]
    fn graph_runs_merge_and_multi_window_and_notes_discards() {
        let mut g = Graph::new();
        let a = g.source_iter(0..10i64);
        let b = g.source_iter(0..3i64);
        g.name_next("mw");
        let m = g.merge_window(
            &[&a, &b],
            &[Count::new(3, 3), Count::new(1, 1)],
            |ws: &[&[i64]]| ws[0].iter().sum::<i64>() * 10 + ws[1][0],
        );
        let outs = g.multi_window(&[&a, &b], &[Count::new(2, 2)], 2, |ws: &[&[i64]]| {
            vec![
                Emit::One(ws[0][0] + ws[1][0]),
                Emit::One(ws[0][1] + ws[1][1]),
            ]
        });
        let cm = g.collect(&m);
        let (c0, c1) = (g.collect(&outs[0]), g.collect(&outs[1]));
        let report = g.run().unwrap();
        assert_eq!(cm.take(), vec![30, 121, 212]);
        assert_eq!((c0.take(), c1.take()), (vec![0], vec![2]));
        assert!(
            report
                .notes
                .iter()
                .any(|(op, n)| op == "mw" && n.contains("discarded 1 ")),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn graph_runs_agg_over_values() {
        let mut g = Graph::new();
        let s = g.source_iter(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Float(0.5),
            Value::Int(1),
        ]);
        let y = g.map_window_agg_value(&s, Count::new(2, 2), Agg::Sum);
        let c = g.collect(&y);
        g.run().unwrap();
        assert_eq!(c.take(), vec![Value::Int(3), Value::Float(1.5)]);
    }

    fn count_strategy() -> impl Strategy<Value = Count> {
        (1usize..7, 1usize..9, any::<bool>()).prop_map(|(w, s, f)| Count {
            window: w,
            step: s,
            flush: f,
        })
    }

    proptest! {
        #[test]
        fn map_window_output_does_not_depend_on_batching(
            count in count_strategy(), n in 0i64..60, c in cuts(),
        ) {
            let xs: Vec<i64> = (0..n).collect();
            let whole = run_whole(windows(count), vec![xs.clone()], 1).unwrap();
            let split = run_batched(windows(count), vec![split_at(&xs, &c)], 1).unwrap();
            prop_assert_eq!(&whole, &split);
            // And it is the definition: window k is [k*step, k*step + window).
            let mut want = vec![];
            let mut k = 0;
            while (k * count.step) < xs.len() {
                let s = k * count.step;
                let e = (s + count.window).min(xs.len());
                if s + count.window <= xs.len() || count.flush {
                    want.push(xs[s..e].to_vec());
                }
                k += 1;
            }
            prop_assert_eq!(&whole[0], &want);
        }

        #[test]
        fn startup_windows_do_not_depend_on_batching(
            count in count_strategy(), n in 0i64..60, c in cuts(),
        ) {
            let xs: Vec<i64> = (0..n).collect();
            let whole = run_whole(startup(count), vec![xs.clone()], 1).unwrap();
            let split = run_batched(startup(count), vec![split_at(&xs, &c)], 1).unwrap();
            prop_assert_eq!(&whole, &split);
            let full = xs.len() / count.step;
            for (i, w) in whole[0].iter().take(full).enumerate() {
                let e = (i + 1) * count.step;
                prop_assert_eq!(w, &xs[e.saturating_sub(count.window)..e].to_vec());
            }
        }

        #[test]
        fn merge_window_does_not_depend_on_batching(
            c0 in count_strategy(), c1 in count_strategy(), n0 in 0i64..40, n1 in 0i64..40,
            k0 in cuts(), k1 in cuts(),
        ) {
            let (a, b): (Vec<i64>, Vec<i64>) = ((0..n0).collect(), (100..100 + n1).collect());
            let whole = run_whole(merged(&[c0, c1]), vec![a.clone(), b.clone()], 1).unwrap();
            let split = run_batched(merged(&[c0, c1]), vec![split_at(&a, &k0), split_at(&b, &k1)], 1).unwrap();
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn count_windows_resume_from_a_snapshot(
            count in count_strategy(), n in 0i64..60, c in cuts(), k in cut(), init in any::<bool>(),
        ) {
            let xs: Vec<i64> = (0..n).collect();
            let b = vec![split_at(&xs, &c)];
            let (got, want) = run_with_restore(|| windows(count), b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let (got, want) = run_with_restore(|| startup(count), b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let initial = init.then_some(-1);
            let (got, want) = run_with_restore(|| sums(count, initial), b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            // A stateful form: running total of window sums.
            let running = || CountWindow::with_state(
                count,
                None,
                FnState(0i64),
                |w: &[i64], t: &mut FnState<i64>, out: &mut Outputs<i64>| {
                    t.0 += w.iter().sum::<i64>();
                    out.push(t.0);
                    Ok(())
                },
            );
            let (got, want) = run_with_restore(running, b.clone(), &[], k, 1);
            prop_assert_eq!(got, want);
            let fs: Vec<f64> = xs.iter().map(|x| *x as f64 * 0.5).collect();
            for agg in [Agg::Sum, Agg::Mean, Agg::Max] {
                let (got, want) = run_with_restore(
                    || WindowAgg::new(count, agg), vec![split_at(&fs, &c)], &[], k, 1,
                );
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn merge_windows_resume_from_a_snapshot(
            c0 in count_strategy(), c1 in count_strategy(), n0 in 0i64..40, n1 in 0i64..40,
            k0 in cuts(), k1 in cuts(), order in prop::collection::vec(0usize..2, 0..20),
            k in cut(),
        ) {
            let (a, b): (Vec<i64>, Vec<i64>) = ((0..n0).collect(), (100..100 + n1).collect());
            let inputs = vec![split_at(&a, &k0), split_at(&b, &k1)];
            let (got, want) = run_with_restore(|| merged(&[c0, c1]), inputs.clone(), &order, k, 1);
            prop_assert_eq!(got, want);
            let counting = || MultiWindow::with_state(
                2,
                &[c0, c1],
                FnState(0usize),
                |ws: &[&[i64]], n: &mut FnState<usize>, out: &mut Outputs<i64>| {
                    n.0 += 1;
                    out.push(ws[0].len() as i64 * 1000 + n.0 as i64);
                    Ok(())
                },
            );
            let (got, want) = run_with_restore(counting, inputs, &order, k, 1);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn window_agg_is_bit_identical_under_any_batching(
            count in count_strategy(), xs in prop::collection::vec(-1e6f64..1e6, 0..200),
            c in cuts(), mean in any::<bool>(),
        ) {
            let agg = if mean { Agg::Mean } else { Agg::Sum };
            let whole = run_whole(WindowAgg::new(count, agg), vec![xs.clone()], 1).unwrap();
            let split = run_batched(WindowAgg::new(count, agg), vec![split_at(&xs, &c)], 1).unwrap();
            prop_assert_eq!(whole, split);
        }
    }
}

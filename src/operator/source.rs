//! Sources: streams fed from an iterator, a function, a file, or another thread.
//!
//! Every generating source can be paced with [`Paced`] (an `interval` between elements);
//! `source_channel` is fed by another thread through a [`SourceSender`].

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::emit::{Emit, IntoEmit};
use crate::link::local::{Channel, End, LinkConfig, Overflow};
use crate::operator::{
    cannot_restore, load_state, save_state, Element, FnState, Gen, OpError, OpResult, OpState,
    Operator, Outputs, StateType,
};
use crate::pipeline::{Graph, Stream};
use crate::recovery::{now_micros, Slot};
use crate::value::Value;

/// The format of a file source or sink: one element per line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Each line is a string element (without its line ending).
    Lines,
    /// Each line is a JSON value; blank lines are ignored.
    #[default]
    Jsonl,
    /// Each line is a CSV row, an array of values (see [`csv_row`]); blank lines are ignored.
    Csv,
}

/// What a bad input line does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// The source stops at the line, after what came before it: a data error naming `file:line`.
    #[default]
    Fail,
    /// The line is reported (`file:line`, reason) as a warning, counted, and skipped.
    Skip,
}

/// A type check of a typed stream's elements: `Err(reason)` makes the line bad.
pub type TypeCheck = fn(&Value) -> Result<(), String>;

/// Emits the items of an iterator. Its snapshot is how many it emitted; a restored source
/// skips that many items of its (fresh, identical) iterator, so it needs an iterator that
/// yields the same items every time it is built.
pub struct IterSource<I: Iterator> {
    it: I,
    emitted: u64,
}

impl<I: Iterator> IterSource<I> {
    /// A source emitting the items of `it`.
    pub fn new(it: I) -> Self {
        IterSource { it, emitted: 0 }
    }
}

impl<I> Operator for IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Element,
{
    type In = I::Item;
    type Out = I::Item;

    fn generate(&mut self, out: &mut Outputs<I::Item>, max: usize) -> OpResult<Gen> {
        let o = out.port_mut(0);
        let before = o.len();
        // What the iterator surely has goes straight into reserved memory (no capacity check
        // per element); the rest, if any, is pushed.
        let sure = self.it.size_hint().0.min(max);
        o.reserve(sure);
        let mut n = 0;
        for slot in &mut o.spare_capacity_mut()[..sure] {
            let Some(x) = self.it.next() else { break };
            slot.write(x);
            n += 1;
        }
        // SAFETY: the first `n` spare slots were just initialized.
        unsafe { o.set_len(before + n) };
        for x in self.it.by_ref().take(max - n) {
            o.push(x);
        }
        self.emitted += (o.len() - before) as u64;
        Ok(if o.len() < max { Gen::Done } else { Gen::More })
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("source_iter", &self.emitted).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let n: u64 = load_state("source_iter", state)?;
        let skipped = self.it.by_ref().take(n as usize).count() as u64;
        self.emitted = skipped;
        if skipped < n {
            return Err(OpError::new(format!(
                "source_iter: cannot restore: the position is {n} but the source has only {skipped} items"
            )));
        }
        Ok(())
    }
}

/// Holds back an error until what was generated before it has been handed on: the actor
/// drops a callback's output when it fails.
fn fail_after<T>(
    o: &[T],
    start: usize,
    e: OpError,
    pending: &mut Option<OpError>,
) -> OpResult<Gen> {
    if o.len() > start {
        *pending = Some(e);
        Ok(Gen::More)
    } else {
        Err(e)
    }
}

/// Emits `f(0)`, `f(1)`, ... `f(count - 1)` (IoTPy's `source_func_to_stream`); an `Emit::Skip`
/// emits nothing for that call. `S` is the state of a stateful form (`()` for none). The
/// snapshot is the next call's index, a failure held back, and the state: a restored source
/// goes on with the next call.
pub struct SourceFn<T, S, F> {
    f: F,
    state: S,
    count: usize,
    i: usize,
    pending: Option<OpError>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> SourceFn<T, (), ()> {
    /// A source making `count` calls of `f` (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(
        count: usize,
        mut f: G,
    ) -> SourceFn<T, (), impl FnMut(usize, &mut ()) -> OpResult<Emit<T>>>
    where
        G: FnMut(usize) -> Result<Emit<T>, OpError>,
    {
        SourceFn::with_state(count, (), move |i, _: &mut ()| f(i))
    }
}

impl<T, S, F> SourceFn<T, S, F>
where
    F: FnMut(usize, &mut S) -> Result<Emit<T>, OpError>,
{
    /// A source making `count` calls of `f(i, &mut state)`.
    pub fn with_state(count: usize, state: S, f: F) -> Self {
        SourceFn {
            f,
            state,
            count,
            i: 0,
            pending: None,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: Element, S: OpState, F> Operator for SourceFn<T, S, F>
where
    F: FnMut(usize, &mut S) -> Result<Emit<T>, OpError> + Send + 'static,
{
    type In = T;
    type Out = T;

    fn generate(&mut self, out: &mut Outputs<T>, max: usize) -> OpResult<Gen> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let o = out.port_mut(0);
        let start = o.len();
        let mut calls = 0;
        while self.i < self.count && calls < max && o.len() - start < max {
            match (self.f)(self.i, &mut self.state) {
                Ok(e) => e.push_into(o),
                Err(e) => {
                    let e = OpError {
                        message: format!("call {}: {}", self.i, e.message),
                        ..e
                    };
                    return fail_after(o, start, e, &mut self.pending);
                }
            }
            self.i += 1;
            calls += 1;
        }
        Ok(if self.i >= self.count {
            Gen::Done
        } else {
            Gen::More
        })
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let st = (self.i as u64, &self.pending, self.state.save()?);
        save_state("source_fn", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (i, pending, st): (u64, Option<OpError>, Option<Vec<u8>>) =
            load_state("source_fn", state)?;
        self.i = i as usize;
        self.pending = pending;
        if let Some(b) = st {
            self.state.load(&b)?;
        }
        Ok(())
    }
}

/// Paces any generating source: one element per call, then a pause of `interval` (for
/// replaying sensor data in real time). No pause after a call that emitted nothing. The
/// snapshot is the inner source's, with the schedule (the first element's time and how many
/// were emitted since).
pub struct Paced<O> {
    inner: O,
    interval: Duration,
    /// Where the time of the first element is kept across restarts (if anywhere).
    clock: Option<Slot>,
    /// The time of the first element, in microseconds since the Unix epoch.
    t0: u64,
    /// Elements emitted since `t0` (replayed ones included).
    emitted: u64,
}

impl<O: Operator> Paced<O> {
    /// `inner`, with `interval` between its elements.
    pub fn new(inner: O, interval: Duration) -> Self {
        Paced {
            inner,
            interval,
            clock: None,
            t0: 0,
            emitted: 0,
        }
    }

    /// Keeps the schedule in `clock`: a restarted source emits what is already due at once.
    pub fn with_clock(mut self, clock: Option<Slot>) -> Self {
        self.clock = clock;
        self
    }
}

impl<O: Operator> Operator for Paced<O> {
    type In = O::In;
    type Out = O::Out;

    fn start(&mut self, out: &mut Outputs<O::Out>) -> OpResult {
        self.inner.start(out)
    }

    fn generate(&mut self, out: &mut Outputs<O::Out>, _max: usize) -> OpResult<Gen> {
        let before = if out.is_empty() {
            0
        } else {
            out.port_mut(0).len()
        };
        if self.t0 == 0 {
            self.t0 = match &self.clock {
                Some(c) if c.get() != 0 => c.get(),
                _ => {
                    let now = now_micros();
                    if let Some(c) = &self.clock {
                        c.set(now);
                    }
                    now
                }
            };
        }
        let g = self.inner.generate(out, 1)?;
        let emitted = !out.is_empty() && out.port_mut(0).len() > before;
        if !emitted {
            return Ok(g);
        }
        self.emitted += 1;
        // The next element is due `emitted` intervals after the first.
        let due = self.t0 as u128 + self.interval.as_micros() * self.emitted as u128;
        let now = now_micros() as u128;
        Ok(match g {
            Gen::More if due > now => Gen::Wait(Duration::from_micros((due - now) as u64)),
            g => g,
        })
    }

    fn finish(&mut self, out: &mut Outputs<O::Out>) -> OpResult {
        self.inner.finish(out)
    }

    fn end_note(&self) -> Option<String> {
        self.inner.end_note()
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let st = (self.t0, self.emitted, self.inner.snapshot()?);
        save_state("a paced source", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (t0, emitted, inner): (u64, u64, Option<Vec<u8>>) =
            load_state("a paced source", state)?;
        if let Some(b) = inner {
            self.inner.restore(&b)?;
        }
        self.t0 = t0;
        self.emitted = emitted;
        Ok(())
    }
}

/// Splits one CSV record into fields, each with whether it was quoted.
///
/// Fields are separated by `,`; a field starting with `"` is quoted, `""` inside it is one
/// `"`, and it may hold commas and line breaks. `None` means a quoted field is not closed
/// (the record goes on on the next line). Text after a closing quote, up to the next comma,
/// is appended to the field.
pub fn split_csv(record: &str) -> Option<Vec<(String, bool)>> {
    let mut fields = vec![];
    let mut chars = record.chars().peekable();
    loop {
        let mut field = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next() {
                    None => return None,
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        loop {
            match chars.next() {
                None => {
                    fields.push((field, quoted));
                    return Some(fields);
                }
                Some(',') => break,
                Some(c) => field.push(c),
            }
        }
        fields.push((field, quoted));
    }
}

/// The value of one CSV field: a quoted field is a string; an unquoted one is an integer if
/// it parses as i64, a float if it is written as a decimal number (digits, sign, `.`, exponent;
/// never `nan` or `inf`), else the string as written. Surrounding spaces are ignored for the
/// number test only. An empty field is the empty string.
pub fn csv_value(field: String, quoted: bool) -> Value {
    if quoted {
        return Value::Str(field);
    }
    let t = field.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Value::Int(i);
    }
    let numeric = t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    match t.parse::<f64>() {
        Ok(f) if numeric => Value::Float(f),
        _ => Value::Str(field),
    }
}

/// Parses one CSV record into an array of values ([`split_csv`], then [`csv_value`]);
/// `None` if a quoted field is not closed.
pub fn csv_row(record: &str) -> Option<Value> {
    let fields = split_csv(record)?;
    Some(Value::Array(
        fields.into_iter().map(|(f, q)| csv_value(f, q)).collect(),
    ))
}

/// Parses one line of JSON lines input (its line ending is ignored): `Ok(None)` for a blank
/// line, `Err(reason)` for malformed JSON or an element `typecheck` rejects.
pub fn parse_json_line(line: &[u8], typecheck: Option<TypeCheck>) -> Result<Option<Value>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let v = Value::from_json(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Some(check) = typecheck {
        check(&v)?;
    }
    Ok(Some(v))
}

/// Reads a file (or standard input) line by line (buffered), one element per line in a
/// [`Format`]; bad lines follow [`OnError`]. The snapshot is the position: the lines and bytes
/// read, with the bad lines skipped and a failure held back; a restored file source seeks
/// there. Standard input cannot be read again: restoring `source.stdin` is an error.
pub struct FileSource {
    path: PathBuf,
    /// Reads standard input rather than `path` (named `stdin` in messages).
    stdin: bool,
    format: Format,
    on_error: OnError,
    typecheck: Option<TypeCheck>,
    reader: Option<BufReader<File>>,
    buf: Vec<u8>,
    line: usize,
    /// Bytes read (the position to resume at).
    offset: u64,
    skipped: u64,
    pending: Option<OpError>,
}

impl FileSource {
    /// A source reading `path` in `format`.
    pub fn new(
        path: impl AsRef<Path>,
        format: Format,
        on_error: OnError,
        typecheck: Option<TypeCheck>,
    ) -> Self {
        FileSource {
            path: path.as_ref().to_path_buf(),
            stdin: false,
            format,
            on_error,
            typecheck,
            reader: None,
            buf: Vec::new(),
            line: 0,
            offset: 0,
            skipped: 0,
            pending: None,
        }
    }

    /// A source reading standard input in `format`; messages name it `stdin` (`stdin:3: ...`).
    pub fn stdin(format: Format, on_error: OnError, typecheck: Option<TypeCheck>) -> Self {
        FileSource {
            stdin: true,
            ..FileSource::new("stdin", format, on_error, typecheck)
        }
    }

    /// Opens the file, or a duplicate of standard input.
    fn open(&self) -> OpResult<File> {
        if self.stdin {
            use std::os::fd::AsFd;
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| OpError::new(format!("cannot read standard input: {e}")))?;
            return Ok(File::from(fd));
        }
        File::open(&self.path)
            .map_err(|e| OpError::new(format!("cannot open {}: {e}", self.path.display())))
    }

    /// Bad lines skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Reads one more line into `self.buf` (without its line ending); false at end of file.
    fn read_line(&mut self) -> OpResult<bool> {
        self.buf.clear();
        let Some(r) = self.reader.as_mut() else {
            return Ok(false);
        };
        let n = r.read_until(b'\n', &mut self.buf).map_err(|e| {
            OpError::new(format!(
                "{}:{}: cannot read: {e}",
                self.path.display(),
                self.line + 1
            ))
        })?;
        if n == 0 {
            return Ok(false);
        }
        self.offset += n as u64;
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(true)
    }

    /// Parses the record starting at the current line: `Ok(None)` for a line to ignore.
    fn parse(&mut self) -> OpResult<Result<Option<Value>, String>> {
        let text = match std::str::from_utf8(&self.buf) {
            Ok(t) => t.to_string(),
            Err(_) => return Ok(Err("not valid UTF-8".into())),
        };
        let v = match self.format {
            Format::Lines => Value::Str(text),
            Format::Jsonl => return Ok(parse_json_line(text.as_bytes(), self.typecheck)),
            Format::Csv if text.trim().is_empty() => return Ok(Ok(None)),
            Format::Csv => {
                let mut record = text;
                loop {
                    if let Some(row) = csv_row(&record) {
                        break row;
                    }
                    if !self.read_line()? {
                        return Ok(Err("a quoted field is not closed".into()));
                    }
                    record.push('\n');
                    record.push_str(&String::from_utf8_lossy(&self.buf));
                }
            }
        };
        if let Some(check) = self.typecheck {
            if let Err(reason) = check(&v) {
                return Ok(Err(reason));
            }
        }
        Ok(Ok(Some(v)))
    }
}

impl Operator for FileSource {
    type In = Value;
    type Out = Value;

    fn generate(&mut self, out: &mut Outputs<Value>, max: usize) -> OpResult<Gen> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        if self.reader.is_none() {
            let mut f = self.open()?;
            if self.offset > 0 {
                use std::io::{Seek, SeekFrom};
                f.seek(SeekFrom::Start(self.offset)).map_err(|e| {
                    OpError::new(format!(
                        "cannot seek to byte {} of {}: {e}",
                        self.offset,
                        self.path.display()
                    ))
                })?;
            }
            self.reader = Some(BufReader::with_capacity(64 * 1024, f));
        }
        let start = out.port_mut(0).len();
        while out.port_mut(0).len() - start < max {
            if !self.read_line()? {
                return Ok(Gen::Done);
            }
            let first = self.line;
            match self.parse()? {
                Ok(Some(v)) => out.push(v),
                Ok(None) => {}
                Err(reason) => {
                    let msg = format!("{}:{first}: {reason}", self.path.display());
                    match self.on_error {
                        OnError::Fail => {
                            return fail_after(
                                out.port_mut(0),
                                start,
                                OpError::data(msg),
                                &mut self.pending,
                            )
                        }
                        OnError::Skip => {
                            tracing::warn!("{msg} (line skipped)");
                            self.skipped += 1;
                        }
                    }
                }
            }
        }
        Ok(Gen::More)
    }

    fn end_note(&self) -> Option<String> {
        (self.skipped > 0).then(|| {
            format!(
                "skipped {} bad lines of {}",
                self.skipped,
                self.path.display()
            )
        })
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let st = (self.line as u64, self.offset, self.skipped, &self.pending);
        save_state("source.file", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        if self.stdin {
            return Err(cannot_restore(
                "source.stdin",
                "standard input cannot be read again",
            ));
        }
        let (line, offset, skipped, pending): (u64, u64, u64, Option<OpError>) =
            load_state("source.file", state)?;
        self.line = line as usize;
        self.offset = offset;
        self.skipped = skipped;
        self.pending = pending;
        self.reader = None;
        Ok(())
    }
}

/// The input end of a [`Graph::source_channel`]: another thread sends elements into the
/// stream. Clones share the stream, which ends once every clone is dropped or `close` is called.
pub struct SourceSender<T> {
    inner: Arc<SenderInner<T>>,
}

impl<T> Clone for SourceSender<T> {
    fn clone(&self) -> Self {
        SourceSender {
            inner: self.inner.clone(),
        }
    }
}

struct SenderInner<T> {
    chan: Arc<Channel<T>>,
    closed: AtomicBool,
}

impl<T> SenderInner<T> {
    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.chan.close(End::default());
        }
    }
}

impl<T> Drop for SenderInner<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// A send on a [`SourceSender`] whose stream was already closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the source channel is closed")]
pub struct SourceClosed;

impl<T> SourceSender<T> {
    /// Sends one element, waiting while the stream's buffer is full.
    pub fn send(&self, x: T) -> Result<(), SourceClosed> {
        self.send_batch(vec![x])
    }

    /// Sends a batch of elements in order, waiting while the stream's buffer is full.
    pub fn send_batch(&self, mut batch: Vec<T>) -> Result<(), SourceClosed> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SourceClosed);
        }
        self.inner.chan.push_blocking(&mut batch, None);
        Ok(())
    }

    /// Ends the stream (also done when the last clone is dropped).
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Passes on what a [`SourceSender`] sends. Its snapshot is how many elements it passed on;
/// what was sent cannot be sent again, so restoring it is an error.
pub struct ChannelSource<T> {
    passed: u64,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Element> Operator for ChannelSource<T> {
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        self.passed += batch.len() as u64;
        out.put_vec(0, batch);
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("source_channel", &self.passed).map(Some)
    }

    fn restore(&mut self, _state: &[u8]) -> OpResult {
        Err(cannot_restore(
            "source_channel",
            "what another thread sent cannot be sent again",
        ))
    }
}

impl Graph {
    /// A source that emits every item of `it`, then ends.
    pub fn source_iter<I>(&mut self, it: I) -> Stream<I::Item>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Element,
    {
        self.add_unary("source_iter", IterSource::new(it.into_iter()), &[])
    }

    /// Adds a generating source operator, paced with `interval` between elements if given
    /// (e.g. `g.source_paced("source_iter", IterSource::new(0..10), Some(ms))`).
    pub fn source_paced<O: Operator>(
        &mut self,
        kind: &str,
        op: O,
        interval: Option<Duration>,
    ) -> Stream<O::Out> {
        self.source_paced_clocked(kind, op, interval, None)
    }

    /// [`Graph::source_paced`] whose schedule survives restarts through `clock`.
    pub fn source_paced_clocked<O: Operator>(
        &mut self,
        kind: &str,
        op: O,
        interval: Option<Duration>,
        clock: Option<Slot>,
    ) -> Stream<O::Out> {
        match interval {
            Some(d) => self.add_unary(kind, Paced::new(op, d).with_clock(clock), &[]),
            None => self.add_unary(kind, op, &[]),
        }
    }

    /// `source_iter` with a pause of `interval` between elements.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter_paced(vec![1i64, 2, 3], Duration::from_millis(20));
    /// let out = g.collect(&x);
    /// let t0 = Instant::now();
    /// g.run().unwrap();
    /// assert!(t0.elapsed() >= Duration::from_millis(40));
    /// assert_eq!(out.take(), vec![1, 2, 3]);
    /// ```
    pub fn source_iter_paced<I>(&mut self, it: I, interval: Duration) -> Stream<I::Item>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Element,
    {
        self.source_paced(
            "source_iter",
            IterSource::new(it.into_iter()),
            Some(interval),
        )
    }

    /// `source_fn`: emits `f(0)`, `f(1)`, ..., `f(count - 1)` (a value, or an [`Emit`]: `Skip`
    /// emits nothing for that call), then ends.
    ///
    /// ```
    /// use tributary::{Emit, Graph};
    /// let mut g = Graph::new();
    /// let x = g.source_fn(5, |i| if i % 2 == 0 { Emit::One(i as i64 * 10) } else { Emit::Skip });
    /// let out = g.collect(&x);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![0, 20, 40]);
    /// ```
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none); the state of
    /// [`Graph::source_fn_with_state`] is.
    pub fn source_fn<T, R, F>(&mut self, count: usize, mut f: F) -> Stream<T>
    where
        T: Element,
        R: IntoEmit<T>,
        F: FnMut(usize) -> R + Send + 'static,
    {
        self.add_unary(
            "source_fn",
            SourceFn::new(count, move |i| Ok(f(i).into_emit())),
            &[],
        )
    }

    /// `source_fn` with a fallible function: an `Err` fails the source (after what it emitted).
    pub fn try_source_fn<T, F>(&mut self, count: usize, f: F) -> Stream<T>
    where
        T: Element,
        F: FnMut(usize) -> Result<Emit<T>, OpError> + Send + 'static,
    {
        self.add_unary("source_fn", SourceFn::new(count, f), &[])
    }

    /// Stateful `source_fn`: `f(i, &mut state)`.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let fib = g.source_fn_with_state(6, (0i64, 1i64), |_, s| { let x = s.0; *s = (s.1, s.0 + s.1); x });
    /// let out = g.collect(&fib);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![0, 1, 1, 2, 3, 5]);
    /// ```
    ///
    /// The state is kept in the operator: it is part of the operator's snapshot.
    pub fn source_fn_with_state<T, S, R, F>(
        &mut self,
        count: usize,
        state: S,
        mut f: F,
    ) -> Stream<T>
    where
        T: Element,
        S: StateType,
        R: IntoEmit<T>,
        F: FnMut(usize, &mut S) -> R + Send + 'static,
    {
        let op = SourceFn::with_state(count, FnState(state), move |i, st: &mut FnState<S>| {
            Ok(f(i, &mut st.0).into_emit())
        });
        self.add_unary("source_fn", op, &[])
    }

    /// `source_fn` with a pause of `interval` between elements.
    pub fn source_fn_paced<T, R, F>(
        &mut self,
        count: usize,
        interval: Duration,
        mut f: F,
    ) -> Stream<T>
    where
        T: Element,
        R: IntoEmit<T>,
        F: FnMut(usize) -> R + Send + 'static,
    {
        let op = SourceFn::new(count, move |i| Ok(f(i).into_emit()));
        self.source_paced("source_fn", op, Some(interval))
    }

    /// `source.file`: one element per line of `path` in `format` (lines numbered from 1).
    /// A bad line (bad JSON or CSV, or rejected by `typecheck`) follows `on_error`: `Fail`
    /// stops the source there with a data error `path:line: reason` after emitting what came
    /// before; `Skip` warns with `path:line` and the reason, and counts it. A missing file
    /// fails the source with an error naming the path. Pace it with [`Graph::source_paced`]
    /// and a [`FileSource`].
    ///
    /// ```
    /// use tributary::{Graph, Value};
    /// use tributary::operator::source::{Format, OnError};
    /// let dir = std::env::temp_dir().join(format!("tributary-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("in.jsonl");
    /// std::fs::write(&path, "1\n\n[2, \"b\"]\n").unwrap();
    /// let mut g = Graph::new();
    /// let x = g.source_file(&path, Format::Jsonl, OnError::Fail, None);
    /// let out = g.collect(&x);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![Value::Int(1), Value::from_json("[2, \"b\"]").unwrap()]);
    /// ```
    pub fn source_file(
        &mut self,
        path: impl AsRef<Path>,
        format: Format,
        on_error: OnError,
        typecheck: Option<TypeCheck>,
    ) -> Stream<Value> {
        self.add_unary(
            "source.file",
            FileSource::new(path, format, on_error, typecheck),
            &[],
        )
    }

    /// `source.stdin`: like [`Graph::source_file`], reading standard input; bad lines are
    /// reported as `stdin:LINE`.
    pub fn source_stdin(
        &mut self,
        format: Format,
        on_error: OnError,
        typecheck: Option<TypeCheck>,
    ) -> Stream<Value> {
        self.add_unary(
            "source.stdin",
            FileSource::stdin(format, on_error, typecheck),
            &[],
        )
    }

    /// `source_channel`: a stream another thread feeds through the returned [`SourceSender`]
    /// (`send`, `send_batch`; they wait while `capacity` elements are queued). The stream
    /// ends when every sender is dropped or `close` is called.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let (tx, x) = g.source_channel::<i64>(16);
    /// let y = g.map_element(&x, |v| v + 1);
    /// let out = g.collect(&y);
    /// let feeder = std::thread::spawn(move || {
    ///     for i in 0..100 { tx.send(i).unwrap(); }
    /// });
    /// g.run().unwrap();
    /// feeder.join().unwrap();
    /// assert_eq!(out.take(), (1..=100).collect::<Vec<i64>>());
    /// ```
    pub fn source_channel<T: Element>(&mut self, capacity: usize) -> (SourceSender<T>, Stream<T>) {
        let chan = Channel::new(LinkConfig {
            capacity: capacity.max(1),
            overflow: Overflow::Block,
            ..LinkConfig::default()
        });
        let s = self.add_external_source(
            "source_channel",
            ChannelSource {
                passed: 0,
                _t: std::marker::PhantomData,
            },
            chan.clone(),
        );
        let tx = SourceSender {
            inner: Arc::new(SenderInner {
                chan,
                closed: AtomicBool::new(false),
            }),
        };
        (tx, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testkit::source_with_restore;

    fn v(s: &str) -> Value {
        Value::from_json(s).unwrap()
    }

    fn drain<O: Operator>(op: &mut O, max: usize) -> (Vec<O::Out>, OpResult<Gen>) {
        let mut got = vec![];
        let mut out = Outputs::new(1);
        loop {
            let r = op.generate(&mut out, max);
            got.extend(out.take(0));
            match r {
                Ok(Gen::More) | Ok(Gen::Wait(_)) => continue,
                r => return (got, r),
            }
        }
    }

    /// An iterator over `0..n` whose size hint's lower bound is `lower` (true or not).
    struct Hinted {
        next: u64,
        n: u64,
        lower: usize,
    }

    impl Iterator for Hinted {
        type Item = u64;
        fn next(&mut self) -> Option<u64> {
            (self.next < self.n).then(|| {
                self.next += 1;
                self.next - 1
            })
        }
        fn size_hint(&self) -> (usize, Option<usize>) {
            (self.lower, None)
        }
    }

    #[test]
    fn an_iterator_source_emits_everything_in_order_whatever_its_size_hint_says() {
        for (n, lower) in [(10, 10), (10, 0), (10, 4), (10, 50), (0, 3), (5000, 5000)] {
            for max in [1, 3, 1024] {
                let mut src = IterSource::new(Hinted { next: 0, n, lower });
                let (got, r) = drain(&mut src, max);
                assert!(matches!(r, Ok(Gen::Done)), "n={n} lower={lower} max={max}");
                assert_eq!(
                    got,
                    (0..n).collect::<Vec<_>>(),
                    "n={n} lower={lower} max={max}"
                );
                assert_eq!(src.emitted, n);
            }
        }
    }

    fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    fn int_only(v: &Value) -> Result<(), String> {
        match v {
            Value::Int(_) => Ok(()),
            other => Err(format!("expected i64, found {} {other}", other.type_name())),
        }
    }

    #[test]
    fn a_bad_line_fails_after_the_lines_before_it_or_is_skipped() {
        let (_d, p) = file("input.jsonl", "1\n2\n\"three\"\n\n4\n");
        for max in [1, 1024] {
            let mut src = FileSource::new(&p, Format::Jsonl, OnError::Fail, Some(int_only));
            let (got, r) = drain(&mut src, max);
            assert_eq!(got, vec![Value::Int(1), Value::Int(2)]);
            let e = r.unwrap_err();
            assert!(e.data_error);
            assert_eq!(
                e.message,
                format!("{}:3: expected i64, found string \"three\"", p.display())
            );
        }
        let mut src = FileSource::new(&p, Format::Jsonl, OnError::Skip, Some(int_only));
        let (got, r) = drain(&mut src, 2);
        assert_eq!(r.unwrap(), Gen::Done);
        assert_eq!(got, vec![Value::Int(1), Value::Int(2), Value::Int(4)]);
        assert_eq!(src.skipped(), 1);
        assert!(src.end_note().unwrap().starts_with("skipped 1 bad lines"));
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let (_d, p) = file("in.jsonl", "\n[1, 2]\n{oops\n");
        let mut src = FileSource::new(&p, Format::Jsonl, OnError::Fail, None);
        let (got, r) = drain(&mut src, 10);
        assert_eq!(got, vec![v("[1, 2]")]);
        let m = r.unwrap_err().message;
        assert!(
            m.starts_with(&format!("{}:3: invalid JSON", p.display())),
            "{m}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_the_path() {
        let mut src = FileSource::new(
            "/nonexistent/dir/x.jsonl",
            Format::Jsonl,
            OnError::Skip,
            None,
        );
        let (_, r) = drain(&mut src, 10);
        assert!(r.unwrap_err().message.contains("/nonexistent/dir/x.jsonl"));
    }

    #[test]
    fn lines_keep_blank_lines_and_strip_line_endings() {
        let (_d, p) = file("in.txt", "a\r\n\nb");
        let mut src = FileSource::new(&p, Format::Lines, OnError::Fail, None);
        let (got, _) = drain(&mut src, 10);
        assert_eq!(got, vec![v("\"a\""), v("\"\""), v("\"b\"")]);
    }

    #[test]
    fn csv_quoting_and_number_rules() {
        assert_eq!(
            split_csv(r#"a,"b,c","say ""hi""",,"""#),
            Some(vec![
                ("a".into(), false),
                ("b,c".into(), true),
                ("say \"hi\"".into(), true),
                ("".into(), false),
                ("".into(), true),
            ])
        );
        assert_eq!(split_csv("\"open"), None);
        assert_eq!(
            csv_row(r#"1, 2.5,-3e2,"4",nan,inf,x1,1e,"#),
            Some(v(r#"[1, 2.5, -300.0, "4", "nan", "inf", "x1", "1e", ""]"#))
        );
        let (_d, p) = file("in.csv", "t,v\n1,\"multi\nline\"\n\n2,\"x,y\"\n3,\"bad\n");
        let mut src = FileSource::new(&p, Format::Csv, OnError::Fail, None);
        let (got, r) = drain(&mut src, 10);
        assert_eq!(
            got,
            vec![
                v(r#"["t", "v"]"#),
                v(r#"[1, "multi\nline"]"#),
                v(r#"[2, "x,y"]"#)
            ]
        );
        let m = r.unwrap_err().message;
        assert_eq!(
            m,
            format!("{}:6: a quoted field is not closed", p.display())
        );
    }

    #[test]
    fn source_fn_counts_calls_and_skips() {
        let mut src = SourceFn::new(5, |i| Ok(if i == 2 { Emit::Skip } else { Emit::One(i) }));
        let (got, r) = drain(&mut src, 2);
        assert_eq!(r.unwrap(), Gen::Done);
        assert_eq!(got, vec![0, 1, 3, 4]);
        let mut src = SourceFn::new(5, |i| {
            if i == 3 {
                Err(OpError::new("boom"))
            } else {
                Ok(Emit::One(i))
            }
        });
        let (got, r) = drain(&mut src, 10);
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(r.unwrap_err().message, "call 3: boom");
    }

    #[test]
    fn iter_sources_resume_after_the_last_element_emitted() {
        for k in [0, 1, 5, 9, 10, 12] {
            let (got, want) = source_with_restore(|| IterSource::new(0..10i64), k);
            assert_eq!(got, want, "k = {k}");
        }
        let mut src = IterSource::new(0..3i64);
        let e = src.restore(&save_state("", &5u64).unwrap()).unwrap_err();
        assert!(e.message.contains("only 3 items"), "{}", e.message);
    }

    #[test]
    fn function_file_and_paced_sources_resume_after_the_last_element_emitted() {
        let fib = || {
            SourceFn::with_state(
                12,
                FnState((0i64, 1i64)),
                |i, s: &mut FnState<(i64, i64)>| {
                    let x = s.0 .0;
                    s.0 = (s.0 .1, s.0 .0 + s.0 .1);
                    Ok(if i % 3 == 2 { Emit::Skip } else { Emit::One(x) })
                },
            )
        };
        let (_d, jsonl) = file("in.jsonl", "1\n\n[2, \"b\"]\nbad\n3\n{\"k\": 4}\n5");
        let (_d2, csv) = file(
            "in.csv",
            "t,v\n1,\"multi\nline\"\n\n2,\"x,y\"\n3,z\r\n4,w\n",
        );
        for k in 0..9 {
            let (got, want) = source_with_restore(fib, k);
            assert_eq!(got, want, "source_fn, k = {k}");
            let (got, want) = source_with_restore(
                || FileSource::new(&jsonl, Format::Jsonl, OnError::Skip, None),
                k,
            );
            assert_eq!(got, want, "jsonl, k = {k}");
            assert_eq!(want.len(), 5);
            let (got, want) = source_with_restore(
                || FileSource::new(&csv, Format::Csv, OnError::Fail, None),
                k,
            );
            assert_eq!(got, want, "csv, k = {k}");
            assert_eq!(want.len(), 5);
            let paced = || Paced::new(IterSource::new(0..6i64), Duration::from_micros(1));
            let (got, want) = source_with_restore(paced, k);
            assert_eq!(got, want, "paced, k = {k}");
        }
        // The bad lines skipped are part of the state.
        let mut src = FileSource::new(&jsonl, Format::Jsonl, OnError::Skip, None);
        let (_, r) = drain(&mut src, 1024);
        assert_eq!(r.unwrap(), Gen::Done);
        let mut fresh = FileSource::new(&jsonl, Format::Jsonl, OnError::Skip, None);
        fresh.restore(&src.snapshot().unwrap().unwrap()).unwrap();
        assert_eq!(fresh.skipped(), 1);
    }

    #[test]
    fn a_failure_held_back_survives_a_restore() {
        let (_d, p) = file("in.jsonl", "1\n2\nbad\n3\n");
        let mut src = FileSource::new(&p, Format::Jsonl, OnError::Fail, None);
        let mut out = Outputs::new(1);
        assert_eq!(src.generate(&mut out, 10).unwrap(), Gen::More);
        assert_eq!(out.take(0), vec![Value::Int(1), Value::Int(2)]);
        let snap = src.snapshot().unwrap().unwrap();
        let mut fresh = FileSource::new(&p, Format::Jsonl, OnError::Fail, None);
        fresh.restore(&snap).unwrap();
        let e = fresh.generate(&mut out, 10).unwrap_err();
        assert!(e.data_error);
        assert_eq!(
            e.message,
            format!(
                "{}:3: invalid JSON: expected value at line 1 column 1",
                p.display()
            )
        );
    }

    #[test]
    fn sources_that_cannot_replay_refuse_to_restore_but_snapshot() {
        let src = FileSource::stdin(Format::Jsonl, OnError::Fail, None);
        let snap = src.snapshot().unwrap().unwrap();
        let e = FileSource::stdin(Format::Jsonl, OnError::Fail, None)
            .restore(&snap)
            .unwrap_err();
        assert!(
            e.message.starts_with("source.stdin: cannot restore"),
            "{}",
            e.message
        );
        let mut ch = ChannelSource::<i64> {
            passed: 0,
            _t: std::marker::PhantomData,
        };
        ch.on_batch(0, vec![1, 2], &mut Outputs::new(1)).unwrap();
        let snap = ch.snapshot().unwrap().unwrap();
        assert_eq!(load_state::<u64>("", &snap).unwrap(), 2);
        let e = ch.restore(&snap).unwrap_err();
        assert!(
            e.message.starts_with("source_channel: cannot restore"),
            "{}",
            e.message
        );
    }

    #[test]
    fn paced_sources_emit_one_element_per_call_then_wait() {
        let d = Duration::from_millis(5);
        let mut src = Paced::new(IterSource::new(vec![1, 2].into_iter()), d);
        let mut out = Outputs::new(1);
        let waits = |g: Gen| matches!(g, Gen::Wait(w) if w <= d && w > Duration::ZERO);
        assert!(waits(src.generate(&mut out, 1024).unwrap()));
        assert_eq!(out.take(0), vec![1]);
        std::thread::sleep(d);
        let g = src.generate(&mut out, 1024).unwrap();
        assert!(waits(g) || g == Gen::More, "{g:?}");
        assert_eq!(out.take(0), vec![2]);
        assert_eq!(src.generate(&mut out, 1024).unwrap(), Gen::Done);
        assert!(out.take(0).is_empty());
    }

    #[test]
    fn a_restarted_paced_source_catches_up_with_its_first_schedule() {
        let d = Duration::from_millis(100);
        let clock = Slot::local();
        // The first attempt started 1 s ago: ten elements are overdue.
        clock.set(now_micros() - 1_000_000);
        let mut src = Paced::new(IterSource::new(0..20), d).with_clock(Some(clock.clone()));
        let mut out = Outputs::new(1);
        for i in 0..9 {
            assert_eq!(
                src.generate(&mut out, 1024).unwrap(),
                Gen::More,
                "element {i}"
            );
        }
        assert_eq!(out.take(0), (0..9).collect::<Vec<_>>());
        // Element 10 is due 1 s after the first: it still waits.
        src.generate(&mut out, 1024).unwrap();
        assert!(matches!(
            src.generate(&mut out, 1024).unwrap(),
            Gen::Wait(_)
        ));
        // A new source records its start for the attempts after it.
        let fresh = Slot::local();
        let mut src = Paced::new(IterSource::new(0..2), d).with_clock(Some(fresh.clone()));
        src.generate(&mut out, 1).unwrap();
        assert!(fresh.get() > 0);
    }

    #[test]
    fn a_file_source_runs_end_to_end_and_fails_naming_the_line() {
        let (_d, p) = file("input.jsonl", "1\n2\n\"three\"\n4\n");
        let mut g = Graph::new();
        let x = g.source_file(&p, Format::Jsonl, OnError::Skip, Some(int_only));
        let out = g.collect(&x);
        let report = g.run().unwrap();
        assert_eq!(
            out.take(),
            vec![Value::Int(1), Value::Int(2), Value::Int(4)]
        );
        assert!(report
            .notes
            .iter()
            .any(|(_, n)| n.starts_with("skipped 1 bad lines")));
        let mut g = Graph::new();
        let x = g.source_file(&p, Format::Jsonl, OnError::Fail, Some(int_only));
        let _ = g.collect(&x);
        let e = g.run().unwrap_err().to_string();
        assert!(e.contains("input.jsonl:3: expected i64"), "{e}");
    }

    #[test]
    fn a_channel_source_ends_when_its_senders_are_gone() {
        let mut g = Graph::new();
        let (tx, x) = g.source_channel::<i64>(4);
        let out = g.collect(&x);
        let tx2 = tx.clone();
        let t = std::thread::spawn(move || {
            for i in 0..500 {
                tx.send(i).unwrap();
            }
            drop(tx);
            tx2.send_batch((500..1000).collect()).unwrap();
            tx2.close();
            assert_eq!(tx2.send(1), Err(SourceClosed));
        });
        g.run().unwrap();
        t.join().unwrap();
        assert_eq!(out.take(), (0..1000).collect::<Vec<_>>());
    }
}

//! Sinks: streams consumed by a closure, a collector the caller reads, a file, or a channel.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::operator::source::Format;
use crate::operator::{
    cannot_restore, load_state, save_state, Element, OpError, OpResult, OpState, Operator, Outputs,
};
use crate::pipeline::{Graph, Stream};
use crate::value::{format_float, Value};

/// Calls a fallible function on each element. `S` is the state of a stateful form (`()` for
/// none), its snapshot.
pub struct SinkElement<T, S, F> {
    f: F,
    state: S,
    _t: PhantomData<fn(T)>,
}

impl<T> SinkElement<T, (), ()> {
    /// A sink calling `f` on each element (stateless).
    #[allow(clippy::new_ret_no_self, clippy::type_complexity)]
    pub fn new<G>(mut f: G) -> SinkElement<T, (), impl FnMut(T, &mut ()) -> OpResult>
    where
        G: FnMut(T) -> OpResult,
    {
        SinkElement::with_state((), move |x, _: &mut ()| f(x))
    }
}

impl<T, S, F> SinkElement<T, S, F>
where
    F: FnMut(T, &mut S) -> OpResult,
{
    /// A sink calling `f(x, &mut state)` on each element.
    pub fn with_state(state: S, f: F) -> Self {
        SinkElement {
            f,
            state,
            _t: PhantomData,
        }
    }
}

impl<T: Element, S: OpState, F> Operator for SinkElement<T, S, F>
where
    F: FnMut(T, &mut S) -> OpResult + Send + 'static,
{
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, _out: &mut Outputs<T>) -> OpResult {
        for x in batch {
            (self.f)(x, &mut self.state)?;
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

/// The elements a [`Graph::collect`] sink gathered; read it after (or during) the run.
#[derive(Clone, Debug)]
pub struct Collector<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T: Clone> Collector<T> {
    /// Takes everything gathered so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A copy of everything gathered so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The sink behind [`Graph::collect`]. Its snapshot is how many elements it gathered; they
/// live in the caller's [`Collector`], so restoring it is an error.
struct Collect<T> {
    items: Arc<Mutex<Vec<T>>>,
    gathered: u64,
}

impl<T: Element> Operator for Collect<T> {
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, mut batch: Vec<T>, _out: &mut Outputs<T>) -> OpResult {
        self.gathered += batch.len() as u64;
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut batch);
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("collect", &self.gathered).map(Some)
    }

    fn restore(&mut self, _state: &[u8]) -> OpResult {
        Err(cannot_restore(
            "collect",
            "cannot restore a collector: its elements are in the caller's memory",
        ))
    }
}

/// Writes `v` as one line of `format` into `out` (without the line ending); returns how many
/// non-finite floats were written as null (jsonl, lines) or as an empty field (csv).
///
/// `Lines` writes a string as it is and anything else as JSON. `Csv` writes an array as one
/// field per entry (any other value as one field): null is an empty field, numbers and bools
/// as in JSON, strings as they are, nested arrays and maps as JSON text; a field holding a
/// comma, a quote, a line break or surrounding spaces is quoted, and a string that would read
/// back as a number is quoted too.
pub fn format_line(v: &Value, format: Format, out: &mut String) -> usize {
    match (format, v) {
        (Format::Lines, Value::Str(s)) => {
            out.push_str(s);
            0
        }
        (Format::Jsonl | Format::Lines, v) => v.write_json(out),
        (Format::Csv, Value::Array(a)) => {
            let mut n = 0;
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                n += csv_field(x, out);
            }
            n
        }
        (Format::Csv, v) => csv_field(v, out),
    }
}

fn csv_field(v: &Value, out: &mut String) -> usize {
    match v {
        Value::Null => 0,
        Value::Float(f) if !f.is_finite() => 1,
        Value::Float(f) => {
            format_float(*f, out);
            0
        }
        Value::Str(s) => {
            let reads_as_other = !matches!(
                crate::operator::source::csv_value(s.clone(), false),
                Value::Str(_)
            );
            csv_text(s, reads_as_other, out);
            0
        }
        Value::Array(_) | Value::Map(_) => {
            let mut t = String::new();
            let n = v.write_json(&mut t);
            csv_text(&t, false, out);
            n
        }
        other => other.write_json(out),
    }
}

fn csv_text(s: &str, force_quotes: bool, out: &mut String) {
    let needs = force_quotes
        || s.contains([',', '"', '\n', '\r'])
        || s.starts_with(' ')
        || s.ends_with(' ');
    if needs {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Where a [`WriteSink`] writes. The file's writer is behind a lock so that `snapshot`
/// (which takes `&self`) can flush it.
enum Target {
    File(PathBuf, Mutex<Option<BufWriter<File>>>),
    Stdout,
}

/// Writes every element as one line of a [`Format`] to a file (`sink.file`) or to standard
/// output (`sink.stdout`); non-finite floats are written as null, with a warning, and counted.
///
/// The snapshot flushes what was written and holds its length in bytes, with the elements
/// written and the non-finite floats counted. A restored `sink.file` reopens its file without
/// truncating it, cuts it to that length (dropping what was written after the snapshot), and
/// appends. A restored `sink.stdout` only takes the counts back (standard output cannot be
/// rewound: [`crate::recovery::SkipWritten`] skips what was already written).
pub struct WriteSink {
    target: Target,
    format: Format,
    buf: String,
    /// Bytes handed to the target (the file's length, for a file).
    bytes: u64,
    written: u64,
    nonfinite: u64,
}

/// The snapshot of a [`WriteSink`]: bytes written, elements written, non-finite floats.
type WriteState = (u64, u64, u64);

impl WriteSink {
    /// A sink writing to the file at `path` (its parent directories are created, the file
    /// truncated, when the run starts).
    pub fn file(path: impl AsRef<Path>, format: Format) -> Self {
        Self::new(
            Target::File(path.as_ref().to_path_buf(), Mutex::new(None)),
            format,
        )
    }

    /// A sink writing to standard output.
    pub fn stdout(format: Format) -> Self {
        Self::new(Target::Stdout, format)
    }

    fn new(target: Target, format: Format) -> Self {
        WriteSink {
            target,
            format,
            buf: String::new(),
            bytes: 0,
            written: 0,
            nonfinite: 0,
        }
    }

    fn name(&self) -> String {
        match &self.target {
            Target::File(p, _) => p.display().to_string(),
            Target::Stdout => "standard output".into(),
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> OpError {
        OpError::new(format!("cannot {what} {}: {e}", self.name()))
    }

    /// Writes and empties the text buffer.
    fn write_buf(&mut self) -> OpResult {
        let r = match &mut self.target {
            Target::File(_, w) => match lock(w).as_mut() {
                Some(w) => w.write_all(self.buf.as_bytes()),
                None => Ok(()),
            },
            Target::Stdout => std::io::stdout().lock().write_all(self.buf.as_bytes()),
        };
        if r.is_ok() {
            self.bytes += self.buf.len() as u64;
        }
        self.buf.clear();
        r.map_err(|e| self.io_error("write to", e))
    }

    /// Flushes what was written.
    fn flush(&self) -> OpResult {
        let r = match &self.target {
            Target::File(_, w) => match lock(w).as_mut() {
                Some(w) => w.flush(),
                None => Ok(()),
            },
            Target::Stdout => std::io::stdout().lock().flush(),
        };
        r.map_err(|e| self.io_error("flush", e))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Operator for WriteSink {
    type In = Value;
    type Out = Value;

    fn start(&mut self, _out: &mut Outputs<Value>) -> OpResult {
        let Target::File(path, w) = &self.target else {
            return Ok(());
        };
        if lock(w).is_some() {
            // Restored: the file is open where the snapshot left it.
            return Ok(());
        }
        let path = path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                OpError::new(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let f = File::create(&path).map_err(|e| self.io_error("create", e))?;
        self.target = Target::File(
            path,
            Mutex::new(Some(BufWriter::with_capacity(64 * 1024, f))),
        );
        Ok(())
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<Value>, _out: &mut Outputs<Value>) -> OpResult {
        for v in &batch {
            let n = format_line(v, self.format, &mut self.buf);
            self.buf.push('\n');
            if n > 0 {
                if self.nonfinite == 0 {
                    tracing::warn!("{}: a non-finite float was written as null (element {v:?}); further ones are only counted", self.name());
                }
                self.nonfinite += n as u64;
            }
        }
        self.written += batch.len() as u64;
        self.write_buf()
    }

    fn finish(&mut self, _out: &mut Outputs<Value>) -> OpResult {
        self.write_buf()?;
        self.flush()
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        // Each batch is handed to the writer as it comes: only the writer's buffer is left.
        self.flush()?;
        let st: WriteState = (self.bytes, self.written, self.nonfinite);
        save_state("a sink", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (bytes, written, nonfinite): WriteState = load_state("a sink", state)?;
        if let Target::File(path, w) = &self.target {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| self.io_error("reopen", e))?;
            let len = f
                .metadata()
                .map_err(|e| self.io_error("read the length of", e))?
                .len();
            if len < bytes {
                return Err(OpError::new(format!(
                    "sink.file: cannot restore: {} has {len} bytes, fewer than the {bytes} written before",
                    path.display()
                )));
            }
            f.set_len(bytes).map_err(|e| self.io_error("truncate", e))?;
            let mut f = f;
            f.seek(SeekFrom::Start(bytes))
                .map_err(|e| self.io_error("seek in", e))?;
            *lock(w) = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        self.bytes = bytes;
        self.written = written;
        self.nonfinite = nonfinite;
        Ok(())
    }

    fn end_note(&self) -> Option<String> {
        (self.nonfinite > 0).then(|| {
            format!(
                "{} non-finite floats written as null to {}",
                self.nonfinite,
                self.name()
            )
        })
    }
}

/// Sends every element into a standard channel (the receiver sees the end as a disconnect).
/// Its snapshot is how many elements it was given; they went to the receiver, so restoring it
/// is an error.
struct ChannelSink<T> {
    tx: Option<mpsc::Sender<T>>,
    given: u64,
}

impl<T: Element> Operator for ChannelSink<T> {
    type In = T;
    type Out = T;

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("sink_channel", &self.given).map(Some)
    }

    fn restore(&mut self, _state: &[u8]) -> OpResult {
        Err(cannot_restore(
            "sink_channel",
            "cannot restore a channel sink: its elements went to the receiver",
        ))
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, _out: &mut Outputs<T>) -> OpResult {
        self.given += batch.len() as u64;
        if let Some(tx) = &self.tx {
            for x in batch {
                if tx.send(x).is_err() {
                    // The receiver is gone: nobody reads; stop sending.
                    self.tx = None;
                    break;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Outputs<T>) -> OpResult {
        self.tx = None;
        Ok(())
    }
}

/// `sink.null`: takes every element and drops it (a benchmark's or a test's end of a stream).
pub struct SinkNull<T>(std::marker::PhantomData<fn(T)>);

impl<T: Element> Operator for SinkNull<T> {
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, _out: &mut Outputs<T>) -> OpResult {
        crate::value::drop_batch(batch);
        Ok(())
    }

    fn reads_batches(&self) -> bool {
        true
    }

    fn on_batch_ref(&mut self, _port: usize, _batch: &[T], _out: &mut Outputs<T>) -> OpResult {
        Ok(())
    }
}

/// A sink calling a fallible function on a reference to each element: it reads its batches,
/// so the runtime keeps no copy of them to give again after a restart in place (a large
/// element is not copied on its way out).
pub struct SinkRef<T, F> {
    f: F,
    _t: PhantomData<fn(&T)>,
}

impl<T: Element, F> Operator for SinkRef<T, F>
where
    F: FnMut(&T) -> OpResult + Send + 'static,
{
    type In = T;
    type Out = T;

    fn on_batch(&mut self, port: usize, batch: Vec<T>, out: &mut Outputs<T>) -> OpResult {
        self.on_batch_ref(port, &batch, out)?;
        crate::value::drop_batch(batch);
        Ok(())
    }

    fn reads_batches(&self) -> bool {
        true
    }

    fn on_batch_ref(&mut self, _port: usize, batch: &[T], _out: &mut Outputs<T>) -> OpResult {
        batch.iter().try_for_each(&mut self.f)
    }
}

impl Graph {
    /// A sink that drops every element ([`SinkNull`]).
    pub fn sink_null<T: Element>(&mut self, s: &Stream<T>) {
        self.add_sink("sink.null", SinkNull(std::marker::PhantomData), &[s])
    }

    /// `sink_element`: calls `f` on every element (side effects only).
    ///
    /// What `f` captures is not part of the operator's snapshot (it has none).
    pub fn sink_element<T, F>(&mut self, s: &Stream<T>, mut f: F)
    where
        T: Element,
        F: FnMut(T) + Send + 'static,
    {
        self.add_sink(
            "sink_element",
            SinkElement::new(move |x| {
                f(x);
                Ok(())
            }),
            &[s],
        )
    }

    /// `sink_element` with a fallible function: an `Err` fails the operator.
    pub fn try_sink_element<T, F>(&mut self, s: &Stream<T>, f: F)
    where
        T: Element,
        F: FnMut(T) -> Result<(), OpError> + Send + 'static,
    {
        self.add_sink("sink_element", SinkElement::new(f), &[s])
    }

    /// `sink_element` with a fallible function of a reference to each element ([`SinkRef`]):
    /// no element is copied for a restart in place.
    pub fn try_sink_element_ref<T, F>(&mut self, s: &Stream<T>, f: F)
    where
        T: Element,
        F: FnMut(&T) -> Result<(), OpError> + Send + 'static,
    {
        self.add_sink("sink_element", SinkRef { f, _t: PhantomData }, &[s])
    }

    /// A sink that gathers every element into a [`Collector`] the caller reads.
    pub fn collect<T: Element>(&mut self, s: &Stream<T>) -> Collector<T> {
        let items = Arc::new(Mutex::new(Vec::new()));
        self.add_sink(
            "collect",
            Collect {
                items: items.clone(),
                gathered: 0,
            },
            &[s],
        );
        Collector { items }
    }

    /// `sink.file`: writes every element of `s` as one line of `format` to `path`. Missing
    /// parent directories are created and the file truncated when the run starts; it is
    /// flushed at end-of-stream and exists after a successful run, even if empty. In `jsonl`,
    /// floats always carry a `.` or an exponent (`2.0`), and non-finite floats are written as
    /// null, with a warning, and counted (see [`format_line`]).
    ///
    /// ```
    /// use tributary::{Graph, Value};
    /// use tributary::operator::source::Format;
    /// let dir = std::env::temp_dir().join(format!("tributary-doc-sink-{}", std::process::id()));
    /// let path = dir.join("sub/out.jsonl");
    /// let mut g = Graph::new();
    /// let x = g.source_iter(vec![Value::Float(2.0), Value::from_json("[5, \"ab\"]").unwrap()]);
    /// g.sink_file(&x, &path, Format::Jsonl);
    /// g.run().unwrap();
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "2.0\n[5, \"ab\"]\n");
    /// ```
    pub fn sink_file(&mut self, s: &Stream<Value>, path: impl AsRef<Path>, format: Format) {
        self.add_sink("sink.file", WriteSink::file(path, format), &[s])
    }

    /// `sink.stdout`: like [`Graph::sink_file`], to standard output (written a batch at a time).
    pub fn sink_stdout(&mut self, s: &Stream<Value>, format: Format) {
        self.add_sink("sink.stdout", WriteSink::stdout(format), &[s])
    }

    /// A sink that sends every element to the returned receiver, which sees a disconnect
    /// once the stream has ended.
    ///
    /// ```
    /// use tributary::Graph;
    /// let mut g = Graph::new();
    /// let x = g.source_iter(0..3i64);
    /// let rx = g.sink_channel(&x);
    /// g.run().unwrap();
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    /// ```
    pub fn sink_channel<T: Element>(&mut self, s: &Stream<T>) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::channel();
        self.add_sink(
            "sink_channel",
            ChannelSink {
                tx: Some(tx),
                given: 0,
            },
            &[s],
        );
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        Value::from_json(s).unwrap()
    }

    #[test]
    fn a_sink_of_references_reads_its_batches_and_stops_at_a_failure() {
        let seen = Arc::new(Mutex::new(vec![]));
        let s2 = seen.clone();
        let mut op = SinkRef {
            f: move |x: &Value| {
                if *x == v("\"bad\"") {
                    return Err(OpError::new("bad element"));
                }
                s2.lock().unwrap().push(x.clone());
                Ok(())
            },
            _t: PhantomData,
        };
        assert!(op.reads_batches());
        let mut out = Outputs::new(1);
        let batch = vec![v("1"), v("\"big\""), v("\"bad\""), v("2")];
        let e = op.on_batch_ref(0, &batch, &mut out).unwrap_err();
        assert_eq!(e.message, "bad element");
        assert_eq!(batch.len(), 4, "left as it was");
        assert_eq!(*seen.lock().unwrap(), vec![v("1"), v("\"big\"")]);
        op.on_batch(0, vec![v("3")], &mut out).unwrap();
        assert_eq!(seen.lock().unwrap().last(), Some(&v("3")));
    }

    #[test]
    fn jsonl_floats_keep_their_point_and_nonfinite_ones_become_null() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.jsonl");
        let mut g = Graph::new();
        let x = g.source_iter(vec![
            Value::Float(2.0),
            Value::Int(2),
            v(r#"[1.5, "s", null]"#),
            Value::Float(f64::NAN),
            Value::Array(vec![Value::Float(f64::INFINITY)]),
        ]);
        g.sink_file(&x, &path, Format::Jsonl);
        let report = g.run().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "2.0\n2\n[1.5, \"s\", null]\nnull\n[null]\n"
        );
        assert!(report
            .notes
            .iter()
            .any(|(_, n)| n.starts_with("2 non-finite floats written as null")));
    }

    #[test]
    fn sink_file_truncates_and_creates_an_empty_file_for_an_empty_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/empty.jsonl");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "old\n").unwrap();
        let mut g = Graph::new();
        let x = g.source_iter(Vec::<Value>::new());
        g.sink_file(&x, &path, Format::Jsonl);
        g.run().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    /// Runs a sink over `batches` (no start, no finish).
    fn feed(op: &mut WriteSink, batches: &[Vec<Value>]) {
        let mut out = Outputs::new(0);
        for b in batches {
            op.on_batch(0, b.clone(), &mut out).unwrap();
        }
    }

    #[test]
    fn a_restored_file_sink_cuts_what_came_after_the_snapshot_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let xs: Vec<Value> = (0..20)
            .map(|i| match i % 3 {
                0 => Value::Int(i),
                1 => Value::Float(i as f64 / 4.0),
                _ => v(&format!("[{i}, \"s{i}\"]")),
            })
            .collect();
        let batches: Vec<Vec<Value>> = xs.chunks(3).map(<[Value]>::to_vec).collect();
        // Uninterrupted.
        let whole = dir.path().join("whole.jsonl");
        let mut op = WriteSink::file(&whole, Format::Jsonl);
        op.start(&mut Outputs::new(0)).unwrap();
        feed(&mut op, &batches);
        op.finish(&mut Outputs::new(0)).unwrap();
        let want = std::fs::read_to_string(&whole).unwrap();
        for cut in 0..=batches.len() {
            let path = dir.path().join(format!("out{cut}.jsonl"));
            let mut op = WriteSink::file(&path, Format::Jsonl);
            op.start(&mut Outputs::new(0)).unwrap();
            feed(&mut op, &batches[..cut]);
            let snap = op.snapshot().unwrap().unwrap();
            // More is written after the snapshot, then the process dies (nothing flushed).
            let after = (cut + 2).min(batches.len());
            feed(&mut op, &batches[cut..after]);
            op.flush().unwrap();
            std::mem::forget(op);
            // A fresh sink restored from the snapshot is given the replayed rest.
            let mut op = WriteSink::file(&path, Format::Jsonl);
            op.restore(&snap).unwrap();
            op.start(&mut Outputs::new(0)).unwrap();
            feed(&mut op, &batches[cut..]);
            op.finish(&mut Outputs::new(0)).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), want, "cut {cut}");
            assert_eq!(op.written, xs.len() as u64);
        }
        // A file shorter than the snapshot says cannot be resumed.
        let path = dir.path().join("short.jsonl");
        let mut op = WriteSink::file(&path, Format::Jsonl);
        op.start(&mut Outputs::new(0)).unwrap();
        feed(&mut op, &batches);
        let snap = op.snapshot().unwrap().unwrap();
        std::fs::write(&path, "1\n").unwrap();
        let e = WriteSink::file(&path, Format::Jsonl)
            .restore(&snap)
            .unwrap_err();
        assert!(e.message.contains("fewer than"), "{}", e.message);
    }

    #[test]
    fn stdout_sinks_count_what_they_wrote_and_collectors_cannot_restore() {
        let mut op = WriteSink::stdout(Format::Jsonl);
        feed(&mut op, &[vec![], vec![Value::Float(f64::NAN)]]);
        let snap = op.snapshot().unwrap().unwrap();
        let mut fresh = WriteSink::stdout(Format::Jsonl);
        fresh.restore(&snap).unwrap();
        assert_eq!((fresh.written, fresh.nonfinite), (1, 1));
        let mut c = Collect::<i64> {
            items: Default::default(),
            gathered: 0,
        };
        c.on_batch(0, vec![1, 2, 3], &mut Outputs::new(0)).unwrap();
        assert_eq!(
            load_state::<u64>("", &c.snapshot().unwrap().unwrap()).unwrap(),
            3
        );
        let e = c.restore(&[]).unwrap_err();
        assert!(
            e.message.contains("cannot restore a collector"),
            "{}",
            e.message
        );
        let (tx, _rx) = mpsc::channel();
        let mut ch = ChannelSink {
            tx: Some(tx),
            given: 0,
        };
        ch.on_batch(0, vec![1i64], &mut Outputs::new(0)).unwrap();
        assert_eq!(
            load_state::<u64>("", &ch.snapshot().unwrap().unwrap()).unwrap(),
            1
        );
        assert!(ch.restore(&[]).is_err());
    }

    #[test]
    fn sink_element_with_state_resumes_from_a_snapshot() {
        let seen = Arc::new(Mutex::new(vec![]));
        let s2 = seen.clone();
        let make = move || {
            let s2 = s2.clone();
            SinkElement::with_state(
                crate::operator::FnState(0i64),
                move |x: i64, t: &mut crate::operator::FnState<i64>| {
                    t.0 += x;
                    s2.lock().unwrap().push(t.0);
                    Ok(())
                },
            )
        };
        let xs: Vec<Vec<i64>> = vec![vec![1, 2], vec![3], vec![4, 5, 6]];
        let _ = crate::operator::testkit::run_with_restore(&make, vec![xs.clone()], &[], 2, 0);
        let got = std::mem::take(&mut *seen.lock().unwrap());
        // Both runs recorded the same running sums.
        assert_eq!(
            got,
            [vec![1, 3, 6, 10, 15, 21], vec![1, 3, 6, 10, 15, 21]].concat()
        );
    }

    #[test]
    fn csv_and_lines_formats() {
        let mut s = String::new();
        format_line(
            &v(r#"[1, 2.0, "a,b", "say \"x\"", null, "7", [1, 2], true]"#),
            Format::Csv,
            &mut s,
        );
        assert_eq!(s, r#"1,2.0,"a,b","say ""x""",,"7","[1, 2]",true"#);
        s.clear();
        format_line(&v(r#""plain""#), Format::Lines, &mut s);
        format_line(&v(r#"[1, "x"]"#), Format::Lines, &mut s);
        assert_eq!(s, r#"plain[1, "x"]"#);
        // A CSV row written then read back is the same row.
        let row = v(r#"[1, -2.5, "a,b", "q\"q", "12", " pad "]"#);
        let mut s = String::new();
        format_line(&row, Format::Csv, &mut s);
        assert_eq!(crate::operator::source::csv_row(&s), Some(row));
    }

    #[test]
    fn sink_channel_sees_every_element_then_a_disconnect() {
        let mut g = Graph::new();
        let x = g.source_iter(0..2000i64);
        let rx = g.sink_channel(&x);
        g.run().unwrap();
        assert_eq!(rx.iter().collect::<Vec<_>>(), (0..2000).collect::<Vec<_>>());
    }
}

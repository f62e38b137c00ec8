//! External commands as a source (`source.exec`: each JSON line the command prints is an
//! element) and as a sink (`sink.exec`: the command reads the elements as JSON lines).
//!
//! Neither blocks its actor on the command: the source reads the command's output on its
//! actor's thread as a task the actor polls (the output is non-blocking and registered with
//! the event loop), pushing into the source's own input link (the `source_channel`
//! machinery); with an `interval`, a reader thread does so and sleeps between lines. A writer
//! thread drains a bounded link into the sink command's standard input. A sink writes a batch itself when nothing is queued before it and
//! the command has read everything so far (the write cannot block): one wake-up less.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::link::local::{Channel, End, LinkConfig, Overflow, Recv};
use crate::operator::sink::format_line;
use crate::operator::source::{parse_json_line, Format, OnError, TypeCheck};
use crate::operator::{
    cannot_restore, load_state, save_state, OpError, OpResult, Operator, Outputs,
};
use crate::pipeline::{Graph, Stream};
use crate::value::Value;

/// Elements queued between an exec operator's actor and its command's thread.
const EXEC_CAPACITY: usize = 1024;
/// Bytes (of strings, arrays, maps) the hand-off between a command and its operator holds:
/// a couple of source batches; the stream's own link is the buffer.
const EXEC_MAX_BYTES: usize = 2 * crate::operator::SOURCE_BATCH_BYTES;
/// Elements a source reader sends at once when the command prints faster than it is read.
const READ_BATCH: usize = 1024;

/// A command to run: the program and its arguments, and its working directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCommand {
    /// The program, then its arguments.
    pub argv: Vec<String>,
    /// The working directory (this process's when `None`).
    pub dir: Option<PathBuf>,
    /// The name used in messages (the command as written).
    pub label: String,
}

impl ExecCommand {
    /// A command from its program and arguments, named in messages as written.
    pub fn new(argv: Vec<String>) -> Self {
        let label = argv.join(" ");
        ExecCommand {
            argv,
            dir: None,
            label,
        }
    }

    /// Runs the command in `dir`.
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    fn command(&self) -> OpResult<Command> {
        let (prog, args) = self
            .argv
            .split_first()
            .ok_or_else(|| OpError::new("the command is empty"))?;
        let mut c = Command::new(prog);
        c.args(args);
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        // The command dies with the process that runs it, even when that one is killed.
        // SAFETY: prctl is async-signal-safe and allocates nothing.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(c)
    }

    fn spawn_error(&self, e: std::io::Error) -> OpError {
        OpError::new(format!("cannot start the command \"{}\": {e}", self.label))
    }

    fn status_error(&self, status: ExitStatus) -> Option<OpError> {
        (!status.success()).then(|| {
            OpError::new(format!(
                "the command \"{}\" exited with {status}",
                self.label
            ))
        })
    }
}

/// What a source's reader thread shares with its operator.
#[derive(Default)]
struct SourceShared {
    /// The failure to report once the stream has ended (a bad line, an exit status).
    error: Mutex<Option<OpError>>,
    /// Bad lines skipped.
    skipped: AtomicU64,
    /// The command, until the reader has waited for it.
    child: Mutex<Option<Child>>,
    /// Set when the operator goes away: the reader stops.
    stop: AtomicBool,
}

/// `source.exec`: starts a command and emits each JSON line it prints on standard output
/// (blank lines ignored); bad lines follow [`OnError`] and are reported as `command:LINE`.
/// The stream ends when the command closes its standard output; a non-zero exit status then
/// fails the operator (after everything it printed was emitted). Its standard error is ours.
///
/// Its snapshot is how many elements it emitted; what the command printed cannot be read
/// again, so restoring it is an error.
pub struct ExecSource {
    cmd: ExecCommand,
    on_error: OnError,
    typecheck: Option<TypeCheck>,
    interval: Option<Duration>,
    chan: Option<Arc<Channel<Value>>>,
    shared: Arc<SourceShared>,
    reader: Option<JoinHandle<()>>,
    /// What the reading task reads, from `start` until the actor takes the task (see
    /// [`Reader::feed`]).
    task: Option<(Reader, ChildStdout)>,
    emitted: u64,
}

impl Operator for ExecSource {
    type In = Value;
    type Out = Value;

    fn start(&mut self, _out: &mut Outputs<Value>) -> OpResult {
        let chan = self
            .chan
            .take()
            .ok_or_else(|| OpError::new("started twice"))?;
        let mut c = self.cmd.command()?;
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().map_err(|e| self.cmd.spawn_error(e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| OpError::new("the command's standard output is not a pipe"))?;
        *lock(&self.shared.child) = Some(child);
        let reader = Reader {
            cmd: self.cmd.clone(),
            on_error: self.on_error,
            typecheck: self.typecheck,
            interval: self.interval,
            chan,
            shared: self.shared.clone(),
        };
        if self.interval.is_none() {
            // Read on the actor's own thread: one wake-up less per line than a reader thread.
            self.task = Some((reader, stdout));
            return Ok(());
        }
        let h = std::thread::Builder::new()
            .name(format!("exec-r:{}", self.cmd.label))
            .spawn(move || reader.run(stdout))
            .map_err(|e| OpError::new(format!("cannot start a reader thread: {e}")))?;
        self.reader = Some(h);
        Ok(())
    }

    fn take_task(&mut self) -> Option<crate::operator::OpTask> {
        let (reader, stdout) = self.task.take()?;
        Some(Box::pin(reader.feed(stdout)))
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<Value>, out: &mut Outputs<Value>) -> OpResult {
        self.emitted += batch.len() as u64;
        out.put_vec(0, batch);
        Ok(())
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("source.exec", &self.emitted).map(Some)
    }

    fn restore(&mut self, _state: &[u8]) -> OpResult {
        Err(cannot_restore(
            "source.exec",
            &format!(
                "what the command \"{}\" printed cannot be read again",
                self.cmd.label
            ),
        ))
    }

    fn finish(&mut self, _out: &mut Outputs<Value>) -> OpResult {
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        match lock(&self.shared.error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn end_note(&self) -> Option<String> {
        let n = self.shared.skipped.load(Ordering::Relaxed);
        (n > 0).then(|| format!("skipped {n} bad lines of {}", self.cmd.label))
    }
}

impl Drop for ExecSource {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(mut c) = lock(&self.shared.child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The thread reading a source command's standard output.
struct Reader {
    cmd: ExecCommand,
    on_error: OnError,
    typecheck: Option<TypeCheck>,
    interval: Option<Duration>,
    chan: Arc<Channel<Value>>,
    shared: Arc<SourceShared>,
}

impl Reader {
    /// Sends a batch, waiting while the link is full; false once the operator is gone.
    fn send(&self, batch: &mut Vec<Value>) -> bool {
        while !batch.is_empty() {
            if self.shared.stop.load(Ordering::Acquire) {
                return false;
            }
            let deadline = Instant::now() + Duration::from_millis(100);
            self.chan.push_blocking(batch, Some(deadline));
        }
        true
    }

    fn run(self, stdout: ChildStdout) {
        let failure = self.read(stdout);
        self.end(failure);
    }

    /// After the last line: waits for the command (or kills it after a `failure`), keeps the
    /// error to report, and ends the stream.
    fn end(&self, failure: Option<OpError>) {
        let child = lock(&self.shared.child).take();
        let error = match (failure, child) {
            (Some(e), Some(mut c)) => {
                // The source stops at a bad line: the command is not read any more.
                let _ = c.kill();
                let _ = c.wait();
                Some(e)
            }
            (Some(e), None) => Some(e),
            (None, Some(mut c)) => match c.wait() {
                Ok(status) => self.cmd.status_error(status),
                Err(e) => Some(OpError::new(format!(
                    "cannot wait for the command \"{}\": {e}",
                    self.cmd.label
                ))),
            },
            (None, None) => None,
        };
        if let Some(e) = error {
            *lock(&self.shared.error) = Some(e);
        }
        // After the error is in place: the operator looks for it once the stream has ended.
        self.chan.close(End::default());
    }

    /// Handles line number `line` (its bytes, the newline included or not): its element
    /// goes into `batch`; a bad line is skipped or, under `on_error = "fail"`, the failure.
    fn line(&self, line: usize, bytes: &[u8], batch: &mut Vec<Value>) -> Result<(), OpError> {
        match parse_json_line(bytes, self.typecheck) {
            Ok(None) => Ok(()),
            Ok(Some(v)) => {
                batch.push(v);
                Ok(())
            }
            Err(reason) => {
                let msg = format!("{}:{line}: {reason}", self.cmd.label);
                match self.on_error {
                    OnError::Fail => Err(OpError::data(msg)),
                    OnError::Skip => {
                        tracing::warn!("{msg} (line skipped)");
                        self.shared.skipped.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Reads the command's output on the actor's thread (the operator's task): the lines of
    /// each read go into the source's link at once, waiting while it is full. The stream ends
    /// as with [`Reader::run`]; once the operator stopped taking (the run stops), the command
    /// is not read any more.
    async fn feed(self, stdout: ChildStdout) {
        let failure = self.feed_lines(stdout).await;
        if self.chan.consumer_gone() {
            // The source stopped: the command's output is not wanted any more.
            if let Some(mut c) = lock(&self.shared.child).take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            self.chan.close(End::default());
            return;
        }
        // Waiting for the command may block: not on the actor's thread.
        let spawned = std::thread::Builder::new()
            .name(format!("exec-w:{}", self.cmd.label))
            .spawn(move || self.end(failure));
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread to wait for a command: {e}");
        }
    }

    /// The lines of [`Reader::feed`]; returns the failure that stops the source, if any.
    async fn feed_lines(&self, stdout: ChildStdout) -> Option<OpError> {
        use std::io::Read;
        use tokio::io::unix::AsyncFd;
        let label = &self.cmd.label;
        let fd = stdout.as_raw_fd();
        let nonblocking = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).and_then(|fl| {
            let fl = nix::fcntl::OFlag::from_bits_retain(fl) | nix::fcntl::OFlag::O_NONBLOCK;
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl))
        });
        if let Err(e) = nonblocking {
            return Some(OpError::new(format!(
                "{label}: cannot read its output: {e}"
            )));
        }
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(stdout));
        // SAFETY: the descriptor is owned by `file`, which the AsyncFd owns: it stays open (and
        // the same) until the AsyncFd is dropped.
        let out =
            match unsafe { AsyncFd::register_with_interest(file, tokio::io::Interest::READABLE) } {
                Ok(fd) => fd,
                Err(e) => {
                    return Some(OpError::new(format!(
                        "{label}: cannot read its output: {e}"
                    )))
                }
            };
        let room_in_link = Arc::new(tokio::sync::Notify::new());
        {
            let room = room_in_link.clone();
            self.chan
                .set_producer_waker(Arc::new(move || room.notify_one()));
        }
        // `buf[..filled]` holds what was read and not yet handed on; the rest of `buf` is
        // room, zeroed once when it grows (not at every read).
        let mut buf: Vec<u8> = vec![0; 64 * 1024];
        let mut filled = 0;
        // The bytes of `buf` already searched for a newline (a long line spans many reads).
        let mut scanned = 0;
        let mut batch = Vec::new();
        let mut line = 0usize;
        let mut failure = None;
        let mut eof = false;
        while failure.is_none() && !eof {
            let mut guard = match out.readable().await {
                Ok(g) => g,
                Err(e) => {
                    failure = Some(OpError::new(format!(
                        "{label}:{}: cannot read: {e}",
                        line + 1
                    )));
                    break;
                }
            };
            // At least as much as a line begun holds already: a long line takes few reads.
            let want = filled + filled.max(64 * 1024);
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let room = buf.len() - filled;
            let n = match guard.try_io(|f| f.get_ref().read(&mut buf[filled..])) {
                Ok(Ok(n)) => {
                    eof = n == 0;
                    if n > 0 && n < room {
                        // A short read of a pipe drained it: the next bytes make it readable
                        // again (as tokio's own pipes do), so no read just to meet EAGAIN.
                        guard.clear_ready();
                    }
                    n
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => {
                    failure = Some(OpError::new(format!(
                        "{label}:{}: cannot read: {e}",
                        line + 1
                    )));
                    break;
                }
                Err(_would_block) => continue,
            };
            filled += n;
            // Every complete line (and at the end, the last one without a newline).
            let mut start = 0;
            let mut batch_bytes = 0;
            while failure.is_none() {
                let from = start.max(scanned);
                let end = match memchr::memchr(b'\n', &buf[from..filled]) {
                    Some(i) => from + i + 1,
                    None if eof && start < filled => filled,
                    None => {
                        scanned = filled;
                        break;
                    }
                };
                line += 1;
                if let Err(e) = self.line(line, &buf[start..end], &mut batch) {
                    failure = Some(e);
                }
                batch_bytes += end - start;
                start = end;
                if (batch.len() >= READ_BATCH || batch_bytes >= crate::operator::SOURCE_BATCH_BYTES)
                    && !self.hand_on(&mut batch, &room_in_link).await
                {
                    return failure;
                }
                if batch.is_empty() {
                    batch_bytes = 0;
                }
            }
            buf.copy_within(start..filled, 0);
            filled -= start;
            scanned = scanned.saturating_sub(start);
            if !self.hand_on(&mut batch, &room_in_link).await {
                return failure;
            }
        }
        failure
    }

    /// Pushes `batch` into the link, waiting while it is full; false once the operator
    /// stopped taking.
    async fn hand_on(&self, batch: &mut Vec<Value>, room: &tokio::sync::Notify) -> bool {
        while !batch.is_empty() {
            if self.chan.consumer_gone() {
                return false;
            }
            match self.chan.push(std::mem::take(batch)) {
                None => break,
                Some(rest) => {
                    *batch = rest;
                    room.notified().await;
                }
            }
        }
        !self.chan.consumer_gone()
    }

    /// Reads and sends every line; returns the failure that stops the source, if any.
    fn read(&self, stdout: ChildStdout) -> Option<OpError> {
        let mut r = BufReader::with_capacity(64 * 1024, stdout);
        let mut buf = Vec::new();
        let mut batch = Vec::new();
        let mut line = 0usize;
        loop {
            buf.clear();
            let n = match r.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    self.send(&mut batch);
                    return Some(OpError::new(format!(
                        "{}:{}: cannot read: {e}",
                        self.cmd.label,
                        line + 1
                    )));
                }
            };
            if n == 0 {
                self.send(&mut batch);
                return None;
            }
            line += 1;
            let had = batch.len();
            if let Err(e) = self.line(line, &buf, &mut batch) {
                self.send(&mut batch);
                return Some(e);
            }
            if let Some(d) = self.interval.filter(|_| batch.len() > had) {
                if !self.send(&mut batch) {
                    return None;
                }
                std::thread::sleep(d);
            }
            // Hand on what was read before waiting for more, or when the batch is full.
            if !batch.is_empty()
                && (r.buffer().is_empty() || batch.len() >= READ_BATCH)
                && !self.send(&mut batch)
            {
                return None;
            }
        }
    }
}

/// What a sink's writer thread shares with its operator.
#[derive(Default)]
struct SinkShared {
    /// Set when the writer thread stopped early (a broken pipe): the operator fails.
    failed: AtomicBool,
    /// The command's standard input (`None` once closed), written by whoever holds it: the
    /// writer thread, which takes a batch from the link only while holding it, or the operator
    /// itself when the link is empty (so the order of batches holds).
    pipe: Mutex<Option<ChildStdin>>,
    /// The lines of the next batch the thread takes, when the operator formatted them already.
    preformatted: Mutex<Option<String>>,
    /// Batches the operator wrote itself, and batches the writer thread wrote.
    direct: AtomicU64,
    queued: AtomicU64,
}

/// `sink.exec`: starts a command and writes each element as a JSON line to its standard
/// input (flushed after each batch); at end of stream closes it and waits for the command.
/// A non-zero exit status or a broken pipe fails the operator. The command's standard output
/// goes to our standard error (standard output carries only `sink.stdout` data).
///
/// Its snapshot is how many elements it was given; a restored one takes the count back and
/// starts the command again (a command cannot be rewound:
/// [`crate::recovery::SkipWritten`] skips what was already written).
pub struct ExecSink {
    cmd: ExecCommand,
    chan: Arc<Channel<Value>>,
    shared: Arc<SinkShared>,
    writer: Option<JoinHandle<OpResult>>,
    written: u64,
    /// The JSON lines of the batch being written directly.
    text: String,
    /// The capacity of the pipe to the command, in bytes.
    pipe_size: usize,
}

impl ExecSink {
    /// A sink feeding `cmd`.
    pub fn new(cmd: ExecCommand) -> Self {
        ExecSink {
            cmd,
            chan: Channel::new(LinkConfig {
                capacity: EXEC_CAPACITY,
                overflow: Overflow::Block,
                max_bytes: EXEC_MAX_BYTES,
            }),
            shared: Arc::new(SinkShared::default()),
            writer: None,
            written: 0,
            text: String::new(),
            pipe_size: 0,
        }
    }

    /// Writes `batch` into the command's input from the operator itself when that cannot block
    /// and cannot overtake a queued batch; a batch too large for the pipe is queued with its
    /// lines (formatted once). Hands `batch` back when the writer thread has to do it all.
    fn write_direct(&mut self, batch: Vec<Value>) -> Option<Vec<Value>> {
        let Ok(mut pipe) = self.shared.pipe.try_lock() else {
            return Some(batch);
        };
        let Some(p) = pipe.as_mut() else {
            return Some(batch);
        };
        // The command has not read everything yet, or a batch is queued before this one.
        if pipe_queued(p) != Some(0) || !self.chan.queue_is_empty() {
            return Some(batch);
        }
        let mut text = std::mem::take(&mut self.text);
        json_lines(&batch, &mut text);
        if text.len() <= self.pipe_size {
            // An empty pipe takes up to its size without blocking. On an error the writer
            // thread writes the batch again and reports what it meets.
            let ok = p.write_all(text.as_bytes()).is_ok();
            self.text = text;
            if ok {
                self.shared.direct.fetch_add(1, Ordering::Relaxed);
                // The command had read everything, so it is likely asleep in a read that
                // this write just ended, and queued on this CPU (see the ring's
                // `RingWriter::set_yield_after_wake`): let it take the lines now rather than
                // after the rest of this thread's turn. Exec nodes at 1 kHz: p50 56-59 us
                // instead of 77-81 us.
                std::thread::yield_now();
                return None;
            }
            return Some(batch);
        }
        if batch.len() > EXEC_CAPACITY
            || batch.iter().map(Value::heap_bytes).sum::<usize>() > EXEC_MAX_BYTES
        {
            self.text = text;
            return Some(batch);
        }
        // Too large to write without blocking: the thread writes these lines. The link is
        // empty, the batch within its bounds and the pipe held, so the link takes all of it
        // and this batch is the next one the thread takes.
        *lock(&self.shared.preformatted) = Some(text);
        let rest = self.chan.push(batch);
        debug_assert!(
            rest.is_none(),
            "an empty link refused a batch within its capacity"
        );
        rest
    }

    /// Joins the writer thread and returns its outcome.
    fn join(&mut self) -> OpResult {
        match self.writer.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(OpError::new("the writer thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Operator for ExecSink {
    type In = Value;
    type Out = Value;

    fn start(&mut self, _out: &mut Outputs<Value>) -> OpResult {
        let mut c = self.cmd.command()?;
        let to_stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| OpError::new(format!("cannot duplicate standard error: {e}")))?;
        c.stdin(Stdio::piped())
            .stdout(Stdio::from(to_stderr))
            .stderr(Stdio::inherit());
        let mut child = c.spawn().map_err(|e| self.cmd.spawn_error(e))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| OpError::new("the command's standard input is not a pipe"))?;
        self.pipe_size = pipe_size(&stdin);
        *lock(&self.shared.pipe) = Some(stdin);
        let w = Writer {
            cmd: self.cmd.clone(),
            chan: self.chan.clone(),
            shared: self.shared.clone(),
        };
        let h = std::thread::Builder::new()
            .name(format!("exec-w:{}", self.cmd.label))
            .spawn(move || w.run(child))
            .map_err(|e| OpError::new(format!("cannot start a writer thread: {e}")))?;
        self.writer = Some(h);
        Ok(())
    }

    fn on_batch(&mut self, _port: usize, batch: Vec<Value>, _out: &mut Outputs<Value>) -> OpResult {
        if !self.shared.failed.load(Ordering::Acquire) {
            self.written += batch.len() as u64;
            if let Some(mut batch) = self.write_direct(batch) {
                // Waits only while the command is slower than the pipeline (backpressure).
                self.chan.push_blocking(&mut batch, None);
            }
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return self.join();
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Outputs<Value>) -> OpResult {
        self.chan.close(End::default());
        self.join()
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("sink.exec", &self.written).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        self.written = load_state("sink.exec", state)?;
        Ok(())
    }
}

impl Drop for ExecSink {
    fn drop(&mut self) {
        // Ends the command's input if the run stopped before the end of the stream.
        self.chan.close(End::default());
    }
}

/// The thread writing a sink command's standard input.
struct Writer {
    cmd: ExecCommand,
    chan: Arc<Channel<Value>>,
    shared: Arc<SinkShared>,
}

impl Writer {
    fn run(self, mut child: Child) -> OpResult {
        let written = self.write();
        // Closes the command's input (at the end, or after a failure).
        *lock(&self.shared.pipe) = None;
        if written.is_err() {
            self.shared.failed.store(true, Ordering::Release);
            // Lets the operator go on without waiting for a reader that is gone.
            self.chan.disconnect_consumer();
        }
        let status = child.wait().map_err(|e| {
            OpError::new(format!(
                "cannot wait for the command \"{}\": {e}",
                self.cmd.label
            ))
        })?;
        match (self.cmd.status_error(status), written) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(()),
        }
    }

    /// Writes every batch the operator queued; returns at the end of the stream.
    fn write(&self) -> OpResult {
        let mut text = String::new();
        let err = |e: std::io::Error| {
            let what = if e.kind() == std::io::ErrorKind::BrokenPipe {
                "stopped reading its input (broken pipe)".to_string()
            } else {
                format!("cannot be written to: {e}")
            };
            OpError::new(format!("the command \"{}\" {what}", self.cmd.label))
        };
        loop {
            self.chan.wait_data();
            // Taken only with the pipe held: the operator writes directly only when the link is
            // empty and the pipe free, so no batch overtakes another.
            let mut pipe = lock(&self.shared.pipe);
            match self.chan.take() {
                Recv::Batch(b) => {
                    match lock(&self.shared.preformatted).take() {
                        Some(t) => text = t,
                        None => json_lines(&b, &mut text),
                    }
                    if let Some(p) = pipe.as_mut() {
                        p.write_all(text.as_bytes()).map_err(err)?;
                        self.shared.queued.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Recv::End(_) => return Ok(()),
                Recv::Empty => {}
            }
        }
    }
}

/// Replaces `text` with one JSON line per element of `batch`.
fn json_lines(batch: &[Value], text: &mut String) {
    text.clear();
    for v in batch {
        format_line(v, Format::Jsonl, text);
        text.push('\n');
    }
}

/// Bytes written into a pipe and not read yet (`None` if the OS does not say).
fn pipe_queued(p: &ChildStdin) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid for that.
    let r = unsafe { libc::ioctl(p.as_raw_fd(), libc::FIONREAD, &mut n) };
    (r == 0).then_some(n as usize)
}

/// The capacity of a pipe in bytes (0 if the OS does not say).
fn pipe_size(p: &ChildStdin) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETPIPE_SZ takes no argument and only reads the descriptor's state.
    let r = unsafe { libc::fcntl(p.as_raw_fd(), libc::F_GETPIPE_SZ) };
    usize::try_from(r).unwrap_or(0)
}

impl Graph {
    /// `source.exec`: each JSON line `cmd` prints is an element (see [`ExecSource`]); bad
    /// lines (malformed, or rejected by `typecheck`) follow `on_error`; `interval` paces the
    /// elements.
    ///
    /// ```
    /// use tributary::{Graph, Value};
    /// use tributary::operator::exec::ExecCommand;
    /// use tributary::operator::source::OnError;
    /// let mut g = Graph::new();
    /// let cmd = ExecCommand::new(vec!["printf".into(), "1\\n[2]\\n".into()]);
    /// let x = g.source_exec(cmd, OnError::Fail, None, None);
    /// let out = g.collect(&x);
    /// g.run().unwrap();
    /// assert_eq!(out.take(), vec![Value::Int(1), Value::Array(vec![Value::Int(2)])]);
    /// ```
    pub fn source_exec(
        &mut self,
        cmd: ExecCommand,
        on_error: OnError,
        typecheck: Option<TypeCheck>,
        interval: Option<Duration>,
    ) -> Stream<Value> {
        let chan = Channel::new(LinkConfig {
            capacity: EXEC_CAPACITY,
            overflow: Overflow::Block,
            max_bytes: EXEC_MAX_BYTES,
        });
        let op = ExecSource {
            cmd,
            on_error,
            typecheck,
            interval,
            chan: Some(chan.clone()),
            shared: Arc::new(SourceShared::default()),
            reader: None,
            task: None,
            emitted: 0,
        };
        self.add_external_source("source.exec", op, chan)
    }

    /// `sink.exec`: `cmd` reads every element of `s` as a JSON line (see [`ExecSink`]).
    pub fn sink_exec(&mut self, s: &Stream<Value>, cmd: ExecCommand) {
        self.add_sink("sink.exec", ExecSink::new(cmd), &[s])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ExecCommand {
        ExecCommand::new(vec!["sh".into(), "-c".into(), script.into()])
    }

    #[test]
    fn exec_operators_snapshot_their_counts_and_a_source_cannot_restore() {
        let mut sink = ExecSink::new(sh("cat > /dev/null"));
        let mut out = Outputs::new(0);
        sink.start(&mut out).unwrap();
        sink.on_batch(0, vec![Value::Int(1), Value::Int(2)], &mut out)
            .unwrap();
        let snap = sink.snapshot().unwrap().unwrap();
        sink.finish(&mut out).unwrap();
        let mut fresh = ExecSink::new(sh("cat > /dev/null"));
        fresh.restore(&snap).unwrap();
        assert_eq!(fresh.written, 2);
        let src = ExecSource {
            cmd: sh("echo 1"),
            on_error: OnError::Fail,
            typecheck: None,
            interval: None,
            chan: None,
            shared: Arc::new(SourceShared::default()),
            reader: None,
            task: None,
            emitted: 3,
        };
        let snap = src.snapshot().unwrap().unwrap();
        assert_eq!(load_state::<u64>("", &snap).unwrap(), 3);
        let mut src = src;
        let e = src.restore(&snap).unwrap_err();
        assert!(
            e.message.starts_with("source.exec: cannot restore") && e.message.contains("echo 1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_source_emits_json_lines_then_checks_the_exit_status() {
        let mut g = Graph::new();
        let x = g.source_exec(sh("printf '1\\n\\n\"a\"\\n'"), OnError::Fail, None, None);
        let out = g.collect(&x);
        g.run().unwrap();
        assert_eq!(out.take(), vec![Value::Int(1), Value::Str("a".into())]);

        let mut g = Graph::new();
        let x = g.source_exec(sh("echo 1; echo 2; exit 3"), OnError::Fail, None, None);
        let out = g.collect(&x);
        let e = g.run().unwrap_err().to_string();
        assert_eq!(out.take(), vec![Value::Int(1), Value::Int(2)]);
        assert!(
            e.contains("echo 1; echo 2; exit 3") && e.contains("exit status: 3"),
            "{e}"
        );
    }

    #[test]
    fn a_source_read_on_its_actors_thread_gets_lines_split_across_reads_long_lines_and_a_full_link()
    {
        // Lines cut in the middle between writes, a line longer than many reads, many more
        // lines than the link holds and than one read takes (into a consumer slower than the
        // command), a last line without a newline.
        let script = "printf '[1,'; sleep 0.05; printf '2]\\n3'; sleep 0.05; printf '\\n'; \
                      printf '\"'; head -c 300000 /dev/zero | tr '\\0' x; printf '\"\\n'; \
                      seq 4 60000; printf 60001";
        let mut g = Graph::new();
        let x = g.source_exec(sh(script), OnError::Fail, None, None);
        let slow = g.map_element(&x, |v: Value| {
            if matches!(v, Value::Int(i) if i % 5000 == 0) {
                std::thread::sleep(Duration::from_millis(2));
            }
            v
        });
        let out = g.collect(&slow);
        g.run().unwrap();
        let got = out.take();
        let mut want = vec![
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
            Value::Int(3),
            Value::Str("x".repeat(300_000)),
        ];
        want.extend((4..=60001).map(Value::Int));
        assert_eq!(got.len(), want.len());
        assert!(got == want, "first {:?}, last {:?}", &got[..3], got.last());
    }

    #[test]
    fn a_bad_line_fails_after_what_came_before_or_is_skipped() {
        let script = "echo 1; echo '{oops'; echo 3";
        let mut g = Graph::new();
        let x = g.source_exec(sh(script), OnError::Fail, None, None);
        let out = g.collect(&x);
        let e = g.run().unwrap_err();
        assert_eq!(out.take(), vec![Value::Int(1)]);
        let tributary_msg = e.to_string();
        assert!(
            tributary_msg.contains(&format!("{script}:2: invalid JSON")),
            "{tributary_msg}"
        );
        let mut g = Graph::new();
        let x = g.source_exec(sh(script), OnError::Skip, None, None);
        let out = g.collect(&x);
        let report = g.run().unwrap();
        assert_eq!(out.take(), vec![Value::Int(1), Value::Int(3)]);
        assert!(report
            .notes
            .iter()
            .any(|(_, n)| n.starts_with("skipped 1 bad lines")));
    }

    #[test]
    fn a_command_that_cannot_start_is_named() {
        let mut g = Graph::new();
        let cmd = ExecCommand::new(vec!["tributary-no-such-program".into()]);
        let x = g.source_exec(cmd.clone(), OnError::Fail, None, None);
        g.sink_exec(&x, cmd);
        let e = g.run().unwrap_err().to_string();
        assert!(
            e.contains("cannot start the command \"tributary-no-such-program\""),
            "{e}"
        );
    }

    #[test]
    fn a_sink_feeds_its_command_and_reports_its_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("got.jsonl");
        let mut g = Graph::new();
        let x = g.source_iter((0..3000).map(Value::Int));
        g.sink_exec(&x, sh(&format!("cat > '{}'", path.display())));
        g.run().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let want: String = (0..3000).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, want);

        let mut g = Graph::new();
        let x = g.source_iter((0..3).map(Value::Int));
        g.sink_exec(&x, sh("cat > /dev/null; exit 3"));
        let e = g.run().unwrap_err().to_string();
        assert!(e.contains("exited with exit status: 3"), "{e}");

        let mut g = Graph::new();
        let x = g.source_iter((0..200_000).map(Value::Int));
        g.sink_exec(&x, sh("exit 0"));
        let e = g.run().unwrap_err().to_string();
        assert!(e.contains("broken pipe"), "{e}");
    }

    #[test]
    fn a_sink_writes_directly_when_its_command_keeps_up_and_the_order_holds_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("got.jsonl");
        let mut g = Graph::new();
        // One element at a time, into a command that reads a byte at a time: some batches find
        // the pipe empty (written by the operator), others behind a backlog (the thread).
        let x = g.source_iter_paced((0..600).map(Value::Int), Duration::from_micros(100));
        let op = ExecSink::new(sh(&format!(
            "while read -r l; do printf '%s\\n' \"$l\"; done > '{}'",
            path.display()
        )));
        let shared = op.shared.clone();
        g.add_sink("sink.exec", op, &[&x]);
        g.run().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let want: String = (0..600).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, want);
        let (direct, queued) = (
            shared.direct.load(Ordering::Relaxed),
            shared.queued.load(Ordering::Relaxed),
        );
        assert!(
            direct > 0,
            "no batch was written directly ({queued} queued)"
        );
        eprintln!("direct {direct}, queued {queued}");
    }

    #[test]
    fn elements_larger_than_the_pipe_reach_the_command_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("got.jsonl");
        let big = "x".repeat(200_000);
        let elems: Vec<Value> = (0..30)
            .map(|i| {
                if i % 3 == 0 {
                    Value::Str(format!("{i}{big}"))
                } else {
                    Value::Int(i)
                }
            })
            .collect();
        let want: String = elems.iter().map(|v| format!("{v}\n")).collect();
        let mut g = Graph::new();
        let x = g.source_iter_paced(elems, Duration::from_millis(1));
        g.sink_exec(&x, sh(&format!("cat > '{}'", path.display())));
        g.run().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text == want, "{} bytes, want {}", text.len(), want.len());
    }

    #[test]
    fn an_endless_command_stops_when_another_operator_fails() {
        let mut g = Graph::new();
        let x = g.source_exec(
            sh("while true; do echo 1; sleep 0.01; done"),
            OnError::Fail,
            None,
            None,
        );
        let y = g.try_map_element(&x, |_v: Value| -> Result<crate::Emit<Value>, OpError> {
            Err(OpError::new("no thanks"))
        });
        g.sink_element(&y, |_v| {});
        let t0 = Instant::now();
        let e = g.run().unwrap_err().to_string();
        assert!(e.contains("no thanks"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn an_interval_paces_the_lines() {
        let mut g = Graph::new();
        let x = g.source_exec(
            sh("for i in 1 2 3 4 5; do echo $i; done"),
            OnError::Fail,
            None,
            Some(Duration::from_millis(20)),
        );
        let out = g.collect(&x);
        let t0 = Instant::now();
        g.run().unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(80));
        assert_eq!(out.take().len(), 5);
    }
}

//! Links between processes: the producer's batches go into a shared-memory ring, and the
//! consumer's process reads the ring into the consumers' links.
//!
//! Frames on the ring: one tag byte, a little-endian u32 length, the payload.
//! Tags: 0 = a batch (see `crate::codec`), 1 = end of stream, 2 = end because the cycle went quiet.
//!
//! Each element pays for one thread wake-up on its way, that of the consumer:
//!
//! * **Writing** ([`spawn_writer`]): the producing actor encodes each batch and copies it into
//!   the ring itself, in its own thread, when nothing is queued before it (the link's
//!   [`DirectDrain`]). What does not fit (a full ring) stays behind: the rest of the frame, and
//!   the batches pushed after it, which queue in the local link as usual, bounded by its
//!   capacity. A writer thread, asleep otherwise, then writes the backlog, waiting on the ring
//!   while it is full, and writes the end-of-stream frame.
//! * **Reading** ([`spawn_reader`]): a task on the arbiter thread of the (first) consumer
//!   decodes frames and pushes the batches into the consumers' links; while it has nothing to
//!   read it sleeps on the ring's doorbell (a socket, then an eventfd, see `crate::shm`,
//!   registered with the arbiter's event loop), so that the producer's write wakes the
//!   consumer's thread directly.
//!   A full consumer link makes it stop reading (the ring then fills and the producer waits):
//!   lossless and bounded.

use std::io;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::Poll;
use std::thread::{JoinHandle, Thread};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::codec;
use crate::link::local::{Channel, DirectDrain, End, Recv};
use crate::operator::Element;
use crate::pipeline::ExternalFeed;
use crate::shm::{RingReader, RingWriter, ShmError};

const TAG_BATCH: u8 = 0;
const TAG_END: u8 = 1;
const TAG_END_CYCLE: u8 = 2;
const FRAME_HEAD: usize = 5;
/// Frames the reading task handles before it yields to the actors of its arbiter.
const FRAMES_PER_TURN: usize = 16;
/// Wake-ups after which the reading task empties its doorbell descriptors (each wake-up leaves
/// a count in the eventfd or a datagram in the socket; reading them every time would cost a
/// system call per element, and a full socket could not be rung).
const DRAIN_EVERY: u32 = 32;

/// How many times a reading task looks at an empty ring before it sleeps on the doorbell
/// (a few microseconds; see [`spin_for_data`]).
const READ_SPINS: u32 = 512;

/// A reading task spins before it sleeps only if its last sleep was shorter than this (data
/// comes in full flow); at lower rates it sleeps at once.
const SPIN_WORTH: std::time::Duration = std::time::Duration::from_micros(50);

/// How long a reading task sleeps on its doorbell before it looks at the ring anyway: a
/// wake-up that never arrives (a writer's datagram lost around a crash and restart) then costs
/// this much delay, not the rest of the run.
const DOORBELL_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// A failure of a link between processes.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The ring failed (the other process is gone, or the OS refused).
    #[error("link \"{link}\": {source}")]
    Ring {
        /// The stream the link carries.
        link: String,
        /// The ring's error.
        #[source]
        source: ShmError,
    },
    /// A frame could not be decoded.
    #[error("link \"{link}\": {source}")]
    Codec {
        /// The stream the link carries.
        link: String,
        /// The codec's error.
        #[source]
        source: codec::CodecError,
    },
    /// The writer vanished without ending the stream.
    #[error("link \"{0}\": the producing process went away before the end of the stream")]
    Truncated(String),
    /// An unknown frame tag.
    #[error("link \"{0}\": corrupt frame tag {1}")]
    BadTag(String, u8),
    /// The reading task could not wait on the ring's doorbell.
    #[error("link \"{link}\": cannot wait on the ring's doorbell: {source}")]
    Doorbell {
        /// The stream the link carries.
        link: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

type RelayResult = std::thread::Result<Result<(), RemoteError>>;

/// The result of a relay that is not a thread of its own (a task on an arbiter), set once.
#[derive(Default)]
struct Completion {
    result: Mutex<Option<RelayResult>>,
    set: Condvar,
}

impl Completion {
    fn finish(&self, r: RelayResult) {
        let mut g = self.result.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(r);
            self.set.notify_all();
        }
    }

    fn wait(&self) -> RelayResult {
        let mut g = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = g.take() {
                return r;
            }
            g = self.set.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A running ring writer or reader; [`Relay::join`] waits for it like a thread's handle.
pub struct Relay(RelayKind);

enum RelayKind {
    Thread(JoinHandle<Result<(), RemoteError>>),
    Task(Arc<Completion>),
}

impl Relay {
    /// Waits until the relay is done: `Ok(result)`, or `Err(panic payload)` if it panicked.
    pub fn join(self) -> RelayResult {
        match self.0 {
            RelayKind::Thread(h) => h.join(),
            RelayKind::Task(c) => c.wait(),
        }
    }

    /// True once the relay is done ([`Relay::join`] will not wait).
    pub fn is_finished(&self) -> bool {
        match &self.0 {
            RelayKind::Thread(h) => h.is_finished(),
            RelayKind::Task(c) => c.result.lock().unwrap_or_else(|e| e.into_inner()).is_some(),
        }
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            RelayKind::Thread(_) => "Relay(thread)",
            RelayKind::Task(_) => "Relay(task)",
        })
    }
}

// ------------------------------------------------------------------------------- writing

/// Appends one batch frame to `out`.
fn encode_frame<T: Element>(batch: &[T], out: &mut Vec<u8>) -> Result<(), codec::CodecError> {
    let start = out.len();
    out.extend_from_slice(&[TAG_BATCH, 0, 0, 0, 0]);
    codec::encode(batch, out)?;
    let len = (out.len() - start - FRAME_HEAD) as u32;
    out[start + 1..start + FRAME_HEAD].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes one batch frame into `w` from its start; None when it does not fit.
fn encode_frame_into<T: Element>(
    batch: &[T],
    w: &mut codec::Window,
) -> Result<Option<usize>, codec::CodecError> {
    if !w.put_bytes(&[TAG_BATCH, 0, 0, 0, 0]) || !codec::encode_into(batch, w)? {
        return Ok(None);
    }
    let len = (w.written() - FRAME_HEAD) as u32;
    w.patch(1, &len.to_le_bytes());
    Ok(Some(w.written()))
}

/// Encodes `batch` as one frame straight into the ring's free space (no copy through a
/// buffer) if it fits there now, within `limit` bytes unless it is one element; Ok(false),
/// writing nothing, when it does not.
fn write_in_place<T: Element>(
    ring: &mut RingWriter,
    batch: &[T],
    limit: usize,
    link: &str,
) -> Result<bool, RemoteError> {
    let max = if batch.len() == 1 { usize::MAX } else { limit };
    let mut codec_err = None;
    let elems = batch.len() as u64;
    let wrote = ring.try_write_frame_with(max, |a, b| {
        match encode_frame_into(batch, &mut codec::Window::new(a, b)) {
            Ok(len) => len.map(|l| (l, elems)),
            Err(e) => {
                codec_err = Some(e);
                None
            }
        }
    });
    if let Some(source) = codec_err {
        return Err(RemoteError::Codec {
            link: link.to_string(),
            source,
        });
    }
    wrote.map_err(|source| RemoteError::Ring {
        link: link.to_string(),
        source,
    })
}

/// Appends `batch` to `out` as frames of at most `limit` bytes each where it can (a batch is
/// halved until its frame fits, down to one element), recording where each frame ends and
/// how many elements it holds in `frames`. Frames that fit in the ring are written whole, so
/// a reader never sees part of one, and a writer restarted after a crash resumes after the
/// last complete one.
fn encode_frames<T: Element>(
    batch: &[T],
    limit: usize,
    out: &mut Vec<u8>,
    frames: &mut Vec<(usize, u64)>,
) -> Result<(), codec::CodecError> {
    let start = out.len();
    encode_frame(batch, out)?;
    if out.len() - start > limit && batch.len() > 1 {
        out.truncate(start);
        let (a, b) = batch.split_at(batch.len() / 2);
        encode_frames(a, limit, out, frames)?;
        return encode_frames(b, limit, out, frames);
    }
    frames.push((out.len(), batch.len() as u64));
    Ok(())
}

/// Writes the frames of `buf` (ends and element counts in `frames`, from byte `from`) into
/// `ring`, each whole, waiting for room; records each as it completes.
fn write_frames(
    ring: &mut RingWriter,
    buf: &[u8],
    frames: &[(usize, u64)],
    from: usize,
) -> Result<(), ShmError> {
    let mut at = from;
    for &(end, elems) in frames {
        if end <= at {
            continue;
        }
        ring.write_frame(&buf[at..end], elems)?;
        at = end;
    }
    Ok(())
}

/// The writing end, shared by the producer (through the link's [`DirectDrain`]) and the
/// writer thread. Whoever holds the lock may write into the ring.
struct WriteSide {
    /// None once the stream ended or the link failed.
    ring: Option<RingWriter>,
    /// Encoded frames the producer could not fit into the ring; they go before anything queued.
    stash: Vec<u8>,
    /// Where each frame of `stash` ends, and its elements.
    stash_frames: Vec<(usize, u64)>,
    /// Encoding buffer, and its frames.
    buf: Vec<u8>,
    buf_frames: Vec<(usize, u64)>,
    /// Elements the ring already holds from an earlier life of this process (restarted from
    /// a checkpoint): the first ones given are dropped.
    skip: u64,
    /// A failure the producer ran into, for the writer thread to report.
    error: Option<RemoteError>,
}

impl WriteSide {
    /// Drops from `batch` what the ring already holds.
    fn skip_written<T>(&mut self, batch: &mut Vec<T>) {
        if self.skip > 0 {
            let n = (self.skip.min(batch.len() as u64)) as usize;
            batch.drain(..n);
            self.skip -= n as u64;
        }
    }

    /// Encodes `batch` into `buf` as frames small enough for the ring.
    fn encode<T: Element>(&mut self, batch: &[T]) -> Result<(), codec::CodecError> {
        self.buf.clear();
        self.buf_frames.clear();
        let limit = self.ring.as_ref().map_or(usize::MAX, |r| r.capacity() / 4);
        encode_frames(batch, limit.max(64), &mut self.buf, &mut self.buf_frames)
    }
}

struct Drain {
    link: String,
    side: Mutex<WriteSide>,
    thread: OnceLock<Thread>,
}

/// A writer's side of a checkpoint (see [`crate::checkpoint`]).
struct WriterState<T> {
    ring: usize,
    drain: Arc<Drain>,
    chan: Arc<Channel<T>>,
    elems: Arc<std::sync::atomic::AtomicU64>,
}

impl<T: Element> crate::checkpoint::WriterStatus for WriterState<T> {
    fn ring(&self) -> usize {
        self.ring
    }

    fn idle(&self) -> bool {
        if !self.chan.queue_is_empty() {
            return false;
        }
        let Ok(mut side) = self.drain.side.try_lock() else {
            return false;
        };
        let idle = side.stash.is_empty() && side.skip == 0;
        if let Some(r) = side.ring.as_mut() {
            self.elems
                .store(r.elems_written(), std::sync::atomic::Ordering::Release);
        }
        idle
    }

    fn elems(&self) -> u64 {
        self.elems.load(std::sync::atomic::Ordering::Acquire)
    }

    fn replaying(&self) -> bool {
        // Busy writing: not idle either, so no checkpoint now whatever the answer.
        self.drain.side.try_lock().is_ok_and(|side| side.skip > 0)
    }
}

impl Drain {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteSide> {
        self.side.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_thread(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

impl<T: Element> DirectDrain<T> for Drain {
    fn offer(&self, chan: &Channel<T>, batch: Vec<T>) -> Option<Vec<T>> {
        // Busy writer thread: queue behind what it is writing.
        let Ok(mut side) = self.side.try_lock() else {
            return Some(batch);
        };
        let w = &mut *side;
        if w.ring.is_none() || !w.stash.is_empty() || !chan.queue_is_empty() {
            return Some(batch);
        }
        let mut batch = batch;
        let whole = batch.len();
        w.skip_written(&mut batch);
        if batch.is_empty() {
            chan.count_pushed(whole);
            return None;
        }
        // Counted before the consumer can see (and uncount) the elements.
        chan.count_pushed(whole);
        let ring = w.ring.as_mut().expect("checked above");
        let limit = (ring.capacity() / 4).max(64);
        match write_in_place(ring, &batch, limit, &self.link) {
            Ok(true) => {
                crate::value::drop_batch(batch);
                return None;
            }
            Ok(false) => {}
            Err(e) => {
                chan.count_unpushed(whole);
                return self.fail(side, chan, e, Some(batch));
            }
        }
        if let Err(source) = w.encode(&batch) {
            chan.count_unpushed(whole);
            return self.fail(
                side,
                chan,
                RemoteError::Codec {
                    link: self.link.clone(),
                    source,
                },
                Some(batch),
            );
        }
        crate::value::drop_batch(batch);
        let ring = w.ring.as_mut().expect("checked above");
        let n = w.buf_frames.iter().map(|f| f.1).sum();
        match ring.try_write_frame(&w.buf, n) {
            Ok(true) => {}
            Ok(false) => {
                std::mem::swap(&mut w.stash, &mut w.buf);
                std::mem::swap(&mut w.stash_frames, &mut w.buf_frames);
                drop(side);
                self.wake_thread();
            }
            Err(source) => {
                return self.fail(
                    side,
                    chan,
                    RemoteError::Ring {
                        link: self.link.clone(),
                        source,
                    },
                    None,
                );
            }
        }
        None
    }
}

impl Drain {
    /// The producer ran into `e`: the link fails (the writer thread reports it) and the
    /// consumer side is told; hands back `batch`.
    fn fail<T: Element>(
        &self,
        mut side: std::sync::MutexGuard<'_, WriteSide>,
        chan: &Channel<T>,
        e: RemoteError,
        batch: Option<Vec<T>>,
    ) -> Option<Vec<T>> {
        side.error = Some(e);
        side.ring = None;
        drop(side);
        chan.disconnect_consumer();
        self.wake_thread();
        batch
    }
}

/// Makes `chan` (a link with no other consumer) feed `ring`: batches pushed into it go
/// straight into the ring when they can (written by the producer), and a writer thread writes
/// the backlog and the end of the stream. The relay ends once the end-of-stream frame is
/// written.
pub fn spawn_writer<T: Element>(
    link: String,
    chan: Arc<Channel<T>>,
    ring: RingWriter,
) -> io::Result<Relay> {
    spawn_writer_with(link, chan, ring, WriterResume::default())
}

/// How a ring writer of a worker that takes checkpoints starts (see [`crate::checkpoint`]).
#[derive(Default)]
pub struct WriterResume {
    /// Elements the ring already holds from an earlier life of the process: dropped.
    pub skip: u64,
    /// The ring already holds the end of the stream: nothing more is written.
    pub ended: bool,
    /// The process's checkpoints and the ring's index in the plan.
    pub checkpoints: Option<(Arc<crate::checkpoint::Quiesce>, usize)>,
}

/// [`spawn_writer`] for a worker that takes checkpoints or was restarted from one.
pub fn spawn_writer_with<T: Element>(
    link: String,
    chan: Arc<Channel<T>>,
    ring: RingWriter,
    resume: WriterResume,
) -> io::Result<Relay> {
    let elems = Arc::new(std::sync::atomic::AtomicU64::new(ring.elems_written()));
    let ring = if resume.ended {
        // Everything, and the end, is in the ring already: drop what comes, write nothing.
        drop(ring);
        None
    } else {
        Some(ring)
    };
    let drain = Arc::new(Drain {
        link: link.clone(),
        side: Mutex::new(WriteSide {
            skip: if ring.is_some() {
                resume.skip
            } else {
                u64::MAX
            },
            ring,
            stash: Vec::new(),
            stash_frames: Vec::new(),
            buf: Vec::with_capacity(64 * 1024),
            buf_frames: Vec::new(),
            error: None,
        }),
        thread: OnceLock::new(),
    });
    if let Some((q, ring)) = resume.checkpoints {
        q.add_writer(Arc::new(WriterState {
            ring,
            drain: drain.clone(),
            chan: chan.clone(),
            elems,
        }));
    }
    let d = drain.clone();
    let c = chan.clone();
    let handle = std::thread::Builder::new()
        .name(format!("ring-w:{link}"))
        .spawn(move || write_backlog(&d, &c))?;
    let _ = drain.thread.set(handle.thread().clone());
    let t = handle.thread().clone();
    chan.set_consumer_waker(Arc::new(move || t.unpark()));
    chan.set_direct_drain(drain);
    Ok(Relay(RelayKind::Thread(handle)))
}

/// The writer thread: writes what the producer could not (its stash, then the queued batches),
/// waiting on the ring while it is full, then the end of the stream; sleeps in between.
fn write_backlog<T: Element>(drain: &Drain, chan: &Channel<T>) -> Result<(), RemoteError> {
    let link = &drain.link;
    let ring_err = |source| RemoteError::Ring {
        link: link.clone(),
        source,
    };
    loop {
        {
            let mut side = drain.lock();
            let w = &mut *side;
            if let Some(e) = w.error.take() {
                return Err(e);
            }
            if w.ring.is_none() && w.skip == u64::MAX {
                // A restarted writer whose ring already holds the whole stream.
                loop {
                    match chan.take() {
                        Recv::Batch(_) => {}
                        Recv::End(_) => return Ok(()),
                        Recv::Empty => break,
                    }
                }
            }
            if w.ring.is_some() {
                let fail = |w: &mut WriteSide, side_err| {
                    w.ring = None;
                    side_err
                };
                if !w.stash.is_empty() {
                    let ring = w.ring.as_mut().expect("still open");
                    if let Err(e) = write_frames(ring, &w.stash, &w.stash_frames, 0) {
                        let e = fail(w, ring_err(e));
                        drop(side);
                        chan.disconnect_consumer();
                        return Err(e);
                    }
                    w.stash.clear();
                    w.stash_frames.clear();
                }
                loop {
                    match chan.take() {
                        Recv::Batch(mut b) => {
                            w.skip_written(&mut b);
                            if b.is_empty() {
                                continue;
                            }
                            let written = w
                                .encode(&b)
                                .map_err(|source| RemoteError::Codec {
                                    link: link.clone(),
                                    source,
                                })
                                .and_then(|()| {
                                    crate::value::drop_batch(b);
                                    let ring = w.ring.as_mut().expect("still open");
                                    write_frames(ring, &w.buf, &w.buf_frames, 0).map_err(ring_err)
                                });
                            if let Err(e) = written {
                                let e = fail(w, e);
                                drop(side);
                                chan.disconnect_consumer();
                                return Err(e);
                            }
                        }
                        Recv::End(e) => {
                            let ring = w.ring.as_mut().expect("still open");
                            let tag = if e.cycle { TAG_END_CYCLE } else { TAG_END };
                            let r = ring.write_frame(&[tag, 0, 0, 0, 0], 0).map_err(ring_err);
                            if let Some(ring) = w.ring.take() {
                                ring.close();
                            }
                            return r;
                        }
                        Recv::Empty => break,
                    }
                }
            }
        }
        // Woken by a push that queued (the link's consumer waker) or by the producer's stash.
        std::thread::park();
    }
}

// ------------------------------------------------------------------------------- reading

/// What the frame parser found.
enum Step<T> {
    Batch(Vec<T>),
    End(End),
    /// Nothing complete is readable now.
    Empty,
}

/// Parses frames out of the ring as they become readable, across partial reads.
struct FrameReader {
    link: String,
    head: [u8; FRAME_HEAD],
    head_got: usize,
    /// Length of the payload being read (`None`: reading a frame head).
    payload_len: Option<usize>,
    /// Bytes of that payload consumed from the ring so far.
    payload_got: usize,
    /// Those bytes, when they are kept (not when skipping).
    payload: Vec<u8>,
}

/// What the frame head just read announced.
enum Head {
    Incomplete,
    Batch,
    End(End),
}

impl FrameReader {
    fn new(link: String) -> Self {
        FrameReader {
            link,
            head: [0; FRAME_HEAD],
            head_got: 0,
            payload_len: None,
            payload_got: 0,
            payload: Vec::new(),
        }
    }

    fn ring_err(&self, e: ShmError) -> RemoteError {
        match e {
            ShmError::Eof { .. } => RemoteError::Truncated(self.link.clone()),
            source => RemoteError::Ring {
                link: self.link.clone(),
                source,
            },
        }
    }

    fn decode<T: Element>(&self, bytes: &[u8]) -> Result<Vec<T>, RemoteError> {
        codec::decode::<T>(bytes).map_err(|source| RemoteError::Codec {
            link: self.link.clone(),
            source,
        })
    }

    /// True between frames (nothing of the next one read yet).
    fn at_boundary(&self) -> bool {
        self.payload_len.is_none() && self.head_got == 0
    }

    /// Reads (more of) a frame head.
    fn read_head(&mut self, ring: &mut RingReader) -> Result<Head, RemoteError> {
        self.head_got += ring.try_read(&mut self.head[self.head_got..]);
        if self.head_got < FRAME_HEAD {
            return Ok(Head::Incomplete);
        }
        self.head_got = 0;
        let len = u32::from_le_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
        match self.head[0] {
            TAG_BATCH => {
                self.payload_len = Some(len as usize);
                self.payload_got = 0;
                self.payload.clear();
                Ok(Head::Batch)
            }
            TAG_END | TAG_END_CYCLE => Ok(Head::End(End {
                cycle: self.head[0] == TAG_END_CYCLE,
            })),
            t => Err(RemoteError::BadTag(self.link.clone(), t)),
        }
    }

    /// Reads the next frame if all of it is readable (or completes one begun earlier),
    /// without blocking.
    fn step<T: Element>(&mut self, ring: &mut RingReader) -> Result<Step<T>, RemoteError> {
        loop {
            let avail = ring.readable_now().map_err(|e| self.ring_err(e))?;
            if avail == 0 {
                return Ok(Step::Empty);
            }
            let Some(len) = self.payload_len else {
                match self.read_head(ring)? {
                    Head::Incomplete | Head::Batch => continue,
                    Head::End(e) => return Ok(Step::End(e)),
                }
            };
            if self.payload_got == 0 && avail >= len {
                // The whole payload is readable: decode it in place unless it wraps.
                let mut decoded = None;
                ring.read_available(len, |a, _| {
                    if a.len() == len {
                        decoded = Some(self.decode::<T>(a));
                        len
                    } else {
                        0
                    }
                });
                if let Some(batch) = decoded {
                    self.payload_len = None;
                    return batch.map(Step::Batch);
                }
            }
            let payload = &mut self.payload;
            self.payload_got += ring.read_available(len - self.payload_got, |a, b| {
                payload.extend_from_slice(a);
                payload.extend_from_slice(b);
                a.len() + b.len()
            });
            if self.payload_got == len {
                self.payload_len = None;
                return self.decode::<T>(&self.payload).map(Step::Batch);
            }
        }
    }

    /// Like [`FrameReader::step`], but drops payloads undecoded; `Some` at the end of stream.
    fn skip(&mut self, ring: &mut RingReader) -> Result<Option<End>, RemoteError> {
        loop {
            let avail = ring.readable_now().map_err(|e| self.ring_err(e))?;
            if avail == 0 {
                return Ok(None);
            }
            match self.payload_len {
                None => {
                    if let Head::End(e) = self.read_head(ring)? {
                        return Ok(Some(e));
                    }
                }
                Some(len) => {
                    self.payload_got +=
                        ring.read_available(len - self.payload_got, |a, b| a.len() + b.len());
                    if self.payload_got == len {
                        self.payload_len = None;
                    }
                }
            }
        }
    }
}

/// The reading end of a link into this process. Until its task has read the end of the
/// stream, dropping it (a graph that never ran, a stopped arbiter) hands the ring to a
/// thread that reads and discards the rest, so that the producer is never refused.
struct ReadSide {
    frames: FrameReader,
    ring: Option<RingReader>,
    done: Arc<Completion>,
    /// Checkpoints of this process (see [`crate::checkpoint`]).
    ctl: Option<Arc<crate::checkpoint::ReadControl>>,
    /// A restarted reader whose checkpoint had read the end already (`Some(cycle)`).
    ended: Option<bool>,
}

impl Drop for ReadSide {
    fn drop(&mut self) {
        let Some(mut ring) = self.ring.take() else {
            return;
        };
        // No checkpoint will commit what is read from here on.
        ring.set_retain(false);
        ring.release();
        let link = self.frames.link.clone();
        if self.ended.is_some() {
            // Nothing left to read: the end was read before the restart.
            self.done.finish(Ok(Ok(())));
            return;
        }
        let frames = std::mem::replace(&mut self.frames, FrameReader::new(link.clone()));
        let done = self.done.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ring-r:{link}"))
            .spawn({
                let done = done.clone();
                move || {
                    let r = crate::operator::catching(|| discard_rest(frames, ring));
                    done.finish(r);
                }
            });
        if let Err(source) = spawned {
            done.finish(Ok(Err(RemoteError::Doorbell { link, source })));
        }
    }
}

/// Reads frames until the end of the stream, blocking, and drops them.
fn discard_rest(mut frames: FrameReader, mut ring: RingReader) -> Result<(), RemoteError> {
    loop {
        if frames.skip(&mut ring)?.is_some() {
            return Ok(());
        }
        ring.wait_readable(None).map_err(|e| frames.ring_err(e))?;
    }
}

/// Reads `ring` into the consumers of `feed`: once the graph runs, a task on the arbiter
/// thread of the stream's (first) consumer decodes the frames and pushes the batches into
/// the consumers' links, sleeping on the ring's doorbell while there is nothing to read. The
/// relay ends with the end of the stream.
pub fn spawn_reader<T: Element>(
    link: String,
    ring: RingReader,
    feed: ExternalFeed<T>,
) -> io::Result<Relay> {
    spawn_reader_with(link, ring, feed, None, None)
}

/// [`spawn_reader`] for a worker that takes checkpoints (`ctl`: the ring retains what is read
/// until a checkpoint commits it), and that may have read the end already before it was
/// restarted (`ended`: `Some(cycle)`).
pub fn spawn_reader_with<T: Element>(
    link: String,
    mut ring: RingReader,
    feed: ExternalFeed<T>,
    ctl: Option<Arc<crate::checkpoint::ReadControl>>,
    ended: Option<bool>,
) -> io::Result<Relay> {
    ring.bind_doorbell().map_err(io::Error::from)?;
    if let Some(c) = &ctl {
        ring.set_retain(true);
        c.quiesce.add_reader(c.clone());
    }
    let done = Arc::new(Completion::default());
    let side = ReadSide {
        frames: FrameReader::new(link),
        ring: Some(ring),
        done: done.clone(),
        ctl,
        ended,
    };
    feed.set_driver(Box::new(move |links| Box::pin(read_task(side, links))));
    Ok(Relay(RelayKind::Task(done)))
}

/// Pushes `batch` to every link; what does not fit stays in `pending` (one slot per link).
fn distribute<T: Element>(links: &[Arc<Channel<T>>], pending: &mut [Vec<T>], batch: Vec<T>) {
    let n = links.len();
    let mut batch = Some(batch);
    for (i, (l, p)) in links.iter().zip(pending.iter_mut()).enumerate() {
        let b = if i + 1 == n {
            batch.take().unwrap_or_default()
        } else {
            batch.clone().unwrap_or_default()
        };
        if p.is_empty() {
            if let Some(rest) = l.push(b) {
                *p = rest;
            }
        } else {
            p.extend(b);
        }
    }
}

/// Pushes what is pending; true when nothing is left.
fn flush<T: Element>(links: &[Arc<Channel<T>>], pending: &mut [Vec<T>]) -> bool {
    let mut clear = true;
    for (l, p) in links.iter().zip(pending.iter_mut()) {
        if !p.is_empty() {
            if let Some(rest) = l.push(std::mem::take(p)) {
                *p = rest;
                clear = false;
            }
        }
    }
    clear
}

async fn read_task<T: Element>(mut side: ReadSide, links: Vec<Arc<Channel<T>>>) {
    if let Some(cycle) = side.ended {
        // Restarted after the end was read and checkpointed: the consumers had it already.
        for l in &links {
            l.close(crate::checkpoint::end_of(cycle));
        }
        if let (Some(c), Some(r)) = (&side.ctl, &side.ring) {
            c.ended(r.position(), cycle);
        }
        side.ring = None;
        side.done.finish(Ok(Ok(())));
        return;
    }
    let r = read_loop(&mut side, &links).await;
    if r.is_ok() {
        // The end of the stream was read: nothing is left for a draining thread.
        side.ring = None;
    }
    let done = side.done.clone();
    match r {
        Ok(()) => done.finish(Ok(Ok(()))),
        Err(e) => {
            // As a reader thread would: report, and leave the consumers' links as they are.
            side.ring = None;
            done.finish(Ok(Err(e)));
        }
    }
}

async fn read_loop<T: Element>(
    side: &mut ReadSide,
    links: &[Arc<Channel<T>>],
) -> Result<(), RemoteError> {
    let link = side.frames.link.clone();
    let doorbell_err = |source| RemoteError::Doorbell {
        link: link.clone(),
        source,
    };
    let register = |fd| {
        // SAFETY: `fd` is owned, and stays open (and the same) until the AsyncFd, which owns
        // it, is dropped.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| doorbell_err(e.into()))
    };
    let sock = side
        .ring
        .as_mut()
        .expect("reader not yet handed off")
        .bind_doorbell()
        .map_err(|e| doorbell_err(e.into()))?;
    // The socket, then the writer's eventfd once it sent one.
    let mut bells = vec![register(sock)?];
    let room = Arc::new(Notify::new());
    for l in links {
        let room = room.clone();
        l.set_producer_waker(Arc::new(move || room.notify_one()));
    }
    let mut pending: Vec<Vec<T>> = links.iter().map(|_| Vec::new()).collect();
    let mut frames_this_turn = 0;
    let mut rung = 0;
    let mut drain_now = false;
    // Frames were read since the task last waited (or yielded to the consumers).
    let mut read_since_wait = false;
    // Whether to spin before the next sleep (see `spin_for_data`).
    let mut spin_next = true;
    let mut ctl = side.ctl.clone();
    loop {
        if !flush(links, &mut pending) {
            // A consumer's link is full: stop reading (the ring fills, the producer waits)
            // until the consumer takes from it.
            room.notified().await;
            continue;
        }
        let ring = side.ring.as_mut().expect("reader not yet handed off");
        if ctl.as_ref().is_some_and(|c| c.quiesce.finished()) {
            // No more checkpoints in this process: read as any reader does.
            ring.set_retain(false);
            ring.release();
            ctl = None;
        }
        if let Some(c) = &ctl {
            c.busy();
            if side.frames.at_boundary() && c.quiesce.paused() {
                // A checkpoint is being taken: stay at this frame boundary until it is done.
                c.settle(ring.position());
                c.quiesce.wait_resume().await;
                continue;
            }
        }
        match side.frames.step::<T>(ring)? {
            Step::Batch(b) => {
                read_since_wait = true;
                if !b.is_empty() {
                    distribute(links, &mut pending, b);
                }
                if let Some(c) = &ctl {
                    if ring.retained() * 2 >= ring.capacity() as u64 {
                        c.quiesce.want();
                    }
                }
                frames_this_turn += 1;
                if frames_this_turn >= FRAMES_PER_TURN {
                    frames_this_turn = 0;
                    tokio::task::yield_now().await;
                }
            }
            Step::End(end) => {
                // Everything before the end must be in the links before they close.
                while !flush(links, &mut pending) {
                    room.notified().await;
                }
                for l in links {
                    l.close(end);
                }
                if let Some(c) = &ctl {
                    c.ended(ring.position(), end.cycle);
                }
                return Ok(());
            }
            Step::Empty => {
                frames_this_turn = 0;
                if let Some(c) = &ctl {
                    c.sleeping_at(ring.position());
                    if c.quiesce.finished() {
                        continue;
                    }
                    // Where the reader is now, after the step: it may have read into a frame
                    // that it could not finish (one larger than what the ring holds).
                    if side.frames.at_boundary() && pending.iter().all(Vec::is_empty) {
                        c.settle(ring.position());
                    } else if ring.retained() * 2 >= ring.capacity() as u64 {
                        // Inside a frame too large to retain: let the writer go on (a restart
                        // of this process then replays the pipeline instead).
                        ring.release();
                    }
                }
                if drain_now || rung >= DRAIN_EVERY {
                    if let Some(ev) = ring.drain_doorbell() {
                        bells.push(register(ev)?);
                    }
                    rung = 0;
                }
                if spin_next {
                    if read_since_wait {
                        // The consumers take what was read before this task spins: it runs
                        // inside the first consumer's actor, which handles its links once the
                        // task yields.
                        read_since_wait = false;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    if spin_for_data(ring) {
                        continue;
                    }
                }
                if !ring.arm_doorbell() {
                    continue;
                }
                // A timer of this wait's own: one kept across waits would go off in the middle
                // of a short wait, while the writer's wake-up is on its way, and report it lost.
                let mut recheck = std::pin::pin!(tokio::time::sleep(DOORBELL_RECHECK));
                let slept = std::time::Instant::now();
                let which = std::future::poll_fn(|cx| {
                    for (i, bell) in bells.iter().enumerate() {
                        if let Poll::Ready(r) = bell.poll_read_ready(cx) {
                            // Every ring is an edge of its own (an eventfd write, a
                            // datagram), so what it queued need not be read before the
                            // next wait.
                            r?.clear_ready();
                            return Poll::Ready(Ok(Some(i)));
                        }
                    }
                    if std::future::Future::poll(recheck.as_mut(), cx).is_ready() {
                        return Poll::Ready(Ok(None));
                    }
                    Poll::Pending
                })
                .await
                .map_err(doorbell_err)?;
                // Spinning pays only while the producer is in full flow: when the last sleep
                // was short.
                spin_next = slept.elapsed() < SPIN_WORTH;
                read_since_wait = false;
                rung += 1;
                match which {
                    // A datagram may carry the writer's eventfd: take it before the next wait.
                    Some(i) => drain_now = i == 0,
                    None => {
                        if !matches!(ring.readable_now(), Ok(0)) {
                            tracing::debug!(link = %link, "ring readable without a wake-up: reading on");
                        }
                        // Whatever the socket holds (an eventfd the writer sent) is taken.
                        drain_now = true;
                    }
                }
            }
        }
    }
}

/// Spins a little on an empty ring before its reader sleeps: a producer in full flow writes
/// its next frame within microseconds, and then neither side pays for a wake-up (the
/// producer's eventfd write, the reader's sleep and wake). True once there is something to read
/// (or the end).
fn spin_for_data(ring: &mut RingReader) -> bool {
    for _ in 0..READ_SPINS {
        if !matches!(ring.readable_now(), Ok(0)) {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::local::LinkConfig;
    use crate::shm::Ring;
    use crate::Graph;
    use std::time::Duration;

    fn cfg(capacity: usize) -> LinkConfig {
        LinkConfig::with_capacity(capacity)
    }

    /// Reads frames with blocking calls, as a plain thread would.
    fn read_all(mut ring: RingReader) -> (Vec<u64>, End) {
        let mut frames = FrameReader::new("t".into());
        let mut got = vec![];
        loop {
            match frames.step::<u64>(&mut ring).unwrap() {
                Step::Batch(b) => got.extend(b),
                Step::End(e) => return (got, e),
                Step::Empty => {
                    ring.wait_readable(None).unwrap();
                }
            }
        }
    }

    /// Batches of 1..=300 elements, in order.
    fn batches() -> Vec<Vec<u64>> {
        let mut next = 0u64;
        (0..400)
            .map(|i| {
                let n = 1 + (i * 37) % 300;
                let b: Vec<u64> = (next..next + n).collect();
                next += n;
                b
            })
            .collect()
    }

    #[test]
    fn the_producer_writes_directly_and_the_backlog_keeps_the_order() {
        // A ring smaller than most frames: direct writes, stashes and the writer thread mix.
        let (w, r) = Ring::create(512).unwrap();
        let chan = Channel::new(cfg(64));
        let relay = spawn_writer("t".into(), chan.clone(), w).unwrap();
        let reader = std::thread::spawn(move || read_all(r));
        let mut want = vec![];
        for b in batches() {
            want.extend(b.iter().copied());
            let mut b = b;
            assert!(chan.push_blocking(&mut b, None));
        }
        chan.close(End { cycle: true });
        let (got, end) = reader.join().unwrap();
        relay.join().unwrap().unwrap();
        assert_eq!(got, want);
        assert!(
            end.cycle,
            "an end because the cycle went quiet crosses as such"
        );
    }

    #[test]
    fn an_idle_link_is_written_by_the_producer_alone() {
        let (w, r) = Ring::create(1 << 16).unwrap();
        let chan = Channel::new(cfg(64));
        let relay = spawn_writer("t".into(), chan.clone(), w).unwrap();
        let mut r = r;
        // Let the writer thread finish the pass it makes when it starts (it holds the ring
        // meanwhile, and a push then queues).
        std::thread::sleep(Duration::from_millis(200));
        for i in 0..10u64 {
            // Straight into the ring: nothing waits in the link for the writer thread.
            assert_eq!(chan.push(vec![i, i + 1]), None);
            assert!(chan.queue_is_empty());
            assert!(r.readable_now().unwrap() > 0);
        }
        chan.close(End::default());
        let (got, end) = read_all(r);
        relay.join().unwrap().unwrap();
        assert_eq!(got, (0..10).flat_map(|i| [i, i + 1]).collect::<Vec<_>>());
        assert!(!end.cycle);
    }

    #[test]
    fn a_reader_that_went_away_fails_the_writer_without_blocking_the_producer() {
        let (w, r) = Ring::create(256).unwrap();
        drop(r);
        let chan = Channel::new(cfg(8));
        let relay = spawn_writer("t".into(), chan.clone(), w).unwrap();
        for i in 0..100u64 {
            // Never blocks: what cannot be delivered is dropped (and counted).
            let mut b = vec![i; 5];
            assert!(chan.push_blocking(
                &mut b,
                Some(std::time::Instant::now() + Duration::from_secs(5))
            ));
        }
        let err = relay.join().unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                RemoteError::Ring {
                    source: ShmError::PeerClosed { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(chan.consumer_gone());
    }

    #[test]
    fn the_reading_task_feeds_small_links_in_order() {
        let (w, r) = Ring::create(1024).unwrap();
        let wchan = Channel::new(cfg(64));
        let wrelay = spawn_writer("t".into(), wchan.clone(), w).unwrap();
        let mut g = Graph::new();
        let (feed, s) = g.external_input::<u64>("t");
        // Links much smaller than the batches: the task must wait for the consumers.
        g.set_link(&s, cfg(7));
        let a = g.collect(&s);
        let b = g.collect(&s);
        let rrelay = spawn_reader("t".into(), r, feed).unwrap();
        let want: Vec<u64> = batches().into_iter().flatten().collect();
        let producer = std::thread::spawn(move || {
            for mut b in batches() {
                assert!(wchan.push_blocking(&mut b, None));
            }
            wchan.close(End::default());
        });
        g.run().unwrap();
        producer.join().unwrap();
        wrelay.join().unwrap().unwrap();
        rrelay.join().unwrap().unwrap();
        assert_eq!(a.take(), want);
        assert_eq!(b.take(), want);
    }

    #[test]
    fn a_reader_spins_until_there_is_something_to_read_or_the_end() {
        let (mut w, mut r) = Ring::create(64).unwrap();
        assert!(!spin_for_data(&mut r), "an empty, open ring");
        w.write_all(&[1]).unwrap();
        assert!(spin_for_data(&mut r), "a byte to read");
        let (w2, mut r2) = Ring::create(64).unwrap();
        drop(w2);
        assert!(spin_for_data(&mut r2), "the end");
    }

    #[test]
    fn a_reading_task_whose_wake_ups_are_lost_still_reads_everything() {
        let (w, r) = Ring::create(1024).unwrap();
        let mut g = Graph::new();
        let (feed, s) = g.external_input::<u64>("t");
        let got = g.collect(&s);
        let rrelay = spawn_reader("t".into(), r, feed).unwrap();
        // The reader's doorbell is bound: no wake-up will reach it from now on.
        w.forget_reader_bell();
        let wchan = Channel::new(cfg(64));
        let wrelay = spawn_writer("t".into(), wchan.clone(), w).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            g.run().unwrap();
            let _ = tx.send(got.take());
        });
        // Once the reader sleeps on its doorbell.
        std::thread::sleep(Duration::from_millis(50));
        let mut b: Vec<u64> = (0..100).collect();
        assert!(wchan.push_blocking(&mut b, None));
        wchan.close(End::default());
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the reader never read what the ring held");
        wrelay.join().unwrap().unwrap();
        rrelay.join().unwrap().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<u64>>());
    }

    #[test]
    fn a_graph_that_never_runs_still_lets_the_producer_finish() {
        let (w, r) = Ring::create(256).unwrap();
        let wchan = Channel::new(cfg(64));
        let wrelay = spawn_writer("t".into(), wchan.clone(), w).unwrap();
        let mut g = Graph::new();
        let (feed, s) = g.external_input::<u64>("t");
        let _out = g.collect(&s);
        let rrelay = spawn_reader("t".into(), r, feed).unwrap();
        drop(g);
        for mut b in batches() {
            assert!(wchan.push_blocking(&mut b, None));
        }
        wchan.close(End::default());
        wrelay.join().unwrap().unwrap();
        rrelay.join().unwrap().unwrap();
    }

    #[test]
    fn a_producer_that_vanishes_truncates_the_stream() {
        let (mut w, r) = Ring::create(256).unwrap();
        let mut g = Graph::new();
        let (feed, s) = g.external_input::<u64>("t");
        let _out = g.collect(&s);
        let rrelay = spawn_reader("t".into(), r, feed).unwrap();
        let mut frame = vec![];
        encode_frame(&[1u64, 2, 3], &mut frame).unwrap();
        w.write_all(&frame).unwrap();
        drop(w);
        // The consumers never see an end: stop the run once the relay has failed.
        let stop = g.stop_handle();
        let watcher = std::thread::spawn(move || {
            let err = rrelay.join().unwrap().unwrap_err();
            stop.kill();
            err
        });
        let _ = g.run();
        let err = watcher.join().unwrap();
        assert!(matches!(err, RemoteError::Truncated(_)), "{err}");
    }
}

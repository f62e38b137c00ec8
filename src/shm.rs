//! Shared-memory single-producer/single-consumer byte ring between two OS processes (or threads).
//!
//! # Layout
//!
//! A [`ShmRegion`] (a `memfd` mapped `MAP_SHARED`) holds a [`HEADER_SIZE`]-byte header
//! followed by a power-of-two byte buffer. The header keeps each frequently written word on
//! its own 128-byte line: `head` (bytes ever written, written only by the writer), `tail`
//! (bytes ever read, written only by the reader), the two futex words with their "waiting"
//! flags, and a control line with the magic, capacity, role claims and close flags.
//!
//! # Protocol
//!
//! * The writer copies bytes into `[head, tail + capacity)` and then publishes with
//!   `head.store(Release)`; the reader loads `head` with `Acquire` before reading the bytes,
//!   and publishes the freed space with `tail.store(Release)`, which the writer loads with
//!   `Acquire` before overwriting. Positions are `u64` byte counts that never wrap.
//! * A side that has to wait spins a bounded number of times, then sleeps on a futex word
//!   (shared, not private: the peers can be different processes): it loads the sequence
//!   word, sets its `waiting` flag, issues a `SeqCst` fence, re-checks the condition, and
//!   only then calls `FUTEX_WAIT(seq)`.
//! * The notifier publishes its position, issues a `SeqCst` fence and reads the peer's
//!   `waiting` flag; only if it is set does it clear it, bump the sequence word and call
//!   `FUTEX_WAKE`. The two fences make it impossible for both sides to miss each other
//!   (Dekker), and a bump after the waiter read the sequence makes `FUTEX_WAIT` return at
//!   once, so no wake-up is lost.
//! * Closing sets a close flag (`Release`), bumps the peer's sequence word and always wakes.
//!   A reader sees end-of-stream only once the ring is empty *and* the writer closed, so
//!   every byte written before the close is delivered. A writer whose reader closed gets
//!   [`ShmError::PeerClosed`].
//! * A reader that runs inside an event loop (an actix arbiter) cannot sleep on a futex: it
//!   waits for descriptors of its own to become readable instead ([`RingReader::bind_doorbell`]),
//!   and its `waiting` flag says [`WAIT_FD`] rather than [`WAIT_FUTEX`]. The reader binds an
//!   abstract-namespace Unix datagram socket and publishes its id in the header. The first
//!   time the writer has to ring it, it makes an eventfd and sends it to that socket
//!   (`SCM_RIGHTS`): the datagram wakes the reader, which then waits on the eventfd as well;
//!   later rings are eventfd writes. (A socket or pipe write wakes its reader "synchronously":
//!   the kernel then queues the reader behind the writer on the writer's CPU, which costs
//!   what the writer still does before it sleeps; an eventfd write does not.) Where the fd
//!   cannot be sent, the writer sends plain datagrams. The Dekker argument above is
//!   unchanged: only the way of sleeping differs.
//! * A write that woke a sleeping reader then gives up the CPU (`sched_yield`, see
//!   [`RingWriter::set_yield_after_wake`]): where the other CPUs look busy, or asleep as a
//!   VM's idle vCPUs do, the kernel queues the woken reader on the writer's CPU whatever the
//!   doorbell, and it would run only once the writer's turn ended.
//! * A side that takes over the ring from a dead peer ([`Ring::writer_resume`],
//!   [`Ring::reader_resume`]) wakes the other side unconditionally: the dead one may have
//!   cleared the `waiting` flag and died before it woke anyone, and the flag stays down.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// Bytes reserved at the start of a ring region for the [`Ring`] header.
pub const HEADER_SIZE: usize = 1024;
/// Smallest ring buffer capacity in bytes.
pub const MIN_CAPACITY: usize = 8;
/// Largest ring buffer capacity in bytes (1 GiB).
pub const MAX_CAPACITY: usize = 1 << 30;
/// Default number of busy-wait iterations before a blocked side sleeps on the futex.
pub const DEFAULT_SPIN_LIMIT: u32 = 256;

const MAGIC: u64 = 0x7472_6962_7269_6e67; // "tribring"
const VERSION: u64 = 4;

/// `waiting` flag of a doorbell: the peer sleeps on the futex word.
pub const WAIT_FUTEX: u32 = 1;
/// `waiting` flag of a doorbell: the peer sleeps on its doorbell descriptors (see
/// [`RingReader::bind_doorbell`]).
pub const WAIT_FD: u32 = 2;

/// Errors of shared-memory regions and rings.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// An operating-system call failed.
    #[error("shared memory: {op} failed ({detail}): {source}")]
    Os {
        /// The failing call.
        op: &'static str,
        /// What it was doing (name, size, fd).
        detail: String,
        /// The OS error.
        #[source]
        source: Errno,
    },
    /// The requested ring capacity is 0 or too large.
    #[error("shared memory: invalid ring capacity {requested} (must be {MIN_CAPACITY}..={MAX_CAPACITY} bytes)")]
    InvalidCapacity {
        /// The capacity asked for.
        requested: usize,
    },
    /// A region does not hold a valid ring (wrong magic, version or size).
    #[error("shared memory: not a valid ring region: {reason}")]
    InvalidRegion {
        /// Why the region was rejected.
        reason: String,
    },
    /// Another writer (or reader) already attached to this ring.
    #[error("shared memory: the {role} side of this ring is already attached")]
    RoleTaken {
        /// "writer" or "reader".
        role: &'static str,
    },
    /// The deadline passed before the operation completed.
    #[error("shared memory ring: timed out after transferring {done} bytes")]
    Timeout {
        /// Bytes already written or read by this call (resume with the rest).
        done: usize,
    },
    /// The reader closed the ring; the writer can no longer deliver data.
    #[error("shared memory ring: reader closed after {done} bytes of this write")]
    PeerClosed {
        /// Bytes of this call written before the close was seen.
        done: usize,
    },
    /// The writer closed the ring and every byte has been read.
    #[error("shared memory ring: end of stream after {done} bytes of this read")]
    Eof {
        /// Bytes of this call read before end of stream (0: a clean end at a boundary).
        done: usize,
    },
}

impl ShmError {
    fn os(op: &'static str, detail: impl Into<String>, source: Errno) -> Self {
        ShmError::Os {
            op,
            detail: detail.into(),
            source,
        }
    }

    fn with_done(self, done: usize) -> Self {
        match self {
            ShmError::Timeout { .. } => ShmError::Timeout { done },
            ShmError::PeerClosed { .. } => ShmError::PeerClosed { done },
            ShmError::Eof { .. } => ShmError::Eof { done },
            other => other,
        }
    }
}

impl From<ShmError> for io::Error {
    fn from(e: ShmError) -> Self {
        let kind = match &e {
            ShmError::Timeout { .. } => io::ErrorKind::TimedOut,
            ShmError::PeerClosed { .. } => io::ErrorKind::BrokenPipe,
            ShmError::Eof { .. } => io::ErrorKind::UnexpectedEof,
            ShmError::InvalidCapacity { .. } | ShmError::InvalidRegion { .. } => {
                io::ErrorKind::InvalidInput
            }
            ShmError::RoleTaken { .. } => io::ErrorKind::AlreadyExists,
            ShmError::Os { source, .. } => return io::Error::from_raw_os_error(*source as i32),
        };
        io::Error::new(kind, e)
    }
}

/// A `memfd`-backed shared memory mapping (`MAP_SHARED`, read/write), unmapped on drop.
#[derive(Debug)]
pub struct ShmRegion {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the region is a plain shared mapping plus an owned fd; the struct itself holds no
// thread-affine state, and all concurrent access to the mapped bytes goes through raw pointers
// whose synchronisation is the user's (here: the ring's atomics) responsibility.
unsafe impl Send for ShmRegion {}
// SAFETY: see `Send`; `&ShmRegion` only exposes the pointer, the length and the fd.
unsafe impl Sync for ShmRegion {}

impl ShmRegion {
    /// Creates a zero-filled shared region of `len` bytes backed by `memfd_create(name)`.
    pub fn create(name: &str, len: usize) -> Result<Self, ShmError> {
        if len == 0 {
            return Err(ShmError::InvalidRegion {
                reason: format!("region {name:?}: length must be > 0"),
            });
        }
        let cname = CString::new(name).map_err(|_| ShmError::InvalidRegion {
            reason: format!("region name {name:?} contains a NUL byte"),
        })?;
        let fd = memfd_create(&cname, MemFdCreateFlag::MFD_CLOEXEC)
            .map_err(|e| ShmError::os("memfd_create", format!("name {name:?}"), e))?;
        let off_len = libc::off_t::try_from(len).map_err(|_| ShmError::InvalidRegion {
            reason: format!("region {name:?}: length {len} too large"),
        })?;
        nix::unistd::ftruncate(&fd, off_len)
            .map_err(|e| ShmError::os("ftruncate", format!("name {name:?}, len {len}"), e))?;
        Self::map(fd, len)
    }

    /// Maps an inherited or received memfd (or any shareable file); the size comes from `fstat`.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, ShmError> {
        let raw = fd.as_raw_fd();
        let st = nix::sys::stat::fstat(raw)
            .map_err(|e| ShmError::os("fstat", format!("fd {raw}"), e))?;
        let len = usize::try_from(st.st_size).unwrap_or(0);
        if len == 0 {
            return Err(ShmError::InvalidRegion {
                reason: format!("fd {raw} has size {}", st.st_size),
            });
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Self, ShmError> {
        let nz = std::num::NonZeroUsize::new(len).ok_or_else(|| ShmError::InvalidRegion {
            reason: "length must be > 0".into(),
        })?;
        // SAFETY: we map a fresh address chosen by the kernel (no `addr` hint, no MAP_FIXED), so
        // no existing Rust object is aliased; the fd is valid for the duration of the call.
        let ptr = unsafe {
            mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| ShmError::os("mmap", format!("fd {}, len {len}", fd.as_raw_fd()), e))?;
        Ok(ShmRegion {
            ptr: ptr.cast(),
            len,
            fd,
        })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region is never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The backing memfd (close-on-exec), e.g. to send it over a Unix socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A `dup` of the memfd without `FD_CLOEXEC`, so a child started with `Command` inherits it
    /// under the same number (`as_raw_fd()`). Drop it in the parent once the child is spawned.
    /// In a multi-threaded parent prefer [`ShmRegion::pass_to_child`], which does not leak the
    /// fd into children spawned concurrently by other threads.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, ShmError> {
        let raw = self.fd.as_raw_fd();
        let dup = nix::unistd::dup(raw).map_err(|e| ShmError::os("dup", format!("fd {raw}"), e))?;
        // SAFETY: `dup` just returned this fd and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        fcntl(dup, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| ShmError::os("fcntl(F_SETFD)", format!("fd {dup}"), e))?;
        Ok(owned)
    }

    /// Arranges for the child of `cmd` to find this region's memfd at fd number `child_fd`
    /// (`dup2` in the child between fork and exec). The region must outlive `cmd.spawn()`.
    pub fn pass_to_child(&self, cmd: &mut Command, child_fd: RawFd) {
        let src = self.fd.as_raw_fd();
        // SAFETY: the closure only calls `dup2`/`fcntl`, which are async-signal-safe, and
        // allocates nothing, as required between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if src == child_fd {
                    // dup2 would be a no-op and keep FD_CLOEXEC: clear it instead.
                    if libc::fcntl(src, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(src, child_fd) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `map`, and every `RingWriter` /
        // `RingReader` keeps the region alive through an `Arc`, so nothing refers to it any more.
        if let Err(e) = unsafe { munmap(self.ptr.cast(), self.len) } {
            tracing::warn!(error = %e, len = self.len, "munmap of shared memory region failed");
        }
    }
}

/// A 128-byte aligned cell, so that two hot words never share a cache line (nor a prefetch pair).
#[repr(C, align(128))]
struct Padded<T>(T);

/// The shared ring header, at offset 0 of the region.
#[repr(C)]
struct Header {
    control: Padded<Control>,
    /// Bytes ever written (writer-owned).
    head: Padded<AtomicU64>,
    /// Bytes ever read (reader-owned).
    tail: Padded<AtomicU64>,
    /// Reader's futex: sequence bumped by the writer to wake the reader, and its waiting flag.
    data: Padded<Doorbell>,
    /// Writer's futex: sequence bumped by the reader to wake the writer, and its waiting flag.
    space: Padded<Doorbell>,
    /// Id of the reader's doorbell socket (0: none), see [`RingReader::bind_doorbell`].
    bell: Padded<AtomicU64>,
    /// Where the last complete frame ends and the elements in complete frames, plus the same
    /// for the frame being written (writer-owned; see [`RingWriter::try_write_frame`]): what a
    /// restarted writer resumes from.
    frames: Padded<Frames>,
}

/// The writer's frame record. A frame is announced (`next_*`) before its first byte is
/// published and settled (`end`, `elems`) after its last: publishing `head` is the one commit
/// point, so a writer killed anywhere leaves a record that [`Frames::settled`] reads right.
#[repr(C)]
struct Frames {
    /// Where the last settled frame ends.
    end: AtomicU64,
    /// Elements in settled frames.
    elems: AtomicU64,
    /// Where the announced frame ends.
    next_end: AtomicU64,
    /// Elements in complete frames once the announced one is complete.
    next_elems: AtomicU64,
}

impl Frames {
    /// Where the last complete frame ends and the elements up to it, given the published
    /// `head`: the announced frame counts once `head` reached its end (its writer may have
    /// died before settling it).
    fn settled(&self, head: u64) -> (u64, u64) {
        if self.next_end.load(Ordering::Acquire) == head {
            (head, self.next_elems.load(Ordering::Acquire))
        } else {
            (
                self.end.load(Ordering::Acquire),
                self.elems.load(Ordering::Acquire),
            )
        }
    }

    /// Makes `(end, elems)` the settled record, with nothing announced beyond it.
    fn settle(&self, end: u64, elems: u64) {
        self.end.store(end, Ordering::Release);
        self.elems.store(elems, Ordering::Release);
    }
}

#[repr(C)]
struct Control {
    magic: AtomicU64,
    version: AtomicU64,
    capacity: AtomicU64,
    writer_claimed: AtomicU32,
    reader_claimed: AtomicU32,
    writer_closed: AtomicU32,
    reader_closed: AtomicU32,
}

#[repr(C)]
struct Doorbell {
    seq: AtomicU32,
    waiting: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);

impl Doorbell {
    /// Notifier side: call after publishing a position (the fence pairs with the waiter's).
    /// Returns how the peer was waiting (0: it was not), so that a [`WAIT_FD`] waiter can be
    /// rung.
    fn ring(&self) -> u32 {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let how = self.waiting.swap(0, Ordering::Relaxed);
        if how == WAIT_FUTEX {
            self.seq.fetch_add(1, Ordering::Release);
            futex_wake(&self.seq);
        }
        how
    }

    /// Unconditional wake (used by close); as [`Doorbell::ring`], returns how the peer waited.
    fn ring_always(&self) -> u32 {
        fence(Ordering::SeqCst);
        let how = self.waiting.swap(0, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
        futex_wake(&self.seq);
        how
    }

    /// Waiter side: sleeps until woken, `ready()` holds, or `deadline` passes.
    /// Returns `Ok(false)` on timeout, `Ok(true)` when it is worth re-checking.
    fn wait(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> Result<bool, ShmError> {
        let seq = self.seq.load(Ordering::Acquire);
        self.waiting.store(WAIT_FUTEX, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if ready() {
            self.waiting.store(0, Ordering::Relaxed);
            return Ok(true);
        }
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    self.waiting.store(0, Ordering::Relaxed);
                    return Ok(false);
                }
                Some(d - now)
            }
        };
        let r = futex_wait(&self.seq, seq, timeout);
        self.waiting.store(0, Ordering::Relaxed);
        r.map(|()| true)
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<(), ShmError> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 in a live mapping (shared futex: no PRIVATE flag,
    // since the peer may be another process); `ts_ptr` is null or points to a live timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 {
        match Errno::last() {
            Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT => Ok(()),
            e => Err(ShmError::os("futex(FUTEX_WAIT)", "ring doorbell", e)),
        }
    } else {
        Ok(())
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32 in a live mapping; FUTEX_WAKE does not dereference
    // any other argument.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
    if r == -1 {
        // Only EFAULT/EINVAL are possible, i.e. a bug; the waiter's timeout still bounds it.
        tracing::error!(errno = %Errno::last(), "futex(FUTEX_WAKE) failed");
    }
}

/// The abstract-namespace name of the doorbell socket with id `id`.
fn doorbell_name(id: u64) -> String {
    format!("tributary-ring/{id:016x}")
}

fn doorbell_addr(id: u64) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(doorbell_name(id))
}

/// Binds a fresh doorbell socket (non-blocking) under an id unique among live processes.
fn bind_doorbell_socket() -> Result<(u64, UnixDatagram), ShmError> {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let pid = u64::from(std::process::id());
    let mut last = Errno::EADDRINUSE;
    for _ in 0..64 {
        let id = (pid << 32) | u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let addr = doorbell_addr(id)
            .map_err(|e| ShmError::os("doorbell address", format!("id {id:x}"), errno_of(&e)))?;
        match UnixDatagram::bind_addr(&addr) {
            Ok(sock) => {
                sock.set_nonblocking(true).map_err(|e| {
                    ShmError::os("fcntl(O_NONBLOCK)", "doorbell socket", errno_of(&e))
                })?;
                return Ok((id, sock));
            }
            // Another program's socket under the same name: take the next id.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Errno::EADDRINUSE,
            Err(e) => return Err(ShmError::os("bind", "doorbell socket", errno_of(&e))),
        }
    }
    Err(ShmError::os("bind", "doorbell socket (no free id)", last))
}

fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The writer's means of ringing a reader's doorbell, made on first use.
#[derive(Default)]
struct DoorbellSender {
    /// The id the socket address was made for, the address, and an unbound socket to send from.
    target: Option<(u64, UnixAddr, UnixDatagram)>,
    /// The eventfd handed to the reader, once it was sent.
    event: Option<OwnedFd>,
}

impl DoorbellSender {
    /// Wakes a reader that waits on its doorbell ([`WAIT_FD`]) whose socket has id `id`.
    /// Best effort: a full socket queue already holds a wake-up, and a vanished reader needs
    /// none.
    fn ring(&mut self, id: u64) {
        if id == 0 {
            return;
        }
        if matches!(&self.target, Some(t) if t.0 != id) {
            // A new reader (restarted after a crash): hand it an eventfd of its own.
            self.target = None;
            self.event = None;
        }
        if let Some(ev) = &self.event {
            match nix::unistd::write(ev, &1u64.to_ne_bytes()) {
                Ok(_) | Err(Errno::EAGAIN) => return,
                Err(e) => tracing::debug!(error = %e, "ring doorbell: eventfd write failed"),
            }
        }
        if !matches!(&self.target, Some(t) if t.0 == id) {
            let made = UnixAddr::new_abstract(doorbell_name(id).as_bytes())
                .map_err(io::Error::from)
                .and_then(|addr| {
                    let sock = UnixDatagram::unbound()?;
                    sock.set_nonblocking(true)?;
                    Ok((id, addr, sock))
                });
            match made {
                Ok(t) => self.target = Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "cannot make the ring's doorbell sender");
                    return;
                }
            }
        }
        let Some((_, addr, sock)) = &self.target else {
            return;
        };
        // The first time (and until it got through), hand the reader an eventfd with the
        // datagram that wakes it.
        let event = if self.event.is_none() {
            new_eventfd()
        } else {
            None
        };
        let fds: Vec<RawFd> = event.iter().map(|e| e.as_raw_fd()).collect();
        let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
            vec![]
        } else {
            vec![ControlMessage::ScmRights(&fds)]
        };
        let sent = sendmsg(
            sock.as_raw_fd(),
            &[io::IoSlice::new(&[1])],
            &cmsgs,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            Some(addr),
        );
        match sent {
            Ok(_) => {
                if event.is_some() {
                    self.event = event;
                }
            }
            Err(Errno::EAGAIN) => {}
            Err(e) => tracing::debug!(error = %e, "ring doorbell datagram not delivered"),
        }
    }
}

/// A non-blocking eventfd, or None (logged) if none can be had.
fn new_eventfd() -> Option<OwnedFd> {
    // SAFETY: plain system call without pointers.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        tracing::debug!(errno = %Errno::last(), "ring doorbell: no eventfd, datagrams only");
        return None;
    }
    // SAFETY: `eventfd` just returned this descriptor and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The descriptors a reader in an event loop waits on.
struct ReaderBell {
    sock: UnixDatagram,
    /// The eventfd the writer sent, once it came.
    event: Option<OwnedFd>,
}

impl ReaderBell {
    /// Reads what is queued on the socket and the eventfd (without blocking), so that neither
    /// is readable until the next ring. Returns a duplicate of an eventfd the writer just sent.
    fn drain(&mut self) -> Option<OwnedFd> {
        let mut fresh = None;
        loop {
            let mut byte = [0u8; 8];
            let mut iov = [io::IoSliceMut::new(&mut byte)];
            let mut space = nix::cmsg_space!([RawFd; 4], libc::ucred);
            let Ok(msg) = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) else {
                break;
            };
            let Ok(cmsgs) = msg.cmsgs() else {
                continue;
            };
            let mut sender_uid = None;
            let mut received = vec![];
            for c in cmsgs {
                match c {
                    ControlMessageOwned::ScmCredentials(cred) => sender_uid = Some(cred.uid()),
                    ControlMessageOwned::ScmRights(fds) => {
                        // SAFETY: the kernel just installed these descriptors for us.
                        received.extend(
                            fds.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                    _ => {}
                }
            }
            // Only a process of our own user may hand us the eventfd (anyone who can reach an
            // abstract socket can send to it); the others' descriptors are closed.
            // SAFETY: getuid cannot fail and takes no pointers.
            let ours = sender_uid == Some(unsafe { libc::getuid() });
            // A second one comes from a writer restarted after a crash: it rings that one now.
            if let (true, Some(fd)) = (ours, received.into_iter().next()) {
                fresh = fd.try_clone().ok();
                self.event = Some(fd);
            }
        }
        if let Some(ev) = &self.event {
            let mut b = [0u8; 8];
            let _ = nix::unistd::read(ev.as_raw_fd(), &mut b);
        }
        fresh
    }
}

/// Common view of a ring region used by both sides.
struct Shared {
    region: Arc<ShmRegion>,
    buf: *mut u8,
    capacity: u64,
    mask: u64,
}

impl Shared {
    fn new(region: Arc<ShmRegion>) -> Result<Self, ShmError> {
        let region_len = region.len();
        if region_len < HEADER_SIZE + MIN_CAPACITY {
            return Err(ShmError::InvalidRegion {
                reason: format!("region of {region_len} bytes is too small"),
            });
        }
        let shared = Shared {
            buf: region.as_ptr().wrapping_add(HEADER_SIZE),
            capacity: 0,
            mask: 0,
            region,
        };
        let c = &shared.header().control.0;
        let magic = c.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(ShmError::InvalidRegion {
                reason: format!("bad magic {magic:#x}"),
            });
        }
        let version = c.version.load(Ordering::Relaxed);
        if version != VERSION {
            return Err(ShmError::InvalidRegion {
                reason: format!("ring version {version}, expected {VERSION}"),
            });
        }
        let capacity = c.capacity.load(Ordering::Relaxed);
        let fits = usize::try_from(capacity)
            .ok()
            .and_then(|cap| cap.checked_add(HEADER_SIZE))
            .is_some_and(|need| need <= region_len);
        if !capacity.is_power_of_two() || (capacity as usize) < MIN_CAPACITY || !fits {
            return Err(ShmError::InvalidRegion {
                reason: format!("capacity {capacity} invalid for a region of {region_len} bytes"),
            });
        }
        Ok(Shared {
            capacity,
            mask: capacity - 1,
            ..shared
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the region is page-aligned, at least HEADER_SIZE >= size_of::<Header>() bytes
        // long, lives as long as `self`, and the header consists only of atomics, which may be
        // shared and mutated concurrently (also by another process).
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    fn claim(&self, role: &'static str, takeover: bool) -> Result<(), ShmError> {
        let c = &self.header().control.0;
        let flag = if role == "writer" {
            &c.writer_claimed
        } else {
            &c.reader_claimed
        };
        if takeover {
            flag.store(1, Ordering::Release);
            return Ok(());
        }
        flag.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .map(drop)
            .map_err(|_| ShmError::RoleTaken { role })
    }
}

/// Constructors of a shared-memory SPSC byte ring.
pub struct Ring;

impl Ring {
    /// Creates a ring region with room for `capacity` bytes (rounded up to a power of two).
    pub fn create_region(capacity: usize) -> Result<ShmRegion, ShmError> {
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return Err(ShmError::InvalidCapacity {
                requested: capacity,
            });
        }
        let cap = capacity.next_power_of_two().max(MIN_CAPACITY);
        let region = ShmRegion::create("tributary-ring", HEADER_SIZE + cap)?;
        // SAFETY: the fresh region is zero-filled and large enough for the header; see
        // `Shared::header` for why a shared reference to the atomics is sound.
        let header = unsafe { &*(region.as_ptr() as *const Header) };
        let c = &header.control.0;
        c.version.store(VERSION, Ordering::Relaxed);
        c.capacity.store(cap as u64, Ordering::Relaxed);
        c.magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Creates a ring and both of its ends in this process (threads, tests).
    pub fn create(capacity: usize) -> Result<(RingWriter, RingReader), ShmError> {
        let region = Arc::new(Self::create_region(capacity)?);
        Ok((
            Self::writer_from_shared(Arc::clone(&region))?,
            Self::reader_from_shared(region)?,
        ))
    }

    /// Attaches the writing end to a ring region (e.g. one mapped with [`ShmRegion::from_fd`]).
    pub fn writer_from_region(region: ShmRegion) -> Result<RingWriter, ShmError> {
        Self::writer_from_shared(Arc::new(region))
    }

    /// Attaches the reading end to a ring region (e.g. one mapped with [`ShmRegion::from_fd`]).
    pub fn reader_from_region(region: ShmRegion) -> Result<RingReader, ShmError> {
        Self::reader_from_shared(Arc::new(region))
    }

    /// Takes over the writing end of a ring whose writer died (its process was killed): the
    /// new writer goes on after the last complete frame. What the old one wrote of a frame it
    /// did not finish ([`RingState::partial`]) is overwritten, which is sound only if the
    /// reader never saw it, i.e. the reader is restarted too, from a checkpoint at or before
    /// that frame; a reader that went past the last complete frame makes this fail.
    pub fn writer_resume(region: ShmRegion) -> Result<RingWriter, ShmError> {
        let shared = Shared::new(Arc::new(region))?;
        let h = shared.header();
        let head = h.head.0.load(Ordering::Acquire);
        let (end, elems) = h.frames.0.settled(head);
        let tail = h.tail.0.load(Ordering::Acquire);
        if tail > end {
            return Err(ShmError::InvalidRegion {
                reason: format!(
                    "cannot resume writing at byte {end}: the reader has read up to byte {tail} of a frame the writer did not finish"
                ),
            });
        }
        shared.claim("writer", true)?;
        let f = &h.frames.0;
        f.settle(end, elems);
        f.next_end.store(end, Ordering::Release);
        f.next_elems.store(elems, Ordering::Release);
        h.head.0.store(end, Ordering::Release);
        let mut w = RingWriter::at(shared, end, tail, elems);
        // The dead writer may have taken the reader's `waiting` flag and died before it rang:
        // the reader then sleeps with the flag down, and no later write would ring it.
        w.wake_reader();
        Ok(w)
    }

    /// Takes over the reading end of a ring whose reader died, reading on from byte `pos` (a
    /// frame boundary the dead reader had reached and checkpointed), in retaining mode.
    /// Fails if the bytes from `pos` on may already have been overwritten (`pos` before the
    /// last committed position) or were never written.
    pub fn reader_resume(region: ShmRegion, pos: u64) -> Result<RingReader, ShmError> {
        let shared = Shared::new(Arc::new(region))?;
        let h = shared.header();
        let committed = h.tail.0.load(Ordering::Acquire);
        let head = h.head.0.load(Ordering::Acquire);
        if pos < committed || pos > head {
            return Err(ShmError::InvalidRegion {
                reason: format!(
                    "cannot resume reading at byte {pos}: committed up to {committed}, written up to {head}"
                ),
            });
        }
        shared.claim("reader", true)?;
        h.control.0.reader_closed.store(0, Ordering::Release);
        // As in `writer_resume`: a writer waiting for space may have lost its wake-up with the
        // dead reader.
        h.space.0.ring_always();
        Ok(RingReader {
            shared,
            tail: pos,
            cached_head: head,
            spin_limit: DEFAULT_SPIN_LIMIT,
            closed: false,
            doorbell: None,
            retain: true,
        })
    }

    /// What a ring region holds now (for the supervisor deciding whether a restart can resume).
    pub fn state(region: &ShmRegion) -> Result<RingState, ShmError> {
        if region.len() < HEADER_SIZE {
            return Err(ShmError::InvalidRegion {
                reason: format!("region of {} bytes is too small", region.len()),
            });
        }
        // SAFETY: as in `Shared::header`: the region is mapped, page-aligned, at least
        // HEADER_SIZE bytes long, and the header holds only atomics.
        let h = unsafe { &*(region.as_ptr() as *const Header) };
        if h.control.0.magic.load(Ordering::Acquire) != MAGIC {
            return Err(ShmError::InvalidRegion {
                reason: "not a ring".into(),
            });
        }
        let head = h.head.0.load(Ordering::Acquire);
        let (end, elems) = h.frames.0.settled(head);
        Ok(RingState {
            head,
            committed: h.tail.0.load(Ordering::Acquire),
            elems,
            partial: end != head,
            writer_closed: h.control.0.writer_closed.load(Ordering::Acquire) != 0,
        })
    }

    fn writer_from_shared(region: Arc<ShmRegion>) -> Result<RingWriter, ShmError> {
        let shared = Shared::new(region)?;
        shared.claim("writer", false)?;
        let h = shared.header();
        let head = h.head.0.load(Ordering::Relaxed);
        let tail = h.tail.0.load(Ordering::Acquire);
        let (_, elems) = h.frames.0.settled(head);
        Ok(RingWriter::at(shared, head, tail, elems))
    }

    fn reader_from_shared(region: Arc<ShmRegion>) -> Result<RingReader, ShmError> {
        let shared = Shared::new(region)?;
        shared.claim("reader", false)?;
        let h = shared.header();
        let tail = h.tail.0.load(Ordering::Relaxed);
        let head = h.head.0.load(Ordering::Acquire);
        Ok(RingReader {
            shared,
            tail,
            cached_head: head,
            spin_limit: DEFAULT_SPIN_LIMIT,
            closed: false,
            doorbell: None,
            retain: false,
        })
    }
}

/// A snapshot of a ring's positions, see [`Ring::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingState {
    /// Bytes ever written.
    pub head: u64,
    /// Bytes the reader committed (released to the writer).
    pub committed: u64,
    /// Elements in complete frames ever written.
    pub elems: u64,
    /// The writer stopped inside a frame (its last frame is incomplete).
    pub partial: bool,
    /// The writer closed the ring.
    pub writer_closed: bool,
}

/// Commits a retaining reader's position from another thread: see [`RingReader::committer`].
#[derive(Clone)]
pub struct RingCommit {
    region: Arc<ShmRegion>,
}

// SAFETY: only the header's atomics are touched, through the region that the Arc keeps mapped.
unsafe impl Send for RingCommit {}
// SAFETY: as above.
unsafe impl Sync for RingCommit {}

impl RingCommit {
    fn header(&self) -> &Header {
        // SAFETY: see `Shared::header`; the region was validated when the reader attached.
        unsafe { &*(self.region.as_ptr() as *const Header) }
    }

    /// Releases every byte before `pos` to the writer (positions only move forward).
    pub fn commit(&self, pos: u64) {
        let h = self.header();
        if h.tail.0.fetch_max(pos, Ordering::AcqRel) < pos {
            h.space.0.ring();
        }
    }

    /// The committed position.
    pub fn committed(&self) -> u64 {
        self.header().tail.0.load(Ordering::Acquire)
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The producing end of a ring; closes the ring on drop.
pub struct RingWriter {
    shared: Shared,
    /// Local copy of `head` (only this side writes it).
    head: u64,
    /// Last seen `tail` (refreshed only when the ring looks full).
    cached_tail: u64,
    /// Elements in the frames written so far (by this writer and those before it).
    elems: u64,
    spin_limit: u32,
    closed: bool,
    doorbell: DoorbellSender,
    /// Give up the CPU after waking a waiting reader (see [`RingWriter::set_yield_after_wake`]).
    yield_after_wake: bool,
    /// Waiting readers woken by writes.
    wakes: u64,
}

// SAFETY: the writer exclusively owns the writer role of the ring (claimed in the header) and
// its raw buffer pointer stays valid through the `Arc<ShmRegion>`; moving it to another thread
// is fine.
unsafe impl Send for RingWriter {}

impl RingWriter {
    /// A writer of the claimed ring `shared`, writing next at `head`, with the reader last seen
    /// at `tail` and `elems` elements written before.
    fn at(shared: Shared, head: u64, tail: u64, elems: u64) -> RingWriter {
        RingWriter {
            shared,
            head,
            cached_tail: tail,
            elems,
            spin_limit: DEFAULT_SPIN_LIMIT,
            closed: false,
            doorbell: DoorbellSender::default(),
            yield_after_wake: true,
            wakes: 0,
        }
    }

    /// Ring buffer capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.capacity as usize
    }

    /// Wakes the reader whatever its `waiting` flag says (a spurious wake-up only makes it
    /// look again).
    fn wake_reader(&mut self) {
        let h = self.shared.header();
        h.data.0.ring_always();
        self.doorbell.ring(h.bell.0.load(Ordering::Acquire));
    }

    /// Test aid: forgets the reader's doorbell socket, so that no wake-up reaches a reader
    /// waiting in an event loop (as when the datagram that carries the writer's eventfd is
    /// lost).
    #[cfg(test)]
    pub(crate) fn forget_reader_bell(&self) {
        self.shared.header().bell.0.store(0, Ordering::Release);
    }

    /// Sets how many busy-wait iterations precede sleeping on the futex (0: sleep at once).
    pub fn set_spin_limit(&mut self, spins: u32) {
        self.spin_limit = spins;
    }

    /// The underlying shared region (e.g. to pass its fd to the reader's process).
    pub fn region(&self) -> &ShmRegion {
        &self.shared.region
    }

    fn reader_closed(&self) -> bool {
        self.shared
            .header()
            .control
            .0
            .reader_closed
            .load(Ordering::Acquire)
            != 0
    }

    fn free(&mut self) -> usize {
        let cap = self.shared.capacity;
        if self.head - self.cached_tail == cap {
            self.cached_tail = self.shared.header().tail.0.load(Ordering::Acquire);
        }
        (cap - (self.head - self.cached_tail)) as usize
    }

    /// Copies as much of `buf` as fits without blocking and publishes it; returns the count.
    pub fn try_write(&mut self, buf: &[u8]) -> Result<usize, ShmError> {
        if self.reader_closed() {
            return Err(ShmError::PeerClosed { done: 0 });
        }
        let mut n = buf.len().min(self.free());
        if n < buf.len() {
            // `free` only re-reads `tail` when the ring looked full: look again.
            self.cached_tail = self.shared.header().tail.0.load(Ordering::Acquire);
            n = buf.len().min(self.free());
        }
        if n > 0 {
            self.copy_in(&buf[..n]);
        }
        Ok(n)
    }

    fn copy_in(&mut self, src: &[u8]) {
        let n = src.len();
        let off = (self.head & self.shared.mask) as usize;
        let first = n.min(self.capacity() - off);
        // SAFETY: `[head, head + n)` lies within `[tail, tail + capacity)`, i.e. is free space
        // that the reader does not touch until `head` is published below; `off + first <=
        // capacity` and `n - first <= capacity`, so both copies stay in the buffer, which cannot
        // overlap `src` (a Rust slice outside the ring's free space).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.shared.buf.add(off), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.shared.buf, n - first);
        }
        self.publish(n);
    }

    /// Makes the `n` bytes after `head` (already written) visible to the reader.
    fn publish(&mut self, n: usize) {
        self.head += n as u64;
        let h = self.shared.header();
        h.head.0.store(self.head, Ordering::Release);
        let how = h.data.0.ring();
        if how == 0 {
            return;
        }
        if how == WAIT_FD {
            self.doorbell.ring(h.bell.0.load(Ordering::Acquire));
        }
        self.wakes += 1;
        if self.yield_after_wake {
            // The scheduler often queues the reader it just woke on this very CPU (next to
            // its waker, when the other CPUs look busy, or asleep as a VM's idle vCPUs do):
            // then it runs only once this thread sleeps. Giving up the CPU now lets it take
            // what was written at once. Only a reader that slept is woken, so a reader that
            // keeps up in full flow costs nothing here.
            std::thread::yield_now();
        }
    }

    /// Whether a write that wakes a sleeping reader then gives up the CPU for a moment (on by
    /// default): lower latency at low rates, for one `sched_yield` per wake-up.
    pub fn set_yield_after_wake(&mut self, on: bool) {
        self.yield_after_wake = on;
    }

    /// How many times a write woke a reader that was waiting for data.
    pub fn wakes(&self) -> u64 {
        self.wakes
    }

    /// Blocks until there is free space (returns how much), the reader closes, or `deadline`.
    fn wait_writable(&mut self, deadline: Option<Instant>) -> Result<usize, ShmError> {
        for _ in 0..self.spin_limit {
            let free = self.free();
            if free > 0 {
                return Ok(free);
            }
            if self.reader_closed() {
                return Err(ShmError::PeerClosed { done: 0 });
            }
            std::hint::spin_loop();
        }
        loop {
            let free = self.free();
            if free > 0 {
                return Ok(free);
            }
            if self.reader_closed() {
                return Err(ShmError::PeerClosed { done: 0 });
            }
            let h = self.shared.header();
            let (head, cap) = (self.head, self.shared.capacity);
            let ready = || {
                head - h.tail.0.load(Ordering::Acquire) < cap
                    || h.control.0.reader_closed.load(Ordering::Acquire) != 0
            };
            if !h.space.0.wait(deadline, ready)? {
                return Err(ShmError::Timeout { done: 0 });
            }
        }
    }

    /// Writes all of `buf`, blocking while the ring is full (no timeout).
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), ShmError> {
        self.write_all_deadline(buf, None)
    }

    /// Writes all of `buf`, giving up with [`ShmError::Timeout`] after `timeout`.
    pub fn write_all_timeout(&mut self, buf: &[u8], timeout: Duration) -> Result<(), ShmError> {
        self.write_all_deadline(buf, deadline_after(timeout))
    }

    /// Writes all of `buf`, blocking at most until `deadline` (`None`: forever).
    /// On `Timeout`/`PeerClosed`, `done` tells how many bytes of `buf` went into the ring.
    pub fn write_all_deadline(
        &mut self,
        buf: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), ShmError> {
        let mut done = 0;
        while done < buf.len() {
            if self.reader_closed() {
                return Err(ShmError::PeerClosed { done });
            }
            let free = self
                .wait_writable(deadline)
                .map_err(|e| e.with_done(done))?;
            let n = free.min(buf.len() - done);
            self.copy_in(&buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Announces a frame of `len` bytes and `elems` elements, before its first byte is
    /// published (see [`Frames`]).
    fn announce(&self, len: usize, elems: u64) {
        let f = &self.shared.header().frames.0;
        f.next_end.store(self.head + len as u64, Ordering::Release);
        f.next_elems.store(self.elems + elems, Ordering::Release);
    }

    /// Settles the announced frame once its last byte is published.
    fn settle(&mut self, elems: u64) {
        self.elems += elems;
        self.shared.header().frames.0.settle(self.head, self.elems);
    }

    /// Writes `buf`, a frame of `elems` elements, at once if it fits now (the reader then
    /// never sees part of it); Ok(false), writing nothing, if it does not. A writer that
    /// takes over after this one died resumes after the last frame whose bytes were all
    /// published ([`Ring::writer_resume`]), however it died.
    pub fn try_write_frame(&mut self, buf: &[u8], elems: u64) -> Result<bool, ShmError> {
        if self.reader_closed() {
            return Err(ShmError::PeerClosed { done: 0 });
        }
        if buf.is_empty() {
            return Ok(true);
        }
        if self.free() < buf.len() {
            self.cached_tail = self.shared.header().tail.0.load(Ordering::Acquire);
            if self.free() < buf.len() {
                return Ok(false);
            }
        }
        self.announce(buf.len(), elems);
        self.copy_in(buf);
        self.settle(elems);
        Ok(true)
    }

    /// Writes a frame straight into the ring's free space, if it fits now: `fill` gets up to
    /// `max` bytes of free space as two slices (the second continues the first where the
    /// ring wraps), writes the frame from the start, and returns its length and element
    /// count, or `None` to write nothing. The frame is published whole, as by
    /// [`RingWriter::try_write_frame`]; Ok(false) when `fill` gave `None`.
    pub fn try_write_frame_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8], &mut [u8]) -> Option<(usize, u64)>,
    ) -> Result<bool, ShmError> {
        if self.reader_closed() {
            return Err(ShmError::PeerClosed { done: 0 });
        }
        if self.free() < max.min(self.capacity() / 2) {
            // `free` only re-reads `tail` when the ring looked full: look again.
            self.cached_tail = self.shared.header().tail.0.load(Ordering::Acquire);
        }
        let window = self.free().min(max);
        let off = (self.head & self.shared.mask) as usize;
        let first = window.min(self.capacity() - off);
        // SAFETY: `[head, head + window)` is free space (`window <= free`), which the reader
        // does not touch until `head` is published; its first `first` bytes start at `off`
        // (`off + first <= capacity`), the rest at the start of the buffer (`window - first
        // <= off`, so the two slices do not overlap). Nothing else refers to this memory
        // while `fill` runs (`&mut self`).
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts_mut(self.shared.buf.add(off), first),
                std::slice::from_raw_parts_mut(self.shared.buf, window - first),
            )
        };
        let Some((len, elems)) = fill(a, b) else {
            return Ok(false);
        };
        assert!(
            len <= window,
            "a frame longer than the window it was written in"
        );
        if len == 0 {
            return Ok(true);
        }
        self.announce(len, elems);
        self.publish(len);
        self.settle(elems);
        Ok(true)
    }

    /// Writes `buf`, a frame of `elems` elements, as one unit, waiting until there is room
    /// for all of it, when it fits in the ring at all; a larger frame goes in pieces (a
    /// writer that dies in between leaves it partial: [`RingState::partial`]).
    pub fn write_frame(&mut self, buf: &[u8], elems: u64) -> Result<(), ShmError> {
        if buf.len() > self.capacity() {
            self.announce(buf.len(), elems);
            self.write_all(buf)?;
            self.settle(elems);
            return Ok(());
        }
        loop {
            if self.try_write_frame(buf, elems)? {
                return Ok(());
            }
            let h = self.shared.header();
            let (need, cap) = (self.head + buf.len() as u64, self.shared.capacity);
            let ready = || {
                need - h.tail.0.load(Ordering::Acquire) <= cap
                    || h.control.0.reader_closed.load(Ordering::Acquire) != 0
            };
            h.space.0.wait(None, ready)?;
        }
    }

    /// Elements in complete frames ever written to this ring (by this writer and those before).
    pub fn elems_written(&self) -> u64 {
        self.elems
    }

    /// Marks the ring writer-closed and wakes the reader (also done on drop).
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if !self.closed {
            self.closed = true;
            let h = self.shared.header();
            h.control.0.writer_closed.store(1, Ordering::Release);
            if h.data.0.ring_always() == WAIT_FD {
                self.doorbell.ring(h.bell.0.load(Ordering::Acquire));
            }
        }
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        self.close_inner();
    }
}

impl io::Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let free = self.wait_writable(None)?;
        let n = free.min(buf.len());
        self.copy_in(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The consuming end of a ring; closes the ring (reader side) on drop.
pub struct RingReader {
    shared: Shared,
    /// Local copy of `tail` (only this side writes it).
    tail: u64,
    /// Last seen `head` (refreshed only when the ring looks empty).
    cached_head: u64,
    spin_limit: u32,
    closed: bool,
    /// The doorbell, once made (see [`RingReader::bind_doorbell`]).
    doorbell: Option<ReaderBell>,
    /// Retaining mode: consumed bytes stay in the ring until committed ([`RingCommit`]).
    retain: bool,
}

// SAFETY: the reader exclusively owns the reader role of the ring (claimed in the header) and
// its raw buffer pointer stays valid through the `Arc<ShmRegion>`; moving it to another thread
// is fine.
unsafe impl Send for RingReader {}

impl RingReader {
    /// Ring buffer capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.capacity as usize
    }

    /// Sets how many busy-wait iterations precede sleeping on the futex (0: sleep at once).
    pub fn set_spin_limit(&mut self, spins: u32) {
        self.spin_limit = spins;
    }

    /// The underlying shared region (e.g. to pass its fd to the writer's process).
    pub fn region(&self) -> &ShmRegion {
        &self.shared.region
    }

    /// Keeps what is read in the ring until it is committed ([`RingReader::committer`]), so
    /// that a reader restarted after a crash can read it again.
    pub fn set_retain(&mut self, on: bool) {
        self.retain = on;
    }

    /// Bytes read so far (the position a checkpoint records).
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// A handle that commits positions of this (retaining) reader from another thread.
    pub fn committer(&self) -> RingCommit {
        RingCommit {
            region: self.shared.region.clone(),
        }
    }

    /// Commits everything read so far (a retaining reader that cannot wait for a checkpoint).
    pub fn release(&mut self) {
        let h = self.shared.header();
        h.tail.0.fetch_max(self.tail, Ordering::AcqRel);
        h.space.0.ring();
    }

    /// Bytes read but not yet committed (what the ring retains for a restart).
    pub fn retained(&self) -> u64 {
        self.tail
            .saturating_sub(self.shared.header().tail.0.load(Ordering::Acquire))
    }

    /// Bytes readable right now (without blocking).
    pub fn available_len(&mut self) -> usize {
        if self.cached_head == self.tail {
            self.cached_head = self.shared.header().head.0.load(Ordering::Acquire);
        }
        (self.cached_head - self.tail) as usize
    }

    fn writer_closed(&self) -> bool {
        self.shared
            .header()
            .control
            .0
            .writer_closed
            .load(Ordering::Acquire)
            != 0
    }

    /// The readable bytes as two slices (the second is non-empty only at wrap-around), without
    /// blocking. Release them with [`RingReader::consume`].
    pub fn available(&mut self) -> (&[u8], &[u8]) {
        let n = self.available_len();
        let off = (self.tail & self.shared.mask) as usize;
        let first = n.min(self.capacity() - off);
        // SAFETY: `[tail, tail + n)` was published by the writer (Acquire load of `head` in
        // `available_len`) and the writer will not overwrite it before `tail` moves, which needs
        // `&mut self` (so these borrows end first). Both ranges are inside the buffer.
        unsafe {
            (
                std::slice::from_raw_parts(self.shared.buf.add(off), first),
                std::slice::from_raw_parts(self.shared.buf, n - first),
            )
        }
    }

    /// Releases the first `n` readable bytes to the writer. Panics if `n` exceeds what is readable.
    pub fn consume(&mut self, n: usize) {
        assert!(
            n as u64 <= self.cached_head - self.tail,
            "RingReader::consume({n}) beyond the {} readable bytes",
            self.cached_head - self.tail
        );
        if n == 0 {
            return;
        }
        self.tail += n as u64;
        if self.retain {
            return;
        }
        let h = self.shared.header();
        h.tail.0.store(self.tail, Ordering::Release);
        h.space.0.ring();
    }

    /// Calls `f` with up to `max` readable bytes as two slices (without blocking) and consumes
    /// as many bytes as `f` returns (clamped to what it was shown).
    pub fn read_available(&mut self, max: usize, f: impl FnOnce(&[u8], &[u8]) -> usize) -> usize {
        let (a, b) = self.available();
        let a = &a[..a.len().min(max)];
        let b = &b[..b.len().min(max - a.len())];
        let n = f(a, b).min(a.len() + b.len());
        self.consume(n);
        n
    }

    /// Blocks until bytes are readable (returns how many) or `deadline`; [`ShmError::Eof`]
    /// (done 0) once the writer closed and everything was read.
    pub fn wait_readable(&mut self, deadline: Option<Instant>) -> Result<usize, ShmError> {
        for _ in 0..self.spin_limit {
            let n = self.available_len();
            if n > 0 {
                return Ok(n);
            }
            std::hint::spin_loop();
        }
        loop {
            let n = self.available_len();
            if n > 0 {
                return Ok(n);
            }
            if self.writer_closed() {
                // `writer_closed` (Acquire) was stored after the final `head`: reload it.
                let n = self.available_len();
                return if n > 0 {
                    Ok(n)
                } else {
                    Err(ShmError::Eof { done: 0 })
                };
            }
            let h = self.shared.header();
            let tail = self.tail;
            let ready = || {
                h.head.0.load(Ordering::Acquire) != tail
                    || h.control.0.writer_closed.load(Ordering::Acquire) != 0
            };
            if !h.data.0.wait(deadline, ready)? {
                return Err(ShmError::Timeout { done: 0 });
            }
        }
    }

    /// Bytes readable right now, without blocking: `Ok(0)` when the ring is empty but the
    /// writer may still write, [`ShmError::Eof`] (done 0) once it closed and all was read.
    pub fn readable_now(&mut self) -> Result<usize, ShmError> {
        let n = self.available_len();
        if n > 0 {
            return Ok(n);
        }
        if self.writer_closed() {
            // `writer_closed` (Acquire) was stored after the final `head`: reload it.
            let n = self.available_len();
            return if n > 0 {
                Ok(n)
            } else {
                Err(ShmError::Eof { done: 0 })
            };
        }
        Ok(0)
    }

    /// Lets this reader wait in an event loop rather than on the futex: binds its doorbell
    /// socket (see the module docs) and returns a duplicate of it, to be polled for
    /// readability, as must be any eventfd that [`RingReader::drain_doorbell`] returns later.
    /// Idempotent. Wait with [`RingReader::arm_doorbell`] and [`RingReader::drain_doorbell`].
    pub fn bind_doorbell(&mut self) -> Result<OwnedFd, ShmError> {
        if self.doorbell.is_none() {
            let (id, sock) = bind_doorbell_socket()?;
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true)
                .map_err(|e| ShmError::os("setsockopt(SO_PASSCRED)", "doorbell socket", e))?;
            self.shared.header().bell.0.store(id, Ordering::Release);
            self.doorbell = Some(ReaderBell { sock, event: None });
        }
        let bell = self.doorbell.as_ref().expect("made just above");
        bell.sock
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ShmError::os("dup", "ring doorbell", errno_of(&e)))
    }

    /// Announces a wait on the doorbell. Returns true when the caller should now wait for it
    /// to become readable (nothing to read, the writer still open); false when there is
    /// something to do after all, and the announcement is withdrawn.
    /// Call [`RingReader::bind_doorbell`] first (otherwise this returns false).
    pub fn arm_doorbell(&mut self) -> bool {
        if self.doorbell.is_none() {
            return false;
        }
        let h = self.shared.header();
        h.data.0.waiting.store(WAIT_FD, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let idle = h.head.0.load(Ordering::Acquire) == self.tail
            && h.control.0.writer_closed.load(Ordering::Acquire) == 0;
        if !idle {
            h.data.0.waiting.store(0, Ordering::Relaxed);
        }
        idle
    }

    /// Reads what is queued on the doorbell (so that it is not readable until the next ring)
    /// and withdraws the announcement. Returns (a duplicate of) the eventfd the writer sent,
    /// the first time it comes: poll it too from then on.
    pub fn drain_doorbell(&mut self) -> Option<OwnedFd> {
        let fresh = self.doorbell.as_mut().and_then(ReaderBell::drain);
        self.shared
            .header()
            .data
            .0
            .waiting
            .store(0, Ordering::Relaxed);
        fresh
    }

    /// Copies up to `buf.len()` readable bytes without blocking; returns the count (0 if empty).
    pub fn try_read(&mut self, buf: &mut [u8]) -> usize {
        self.read_available(buf.len(), |a, b| {
            buf[..a.len()].copy_from_slice(a);
            buf[a.len()..a.len() + b.len()].copy_from_slice(b);
            a.len() + b.len()
        })
    }

    /// Blocks until at least one byte is readable and reads up to `buf.len()`; `Ok(0)` at
    /// end of stream (or for an empty `buf`).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, ShmError> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.wait_readable(None) {
            Ok(_) => Ok(self.try_read(buf)),
            Err(ShmError::Eof { .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Fills `buf`, blocking while the ring is empty (no timeout).
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ShmError> {
        self.read_exact_deadline(buf, None)
    }

    /// Fills `buf`, giving up with [`ShmError::Timeout`] after `timeout`.
    pub fn read_exact_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(), ShmError> {
        self.read_exact_deadline(buf, deadline_after(timeout))
    }

    /// Fills `buf`, blocking at most until `deadline` (`None`: forever). On `Timeout`/`Eof`,
    /// `done` tells how many bytes of `buf` were filled (`Eof { done: 0 }`: clean end).
    pub fn read_exact_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<(), ShmError> {
        let mut done = 0;
        while done < buf.len() {
            self.wait_readable(deadline)
                .map_err(|e| e.with_done(done))?;
            done += self.try_read(&mut buf[done..]);
        }
        Ok(())
    }

    /// Marks the ring reader-closed and wakes a blocked writer (also done on drop).
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if !self.closed {
            self.closed = true;
            let h = self.shared.header();
            h.control.0.reader_closed.store(1, Ordering::Release);
            h.space.0.ring_always();
        }
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        self.close_inner();
    }
}

impl io::Read for RingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(RingReader::read(self, buf)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// xorshift64*: deterministic test data without extra dependencies.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn fill(&mut self, buf: &mut [u8]) {
            for chunk in buf.chunks_mut(8) {
                let v = self.next().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
    }

    fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    const FNV_INIT: u64 = 0xcbf2_9ce4_8422_2325;

    #[test]
    fn round_trip_random_messages_small_ring() {
        const TOTAL: usize = 2 << 20;
        let (mut w, mut r) = Ring::create(64).unwrap();
        assert_eq!(w.capacity(), 64);
        let producer = thread::spawn(move || {
            let mut rng = Rng(0x1234_5678);
            let mut sum = FNV_INIT;
            let mut sent = 0;
            let mut msg = vec![0u8; 1000];
            while sent < TOTAL {
                let len = (rng.next() % 1000) as usize;
                rng.fill(&mut msg[..len]);
                w.write_all(&(len as u32).to_le_bytes()).unwrap();
                w.write_all(&msg[..len]).unwrap();
                sum = fnv1a(sum, &msg[..len]);
                sent += len;
            }
            sum
        });
        let mut sum = FNV_INIT;
        let mut msg = vec![0u8; 1000];
        let mut messages = 0;
        loop {
            let mut len = [0u8; 4];
            match r.read_exact(&mut len) {
                Ok(()) => {}
                Err(ShmError::Eof { done: 0 }) => break,
                Err(e) => panic!("unexpected {e}"),
            }
            let len = u32::from_le_bytes(len) as usize;
            assert!(len < 1000, "corrupt length prefix {len}");
            r.read_exact(&mut msg[..len]).unwrap();
            sum = fnv1a(sum, &msg[..len]);
            messages += 1;
        }
        assert_eq!(sum, producer.join().unwrap());
        assert!(messages > 2_000, "only {messages} messages");
    }

    #[test]
    fn message_larger_than_ring() {
        let (mut w, mut r) = Ring::create(4096).unwrap();
        let mut big = vec![0u8; 3 << 20];
        Rng(99).fill(&mut big);
        let expected = big.clone();
        let producer = thread::spawn(move || w.write_all(&big).unwrap());
        let mut got = vec![0u8; 3 << 20];
        r.read_exact(&mut got).unwrap();
        producer.join().unwrap();
        assert!(got == expected);
        assert!(matches!(
            r.read_exact(&mut [0u8; 1]),
            Err(ShmError::Eof { done: 0 })
        ));
    }

    #[test]
    fn zero_copy_read_available_sees_wrapped_slices() {
        let (mut w, mut r) = Ring::create(16).unwrap();
        w.write_all(&[0; 12]).unwrap();
        r.read_exact(&mut [0; 12]).unwrap();
        w.write_all(b"abcdefghij").unwrap(); // wraps at offset 16
        let n = r.read_available(usize::MAX, |a, b| {
            assert_eq!(a, b"abcd");
            assert_eq!(b, b"efghij");
            3
        });
        assert_eq!(n, 3);
        let (a, b) = r.available();
        assert_eq!((a, b), (&b"d"[..], &b"efghij"[..]));
        r.consume(7);
        assert_eq!(r.available_len(), 0);
        assert_eq!(r.read_available(5, |a, b| a.len() + b.len()), 0);
    }

    #[test]
    fn reader_gets_all_data_then_eof() {
        let (mut w, mut r) = Ring::create(64).unwrap();
        w.write_all(b"hello, ").unwrap();
        let late = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            w.write_all(b"world").unwrap();
            w.close();
        });
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            match r.read(&mut buf).unwrap() {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        late.join().unwrap();
        assert_eq!(out, b"hello, world");
        assert!(matches!(
            r.read_exact(&mut [0u8; 4]),
            Err(ShmError::Eof { done: 0 })
        ));
    }

    #[test]
    fn eof_in_the_middle_of_read_exact_reports_done() {
        let (mut w, mut r) = Ring::create(64).unwrap();
        w.write_all(b"abc").unwrap();
        drop(w);
        let mut buf = [0u8; 8];
        assert!(matches!(
            r.read_exact(&mut buf),
            Err(ShmError::Eof { done: 3 })
        ));
        assert_eq!(&buf[..3], b"abc");
    }

    #[test]
    fn writer_gets_peer_closed_when_reader_closes() {
        let (mut w, r) = Ring::create(64).unwrap();
        let closer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            r.close();
        });
        let start = Instant::now();
        // 64 bytes fit; the rest blocks until the reader closes.
        let err = w.write_all(&[7u8; 200]).unwrap_err();
        assert!(matches!(err, ShmError::PeerClosed { done: 64 }), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(25));
        closer.join().unwrap();
        assert!(matches!(
            w.write_all(b"x"),
            Err(ShmError::PeerClosed { done: 0 })
        ));
        assert!(matches!(
            w.try_write(b"x"),
            Err(ShmError::PeerClosed { .. })
        ));
    }

    #[test]
    fn timeouts_return() {
        let (mut w, mut r) = Ring::create(64).unwrap();
        let t = Instant::now();
        let err = r
            .read_exact_timeout(&mut [0u8; 4], Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, ShmError::Timeout { done: 0 }), "{err}");
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_millis(1000));

        w.write_all(&[1u8; 2]).unwrap();
        let err = r
            .read_exact_timeout(&mut [0u8; 4], Duration::from_millis(10))
            .unwrap_err();
        assert!(matches!(err, ShmError::Timeout { done: 2 }), "{err}");

        let t = Instant::now();
        let err = w
            .write_all_timeout(&[0u8; 100], Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, ShmError::Timeout { done: 64 }), "{err}");
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    fn thread_cpu_time() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer for clock_gettime.
        let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(r, 0);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn idle_wait_sleeps_and_wakes() {
        let (mut w, mut r) = Ring::create(64).unwrap();
        let reader = thread::spawn(move || {
            let cpu0 = thread_cpu_time();
            let mut buf = [0u8; 8];
            r.read_exact(&mut buf).unwrap();
            (buf, thread_cpu_time() - cpu0)
        });
        thread::sleep(Duration::from_millis(300));
        w.write_all(&42u64.to_le_bytes()).unwrap();
        let (buf, cpu) = reader.join().unwrap();
        assert_eq!(u64::from_le_bytes(buf), 42);
        assert!(
            cpu < Duration::from_millis(50),
            "blocked reader burnt {cpu:?} of CPU"
        );
    }

    #[test]
    fn io_traits_and_region_reattach() {
        use std::io::{Read, Write};
        let region = Ring::create_region(100).unwrap();
        assert_eq!(region.len(), HEADER_SIZE + 128);
        let fd = region.inheritable_fd().unwrap();
        let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
        let again = ShmRegion::from_fd(fd).unwrap();
        assert_eq!(again.len(), region.len());

        let mut w = Ring::writer_from_region(region).unwrap();
        let mut r = Ring::reader_from_region(again).unwrap();
        assert_eq!(r.capacity(), 128);
        Write::write_all(&mut w, b"through two mappings").unwrap();
        drop(w);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "through two mappings");
    }

    #[test]
    fn rejects_bad_capacity_foreign_region_and_second_writer() {
        assert!(matches!(
            Ring::create(0),
            Err(ShmError::InvalidCapacity { requested: 0 })
        ));
        assert!(matches!(
            Ring::create(MAX_CAPACITY + 1),
            Err(ShmError::InvalidCapacity { .. })
        ));
        let plain = ShmRegion::create("not-a-ring", 4096).unwrap();
        assert!(matches!(
            Ring::reader_from_region(plain),
            Err(ShmError::InvalidRegion { .. })
        ));
        let (w, _r) = Ring::create(64).unwrap();
        let dup = ShmRegion::from_fd(w.region().fd().try_clone_to_owned().unwrap()).unwrap();
        assert!(matches!(
            Ring::writer_from_region(dup),
            Err(ShmError::RoleTaken { role: "writer" })
        ));
    }

    /// A second mapping of `r`, as another process would have it.
    fn dup(r: &ShmRegion) -> ShmRegion {
        ShmRegion::from_fd(r.inheritable_fd().unwrap()).unwrap()
    }

    fn readable_within(fd: &OwnedFd, ms: u16) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
    }

    #[test]
    fn fd_doorbell_hands_over_an_eventfd_then_rings_it() {
        let (mut w, mut r) = Ring::create(64).unwrap();
        let sock = r.bind_doorbell().unwrap();
        // Not announced: a write rings nothing.
        w.write_all(b"a").unwrap();
        assert!(!r.arm_doorbell(), "data is waiting");
        assert_eq!(r.try_read(&mut [0u8; 8]), 1);
        assert!(!readable_within(&sock, 0));
        // Announced: the first ring is a datagram carrying the writer's eventfd.
        assert!(r.arm_doorbell());
        w.write_all(b"b").unwrap();
        assert!(readable_within(&sock, 1000));
        let ev = r.drain_doorbell().expect("the writer sent its eventfd");
        assert!(!readable_within(&sock, 0) && !readable_within(&ev, 0));
        assert_eq!(r.try_read(&mut [0u8; 8]), 1);
        // Later rings are eventfd writes.
        for _ in 0..3 {
            assert!(r.arm_doorbell());
            w.write_all(b"c").unwrap();
            assert!(readable_within(&ev, 1000));
            assert!(!readable_within(&sock, 0));
            assert!(r.drain_doorbell().is_none());
            assert!(!readable_within(&ev, 0));
            assert_eq!(r.try_read(&mut [0u8; 8]), 1);
        }
        // Closing rings a waiting reader too.
        assert!(r.arm_doorbell());
        drop(w);
        assert!(readable_within(&ev, 1000));
        assert!(matches!(r.readable_now(), Err(ShmError::Eof { done: 0 })));
    }

    #[test]
    fn a_writer_taking_over_wakes_a_reader_whose_wake_up_died_with_the_old_one() {
        let region = Ring::create_region(256).unwrap();
        let w = Ring::writer_from_region(dup(&region)).unwrap();
        let mut r = Ring::reader_from_region(dup(&region)).unwrap();
        let sock = r.bind_doorbell().unwrap();
        assert!(r.arm_doorbell());
        // The writer publishes a frame and takes the reader's flag, then is killed before it
        // rings anything.
        let h = w.shared.header();
        h.head.0.store(4, Ordering::Release);
        h.frames.0.settle(4, 1);
        assert_eq!(h.data.0.waiting.swap(0, Ordering::Relaxed), WAIT_FD);
        std::mem::forget(w);
        assert!(!readable_within(&sock, 50), "nothing rang yet");
        let _w = Ring::writer_resume(dup(&region)).unwrap();
        assert!(readable_within(&sock, 1000), "the new writer rang");
        assert_eq!(r.readable_now().unwrap(), 4);
    }

    #[test]
    fn a_reader_taking_over_wakes_a_writer_whose_wake_up_died_with_the_old_one() {
        let region = Ring::create_region(8).unwrap();
        let mut w = Ring::writer_from_region(dup(&region)).unwrap();
        w.set_spin_limit(0);
        let mut r = Ring::reader_from_region(dup(&region)).unwrap();
        r.set_retain(true);
        w.try_write_frame(&[1; 8], 1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            // The ring is full: this waits for space.
            w.write_all(&[2; 8]).unwrap();
            tx.send(()).unwrap();
        });
        while r.shared.header().space.0.waiting.load(Ordering::SeqCst) != WAIT_FUTEX {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The reader frees the space, takes the writer's flag, and is killed before it wakes it.
        let mut buf = [0u8; 8];
        r.read_exact(&mut buf).unwrap();
        let pos = r.position();
        let h = r.shared.header();
        h.tail.0.store(pos, Ordering::Release);
        h.space.0.waiting.store(0, Ordering::Relaxed);
        std::mem::forget(r);
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "woken already"
        );
        let _r = Ring::reader_resume(dup(&region), pos).unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the new reader woke the writer");
        writer.join().unwrap();
    }

    #[test]
    fn a_write_counts_the_sleeping_readers_it_wakes_and_no_others() {
        let (mut w, mut r) = Ring::create(64).unwrap();
        r.set_spin_limit(0);
        let waiting = |r: &RingReader| r.shared.header().data.0.waiting.load(Ordering::SeqCst);
        // A reader asleep on the futex.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 1];
            r.read_exact(&mut b).unwrap();
            tx.send(b[0]).unwrap();
            r
        });
        while w.shared.header().data.0.waiting.load(Ordering::SeqCst) != WAIT_FUTEX {
            std::thread::sleep(Duration::from_millis(1));
        }
        w.write_all(&[7]).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
        assert_eq!(w.wakes(), 1, "the sleeping reader was woken");
        let mut r = reader.join().unwrap();
        // Nobody waits: writing wakes nobody.
        w.write_all(&[8]).unwrap();
        assert_eq!(w.wakes(), 1, "no reader was asleep");
        let mut b = [0u8; 1];
        r.read_exact(&mut b).unwrap();
        // A reader waiting on its doorbell, as in an event loop; with the yield turned off,
        // the count is the same.
        w.set_yield_after_wake(false);
        r.bind_doorbell().unwrap();
        assert!(r.arm_doorbell(), "an empty ring");
        assert_eq!(waiting(&r), WAIT_FD);
        w.write_all(&[9]).unwrap();
        assert_eq!(w.wakes(), 2, "the reader waiting on its doorbell was rung");
        assert_eq!(waiting(&r), 0, "the writer took the flag");
    }

    const CHILD_FD_ENV: &str = "TRIBUTARY_SHM_TEST_CHILD_FD";
    const CHILD_FD: RawFd = 57;
    const CROSS_N: u64 = 200_000;

    /// Child role of `cross_process_u64_stream`; does nothing in a normal test run.
    #[test]
    fn cross_process_child() {
        let Ok(fd) = std::env::var(CHILD_FD_ENV) else {
            return;
        };
        let fd: RawFd = fd.parse().unwrap();
        // SAFETY: the parent placed the ring's memfd at this number for us, and nothing else
        // in this process owns it.
        let region = ShmRegion::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
        let mut w = Ring::writer_from_region(region).unwrap();
        let mut batch = Vec::with_capacity(8 * 64);
        for i in 0..CROSS_N {
            batch.extend_from_slice(&(i * 3 + 1).to_le_bytes());
            if batch.len() == batch.capacity() || i + 1 == CROSS_N {
                w.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        w.close();
    }

    #[test]
    fn cross_process_u64_stream() {
        let region = Ring::create_region(4096).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "shm::tests::cross_process_child", "--nocapture"])
            .env(CHILD_FD_ENV, CHILD_FD.to_string())
            .stdout(std::process::Stdio::null());
        region.pass_to_child(&mut cmd, CHILD_FD);
        let mut child = cmd.spawn().unwrap();
        let mut r = Ring::reader_from_region(region).unwrap();
        let mut buf = [0u8; 8];
        for i in 0..CROSS_N {
            if let Err(e) = r.read_exact_timeout(&mut buf, Duration::from_secs(10)) {
                let _ = child.kill();
                panic!("value {i}: {e}");
            }
            assert_eq!(u64::from_le_bytes(buf), i * 3 + 1, "value {i} out of order");
        }
        assert!(matches!(
            r.read_exact_timeout(&mut buf, Duration::from_secs(10)),
            Err(ShmError::Eof { done: 0 })
        ));
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn a_frame_written_in_place_is_published_whole_where_the_ring_wraps() {
        let region = Ring::create_region(16).unwrap();
        let mut w = Ring::writer_from_region(dup(&region)).unwrap();
        let mut r = Ring::reader_from_region(dup(&region)).unwrap();
        w.write_all(&[0; 12]).unwrap();
        r.read_exact(&mut [0; 12]).unwrap();
        // The window is the free space, in two parts where it wraps, capped at `max`.
        let wrote = w
            .try_write_frame_with(100, |a, b| {
                assert_eq!((a.len(), b.len()), (4, 12));
                a.copy_from_slice(b"abcd");
                b[..3].copy_from_slice(b"efg");
                Some((7, 2))
            })
            .unwrap();
        assert!(wrote);
        assert_eq!(w.elems_written(), 2);
        let st = Ring::state(&region).unwrap();
        assert_eq!((st.elems, st.partial), (2, false));
        let mut got = [0u8; 7];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcdefg");
        // Giving up writes nothing; the window never exceeds `max`.
        let none = w
            .try_write_frame_with(5, |a, b| {
                assert_eq!(a.len() + b.len(), 5);
                a[0] = 9;
                None
            })
            .unwrap();
        assert!(!none);
        assert_eq!(r.available_len(), 0);
        assert_eq!(w.elems_written(), 2);
        drop(r);
        assert!(w.try_write_frame_with(5, |_, _| Some((1, 1))).is_err());
    }

    #[test]
    fn a_retaining_reader_holds_the_writer_back_until_it_commits() {
        let region = Arc::new(Ring::create_region(64).unwrap());
        let mut w = Ring::writer_from_shared(region.clone()).unwrap();
        let mut r = Ring::reader_from_shared(region).unwrap();
        r.set_retain(true);
        assert!(w.try_write_frame(&[7; 48], 1).unwrap());
        let mut buf = [0u8; 48];
        assert_eq!(r.try_read(&mut buf), 48);
        // Read, but not committed: the bytes are still held, so 17 more do not fit.
        assert_eq!(r.retained(), 48);
        assert!(!w.try_write_frame(&[8; 17], 1).unwrap());
        r.committer().commit(r.position());
        assert_eq!(r.retained(), 0);
        assert!(w.try_write_frame(&[8; 17], 1).unwrap());
    }

    #[test]
    fn a_restarted_reader_reads_again_from_its_checkpoint_and_a_restarted_writer_after_the_last_whole_frame(
    ) {
        let region = Ring::create_region(256).unwrap();
        let mut w = Ring::writer_from_region(dup(&region)).unwrap();
        let mut r = Ring::reader_from_region(dup(&region)).unwrap();
        r.set_retain(true);
        w.try_write_frame(&[1; 10], 2).unwrap();
        w.try_write_frame(&[2; 10], 3).unwrap();
        let mut buf = [0u8; 10];
        r.read_exact(&mut buf).unwrap();
        let checkpoint = r.position();
        r.committer().commit(checkpoint);
        r.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [2; 10]);
        // The writer dies inside a frame; the reader dies after reading past its checkpoint.
        w.try_write(&[3; 4]).unwrap();
        std::mem::forget(w);
        std::mem::forget(r);
        let st = Ring::state(&region).unwrap();
        assert_eq!((st.elems, st.partial, st.committed), (5, true, 10));
        let mut w = Ring::writer_resume(dup(&region)).unwrap();
        assert_eq!(w.elems_written(), 5);
        w.try_write_frame(&[4; 6], 1).unwrap();
        assert!(!Ring::state(&region).unwrap().partial);
        // Reading again from the checkpoint: the second frame, then the new one (the partial
        // frame's bytes were overwritten).
        assert!(
            Ring::reader_resume(dup(&region), 0).is_err(),
            "before the commit"
        );
        let mut r = Ring::reader_resume(dup(&region), checkpoint).unwrap();
        let mut got = [0u8; 16];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got[..10], &[2; 10]);
        assert_eq!(&got[10..], &[4; 6]);
    }

    #[test]
    fn a_writer_killed_after_publishing_a_frame_but_before_settling_it_resumes_after_it() {
        let region = Ring::create_region(256).unwrap();
        let mut w = Ring::writer_from_region(dup(&region)).unwrap();
        let mut r = Ring::reader_from_region(dup(&region)).unwrap();
        w.try_write_frame(&[1; 10], 2).unwrap();
        // The steps of `try_write_frame` up to the commit point, then death.
        w.announce(10, 3);
        w.copy_in(&[2; 10]);
        std::mem::forget(w);
        // A live reader (not restarted) reads both frames meanwhile.
        let mut buf = [0u8; 20];
        r.read_exact(&mut buf).unwrap();
        let st = Ring::state(&region).unwrap();
        assert_eq!((st.head, st.elems, st.partial), (20, 5, false));
        let mut w = Ring::writer_resume(dup(&region)).unwrap();
        assert_eq!(w.elems_written(), 5);
        w.try_write_frame(&[3; 6], 1).unwrap();
        let mut got = [0u8; 6];
        r.read_exact(&mut got).unwrap();
        assert_eq!(
            got, [3; 6],
            "the reader goes on where it was, nothing again"
        );
        assert_eq!(Ring::state(&region).unwrap().elems, 6);
    }

    #[test]
    fn a_writer_killed_inside_a_frame_the_reader_began_cannot_resume() {
        let region = Ring::create_region(64).unwrap();
        let mut w = Ring::writer_from_region(dup(&region)).unwrap();
        let mut r = Ring::reader_from_region(dup(&region)).unwrap();
        w.try_write_frame(&[1; 8], 1).unwrap();
        // A frame larger than the ring goes in pieces: the writer dies after the first.
        w.announce(100, 1);
        w.copy_in(&[2; 40]);
        std::mem::forget(w);
        let mut buf = [0u8; 30];
        r.read_exact(&mut buf).unwrap();
        let st = Ring::state(&region).unwrap();
        assert_eq!((st.head, st.elems, st.partial), (48, 1, true));
        let e = Ring::writer_resume(dup(&region))
            .err()
            .expect("must refuse");
        assert!(e.to_string().contains("did not finish"), "{e}");
    }
}

//! SIGINT and SIGTERM, handled without doing anything unsafe in the handler: the handler
//! records the signal in atomics and writes one byte to a self-pipe; a thread reads the pipe
//! and acts (stop gracefully on the first signal, kill at once on the second).

use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The write end of the self-pipe (-1 before `install`).
static PIPE_WR: AtomicI32 = AtomicI32::new(-1);
/// The first stopping signal received (0 while none).
static FIRST: AtomicI32 = AtomicI32::new(0);
/// How many stopping signals were received.
static COUNT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let _ = FIRST.compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire);
    COUNT.fetch_add(1, Ordering::AcqRel);
    let fd = PIPE_WR.load(Ordering::Acquire);
    if fd >= 0 {
        let b = [sig as u8];
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking, a full pipe loses
        // only a wake-up, never the count kept above.
        unsafe {
            libc::write(fd, b.as_ptr().cast(), 1);
        }
    }
}

/// What the signal thread is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    /// The first SIGINT or SIGTERM: stop gracefully.
    Stop(i32),
    /// A second one: kill everything at once.
    Kill(i32),
}

/// The signal that first asked this process to stop, if any.
pub fn received() -> Option<i32> {
    match FIRST.load(Ordering::Acquire) {
        0 => None,
        s => Some(s),
    }
}

/// The exit status a run stopped by `sig` ends with (128 + the signal number).
pub fn exit_status(sig: i32) -> u8 {
    (128 + sig).clamp(0, 255) as u8
}

/// Installs the SIGINT and SIGTERM handlers and starts the thread that calls `act` for each
/// signal received. Call once per process.
pub fn install(act: impl Fn(SignalEvent) + Send + 'static) -> std::io::Result<()> {
    let (rd, wr) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    for fd in [rd.as_raw_fd(), wr.as_raw_fd()] {
        // SAFETY: fcntl on descriptors this function owns.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, fl | libc::FD_CLOEXEC);
        }
    }
    // SAFETY: as above.
    unsafe {
        let fl = libc::fcntl(wr.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(wr.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    PIPE_WR.store(wr.into_raw_fd(), Ordering::Release);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches atomics and calls write(2).
        unsafe { sigaction(s, &action) }.map_err(std::io::Error::from)?;
    }
    std::thread::Builder::new()
        .name("tributary-signals".into())
        .spawn(move || {
            let mut rd = std::fs::File::from(rd);
            let mut seen = 0usize;
            let mut b = [0u8; 16];
            loop {
                match rd.read(&mut b) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
                let count = COUNT.load(Ordering::Acquire);
                let first = FIRST.load(Ordering::Acquire);
                while seen < count {
                    seen += 1;
                    act(if seen == 1 {
                        SignalEvent::Stop(first)
                    } else {
                        SignalEvent::Kill(first)
                    });
                }
            }
        })?;
    Ok(())
}

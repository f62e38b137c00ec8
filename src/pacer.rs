//! The timer of a source that waits between elements ([`crate::Gen::Wait`]): a one-shot
//! timerfd watched by the actor's event loop.
//!
//! A tokio timer set again from inside the event loop, once the previous one fired, costs a
//! wake-up of the loop itself (an eventfd write and one more `epoll_wait` round) per wait:
//! tokio wakes its driver whenever a new timer is earlier than the earliest it sleeps for, and
//! after the only timer fired there is none. At 1 kHz that work comes after each element has
//! been handed to the consumer and delays the moment the producer's thread sleeps, which is
//! when a consumer woken onto the same CPU gets to run. Re-arming a timerfd is one system call.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A one-shot timer for one actor (not `Send`: it lives on the actor's thread).
pub(crate) struct Pacer {
    fd: Rc<AsyncFd<OwnedFd>>,
    watched: Rc<Cell<bool>>,
}

impl Pacer {
    /// A new, unarmed timer; an error when the OS has no timerfd to give (the caller falls
    /// back to a tokio timer). Must be called inside the actor's runtime.
    pub(crate) fn new() -> io::Result<Pacer> {
        // SAFETY: plain system call without pointers.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `timerfd_create` just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is owned, and stays open (and the same) until the AsyncFd, which owns
        // it, is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Pacer {
            fd: Rc::new(fd),
            watched: Rc::new(Cell::new(false)),
        })
    }

    /// Arms the timer to fire once, `d` from now (replacing an earlier arming). Returns true
    /// when nothing watches it yet: the caller then awaits [`Pacer::fired`].
    pub(crate) fn arm(&self, d: Duration) -> io::Result<bool> {
        // A zero `it_value` would disarm the timer: wait at least a nanosecond.
        let d = d.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; a null old value is allowed.
        let r = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                0,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(!self.watched.replace(true))
    }

    /// Resolves when the timer fires (or fired since the last time this resolved).
    ///
    /// The expiration count is not read: every expiration is an edge of its own for the
    /// edge-triggered event loop, so skipping the `read` saves a system call per wait.
    pub(crate) fn fired(&self) -> impl std::future::Future<Output = io::Result<()>> + 'static {
        let fd = self.fd.clone();
        let watched = self.watched.clone();
        async move {
            let r = fd.readable().await.map(|mut g| g.clear_ready());
            watched.set(false);
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn fires_once_after_the_delay_and_again_when_rearmed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = Pacer::new().unwrap();
            for ms in [5u64, 1, 3] {
                let t0 = Instant::now();
                assert!(
                    p.arm(Duration::from_millis(ms)).unwrap(),
                    "nothing watches it yet"
                );
                assert!(
                    !p.arm(Duration::from_millis(ms)).unwrap(),
                    "re-armed, watched"
                );
                p.fired().await.unwrap();
                let took = t0.elapsed();
                assert!(
                    took >= Duration::from_millis(ms),
                    "fired after {took:?}, armed {ms} ms"
                );
                assert!(took < Duration::from_secs(2), "fired after {took:?}");
            }
            // Re-arming replaces the earlier arming: a far one, then a near one.
            let t0 = Instant::now();
            p.arm(Duration::from_secs(60)).unwrap();
            p.arm(Duration::from_millis(2)).unwrap();
            p.fired().await.unwrap();
            assert!(t0.elapsed() < Duration::from_secs(2));
        });
    }
}

//! How a blocking caller waits for its answer, with one wake-up.
//!
//! A sync call's future runs on the calling thread ([`crate::runtime::block_on`]),
//! but the runtime's I/O driver runs on a worker. Were the connection's
//! socket registered with that driver, every answer would wake the worker
//! too, which would then wake the caller: a second thread switched in per
//! request (5–9 µs of CPU), and on a busy machine one more wait for a core.
//! psycopg and pymssql block in `recv` on the calling thread: one wake-up.
//!
//! So both drivers read and write through [`Socket`]: while the thread
//! polling it drives the future itself ([`Driving`]), the socket stays out
//! of the runtime's reactor and, finding nothing to read (or no room to
//! write), notes its descriptor ([`note_wait`]); the caller then blocks in
//! `poll(2)` on the noted descriptors and on its own [`Bell`] (rung by the
//! future's waker for anything else: timers, pool slots), and the kernel
//! wakes it alone when the answer arrives. A runtime task polling the same
//! socket (an asyncio caller) registers it with the reactor until a
//! driving caller has it again.

mod socket;
mod spin;

#[cfg(unix)]
use spin::{remember, spin_slot, RECENT_WAIT, SPINNING, SPIN_CEILING, SPIN_FLOOR, SPIN_RECORD};

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::Arc;
use std::task::Waker;

#[cfg(unix)]
pub use socket::Socket;
#[cfg(unix)]
pub use std::os::fd::RawFd;
#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[cfg(not(unix))]
pub type RawFd = i32;

thread_local! {
    /// The waker of the future this thread drives itself, while it does:
    /// the sockets it polls then wait for this thread.
    static DRIVING: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// What the caller waits on: its bell first (filled in by
    /// [`Bell::wait`]), then each socket the future found not ready, with
    /// the events it waits for.
    #[cfg(unix)]
    static WAITS: RefCell<Vec<libc::pollfd>> = RefCell::new(vec![NO_FD]);
    /// The wakers of the parts of the future that noted those waits, where
    /// they differ from the driven future's own (a combinator that polls
    /// only the parts woken, such as `FuturesUnordered`, tracks its parts
    /// by their wakers): woken after each wait, so every part that waited
    /// is polled again.
    static PARTS: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

#[cfg(unix)]
const NO_FD: libc::pollfd = libc::pollfd {
    fd: -1,
    events: 0,
    revents: 0,
};

/// While alive, this thread drives a future itself (woken by `waker`): the
/// sockets it polls note what they wait for instead of registering with
/// the runtime. Restores the previous state when dropped.
pub(crate) struct Driving(Option<Waker>);

impl Driving {
    pub(crate) fn start(waker: &Waker) -> Driving {
        Driving(DRIVING.with(|d| d.replace(Some(waker.clone()))))
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        DRIVING.with(|d| *d.borrow_mut() = self.0.take());
    }
}

/// Whether the thread polling now drives its future itself.
pub(crate) fn driving() -> bool {
    DRIVING.with(|d| d.borrow().is_some())
}

/// A socket found no answer to read (`libc::POLLIN`) or no room to write
/// (`libc::POLLOUT`) for the part of the driven future `waker` wakes: the
/// driving caller waits on it, then wakes that part.
#[cfg(unix)]
pub(crate) fn note_wait(fd: RawFd, events: i16, waker: &Waker) {
    WAITS.with(|w| {
        let mut w = w.borrow_mut();
        match w[1..].iter_mut().find(|p| p.fd == fd) {
            Some(p) => p.events |= events,
            None => w.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            }),
        }
    });
    let own = DRIVING.with(|d| d.borrow().as_ref().is_some_and(|top| top.will_wake(waker)));
    if !own {
        PARTS.with(|p| {
            let mut parts = p.borrow_mut();
            if !parts.iter().any(|w| w.will_wake(waker)) {
                parts.push(waker.clone());
            }
        });
    }
}

/// After a wait (or a poll nothing waits for): wake the parts of the future
/// that noted a wait, and forget the waits noted.
pub(crate) fn end_waits() {
    #[cfg(unix)]
    WAITS.with(|w| w.borrow_mut().truncate(1));
    let parts = PARTS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for part in parts {
        part.wake();
    }
}

/// The waits noted on this thread, set aside for the length of one
/// [`crate::runtime::block_on`]: a call nested inside another's poll (a
/// Python callback that calls dbflow) neither loses the outer call's noted
/// waits nor keeps its own; a poll that panicked leaves none behind.
pub(crate) struct OwnWaits {
    #[cfg(unix)]
    outer: Option<(Vec<libc::pollfd>, Vec<Waker>)>,
}

impl OwnWaits {
    pub(crate) fn begin() -> OwnWaits {
        #[cfg(unix)]
        {
            // Only a nested call has anything to set aside (no allocation
            // for the usual, outermost one).
            let noted =
                WAITS.with(|w| w.borrow().len() > 1) || PARTS.with(|p| !p.borrow().is_empty());
            let outer = noted.then(|| {
                (
                    WAITS.with(|w| std::mem::replace(&mut *w.borrow_mut(), vec![NO_FD])),
                    PARTS.with(|p| std::mem::take(&mut *p.borrow_mut())),
                )
            });
            OwnWaits { outer }
        }
        #[cfg(not(unix))]
        OwnWaits {}
    }
}

impl Drop for OwnWaits {
    fn drop(&mut self) {
        #[cfg(unix)]
        match self.outer.take() {
            Some((waits, parts)) => {
                WAITS.with(|w| *w.borrow_mut() = waits);
                PARTS.with(|p| *p.borrow_mut() = parts);
            }
            None => {
                WAITS.with(|w| w.borrow_mut().truncate(1));
                PARTS.with(|p| p.borrow_mut().clear());
            }
        }
    }
}

/// Whether the last poll of the future noted a socket to wait on.
pub(crate) fn has_waits() -> bool {
    #[cfg(unix)]
    return WAITS.with(|w| w.borrow().len() > 1);
    #[cfg(not(unix))]
    false
}

/// Read what the kernel holds for the socket now, without waiting:
/// `WouldBlock` when there is nothing. `Ok(0)` is the end of the stream.
#[cfg(unix)]
pub(crate) fn read_now(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes; `recv`
        // writes at most that many and returns how many it wrote.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A caller's own wake-up: an eventfd its waker writes to, polled beside
/// the socket. Shared by the wakers of one thread's calls; closed when the
/// last of them is gone (a waker kept by a timer may outlive the call).
#[cfg(unix)]
pub(crate) struct Bell {
    fd: OwnedFd,
}

#[cfg(unix)]
impl Bell {
    fn new() -> io::Result<Bell> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(Bell {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// This thread's bell (`None` when no eventfd could be made: the caller
    /// parks as before).
    pub(crate) fn of_thread() -> Option<Arc<Bell>> {
        thread_local! {
            static BELL: Option<Arc<Bell>> = Bell::new().ok().map(Arc::new);
        }
        BELL.with(Clone::clone)
    }

    pub(crate) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our own eventfd. A full
        // counter (EAGAIN) still leaves the bell readable: nothing to do.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    fn drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a valid u64; non-blocking.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Wait until a noted socket is ready (or closed, or failed) or the bell
    /// rings; a signal's interruption just returns (the caller polls again).
    /// [`Bell::check`] first, then asleep.
    pub(crate) fn wait(&self) {
        let started = std::time::Instant::now();
        if !self.check(started) {
            self.sleep(started);
        }
    }

    /// Where this thread's recent answers came within [`SPIN_CEILING`], its
    /// recent checks caught them ([`spin::SpinRecord`]) and a core is free,
    /// check for about twice that long without sleeping: an answer caught so
    /// needs no wake-up at all (a sleeping thread takes tens of microseconds
    /// to wake on an idle core, as long as a quick answer). Slower answers
    /// (a SQL Server round trip) are waited for asleep from the start, so no
    /// core is spent on them. True when a noted socket (or the bell) is
    /// ready; false when the wait is still to be slept ([`Bell::sleep`]).
    pub(crate) fn check(&self, started: std::time::Instant) -> bool {
        let expected = RECENT_WAIT.with(Cell::get);
        let record = SPIN_RECORD.with(Cell::get);
        if expected >= SPIN_CEILING {
            return false;
        }
        if !record.worth_trying() {
            SPIN_RECORD.with(|r| r.set(record.skipped()));
            return false;
        }
        if !spin_slot() {
            return false;
        }
        let budget = (expected * 2).clamp(SPIN_FLOOR, SPIN_CEILING);
        let ready = loop {
            if self.poll(Some(std::time::Duration::ZERO)) {
                break true;
            }
            if started.elapsed() >= budget {
                break false;
            }
            std::hint::spin_loop();
        };
        SPINNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        SPIN_RECORD.with(|r| r.set(record.after(ready)));
        if ready {
            remember(started.elapsed());
        }
        ready
    }

    /// Sleep until a noted socket is ready or the bell rings; `started` is
    /// when the wait began (before any check).
    pub(crate) fn sleep(&self, started: std::time::Instant) {
        self.poll(None);
        remember(started.elapsed());
    }

    /// Sleep until a noted socket is ready or the bell rings, but not past
    /// `until`: true when one is ready. For a caller that holds what it
    /// would rather not let go of for an answer expected that soon.
    pub(crate) fn sleep_until(
        &self,
        started: std::time::Instant,
        until: std::time::Instant,
    ) -> bool {
        let ready = self.poll(Some(
            until.saturating_duration_since(std::time::Instant::now()),
        ));
        if ready {
            remember(started.elapsed());
        }
        ready
    }

    /// One ppoll(2) of the noted sockets and the bell, for at most
    /// `timeout` (`None`: until one is ready); true when any is ready (or
    /// a signal interrupted it: the caller polls its future again).
    fn poll(&self, timeout: Option<std::time::Duration>) -> bool {
        let timeout = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        WAITS.with(|w| {
            let mut fds = w.borrow_mut();
            fds[0] = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `fds` is a valid array of `fds.len()` entries, the
            // timeout a valid timespec or null (no timeout when blocking:
            // the future's own deadlines are timers, which ring the bell).
            let n = unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    timeout
                        .as_ref()
                        .map_or(std::ptr::null(), |t| t as *const libc::timespec),
                    std::ptr::null(),
                )
            };
            if fds[0].revents != 0 {
                self.drain();
            }
            n != 0
        })
    }
}

/// How long this thread's recent waits for an answer took.
#[cfg(unix)]
pub(crate) fn expected_wait() -> std::time::Duration {
    RECENT_WAIT.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_waits_merge_per_socket_and_parts_are_woken_after() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let top = Arc::new(Count(0.into()));
        let part = Arc::new(Count(0.into()));
        let (top_waker, part_waker) = (Waker::from(top.clone()), Waker::from(part.clone()));
        end_waits();
        let _driving = Driving::start(&top_waker);
        note_wait(7, libc::POLLIN, &top_waker);
        note_wait(9, libc::POLLIN, &part_waker);
        note_wait(7, libc::POLLOUT, &part_waker);
        let noted: Vec<_> =
            WAITS.with(|w| w.borrow()[1..].iter().map(|p| (p.fd, p.events)).collect());
        assert_eq!(
            noted,
            [(7, libc::POLLIN | libc::POLLOUT), (9, libc::POLLIN)]
        );
        assert!(has_waits());
        end_waits();
        assert!(!has_waits());
        // The driven future is polled again anyway; its part is woken once,
        // as the runtime would have woken it.
        assert_eq!(top.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(part.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn driving_is_per_thread_and_restored() {
        assert!(!driving());
        {
            let _outer = Driving::start(Waker::noop());
            assert!(driving());
            {
                let _inner = Driving::start(Waker::noop());
            }
            assert!(driving(), "an inner guard restores the outer state");
            std::thread::spawn(|| assert!(!driving())).join().unwrap();
        }
        assert!(!driving());
    }

    #[test]
    fn read_now_reads_what_is_there_and_never_waits() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut buf = [std::mem::MaybeUninit::new(0u8); 8];
        let err = read_now(a.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        std::io::Write::write_all(&mut &b, b"hey").unwrap();
        assert_eq!(read_now(a.as_raw_fd(), &mut buf).unwrap(), 3);
        drop(b);
        assert_eq!(read_now(a.as_raw_fd(), &mut buf).unwrap(), 0);
    }

    #[test]
    fn the_bell_or_the_socket_ends_the_wait() {
        let bell = Bell::of_thread().expect("an eventfd");
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let ringer = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                bell.ring();
            })
        };
        end_waits();
        note_wait(a.as_raw_fd(), libc::POLLIN, Waker::noop());
        bell.wait();
        ringer.join().unwrap();
        std::io::Write::write_all(&mut &b, b"x").unwrap();
        bell.wait();
        end_waits();
    }
}

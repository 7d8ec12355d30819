//! How a blocking caller waits for its answer, with one wake-up.
//!
//! A sync call's future runs on the calling thread ([`crate::runtime::block_on`]),
//! but the runtime's I/O driver runs on a worker: when an answer arrives the
//! kernel wakes the worker, which wakes the caller — two scheduling hops,
//! each a wait for a core when the machine is busy (psycopg and pymssql
//! block in `recv` on the calling thread: one hop). So the sockets under
//! both drivers read straight from the kernel ([`read_now`], not through
//! the runtime's cached readiness) and, finding nothing, tell the waiting
//! thread which socket they wait on ([`note_read_wait`]); the caller then
//! blocks in `poll(2)` on that socket and on its own [`Bell`] (rung by the
//! future's waker for anything else: timers, pool slots), and the kernel
//! wakes it directly when the answer arrives. Nothing spins.
//!
//! The runtime's worker still learns the socket is readable (the socket
//! stays registered, for asyncio callers and for the waker), off the
//! caller's path.

use std::cell::Cell;
use std::io;
use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(unix)]
pub use std::os::fd::RawFd;
#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[cfg(not(unix))]
pub type RawFd = i32;

thread_local! {
    /// The socket the future being polled on this thread found empty.
    static READ_WAIT: Cell<Option<RawFd>> = const { Cell::new(None) };
}

/// A socket found nothing to read and registered for readiness: a caller
/// blocking on this thread may wait on it directly.
pub fn note_read_wait(fd: RawFd) {
    READ_WAIT.with(|w| w.set(Some(fd)));
}

/// The socket noted since the last call, if any.
pub(crate) fn take_read_wait() -> Option<RawFd> {
    READ_WAIT.with(Cell::take)
}

/// Read what the kernel holds for the socket now, without waiting and
/// without the runtime's readiness cache: `WouldBlock` when there is
/// nothing. `Ok(0)` is the end of the stream.
#[cfg(unix)]
pub fn read_now(fd: RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
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

/// A socket read the way this module describes (straight from the kernel,
/// the waiting caller told which socket); any other stream reads as usual.
pub trait ReadNow: tokio::io::AsyncRead + Unpin {
    fn poll_read_now(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self).poll_read(cx, buf)
    }
}

impl ReadNow for tokio::io::DuplexStream {}

#[cfg(unix)]
impl ReadNow for tokio::net::TcpStream {
    fn poll_read_now(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let fd = self.as_raw_fd();
        loop {
            // SAFETY: `recv` initializes the bytes it reports, no more.
            match read_now(fd, unsafe { buf.unfilled_mut() }) {
                Ok(n) => {
                    // SAFETY: the first `n` unfilled bytes were just written.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Nothing there, but the runtime may still hold the socket as
            // readable (it learns of reads it did not make only by trying):
            // its own read clears that, or finds what has just arrived.
            let mut probe = [0u8; 512];
            let room = buf.remaining().min(probe.len());
            match self.try_read(&mut probe[..room]) {
                Ok(n) => {
                    buf.put_slice(&probe[..n]);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.poll_read_ready(cx) {
                Poll::Pending => {
                    note_read_wait(fd);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
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

    /// Wait until `socket` is readable (or closed, or failed) or the bell
    /// rings; a signal's interruption just returns (the caller polls again).
    /// Where this thread's recent answers came within [`SPIN_CEILING`], its
    /// recent checks caught them ([`SpinRecord`]) and a core is free, it
    /// first checks without sleeping for about twice that long: an answer
    /// caught so needs no wake-up at all (a sleeping thread takes tens of
    /// microseconds to wake on an idle core, as long as a quick answer).
    /// Slower answers (a SQL Server round trip) are waited for asleep from
    /// the start, so no core is spent on them.
    pub(crate) fn wait(&self, socket: RawFd) {
        let started = std::time::Instant::now();
        let expected = RECENT_WAIT.with(Cell::get);
        let record = SPIN_RECORD.with(Cell::get);
        let quick = expected < SPIN_CEILING;
        if quick && !record.worth_trying() {
            SPIN_RECORD.with(|r| r.set(record.skipped()));
        } else if quick && spin_slot() {
            let budget = (expected * 2).clamp(SPIN_FLOOR, SPIN_CEILING);
            let ready = loop {
                if self.poll(socket, 0) {
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
                return;
            }
        }
        self.poll(socket, -1);
        remember(started.elapsed());
    }

    /// One poll(2) of the socket and the bell; true when either is ready.
    fn poll(&self, socket: RawFd, timeout_ms: i32) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: socket,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd entries. No timeout when blocking: the
        // future's own deadlines are timers, which ring the bell.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if fds[1].revents != 0 {
            self.drain();
        }
        n != 0
    }
}

/// Answers expected within this are checked for before sleeping.
#[cfg(unix)]
const SPIN_CEILING: std::time::Duration = std::time::Duration::from_micros(50);
#[cfg(unix)]
const SPIN_FLOOR: std::time::Duration = std::time::Duration::from_micros(10);

thread_local! {
    /// How long this thread's recent waits for an answer took (a moving
    /// average; starting at the floor, so the first waits check first).
    #[cfg(unix)]
    static RECENT_WAIT: Cell<std::time::Duration> = const { Cell::new(SPIN_FLOOR) };
}

thread_local! {
    #[cfg(unix)]
    static SPIN_RECORD: Cell<SpinRecord> = const { Cell::new(SpinRecord::FRESH) };
}

/// Whether this thread's checks before sleeping have been catching answers.
///
/// A check that misses is worse than none on a busy machine: the thread
/// used its share of the core spinning, so when it then sleeps and the
/// answer wakes it, the scheduler lets a CPU-bound neighbour finish its
/// slice first (milliseconds; measured with `perf sched timehist`, issue
/// #29). So checking stops once more than about one in ten misses, and is
/// tried again only now and then (one wait in [`SpinRecord::RETRY_EVERY`]),
/// a rare enough miss to stay out of the 99th percentile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SpinRecord {
    /// Moving hit rate, out of [`SpinRecord::FULL`].
    hits: u16,
    /// Waits since checking stopped.
    skipped: u16,
}

impl SpinRecord {
    const FULL: u16 = 1024;
    /// Check while the hit rate is at least ~90%.
    const THRESHOLD: u16 = 922;
    const RETRY_EVERY: u16 = 512;
    const FRESH: SpinRecord = SpinRecord {
        hits: SpinRecord::FULL,
        skipped: 0,
    };

    /// Whether to check before sleeping this time.
    fn worth_trying(self) -> bool {
        self.hits >= Self::THRESHOLD || self.skipped >= Self::RETRY_EVERY
    }

    /// The record after a check before sleeping: `caught` whether it
    /// caught the answer.
    fn after(self, caught: bool) -> SpinRecord {
        if self.hits < Self::THRESHOLD && caught {
            // A retry that caught it: start believing again.
            return SpinRecord::FRESH;
        }
        let hits = self.hits - self.hits / 16 + if caught { Self::FULL / 16 } else { 0 };
        SpinRecord {
            hits: hits.min(Self::FULL),
            skipped: 0,
        }
    }

    /// The record after a wait that did not check.
    fn skipped(self) -> SpinRecord {
        SpinRecord {
            skipped: self.skipped.saturating_add(1),
            ..self
        }
    }
}

#[cfg(unix)]
fn remember(waited: std::time::Duration) {
    RECENT_WAIT.with(|r| r.set((r.get() * 3 + waited) / 4));
}

/// Threads checking without sleeping right now: at most one fewer than the
/// cores, so a core is always left for the rest of the process.
#[cfg(unix)]
static SPINNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(unix)]
fn spin_slot() -> bool {
    static ALLOWED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let allowed = *ALLOWED.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
    });
    if SPINNING.fetch_add(1, std::sync::atomic::Ordering::AcqRel) < allowed {
        true
    } else {
        SPINNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checking_before_sleeping_stops_when_it_misses_and_is_retried_rarely() {
        let mut record = SpinRecord::FRESH;
        for _ in 0..100 {
            record = record.after(true);
        }
        assert!(record.worth_trying(), "every check caught its answer");
        // One miss in twenty keeps it on; a run of misses turns it off.
        for i in 0..200 {
            record = record.after(i % 20 != 0);
        }
        assert!(record.worth_trying(), "95% caught: {record:?}");
        let mut misses = 0;
        while record.worth_trying() {
            record = record.after(false);
            misses += 1;
        }
        assert!(misses <= 3, "stopped after {misses} misses in a row");
        // Off: skipped waits count up to one retry.
        for _ in 0..SpinRecord::RETRY_EVERY {
            assert!(!record.worth_trying());
            record = record.skipped();
        }
        assert!(
            record.worth_trying(),
            "retried after {} waits",
            SpinRecord::RETRY_EVERY
        );
        // A retry that misses waits another round; one that catches resumes.
        let missed = record.after(false);
        assert!(!missed.worth_trying());
        assert_eq!(record.after(true), SpinRecord::FRESH);
    }

    #[test]
    fn a_noted_socket_is_taken_once() {
        assert_eq!(take_read_wait(), None);
        note_read_wait(7);
        assert_eq!(take_read_wait(), Some(7));
        assert_eq!(take_read_wait(), None);
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
        bell.wait(a.as_raw_fd());
        ringer.join().unwrap();
        std::io::Write::write_all(&mut &b, b"x").unwrap();
        bell.wait(a.as_raw_fd());
    }
}

//! The one process-wide tokio runtime that runs all database I/O.
//!
//! A forked child inherits the parent's runtime without its threads, so the
//! runtime is per process: a child builds its own on first use, and the
//! inherited one is leaked, never dropped (dropping would wait for threads
//! that do not exist in the child). At interpreter exit `shutdown()` stops
//! the worker threads before Python finalizes, so no background task can
//! touch a finalizing interpreter.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The id of this process (changes in a forked child).
pub fn pid() -> u32 {
    std::process::id()
}

fn slot() -> std::sync::MutexGuard<'static, Option<(u32, Arc<Runtime>)>> {
    RUNTIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shared runtime, started on first use in this process. Failing to
/// start it (no threads left) is an error for the caller, never a panic.
pub fn runtime() -> Result<Arc<Runtime>> {
    let pid = pid();
    let mut slot = slot();
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
    }
    if let Some((_, inherited)) = slot.take() {
        std::mem::forget(inherited); // the parent's: no threads here
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dbflow-io")
        // Connection set-up futures (TLS, authentication, type resolution)
        // are deep; the 2 MiB default overflows on worker threads.
        .thread_stack_size(8 * 1024 * 1024)
        .build()
        .map_err(|e| Error::connection(format!("the dbflow I/O runtime could not start: {e}")))?;
    let rt = Arc::new(rt);
    *slot = Some((pid, rt.clone()));
    Ok(rt)
}

/// The runtime if it was started in this process (for cleanup paths that
/// must not start one).
pub fn get() -> Option<Arc<Runtime>> {
    slot()
        .as_ref()
        .filter(|(owner, _)| *owner == pid())
        .map(|(_, rt)| rt.clone())
}

/// Stop the runtime's threads (interpreter exit). Work still queued gets
/// `grace` to finish; a later call to `runtime()` starts a fresh one.
pub fn shutdown(grace: Duration) {
    let taken = {
        let mut slot = slot();
        match slot.take() {
            Some((owner, rt)) if owner == pid() => Some(rt),
            Some(other) => {
                std::mem::forget(other);
                None
            }
            None => None,
        }
    };
    if let Some(rt) = taken {
        match Arc::try_unwrap(rt) {
            Ok(rt) => rt.shutdown_timeout(grace),
            // Still in use by another thread: leave it running.
            Err(shared) => std::mem::forget(shared),
        }
    }
}

/// Run `f`, turning a panic inside it into an error: a bug in dbflow or a
/// driver must reach Python as a `DatabaseConnectionError` that says so,
/// never as a panic. The connection the work used is discarded (its
/// request is still marked in flight), and the operation counts as
/// possibly executed, so nothing retries it.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| Err(panicked(p)))
}

/// [`catch_panic`] for a future (the async bindings).
pub async fn catch_panic_async<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(panicked(p)))
}

fn panicked(payload: Box<dyn std::any::Any + Send>) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    let mut e = Error::connection(format!(
        "dbflow failed internally ({what}); the connection was discarded and the \
         operation may or may not have run. This is a bug: please report it with this message"
    ));
    e.maybe_executed = true;
    e
}

/// How long a waiting caller keeps its core before parking: a loopback
/// round trip answers within tens of microseconds, and waking a parked
/// thread costs about as much again.
const SPIN: Duration = Duration::from_micros(40);

/// Callers spinning right now; at most one fewer than the cores spin, so
/// the runtime's worker always has a core to deliver the answer on.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

struct Signal {
    woken: AtomicBool,
    thread: std::thread::Thread,
    /// The caller's bell, rung when it waits in `poll(2)` on a socket
    /// ([`crate::wait`]) rather than parked.
    #[cfg(unix)]
    bell: Option<Arc<crate::wait::Bell>>,
    #[cfg(unix)]
    polling: AtomicBool,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst pairs with the caller's store to `polling` then load of
        // `woken`: one of the two sides sees the other, so a wake is never
        // lost between the caller's check and its poll.
        self.woken.store(true, Ordering::SeqCst);
        #[cfg(unix)]
        if self.polling.load(Ordering::SeqCst) {
            if let Some(bell) = &self.bell {
                bell.ring();
            }
        }
        self.thread.unpark();
    }
}

fn spinners_allowed() -> usize {
    static ALLOWED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
    })
}

/// Drive `fut` to completion on the calling thread, inside `rt`'s context
/// (its timers, and the I/O of asyncio callers, run on the runtime's
/// workers). A future waiting for a socket's answer is waited for on that
/// socket itself, so the kernel wakes this thread directly when it
/// arrives ([`crate::wait`]); any other wait spins briefly (yielding the
/// core), then parks.
pub fn block_on<F: Future>(rt: &Runtime, fut: F) -> F::Output {
    finish(rt, std::pin::pin!(fut), Quickly::Waits(None))
}

/// What [`poll_quickly`] got to.
pub enum Quickly<T> {
    /// The future finished.
    Done(T),
    /// It waits. `Some(when)`: for a socket, since `when`, and whether to
    /// check before sleeping was already decided (the next wait sleeps).
    Waits(Option<Instant>),
}

/// Poll `fut` on the calling thread for as long as it can go on without
/// sleeping: each time it waits for a socket, check for the answer the way
/// a blocking caller would before sleeping ([`crate::wait::Bell::check`]),
/// and poll again when it came. Returns at the first wait that would
/// sleep, or for anything but a socket, and then [`finish`] goes on.
///
/// The caller may hold a lock here that it would let go of to sleep (the
/// GIL): a small call whose answer comes within tens of microseconds then
/// never lets go of it, so it does not wait to get it back (Python's
/// switch interval, 5 ms, when another thread took it meanwhile). Where
/// letting go has been costing the caller that much, it passes `hold_for`:
/// an answer this thread expects within that is slept for holding it, up
/// to `hold_for` (a `poll(2)` with a timeout: no core is spent on it).
pub fn poll_quickly<F: Future + ?Sized>(
    rt: &Runtime,
    mut fut: std::pin::Pin<&mut F>,
    hold_for: Duration,
) -> Quickly<F::Output> {
    let _context = rt.enter();
    #[cfg(unix)]
    let Some(bell) = crate::wait::Bell::of_thread() else {
        return Quickly::Waits(None);
    };
    let _own_waits = crate::wait::OwnWaits::begin();
    loop {
        // A waker that does nothing: what wakes the future meanwhile is
        // seen by polling it again, here or in `finish`.
        let polled = {
            let _driving = crate::wait::Driving::start(Waker::noop());
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        if let Poll::Ready(value) = polled {
            return Quickly::Done(value);
        }
        if !crate::wait::has_waits() {
            return Quickly::Waits(None);
        }
        let started = Instant::now();
        #[cfg(unix)]
        let caught = bell.check(started)
            || (crate::wait::expected_wait() < hold_for
                && bell.sleep_until(started, started + hold_for));
        #[cfg(not(unix))]
        let caught = false;
        crate::wait::end_waits();
        if !caught {
            return Quickly::Waits(Some(started));
        }
    }
}

/// Drive `fut` to completion as [`block_on`] does, after [`poll_quickly`]
/// got to `after`.
pub fn finish<F: Future + ?Sized>(
    rt: &Runtime,
    mut fut: std::pin::Pin<&mut F>,
    after: Quickly<F::Output>,
) -> F::Output {
    let mut decided = match after {
        Quickly::Done(value) => return value,
        Quickly::Waits(since) => since,
    };
    let _context = rt.enter();
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
        #[cfg(unix)]
        bell: crate::wait::Bell::of_thread(),
        #[cfg(unix)]
        polling: AtomicBool::new(false),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    // Sockets wait for this thread only where it can wait on them: with a
    // bell to be woken by the waker as well.
    #[cfg(unix)]
    let drives_sockets = signal.bell.is_some();
    #[cfg(not(unix))]
    let drives_sockets = false;
    let _own_waits = crate::wait::OwnWaits::begin();
    loop {
        let polled = {
            let _driving = drives_sockets.then(|| crate::wait::Driving::start(&waker));
            fut.as_mut().poll(&mut cx)
        };
        if let Poll::Ready(value) = polled {
            return value; // `_own_waits` forgets what is still noted
        }
        // Only the wait right after `poll_quickly`'s check was decided there.
        let checked_since = decided.take();
        if crate::wait::has_waits() {
            #[cfg(unix)]
            wait_on_sockets(&signal, checked_since);
        } else {
            wait_for(&signal);
        }
        crate::wait::end_waits();
    }
}

/// Wait until a socket the future waits on is ready or the waker rings
/// (anything else the future waits for). `decided`: the wait began then,
/// and was already checked for (it is slept).
#[cfg(unix)]
fn wait_on_sockets(signal: &Signal, decided: Option<Instant>) {
    let Some(bell) = &signal.bell else { return };
    signal.polling.store(true, Ordering::SeqCst);
    if !signal.woken.load(Ordering::SeqCst) {
        match decided {
            Some(started) => bell.sleep(started),
            None => bell.wait(),
        }
    }
    signal.polling.store(false, Ordering::SeqCst);
    signal.woken.store(false, Ordering::SeqCst);
}

/// Poll `fut` once inside `rt`'s context without waiting: lets it send what
/// it can between two pieces of the caller's own work. A later
/// [`block_on`] polls it again with a waker that waits.
pub fn poll_once<F: Future + Unpin>(rt: &Runtime, fut: &mut F) -> Poll<F::Output> {
    let _context = rt.enter();
    // Nothing waits on the sockets it notes: the caller's next block_on
    // polls again and waits then.
    #[cfg(unix)]
    let _driving =
        crate::wait::Bell::of_thread().map(|_| crate::wait::Driving::start(Waker::noop()));
    let polled = std::pin::Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()));
    crate::wait::end_waits();
    polled
}

fn wait_for(signal: &Signal) {
    if SPINNING.fetch_add(1, Ordering::AcqRel) < spinners_allowed() {
        let started = Instant::now();
        while started.elapsed() < SPIN {
            if signal.woken.swap(false, Ordering::AcqRel) {
                SPINNING.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            std::thread::yield_now();
        }
    }
    SPINNING.fetch_sub(1, Ordering::AcqRel);
    // A wake between the last check and here leaves the unpark token set,
    // so park returns at once; spurious returns just poll again.
    while !signal.woken.swap(false, Ordering::AcqRel) {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_that_is_never_retried() {
        let caught = catch_panic::<()>(|| panic!("the driver broke")).unwrap_err();
        assert_eq!(caught.kind, crate::error::ErrorKind::Connection);
        assert!(
            caught.message.contains("the driver broke"),
            "{}",
            caught.message
        );
        assert!(caught.maybe_executed);
        let rt = runtime().expect("a runtime");
        let code = 7;
        let caught = block_on(
            &rt,
            catch_panic_async::<()>(async move { panic!("async {code}") }),
        )
        .unwrap_err();
        assert!(caught.message.contains("async 7"), "{}", caught.message);
        assert_eq!(catch_panic(|| Ok(3)).unwrap(), 3);
    }

    #[test]
    fn block_on_drives_io_timers_and_wakes_from_other_threads() {
        let rt = runtime().expect("a runtime");
        // A timer of the runtime, awaited from outside it.
        let slept = block_on(&rt, async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            7
        });
        assert_eq!(slept, 7);
        // An answer from another thread long after the spin: the caller parks
        // and is woken.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(42).expect("receiver alive");
        });
        assert_eq!(block_on(&rt, rx).expect("sent"), 42);
        sender.join().expect("sender");
        // Many quick answers in a row (the spin path), from the runtime itself.
        for i in 0..200 {
            let handle = rt.spawn(async move { i * 2 });
            assert_eq!(block_on(&rt, handle).expect("joined"), i * 2);
        }
        // Callers on several threads at once, more than there are cores.
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let rt = rt.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| block_on(&rt, rt.spawn(async move { t * i })).expect("joined"))
                        .sum::<i32>()
                })
            })
            .collect();
        let total: i32 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(total, (0..8).map(|t| t * 4950).sum::<i32>());
        assert_eq!(SPINNING.load(Ordering::Acquire), 0);
    }
}

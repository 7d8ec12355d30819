//! The socket both drivers read and write through (see the module above).

#![cfg(unix)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::{driving, note_wait, read_now};

/// A connected, non-blocking TCP or Unix socket, registered with the
/// runtime's reactor only while a runtime task polls it.
pub struct Socket {
    /// The reactor's registration, made on a runtime task's first wait and
    /// dropped (deregistered) on a driving caller's. Declared before `fd`,
    /// so it is dropped before the descriptor closes.
    runtime: Option<AsyncFd<Descriptor>>,
    fd: OwnedFd,
}

/// The descriptor as the reactor borrows it (the socket owns it).
struct Descriptor(RawFd);

impl AsRawFd for Descriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Socket {
    /// Take a connected socket out of the runtime's hands (tokio's streams
    /// give theirs up non-blocking and deregistered).
    pub fn new(fd: OwnedFd) -> Socket {
        Socket { runtime: None, fd }
    }

    pub fn from_tokio(stream: tokio::net::TcpStream) -> io::Result<Socket> {
        Ok(Socket::new(stream.into_std()?.into()))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Read what the kernel holds, without waiting (`WouldBlock`: nothing).
    pub fn try_read(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        read_now(self.raw_fd(), buf)
    }

    /// Hand the kernel what it takes now, without waiting.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
            let n = unsafe {
                libc::send(
                    self.raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Ready once the socket may be read (`Interest::READABLE`) or written
    /// (`WRITABLE`) without blocking; the caller then tries again. A driving
    /// caller is told to wait on the descriptor itself: `Pending`, with the
    /// wait noted and no waker kept.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        if driving() {
            self.runtime = None;
            let events = if interest.is_readable() {
                libc::POLLIN
            } else {
                libc::POLLOUT
            };
            note_wait(self.raw_fd(), events, cx.waker());
            return Poll::Pending;
        }
        let registered = match &mut self.runtime {
            Some(registered) => registered,
            slot => {
                if tokio::runtime::Handle::try_current().is_err() {
                    // Registering outside a runtime would panic.
                    return Poll::Ready(Err(io::Error::other(
                        "a dbflow connection was used outside dbflow's I/O runtime",
                    )));
                }
                let both = Interest::READABLE | Interest::WRITABLE;
                let fd = Descriptor(self.fd.as_raw_fd());
                // SAFETY: `self.fd` owns the descriptor, never changes, and
                // outlives the registration (dropped first, see `runtime`).
                slot.insert(unsafe { AsyncFd::register_with_interest(fd, both) }?)
            }
        };
        let ready = if interest.is_readable() {
            registered.poll_read_ready(cx)
        } else {
            registered.poll_write_ready(cx)
        };
        match ready {
            Poll::Ready(Ok(mut guard)) => {
                // The caller's retry decides: a readiness it finds stale
                // brings it back here to register its waker.
                guard.clear_ready();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// No more writes (the peer reads the end of the stream).
    pub fn shutdown(&self) -> io::Result<()> {
        // SAFETY: shutdown(2) on our own descriptor.
        if unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_WR) } == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            e => Err(e),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // SAFETY: `recv` initializes the bytes it reports, no more.
            match self.try_read(unsafe { buf.unfilled_mut() }) {
                Ok(n) => {
                    // SAFETY: the first `n` unfilled bytes were just written.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            std::task::ready!(self.poll_ready(cx, Interest::READABLE))?;
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
            std::task::ready!(self.poll_ready(cx, Interest::WRITABLE))?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{finish, poll_quickly, Quickly};
    use crate::wait::{end_waits, has_waits, Driving, WAITS};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::runtime::Runtime;

    fn pair() -> (Socket, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Socket::new(ours.into()), theirs)
    }

    #[test]
    fn a_driving_caller_waits_on_the_descriptor_and_nothing_registers() {
        let (mut socket, theirs) = pair();
        let _driving = Driving::start(std::task::Waker::noop());
        end_waits();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = [0u8; 4];
        let mut into = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut socket)
            .poll_read(&mut cx, &mut into)
            .is_pending());
        assert!(socket.runtime.is_none(), "no reactor registration");
        let noted: Vec<_> =
            WAITS.with(|w| w.borrow()[1..].iter().map(|p| (p.fd, p.events)).collect());
        assert_eq!(noted, [(socket.raw_fd(), libc::POLLIN)]);
        std::io::Write::write_all(&mut &theirs, b"hi").unwrap();
        let got = Pin::new(&mut socket).poll_read(&mut cx, &mut into);
        assert!(matches!(got, Poll::Ready(Ok(()))), "{got:?}");
        assert_eq!(into.filled(), b"hi");
        end_waits();
        assert!(!has_waits());
    }

    #[test]
    fn a_runtime_task_registers_and_a_driving_caller_takes_it_back() {
        let rt = crate::runtime::runtime().expect("a runtime");
        let (socket, theirs) = pair();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::io::Write::write_all(&mut &theirs, b"ping").unwrap();
            let mut back = [0u8; 4];
            std::io::Read::read_exact(&mut &theirs, &mut back).unwrap();
            (back, theirs)
        });
        // An asyncio caller's task: woken by the reactor.
        let mut socket = rt.block_on(async move {
            let mut got = [0u8; 4];
            let mut socket = socket;
            socket.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            assert!(socket.runtime.is_some(), "registered while a task polls it");
            socket.write_all(b"pong").await.unwrap();
            socket
        });
        let (back, _theirs) = writer.join().unwrap();
        assert_eq!(back, *b"pong");
        // Then a sync caller: the registration goes.
        let _driving = Driving::start(std::task::Waker::noop());
        end_waits();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = [0u8; 1];
        let mut into = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut socket)
            .poll_read(&mut cx, &mut into)
            .is_pending());
        assert!(socket.runtime.is_none());
        end_waits();
    }

    #[test]
    fn a_blocking_caller_drives_sockets_inside_a_combinator_that_polls_only_woken_parts() {
        use futures_util::StreamExt;
        use tokio::io::AsyncReadExt;
        let rt = crate::runtime::runtime().expect("a runtime");
        let (sockets, peers): (Vec<_>, Vec<_>) = (0..3).map(|_| pair()).unzip();
        let writer = std::thread::spawn(move || {
            for (i, peer) in peers.iter().enumerate().rev() {
                std::thread::sleep(std::time::Duration::from_millis(10));
                std::io::Write::write_all(&mut &*peer, &[i as u8]).unwrap();
            }
            peers
        });
        let reads: futures_util::stream::FuturesUnordered<_> = sockets
            .into_iter()
            .map(|mut socket| async move { socket.read_u8().await.unwrap() })
            .collect();
        let mut got = crate::runtime::block_on(&rt, reads.collect::<Vec<u8>>());
        got.sort();
        assert_eq!(got, [0, 1, 2]);
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_call_nested_in_a_poll_keeps_the_outer_calls_waits() {
        use tokio::io::AsyncReadExt;
        let rt = crate::runtime::runtime().expect("a runtime");
        let (mut outer, outer_peer) = pair();
        let (mut inner, inner_peer) = pair();
        std::io::Write::write_all(&mut &inner_peer, b"i").unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let caller = std::thread::spawn(move || {
            let mut nested = None;
            let got = crate::runtime::block_on(
                &rt,
                std::future::poll_fn(|cx| {
                    let mut buf = [0u8; 1];
                    let mut into = ReadBuf::new(&mut buf);
                    if let Poll::Ready(r) = Pin::new(&mut outer).poll_read(cx, &mut into) {
                        r.unwrap();
                        return Poll::Ready(into.filled()[0]);
                    }
                    // After the outer read noted its wait: a nested call
                    // (a Python callback calling dbflow) runs to its end.
                    if nested.is_none() {
                        nested = Some(crate::runtime::block_on(&rt, inner.read_u8()).unwrap());
                    }
                    Poll::Pending
                }),
            );
            done_tx.send((got, nested)).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::io::Write::write_all(&mut &outer_peer, b"o").unwrap();
        let got = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the outer call lost its wait and never woke");
        assert_eq!(got, (b'o', Some(b'i')));
        caller.join().unwrap();
    }

    /// Runs `test` on a fresh thread: its record of recent waits says
    /// answers come quickly, so it checks before sleeping.
    fn on_a_fresh_thread(test: impl FnOnce(&Runtime) + Send + 'static) {
        std::thread::spawn(move || test(&crate::runtime::runtime().expect("a runtime")))
            .join()
            .unwrap();
    }

    /// Our end of a socket pair whose peer writes `byte` 5 ms after `go`
    /// is sent; the peer's thread hands its end back when joined.
    fn answered_after_go(byte: u8) -> (Socket, mpsc::Sender<()>, JoinHandle<UnixStream>) {
        let (ours, theirs) = pair();
        let (go, answer_now) = mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            answer_now.recv().unwrap();
            std::thread::sleep(Duration::from_millis(5));
            std::io::Write::write_all(&mut &theirs, &[byte]).unwrap();
            theirs
        });
        (ours, go, writer)
    }

    #[test]
    fn polled_quickly_an_answer_that_is_there_when_checked_needs_no_sleep() {
        on_a_fresh_thread(|rt| {
            // The answer arrives after the first poll found none and noted
            // the wait: the check sees it, and the future ends without
            // sleeping. The check needs the one free core's spin slot, which
            // another test's wait may hold for up to 50 µs: tried again then.
            let caught = (0..20).any(|_| {
                let (mut ours, theirs) = pair();
                let mut answered = false;
                let mut fut = std::pin::pin!(std::future::poll_fn(|cx| {
                    let mut buf = [0u8; 1];
                    let mut into = ReadBuf::new(&mut buf);
                    if let Poll::Ready(r) = Pin::new(&mut ours).poll_read(cx, &mut into) {
                        r.unwrap();
                        return Poll::Ready(into.filled()[0]);
                    }
                    if !std::mem::replace(&mut answered, true) {
                        std::io::Write::write_all(&mut &theirs, b"q").unwrap();
                    }
                    Poll::Pending
                }));
                match poll_quickly(rt, fut.as_mut(), Duration::ZERO) {
                    Quickly::Done(got) => {
                        assert_eq!(got, b'q');
                        true
                    }
                    waits => {
                        assert_eq!(finish(rt, fut, waits), b'q');
                        false
                    }
                }
            });
            assert!(caught, "no check caught an answer already there");
        });
    }

    #[test]
    fn polled_quickly_a_slow_answer_is_left_to_sleep_for_and_checked_once() {
        on_a_fresh_thread(|rt| {
            let (mut ours, go, writer) = answered_after_go(b's');
            let mut fut = std::pin::pin!(ours.read_u8());
            // No answer comes while it is checked for: handed over.
            let waits = poll_quickly(rt, fut.as_mut(), Duration::ZERO);
            assert!(matches!(waits, Quickly::Waits(Some(_))));
            let record = crate::wait::spin::SPIN_RECORD.with(std::cell::Cell::get);
            go.send(()).unwrap();
            assert_eq!(finish(rt, fut, waits).unwrap(), b's');
            // `finish` slept at once: the record saw one check, not two.
            assert_eq!(
                crate::wait::spin::SPIN_RECORD.with(std::cell::Cell::get),
                record
            );
            drop(writer.join().unwrap());
        });
    }

    #[test]
    fn polled_quickly_an_answer_expected_within_the_hold_is_slept_for_there() {
        on_a_fresh_thread(|rt| {
            let (mut ours, go, writer) = answered_after_go(b'h');
            go.send(()).unwrap();
            // Far longer than any check: only a sleep within the hold
            // catches it. (A hold it runs past would hand the wait over.)
            let mut fut = std::pin::pin!(ours.read_u8());
            match poll_quickly(rt, fut.as_mut(), Duration::from_secs(10)) {
                Quickly::Done(got) => assert_eq!(got.unwrap(), b'h'),
                Quickly::Waits(_) => panic!("a 5 ms answer was handed over, not slept for"),
            }
            drop(writer.join().unwrap());
        });
    }

    #[test]
    fn outside_any_runtime_a_wait_is_an_error_not_a_panic() {
        let (mut socket, _theirs) = pair();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let got = socket.poll_ready(&mut cx, Interest::READABLE);
        assert!(matches!(got, Poll::Ready(Err(_))), "{got:?}");
    }
}

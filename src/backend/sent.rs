//! Did a failed request reach the server? The one rule that decides whether
//! dbflow may send it again.
//!
//! Only a request none of whose bytes the kernel accepted provably never
//! reached the server: the socket was already reset when the write began,
//! or the connection failed while dbflow was still reading what an earlier
//! request left behind. Everything else — a reset or EOF after the request
//! was written, before the first answer byte, mid-result or mid-transaction
//! — may have run it, whatever the I/O error is called (tiberius reports a
//! read that failed mid-token as a broken pipe, the kind a refused write
//! has). So the seam counts the bytes each connection writes and compares
//! the count around every operation ([`settle`]); a driver's own guess is
//! never used.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, ErrorKind};

/// Where an operation stood when it failed, for what the caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A statement on its own: it commits as it runs.
    Autocommit,
    /// A statement inside an open transaction.
    InTransaction,
    /// The COMMIT that ends a transaction.
    Commit,
}

/// Decide, once an operation failed, whether its request may have reached
/// the server, and say so in the message. `before`/`after`: the
/// connection's count of bytes written around the operation (`None`: not
/// counted, so nothing is provably unsent).
pub fn settle(e: &mut Error, before: Option<u64>, after: Option<u64>, phase: Phase) {
    if e.kind != ErrorKind::Connection || e.settled {
        return;
    }
    e.settled = true;
    let unsent = matches!((before, after), (Some(b), Some(a)) if a == b);
    e.not_sent = unsent;
    e.maybe_executed = !unsent;
    let consequence = match (phase, unsent) {
        // Sent again on a fresh connection by the engine, where it may be.
        (Phase::Autocommit, true) => return,
        (Phase::Autocommit, false) => {
            "the request had been sent, so the statement may have run on the server: \
             check its effect before running it again"
        }
        (Phase::InTransaction, _) => {
            "the transaction is lost: the server rolls back everything it had not committed"
        }
        (Phase::Commit, false) => {
            "COMMIT had been sent, so the transaction may have been saved: check before \
             running it again"
        }
        (Phase::Commit, true) => {
            "COMMIT was never sent: the server rolls the transaction back, nothing was saved"
        }
    };
    e.message = format!("{} (connection lost); {consequence}", e.message);
}

/// A socket that counts the bytes the kernel accepted for sending (for
/// drivers whose socket dbflow opens itself).
pub struct Counted<S> {
    inner: S,
    written: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Self {
        Counted {
            inner,
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A handle that reads the count while the driver owns the socket.
    pub fn counter(&self) -> WriteCount {
        WriteCount(self.written.clone())
    }
}

/// The number of bytes a [`Counted`] socket has written so far.
#[derive(Clone)]
pub struct WriteCount(Arc<AtomicU64>);

impl WriteCount {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            this.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn lost() -> Error {
        Error::io("I/O error: Broken pipe", io::ErrorKind::BrokenPipe)
    }

    fn settled(before: u64, after: u64, phase: Phase) -> Error {
        let mut e = lost();
        settle(&mut e, Some(before), Some(after), phase);
        e
    }

    #[test]
    fn nothing_written_is_not_sent_whatever_the_io_error_says() {
        for kind in [
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
        ] {
            let mut e = Error::io("I/O error", kind);
            settle(&mut e, Some(40), Some(40), Phase::Autocommit);
            assert!(e.not_sent && !e.maybe_executed, "{kind:?}");
        }
    }

    #[test]
    fn any_byte_written_may_have_run_even_a_broken_pipe() {
        // tiberius turns a read that failed mid-result into a broken pipe.
        let mut e = settled(40, 41, Phase::Autocommit);
        assert!(!e.not_sent && e.maybe_executed);
        assert!(e.message.contains("may have run"), "{}", e.message);
        // Settled twice (nested operations), judged and said once.
        settle(&mut e, Some(41), Some(41), Phase::Autocommit);
        assert_eq!(e.message.matches("may have run").count(), 1);
        assert!(!e.not_sent && e.maybe_executed);
    }

    #[test]
    fn a_driver_message_cannot_pass_for_a_judgement() {
        let mut e = Error::io("I/O error: connection lost", io::ErrorKind::BrokenPipe);
        settle(&mut e, Some(7), Some(7), Phase::Autocommit);
        assert!(e.not_sent && !e.maybe_executed, "{}", e.message);
    }

    #[test]
    fn what_a_transaction_is_told() {
        for (before, after) in [(1, 1), (1, 2)] {
            let e = settled(before, after, Phase::InTransaction);
            assert!(
                e.message.contains("the transaction is lost"),
                "{}",
                e.message
            );
        }
        let e = settled(1, 2, Phase::Commit);
        assert!(e.maybe_executed && e.message.contains("may have been saved"));
        let e = settled(1, 1, Phase::Commit);
        assert!(!e.maybe_executed && e.message.contains("nothing was saved"));
    }

    #[test]
    fn an_uncounted_connection_never_counts_as_unsent() {
        let mut e = lost();
        settle(&mut e, None, None, Phase::Autocommit);
        assert!(!e.not_sent && e.maybe_executed);
    }

    #[test]
    fn errors_the_server_answered_are_left_alone() {
        let mut e = Error::query("syntax error");
        settle(&mut e, Some(1), Some(9), Phase::Autocommit);
        assert!(!e.not_sent && !e.maybe_executed);
        assert_eq!(e.message, "syntax error");
    }

    #[tokio::test]
    async fn counts_what_the_kernel_accepted() {
        let (a, mut b) = tokio::io::duplex(8);
        let mut counted = Counted::new(a);
        let count = counted.counter();
        counted.write_all(b"hello").await.unwrap();
        assert_eq!(count.get(), 5);
        let mut buf = [0u8; 5];
        tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf, b"hello");
    }
}

//! The driver's view of dbflow's socket (`crate::wait::Socket`), handed to
//! every new connection by the vendored driver's socket hook.

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};

use sqlx_core::io::ReadBuf;
use tokio::io::Interest;

use crate::wait::Socket;

struct PgSocket(Socket);

/// The socket a new connection reads and writes through.
pub fn own_socket(fd: OwnedFd) -> io::Result<Box<dyn sqlx_core::net::Socket>> {
    Ok(Box::new(PgSocket(Socket::new(fd))))
}

impl sqlx_core::net::Socket for PgSocket {
    fn try_read(&mut self, buf: &mut dyn ReadBuf) -> io::Result<usize> {
        // SAFETY: recv(2) only writes to the spare capacity, and only the
        // bytes it reports are committed.
        let n = self
            .0
            .try_read(unsafe { buf.chunk_mut().as_uninit_slice_mut() })?;
        unsafe { buf.advance_mut(n) };
        Ok(n)
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_ready(cx, Interest::READABLE)
    }

    fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_ready(cx, Interest::WRITABLE)
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.shutdown())
    }
}

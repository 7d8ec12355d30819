//! A server that stopped answering is found by the kernel, within a
//! deadline (`<DB>_SOCKET_TIMEOUT`), whatever dbflow is doing on the
//! connection. A network path that dies without a reset (a cable pulled, a
//! firewall dropping packets, a paused VM) otherwise leaves a call waiting
//! until the kernel gives up retransmitting: 15 minutes and more on Linux.
//!
//! Two kernel rules, set on every TCP connection once it is open:
//! - `TCP_USER_TIMEOUT`: data sent and not acknowledged for the deadline
//!   ends the connection (a request swallowed on its way).
//! - keepalive probes, the first after a third of the deadline of silence:
//!   a connection waiting for an answer sends nothing, so only probes can
//!   find that the other end is gone; with the user timeout set, Linux ends
//!   it once nothing was heard for the deadline.
//!
//! A long statement on a healthy network is never cut: the server's kernel
//! acknowledges the probes while the statement runs.

use std::time::Duration;

/// Arm both rules on a connected socket. Sockets that do not cross a
/// network (a PostgreSQL Unix socket) have nothing to watch.
#[cfg(target_os = "linux")]
pub fn watch(fd: i32, deadline: Duration) -> std::io::Result<()> {
    if !is_tcp(fd) {
        return Ok(());
    }
    let secs = deadline.as_secs().max(1);
    let idle = (secs / 3).max(1);
    let interval = (secs / 6).max(1);
    let millis = u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX);
    set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, clamp(idle))?;
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, clamp(interval))?;
    // Probes until the user timeout decides (it takes over from the count).
    set(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPCNT,
        clamp(secs / interval + 1),
    )?;
    set(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, millis as i32)
}

#[cfg(not(target_os = "linux"))]
pub fn watch(_fd: i32, _deadline: Duration) -> std::io::Result<()> {
    Ok(())
}

/// How long ago the server last acknowledged anything on this socket
/// (`None`: unknown, or not a TCP socket).
#[cfg(target_os = "linux")]
pub fn unheard_for(fd: i32) -> Option<Duration> {
    if !is_tcp(fd) {
        return None;
    }
    // SAFETY: tcp_info is plain data; the kernel writes at most `len` bytes
    // of it to a socket descriptor we hold.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| Duration::from_millis(u64::from(info.tcpi_last_ack_recv)))
}

#[cfg(not(target_os = "linux"))]
pub fn unheard_for(_fd: i32) -> Option<Duration> {
    None
}

/// A connection failure on a socket the server had not acknowledged for
/// (nearly) the whole deadline is the kernel's verdict: it stopped
/// answering. Milliseconds of slack for the kernel's clock ticks.
pub fn stopped_answering(unheard: Option<Duration>, deadline: Duration) -> bool {
    unheard.is_some_and(|quiet| quiet + Duration::from_millis(250) >= deadline)
}

#[cfg(target_os = "linux")]
fn clamp(value: u64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[cfg(target_os = "linux")]
fn set(fd: i32, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: an int option on a descriptor we hold.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(target_os = "linux")]
fn is_tcp(fd: i32) -> bool {
    // SAFETY: sockaddr_storage is plain data, large enough for any family.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    rc == 0 && matches!(i32::from(addr.ss_family), libc::AF_INET | libc::AF_INET6)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn get(fd: i32, level: i32, name: i32) -> i32 {
        let mut value = 0i32;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        let rc =
            unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
        assert_eq!(rc, 0);
        value
    }

    #[test]
    fn a_tcp_socket_gets_probes_and_a_user_timeout_from_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let fd = client.as_raw_fd();
        watch(fd, Duration::from_secs(30)).unwrap();
        assert_eq!(get(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 10);
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 5);
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 7);
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT), 30_000);
        // Just connected: heard from within the deadline.
        assert!(!stopped_answering(unheard_for(fd), Duration::from_secs(30)));
    }

    #[test]
    fn a_short_deadline_probes_every_second() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let fd = client.as_raw_fd();
        watch(fd, Duration::from_millis(2500)).unwrap();
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 1);
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 1);
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT), 2500);
    }

    #[test]
    fn a_unix_socket_has_nothing_to_watch() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        watch(a.as_raw_fd(), Duration::from_secs(30)).unwrap();
        assert_eq!(unheard_for(a.as_raw_fd()), None);
    }

    #[test]
    fn the_verdict_needs_silence_for_the_deadline() {
        let deadline = Duration::from_secs(3);
        assert!(stopped_answering(
            Some(Duration::from_millis(2900)),
            deadline
        ));
        assert!(!stopped_answering(
            Some(Duration::from_millis(1200)),
            deadline
        ));
        assert!(!stopped_answering(None, deadline));
    }
}

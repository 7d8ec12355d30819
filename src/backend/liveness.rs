//! Is a pooled connection still open? Asked of the socket without I/O
//! (go-sql-driver/mysql's `conncheck`): a server that ended the session
//! (`pg_terminate_backend`, `KILL`, a restart, a failover) has closed its
//! end, and the kernel already knows. A round trip is only needed when the
//! socket holds bytes nobody asked for.

/// What the socket says about an idle connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Open, nothing waiting: as good as the last round trip.
    Open,
    /// The server closed it (or it failed): discard without a word to the server.
    Closed,
    /// Bytes arrived that no request asked for (a notice, a termination
    /// message not yet followed by the close): only a ping can tell.
    Unsure,
}

/// Look at a socket descriptor without reading from it.
#[cfg(unix)]
pub fn check(fd: Option<i32>) -> Liveness {
    // No descriptor to look at: nothing is known beyond the last round trip
    // (the idle pre-ping still applies).
    let Some(fd) = fd else {
        return Liveness::Open;
    };
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, timeout 0: poll only reads the descriptor's
    // state. The descriptor belongs to a connection we hold exclusively.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready < 0 {
        return Liveness::Unsure;
    }
    classify(poll.revents)
}

#[cfg(not(unix))]
pub fn check(_fd: Option<i32>) -> Liveness {
    Liveness::Open
}

#[cfg(unix)]
fn classify(revents: libc::c_short) -> Liveness {
    if revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Liveness::Closed
    } else if revents & libc::POLLIN != 0 {
        Liveness::Unsure
    } else {
        Liveness::Open
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn settle(client: &TcpStream, want: Liveness) -> Liveness {
        // Loopback delivers within microseconds; allow for a loaded machine.
        for _ in 0..200 {
            let seen = check(Some(client.as_raw_fd()));
            if seen == want {
                return seen;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        check(Some(client.as_raw_fd()))
    }

    #[test]
    fn an_open_quiet_socket_is_open() {
        let (client, _server) = pair();
        assert_eq!(check(Some(client.as_raw_fd())), Liveness::Open);
    }

    #[test]
    fn a_socket_the_peer_closed_is_closed() {
        let (client, server) = pair();
        drop(server);
        assert_eq!(settle(&client, Liveness::Closed), Liveness::Closed);
    }

    #[test]
    fn a_farewell_message_then_close_is_closed_though_bytes_wait() {
        let (client, mut server) = pair();
        server.write_all(b"E\0\0\0\x05terminating").unwrap();
        drop(server);
        assert_eq!(settle(&client, Liveness::Closed), Liveness::Closed);
    }

    #[test]
    fn unasked_bytes_on_an_open_socket_need_a_ping() {
        let (client, mut server) = pair();
        server.write_all(b"N notice").unwrap();
        assert_eq!(settle(&client, Liveness::Unsure), Liveness::Unsure);
        drop(server);
    }

    #[test]
    fn no_descriptor_adds_nothing_to_the_last_round_trip() {
        assert_eq!(check(None), Liveness::Open);
    }
}

use std::collections::BTreeMap;
use std::ops::{ControlFlow, Deref, DerefMut};
use std::str::FromStr;

use futures_channel::mpsc::UnboundedSender;
use futures_util::SinkExt;
use log::Level;
use sqlx_core::bytes::Buf;

use crate::connection::tls::MaybeUpgradeTls;
use crate::error::Error;
use crate::message::{
    BackendMessage, BackendMessageFormat, EncodeMessage, FrontendMessage, Notice, Notification,
    ParameterStatus, ReceivedMessage,
};
#[cfg(not(unix))]
use crate::net;
use crate::net::{BufferedSocket, Socket};
use crate::{PgConnectOptions, PgDatabaseError};

// the stream is a separate type from the connection to uphold the invariant where an instantiated
// [PgConnection] is a **valid** connection to postgres

// when a new connection is asked for, we work directly on the [PgStream] type until the
// connection is fully established

// in other words, `self` in any PgConnection method is a live connection to postgres that
// is fully prepared to receive queries

pub struct PgStream {
    // A trait object is okay here as the buffering amortizes the overhead of both the dynamic
    // function call as well as the syscall.
    inner: BufferedSocket<Box<dyn Socket>>,

    // buffer of unreceived notification messages from `PUBLISH`
    // this is set when creating a PgListener and only written to if that listener is
    // re-used for query execution in-between receiving messages
    pub(crate) notifications: Option<UnboundedSender<Notification>>,

    pub(crate) parameter_statuses: BTreeMap<String, String>,

    pub(crate) server_version_num: Option<u32>,

    // dbflow: the descriptor of the TCP or Unix socket under any TLS, so
    // the pool can check without I/O whether the server closed it.
    pub(crate) raw_fd: Option<i32>,

    // dbflow: how many bytes the kernel has accepted for sending on the
    // socket under any TLS, so a caller can tell a request none of which
    // left this process from one that may have reached the server.
    pub(crate) bytes_written: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,

    // dbflow: the server's notices (NoticeResponse: RAISE NOTICE / INFO /
    // WARNING, ...) since the last `PgConnection::take_notices`, in arrival
    // order, at most `MAX_KEPT_NOTICES` of them; past that they are counted
    // in `notices_dropped`.
    pub(crate) notices: Vec<Notice>,
    pub(crate) notices_dropped: u64,
}

/// dbflow: the most notices a connection keeps between two
/// `PgConnection::take_notices` calls; later ones are only counted, so a
/// function that raises millions of notices cannot exhaust memory.
pub(crate) const MAX_KEPT_NOTICES: usize = 10_000;

/// dbflow: a socket that counts the bytes it hands to the kernel.
#[cfg(unix)]
struct CountingSocket<S> {
    inner: S,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[cfg(unix)]
impl<S: Socket> Socket for CountingSocket<S> {
    fn try_read(&mut self, buf: &mut dyn sqlx_core::io::ReadBuf) -> std::io::Result<usize> {
        self.inner.try_read(buf)
    }

    fn try_write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.try_write(buf)?;
        self.written
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    fn poll_read_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }

    fn poll_write_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.poll_write_ready(cx)
    }

    fn poll_flush(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_shutdown(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }
}

/// dbflow: the socket `PgConnection::set_socket_hook`'s hook makes of a
/// just-opened stream, or the stream itself.
#[cfg(unix)]
fn own_tcp(stream: tokio::net::TcpStream) -> std::io::Result<OwnSocket> {
    Ok(OwnSocket(match super::SOCKET_HOOK.get() {
        Some(hook) => hook(stream.into_std()?.into())?,
        None => Box::new(stream),
    }))
}

/// dbflow: as `own_tcp`, for a Unix socket.
#[cfg(unix)]
fn own_unix(stream: tokio::net::UnixStream) -> std::io::Result<OwnSocket> {
    Ok(OwnSocket(match super::SOCKET_HOOK.get() {
        Some(hook) => hook(stream.into_std()?.into())?,
        None => Box::new(stream),
    }))
}

/// dbflow: the socket a connection reads and writes (see `own_tcp`).
#[cfg(unix)]
struct OwnSocket(Box<dyn Socket>);

#[cfg(unix)]
impl Socket for OwnSocket {
    fn try_read(&mut self, buf: &mut dyn sqlx_core::io::ReadBuf) -> std::io::Result<usize> {
        self.0.try_read(buf)
    }

    fn try_write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }

    fn poll_read_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        self.0.poll_read_ready(cx)
    }

    fn poll_write_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        self.0.poll_write_ready(cx)
    }

    fn poll_flush(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        self.0.poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        self.0.poll_shutdown(cx)
    }
}

impl PgStream {
    // dbflow: the socket is opened here (as `net::connect_tcp`/`connect_uds`
    // open it on tokio) to keep its descriptor, and handed to dbflow's
    // socket where `PgConnection::set_socket_hook` set one.
    #[cfg(unix)]
    pub(super) async fn connect(options: &PgConnectOptions) -> Result<Self, Error> {
        use crate::net::WithSocket;
        use std::os::fd::AsRawFd;

        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (socket_result, raw_fd) = match options.fetch_socket() {
            Some(ref path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                let fd = stream.as_raw_fd();
                let inner = own_unix(stream)?;
                (MaybeUpgradeTls(options).with_socket(CountingSocket { inner, written: written.clone() }).await, fd)
            }
            None => {
                let stream = tokio::net::TcpStream::connect((options.host.as_str(), options.port)).await?;
                // dbflow: as libpq does. A request written in several parts
                // (COPY data, then CopyDone) must not wait for the server's
                // delayed ACK behind Nagle's algorithm.
                stream.set_nodelay(true)?;
                let fd = stream.as_raw_fd();
                let inner = own_tcp(stream)?;
                (MaybeUpgradeTls(options).with_socket(CountingSocket { inner, written: written.clone() }).await, fd)
            }
        };

        let socket = socket_result?;

        Ok(Self {
            inner: BufferedSocket::new(socket),
            notifications: None,
            parameter_statuses: BTreeMap::default(),
            server_version_num: None,
            raw_fd: Some(raw_fd),
            bytes_written: Some(written),
            notices: Vec::new(),
            notices_dropped: 0,
        })
    }

    #[cfg(not(unix))]
    pub(super) async fn connect(options: &PgConnectOptions) -> Result<Self, Error> {
        let socket_result = match options.fetch_socket() {
            Some(ref path) => net::connect_uds(path, MaybeUpgradeTls(options)).await?,
            None => net::connect_tcp(&options.host, options.port, MaybeUpgradeTls(options)).await?,
        };

        let socket = socket_result?;

        Ok(Self {
            inner: BufferedSocket::new(socket),
            notifications: None,
            parameter_statuses: BTreeMap::default(),
            server_version_num: None,
            raw_fd: None,
            bytes_written: None,
            notices: Vec::new(),
            notices_dropped: 0,
        })
    }

    #[inline(always)]
    pub(crate) fn write_msg(&mut self, message: impl FrontendMessage) -> Result<(), Error> {
        self.write(EncodeMessage(message))
    }

    pub(crate) async fn send<T>(&mut self, message: T) -> Result<(), Error>
    where
        T: FrontendMessage,
    {
        self.write_msg(message)?;
        self.flush().await?;
        Ok(())
    }

    // Expect a specific type and format
    pub(crate) async fn recv_expect<B: BackendMessage>(&mut self) -> Result<B, Error> {
        self.recv().await?.decode()
    }

    pub(crate) async fn recv_unchecked(&mut self) -> Result<ReceivedMessage, Error> {
        // NOTE: to not break everything, this should be cancel-safe;
        // DO NOT modify `buf` unless a full message has been read
        self.inner
            .try_read(|buf| {
                // all packets in postgres start with a 5-byte header
                // this header contains the message type and the total length of the message
                let Some(mut header) = buf.get(..5) else {
                    return Ok(ControlFlow::Continue(5));
                };

                let format = BackendMessageFormat::try_from_u8(header.get_u8())?;

                let message_len = header.get_u32() as usize;

                let expected_len = message_len
                    .checked_add(1)
                    // this shouldn't really happen but is mostly a sanity check
                    .ok_or_else(|| {
                        err_protocol!("message_len + 1 overflows usize: {message_len}")
                    })?;

                if buf.len() < expected_len {
                    return Ok(ControlFlow::Continue(expected_len));
                }

                // `buf` SHOULD NOT be modified ABOVE this line

                // pop off the format code since it's not counted in `message_len`
                buf.advance(1);

                // consume the message, including the length prefix
                let mut contents = buf.split_to(message_len).freeze();

                // cut off the length prefix
                contents.advance(4);

                Ok(ControlFlow::Break(ReceivedMessage { format, contents }))
            })
            .await
    }

    // Get the next message from the server
    // May wait for more data from the server
    pub(crate) async fn recv(&mut self) -> Result<ReceivedMessage, Error> {
        loop {
            let message = self.recv_unchecked().await?;

            match message.format {
                BackendMessageFormat::ErrorResponse => {
                    // An error returned from the database server.
                    return Err(message.decode::<PgDatabaseError>()?.into());
                }

                BackendMessageFormat::NotificationResponse => {
                    if let Some(buffer) = &mut self.notifications {
                        let notification: Notification = message.decode()?;
                        let _ = buffer.send(notification).await;

                        continue;
                    }
                }

                BackendMessageFormat::ParameterStatus => {
                    // informs the frontend about the current (initial)
                    // setting of backend parameters

                    let ParameterStatus { name, value } = message.decode()?;
                    // TODO: handle `client_encoding`, `DateStyle` change

                    match name.as_str() {
                        "server_version" => {
                            self.server_version_num = parse_server_version(&value);
                        }
                        _ => {
                            self.parameter_statuses.insert(name, value);
                        }
                    }

                    continue;
                }

                BackendMessageFormat::NoticeResponse => {
                    // dbflow: the notice is kept for `PgConnection::take_notices`
                    // (dbflow logs it itself), so sqlx's own event is at DEBUG.
                    // A kept notice gets its own copy of its bytes: the
                    // received message shares the read buffer's allocation,
                    // which a kept notice would otherwise pin.
                    let keep = self.notices.len() < MAX_KEPT_NOTICES;
                    let notice: Notice = if keep {
                        ReceivedMessage {
                            format: message.format,
                            contents: sqlx_core::bytes::Bytes::copy_from_slice(&message.contents),
                        }
                        .decode()?
                    } else {
                        message.decode()?
                    };

                    let log_is_enabled = log::log_enabled!(
                        target: "sqlx::postgres::notice",
                        Level::Debug
                    ) || sqlx_core::private_tracing_dynamic_enabled!(
                        target: "sqlx::postgres::notice",
                        tracing::Level::DEBUG
                    );
                    if log_is_enabled {
                        sqlx_core::private_tracing_dynamic_event!(
                            target: "sqlx::postgres::notice",
                            tracing::Level::DEBUG,
                            message = notice.message()
                        );
                    }

                    if keep {
                        self.notices.push(notice);
                    } else {
                        self.notices_dropped += 1;
                    }

                    continue;
                }

                _ => {}
            }

            return Ok(message);
        }
    }
}

impl Deref for PgStream {
    type Target = BufferedSocket<Box<dyn Socket>>;

    #[inline]
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for PgStream {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

// reference:
// https://github.com/postgres/postgres/blob/6feebcb6b44631c3dc435e971bd80c2dd218a5ab/src/interfaces/libpq/fe-exec.c#L1030-L1065
fn parse_server_version(s: &str) -> Option<u32> {
    let mut parts = Vec::<u32>::with_capacity(3);

    let mut from = 0;
    let mut chs = s.char_indices().peekable();
    while let Some((i, ch)) = chs.next() {
        match ch {
            '.' => {
                if let Ok(num) = u32::from_str(&s[from..i]) {
                    parts.push(num);
                    from = i + 1;
                } else {
                    break;
                }
            }
            _ if ch.is_ascii_digit() => {
                if chs.peek().is_none() {
                    if let Ok(num) = u32::from_str(&s[from..]) {
                        parts.push(num);
                    }
                    break;
                }
            }
            _ => {
                if let Ok(num) = u32::from_str(&s[from..i]) {
                    parts.push(num);
                }
                break;
            }
        };
    }

    let version_num = match parts.as_slice() {
        [major, minor, rev] => (100 * major + minor) * 100 + rev,
        [major, minor] if *major >= 10 => 100 * 100 * major + minor,
        [major, minor] => (100 * major + minor) * 100,
        [major] => 100 * 100 * major,
        _ => return None,
    };

    Some(version_num)
}

#[cfg(test)]
mod tests {
    use super::parse_server_version;

    #[test]
    fn test_parse_server_version_num() {
        // old style
        assert_eq!(parse_server_version("9.6.1"), Some(90601));
        // new style
        assert_eq!(parse_server_version("10.1"), Some(100001));
        // old style without minor version
        assert_eq!(parse_server_version("9.6devel"), Some(90600));
        // new style without minor version, e.g.  */
        assert_eq!(parse_server_version("10devel"), Some(100000));
        assert_eq!(parse_server_version("13devel87"), Some(130000));
        // unknown
        assert_eq!(parse_server_version("unknown"), None);
    }
}

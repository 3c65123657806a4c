//! The subscriber's own Redis connection: commands written by hand, replies parsed in place
//! by [`resp`](super::resp) from one reusable buffer, so a published message costs one
//! parse and no allocation on its way to the workers.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::resp::{self, Push, RespError};
use crate::Error;

/// Room kept free for each read.
const READ_CHUNK: usize = 64 * 1024;

/// Where the subscriber connects, from the configured URL.
#[derive(Clone)]
pub(crate) struct Endpoint {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
}

impl Endpoint {
    /// The TCP address and credentials of `client`'s URL.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a URL that is not plain TCP (`redis://`).
    pub fn of(client: &redis::Client) -> Result<Self, Error> {
        let info = client.get_connection_info();
        let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Err(Error::InvalidConfig {
                setting: "redis",
                reason: "cluster mode connects to Redis over TCP: use a redis://host:port URL".into(),
            });
        };
        let settings = info.redis_settings();
        Ok(Endpoint {
            host: host.clone(),
            port: *port,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
        })
    }
}

/// A connection in subscribed mode.
pub(crate) struct Subscription {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    /// Received bytes; `buf[start..]` is not parsed yet.
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
}

fn protocol_error(e: RespError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Subscription {
    /// Connects and authenticates (when the URL has a password).
    pub async fn connect(endpoint: &Endpoint) -> io::Result<Subscription> {
        let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut conn =
            Subscription { reader, writer, buf: Vec::with_capacity(READ_CHUNK), start: 0, out: Vec::new() };
        if let Some(password) = &endpoint.password {
            match &endpoint.username {
                Some(user) => conn.send(&[b"AUTH", user.as_bytes(), password.as_bytes()]).await?,
                None => conn.send(&[b"AUTH", password.as_bytes()]).await?,
            }
            loop {
                match conn.next().map_err(protocol_error)? {
                    Some(Push::Ok) => break,
                    Some(Push::Error(e)) => {
                        let reason = String::from_utf8_lossy(e).into_owned();
                        return Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
                    }
                    Some(_) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected answer to AUTH"))
                    }
                    None => conn.fill().await?,
                }
            }
        }
        Ok(conn)
    }

    /// Writes one command.
    pub async fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.out.clear();
        resp::command(&mut self.out, args);
        self.writer.write_all(&self.out).await
    }

    /// Writes `name` with every one of `channels` as arguments.
    pub async fn send_channels(&mut self, name: &[u8], channels: &[String]) -> io::Result<()> {
        let mut args: Vec<&[u8]> = Vec::with_capacity(channels.len() + 1);
        args.push(name);
        args.extend(channels.iter().map(|c| c.as_bytes()));
        self.send(&args).await
    }

    /// Reads more bytes. Cancel-safe: nothing is lost if the future is dropped.
    ///
    /// # Errors
    ///
    /// The read's error, or `UnexpectedEof` when Redis closed the connection.
    pub async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.capacity() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_CHUNK);
        match self.reader.read_buf(&mut self.buf).await? {
            0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection")),
            _ => Ok(()),
        }
    }

    /// The next complete reply already received, if any.
    ///
    /// # Errors
    ///
    /// [`RespError`] when the stream is not what a subscriber receives.
    pub fn next(&mut self) -> Result<Option<Push<'_>>, RespError> {
        let Subscription { buf, start, .. } = self;
        match resp::parse(&buf[*start..])? {
            Some((push, used)) => {
                *start += used;
                Ok(Some(push))
            }
            None => Ok(None),
        }
    }
}

//! The subscriber's own Redis connection: commands written by hand, replies parsed in place
//! by [`resp`](super::resp) from one reusable buffer, so a published message costs one
//! parse and no allocation on its way to the workers. [`Endpoint`](super::connect::Endpoint)
//! opens it.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::resp::{self, Push, RespError};

/// Room kept free for each read.
const READ_CHUNK: usize = 64 * 1024;

/// A connection in subscribed mode.
pub(crate) struct Subscription {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    /// Received bytes; `buf[start..]` is not parsed yet.
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
}

impl Subscription {
    /// Takes over a connected `stream`.
    pub fn new(stream: TcpStream) -> Subscription {
        let (reader, writer) = stream.into_split();
        Subscription { reader, writer, buf: Vec::with_capacity(READ_CHUNK), start: 0, out: Vec::new() }
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

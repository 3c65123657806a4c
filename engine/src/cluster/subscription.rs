//! The subscriber's own Redis connection: commands written by hand, replies parsed in place
//! by [`resp`](super::resp) from one reusable buffer, so a published message costs one
//! parse and no allocation on its way to the workers. [`Endpoint`](super::connect::Endpoint)
//! opens it.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::resp::{self, Push, RespError};

/// Room kept free for each read.
const READ_CHUNK: usize = 64 * 1024;
/// The buffer grows to hold the largest reply whole; once that is parsed, anything beyond
/// this is given back, so one large message does not pin its size for the connection's life.
const RETAINED_CAPACITY: usize = 4 * READ_CHUNK;

/// Prepares `buf` (whose `buf[start..]` is not parsed yet) for a read of at least
/// [`READ_CHUNK`] bytes: drops what is parsed when that frees enough, and shrinks a buffer
/// grown past [`RETAINED_CAPACITY`] once what it holds is small again.
fn make_room(buf: &mut Vec<u8>, start: &mut usize) {
    let unparsed = buf.len() - *start;
    let oversized = buf.capacity() > RETAINED_CAPACITY;
    if unparsed == 0 {
        buf.clear();
        *start = 0;
    } else if *start > buf.capacity() / 2 || (oversized && unparsed < READ_CHUNK) {
        buf.drain(..*start);
        *start = 0;
    }
    if oversized && buf.len() < READ_CHUNK {
        buf.shrink_to(buf.len() + READ_CHUNK);
    }
    buf.reserve(READ_CHUNK);
}

/// A connection in subscribed mode.
pub(crate) struct Subscription {
    reader: Box<dyn AsyncRead + Unpin + Send>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    /// Received bytes; `buf[start..]` is not parsed yet.
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
}

impl Subscription {
    /// Takes over a connected `stream`.
    pub fn new(stream: TcpStream) -> Subscription {
        let (reader, writer) = stream.into_split();
        Subscription::of(Box::new(reader), Box::new(writer))
    }

    /// Takes over a connected, encrypted `stream` (`rediss`).
    pub fn over_tls(stream: TlsStream<TcpStream>) -> Subscription {
        let (reader, writer) = tokio::io::split(stream);
        Subscription::of(Box::new(reader), Box::new(writer))
    }

    fn of(
        reader: Box<dyn AsyncRead + Unpin + Send>,
        writer: Box<dyn AsyncWrite + Unpin + Send>,
    ) -> Subscription {
        Subscription { reader, writer, buf: Vec::with_capacity(READ_CHUNK), start: 0, out: Vec::new() }
    }

    /// Writes one command.
    pub async fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.out.clear();
        resp::command(&mut self.out, args);
        self.writer.write_all(&self.out).await
    }

    /// Adds one command to what [`Subscription::flush`] writes: many commands, one write.
    pub fn queue(&mut self, args: &[&[u8]]) {
        resp::command(&mut self.out, args);
    }

    /// Writes the commands queued since the last write.
    pub async fn flush(&mut self) -> io::Result<()> {
        let written = self.writer.write_all(&self.out).await;
        self.out.clear();
        written
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
        make_room(&mut self.buf, &mut self.start);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_shrinks_back_once_a_large_reply_is_parsed() {
        let (mut buf, mut start) = (Vec::new(), 0);
        make_room(&mut buf, &mut start);
        let small = buf.capacity();
        assert!((READ_CHUNK..=RETAINED_CAPACITY).contains(&small));

        // A 10 MB reply arrived whole, followed by the start of the next one.
        buf.resize(10_000_000, b'x');
        buf.extend_from_slice(b"*3\r\n");
        start = 10_000_000;
        make_room(&mut buf, &mut start);
        assert!(start == 0 && buf == b"*3\r\n", "the unparsed bytes are not all that is kept");
        assert!(buf.capacity() <= RETAINED_CAPACITY, "{} bytes kept", buf.capacity());
        assert!(buf.capacity() - buf.len() >= READ_CHUNK);

        // Parsed to the end: back to the size of a read.
        buf.resize(10_000_000, b'x');
        start = buf.len();
        make_room(&mut buf, &mut start);
        assert_eq!((start, buf.len()), (0, 0));
        assert!(buf.capacity() <= RETAINED_CAPACITY, "{} bytes kept", buf.capacity());
    }

    #[test]
    fn a_large_reply_still_arriving_keeps_its_bytes() {
        let (mut buf, mut start) = (vec![b'x'; 5_000_000], 0);
        make_room(&mut buf, &mut start);
        assert_eq!(buf.len(), 5_000_000);
        assert!(buf.capacity() >= 5_000_000 + READ_CHUNK);
    }
}

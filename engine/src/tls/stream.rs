//! One TLS connection over a non-blocking socket: rustls's `ServerConnection` read and
//! written only when the socket is ready, never waiting.
//!
//! Bounded: before the handshake completes a client may send at most
//! [`HANDSHAKE_BUDGET`] bytes (a ClientHello is a few hundred bytes to 2 KiB; the
//! acceptor's `handshake_timeout` bounds the time). Decrypted input waits in rustls only up
//! to its 16 KiB plaintext limit: the socket is read again only once that is taken.
//! Encrypted output waits in rustls up to [`SEND_BUFFER_LIMIT`], and only while the socket
//! is full: [`TlsStream::write_vectored`] takes nothing new until that is written, so the
//! worker's output queue (bounded by `max_buffered_bytes`) holds the rest.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

/// Most bytes a client may send before its TLS handshake completes.
pub(crate) const HANDSHAKE_BUDGET: usize = 32 * 1024;

/// Most plaintext rustls takes in at once to encrypt (and so, about, the encrypted output
/// it holds for a full socket).
const SEND_BUFFER_LIMIT: usize = 64 * 1024;

/// A TLS server connection over a non-blocking TCP socket.
pub(crate) struct TlsStream {
    conn: ServerConnection,
    tcp: TcpStream,
    /// Bytes read from the client while the handshake was under way.
    handshake_read: usize,
}

impl TlsStream {
    /// A connection on `tcp` made from `config`, its handshake not started.
    pub fn new(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsStream> {
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        Ok(TlsStream { conn, tcp, handshake_read: 0 })
    }

    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.tcp
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether encrypted output waits for the socket.
    pub fn has_pending(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes the encrypted output rustls holds; `WouldBlock` when the socket is full with
    /// some left.
    pub fn write_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends close_notify (as much as the socket takes) and shuts the write side down.
    pub fn shutdown_write(&mut self) {
        self.conn.send_close_notify();
        let _ = self.write_pending();
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    /// Reads one batch of records from the socket and processes them (answering what the
    /// handshake needs). `Ok(0)` at EOF; `InvalidData` for a TLS failure (the alert is sent)
    /// or a handshake over its budget.
    fn read_records(&mut self) -> io::Result<usize> {
        let n = loop {
            match self.conn.read_tls(&mut self.tcp) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        if n == 0 {
            return Ok(0);
        }
        if self.conn.is_handshaking() {
            self.handshake_read += n;
            if self.handshake_read > HANDSHAKE_BUDGET {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the TLS handshake took more than {HANDSHAKE_BUDGET} bytes"),
                ));
            }
        }
        if let Err(e) = self.conn.process_new_packets() {
            // The alert that says why.
            let _ = self.write_pending();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        match self.write_pending() {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }
}

impl Read for TlsStream {
    /// Plaintext: what rustls holds first, then the socket. `WouldBlock` only when both are
    /// empty (edge-triggered readiness: nothing is left behind unseen); `Ok(0)` at
    /// close_notify or EOF.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // TCP closed without close_notify: for a WebSocket, its close frame says
                // whether the end was clean.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.read_records()? == 0 {
                return Ok(0);
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts what rustls takes of `bufs` (up to [`SEND_BUFFER_LIMIT`]) once the output
    /// it held is written, and writes it; `WouldBlock` while earlier output waits.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_pending()?;
        let n = self.conn.writer().write_vectored(bufs)?;
        match self.write_pending() {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle `wss://` connection holds beyond a plain one starts here: the rustls
    /// connection's own struct (its buffers and keys are allocated apart from it).
    #[test]
    fn the_tls_state_is_measured() {
        let size = std::mem::size_of::<TlsStream>();
        eprintln!("TlsStream: {size} bytes");
        assert!(size <= 1280, "TlsStream takes {size} bytes");
    }
}

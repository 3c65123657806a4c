//! One TLS connection over a non-blocking socket: rustls's unbuffered
//! `UnbufferedServerConnection`, read and written only when the socket is ready, never
//! waiting.
//!
//! The I/O buffers are the thread's, not the connection's: records are read from the socket
//! into a per-thread scratch buffer and decrypted there, and output is encrypted into another
//! and written from it. A connection keeps only what is left over ([`Leftovers`]: a partial
//! record, records and plaintext its caller had no room for, records the socket did not
//! take), boxed only while anything is held and freed once emptied, so an idle connection
//! holds no buffer. What it still holds is rustls's state (keys, the TLS 1.3 traffic
//! state), measured by `tests::the_tls_state_is_measured`.
//!
//! Bounded: before the handshake completes a client may send at most [`HANDSHAKE_BUDGET`]
//! bytes (a ClientHello is a few hundred bytes to 2 KiB; the acceptor's `handshake_timeout`
//! bounds the time), and no more than that is held waiting for the rest of a message. The
//! socket is read only when what is held has no plaintext and no complete record, at most the
//! caller's buffer (and at least a whole record) at a time, so what is held is about one
//! read: 64 KiB for a worker. Encrypted output waits up to
//! [`SEND_BUFFER_LIMIT`], and only while the socket is full: [`TlsStream::write_vectored`]
//! takes nothing new until that is written, so the worker's output queue (bounded by
//! `max_buffered_bytes`) holds the rest.
//!
//! Readiness is edge-triggered: `read` returns `WouldBlock` only when the socket is drained
//! and what is held has no complete record and no plaintext, so nothing is left unseen.

use std::cell::Cell;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::thread::LocalKey;

use mio::net::TcpStream;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::ServerConfig;

use super::held::{Held, Leftovers};

/// Most bytes a client may send before its TLS handshake completes, and most received bytes
/// held waiting for the rest of a message (a record is at most [`MAX_RECORD`]).
pub(crate) const HANDSHAKE_BUDGET: usize = 32 * 1024;

/// Most plaintext encrypted at once (and so, about, the encrypted output held for a full
/// socket).
const SEND_BUFFER_LIMIT: usize = 64 * 1024;

/// The largest TLS record on the wire: 16 KiB of plaintext, up to 2 KiB of expansion (TLS
/// 1.2 allows that much), the 5-byte header.
const MAX_RECORD: usize = 16 * 1024 + 2048 + 5;

/// The encrypted form of [`SEND_BUFFER_LIMIT`] plaintext fits in this: a record's header,
/// content type and tag are 22 bytes, a 16 KiB record each; a key update may go first.
const SEALED_LIMIT: usize = SEND_BUFFER_LIMIT + 1024;

thread_local! {
    /// Where records are read and decrypted (the worker reads up to 64 KiB at once).
    static READ_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// Where several slices are gathered to be encrypted as one run of records.
    static PLAIN_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// Where records are encrypted before the socket takes them.
    static SEALED_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer `key`, at least `len` bytes (made on first use,
/// then kept for the thread's life: a few such buffers per thread, none per connection).
fn with_scratch<R>(
    key: &'static LocalKey<Cell<Vec<u8>>>,
    len: usize,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    let mut scratch = key.take();
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    let result = f(&mut scratch);
    key.set(scratch);
    result
}

/// A TLS server connection over a non-blocking TCP socket.
pub(crate) struct TlsStream {
    conn: UnbufferedServerConnection,
    tcp: TcpStream,
    /// `None` while nothing is held (an idle connection).
    left: Option<Box<Leftovers>>,
    /// Bytes read from the client while the handshake was under way.
    handshake_read: usize,
    /// The client sent close_notify: nothing more is read.
    peer_closed: bool,
    /// A TLS failure ended the connection (its alert is sent or held in `outgoing`).
    failed: bool,
}

/// Where decrypted records go: the caller's buffer first, the rest held.
struct Sink<'b> {
    buf: &'b mut [u8],
    delivered: usize,
}

impl Sink<'_> {
    fn take(&mut self, payload: &[u8], surplus: &mut Held) {
        let n = payload.len().min(self.buf.len() - self.delivered);
        self.buf[self.delivered..self.delivered + n].copy_from_slice(&payload[..n]);
        self.delivered += n;
        surplus.extend(&payload[n..]);
    }

    fn is_full(&self) -> bool {
        self.delivered == self.buf.len()
    }
}

/// What [`TlsStream::process`] is run for: it stops there.
enum Want<'a> {
    /// Plaintext, until the caller's buffer is full or rustls needs more input.
    Read,
    /// These bytes encrypted once the connection may send them.
    Seal(&'a [u8]),
    /// A close_notify alert encrypted.
    CloseNotify,
}

/// Where [`TlsStream::process`] stopped.
enum Stop {
    /// rustls needs more bytes from the client (the handshake, or the rest of a record).
    NeedInput,
    /// The caller's buffer is full.
    Full,
    /// The client sent close_notify, or both sides did.
    Closed,
    /// [`Want::Seal`] or [`Want::CloseNotify`] is done: this many bytes of records to send.
    Sealed(usize),
}

impl TlsStream {
    /// A connection on `tcp` made from `config`, its handshake not started.
    pub fn new(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsStream> {
        let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream { conn, tcp, left: None, handshake_read: 0, peer_closed: false, failed: false })
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
        self.left.as_ref().is_some_and(|left| !left.outgoing.is_empty())
    }

    /// Writes the encrypted output held; `WouldBlock` when the socket is full with some left.
    pub fn write_pending(&mut self) -> io::Result<()> {
        let Some(left) = &mut self.left else { return Ok(()) };
        let result = send(&mut self.tcp, &mut left.outgoing);
        if left.is_empty() {
            self.left = None;
        }
        result
    }

    /// What is held, taken out to be worked on (its box freed); [`TlsStream::keep`] puts it
    /// back.
    fn take_left(&mut self) -> Leftovers {
        self.left.take().map_or_else(Leftovers::default, |left| *left)
    }

    fn keep(&mut self, left: Leftovers) {
        self.left = if left.is_empty() { None } else { Some(Box::new(left)) };
    }

    /// Sends close_notify (as much as the socket takes) and shuts the write side down.
    pub fn shutdown_write(&mut self) {
        if !self.failed && !self.is_handshaking() {
            let mut left = self.take_left();
            with_scratch(&SEALED_SCRATCH, SEALED_LIMIT, |sealed| {
                if let Ok(n) = self.seal(&mut left, Want::CloseNotify, sealed) {
                    let _ = send_after(&mut self.tcp, &mut left.outgoing, &sealed[..n]);
                }
            });
            self.keep(left);
        }
        let _ = self.write_pending();
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    /// Runs rustls over `records` (received, not yet consumed) for `want`: plaintext into
    /// `sink` (the rest into `left.plaintext`), handshake records and alerts into
    /// `left.outgoing` and on to the socket, sealed records into `sealed`. Returns how many
    /// bytes at the front of `records` are consumed, and where it stopped. A TLS failure is
    /// `InvalidData`, its alert sent.
    fn process(
        &mut self,
        left: &mut Leftovers,
        records: &mut [u8],
        sink: &mut Sink<'_>,
        want: &Want<'_>,
        sealed: &mut Vec<u8>,
    ) -> (usize, io::Result<Stop>) {
        let mut used = 0;
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut records[used..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    used += discard;
                    return (used, Err(self.fail(left, &mut records[used..], e)));
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    let mut more = 0;
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                more += record.discard;
                                sink.take(record.payload, &mut left.plaintext);
                            }
                            Err(e) => return (used + discard + more, Err(invalid(e))),
                        }
                    }
                    used += discard + more;
                    if matches!(want, Want::Read) && sink.is_full() {
                        return (used, Ok(Stop::Full));
                    }
                }
                ConnectionState::EncodeTlsData(mut encoding) => {
                    used += discard;
                    encode(&mut encoding, &mut left.outgoing);
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    used += discard;
                    // What the socket does not take now stays in `outgoing`, sent first.
                    let sent = send(&mut self.tcp, &mut left.outgoing);
                    transmit.done();
                    match sent {
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return (used, Err(e)),
                        _ => {}
                    }
                }
                ConnectionState::BlockedHandshake => return (used + discard, Ok(Stop::NeedInput)),
                ConnectionState::WriteTraffic(mut traffic) => {
                    used += discard;
                    let stop = match want {
                        Want::Read => Ok(Stop::NeedInput),
                        Want::Seal(plain) => seal_into(sealed, |out| traffic.encrypt(plain, out)),
                        Want::CloseNotify => seal_into(sealed, |out| traffic.queue_close_notify(out)),
                    };
                    return (used, stop);
                }
                ConnectionState::PeerClosed => {
                    used += discard;
                    self.peer_closed = true;
                    // A write goes on: the connection may still send.
                    if matches!(want, Want::Read) {
                        return (used, Ok(Stop::Closed));
                    }
                }
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    return (used + discard, Ok(Stop::Closed));
                }
                // Early data is never accepted (`max_early_data_size` is 0).
                _ => return (used + discard, Err(invalid("unexpected TLS state"))),
            }
        }
    }

    /// After a TLS failure: the alert rustls made for it is sent (as much as the socket
    /// takes), and every later call fails.
    fn fail(&mut self, left: &mut Leftovers, records: &mut [u8], error: rustls::Error) -> io::Error {
        self.failed = true;
        // rustls hands out the alert before it looks at any more input; asked once more, it
        // would look at the failed record again.
        while self.conn.wants_write() {
            match self.conn.process_tls_records(records).state {
                Ok(ConnectionState::EncodeTlsData(mut encoding)) => encode(&mut encoding, &mut left.outgoing),
                _ => break,
            }
        }
        let _ = send(&mut self.tcp, &mut left.outgoing);
        invalid(error)
    }

    /// Runs rustls over the records held for `want` ([`Want::Seal`], [`Want::CloseNotify`]):
    /// the length of the records in `sealed`. Input held is processed too (rustls takes no
    /// other way to the point where it may encrypt); its plaintext waits for `read`.
    fn seal(&mut self, left: &mut Leftovers, want: Want<'_>, sealed: &mut Vec<u8>) -> io::Result<usize> {
        let mut work = std::mem::take(&mut left.incoming.bytes);
        let mut filled = left.incoming.filled;
        let mut sink = Sink { buf: &mut [], delivered: 0 };
        let (used, stop) = self.process(left, &mut work[..filled], &mut sink, &want, sealed);
        work.copy_within(used..filled, 0);
        filled -= used;
        left.incoming.keep(&mut work, filled, false);
        match stop? {
            Stop::Sealed(n) => Ok(n),
            // Not before the handshake is done: the acceptor writes only after it.
            Stop::NeedInput => Err(io::ErrorKind::WouldBlock.into()),
            Stop::Closed | Stop::Full => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Delivers plaintext into `buf` from `work[..filled]` (records held) and then from the
    /// socket, read into `work`; leaves in `work[..filled]` what rustls did not consume.
    /// `read_size` is how much to read from the socket at once.
    fn read_records(
        &mut self,
        left: &mut Leftovers,
        work: &mut Vec<u8>,
        filled: &mut usize,
        buf: &mut [u8],
        read_size: usize,
    ) -> io::Result<usize> {
        let mut sink = Sink { buf, delivered: 0 };
        loop {
            let (used, stop) =
                self.process(left, &mut work[..*filled], &mut sink, &Want::Read, &mut Vec::new());
            work.copy_within(used..*filled, 0);
            *filled -= used;
            match stop? {
                Stop::Full => return Ok(sink.delivered),
                Stop::Closed => {
                    // "Any data received after a closure alert has been received MUST be
                    // ignored" (RFC 8446 6.1).
                    *filled = 0;
                    return Ok(sink.delivered);
                }
                Stop::NeedInput | Stop::Sealed(_) if sink.delivered > 0 => return Ok(sink.delivered),
                Stop::NeedInput | Stop::Sealed(_) => {}
            }
            if *filled > HANDSHAKE_BUDGET {
                return Err(invalid(format!(
                    "more than {HANDSHAKE_BUDGET} TLS bytes held without a complete message"
                )));
            }
            if work.len() < *filled + read_size {
                work.resize(*filled + read_size, 0);
            }
            let n = match self.tcp.read(&mut work[*filled..*filled + read_size]) {
                // TCP closed without close_notify: for a WebSocket, its close frame says
                // whether the end was clean.
                Ok(0) => return Ok(0),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *filled += n;
            if self.conn.is_handshaking() {
                self.handshake_read += n;
                if self.handshake_read > HANDSHAKE_BUDGET {
                    return Err(invalid(format!(
                        "the TLS handshake took more than {HANDSHAKE_BUDGET} bytes"
                    )));
                }
            }
        }
    }

    /// [`Read::read`] with what is held taken out: the plaintext held, then the records
    /// held, then the socket.
    fn read_held_then_socket(&mut self, left: &mut Leftovers, buf: &mut [u8]) -> io::Result<usize> {
        if !left.plaintext.is_empty() {
            return Ok(left.plaintext.take_into(buf));
        }
        if self.peer_closed {
            return Ok(0);
        }
        if left.incoming.is_empty() {
            // The usual case, records arriving whole: read into the thread's scratch, and
            // keep a copy of only what is left (a partial record, or records the caller had
            // no room for).
            let read_size = buf.len().max(MAX_RECORD);
            with_scratch(&READ_SCRATCH, read_size, |work| {
                let mut filled = 0;
                let result = self.read_records(left, work, &mut filled, buf, read_size);
                left.incoming.keep(work, filled, true);
                result
            })
        } else {
            // A record under way: read the rest into its own buffer.
            let mut work = std::mem::take(&mut left.incoming.bytes);
            let mut filled = left.incoming.filled;
            let result = self.read_records(left, &mut work, &mut filled, buf, MAX_RECORD);
            left.incoming.keep(&mut work, filled, false);
            result
        }
    }
}

/// Copies the handshake record (or alert) rustls made into `out`.
fn encode(encoding: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Held) {
    // An empty buffer asks its size without taking it.
    let len = match encoding.encode(&mut []) {
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => required_size,
        Ok(_) | Err(_) => return,
    };
    out.append_with(len, |room| encoding.encode(room).unwrap_or(0));
}

/// Runs `encrypt` into `sealed`, made larger if it asks for more.
fn seal_into(
    sealed: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<Stop> {
    match encrypt(sealed) {
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            sealed.resize(required_size, 0);
            encrypt(sealed)
        }
        other => other,
    }
    .map(Stop::Sealed)
    .map_err(io::Error::other)
}

/// Writes as much of `bytes` as `tcp` takes: how many it took, and what stopped it
/// (`WouldBlock`: the socket is full).
fn write_some(tcp: &mut TcpStream, bytes: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < bytes.len() {
        match tcp.write(&bytes[written..]) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Writes `out` to `tcp` until it is empty (and freed) or the socket is full (`WouldBlock`).
fn send(tcp: &mut TcpStream, out: &mut Held) -> io::Result<()> {
    let (written, result) = write_some(tcp, out.as_slice());
    out.consume(written);
    result
}

/// Writes `records` to `tcp` behind what `out` holds; `out` keeps what the socket does not
/// take (most writes find `out` empty and the socket with room: nothing is copied).
fn send_after(tcp: &mut TcpStream, out: &mut Held, records: &[u8]) -> io::Result<()> {
    if !out.is_empty() {
        out.extend(records);
        return send(tcp, out);
    }
    let (written, result) = write_some(tcp, records);
    out.extend(&records[written..]);
    result
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn failed() -> io::Error {
    invalid("the TLS connection failed")
}

impl Read for TlsStream {
    /// Plaintext: what is held first, then the records held, then the socket. `WouldBlock`
    /// only when all are empty (edge-triggered readiness: nothing is left behind unseen);
    /// `Ok(0)` at close_notify or EOF.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(failed());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let mut left = self.take_left();
        let result = self.read_held_then_socket(&mut left, buf);
        self.keep(left);
        result
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts up to [`SEND_BUFFER_LIMIT`] of `bufs` once the output held is written, and
    /// writes it; what the socket does not take is held. `WouldBlock` while earlier output
    /// waits.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.failed {
            return Err(failed());
        }
        self.write_pending()?;
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(SEND_BUFFER_LIMIT);
        if total == 0 {
            return Ok(0);
        }
        let mut left = self.take_left();
        let sent = with_scratch(&SEALED_SCRATCH, SEALED_LIMIT, |sealed| {
            let len = match bufs.iter().find(|b| !b.is_empty()) {
                Some(first) if first.len() >= total => {
                    self.seal(&mut left, Want::Seal(&first[..total]), sealed)?
                }
                _ => with_scratch(&PLAIN_SCRATCH, SEND_BUFFER_LIMIT, |plain| {
                    let mut gathered = 0;
                    for b in bufs {
                        let n = b.len().min(total - gathered);
                        plain[gathered..gathered + n].copy_from_slice(&b[..n]);
                        gathered += n;
                    }
                    self.seal(&mut left, Want::Seal(&plain[..total]), sealed)
                })?,
            };
            // Records made while sealing (a key update's answer) may wait in `outgoing`:
            // these go after them.
            io::Result::Ok(send_after(&mut self.tcp, &mut left.outgoing, &sealed[..len]))
        });
        self.keep(left);
        let sent = sent?;
        // Taken, whether or not the socket took all of it.
        match sent {
            Ok(()) => Ok(total),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(total),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;

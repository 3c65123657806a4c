//! One socket as its worker sees it: the output queue (written with `writev`), the
//! close state, and the input decoder. Kept small: an idle connection costs its struct,
//! an empty queue and nothing else (buffers are allocated only while in use).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::frame::Decoder;

/// Most frames handed to one `writev` call (Linux's IOV_MAX is 1024; 64 already
/// amortises the syscall over many frames).
const MAX_IOVECS: usize = 64;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Exchanging messages.
    Open,
    /// Our close frame is queued or sent; data frames are ignored. The socket is dropped as
    /// soon as our close frame is out and the peer's has arrived (the server closes TCP
    /// first, RFC 6455 7.1.1); until then, once our output is flushed the write side is
    /// shut down, and the socket is dropped at EOF or at `deadline_ms`.
    Closing {
        deadline_ms: u64,
        write_shut: bool,
        /// The peer's close frame has arrived.
        peer_closed: bool,
        /// A protocol error: the input can no longer be parsed, only discarded.
        failed: bool,
    },
}

/// What admission attached to a socket (see `acceptor.rs`): 8 bytes, zero for nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Seconds since the worker's epoch at which the socket's token expires; 0: never.
    pub expires_at_s: u32,
    /// The socket's per-address slot ([`IpSlot::to_raw`](crate::ip_limit::IpSlot::to_raw));
    /// 0: not counted.
    pub ip_slot: u32,
}

/// Why a connection starts closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The peer sent its close frame first; ours answers it.
    Answer,
    /// The server closes (shutdown, idle, slow consumer, the host's request) and waits for
    /// the peer's answer.
    Initiate,
    /// The peer broke the protocol.
    Fail,
}

/// The output side and bookkeeping of a connection (everything but the decoder, so the
/// decoder's borrowed frames and this can be used at the same time).
pub(crate) struct Link {
    pub stream: TcpStream,
    pub id: Rc<str>,
    pub serial: u64,
    pub state: State,
    /// The close code reported in the close event: the one sent or received.
    pub close_code: u16,
    /// Registered for writable readiness because the socket's buffer was full.
    pub write_blocked: bool,
    /// Already listed among the connections to flush this iteration.
    pub dirty: bool,
    pub last_input_ms: u64,
    pub lease: Lease,
    out: VecDeque<Bytes>,
    /// Bytes of `out.front()` already written.
    out_offset: usize,
    /// Bytes queued and not yet written.
    out_bytes: usize,
}

/// A connection: its link and its input side.
pub(crate) struct Connection {
    pub link: Link,
    pub decoder: Decoder,
    /// Bytes of a frame that has not fully arrived (empty almost always).
    pub partial_input: Vec<u8>,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        id: Rc<str>,
        serial: u64,
        max_message_size: usize,
        now_ms: u64,
        lease: Lease,
    ) -> Self {
        Self {
            link: Link {
                stream,
                id,
                serial,
                state: State::Open,
                close_code: crate::frame::close_code::ABNORMAL,
                write_blocked: false,
                dirty: false,
                last_input_ms: now_ms,
                lease,
                out: VecDeque::new(),
                out_offset: 0,
                out_bytes: 0,
            },
            decoder: Decoder::new(max_message_size),
            partial_input: Vec::new(),
        }
    }
}

impl Link {
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether `len` more bytes keep the output within `max_buffered`.
    pub fn fits(&self, len: usize, max_buffered: usize) -> bool {
        self.out_bytes + len <= max_buffered
    }

    /// Queues a frame (the caller checks state and bound).
    pub fn push(&mut self, frame: Bytes) {
        self.out_bytes += frame.len();
        self.out.push_back(frame);
    }

    /// Whether input is still parsed: while open, and while closing until the peer's close
    /// frame arrives (unless the input is broken).
    pub fn accepts_frames(&self) -> bool {
        matches!(self.state, State::Open | State::Closing { peer_closed: false, failed: false, .. })
    }

    /// The peer's close frame arrived while we were closing.
    pub fn peer_closed(&mut self) {
        if let State::Closing { peer_closed, .. } = &mut self.state {
            *peer_closed = true;
        }
    }

    /// The input broke while we were closing: discard the rest.
    pub fn input_failed(&mut self) {
        if let State::Closing { failed, .. } = &mut self.state {
            *failed = true;
        }
    }

    /// Queues the close frame and moves to `Closing`. Output not yet started is discarded
    /// when `discard_pending` (a slow consumer would otherwise read megabytes first).
    pub fn start_close(
        &mut self,
        frame: Bytes,
        code: u16,
        deadline_ms: u64,
        cause: CloseCause,
        discard_pending: bool,
    ) {
        if !self.is_open() {
            return;
        }
        if discard_pending {
            let keep = usize::from(self.out_offset > 0);
            while self.out.len() > keep {
                let dropped = self.out.pop_back().map_or(0, |f| f.len());
                self.out_bytes -= dropped;
            }
        }
        self.push(frame);
        self.close_code = code;
        self.state = State::Closing {
            deadline_ms,
            write_shut: false,
            peer_closed: cause == CloseCause::Answer,
            failed: cause == CloseCause::Fail,
        };
    }

    /// Writes as much queued output as the socket takes, many frames per `writev`.
    /// Returns the bytes written; `Ok` with output left means the socket is full.
    pub fn flush(&mut self) -> io::Result<usize> {
        let mut written_total = 0;
        while !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, frame) in self.out.iter().take(MAX_IOVECS).enumerate() {
                let start = if i == 0 { self.out_offset } else { 0 };
                slices[i] = IoSlice::new(&frame[start..]);
                count += 1;
            }
            match self.stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written_total += n;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.out.is_empty() && self.out.capacity() > 64 {
            self.out = VecDeque::new();
        }
        Ok(written_total)
    }

    fn advance(&mut self, mut n: usize) {
        self.out_bytes -= n;
        while n > 0 {
            let front_left = self.out[0].len() - self.out_offset;
            if n >= front_left {
                n -= front_left;
                self.out.pop_front();
                self.out_offset = 0;
            } else {
                self.out_offset += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle sockets are most of a server's sockets: keep what each costs small.
    #[test]
    fn an_idle_connection_is_small() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 192, "a connection takes {size} bytes");
    }
}

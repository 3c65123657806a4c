//! One socket as its worker sees it: the output queue (written with `writev`), the
//! close state, and the input decoder. Kept small: an idle connection costs its struct,
//! an empty queue and nothing else (buffers are allocated only while in use).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::extensions::Extensions;
use crate::frame::Decoder;

/// Most frames handed to one `writev` call (Linux's IOV_MAX is 1024). A burst of small
/// broadcast frames fills a socket's buffer in a few calls instead of dozens.
const MAX_IOVECS: usize = 256;

/// The span of an inbound rate limit's bucket: it holds one second's worth.
const RATE_WINDOW_NS: u64 = 1_000_000_000;

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
        /// The worker's clock (ms since its epoch) truncated to 32 bits: compare it with
        /// [`deadline_passed`]. A closing socket lives a few seconds at most, far from the
        /// 24 days after which the wrapping comparison would go wrong.
        deadline_ms: u32,
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

/// Whether a deadline of [`State::Closing`] has passed at `now_ms` (the worker's clock).
pub(crate) fn deadline_passed(now_ms: u64, deadline_ms: u32) -> bool {
    (now_ms as u32).wrapping_sub(deadline_ms) as i32 >= 0
}

/// A socket's inbound rate limits, frames and bytes per second, each a token bucket holding
/// one second's worth. Kept as debts rather than tokens: how far (in ns, at most one second)
/// the socket is ahead of its rate. Input pays a cost (`1 s / rate` per frame, `bytes x 1 s /
/// rate` per read), time pays it back; a cost that would take a debt past one second is
/// refused. This is the token bucket (burst: one second's worth) in 8 bytes, with no
/// timestamp of its own: the connection's `last_input_ms` says when the debts were last
/// paid down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct InboundRate {
    frames_ns: u32,
    bytes_ns: u32,
}

impl InboundRate {
    /// Pays the debts down for `elapsed_ms` of time.
    pub fn elapse(&mut self, elapsed_ms: u64) {
        // Debts never exceed one second, so more than that pays everything.
        let paid = elapsed_ms.min(1_000) as u32 * 1_000_000;
        self.frames_ns = self.frames_ns.saturating_sub(paid);
        self.bytes_ns = self.bytes_ns.saturating_sub(paid);
    }

    /// Charges one frame at `interval_ns` (1 s / the rate); false, charging nothing, when
    /// the socket is over its rate.
    pub fn charge_frame(&mut self, interval_ns: u64) -> bool {
        charge(&mut self.frames_ns, interval_ns)
    }

    /// Charges `bytes` at `per_second`; false, charging nothing, when the socket is over its
    /// rate.
    pub fn charge_bytes(&mut self, bytes: usize, per_second: u64) -> bool {
        charge(&mut self.bytes_ns, (bytes as u64).saturating_mul(RATE_WINDOW_NS) / per_second)
    }
}

fn charge(debt_ns: &mut u32, cost_ns: u64) -> bool {
    match u64::from(*debt_ns).checked_add(cost_ns) {
        // Fits in u32: at most one second of nanoseconds.
        Some(debt) if debt <= RATE_WINDOW_NS => {
            *debt_ns = debt as u32;
            true
        }
        _ => false,
    }
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
    /// When `write_blocked` was last set: the worker's clock truncated to 32 bits. Only
    /// compared for equality (it tells a current entry of the worker's list of blocked
    /// sockets from a stale one), so wrapping is harmless.
    pub blocked_since: u32,
    pub last_input_ms: u64,
    /// Inbound rate limits, paid down as of `last_input_ms`.
    pub inbound: InboundRate,
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
    /// What the upgrade negotiated; the decoder was built to match.
    #[expect(dead_code, reason = "kept for the extensions to come, which act on what is sent too")]
    pub extensions: Extensions,
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
        extensions: Extensions,
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
                blocked_since: 0,
                last_input_ms: now_ms,
                inbound: InboundRate::default(),
                lease,
                out: VecDeque::new(),
                out_offset: 0,
                out_bytes: 0,
            },
            decoder: Decoder::with_allowed_rsv(max_message_size, extensions.allowed_rsv()),
            extensions,
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

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out_bytes
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
            deadline_ms: deadline_ms as u32,
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
        // An idle socket holds no queue at all (its memory is what an idle connection
        // costs); a busy one allocates it again, once per flush, not once per frame.
        if self.out.is_empty() && self.out.capacity() > 0 {
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

    #[test]
    fn deadlines_compare_across_the_32_bit_wrap() {
        assert!(!deadline_passed(999, 1_000));
        assert!(deadline_passed(1_000, 1_000));
        assert!(deadline_passed(1_001, 1_000));
        let near_wrap = u64::from(u32::MAX) - 500;
        let deadline = (near_wrap + 2_000) as u32; // wrapped past zero
        assert!(!deadline_passed(near_wrap, deadline));
        assert!(!deadline_passed(near_wrap + 1_999, deadline));
        assert!(deadline_passed(near_wrap + 2_000, deadline));
        assert!(deadline_passed(near_wrap + 2_500, deadline));
    }

    #[test]
    fn the_frame_bucket_allows_one_seconds_worth_then_the_rate() {
        let interval = RATE_WINDOW_NS / 10; // 10 frames per second
        let mut rate = InboundRate::default();
        for i in 0..10 {
            assert!(rate.charge_frame(interval), "frame {i} of the burst");
        }
        assert!(!rate.charge_frame(interval), "the 11th frame at once is over the rate");
        assert!(!rate.charge_frame(interval), "a refused frame is not charged, and still refused");
        rate.elapse(99);
        assert!(!rate.charge_frame(interval), "99 ms pay back less than one frame");
        rate.elapse(1);
        assert!(rate.charge_frame(interval), "100 ms pay back one frame");
        assert!(!rate.charge_frame(interval));
        rate.elapse(60_000);
        for _ in 0..10 {
            assert!(rate.charge_frame(interval), "a long pause refills the bucket, no more");
        }
        assert!(!rate.charge_frame(interval));
    }

    #[test]
    fn the_byte_bucket_allows_one_seconds_worth_then_the_rate() {
        let mut rate = InboundRate::default();
        assert!(rate.charge_bytes(600, 1_000));
        assert!(rate.charge_bytes(400, 1_000));
        assert!(!rate.charge_bytes(1, 1_000));
        rate.elapse(500);
        assert!(!rate.charge_bytes(501, 1_000));
        assert!(rate.charge_bytes(500, 1_000));
        // More than a second's worth at once never fits, however long the pause.
        rate.elapse(u64::MAX);
        assert!(!rate.charge_bytes(1_001, 1_000));
        assert!(!rate.charge_bytes(usize::MAX, 1));
        // The buckets are independent.
        assert!(rate.charge_frame(RATE_WINDOW_NS));
        assert!(rate.charge_bytes(1_000, 1_000));
    }
}

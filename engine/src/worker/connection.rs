//! One socket as its worker sees it: the output queue (see [`OutputQueue`]), the close
//! state, the inbound rate limits, and the input decoder. Kept small: an idle connection
//! costs its struct, an empty queue and nothing else (buffers are allocated only while in
//! use).

use std::io::{self, Read};

use std::sync::Arc;

use bytes::Bytes;
use mio::{Interest, Registry, Token};

use super::output::OutputQueue;
use crate::extensions::Extensions;
use crate::frame::Decoder;
use crate::transport::Transport;

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
    /// shut down, and the socket is dropped at EOF or at its close deadline (listed by the
    /// worker, `Core::closing`).
    Closing {
        write_shut: bool,
        /// The peer's close frame has arrived.
        peer_closed: bool,
        /// A protocol error: the input can no longer be parsed, only discarded.
        failed: bool,
        /// Bytes read since the close started (saturating): past a bound, the socket is
        /// no longer read.
        read: u32,
    },
}

/// What admission attached to a socket (see `acceptor.rs`): 8 bytes, zero for nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Seconds since the worker's epoch at which the socket's token expires; 0: never.
    expires_at_s: u32,
    /// The socket's per-address slot ([`IpSlot::to_raw`](crate::ip_limit::IpSlot::to_raw));
    /// 0: not counted.
    ip_slot: u32,
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

/// [`Link`] flag: registered for writable readiness because the socket's buffer was full.
const WRITE_BLOCKED: u8 = 1;
/// [`Link`] flag: already listed among the connections to flush this iteration.
const DIRTY: u8 = 2;
/// [`Link`] flag: listed among the sockets to read again next pass (its last read stopped
/// at the pass's budget, not at an empty socket).
const MORE_INPUT: u8 = 4;
/// [`Link`] flag: the socket selected `wspush.v1` (history on): its data frames carry heads.
const V1: u8 = 8;
/// [`Link`] flag: the socket is replaying history and is not live yet: live messages of its
/// id reach it through the history, not directly.
const RESUMING: u8 = 16;
/// [`Link`] flag: the socket resumed with `?since=`: told of a loss of history (without
/// `wspush.v1`, by close 4410) even once live.
const POSITIONED: u8 = 32;

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
    stream: Transport,
    id: Arc<str>,
    serial: u64,
    state: State,
    /// The close code reported in the close event: the one sent or received.
    close_code: u16,
    /// [`WRITE_BLOCKED`], [`DIRTY`], [`MORE_INPUT`], [`V1`], [`RESUMING`]: one byte, so that an idle
    /// connection stays small.
    flags: u8,
    /// When [`WRITE_BLOCKED`] was last set: the worker's clock truncated to 32 bits. Only
    /// compared for equality (it tells a current entry of the worker's list of blocked
    /// sockets from a stale one), so wrapping is harmless.
    blocked_since: u32,
    last_input_ms: u64,
    /// Inbound rate limits, paid down as of `last_input_ms`.
    inbound: InboundRate,
    lease: Lease,
    out: OutputQueue,
    /// permessage-deflate's window for what this socket is sent (`server_max_window_bits`),
    /// 0 when it negotiated no compression.
    deflate_bits: u8,
}

/// A connection: its link and its input side.
pub(crate) struct Connection {
    link: Link,
    /// Built for what the upgrade negotiated (RSV1 allowed with permessage-deflate).
    decoder: Decoder,
    /// Bytes of a frame that has not fully arrived (empty almost always).
    partial_input: Vec<u8>,
}

impl Connection {
    pub fn new(
        stream: Transport,
        id: Arc<str>,
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
                flags: 0,
                blocked_since: 0,
                last_input_ms: now_ms,
                inbound: InboundRate::default(),
                lease,
                out: OutputQueue::default(),
                deflate_bits: extensions.deflate_window_bits().unwrap_or(0),
            },
            decoder: Decoder::with_allowed_rsv(max_message_size, extensions.allowed_rsv()),
            partial_input: Vec::new(),
        }
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    pub fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }

    /// The link, the decoder and the partial input at once: a decoded frame borrows the
    /// input while the link answers it.
    pub fn parts(&mut self) -> (&mut Link, &mut Decoder, &mut Vec<u8>) {
        (&mut self.link, &mut self.decoder, &mut self.partial_input)
    }

    /// Takes frames the client sent before the socket was adopted, to decode first.
    pub fn set_partial_input(&mut self, input: Vec<u8>) {
        self.partial_input = input;
    }

    /// The link, for the close event once the connection is dropped.
    pub fn into_link(self) -> Link {
        self.link
    }
}

impl Lease {
    /// `expires_at_s`: seconds since the worker's epoch, 0 for never; `ip_slot`: the raw
    /// per-address slot, 0 for none.
    pub fn new(expires_at_s: u32, ip_slot: u32) -> Self {
        Self { expires_at_s, ip_slot }
    }

    /// Whether the socket's token has expired at `now_ms` (the worker's clock).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_s != 0 && now_ms >= u64::from(self.expires_at_s) * 1000
    }

    /// The raw per-address slot ([`IpSlot::from_raw`](crate::ip_limit::IpSlot::from_raw)).
    pub fn ip_slot(&self) -> u32 {
        self.ip_slot
    }
}

impl Link {
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn close_code(&self) -> u16 {
        self.close_code
    }

    pub fn lease(&self) -> Lease {
        self.lease
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether output waits: frames in the queue, or (TLS) records encrypted but not sent.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.stream.has_pending()
    }

    /// What the output queue holds: bytes not yet written, plus
    /// [`FRAME_OVERHEAD`](super::output::FRAME_OVERHEAD) per frame.
    pub fn queued(&self) -> usize {
        self.out.cost()
    }

    /// permessage-deflate's window for this socket's output, if it negotiated compression.
    pub fn deflate_bits(&self) -> Option<u8> {
        (self.deflate_bits != 0).then_some(self.deflate_bits)
    }

    /// Queues a frame (the caller checks state and bound).
    pub fn push(&mut self, frame: Bytes) {
        self.out.push(frame);
    }

    /// Replaces the pong waiting in the queue; see [`OutputQueue::replace_pong`].
    pub fn replace_pong(&mut self, pong: Bytes) -> Result<(), Bytes> {
        self.out.replace_pong(pong)
    }

    pub fn is_write_blocked(&self) -> bool {
        self.flags & WRITE_BLOCKED != 0
    }

    /// When the socket last became write-blocked (see `blocked_since`).
    pub fn blocked_since(&self) -> u32 {
        self.blocked_since
    }

    /// The socket's buffer is full at `now_ms`: wait for writable readiness.
    pub fn block(&mut self, now_ms: u64) {
        self.flags |= WRITE_BLOCKED;
        self.blocked_since = now_ms as u32;
    }

    /// The socket is writable again: true if it was waiting for that.
    pub fn unblock(&mut self) -> bool {
        self.take_flag(WRITE_BLOCKED)
    }

    /// Lists the connection for this iteration's flush: true if it was not listed yet.
    pub fn mark_dirty(&mut self) -> bool {
        self.set_flag(DIRTY)
    }

    /// The connection is being flushed: it may be listed again.
    pub fn clear_dirty(&mut self) {
        self.take_flag(DIRTY);
    }

    /// How long the socket has sent nothing, at `now_ms`.
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_input_ms)
    }

    /// Pays the inbound rate limits' debts down for the time since the last input.
    pub fn elapse_inbound(&mut self, now_ms: u64) {
        self.inbound.elapse(now_ms.saturating_sub(self.last_input_ms));
    }

    /// Input arrived at `now_ms`.
    pub fn input_at(&mut self, now_ms: u64) {
        self.last_input_ms = now_ms;
    }

    /// Charges one inbound frame (see [`InboundRate::charge_frame`]).
    pub fn charge_frame(&mut self, interval_ns: u64) -> bool {
        self.inbound.charge_frame(interval_ns)
    }

    /// Charges inbound bytes (see [`InboundRate::charge_bytes`]).
    pub fn charge_bytes(&mut self, bytes: usize, per_second: u64) -> bool {
        self.inbound.charge_bytes(bytes, per_second)
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    pub fn reregister(&mut self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        registry.reregister(&mut self.stream, token, interest)
    }

    /// Whether the socket is still read: while open, and while closing until `allowance`
    /// bytes were read since the close started. Past it, what the peer sends waits in the
    /// socket until the close deadline drops it.
    pub fn reads(&self, allowance: u32) -> bool {
        match self.state {
            State::Open => true,
            State::Closing { read, .. } => read < allowance,
        }
    }

    /// `n` bytes were read: counted against the allowance of a closing socket.
    pub fn count_read(&mut self, n: usize) {
        if let State::Closing { read, .. } = &mut self.state {
            *read = read.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }

    /// Lists the socket to be read again next pass: true if it was not listed yet.
    pub fn mark_more_input(&mut self) -> bool {
        self.set_flag(MORE_INPUT)
    }

    /// Takes the mark of [`Link::mark_more_input`]: true if the socket was listed (and
    /// not read to the end since).
    pub fn take_more_input(&mut self) -> bool {
        self.take_flag(MORE_INPUT)
    }

    /// The socket gets `wspush.v1` frames.
    pub fn set_v1(&mut self) {
        self.set_flag(V1);
    }

    /// Whether the socket gets `wspush.v1` frames.
    pub fn is_v1(&self) -> bool {
        self.flags & V1 != 0
    }

    /// The socket replays history before it joins live (`resuming`), or has joined.
    pub fn set_resuming(&mut self, resuming: bool) {
        if resuming {
            self.set_flag(RESUMING);
        } else {
            self.take_flag(RESUMING);
        }
    }

    /// Whether the socket is still replaying history (live messages are not queued to it).
    pub fn is_resuming(&self) -> bool {
        self.flags & RESUMING != 0
    }

    /// The socket resumed with `?since=`.
    pub fn set_positioned(&mut self) {
        self.set_flag(POSITIONED);
    }

    /// Whether the socket resumed with `?since=`.
    pub fn is_positioned(&self) -> bool {
        self.flags & POSITIONED != 0
    }

    /// Sets `flag`: true if it was not set.
    fn set_flag(&mut self, flag: u8) -> bool {
        let was_set = self.flags & flag != 0;
        self.flags |= flag;
        !was_set
    }

    /// Clears `flag`: true if it was set.
    fn take_flag(&mut self, flag: u8) -> bool {
        let was_set = self.flags & flag != 0;
        self.flags &= !flag;
        was_set
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
    pub fn start_close(&mut self, frame: Bytes, code: u16, cause: CloseCause, discard_pending: bool) {
        if !self.is_open() {
            return;
        }
        if discard_pending {
            self.out.discard_pending();
        }
        self.push(frame);
        self.close_code = code;
        self.state = State::Closing {
            write_shut: false,
            peer_closed: cause == CloseCause::Answer,
            failed: cause == CloseCause::Fail,
            read: 0,
        };
    }

    /// Writes as much queued output as the socket takes, many frames per `writev`.
    /// Returns the bytes written; `Ok` with output left means the socket is full.
    pub fn flush(&mut self) -> io::Result<usize> {
        let written = self.out.write_to(&mut self.stream)?;
        self.stream.write_pending()?;
        Ok(written)
    }

    /// All output is written: true if the connection is done with (both close frames
    /// exchanged).
    pub fn output_drained(&mut self) -> bool {
        if let State::Closing { write_shut, peer_closed, .. } = &mut self.state {
            if *peer_closed {
                // Both close frames are exchanged: the server closes TCP first.
                return true;
            }
            if !*write_shut {
                // Our close frame is out: FIN tells the client we are done, and its close
                // frame (or EOF) ends the connection without a reset.
                *write_shut = true;
                self.stream.shutdown_write();
            }
        }
        false
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

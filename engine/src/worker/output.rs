//! Output: queueing frames under the per-socket bound (the slow-consumer policy) and the
//! node's cap, flushing each socket with `writev` once per pass, and starting closes.
//!
//! Output is bounded twice: per socket (`max_buffered_bytes`, the slow-consumer policy)
//! and per node (`max_node_buffered_bytes`, see [`NodeBuffer`](super::budget::NodeBuffer)).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;
use mio::{Interest, Token};
use slab::Slab;

use super::budget::{close_oldest_blocked, Budget, Evict};
use super::connection::{CloseCause, Connection, Link};
use super::core::{Core, CLOSE_GRACE_MS};
use super::event_loop::Worker;
use crate::config::SlowConsumerPolicy;
use crate::frame::{self, close_code, OpCode};
use crate::stats::bump;

/// Most frames handed to one `writev` call (Linux's IOV_MAX is 1024). A burst of small
/// broadcast frames fills a socket's buffer in a few calls instead of dozens.
const MAX_IOVECS: usize = 256;

/// What a queued frame costs beyond its bytes, counted in a socket's queue, the worker's
/// total and the node's `buffered_bytes`: its slot in the queue (a `Bytes`, 32 bytes) and,
/// about as much again, the allocation behind it (the allocator's header and rounding for
/// a frame of its own; the shared block with its reference count for a broadcast frame).
/// Without it an empty pong would count 2 bytes while it holds 64 (its slot and the
/// smallest allocation, 32 bytes with glibc): a flood of small
/// frames would hold many times what the gauge shows.
pub(crate) const FRAME_OVERHEAD: usize = 64;

/// The first byte of a pong frame as the server encodes it (FIN, opcode 0xA).
const PONG_FIRST_BYTE: u8 = 0x80 | OpCode::Pong as u8;

/// A socket's queued frames, written with `writev`. Kept small: an idle connection holds an
/// empty queue and no buffer.
#[derive(Default)]
pub(crate) struct OutputQueue {
    frames: VecDeque<Bytes>,
    /// Bytes of `frames.front()` already written.
    offset: usize,
    /// What the queue holds: the bytes not yet written, plus [`FRAME_OVERHEAD`] per frame.
    cost: usize,
}

impl OutputQueue {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// What the queue holds: the bytes not yet written, plus [`FRAME_OVERHEAD`] per frame.
    pub fn cost(&self) -> usize {
        self.cost
    }

    pub fn push(&mut self, frame: Bytes) {
        self.cost += frame.len() + FRAME_OVERHEAD;
        self.frames.push_back(frame);
    }

    /// Replaces the pong waiting at the back of the queue, if there is one not started:
    /// answering only the latest ping is enough (RFC 6455 5.5.3), and a client that pings
    /// without reading then holds one pong, not one per ping. Hands the pong back if
    /// there is nothing to replace. (A queued frame is known for a pong by its first byte:
    /// the server sends pongs only as replies, and never fragments them.)
    pub fn replace_pong(&mut self, pong: Bytes) -> Result<(), Bytes> {
        let started = self.frames.len() == 1 && self.offset > 0;
        match self.frames.back_mut() {
            Some(back) if back.first() == Some(&PONG_FIRST_BYTE) && !started => {
                self.cost = self.cost - back.len() + pong.len();
                *back = pong;
                Ok(())
            }
            _ => Err(pong),
        }
    }

    /// Drops the frames not yet started; a frame partly written stays, or the peer would
    /// read a broken frame.
    pub fn discard_pending(&mut self) {
        let keep = usize::from(self.offset > 0);
        while self.frames.len() > keep {
            let dropped = self.frames.pop_back().map_or(0, |f| f.len());
            self.cost -= dropped + FRAME_OVERHEAD;
        }
    }

    /// Writes as much as `out` takes, many frames per `writev`. Returns the bytes written;
    /// `Ok` with output left means `out` is full.
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<usize> {
        let mut written_total = 0;
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, frame) in self.frames.iter().take(MAX_IOVECS).enumerate() {
                let start = if i == 0 { self.offset } else { 0 };
                slices[i] = IoSlice::new(&frame[start..]);
                count += 1;
            }
            match out.write_vectored(&slices[..count]) {
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
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
        Ok(written_total)
    }

    fn advance(&mut self, mut n: usize) {
        self.cost -= n;
        while n > 0 {
            let front_left = self.frames[0].len() - self.offset;
            if n >= front_left {
                n -= front_left;
                self.frames.pop_front();
                self.cost -= FRAME_OVERHEAD;
                self.offset = 0;
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }
}

/// What [`Core::queue_data`] did with a frame.
pub(super) enum Queued {
    Yes,
    No,
    /// The node is full and the socket is write-blocked: the caller makes room (see
    /// [`deliver`]) and offers the frame again.
    NeedsRoom(Bytes),
}

/// What [`Core::admit`] decided for a frame.
enum Admit {
    /// Queue it; `over_node_cap`: past the node's cap (see [`Budget::overdraw`]).
    Yes { over_node_cap: bool },
    /// Refuse it under the slow-consumer policy.
    No,
    /// The node is full and the socket is write-blocked: room must be made first.
    NeedsRoom,
}

/// How a flush left a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flushed {
    /// Nothing left to write (or it waits for the socket to be writable).
    Ok,
    /// Done with: write error, or both close frames exchanged. Drop it.
    Finished,
}

impl Core {
    pub fn mark_dirty(&mut self, key: usize, link: &mut Link) {
        if link.mark_dirty() {
            self.dirty.push(key);
        }
    }

    /// Queues a frame (the caller checks state and bounds) and counts it in the worker's
    /// total.
    pub fn push(&mut self, key: usize, link: &mut Link, frame: Bytes) {
        self.budget.add(frame.len() + FRAME_OVERHEAD);
        link.push(frame);
        self.mark_dirty(key, link);
    }

    /// Writes what the socket takes, many frames per `writev`. When the socket is full the
    /// connection waits for writable readiness (and is not written to until then).
    pub fn flush(&mut self, key: usize, link: &mut Link) -> Flushed {
        if link.is_write_blocked() {
            return Flushed::Ok;
        }
        let before = link.queued();
        let flushed = link.flush();
        // What was written left the queue, even if a later write failed.
        self.budget.sub(before - link.queued());
        let Ok(written) = flushed else { return Flushed::Finished };
        bump(&self.shared.counters.bytes_out, written as u64);
        if link.has_output() {
            link.block(self.now_ms);
            if link.is_open() {
                self.budget.note_blocked(link.serial(), link.blocked_since());
            }
            let interest = Interest::READABLE | Interest::WRITABLE;
            if link.reregister(&self.registry, Token(key), interest).is_err() {
                return Flushed::Finished;
            }
        } else if link.output_drained() {
            return Flushed::Finished;
        }
        Flushed::Ok
    }

    /// Queues a ping or a pong under the same bounds as data (a client that pings and
    /// never reads is a slow consumer like any other). For a write-blocked socket, a pong
    /// replaces the one still waiting at the back of its queue, if any: a client that pings
    /// and does not read holds one pong, not one per ping. A socket that takes its output
    /// gets every ping answered (as clients and the Autobahn suite expect).
    pub fn queue_control(&mut self, key: usize, link: &mut Link, frame: Bytes, pong: bool) {
        if !link.is_open() {
            return;
        }
        let frame = if pong && link.is_write_blocked() {
            let before = link.queued();
            match link.replace_pong(frame) {
                Ok(()) => return self.budget.replace(before, link.queued()),
                Err(frame) => frame,
            }
        } else {
            frame
        };
        match self.admit(key, link, frame.len()) {
            Admit::Yes { over_node_cap } => {
                self.push(key, link, frame);
                if over_node_cap {
                    self.budget.overdraw();
                }
            }
            Admit::NeedsRoom | Admit::No => self.refuse(key, link),
        }
    }

    /// Queues a data frame under the slow-consumer policy and the node's cap. When the node
    /// is full and the socket is a slow consumer, the frame is handed back for the caller to
    /// make room (`ask`), or refused under the slow-consumer policy (not `ask`).
    ///
    /// The hot path adds two integer additions and a comparison to what the per-socket
    /// bound costs (see [`Budget::has_room`]).
    ///
    /// A socket that negotiated permessage-deflate gets the frame compressed: by the
    /// worker's compressor, which deflates a message once per window and hands every
    /// other socket the same compressed frame.
    pub fn queue_data(&mut self, key: usize, link: &mut Link, frame: Bytes, ask: bool) -> Queued {
        if !link.is_open() {
            return Queued::No;
        }
        let frame = match (link.deflate_bits(), &mut self.compressor) {
            (Some(bits), Some(compressor)) => {
                let compressed = compressor.compress(&frame, bits);
                if compressed.deflated_now {
                    bump(&self.shared.counters.messages_deflated, 1);
                }
                compressed.frame
            }
            _ => frame,
        };
        match self.admit(key, link, frame.len()) {
            Admit::Yes { over_node_cap } => {
                self.push(key, link, frame);
                bump(&self.shared.counters.messages_out, 1);
                if over_node_cap {
                    self.budget.overdraw();
                }
                Queued::Yes
            }
            Admit::NeedsRoom if ask => Queued::NeedsRoom(frame),
            Admit::NeedsRoom | Admit::No => {
                self.refuse(key, link);
                Queued::No
            }
        }
    }

    /// Whether a frame of `len` bytes may be queued for the open socket at `key`.
    ///
    /// A socket is judged by what already waits for it when the frame comes, not by the
    /// frame's size (as uWebSockets' maxBackpressure judges): while less than
    /// `max_buffered_bytes` waits, the frame is queued, however large. So a client that
    /// keeps reading receives any message the node accepts, and a socket holds at most
    /// `max_buffered_bytes` plus one frame (and a close frame).
    ///
    /// The node's cap bounds the node: over it, a frame for a socket that took all its
    /// output so far is queued all the same (one frame over: the socket is not a slow
    /// consumer), a frame for a write-blocked socket needs room made first, and a frame
    /// larger than the whole cap is refused (it would never fit).
    fn admit(&mut self, key: usize, link: &mut Link, len: usize) -> Admit {
        let cost = len + FRAME_OVERHEAD;
        let max = self.settings.max_buffered_bytes;
        let node_full = !self.budget.has_room(cost);
        if (node_full || link.queued() >= max) && !link.is_write_blocked() {
            // The bounds are on what clients have not taken yet, not on what this wake-up
            // happened to queue: write what the socket takes, then judge. (A write error
            // leaves the output in place; the end-of-iteration flush drops the socket.)
            self.mark_dirty(key, link);
            let _ = self.flush(key, link);
        }
        if link.queued() >= max {
            return Admit::No;
        }
        if !node_full {
            return Admit::Yes { over_node_cap: false };
        }
        if self.budget.over_cap(cost) {
            Admit::No
        } else if link.is_write_blocked() {
            Admit::NeedsRoom
        } else {
            Admit::Yes { over_node_cap: true }
        }
    }

    /// A frame the socket cannot take: the slow-consumer policy applies.
    fn refuse(&mut self, key: usize, link: &mut Link) {
        match self.settings.slow_consumer {
            SlowConsumerPolicy::Drop => bump(&self.shared.counters.slow_consumer_drops, 1),
            SlowConsumerPolicy::Disconnect => {
                bump(&self.shared.counters.slow_consumer_disconnects, 1);
                tracing::debug!(id = %crate::log_safe::Escaped(link.id()), "slow consumer disconnected");
                let cause = CloseCause::Initiate;
                self.close(key, link, close_code::POLICY_VIOLATION, "slow consumer", cause, true);
            }
        }
    }

    pub fn close(
        &mut self,
        key: usize,
        link: &mut Link,
        code: u16,
        reason: &str,
        cause: CloseCause,
        discard_pending: bool,
    ) {
        if link.is_open() {
            self.start_close(key, link, frame::encode_close(code, reason), code, cause, discard_pending);
        }
    }

    /// [`Link::start_close`] with the deadline `CLOSE_GRACE_MS` from now, keeping the
    /// worker's total right and listing the deadline.
    pub fn start_close(
        &mut self,
        key: usize,
        link: &mut Link,
        frame: Bytes,
        code: u16,
        cause: CloseCause,
        discard_pending: bool,
    ) {
        if !link.is_open() {
            return;
        }
        let deadline_ms = self.now_ms + CLOSE_GRACE_MS;
        let before = link.queued();
        link.start_close(frame, code, cause, discard_pending);
        self.budget.replace(before, link.queued());
        self.mark_dirty(key, link);
        self.closing.push_back((deadline_ms, link.serial()));
    }
}

/// Queues `frame` for the socket at `key`, making room on the node if it must; true if it
/// was queued.
pub(super) fn deliver(core: &mut Core, conns: &mut Slab<Connection>, key: usize, frame: Bytes) -> bool {
    match core.queue_data(key, conns[key].link_mut(), frame, true) {
        Queued::Yes => true,
        Queued::No => false,
        Queued::NeedsRoom(frame) => {
            let len = frame.len();
            let mut sockets = Sockets { core, conns };
            close_oldest_blocked(&mut sockets, |sockets| sockets.core.budget.node_room(len + FRAME_OVERHEAD));
            let Sockets { core, conns } = sockets;
            matches!(core.queue_data(key, conns[key].link_mut(), frame, false), Queued::Yes)
        }
    }
}

/// A worker's sockets, for closing the longest-blocked ones to make room on the node.
pub(super) struct Sockets<'a> {
    pub core: &'a mut Core,
    pub conns: &'a mut Slab<Connection>,
}

impl Evict for Sockets<'_> {
    fn budget(&mut self) -> &mut Budget {
        &mut self.core.budget
    }

    fn current(&self, serial: u64, since: u32) -> Option<usize> {
        blocked_entry(self.conns, serial, since)
    }

    fn evict(&mut self, key: usize) {
        let link = self.conns[key].link_mut();
        bump(&self.core.shared.counters.node_buffer_disconnects, 1);
        tracing::debug!(id = %crate::log_safe::Escaped(link.id()), queued = link.queued(), "node buffer limit: closing the longest-blocked socket");
        self.core.close(
            key,
            link,
            close_code::POLICY_VIOLATION,
            "node buffer limit",
            CloseCause::Initiate,
            true,
        );
    }
}

/// The key of the socket an entry of the blocked list names, if the entry is current: the
/// socket is open and has been write-blocked since then.
pub(super) fn blocked_entry(conns: &Slab<Connection>, serial: u64, since: u32) -> Option<usize> {
    let key = Worker::key_of_serial(serial);
    let link = conns.get(key)?.link();
    (link.serial() == serial && link.is_open() && link.is_write_blocked() && link.blocked_since() == since)
        .then_some(key)
}

impl Worker {
    pub(super) fn on_writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let link = conn.link_mut();
        if link.unblock() {
            let _ = link.reregister(&self.core.registry, Token(key), Interest::READABLE);
            self.flush(key);
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.core.dirty);
        for &key in &dirty {
            self.flush(key);
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.core.dirty.is_empty() {
            self.core.dirty = dirty;
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let link = conn.link_mut();
        link.clear_dirty();
        if self.core.flush(key, link) == Flushed::Finished {
            self.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `room` bytes, then would block.
    struct Socket {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.taken.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_socket_keeps_the_rest_and_a_started_frame_is_never_discarded() {
        let mut queue = OutputQueue::default();
        for frame in [&b"abc"[..], b"defg", b"hi"] {
            queue.push(Bytes::copy_from_slice(frame));
        }
        assert_eq!(queue.cost(), 9 + 3 * FRAME_OVERHEAD);
        let mut socket = Socket { taken: Vec::new(), room: 5 };
        assert_eq!(queue.write_to(&mut socket).unwrap(), 5);
        assert_eq!(socket.taken, b"abcde");
        assert_eq!(queue.cost(), 4 + 2 * FRAME_OVERHEAD);
        queue.discard_pending();
        assert_eq!(queue.cost(), 2 + FRAME_OVERHEAD, "the rest of `defg` stays, `hi` goes");
        socket.room = 100;
        assert_eq!(queue.write_to(&mut socket).unwrap(), 2);
        assert_eq!(socket.taken, b"abcdefg");
        assert!(queue.is_empty());
        assert_eq!(queue.cost(), 0);
    }

    #[test]
    fn a_waiting_pong_is_replaced_until_something_follows_it_or_it_is_started() {
        let mut queue = OutputQueue::default();
        let pong = |payload: &[u8]| frame::encode(OpCode::Pong, payload);
        assert!(queue.replace_pong(pong(b"1")).is_err(), "nothing to replace in an empty queue");
        queue.push(pong(b"1"));
        assert!(queue.replace_pong(pong(b"22")).is_ok());
        assert!(queue.replace_pong(pong(b"333")).is_ok());
        assert_eq!(queue.cost(), 5 + FRAME_OVERHEAD);
        // Started: it stays whole, and the next pong goes behind it.
        let mut socket = Socket { taken: Vec::new(), room: 1 };
        queue.write_to(&mut socket).unwrap();
        assert!(queue.replace_pong(pong(b"4")).is_err());
        queue.push(pong(b"4"));
        assert!(queue.replace_pong(pong(b"5")).is_ok());
        // Data after a pong: a newer pong goes behind the data.
        queue.push(frame::encode(OpCode::Text, b"data"));
        assert!(queue.replace_pong(pong(b"6")).is_err());
        socket.room = 100;
        queue.write_to(&mut socket).unwrap();
        let expected: Vec<u8> = [pong(b"333"), pong(b"5"), frame::encode(OpCode::Text, b"data")].concat();
        assert_eq!(socket.taken, expected);
        assert_eq!(queue.cost(), 0);
        // Written out: the queue is empty, nothing to replace.
        assert!(queue.replace_pong(pong(b"7")).is_err());
    }
}

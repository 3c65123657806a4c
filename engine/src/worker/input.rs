//! Input: reading sockets, decoding frames, and answering them. Input is bounded per
//! socket in size (the decoder's `max_message_size`, 1009) and rate
//! (`max_inbound_*_per_second`, 1008).

use std::io;

use super::connection::{CloseCause, Link};
use super::core::Core;
use super::event_loop::Worker;
use crate::compression::InflateError;
use crate::frame::{self, close_code, Frame, OpCode, ProtocolError};
use crate::stats::bump;
use crate::{ConnectionId, Event, Message};

/// A compressed message that inflates past `max_message_size`.
const TOO_BIG: ProtocolError =
    ProtocolError { close_code: close_code::MESSAGE_TOO_BIG, reason: "message too big" };
/// A compressed text message that is not UTF-8 once inflated.
const INVALID_UTF8: ProtocolError =
    ProtocolError { close_code: close_code::INVALID_PAYLOAD, reason: "text message is not valid UTF-8" };
/// A compressed message that is not DEFLATE data.
const CORRUPT: ProtocolError =
    ProtocolError { close_code: close_code::INVALID_PAYLOAD, reason: "invalid compressed data" };

/// A partial-frame buffer larger than this is released once the frame is done, so one
/// large message does not pin memory for the life of the socket.
const RETAINED_INPUT_CAPACITY: usize = 16 * 1024;

/// Most bytes read from one socket per pass of its worker's loop (one read of the worker's
/// buffer). A socket with more input waiting is read again next pass, after the commands
/// and the other ready sockets: a client sending as fast as it can gets its share of the
/// worker, and the rest (pushes, timers, other clients) gets theirs. 64 KiB of the
/// smallest frames (6 bytes each) decode in well under a millisecond.
pub(super) const READ_PER_PASS: usize = 64 * 1024;

/// Most bytes read from a socket after its close started, looking for the peer's close
/// frame behind what it had in flight. Past that (a client that keeps sending instead of
/// answering) the socket is no longer read, and is dropped at its close deadline.
const READ_WHILE_CLOSING: u32 = 256 * 1024;

impl Worker {
    /// Reads and handles what the socket has, up to [`READ_PER_PASS`]; a socket with more
    /// left is listed to be read again next pass (readiness is edge-triggered: no new
    /// event would say it has input).
    pub(super) fn on_readable(&mut self, key: usize) {
        let mut left = READ_PER_PASS;
        loop {
            let Some(conn) = self.conns.get_mut(key) else { return };
            let link = conn.link_mut();
            if !link.reads(READ_WHILE_CLOSING) {
                return;
            }
            if left == 0 {
                if link.mark_more_input() {
                    self.still_readable.push((key, link.serial()));
                }
                return;
            }
            let len = left.min(self.read_buf.len());
            match link.read(&mut self.read_buf[..len]) {
                Ok(0) => return self.remove(key),
                Ok(n) => {
                    left -= n;
                    link.count_read(n);
                    let now = self.core.now_ms;
                    let settings = &self.core.settings;
                    if settings.limits_inbound_rate() {
                        link.elapse_inbound(now);
                        let per_second = settings.bytes_per_second;
                        if per_second > 0 && link.is_open() && !link.charge_bytes(n, per_second) {
                            // Still decoded below, for the peer's close frame; the rest is ignored.
                            self.core.rate_limited(key, link);
                        }
                    }
                    link.input_at(now);
                    if link.accepts_frames() {
                        self.decode_input(key, n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    link.take_more_input();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.remove(key),
            }
        }
    }

    /// Reads again the sockets that the last pass left with input waiting (listed in
    /// `carried`, taken at the start of this pass, which is emptied).
    pub(super) fn read_still_readable(&mut self, carried: &mut Vec<(usize, u64)>) {
        for (key, serial) in carried.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else { continue };
            let link = conn.link_mut();
            if link.serial() == serial && link.take_more_input() {
                self.on_readable(key);
            }
        }
    }

    /// Decodes the connection's partial input followed by `read_buf[..n]`, handling every
    /// complete frame, and keeps the tail of an incomplete one.
    pub(super) fn decode_input(&mut self, key: usize, n: usize) {
        let (link, decoder, partial_input) = self.conns[key].parts();
        let from_partial = !partial_input.is_empty();
        let input: &mut [u8] = if from_partial {
            partial_input.extend_from_slice(&self.read_buf[..n]);
            partial_input
        } else {
            &mut self.read_buf[..n]
        };
        let mut pos = 0;
        while link.accepts_frames() && pos < input.len() {
            match decoder.decode(&mut input[pos..]) {
                Ok(None) => break,
                Ok(Some((used, frame))) => {
                    pos += used;
                    let interval = self.core.settings.frame_interval_ns;
                    if interval > 0
                        && link.is_open()
                        && !matches!(frame, Some(Frame::Close { .. }))
                        && !link.charge_frame(interval)
                    {
                        // This frame is not handled, nor any but the peer's close after it.
                        self.core.rate_limited(key, link);
                        continue;
                    }
                    if let Some(frame) = frame {
                        self.core.on_frame(key, link, frame);
                    }
                }
                Err(error) if link.is_open() => self.core.fail(key, link, error),
                Err(_) => link.input_failed(),
            }
        }
        if !link.accepts_frames() {
            *partial_input = Vec::new();
        } else if from_partial {
            partial_input.drain(..pos);
            if partial_input.is_empty() && partial_input.capacity() > RETAINED_INPUT_CAPACITY {
                *partial_input = Vec::new();
            }
        } else if pos < n {
            partial_input.extend_from_slice(&self.read_buf[pos..n]);
        }
    }
}

impl Core {
    /// The socket broke the protocol: closed with the error's code, counted.
    fn fail(&mut self, key: usize, link: &mut Link, error: ProtocolError) {
        let counters = &self.shared.counters;
        bump(&counters.protocol_errors, 1);
        if error.close_code == close_code::MESSAGE_TOO_BIG {
            bump(&counters.messages_too_big, 1);
        }
        tracing::debug!(id = %crate::log_safe::Escaped(link.id()), %error, "protocol error");
        self.close(key, link, error.close_code, error.reason, CloseCause::Fail, false);
    }

    /// The socket sent over its inbound rate: 1008, counted.
    fn rate_limited(&mut self, key: usize, link: &mut Link) {
        bump(&self.shared.counters.inbound_rate_limited, 1);
        tracing::debug!(id = %crate::log_safe::Escaped(link.id()), "inbound rate limit exceeded");
        let cause = CloseCause::Initiate;
        self.close(key, link, close_code::POLICY_VIOLATION, "rate limit exceeded", cause, false);
    }

    fn on_frame(&mut self, key: usize, link: &mut Link, frame: Frame<'_>) {
        if !link.is_open() {
            // Closing: only the peer's close frame matters now.
            if let Frame::Close { .. } = frame {
                link.peer_closed();
                self.mark_dirty(key, link);
            }
            return;
        }
        match frame {
            Frame::Message(message) => self.on_message(key, link, message),
            Frame::Compressed { text, payload } => self.on_compressed(key, link, text, payload),
            Frame::Ping(payload) => self.queue_control(key, link, frame::encode(OpCode::Pong, payload), true),
            Frame::Pong(_) => {}
            Frame::Close { code, .. } => {
                let reply = match code {
                    Some(code) => frame::encode_close(code, ""),
                    None => frame::encode(OpCode::Close, b""),
                };
                let code = code.unwrap_or(close_code::NO_STATUS);
                self.start_close(key, link, reply, code, CloseCause::Answer, false);
            }
        }
    }

    fn on_message(&mut self, key: usize, link: &mut Link, message: Message<'_>) {
        bump(&self.shared.counters.messages_in, 1);
        bump(&self.shared.counters.bytes_in, message.as_bytes().len() as u64);
        let conn = ConnectionId::new(self.worker, link.serial());
        self.emit(&Event::Message { conn, id: link.id(), message });
        if let Some(backplane) = &self.shared.backplane {
            backplane.inbound(link.id(), message);
        }
        if self.settings.echo {
            // A reply to the socket at hand: it cannot make room among the others.
            let echo = frame::encode_message(message);
            // Set only with history on: a wspush.v1 socket gets every frame with a head.
            let echo = if link.is_v1() { crate::history::wire::relabel(&echo, None) } else { echo };
            self.queue_data(key, link, echo, false);
        }
    }

    /// A permessage-deflate message: inflated (never past `max_message_size`: 1009, and
    /// counted as a bomb), its text checked as UTF-8 (1007), then handled as any message.
    fn on_compressed(&mut self, key: usize, link: &mut Link, text: bool, payload: &[u8]) {
        // The decoder allows RSV1 only to a socket that negotiated compression, which the
        // acceptor offers only with the worker's compression on.
        let Some(mut inflater) = self.inflater.take() else {
            return self.fail(
                key,
                link,
                ProtocolError { close_code: close_code::PROTOCOL_ERROR, reason: "reserved bits set" },
            );
        };
        match inflater.inflate(payload, self.settings.max_message_size) {
            Ok(data) if !text => self.on_message(key, link, Message::Binary(data)),
            Ok(data) => match simdutf8::basic::from_utf8(data) {
                Ok(text) => self.on_message(key, link, Message::Text(text)),
                Err(_) => self.fail(key, link, INVALID_UTF8),
            },
            Err(InflateError::TooBig) => {
                bump(&self.shared.counters.inflated_too_big, 1);
                self.fail(key, link, TOO_BIG);
            }
            Err(InflateError::Corrupt) => self.fail(key, link, CORRUPT),
        }
        self.inflater = Some(inflater);
    }
}

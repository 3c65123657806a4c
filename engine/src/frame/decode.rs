//! Decoding client frames: bytes in, frames or a [`ProtocolError`] out, unmasking in place.

use std::fmt;

use super::header::{Header, FIN, LEN_16, LEN_64, LEN_BITS, MASKED, OPCODE_BITS};
use super::{apply_mask, close_code, is_valid_close_code, OpCode, Rsv, MAX_CONTROL_PAYLOAD};
use crate::Message;

/// A protocol violation: the connection must be failed with `close_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code to send (1002, 1007 or 1009).
    pub close_code: u16,
    /// A short reason for logs and for the close frame; at most 123 bytes.
    pub reason: &'static str,
}

impl ProtocolError {
    const fn protocol(reason: &'static str) -> Self {
        Self { close_code: close_code::PROTOCOL_ERROR, reason }
    }

    const fn invalid_utf8(reason: &'static str) -> Self {
        Self { close_code: close_code::INVALID_PAYLOAD, reason }
    }

    const fn too_big() -> Self {
        Self { close_code: close_code::MESSAGE_TOO_BIG, reason: "message too big" }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.close_code)
    }
}

impl std::error::Error for ProtocolError {}

/// What one decoded frame amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete data message (single frame, or the last fragment of a fragmented one).
    Message(Message<'a>),
    /// A complete data message whose first frame had RSV1 set: compressed with
    /// permessage-deflate (RFC 7692), which the decoder accepts only where
    /// [`Decoder::with_allowed_rsv`] allowed RSV1. `payload` is the DEFLATE data as received
    /// (without its sync tail), not inflated, so a text message's UTF-8 is checked only
    /// after inflating.
    Compressed {
        /// Whether the message is text (opcode 1) rather than binary.
        text: bool,
        /// The compressed payload.
        payload: &'a [u8],
    },
    /// A ping with its payload, to be answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// A close frame. `code` is `None` for an empty close payload (then `reason` is empty).
    Close {
        /// The close code, always valid per [`is_valid_close_code`].
        code: Option<u16>,
        /// The reason, possibly empty.
        reason: &'a str,
    },
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Fragments {
    text: bool,
    /// The first frame had RSV1 set: the data is compressed, so not checked as UTF-8.
    compressed: bool,
    data: Vec<u8>,
    /// Length of the prefix of `data` known to be valid UTF-8 (text only), so that each
    /// fragment is checked once and an invalid sequence fails the message at once.
    utf8_valid: usize,
    /// The message was returned by the last `decode`; it is dropped by the next one.
    complete: bool,
}

/// Incremental decoder of client-to-server frames for one connection.
///
/// An idle decoder is a few words: the reassembly buffer exists only while a fragmented
/// message is in progress, and is freed once the message has been returned.
///
/// # Examples
///
/// Decoding everything a read brought in, then keeping the rest for the next read:
///
/// ```
/// use wspush::frame::{encode_masked, Decoder, Frame, OpCode};
/// use wspush::Message;
///
/// let mut decoder = Decoder::new(1 << 20);
/// let mut input = encode_masked(OpCode::Text, b"hi", [1, 2, 3, 4], true);
/// input.extend_from_slice(&encode_masked(OpCode::Ping, b"", [5, 6, 7, 8], true)[..3]);
///
/// let mut start = 0;
/// while let Some((consumed, frame)) = decoder.decode(&mut input[start..])? {
///     start += consumed;
///     match frame {
///         Some(Frame::Message(Message::Text(text))) => assert_eq!(text, "hi"),
///         other => panic!("unexpected {other:?}"),
///     }
/// }
/// // A partial ping is left: drop what was consumed, append the next read, decode again.
/// input.drain(..start);
/// assert_eq!(input.len(), 3);
/// # Ok::<(), wspush::frame::ProtocolError>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    max_message_size: usize,
    /// Payload bytes of the data frame at the start of the caller's buffer that earlier
    /// calls (which returned `Ok(None)`) already unmasked in place (single text frame) or
    /// copied into `fragments`: never unmask a byte twice.
    partial: usize,
    /// For a single text frame arriving in pieces: the length of its payload prefix known
    /// to be valid UTF-8.
    partial_utf8: usize,
    fragments: Option<Box<Fragments>>,
    /// Reserved bits the first frame of a data message may carry: the connection's
    /// negotiated extensions decide, the decoder only checks.
    allowed_rsv: Rsv,
}

impl Decoder {
    /// A decoder that accepts messages of up to `max_message_size` bytes (after
    /// reassembling fragments) and no reserved bits: what a connection without
    /// extensions gets.
    pub fn new(max_message_size: usize) -> Self {
        Self::with_allowed_rsv(max_message_size, Rsv::NONE)
    }

    /// A decoder that also accepts the reserved bits `allowed` on the first frame of a
    /// data message (a text or binary frame, final or not), as negotiated extensions
    /// ask: see [`Extensions::allowed_rsv`](crate::extensions::Extensions::allowed_rsv).
    ///
    /// Only there, because that is the one place RFC 7692 (permessage-deflate, section
    /// 6.1) lets an extension set RSV1: on a continuation or control frame, and anywhere
    /// for bits not in `allowed`, a reserved bit still fails the connection with 1002.
    pub fn with_allowed_rsv(max_message_size: usize, allowed: Rsv) -> Self {
        Self { max_message_size, partial: 0, partial_utf8: 0, fragments: None, allowed_rsv: allowed }
    }

    /// Bytes held for a fragmented message in progress (0 when idle).
    pub fn buffered_len(&self) -> usize {
        match &self.fragments {
            Some(fragments) if !fragments.complete => fragments.data.len(),
            _ => 0,
        }
    }

    /// Decodes the next frame at the start of `buf`, unmasking its payload in place.
    ///
    /// - `Ok(None)`: `buf` holds no complete frame yet, and nothing wrong has been seen so
    ///   far. Append more bytes and call again with the same start. The bytes already in
    ///   `buf` must be kept as they are (they may be moved): a text frame arriving in
    ///   pieces is unmasked and UTF-8 checked piece by piece, so that invalid text fails
    ///   the connection before the rest of a large frame arrives.
    /// - `Ok(Some((consumed, None)))`: a non-final fragment was absorbed into the
    ///   reassembly buffer; the first `consumed` bytes of `buf` are done.
    /// - `Ok(Some((consumed, Some(frame))))`: a frame or message is complete; the first
    ///   `consumed` bytes of `buf` are done. `frame` borrows `buf` or, for the last
    ///   fragment of a fragmented message, the decoder's reassembly buffer, which is
    ///   freed by the next call.
    ///
    /// Control frames between the fragments of a message are returned as they come.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the client broke the protocol: the connection must be
    /// failed with its close code. Header errors are reported as soon as the header is
    /// in, before the payload arrives: 1002 for reserved bits that are not allowed (see
    /// [`with_allowed_rsv`](Self::with_allowed_rsv)), reserved opcodes, an unmasked
    /// frame, a fragmented or over-long control frame, an invalid length, a continuation
    /// without a message or a new message inside a fragmented one, or a bad close
    /// payload; 1009 for a message over the maximum size; 1007 for text or a close
    /// reason that is not UTF-8. After an error the decoder must not be used again.
    pub fn decode<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> Result<Option<(usize, Option<Frame<'a>>)>, ProtocolError> {
        if self.fragments.as_ref().is_some_and(|fragments| fragments.complete) {
            self.fragments = None;
        }
        let Some(header) = self.parse_header(buf)? else {
            return Ok(None);
        };
        let available = (buf.len() - header.len).min(header.payload_len);
        if available < self.partial {
            // The caller broke the contract (it dropped bytes this decoder had already
            // unmasked); waiting is the only answer that cannot corrupt anything.
            return Ok(None);
        }
        match header.opcode {
            OpCode::Text | OpCode::Binary if header.fin => self.decode_single(buf, &header, available),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.decode_fragment(buf, &header, available)
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if available < header.payload_len {
                    return Ok(None);
                }
                let consumed = header.len + header.payload_len;
                let payload = &mut buf[header.len..consumed];
                apply_mask(payload, header.mask, 0);
                let frame = match header.opcode {
                    OpCode::Ping => Frame::Ping(payload),
                    OpCode::Pong => Frame::Pong(payload),
                    _ => parse_close(payload)?,
                };
                Ok(Some((consumed, Some(frame))))
            }
        }
    }

    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        let rsv = Rsv::from_first_byte(first);
        // Checked before the opcode, so that with no extension (no bit allowed) a frame
        // fails with the same reason as it always has.
        if !self.allowed_rsv.contains(rsv) {
            return Err(ProtocolError::protocol("reserved bits set"));
        }
        let opcode =
            OpCode::from_bits(first & OPCODE_BITS).ok_or(ProtocolError::protocol("reserved opcode"))?;
        if !rsv.is_empty() && !matches!(opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::protocol("reserved bits set"));
        }
        let fin = first & FIN != 0;
        if second & MASKED == 0 {
            return Err(ProtocolError::protocol("unmasked client frame"));
        }
        let short_len = second & LEN_BITS;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::protocol("fragmented control frame"));
            }
            if usize::from(short_len) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::protocol("control frame payload over 125 bytes"));
            }
        }
        // Bytes of the message already reassembled before this frame.
        let message_so_far = match (opcode, &self.fragments) {
            (OpCode::Continuation, None) => {
                return Err(ProtocolError::protocol("continuation frame without a message"));
            }
            // `data` already holds the pieces of this frame absorbed by earlier calls.
            (OpCode::Continuation, Some(fragments)) => fragments.data.len().saturating_sub(self.partial),
            // Unless `partial` says this very frame started the message in an earlier call.
            (OpCode::Text | OpCode::Binary, Some(_)) if self.partial == 0 => {
                return Err(ProtocolError::protocol("new message inside a fragmented message"));
            }
            _ => 0,
        };
        let (length_bytes, payload_len) = match short_len {
            LEN_16 => {
                let Some(&[a, b]) = buf.get(2..4) else {
                    return Ok(None);
                };
                (2, u64::from(u16::from_be_bytes([a, b])))
            }
            LEN_64 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut word = [0u8; 8];
                word.copy_from_slice(bytes);
                let len = u64::from_be_bytes(word);
                if len >> 63 != 0 {
                    return Err(ProtocolError::protocol("payload length with the top bit set"));
                }
                (8, len)
            }
            len => (0, u64::from(len)),
        };
        let room = self.max_message_size.saturating_sub(message_so_far);
        let payload_len = match usize::try_from(payload_len) {
            Ok(len) if opcode.is_control() || len <= room => len,
            _ => return Err(ProtocolError::too_big()),
        };
        let len = 2 + length_bytes + 4;
        let Some(mask) = buf.get(len - 4..len) else {
            return Ok(None);
        };
        let mask = [mask[0], mask[1], mask[2], mask[3]];
        Ok(Some(Header { fin, rsv, opcode, mask, len, payload_len }))
    }

    /// An unfragmented text or binary message.
    fn decode_single<'a>(
        &mut self,
        buf: &'a mut [u8],
        header: &Header,
        available: usize,
    ) -> Result<Option<(usize, Option<Frame<'a>>)>, ProtocolError> {
        let payload_start = header.len;
        if header.opcode == OpCode::Binary || header.rsv.rsv1() {
            if available < header.payload_len {
                return Ok(None);
            }
            let payload = &mut buf[payload_start..payload_start + header.payload_len];
            apply_mask(payload, header.mask, 0);
            let frame = if header.rsv.rsv1() {
                Frame::Compressed { text: header.opcode == OpCode::Text, payload }
            } else {
                Frame::Message(Message::Binary(payload))
            };
            return Ok(Some((payload_start + header.payload_len, Some(frame))));
        }
        if available < header.payload_len {
            // Text arriving in pieces: unmask and check what is new, so that invalid
            // UTF-8 fails now rather than after the whole (possibly huge) frame.
            if available > self.partial {
                apply_mask(
                    &mut buf[payload_start + self.partial..payload_start + available],
                    header.mask,
                    self.partial,
                );
                self.partial = available;
                check_utf8_prefix(&buf[payload_start..payload_start + available], &mut self.partial_utf8)?;
            }
            return Ok(None);
        }
        let consumed = payload_start + header.payload_len;
        apply_mask(&mut buf[payload_start + self.partial..consumed], header.mask, self.partial);
        self.partial = 0;
        self.partial_utf8 = 0;
        let payload = &buf[payload_start..consumed];
        let text = simdutf8::basic::from_utf8(payload)
            .map_err(|_| ProtocolError::invalid_utf8("text message is not valid UTF-8"))?;
        Ok(Some((consumed, Some(Frame::Message(Message::Text(text))))))
    }

    /// A fragment: the first (non-final text or binary frame) or a continuation.
    fn decode_fragment<'a>(
        &'a mut self,
        buf: &[u8],
        header: &Header,
        available: usize,
    ) -> Result<Option<(usize, Option<Frame<'a>>)>, ProtocolError> {
        if available < header.payload_len && available == self.partial {
            // Nothing new; in particular no reassembly state is created before the first
            // payload byte of a first fragment, so that the next call still sees it as
            // the start of a message.
            return Ok(None);
        }
        let fragments = match header.opcode {
            OpCode::Continuation => match self.fragments.as_deref_mut() {
                Some(fragments) => fragments,
                None => return Err(ProtocolError::protocol("continuation frame without a message")),
            },
            opcode => &mut **self.fragments.get_or_insert_with(|| {
                Box::new(Fragments {
                    text: opcode == OpCode::Text,
                    compressed: header.rsv.rsv1(),
                    data: Vec::new(),
                    utf8_valid: 0,
                    complete: false,
                })
            }),
        };
        // Grows with the bytes actually received, never with the announced length.
        let old_len = fragments.data.len();
        fragments.data.extend_from_slice(&buf[header.len + self.partial..header.len + available]);
        apply_mask(&mut fragments.data[old_len..], header.mask, self.partial);
        self.partial = available;
        if fragments.text && !fragments.compressed {
            check_utf8_prefix(&fragments.data, &mut fragments.utf8_valid)?;
        }
        if available < header.payload_len {
            return Ok(None);
        }
        self.partial = 0;
        let consumed = header.len + header.payload_len;
        if !header.fin {
            return Ok(Some((consumed, None)));
        }
        fragments.complete = true;
        if fragments.compressed {
            return Ok(Some((
                consumed,
                Some(Frame::Compressed { text: fragments.text, payload: &fragments.data }),
            )));
        }
        let message = if fragments.text {
            let text = simdutf8::basic::from_utf8(&fragments.data)
                .map_err(|_| ProtocolError::invalid_utf8("text message is not valid UTF-8"))?;
            Message::Text(text)
        } else {
            Message::Binary(&fragments.data)
        };
        Ok(Some((consumed, Some(Frame::Message(message)))))
    }
}

/// Extends `*valid` (a prefix of `data` known to be valid UTF-8) as far as `data` allows.
///
/// # Errors
///
/// 1007 if `data` has an invalid sequence; an incomplete code point at the end is not an
/// error, as the rest of it may still arrive.
fn check_utf8_prefix(data: &[u8], valid: &mut usize) -> Result<(), ProtocolError> {
    let Some(rest) = data.get(*valid..) else {
        return Ok(());
    };
    match simdutf8::compat::from_utf8(rest) {
        Ok(_) => *valid = data.len(),
        Err(error) if error.error_len().is_none() => *valid += error.valid_up_to(),
        Err(_) => return Err(ProtocolError::invalid_utf8("text message is not valid UTF-8")),
    }
    Ok(())
}

fn parse_close(payload: &[u8]) -> Result<Frame<'_>, ProtocolError> {
    match *payload {
        [] => Ok(Frame::Close { code: None, reason: "" }),
        [_] => Err(ProtocolError::protocol("close payload of 1 byte")),
        [high, low, ref reason @ ..] => {
            let code = u16::from_be_bytes([high, low]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::protocol("invalid close code"));
            }
            let reason = simdutf8::basic::from_utf8(reason)
                .map_err(|_| ProtocolError::invalid_utf8("close reason is not valid UTF-8"))?;
            Ok(Frame::Close { code: Some(code), reason })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode_masked;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn round_trips() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 100_000] {
            let data = sample(len);
            let wire = encode_masked(OpCode::Binary, &data, MASK, true);
            let mut decoder = Decoder::new(MAX);
            assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Binary(data)));

            let text = "ab".repeat(len / 2) + if len % 2 == 1 { "c" } else { "" };
            assert_eq!(text.len(), len);
            let wire = encode_masked(OpCode::Text, text.as_bytes(), MASK, true);
            assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Text(text)));
            assert_eq!(decoder.buffered_len(), 0);
        }
    }

    #[test]
    fn control_frames_round_trip() {
        let mut decoder = Decoder::new(MAX);
        let wire = encode_masked(OpCode::Ping, b"are you there", MASK, true);
        assert_eq!(
            decode_one(&mut decoder, &wire).unwrap(),
            Some(OwnedFrame::Ping(b"are you there".to_vec()))
        );
        let wire = encode_masked(OpCode::Pong, &sample(125), MASK, true);
        assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Pong(sample(125))));
        let wire = encode_masked(OpCode::Close, b"", MASK, true);
        assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Close(None, String::new())));
        let wire = encode_masked(OpCode::Close, &[0x03, 0xE8], MASK, true);
        assert_eq!(
            decode_one(&mut decoder, &wire).unwrap(),
            Some(OwnedFrame::Close(Some(1000), String::new()))
        );
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        let wire = encode_masked(OpCode::Close, &payload, MASK, true);
        assert_eq!(
            decode_one(&mut decoder, &wire).unwrap(),
            Some(OwnedFrame::Close(Some(4000), "bye ✓".into()))
        );
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut wire = encode_masked(OpCode::Text, b"one", MASK, true);
        wire.extend(encode_masked(OpCode::Ping, b"p", MASK, true));
        wire.extend(encode_masked(OpCode::Binary, &[1, 2, 3], MASK, true));
        wire.extend(&encode_masked(OpCode::Text, b"partial", MASK, true)[..5]);
        let mut decoder = Decoder::new(MAX);
        let mut start = 0;
        let mut frames = Vec::new();
        while let Some((consumed, frame)) = decoder.decode(&mut wire[start..]).unwrap() {
            start += consumed;
            frames.push(frame.map(OwnedFrame::from));
        }
        assert_eq!(
            frames,
            [
                Some(OwnedFrame::Text("one".into())),
                Some(OwnedFrame::Ping(b"p".to_vec())),
                Some(OwnedFrame::Binary(vec![1, 2, 3])),
            ]
        );
        assert_eq!(wire.len() - start, 5);
    }

    #[test]
    fn header_errors_are_found_before_the_payload() {
        let header = |first: u8, second: u8| error_of(&mut Decoder::new(MAX), &[first, second]);
        // RSV1, RSV2, RSV3.
        assert_eq!(header(0x81 | 0x40, 0x85), 1002);
        assert_eq!(header(0x81 | 0x20, 0x85), 1002);
        assert_eq!(header(0x81 | 0x10, 0x85), 1002);
        for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(header(0x80 | opcode, 0x80), 1002, "opcode {opcode}");
        }
        // Unmasked.
        assert_eq!(header(0x81, 0x05), 1002);
        // Control frames: over 125 bytes, or not final.
        assert_eq!(header(0x89, 0x80 | 126), 1002);
        assert_eq!(header(0x89, 0x80 | 127), 1002);
        assert_eq!(header(0x8A, 0x80 | 126), 1002);
        assert_eq!(header(0x88, 0x80 | 126), 1002);
        assert_eq!(header(0x09, 0x80), 1002);
        assert_eq!(header(0x0A, 0x80), 1002);
        assert_eq!(header(0x08, 0x80), 1002);
        // Continuation without a message.
        assert_eq!(header(0x80, 0x80), 1002);
        assert_eq!(header(0x00, 0x80), 1002);

        // A 64-bit length with the top bit set, before the mask arrives.
        let mut wire = vec![0x82, 0x80 | 127];
        wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(error_of(&mut Decoder::new(usize::MAX), &wire), 1002);
    }

    #[test]
    fn oversized_messages_get_1009_before_the_payload() {
        let mut decoder = Decoder::new(100);
        let wire = encode_masked(OpCode::Binary, &sample(101), MASK, true);
        assert_eq!(error_of(&mut decoder, &wire[..4]), 1009);
        let wire = encode_masked(OpCode::Text, &sample(101), MASK, false);
        assert_eq!(error_of(&mut Decoder::new(100), &wire[..2]), 1009);
        // Exactly the maximum is fine.
        let wire = encode_masked(OpCode::Binary, &sample(100), MASK, true);
        assert!(decode_one(&mut Decoder::new(100), &wire).is_ok());
        // 2^62 bytes announced: an error, no allocation.
        let mut wire = vec![0x82, 0x80 | 127];
        wire.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert_eq!(error_of(&mut Decoder::new(MAX), &wire), 1009);
    }

    #[test]
    fn fragments_over_the_maximum_get_1009() {
        let mut decoder = Decoder::new(100);
        let first = encode_masked(OpCode::Text, &[b'a'; 60], MASK, false);
        assert_eq!(decode_one(&mut decoder, &first).unwrap(), None);
        let second = encode_masked(OpCode::Continuation, &[b'a'; 40], MASK, false);
        assert_eq!(decode_one(&mut decoder, &second).unwrap(), None);
        let third = encode_masked(OpCode::Continuation, &[b'a'; 1], MASK, true);
        assert_eq!(error_of(&mut decoder, &third[..2]), 1009);

        // A fragment that fills the message exactly is fine.
        let mut decoder = Decoder::new(100);
        assert_eq!(decode_one(&mut decoder, &first).unwrap(), None);
        let last = encode_masked(OpCode::Continuation, &[b'a'; 40], MASK, true);
        assert_eq!(decode_one(&mut decoder, &last).unwrap(), Some(OwnedFrame::Text("a".repeat(100))));
    }

    #[test]
    fn a_huge_announced_fragment_grows_only_with_what_arrives() {
        let mut decoder = Decoder::new(usize::MAX);
        let mut wire = vec![0x02, 0x80 | 127];
        wire.extend_from_slice(&(1u64 << 62).to_be_bytes());
        wire.extend_from_slice(&MASK);
        wire.extend_from_slice(&[0; 10]);
        assert_eq!(decoder.decode(&mut wire).unwrap(), None);
        assert_eq!(decoder.buffered_len(), 10);
    }

    #[test]
    fn sequencing_errors() {
        // A new message while a fragmented one is in progress.
        let mut decoder = Decoder::new(MAX);
        assert_eq!(decode_one(&mut decoder, &encode_masked(OpCode::Text, b"a", MASK, false)).unwrap(), None);
        assert_eq!(error_of(&mut decoder, &encode_masked(OpCode::Text, b"b", MASK, true)), 1002);
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            decode_one(&mut decoder, &encode_masked(OpCode::Binary, b"a", MASK, false)).unwrap(),
            None
        );
        assert_eq!(error_of(&mut decoder, &encode_masked(OpCode::Binary, b"b", MASK, false)), 1002);

        // A continuation after the message it continued is over.
        let mut decoder = Decoder::new(MAX);
        assert_eq!(decode_one(&mut decoder, &encode_masked(OpCode::Text, b"a", MASK, false)).unwrap(), None);
        let last = encode_masked(OpCode::Continuation, b"b", MASK, true);
        assert_eq!(decode_one(&mut decoder, &last).unwrap(), Some(OwnedFrame::Text("ab".into())));
        assert_eq!(error_of(&mut decoder, &encode_masked(OpCode::Continuation, b"c", MASK, true)), 1002);
    }

    #[test]
    fn invalid_text_gets_1007() {
        for bad in [&b"\xFF"[..], b"abc\xC0\xAFdef", b"\xED\xA0\x80", b"ok\xF4\x90\x80\x80", b"cut \xE2\x9C"]
        {
            let wire = encode_masked(OpCode::Text, bad, MASK, true);
            assert_eq!(error_of(&mut Decoder::new(MAX), &wire), 1007, "{bad:?}");
        }
        // The same bytes are fine as binary.
        let wire = encode_masked(OpCode::Binary, b"\xFF", MASK, true);
        assert!(decode_one(&mut Decoder::new(MAX), &wire).is_ok());
        // A message ending in the middle of a code point.
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            decode_one(&mut decoder, &encode_masked(OpCode::Text, b"\xE2\x9C", MASK, false)).unwrap(),
            None
        );
        assert_eq!(error_of(&mut decoder, &encode_masked(OpCode::Continuation, b"", MASK, true)), 1007);
    }

    #[test]
    fn bad_close_payloads() {
        let close = |payload: &[u8]| {
            error_of(&mut Decoder::new(MAX), &encode_masked(OpCode::Close, payload, MASK, true))
        };
        assert_eq!(close(&[0x03]), 1002);
        for code in [0u16, 999, 1004, 1005, 1006, 1012, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert_eq!(close(&code.to_be_bytes()), 1002, "code {code}");
        }
        assert_eq!(close(&[0x03, 0xE8, 0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xFF]), 1007);
        // 2 + 124 bytes is over the control frame limit.
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&[b'a'; 124]);
        assert_eq!(close(&payload), 1002);
    }

    #[test]
    fn empty_messages_and_fragments() {
        let mut decoder = Decoder::new(MAX);
        let wire = encode_masked(OpCode::Text, b"", MASK, true);
        assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Text(String::new())));
        let wire = encode_masked(OpCode::Binary, b"", MASK, true);
        assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Binary(Vec::new())));

        for opcode in [OpCode::Text, OpCode::Binary] {
            assert_eq!(decode_one(&mut decoder, &encode_masked(opcode, b"", MASK, false)).unwrap(), None);
            let middle = encode_masked(OpCode::Continuation, b"", MASK, false);
            assert_eq!(decode_one(&mut decoder, &middle).unwrap(), None);
            let last = encode_masked(OpCode::Continuation, b"", MASK, true);
            let expected = if opcode == OpCode::Text {
                OwnedFrame::Text(String::new())
            } else {
                OwnedFrame::Binary(Vec::new())
            };
            assert_eq!(decode_one(&mut decoder, &last).unwrap(), Some(expected));
        }
    }

    #[test]
    fn fragments_with_an_interleaved_ping() {
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            decode_one(&mut decoder, &encode_masked(OpCode::Text, "Hél".as_bytes(), MASK, false)).unwrap(),
            None
        );
        assert_eq!(decoder.buffered_len(), 4);
        let ping = encode_masked(OpCode::Ping, b"ping", MASK, true);
        assert_eq!(decode_one(&mut decoder, &ping).unwrap(), Some(OwnedFrame::Ping(b"ping".to_vec())));
        assert_eq!(decoder.buffered_len(), 4);
        let middle = encode_masked(OpCode::Continuation, b"lo, ", MASK, false);
        assert_eq!(decode_one(&mut decoder, &middle).unwrap(), None);
        let pong = encode_masked(OpCode::Pong, b"", MASK, true);
        assert_eq!(decode_one(&mut decoder, &pong).unwrap(), Some(OwnedFrame::Pong(Vec::new())));
        let last = encode_masked(OpCode::Continuation, "wörld".as_bytes(), MASK, true);
        assert_eq!(decode_one(&mut decoder, &last).unwrap(), Some(OwnedFrame::Text("Héllo, wörld".into())));
        assert_eq!(decoder.buffered_len(), 0);
        // The reassembly buffer is released by the next call.
        assert_eq!(decoder.decode(&mut []).unwrap(), None);
        assert!(decoder.fragments.is_none());
    }

    #[test]
    fn bytewise_input_completes_only_at_the_last_byte() {
        let text = sample_text(300);
        let frames: Vec<Vec<u8>> = vec![
            encode_masked(OpCode::Text, text.as_bytes(), MASK, true),
            encode_masked(OpCode::Binary, &sample(70_000), MASK, true),
            encode_masked(OpCode::Ping, b"x", MASK, true),
            encode_masked(OpCode::Close, &[0x03, 0xE9, b'b'], MASK, true),
            encode_masked(OpCode::Text, b"", MASK, true),
        ];
        let expected = [
            OwnedFrame::Text(text.clone()),
            OwnedFrame::Binary(sample(70_000)),
            OwnedFrame::Ping(b"x".to_vec()),
            OwnedFrame::Close(Some(1001), "b".into()),
            OwnedFrame::Text(String::new()),
        ];
        for (wire, expected) in frames.iter().zip(expected) {
            let mut decoder = Decoder::new(MAX);
            let mut buf = Vec::new();
            for (i, &byte) in wire.iter().enumerate() {
                buf.push(byte);
                let outcome = decoder.decode(&mut buf).unwrap();
                if i + 1 < wire.len() {
                    assert_eq!(outcome, None, "prefix of {} bytes", i + 1);
                } else {
                    let (consumed, frame) = outcome.unwrap();
                    assert_eq!(consumed, wire.len());
                    assert_eq!(frame.map(OwnedFrame::from).as_ref(), Some(&expected));
                }
            }
        }
    }

    #[test]
    fn bytewise_fragmented_message() {
        let text = sample_text(200);
        let bytes = text.as_bytes();
        let mut wire = encode_masked(OpCode::Text, &bytes[..7], MASK, false);
        wire.extend(encode_masked(OpCode::Ping, b"p", [9, 8, 7, 6], true));
        wire.extend(encode_masked(OpCode::Continuation, &bytes[7..150], [1, 2, 3, 4], false));
        wire.extend(encode_masked(OpCode::Continuation, &bytes[150..], [5, 6, 7, 8], true));
        wire.extend(encode_masked(OpCode::Binary, b"after", MASK, true));
        let mut decoder = Decoder::new(MAX);
        let outcomes = feed_bytewise(&mut decoder, &wire).unwrap();
        assert_eq!(
            outcomes,
            [
                None,
                Some(OwnedFrame::Ping(b"p".to_vec())),
                None,
                Some(OwnedFrame::Text(text)),
                Some(OwnedFrame::Binary(b"after".to_vec())),
            ]
        );
    }

    #[test]
    fn invalid_utf8_in_a_middle_fragment_fails_at_once() {
        let mut decoder = Decoder::new(MAX);
        let first = encode_masked(OpCode::Text, "κόσμε".as_bytes(), MASK, false);
        assert_eq!(decode_one(&mut decoder, &first).unwrap(), None);
        let middle = encode_masked(
            OpCode::Continuation,
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xF4\x90\x80\x80",
            MASK,
            false,
        );
        assert_eq!(error_of(&mut decoder, &middle), 1007);

        // An invalid sequence split across fragments is caught at its first bad byte.
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            decode_one(&mut decoder, &encode_masked(OpCode::Text, b"ok\xF4", MASK, false)).unwrap(),
            None
        );
        assert_eq!(error_of(&mut decoder, &encode_masked(OpCode::Continuation, b"\x90", MASK, false)), 1007);

        // A code point split across fragments is fine.
        let mut decoder = Decoder::new(MAX);
        assert_eq!(
            decode_one(&mut decoder, &encode_masked(OpCode::Text, b"\xE2", MASK, false)).unwrap(),
            None
        );
        assert_eq!(
            decode_one(&mut decoder, &encode_masked(OpCode::Continuation, b"\x9C", MASK, false)).unwrap(),
            None
        );
        let last = encode_masked(OpCode::Continuation, b"\x93", MASK, true);
        assert_eq!(decode_one(&mut decoder, &last).unwrap(), Some(OwnedFrame::Text("✓".into())));
    }

    #[test]
    fn invalid_utf8_in_a_partly_arrived_frame_fails_at_once() {
        let mut payload = b"valid start ".to_vec();
        payload.extend_from_slice(b"\xF4\x90\x80\x80");
        payload.extend_from_slice(&[b'x'; 1000]);
        for opcode in [OpCode::Text, OpCode::Continuation] {
            let mut decoder = Decoder::new(MAX);
            if opcode == OpCode::Continuation {
                assert_eq!(
                    decode_one(&mut decoder, &encode_masked(OpCode::Text, b"a", MASK, false)).unwrap(),
                    None
                );
            }
            let wire = encode_masked(opcode, &payload, MASK, opcode == OpCode::Text);
            let mut buf = wire[..12].to_vec();
            assert_eq!(decoder.decode(&mut buf).unwrap(), None);
            buf.extend_from_slice(&wire[12..30]);
            assert_eq!(decoder.decode(&mut buf).unwrap_err().close_code, 1007);
        }
    }

    #[test]
    fn text_in_chunks_is_unmasked_exactly_once() {
        let text = sample_text(5000);
        for chunk in [1, 3, 7, 64, 1000] {
            for opcode in [OpCode::Text, OpCode::Continuation] {
                let mut wire = Vec::new();
                if opcode == OpCode::Continuation {
                    wire.extend(encode_masked(OpCode::Binary, b"", MASK, false));
                }
                let wire_start = wire.len();
                wire.extend(encode_masked(opcode, text.as_bytes(), MASK, true));
                let mut decoder = Decoder::new(MAX);
                let mut buf = Vec::new();
                let mut outcomes = Vec::new();
                for piece in wire.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    while let Some((consumed, frame)) = decoder.decode(&mut buf).unwrap() {
                        outcomes.push(frame.map(OwnedFrame::from));
                        buf.drain(..consumed);
                    }
                }
                let expected = if opcode == OpCode::Text {
                    OwnedFrame::Text(text.clone())
                } else {
                    OwnedFrame::Binary(text.as_bytes().to_vec())
                };
                assert_eq!(outcomes.last(), Some(&Some(expected)), "chunk {chunk}, start {wire_start}");
            }
        }
    }

    #[test]
    fn an_idle_decoder_is_small() {
        assert!(std::mem::size_of::<Decoder>() <= 40);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // xorshift: a dependency-free stand-in for a fuzzer.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards plausible headers so that decoding gets past the first checks.
            if let Some(first) = input.first_mut() {
                *first &= 0x8F;
            }
            if let Some(second) = input.get_mut(1) {
                *second |= 0x80;
            }
            let mut decoder = Decoder::new((next() % 100) as usize);
            let mut start = 0;
            for step in [len / 3, len / 2, len] {
                let buf = &mut input[..step.max(start)];
                while let Ok(Some((consumed, _))) = decoder.decode(&mut buf[start..]) {
                    start += consumed;
                }
            }
        }
    }

    /// `wire` with the reserved bits `rsv` set in its first byte.
    fn with_rsv(mut wire: Vec<u8>, rsv: Rsv) -> Vec<u8> {
        wire[0] |= rsv.bits();
        wire
    }

    #[test]
    fn reserved_bits_are_decoded_into_the_header() {
        let decoder = Decoder::with_allowed_rsv(MAX, Rsv::ALL);
        for rsv in [Rsv::NONE, Rsv::RSV1, Rsv::RSV2, Rsv::RSV3, Rsv::RSV1 | Rsv::RSV3, Rsv::ALL] {
            for (opcode, fin) in [(OpCode::Text, true), (OpCode::Binary, false)] {
                let wire = with_rsv(encode_masked(opcode, &sample(300), MASK, fin), rsv);
                let header = decoder.parse_header(&wire).unwrap().unwrap();
                assert_eq!(header.rsv, rsv);
                assert_eq!(
                    (header.rsv.rsv1(), header.rsv.rsv2(), header.rsv.rsv3()),
                    (rsv.rsv1(), rsv.rsv2(), rsv.rsv3())
                );
                assert_eq!((header.fin, header.opcode, header.mask), (fin, opcode, MASK));
                assert_eq!((header.len, header.payload_len), (2 + 2 + 4, 300));
            }
        }
    }

    #[test]
    fn reserved_bits_not_allowed_get_1002() {
        for rsv in [Rsv::RSV1, Rsv::RSV2, Rsv::RSV3, Rsv::ALL] {
            for opcode in [OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong] {
                let wire = with_rsv(encode_masked(opcode, b"", MASK, true), rsv);
                let error = Decoder::new(MAX).decode(&mut wire.clone()).unwrap_err();
                assert_eq!(error, ProtocolError::protocol("reserved bits set"), "{rsv:?} on {opcode:?}");
                // Found from the first two bytes, before the mask and the payload.
                assert_eq!(error_of(&mut Decoder::new(MAX), &wire[..2]), 1002);
            }
        }
        // RSV1 allowed leaves RSV2 and RSV3 refused.
        for rsv in [Rsv::RSV2, Rsv::RSV3, Rsv::RSV1 | Rsv::RSV2] {
            let wire = with_rsv(encode_masked(OpCode::Text, b"x", MASK, true), rsv);
            assert_eq!(error_of(&mut Decoder::with_allowed_rsv(MAX, Rsv::RSV1), &wire), 1002, "{rsv:?}");
        }
        // Allowed bits are for the first frame of a data message only: not on control
        // frames, not on continuations.
        for opcode in [OpCode::Close, OpCode::Ping, OpCode::Pong] {
            let wire = with_rsv(encode_masked(opcode, b"", MASK, true), Rsv::RSV1);
            assert_eq!(error_of(&mut Decoder::with_allowed_rsv(MAX, Rsv::RSV1), &wire), 1002, "{opcode:?}");
        }
        let mut decoder = Decoder::with_allowed_rsv(MAX, Rsv::RSV1);
        assert_eq!(decode_one(&mut decoder, &encode_masked(OpCode::Text, b"a", MASK, false)).unwrap(), None);
        let continuation = with_rsv(encode_masked(OpCode::Continuation, b"b", MASK, true), Rsv::RSV1);
        assert_eq!(error_of(&mut decoder, &continuation), 1002);
        // With a reserved opcode too, the bits are what is reported, as before extensions.
        let error = Decoder::new(MAX).decode(&mut [0x80 | 0x40 | 0x3, 0x80]).unwrap_err();
        assert_eq!(error.reason, "reserved bits set");
    }

    #[test]
    fn allowed_reserved_bits_are_accepted_on_the_first_frame_of_a_message() {
        let mut decoder = Decoder::with_allowed_rsv(MAX, Rsv::RSV1);
        let wire = with_rsv(encode_masked(OpCode::Text, b"hello", MASK, true), Rsv::RSV1);
        assert_eq!(
            decode_one(&mut decoder, &wire).unwrap(),
            Some(OwnedFrame::Compressed(true, b"hello".to_vec()))
        );
        let wire = with_rsv(encode_masked(OpCode::Binary, &sample(200), MASK, true), Rsv::RSV1);
        assert_eq!(
            decode_one(&mut decoder, &wire).unwrap(),
            Some(OwnedFrame::Compressed(false, sample(200)))
        );
        // Compressed text is not UTF-8 until inflated: not checked here, whole or in pieces.
        let wire = with_rsv(encode_masked(OpCode::Text, &[0xff, 0xfe, 0x80], MASK, true), Rsv::RSV1);
        let outcomes = feed_bytewise(&mut Decoder::with_allowed_rsv(MAX, Rsv::RSV1), &wire).unwrap();
        assert_eq!(outcomes, [Some(OwnedFrame::Compressed(true, vec![0xff, 0xfe, 0x80]))]);
        // Without the bit, as usual.
        let wire = encode_masked(OpCode::Text, b"plain", MASK, true);
        assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Text("plain".into())));

        // A fragmented message: the bit on its first frame, not on the rest, byte by byte.
        let mut wire = with_rsv(encode_masked(OpCode::Text, b"frag", MASK, false), Rsv::RSV1);
        wire.extend(encode_masked(OpCode::Ping, b"p", MASK, true));
        wire.extend(encode_masked(OpCode::Continuation, b"ments", MASK, true));
        let outcomes = feed_bytewise(&mut Decoder::with_allowed_rsv(MAX, Rsv::RSV1), &wire).unwrap();
        assert_eq!(
            outcomes,
            [
                None,
                Some(OwnedFrame::Ping(b"p".to_vec())),
                Some(OwnedFrame::Compressed(true, b"fragments".to_vec()))
            ]
        );
        let mut wire = with_rsv(encode_masked(OpCode::Text, &[0xff], MASK, false), Rsv::RSV1);
        wire.extend(encode_masked(OpCode::Continuation, &[0xfe], MASK, true));
        let outcomes = feed_bytewise(&mut Decoder::with_allowed_rsv(MAX, Rsv::RSV1), &wire).unwrap();
        assert_eq!(outcomes, [None, Some(OwnedFrame::Compressed(true, vec![0xff, 0xfe]))]);

        // All three allowed.
        let wire = with_rsv(encode_masked(OpCode::Binary, b"", MASK, true), Rsv::ALL);
        let mut decoder = Decoder::with_allowed_rsv(MAX, Rsv::ALL);
        assert_eq!(decode_one(&mut decoder, &wire).unwrap(), Some(OwnedFrame::Compressed(false, Vec::new())));
    }
}

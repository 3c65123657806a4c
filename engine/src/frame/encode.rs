//! Encoding frames: unmasked and final as the server sends them, masked as a client does
//! (for tests, benches and load generators).

use bytes::Bytes;

use super::header::{LEN_16, LEN_64, MASKED};
use super::{apply_mask, is_valid_close_code, OpCode, Rsv, MAX_CONTROL_PAYLOAD};
use crate::Message;

fn header_len(payload_len: usize, masked: bool) -> usize {
    let length_bytes = match payload_len {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + length_bytes + if masked { 4 } else { 0 }
}

fn write_header(
    out: &mut Vec<u8>,
    fin: bool,
    rsv: Rsv,
    opcode: OpCode,
    payload_len: usize,
    mask: Option<[u8; 4]>,
) {
    out.push(u8::from(fin) << 7 | rsv.bits() | opcode as u8);
    let mask_bit = if mask.is_some() { MASKED } else { 0 };
    match payload_len {
        0..=125 => out.push(mask_bit | payload_len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | LEN_16);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | LEN_64);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// The one body behind [`encode`] and [`encode_frame`], inlined into both so that the
/// common case (no reserved bits) costs what it did before extensions existed.
#[inline(always)]
fn encode_final(opcode: OpCode, payload: &[u8], rsv: Rsv) -> Bytes {
    let mut out = Vec::with_capacity(header_len(payload.len(), false) + payload.len());
    write_header(&mut out, true, rsv, opcode, payload.len(), None);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Encodes one unmasked, final frame as a server sends it.
///
/// Header and payload share one buffer, allocated once with exactly the needed capacity,
/// so a socket queues the frame as a single iovec and every target of a broadcast shares
/// it. The caller keeps control frame payloads (`Close`, `Ping`, `Pong`) within 125 bytes,
/// as RFC 6455 requires; this function does not check.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    encode_final(opcode, payload, Rsv::NONE)
}

/// [`encode`] with the reserved bits `rsv` set, for a negotiated extension that gives
/// them a meaning (permessage-deflate marks a compressed message with RSV1).
///
/// Whether the connection negotiated such an extension is the caller's business: this
/// function sets whatever it is given.
pub fn encode_frame(opcode: OpCode, payload: &[u8], rsv: Rsv) -> Bytes {
    encode_final(opcode, payload, rsv)
}

/// Encodes a data message as one unmasked FIN frame: text (opcode 1) or binary (opcode 2).
pub fn encode_message(message: Message<'_>) -> Bytes {
    let opcode = if message.is_text() { OpCode::Text } else { OpCode::Binary };
    encode(opcode, message.as_bytes())
}

/// A close frame with `code` and `reason`.
///
/// `reason` is cut at a char boundary so that the payload fits the 125 bytes of a control
/// frame. A `code` that must not appear on the wire (see [`is_valid_close_code`], e.g.
/// [`close_code::NO_STATUS`](super::close_code::NO_STATUS)) gives a close frame with an
/// empty payload, which is how a peer says "no status".
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    if !is_valid_close_code(code) {
        return encode(OpCode::Close, &[]);
    }
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload[..2 + end])
}

/// Where the payload of a frame encoded by the server (unmasked) starts: after its 2, 4 or
/// 10 header bytes; `None` when `frame` is shorter than its header says.
pub(crate) fn server_payload_start(frame: &[u8]) -> Option<usize> {
    let start = match frame.get(1)? & !MASKED {
        LEN_16 => 4,
        LEN_64 => 10,
        _ => 2,
    };
    (frame.len() >= start).then_some(start)
}

/// A masked frame as a client sends it (for tests, benches and load generators).
///
/// `fin` false makes a non-final fragment.
pub fn encode_masked(opcode: OpCode, payload: &[u8], mask: [u8; 4], fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len(), true) + payload.len());
    write_header(&mut out, fin, Rsv::NONE, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{decode_one, OwnedFrame, MASK, MAX};
    use super::super::{close_code, Decoder, MAX_HEADER_LEN};
    use super::*;

    #[test]
    fn encode_headers() {
        let frame = encode(OpCode::Text, b"");
        assert_eq!(&frame[..], [0x81, 0x00]);
        let frame = encode(OpCode::Binary, &[7; 125]);
        assert_eq!(&frame[..2], [0x82, 125]);
        assert_eq!(frame.len(), 127);
        let frame = encode(OpCode::Binary, &[7; 126]);
        assert_eq!(&frame[..4], [0x82, 126, 0x00, 126]);
        assert_eq!(frame.len(), 130);
        let frame = encode(OpCode::Text, &[7; 65535]);
        assert_eq!(&frame[..4], [0x81, 126, 0xFF, 0xFF]);
        let frame = encode(OpCode::Text, &[7; 65536]);
        assert_eq!(&frame[..10], [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(&frame[10..], &[7; 65536][..]);
        assert_eq!(&encode(OpCode::Ping, b"hi")[..], [0x89, 2, b'h', b'i']);
        assert_eq!(&encode(OpCode::Pong, b"")[..], [0x8A, 0]);
    }

    #[test]
    fn the_payload_of_a_server_frame_starts_after_its_header() {
        for (len, start) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = encode_frame(OpCode::Binary, &vec![7; len], Rsv::RSV1);
            assert_eq!(server_payload_start(&frame), Some(start), "{len}");
            assert_eq!(frame.len() - start, len);
        }
        assert_eq!(server_payload_start(&[0x81]), None);
        assert_eq!(server_payload_start(&[0x81, 126, 0]), None, "a 16-bit length cut short");
    }

    #[test]
    fn encode_frame_sets_the_reserved_bits_of_the_first_byte() {
        assert_eq!(&encode_frame(OpCode::Text, b"hi", Rsv::RSV1)[..], [0xC1, 2, b'h', b'i']);
        assert_eq!(&encode_frame(OpCode::Binary, b"", Rsv::RSV1)[..], [0xC2, 0]);
        assert_eq!(encode_frame(OpCode::Binary, b"", Rsv::RSV2)[0], 0xA2);
        assert_eq!(encode_frame(OpCode::Binary, b"", Rsv::RSV3)[0], 0x92);
        assert_eq!(encode_frame(OpCode::Text, b"", Rsv::ALL)[0], 0xF1);
        // The length and payload are untouched by the bits.
        let frame = encode_frame(OpCode::Binary, &[7; 126], Rsv::RSV1);
        assert_eq!(&frame[..4], [0xC2, 126, 0x00, 126]);
        assert_eq!(&frame[4..], &[7; 126][..]);
        // No bits is exactly `encode`.
        for len in [0, 125, 126, 65536] {
            let payload = vec![9; len];
            assert_eq!(encode_frame(OpCode::Text, &payload, Rsv::NONE), encode(OpCode::Text, &payload));
        }
    }

    #[test]
    fn encode_masked_headers() {
        let frame = encode_masked(OpCode::Text, b"Hello", [0x37, 0xFA, 0x21, 0x3D], true);
        // The masked "Hello" example of RFC 6455 section 5.7.
        assert_eq!(frame, [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]);
        let frame = encode_masked(OpCode::Text, b"", MASK, false);
        assert_eq!(&frame[..2], [0x01, 0x80]);
        let frame = encode_masked(OpCode::Binary, &[0; 65536], MASK, true);
        assert_eq!(&frame[..10], [0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(frame.len(), MAX_HEADER_LEN + 65536);
    }

    #[test]
    fn encode_close_bytes() {
        assert_eq!(&encode_close(1000, "")[..], [0x88, 2, 0x03, 0xE8]);
        assert_eq!(&encode_close(close_code::GOING_AWAY, "bye")[..], [0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']);
        assert_eq!(&encode_close(close_code::NO_STATUS, "ignored")[..], [0x88, 0]);
        // Cut to 123 bytes of reason, at a char boundary.
        let long = "é".repeat(100);
        let frame = encode_close(1000, &long);
        assert_eq!(frame[1], 2 + 122);
        assert_eq!(&frame[4..], "é".repeat(61).as_bytes());
        let frame = encode_close(1000, &"a".repeat(200));
        assert_eq!(frame.len(), 2 + 125);
        // What is encoded decodes.
        let mut wire = frame.to_vec();
        wire[1] |= 0x80;
        wire.splice(2..2, MASK);
        apply_mask(&mut wire[6..], MASK, 0);
        let decoded = decode_one(&mut Decoder::new(MAX), &wire).unwrap();
        assert_eq!(decoded, Some(OwnedFrame::Close(Some(1000), "a".repeat(123))));
    }
}

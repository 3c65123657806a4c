//! The `wspush.v1` wire format: what a client that selected the subprotocol gets instead of
//! the plain frames (see `docs/history-design.md` §5).
//!
//! Every data frame is `HEAD "\n" BODY` with the message's own opcode: `HEAD` is the
//! message's position `EPOCH:OFFSET`, or `-` for a live-only message (a broadcast, a reply
//! to one socket). Text frames that start with `!` are control frames without a body:
//! `!pos E:O` (the socket is live, and has everything up to `E:O`) and `!lost E:O` (history
//! could not reach back; delivery continues after `E:O`).
//!
//! Pure: frames in, frames out.

use bytes::Bytes;

use super::Position;
use crate::frame::{self, OpCode};

/// The subprotocol a client offers to get positions: selected only when history is on.
pub const V1_PROTOCOL: &str = "wspush.v1";

/// The close code a socket without `wspush.v1` gets when it resumed (`?since`) from a
/// position the history no longer reaches.
pub const LOST_CLOSE_CODE: u16 = 4410;

/// The reason of the [`LOST_CLOSE_CODE`] close.
pub const LOST_CLOSE_REASON: &str = "history lost, resynchronise";

/// The head of a live-only message.
const LIVE_HEAD: &[u8] = b"-";

/// The longest head: a 16-character epoch, `:`, 16 digits (offsets stay under 2^53).
const MAX_HEAD_LEN: usize = 16 + 1 + 16;

/// Where a server data frame's payload starts, and whether it is binary. `None` for what
/// is not an unmasked final text or binary frame (never produced by the engine's sends).
pub(crate) fn split_frame(frame: &[u8]) -> Option<(bool, usize)> {
    let (&first, &second) = (frame.first()?, frame.get(1)?);
    let binary = match first {
        0x81 => false,
        0x82 => true,
        _ => return None,
    };
    let start = match second {
        0..=125 => 2,
        126 => 4,
        127 => 10,
        // Masked: not a server frame.
        _ => return None,
    };
    (frame.len() >= start).then_some((binary, start))
}

/// The v1 frame of a message: `HEAD "\n" BODY` with `position` as the head (`-` when the
/// message has none), as text or binary like the message.
pub fn data_frame(binary: bool, position: Option<Position>, body: &[u8]) -> Bytes {
    let mut payload = Vec::with_capacity(MAX_HEAD_LEN + 1 + body.len());
    match position {
        Some(position) => {
            use std::io::Write;
            // Writing to a Vec cannot fail.
            let _ = write!(payload, "{position}");
        }
        None => payload.extend_from_slice(LIVE_HEAD),
    }
    payload.push(b'\n');
    payload.extend_from_slice(body);
    frame::encode(if binary { OpCode::Binary } else { OpCode::Text }, &payload)
}

/// The v1 form of a plain server frame (`-` head when `position` is `None`); a frame that
/// is not a text or binary message is returned as it is.
pub fn relabel(frame: &Bytes, position: Option<Position>) -> Bytes {
    match split_frame(frame) {
        Some((binary, start)) => data_frame(binary, position, &frame[start..]),
        None => frame.clone(),
    }
}

/// `!pos E:O`: the socket is live and has everything up to `position`.
pub fn pos_frame(position: Position) -> Bytes {
    frame::encode(OpCode::Text, format!("!pos {position}").as_bytes())
}

/// `!lost E:O`: history could not reach back; delivery continues after `position`.
pub fn lost_frame(position: Position) -> Bytes {
    frame::encode(OpCode::Text, format!("!lost {position}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn position(text: &str) -> Position {
        text.parse().unwrap()
    }

    #[test]
    fn a_positioned_text_frame_is_head_newline_body() {
        let frame = data_frame(false, Some(position("k3j9a2x1:42")), b"hello");
        assert_eq!(&frame[..], b"\x81\x11k3j9a2x1:42\nhello");
    }

    #[test]
    fn a_live_only_binary_frame_has_a_dash_head() {
        let frame = data_frame(true, None, &[0, 10, 255]);
        assert_eq!(&frame[..], b"\x82\x05-\n\x00\x0a\xff");
    }

    #[test]
    fn relabelling_keeps_opcode_and_body_at_every_length_encoding() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let body = vec![b'x'; len];
            for message in [Message::Text(std::str::from_utf8(&body).unwrap()), Message::Binary(&body)] {
                let plain = frame::encode_message(message);
                let (binary, start) = split_frame(&plain).unwrap();
                assert_eq!(binary, !message.is_text());
                assert_eq!(&plain[start..], &body[..], "len {len}");
                let p = position("e:7");
                assert_eq!(relabel(&plain, Some(p)), data_frame(binary, Some(p), &body));
            }
        }
    }

    #[test]
    fn control_frames_are_not_relabelled() {
        let ping = frame::encode(OpCode::Ping, b"");
        assert!(split_frame(&ping).is_none());
        assert_eq!(relabel(&ping, None), ping);
        assert!(split_frame(&[0x81]).is_none());
        assert!(split_frame(&[0x81, 0x80]).is_none(), "masked");
    }

    #[test]
    fn control_texts() {
        assert_eq!(&pos_frame(position("abc:0"))[..], b"\x81\x0a!pos abc:0");
        assert_eq!(&lost_frame(position("abc:100"))[..], b"\x81\x0d!lost abc:100");
    }
}

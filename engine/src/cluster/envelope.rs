//! The wspush envelope: what nodes publish to each other on the Redis channels.
//!
//! ```text
//! byte 0        version: 1 (no position) or 2 (positioned, written by the append script)
//! byte 1        opcode: 1 text, 2 binary
//! byte 2        length N of the origin node id (1..=64)
//! bytes 3..3+N  origin node id (UTF-8)
//! v2 only:      byte 3+N = P (1..=38), then P bytes of ASCII `EPOCH:OFFSET`
//! the rest      the message body
//! ```
//!
//! The origin lets a node skip its own publishes (it has already delivered them locally),
//! and the opcode lets binary messages cross the fleet unchanged. A version 2 envelope is
//! made by Redis itself (`lua/append.lua`: the head from [`encode_head`], then the position
//! Redis assigned, then the body), so every node sees the same offset for a message.

use crate::history::Position;
use crate::Message;

/// The envelope version of an unpositioned message (broadcasts, history off).
pub const VERSION: u8 = 1;

/// The envelope version of a positioned message (history on).
pub const VERSION_POSITIONED: u8 = 2;

/// The longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// The longest position text: a 16-character epoch, `:`, and 2^53 - 1 (16 digits), with
/// room to spare (the design's bound, so a later wider offset does not change the format).
pub const MAX_POSITION_LEN: usize = 38;

/// A decoded envelope, borrowing the payload it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that published it.
    pub origin: &'a str,
    /// The message.
    pub message: Message<'a>,
    /// Where the message is in its id's history (version 2 only).
    pub position: Option<Position>,
}

/// Why a payload is not a valid envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than its header says.
    #[error("the envelope is truncated")]
    Truncated,
    /// A version this build does not read.
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
    /// An opcode other than text (1) or binary (2).
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// The origin node id is empty, too long or not UTF-8.
    #[error("invalid origin node id")]
    InvalidOrigin,
    /// The position's length is 0 or over [`MAX_POSITION_LEN`] (version 2).
    #[error("invalid position length {0}")]
    InvalidPositionLength(u8),
    /// The position is not `EPOCH:OFFSET` in its canonical form (no leading zeros)
    /// (version 2).
    #[error("invalid position")]
    InvalidPosition,
    /// A text message whose body is not UTF-8.
    #[error("the text body is not valid UTF-8")]
    InvalidText,
}

/// Encodes `message` from node `origin` (at most [`MAX_NODE_ID_LEN`] bytes; longer ids are
/// refused when the configuration is checked) as a version 1 envelope.
pub fn encode(origin: &str, message: Message<'_>) -> Vec<u8> {
    let body = message.as_bytes();
    let mut out = Vec::with_capacity(3 + origin.len() + body.len());
    push_head(&mut out, VERSION, origin, message.is_text());
    out.extend_from_slice(body);
    out
}

/// The head of a version 2 envelope (version, opcode, origin), which the append script
/// completes with the position it assigns and the body.
pub fn encode_head(origin: &str, text: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + origin.len());
    push_head(&mut out, VERSION_POSITIONED, origin, text);
    out
}

/// A whole version 2 envelope, as the append script builds it (for tests and fuzzing; the
/// engine never publishes one itself).
pub fn encode_positioned(origin: &str, message: Message<'_>, position: Position) -> Vec<u8> {
    let position = position.to_string();
    let body = message.as_bytes();
    let mut out = Vec::with_capacity(4 + origin.len() + position.len() + body.len());
    push_head(&mut out, VERSION_POSITIONED, origin, message.is_text());
    out.push(position.len() as u8);
    out.extend_from_slice(position.as_bytes());
    out.extend_from_slice(body);
    out
}

fn push_head(out: &mut Vec<u8>, version: u8, origin: &str, text: bool) {
    debug_assert!(!origin.is_empty() && origin.len() <= MAX_NODE_ID_LEN);
    out.push(version);
    out.push(if text { 1 } else { 2 });
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
}

/// Decodes an envelope of version 1 or 2.
///
/// # Errors
///
/// An [`EnvelopeError`] naming what is wrong; nothing is allocated either way.
pub fn decode(payload: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let [version, opcode, origin_len, rest @ ..] = payload else {
        return Err(EnvelopeError::Truncated);
    };
    if *version != VERSION && *version != VERSION_POSITIONED {
        return Err(EnvelopeError::UnknownVersion(*version));
    }
    let origin_len = usize::from(*origin_len);
    if origin_len == 0 || origin_len > MAX_NODE_ID_LEN {
        return Err(EnvelopeError::InvalidOrigin);
    }
    if rest.len() < origin_len {
        return Err(EnvelopeError::Truncated);
    }
    let (origin, mut body) = rest.split_at(origin_len);
    let origin = std::str::from_utf8(origin).map_err(|_| EnvelopeError::InvalidOrigin)?;
    let mut position = None;
    if *version == VERSION_POSITIONED {
        let [len, after @ ..] = body else { return Err(EnvelopeError::Truncated) };
        if *len == 0 || usize::from(*len) > MAX_POSITION_LEN {
            return Err(EnvelopeError::InvalidPositionLength(*len));
        }
        let len = usize::from(*len);
        if after.len() < len {
            return Err(EnvelopeError::Truncated);
        }
        let (text, after) = after.split_at(len);
        position = Some(parse_position(text)?);
        body = after;
    }
    let message = match opcode {
        1 => Message::Text(simdutf8::basic::from_utf8(body).map_err(|_| EnvelopeError::InvalidText)?),
        2 => Message::Binary(body),
        other => return Err(EnvelopeError::UnknownOpcode(*other)),
    };
    Ok(Envelope { origin, message, position })
}

/// Parses a position and accepts only the form [`Position`] prints, so that an envelope
/// has one encoding (`EPOCH:7`, never `EPOCH:007`).
fn parse_position(text: &[u8]) -> Result<Position, EnvelopeError> {
    let text = std::str::from_utf8(text).map_err(|_| EnvelopeError::InvalidPosition)?;
    let position: Position = text.parse().map_err(|_| EnvelopeError::InvalidPosition)?;
    let (_, offset) = text.split_once(':').unwrap_or_default();
    if offset.len() > 1 && offset.starts_with('0') {
        return Err(EnvelopeError::InvalidPosition);
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(text: &str) -> Position {
        text.parse().unwrap()
    }

    #[test]
    fn round_trips_text_and_binary() {
        let text = encode("node-a", Message::Text("héllo"));
        assert_eq!(&text[..9], b"\x01\x01\x06node-a");
        assert_eq!(
            decode(&text),
            Ok(Envelope { origin: "node-a", message: Message::Text("héllo"), position: None })
        );
        let binary = encode("n", Message::Binary(&[0, 255]));
        assert_eq!(binary, b"\x01\x02\x01n\x00\xff");
        assert_eq!(decode(&binary).unwrap().message, Message::Binary(&[0, 255]));
        assert_eq!(decode(&encode("n", Message::Text(""))).unwrap().message, Message::Text(""));
    }

    #[test]
    fn version_2_carries_the_position_after_the_origin() {
        let p = position("k3j9a2x1:42");
        let text = encode_positioned("node-a", Message::Text("hi"), p);
        assert_eq!(text, b"\x02\x01\x06node-a\x0bk3j9a2x1:42hi");
        assert!(text.starts_with(&encode_head("node-a", true)));
        assert_eq!(
            decode(&text),
            Ok(Envelope { origin: "node-a", message: Message::Text("hi"), position: Some(p) })
        );
        let binary = encode_positioned("n", Message::Binary(b"\x00\n"), position("E:0"));
        assert_eq!(binary, b"\x02\x02\x01n\x03E:0\x00\n");
        assert_eq!(encode_head("n", false), b"\x02\x02\x01n");
        let decoded = decode(&binary).unwrap();
        assert_eq!((decoded.message, decoded.position), (Message::Binary(b"\x00\n"), Some(position("E:0"))));
        let longest = position(&format!("{}:{}", "Z".repeat(16), crate::history::MAX_OFFSET));
        let envelope = encode_positioned("n", Message::Text(""), longest);
        assert_eq!(decode(&envelope).unwrap().position, Some(longest));
    }

    #[test]
    fn refuses_malformed_payloads() {
        assert_eq!(decode(b""), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"\x01\x01"), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"\x03\x01\x01n"), Err(EnvelopeError::UnknownVersion(3)));
        assert_eq!(decode(b"\x01\x03\x01n"), Err(EnvelopeError::UnknownOpcode(3)));
        assert_eq!(decode(b"\x01\x01\x00"), Err(EnvelopeError::InvalidOrigin));
        assert_eq!(decode(b"\x01\x01\x05abc"), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"\x01\x01\x01\xff"), Err(EnvelopeError::InvalidOrigin));
        assert_eq!(decode(b"\x01\x01\x01n\xc3"), Err(EnvelopeError::InvalidText));
        assert_eq!(decode(b"{\"KEY\":1}"), Err(EnvelopeError::UnknownVersion(b'{')));
    }

    #[test]
    fn refuses_malformed_positions() {
        assert_eq!(decode(b"\x02\x01\x01n"), Err(EnvelopeError::Truncated), "no position length");
        assert_eq!(decode(b"\x02\x01\x01n\x00x"), Err(EnvelopeError::InvalidPositionLength(0)));
        assert_eq!(decode(b"\x02\x01\x01n\x27"), Err(EnvelopeError::InvalidPositionLength(39)));
        assert_eq!(decode(b"\x02\x01\x01n\x05E:1"), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"\x02\x01\x01n\x03E-1x"), Err(EnvelopeError::InvalidPosition), "no colon");
        assert_eq!(decode(b"\x02\x01\x01n\x04E:01"), Err(EnvelopeError::InvalidPosition), "leading zero");
        assert_eq!(decode(b"\x02\x01\x01n\x03\xff:1"), Err(EnvelopeError::InvalidPosition));
        assert_eq!(decode(b"\x02\x01\x01n\x03E:x"), Err(EnvelopeError::InvalidPosition));
        let over = format!("E:{}", crate::history::MAX_OFFSET + 1);
        let mut payload = vec![2, 1, 1, b'n', over.len() as u8];
        payload.extend_from_slice(over.as_bytes());
        assert_eq!(decode(&payload), Err(EnvelopeError::InvalidPosition));
        assert_eq!(decode(b"\x02\x01\x01n\x03E:1\xc3"), Err(EnvelopeError::InvalidText));
        assert_eq!(decode(b"\x02\x07\x01n\x03E:1"), Err(EnvelopeError::UnknownOpcode(7)));
    }
}

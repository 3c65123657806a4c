//! The wspush envelope: what nodes publish to each other on the Redis channels.
//!
//! ```text
//! byte 0        version (1)
//! byte 1        opcode: 1 text, 2 binary
//! byte 2        length N of the origin node id (1..=64)
//! bytes 3..3+N  origin node id (UTF-8)
//! the rest      the message body
//! ```
//!
//! The origin lets a node skip its own publishes (it has already delivered them locally),
//! and the opcode lets binary messages cross the fleet unchanged.

use crate::Message;

/// The envelope version this build writes and reads.
pub const VERSION: u8 = 1;

/// The longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A decoded envelope, borrowing the payload it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that published it.
    pub origin: &'a str,
    /// The message.
    pub message: Message<'a>,
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
    /// A text message whose body is not UTF-8.
    #[error("the text body is not valid UTF-8")]
    InvalidText,
}

/// Encodes `message` from node `origin` (at most [`MAX_NODE_ID_LEN`] bytes; longer ids are
/// refused when the configuration is checked).
pub fn encode(origin: &str, message: Message<'_>) -> Vec<u8> {
    debug_assert!(!origin.is_empty() && origin.len() <= MAX_NODE_ID_LEN);
    let body = message.as_bytes();
    let mut out = Vec::with_capacity(3 + origin.len() + body.len());
    out.push(VERSION);
    out.push(if message.is_text() { 1 } else { 2 });
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Decodes an envelope.
///
/// # Errors
///
/// An [`EnvelopeError`] naming what is wrong; nothing is allocated either way.
pub fn decode(payload: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let [version, opcode, origin_len, rest @ ..] = payload else {
        return Err(EnvelopeError::Truncated);
    };
    if *version != VERSION {
        return Err(EnvelopeError::UnknownVersion(*version));
    }
    let origin_len = usize::from(*origin_len);
    if origin_len == 0 || origin_len > MAX_NODE_ID_LEN {
        return Err(EnvelopeError::InvalidOrigin);
    }
    if rest.len() < origin_len {
        return Err(EnvelopeError::Truncated);
    }
    let (origin, body) = rest.split_at(origin_len);
    let origin = std::str::from_utf8(origin).map_err(|_| EnvelopeError::InvalidOrigin)?;
    let message = match opcode {
        1 => Message::Text(simdutf8::basic::from_utf8(body).map_err(|_| EnvelopeError::InvalidText)?),
        2 => Message::Binary(body),
        other => return Err(EnvelopeError::UnknownOpcode(*other)),
    };
    Ok(Envelope { origin, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_binary() {
        let text = encode("node-a", Message::Text("héllo"));
        assert_eq!(&text[..9], b"\x01\x01\x06node-a");
        assert_eq!(decode(&text), Ok(Envelope { origin: "node-a", message: Message::Text("héllo") }));
        let binary = encode("n", Message::Binary(&[0, 255]));
        assert_eq!(binary, b"\x01\x02\x01n\x00\xff");
        assert_eq!(decode(&binary).unwrap().message, Message::Binary(&[0, 255]));
        assert_eq!(decode(&encode("n", Message::Text(""))).unwrap().message, Message::Text(""));
    }

    #[test]
    fn refuses_malformed_payloads() {
        assert_eq!(decode(b""), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"\x01\x01"), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"\x02\x01\x01n"), Err(EnvelopeError::UnknownVersion(2)));
        assert_eq!(decode(b"\x01\x03\x01n"), Err(EnvelopeError::UnknownOpcode(3)));
        assert_eq!(decode(b"\x01\x01\x00"), Err(EnvelopeError::InvalidOrigin));
        assert_eq!(decode(b"\x01\x01\x05abc"), Err(EnvelopeError::Truncated));
        assert_eq!(decode(b"\x01\x01\x01\xff"), Err(EnvelopeError::InvalidOrigin));
        assert_eq!(decode(b"\x01\x01\x01n\xc3"), Err(EnvelopeError::InvalidText));
        assert_eq!(decode(b"{\"KEY\":1}"), Err(EnvelopeError::UnknownVersion(b'{')));
    }
}

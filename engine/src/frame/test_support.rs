//! Helpers shared by the unit tests of the frame modules.

use super::{Decoder, Frame, ProtocolError};
use crate::Message;

pub(super) const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
pub(super) const MAX: usize = 1 << 20;

/// Decodes exactly one frame from `wire`, which must hold exactly that frame.
pub(super) fn decode_one(decoder: &mut Decoder, wire: &[u8]) -> Result<Option<OwnedFrame>, ProtocolError> {
    let mut buf = wire.to_vec();
    let len = buf.len();
    match decoder.decode(&mut buf)? {
        None => panic!("incomplete frame"),
        Some((consumed, frame)) => {
            assert_eq!(consumed, len);
            Ok(frame.map(OwnedFrame::from))
        }
    }
}

pub(super) fn error_of(decoder: &mut Decoder, wire: &[u8]) -> u16 {
    let mut buf = wire.to_vec();
    match decoder.decode(&mut buf) {
        Err(error) => error.close_code,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum OwnedFrame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// Whether text, the compressed payload.
    Compressed(bool, Vec<u8>),
}

impl From<Frame<'_>> for OwnedFrame {
    fn from(frame: Frame<'_>) -> Self {
        match frame {
            Frame::Message(Message::Text(text)) => OwnedFrame::Text(text.to_owned()),
            Frame::Message(Message::Binary(data)) => OwnedFrame::Binary(data.to_vec()),
            Frame::Ping(data) => OwnedFrame::Ping(data.to_vec()),
            Frame::Pong(data) => OwnedFrame::Pong(data.to_vec()),
            Frame::Close { code, reason } => OwnedFrame::Close(code, reason.to_owned()),
            Frame::Compressed { text, payload } => OwnedFrame::Compressed(text, payload.to_vec()),
        }
    }
}

/// Feeds `wire` one byte at a time into a growing buffer, as reads would, and
/// collects every outcome.
pub(super) fn feed_bytewise(
    decoder: &mut Decoder,
    wire: &[u8],
) -> Result<Vec<Option<OwnedFrame>>, ProtocolError> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for &byte in wire {
        buf.push(byte);
        loop {
            match decoder.decode(&mut buf)? {
                None => break,
                Some((consumed, frame)) => {
                    out.push(frame.map(OwnedFrame::from));
                    buf.drain(..consumed);
                }
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    Ok(out)
}

pub(super) fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

pub(super) fn sample_text(len: usize) -> String {
    "héllo wörld ✓ ".chars().cycle().take(len).collect::<String>()
}

//! Messages going to or coming from sockets.

/// A WebSocket message: text (always valid UTF-8) or binary. Borrowed, because the engine
/// copies it exactly once, into the frame it writes to every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (opcode 1).
    Text(&'a str),
    /// A binary message (opcode 2).
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

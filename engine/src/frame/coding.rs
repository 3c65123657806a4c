//! The numbers on the wire: opcodes, close codes, and which of them a peer may send.

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// A text message (or its first fragment).
    Text = 0x1,
    /// A binary message (or its first fragment).
    Binary = 0x2,
    /// Closes the connection.
    Close = 0x8,
    /// Asks the peer for a pong.
    Ping = 0x9,
    /// Answers a ping.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode in the low nibble of a frame's first byte; `None` for the reserved ones.
    pub(crate) fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong: never fragmented, at most [`MAX_CONTROL_PAYLOAD`] bytes.
    pub(crate) fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Close codes the engine uses (RFC 6455 section 7.4.1).
pub mod close_code {
    /// The purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The server is going down or the client went idle.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The peer sent a kind of data that cannot be accepted.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// No code was present in a close frame. Never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// The connection was lost without a close frame. Never sent on the wire.
    pub const ABNORMAL: u16 = 1006;
    /// A text message or close reason was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The peer broke a policy (e.g. it cannot keep up with its messages).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message was larger than the configured maximum.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server hit an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Largest payload of a control frame (close, ping, pong), RFC 6455 section 5.5.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Whether `code` may appear in a close frame on the wire.
///
/// Follows what the Autobahn TestSuite accepts: 1000–1003, 1007–1011 and the ranges for
/// libraries and applications, 3000–4999. 1004–1006 are reserved or internal-only, and
/// everything else below 3000 is unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_close_codes() {
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn opcodes_round_trip_through_their_bits() {
        for opcode in
            [OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong]
        {
            assert_eq!(OpCode::from_bits(opcode as u8), Some(opcode));
            assert_eq!(opcode.is_control(), matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong));
        }
        for reserved in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(OpCode::from_bits(reserved), None, "opcode {reserved}");
        }
    }
}

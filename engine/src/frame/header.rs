//! The frame header: its bits on the wire and what the decoder makes of them.

use std::ops::BitOr;

use super::OpCode;

/// Longest frame header a server writes or a client sends (2 + 8 + 4 mask).
pub const MAX_HEADER_LEN: usize = 14;

/// First byte: this frame ends its message.
pub(super) const FIN: u8 = 0x80;
/// First byte: where the opcode is.
pub(super) const OPCODE_BITS: u8 = 0x0F;
/// Second byte: a masking key follows the length (every client frame).
pub(super) const MASKED: u8 = 0x80;
/// Second byte: where the 7-bit length is.
pub(super) const LEN_BITS: u8 = 0x7F;
/// 7-bit length meaning "a 16-bit length follows".
pub(super) const LEN_16: u8 = 126;
/// 7-bit length meaning "a 64-bit length follows".
pub(super) const LEN_64: u8 = 127;

/// A set of the three reserved bits of a frame header (RSV1, RSV2, RSV3).
///
/// RFC 6455 section 5.2 leaves their meaning to negotiated extensions (permessage-deflate
/// uses RSV1, RFC 7692); with none negotiated, a peer that sets one fails the connection.
/// Held as the bits sit in the first header byte, so checking and writing them is one
/// AND or OR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rsv(u8);

impl Rsv {
    /// No reserved bit.
    pub const NONE: Rsv = Rsv(0);
    /// RSV1 (0x40 of the first byte).
    pub const RSV1: Rsv = Rsv(0x40);
    /// RSV2 (0x20 of the first byte).
    pub const RSV2: Rsv = Rsv(0x20);
    /// RSV3 (0x10 of the first byte).
    pub const RSV3: Rsv = Rsv(0x10);
    /// All three.
    pub const ALL: Rsv = Rsv(0x70);

    /// The reserved bits of a frame's first byte.
    pub const fn from_first_byte(byte: u8) -> Rsv {
        Rsv(byte & Rsv::ALL.0)
    }

    /// The bits in their place in a frame's first byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is in `self`.
    pub const fn contains(self, other: Rsv) -> bool {
        other.0 & !self.0 == 0
    }

    /// Whether RSV1 is set.
    pub const fn rsv1(self) -> bool {
        self.contains(Rsv::RSV1)
    }

    /// Whether RSV2 is set.
    pub const fn rsv2(self) -> bool {
        self.contains(Rsv::RSV2)
    }

    /// Whether RSV3 is set.
    pub const fn rsv3(self) -> bool {
        self.contains(Rsv::RSV3)
    }
}

impl BitOr for Rsv {
    type Output = Rsv;

    fn bitor(self, other: Rsv) -> Rsv {
        Rsv(self.0 | other.0)
    }
}

/// The 6 to 14 byte header of a client frame, as the decoder parsed and checked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The frame ends its message.
    pub fin: bool,
    /// Reserved bits set, all of them allowed by a negotiated extension.
    pub rsv: Rsv,
    pub opcode: OpCode,
    /// Client frames are always masked: an unmasked one is refused before a header exists.
    pub mask: [u8; 4],
    /// Length of the header itself, mask included.
    pub len: usize,
    pub payload_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsv_bits_sit_where_the_rfc_puts_them() {
        assert_eq!(Rsv::from_first_byte(0xC1), Rsv::RSV1);
        assert_eq!(Rsv::from_first_byte(0xA1), Rsv::RSV2);
        assert_eq!(Rsv::from_first_byte(0x91), Rsv::RSV3);
        assert_eq!(Rsv::from_first_byte(0x8F), Rsv::NONE);
        assert_eq!(Rsv::from_first_byte(0xFF), Rsv::ALL);
        assert_eq!(Rsv::RSV1 | Rsv::RSV2 | Rsv::RSV3, Rsv::ALL);

        let both = Rsv::RSV1 | Rsv::RSV3;
        assert!(both.rsv1() && !both.rsv2() && both.rsv3());
        assert!(both.contains(Rsv::RSV1) && both.contains(Rsv::NONE) && !both.contains(Rsv::RSV2));
        assert!(Rsv::NONE.is_empty() && !both.is_empty());
        assert!(!Rsv::NONE.contains(Rsv::RSV1));
        assert_eq!(Rsv::default(), Rsv::NONE);
    }
}

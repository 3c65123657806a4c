//! The bench message: what it is (a unicast or a broadcast), its sequence number and when it
//! was sent, in a fixed ASCII prefix (valid UTF-8, so it travels as a text frame through every
//! path, JSON included), padded to the requested size.
//!
//! ```text
//! U0000002a000012f4a1b2c3d4xxxxxxxx...
//! ^kind ^seq (8 hex) ^sent at, ns (16 hex) ^padding
//! ```

/// Bytes before the padding.
pub const HEADER_LEN: usize = 1 + 8 + 16;

/// What a message was sent as; the clients check each kind differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// To one id: every sequence number must arrive exactly once in the whole run.
    Unicast,
    /// To every socket: each socket must see every sequence number once, in order.
    Broadcast,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Unicast => b'U',
            Kind::Broadcast => b'B',
        }
    }
}

/// A parsed bench message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub kind: Kind,
    pub seq: u32,
    pub sent_ns: u64,
}

/// Writes a message of `size` bytes (at least [`HEADER_LEN`]) into `out`, replacing its contents.
pub fn write(out: &mut Vec<u8>, kind: Kind, seq: u32, sent_ns: u64, size: usize) {
    out.clear();
    out.push(kind.tag());
    push_hex(out, u64::from(seq), 8);
    push_hex(out, sent_ns, 16);
    out.resize(size.max(HEADER_LEN), b'x');
}

/// Reads a bench message; `None` for anything else (a server's welcome text, say).
pub fn parse(payload: &[u8]) -> Option<Stamp> {
    if payload.len() < HEADER_LEN {
        return None;
    }
    let kind = match payload[0] {
        b'U' => Kind::Unicast,
        b'B' => Kind::Broadcast,
        _ => return None,
    };
    let seq = parse_hex(&payload[1..9])? as u32;
    let sent_ns = parse_hex(&payload[9..25])?;
    Some(Stamp { kind, seq, sent_ns })
}

fn push_hex(out: &mut Vec<u8>, value: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev() {
        out.push(HEX[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        let mut out = Vec::new();
        write(&mut out, Kind::Broadcast, 0xdead_beef, 0x0123_4567_89ab_cdef, 64);
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..25], b"Bdeadbeef0123456789abcdef");
        assert_eq!(
            parse(&out),
            Some(Stamp { kind: Kind::Broadcast, seq: 0xdead_beef, sent_ns: 0x0123_4567_89ab_cdef })
        );
        write(&mut out, Kind::Unicast, 7, 9, 3);
        assert_eq!(out.len(), HEADER_LEN, "never shorter than the header");
        assert_eq!(parse(&out).unwrap().kind, Kind::Unicast);
    }

    #[test]
    fn rejects_other_texts() {
        assert_eq!(parse(b"welcome 456"), None);
        assert_eq!(parse(b"U0000002g000012f4a1b2c3d4"), None, "not hex");
        assert_eq!(parse(b"X0000002a000012f4a1b2c3d4"), None);
    }
}

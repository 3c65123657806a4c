//! The bench message: what it is (a unicast or a broadcast), its sequence number, when it was
//! sent and the id it is for, in a fixed ASCII prefix (valid UTF-8, so it travels as a text
//! frame through every path, JSON included), padded to the requested size.
//!
//! ```text
//! U0000002a000012f4a1b2c3d4000003e7xxxxxxxx...
//! ^kind ^seq (8 hex) ^sent at, ns (16 hex) ^target id (8 hex; ffffffff: everyone) ^padding
//! ```

/// Bytes before the padding.
pub const HEADER_LEN: usize = 1 + 8 + 16 + 8;

/// The target of a broadcast.
pub const EVERYONE: u32 = u32::MAX;

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
    /// The id a unicast is for ([`EVERYONE`] for a broadcast).
    pub target: u32,
}

/// Writes a message of `size` bytes (at least [`HEADER_LEN`]) into `out`, replacing its contents.
pub fn write(out: &mut Vec<u8>, kind: Kind, seq: u32, sent_ns: u64, target: u32, size: usize) {
    out.clear();
    out.push(kind.tag());
    push_hex(out, u64::from(seq), 8);
    push_hex(out, sent_ns, 16);
    push_hex(out, u64::from(target), 8);
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
    let target = parse_hex(&payload[25..33])? as u32;
    Some(Stamp { kind, seq, sent_ns, target })
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
        write(&mut out, Kind::Broadcast, 0xdead_beef, 0x0123_4567_89ab_cdef, EVERYONE, 64);
        assert_eq!(out.len(), 64);
        assert_eq!(&out[..33], b"Bdeadbeef0123456789abcdefffffffff");
        assert_eq!(
            parse(&out),
            Some(Stamp {
                kind: Kind::Broadcast,
                seq: 0xdead_beef,
                sent_ns: 0x0123_4567_89ab_cdef,
                target: EVERYONE
            })
        );
        write(&mut out, Kind::Unicast, 7, 9, 999, 3);
        assert_eq!(out.len(), HEADER_LEN, "never shorter than the header");
        assert_eq!(&out[..], b"U000000070000000000000009000003e7");
        let stamp = parse(&out).unwrap();
        assert_eq!((stamp.kind, stamp.target), (Kind::Unicast, 999));
    }

    #[test]
    fn rejects_other_texts() {
        assert_eq!(parse(b"welcome 456"), None);
        assert_eq!(parse(b"U0000002g000012f4a1b2c3d400000001"), None, "not hex");
        assert_eq!(parse(b"U0000002a000012f4a1b2c3d40000000z"), None, "target not hex");
        assert_eq!(parse(b"X0000002a000012f4a1b2c3d400000001"), None);
        assert_eq!(parse(b"U0000002a000012f4a1b2c3d4"), None, "no target: too short");
    }
}

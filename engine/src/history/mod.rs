//! Positions in an id's history: the epoch of the history and the offset of a message in it.
//!
//! With history on, every message sent to an id gets an offset (1, 2, 3, … with no gap
//! inside an epoch), and the id's history has an epoch that changes whenever the history was
//! lost (it expired, Redis restarted empty, a single node restarted). A client that saw
//! `EPOCH:OFFSET` can ask for everything after it; if the history no longer reaches back
//! that far it is told so, never given a silent gap. See `docs/history-design.md`.
//!
//! This module is pure: the types, their text forms and the reach test.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

pub(crate) mod store;
pub mod wire;

/// The largest offset: offsets stay exact in a Lua number (Redis scripts) and a JavaScript
/// number (browsers), both IEEE doubles.
pub const MAX_OFFSET: u64 = (1 << 53) - 1;

/// The longest epoch, in ASCII letters and digits.
pub const MAX_EPOCH_LEN: usize = 16;

/// The length of the epochs this crate makes ([`Epoch::random`]).
const RANDOM_EPOCH_LEN: usize = 8;

/// Which history an offset belongs to: 1 to 16 ASCII letters and digits, opaque. A new
/// epoch is chosen at random whenever an id's history starts (again), so an offset of an old
/// epoch is never mistaken for one of the new.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch {
    len: u8,
    bytes: [u8; MAX_EPOCH_LEN],
}

impl Epoch {
    /// A fresh epoch: 8 characters of `[0-9a-z]` (about 41 bits), from the OS-seeded hasher,
    /// the process id, the clock and a process-wide counter, so two histories started in the
    /// same nanosecond still differ.
    pub fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(STARTED.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        let mut value = hasher.finish();
        let mut bytes = [0; MAX_EPOCH_LEN];
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        for byte in bytes.iter_mut().take(RANDOM_EPOCH_LEN) {
            *byte = DIGITS[(value % 36) as usize];
            value /= 36;
        }
        Self { len: RANDOM_EPOCH_LEN as u8, bytes }
    }

    /// The epoch as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored (see `parse` and `random`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl FromStr for Epoch {
    type Err = PositionError;

    /// Parses an epoch: 1 to [`MAX_EPOCH_LEN`] ASCII letters and digits.
    fn from_str(text: &str) -> Result<Self, PositionError> {
        if text.is_empty() || text.len() > MAX_EPOCH_LEN {
            return Err(PositionError::EpochLength(text.len()));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PositionError::EpochCharacters);
        }
        let mut bytes = [0; MAX_EPOCH_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(Self { len: text.len() as u8, bytes })
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.as_str())
    }
}

/// A place in an id's history: `EPOCH:OFFSET` as text. `offset` 0 means "nothing of this
/// epoch yet"; a client that has `E:O` has every message of epoch `E` up to `O`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Position {
    /// The history the offset belongs to.
    pub epoch: Epoch,
    /// The offset of the last message seen (0: none yet).
    pub offset: u64,
}

impl Position {
    /// The position `offset` in `epoch`.
    pub fn new(epoch: Epoch, offset: u64) -> Self {
        Self { epoch, offset }
    }
}

impl FromStr for Position {
    type Err = PositionError;

    /// Parses `EPOCH:OFFSET` (the form [`Position`] displays).
    ///
    /// # Errors
    ///
    /// [`PositionError`] saying what is wrong: no `:`, a bad epoch, an offset that is not a
    /// decimal number up to [`MAX_OFFSET`].
    fn from_str(text: &str) -> Result<Self, PositionError> {
        let (epoch, offset) = text.split_once(':').ok_or(PositionError::NoColon)?;
        let epoch = epoch.parse()?;
        if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PositionError::Offset);
        }
        let offset: u64 = offset.parse().map_err(|_| PositionError::Offset)?;
        if offset > MAX_OFFSET {
            return Err(PositionError::Offset);
        }
        Ok(Self { epoch, offset })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// Why a position (or epoch) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// No `:` between epoch and offset.
    #[error("a position is EPOCH:OFFSET, and this one has no `:`")]
    NoColon,
    /// The epoch is empty or too long.
    #[error("an epoch is 1 to {MAX_EPOCH_LEN} characters, this one has {0}")]
    EpochLength(usize),
    /// The epoch has a character other than an ASCII letter or digit.
    #[error("an epoch holds only ASCII letters and digits")]
    EpochCharacters,
    /// The offset is not a decimal number up to [`MAX_OFFSET`].
    #[error("the offset is not a decimal number up to 2^53 - 1")]
    Offset,
}

/// One message kept in an id's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its offset in the history's epoch.
    pub offset: u64,
    /// Sent as a binary message (else text, valid UTF-8).
    pub binary: bool,
    /// The message itself.
    pub body: Bytes,
}

/// What a read of an id's history returned: its epoch, its newest offset (`top`), and the
/// entries from the offset asked for (possibly fewer than asked: a page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The history's epoch now.
    pub epoch: Epoch,
    /// The newest offset in the history (0: no message yet in this epoch).
    pub top: u64,
    /// Entries in offset order, contiguous.
    pub entries: Vec<Entry>,
}

impl Page {
    /// Whether this page (read from `since.offset + 1`) continues `since` with no gap: same
    /// epoch, `since` not beyond the history's top, and either nothing is missing
    /// (`since` is the top) or the first entry is the one right after `since`. Offsets are
    /// contiguous inside an epoch and trimming only removes the oldest, so this is the whole
    /// test.
    pub fn reaches(&self, since: Position) -> bool {
        self.epoch == since.epoch
            && since.offset <= self.top
            && (since.offset == self.top || self.entries.first().map(|e| e.offset) == Some(since.offset + 1))
    }
}

/// What a read of an id's history answers ([`Engine::history`](crate::Engine::history)):
/// the page, and whether it continues the position asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRead {
    /// The history's epoch and top, and the entries read: from the one after the position
    /// asked for when `recovered`, otherwise from the oldest kept.
    pub page: Page,
    /// The page continues the position asked for with no gap (see [`Page::reaches`]); false
    /// when no position was given, or the history no longer reaches it.
    pub recovered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(text: &str) -> Epoch {
        text.parse().unwrap()
    }

    fn entries(offsets: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        offsets.map(|offset| Entry { offset, binary: false, body: Bytes::from_static(b"m") }).collect()
    }

    #[test]
    fn a_position_reads_back_as_it_prints() {
        let p: Position = "k3j9a2x1:42".parse().unwrap();
        assert_eq!(p, Position::new(epoch("k3j9a2x1"), 42));
        assert_eq!(p.to_string(), "k3j9a2x1:42");
        assert_eq!("A:0".parse::<Position>().unwrap().offset, 0);
        assert_eq!(format!("e:{MAX_OFFSET}").parse::<Position>().unwrap().offset, MAX_OFFSET);
    }

    #[test]
    fn malformed_positions_say_what_is_wrong() {
        assert_eq!("k3j9a2x1".parse::<Position>(), Err(PositionError::NoColon));
        assert_eq!(":5".parse::<Position>(), Err(PositionError::EpochLength(0)));
        assert_eq!("abcdefghijklmnopq:5".parse::<Position>(), Err(PositionError::EpochLength(17)));
        assert_eq!("ab-c:5".parse::<Position>(), Err(PositionError::EpochCharacters));
        assert_eq!("ab:".parse::<Position>(), Err(PositionError::Offset));
        assert_eq!("ab:+5".parse::<Position>(), Err(PositionError::Offset));
        assert_eq!("ab:5x".parse::<Position>(), Err(PositionError::Offset));
        assert_eq!(format!("ab:{}", MAX_OFFSET + 1).parse::<Position>(), Err(PositionError::Offset));
        assert_eq!("ab:99999999999999999999999".parse::<Position>(), Err(PositionError::Offset));
    }

    #[test]
    fn random_epochs_are_eight_lowercase_letters_or_digits_and_differ() {
        let a = Epoch::random();
        let b = Epoch::random();
        assert_ne!(a, b);
        for e in [a, b] {
            assert_eq!(e.as_str().len(), 8);
            assert!(e.as_str().bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()), "{e}");
            assert_eq!(e.as_str().parse::<Epoch>().unwrap(), e);
        }
    }

    #[test]
    fn a_page_reaches_a_position_only_without_a_gap() {
        let e = epoch("e1");
        let page = Page { epoch: e, top: 10, entries: entries(4..=10) };
        assert!(page.reaches(Position::new(e, 3)), "first entry is since + 1");
        assert!(!page.reaches(Position::new(e, 2)), "4 follows 2: message 3 was trimmed");
        assert!(!page.reaches(Position::new(epoch("e2"), 3)), "another epoch");
        let caught_up = Page { epoch: e, top: 10, entries: vec![] };
        assert!(caught_up.reaches(Position::new(e, 10)), "nothing missing");
        assert!(!caught_up.reaches(Position::new(e, 11)), "beyond the top: not this history");
        assert!(!caught_up.reaches(Position::new(e, 9)), "message 10 is missing from the page");
        let empty = Page { epoch: e, top: 0, entries: vec![] };
        assert!(empty.reaches(Position::new(e, 0)));
    }
}

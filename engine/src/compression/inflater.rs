//! Inbound: a compressed client message inflated, never beyond the size a client may send.

use flate2::{Decompress, FlushDecompress, Status};

use super::SYNC_TAIL;
use crate::extensions::MAX_WINDOW_BITS;

/// Output grown this much at a time: a message inflates into what it needs, not into the
/// whole allowance at once.
const STEP: usize = 16 * 1024;
/// An output buffer larger than this is freed before the next message, so one large
/// message does not pin memory in the worker.
const RETAINED: usize = 64 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates to more than the largest message allowed (a decompression bomb, or a
    /// message too big): close 1009.
    TooBig,
    /// Not valid DEFLATE data: close 1007.
    Corrupt,
}

/// A worker's inflater of compressed client messages. Every connection negotiated
/// `client_no_context_takeover`, so each message inflates on its own and one inflater (and
/// one output buffer) serves the whole worker.
pub(crate) struct Inflater {
    decompress: Decompress,
    out: Vec<u8>,
}

impl Inflater {
    pub fn new() -> Self {
        // The largest window inflates what any smaller window compressed.
        Self { decompress: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS), out: Vec::new() }
    }

    /// Inflates one message's payload (as received: without the sync tail RFC 7692 has the
    /// sender remove) into at most `max` bytes.
    ///
    /// The work is bounded by `max`, not by what the data would inflate to: inflating stops
    /// as soon as the output passes `max`.
    ///
    /// # Errors
    ///
    /// [`InflateError::TooBig`] past `max` bytes, [`InflateError::Corrupt`] for data that
    /// is not DEFLATE.
    pub fn inflate(&mut self, payload: &[u8], max: usize) -> Result<&[u8], InflateError> {
        if self.out.capacity() > RETAINED {
            self.out = Vec::new();
        }
        self.out.clear();
        self.decompress.reset(false);
        for input in [payload, &SYNC_TAIL[..]] {
            let mut consumed = 0;
            while consumed < input.len() {
                grow(&mut self.out, max)?;
                let before_in = self.decompress.total_in();
                let before_out = self.out.len();
                let status = self
                    .decompress
                    .decompress_vec(&input[consumed..], &mut self.out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                consumed += (self.decompress.total_in() - before_in) as usize;
                if self.out.len() > max {
                    return Err(InflateError::TooBig);
                }
                match status {
                    // A final block ends the message: what follows it (the tail) is not needed.
                    Status::StreamEnd => return Ok(&self.out),
                    _ if consumed < input.len()
                        && self.decompress.total_in() == before_in
                        && self.out.len() == before_out
                        && self.out.len() < self.out.capacity() =>
                    {
                        return Err(InflateError::Corrupt);
                    }
                    _ => {}
                }
            }
        }
        // Output still held inside the inflater after all input went in.
        loop {
            grow(&mut self.out, max)?;
            let before_out = self.out.len();
            let status = self
                .decompress
                .decompress_vec(&[], &mut self.out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if self.out.len() > max {
                return Err(InflateError::TooBig);
            }
            if self.out.len() == before_out || status == Status::StreamEnd {
                return Ok(&self.out);
            }
        }
    }
}

/// Makes room in a full `out` for the next step of output, up to one byte past `max` (which
/// tells a message of exactly `max` from a larger one).
fn grow(out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
    if out.len() == out.capacity() {
        if out.len() > max {
            return Err(InflateError::TooBig);
        }
        out.reserve_exact(STEP.min(max + 1 - out.len()).max(1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// `data` compressed as a client does: raw DEFLATE, sync flush, tail removed.
    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut compress = Compress::new_with_window_bits(Compression::default(), false, 15);
        let mut out = Vec::with_capacity(data.len() + 1024);
        compress.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&SYNC_TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn a_message_inflates_back_to_its_bytes() {
        let mut inflater = Inflater::new();
        let text = "Hello, compressed world! ".repeat(100);
        assert_eq!(inflater.inflate(&deflate(text.as_bytes()), 1 << 20).unwrap(), text.as_bytes());
        assert_eq!(inflater.inflate(&deflate(b""), 10).unwrap(), b"");
        // RFC 7692 section 7.2.3.1's example: "Hello" compressed.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflater.inflate(&hello, 5).unwrap(), b"Hello");
        // Exactly `max` is allowed, one byte more is not.
        let exact = deflate(&[b'a'; 100_000]);
        assert_eq!(inflater.inflate(&exact, 100_000).unwrap().len(), 100_000);
        assert_eq!(inflater.inflate(&exact, 99_999), Err(InflateError::TooBig));
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 1 KiB of compressed zeros that would inflate to about 1 MiB; and a much larger one.
        let bomb = deflate(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 2048, "{}", bomb.len());
        let mut inflater = Inflater::new();
        assert_eq!(inflater.inflate(&bomb, 64 * 1024), Err(InflateError::TooBig));
        let big = deflate(&vec![0u8; 64 << 20]);
        let started = std::time::Instant::now();
        assert_eq!(inflater.inflate(&big, 1 << 20), Err(InflateError::TooBig));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "stopped at the limit");
        // And the inflater serves the next message.
        assert_eq!(inflater.inflate(&deflate(b"after"), 100).unwrap(), b"after");
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut inflater = Inflater::new();
        assert_eq!(inflater.inflate(&[0xff; 32], 1 << 20), Err(InflateError::Corrupt));
        assert_eq!(inflater.inflate(&deflate(b"fine"), 100).unwrap(), b"fine");
    }
}

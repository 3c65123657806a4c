//! What a TLS connection holds between calls: received records not yet processed, plaintext
//! the caller has not taken, records the socket did not take. Each is freed, not just
//! cleared, once emptied: an idle connection owns no buffer, as a plain one owns none.

/// Everything a connection holds between calls; boxed, and only while something is held,
/// so an idle connection pays one pointer for it.
#[derive(Default)]
pub(super) struct Leftovers {
    pub incoming: Incoming,
    /// Plaintext decrypted and not yet taken by the caller.
    pub plaintext: Held,
    /// Records encrypted and not yet taken by the socket.
    pub outgoing: Held,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.incoming.is_empty() && self.plaintext.is_empty() && self.outgoing.is_empty()
    }
}

/// Bytes waiting to be taken from the front (plaintext for the caller, records for the
/// socket).
#[derive(Default)]
pub(super) struct Held {
    bytes: Vec<u8>,
    /// How many bytes at the front were taken already.
    taken: usize,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.taken == self.bytes.len()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.taken..]
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
    }

    /// Appends what `fill` writes into `len` bytes of room; `fill` returns how many it wrote.
    pub fn append_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> usize) {
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        let written = fill(&mut self.bytes[start..]);
        self.bytes.truncate(start + written.min(len));
    }

    /// Drops `n` bytes from the front; the allocation goes with the last of them.
    pub fn consume(&mut self, n: usize) {
        self.taken += n;
        if self.taken >= self.bytes.len() {
            *self = Held::default();
        }
    }

    /// Copies as much as fits into `buf` and drops it; returns how much.
    pub fn take_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.as_slice().len());
        buf[..n].copy_from_slice(&self.as_slice()[..n]);
        self.consume(n);
        n
    }

    /// The bytes allocated (for the tests: 0 when nothing is held).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Received TLS bytes rustls has not consumed: a partial record, or whole records left while
/// the caller's buffer was full. The buffer is read into directly, so its tail past `filled`
/// is kept initialised: a record arriving a byte at a time costs a copy of each byte once,
/// not of everything held on every read.
#[derive(Default)]
pub(super) struct Incoming {
    pub bytes: Vec<u8>,
    pub filled: usize,
}

impl Incoming {
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Keeps `work[..filled]`: the buffer itself when it was this one, a copy of just those
    /// bytes when it was a thread's scratch (handed back in `work`).
    pub fn keep(&mut self, work: &mut Vec<u8>, filled: usize, from_scratch: bool) {
        *self = if filled == 0 {
            Incoming::default()
        } else if from_scratch {
            Incoming { bytes: work[..filled].to_vec(), filled }
        } else {
            Incoming { bytes: std::mem::take(work), filled }
        };
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_are_freed_once_taken() {
        let mut held = Held::default();
        assert_eq!(held.capacity(), 0);
        held.extend(b"hello ");
        held.append_with(16, |room| {
            room[..5].copy_from_slice(b"world");
            5
        });
        assert_eq!(held.as_slice(), b"hello world");
        let mut buf = [0u8; 4];
        assert_eq!(held.take_into(&mut buf), 4);
        assert_eq!(&buf, b"hell");
        assert_eq!(held.as_slice(), b"o world");
        assert!(held.capacity() > 0);
        held.consume(7);
        assert!(held.is_empty());
        assert_eq!(held.capacity(), 0, "emptied means freed");
    }

    #[test]
    fn incoming_keeps_a_copy_of_scratch_and_the_buffer_itself_otherwise() {
        let mut incoming = Incoming::default();
        let mut scratch = vec![7u8; 1024];
        incoming.keep(&mut scratch, 3, true);
        assert_eq!((incoming.bytes.as_slice(), incoming.filled), (&[7u8, 7, 7][..], 3));
        assert_eq!(scratch.len(), 1024, "the scratch stays the thread's");
        let mut own = std::mem::take(&mut incoming.bytes);
        own.resize(64, 0);
        incoming.keep(&mut own, 2, false);
        assert_eq!((incoming.bytes.len(), incoming.filled), (64, 2));
        let mut own = std::mem::take(&mut incoming.bytes);
        incoming.keep(&mut own, 0, false);
        assert!(incoming.is_empty());
        assert_eq!(incoming.capacity(), 0);
    }
}

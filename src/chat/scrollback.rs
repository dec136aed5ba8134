//! The scrollback ring: the newest [`SCROLLBACK_BYTES`] of a session's output.
//!
//! A viewer that attaches late (a reloaded tab, a second device) is first sent
//! this snapshot so its terminal shows what the program drew before. It is a
//! fixed buffer written with at most two `memcpy`s per chunk: the PTY reader
//! appends every chunk here, so per-byte work would cap throughput.
//!
//! The ring cuts at a byte boundary, so a snapshot may begin inside an escape
//! sequence or a UTF-8 character; terminal emulators (xterm.js) resynchronise
//! on the next sequence, which is why nothing smarter is attempted.

use bytes::Bytes;

/// How much output a session keeps for viewers that attach later (SPEC §3.1).
pub const SCROLLBACK_BYTES: usize = 256 * 1024;

/// A byte ring that keeps the newest `capacity` bytes written to it.
pub struct Scrollback {
    /// Backing store, allocated once at full capacity.
    buf: Box<[u8]>,
    /// Index of the oldest byte kept.
    start: usize,
    /// Number of bytes kept (`<= buf.len()`).
    len: usize,
}

impl Scrollback {
    /// An empty ring keeping at most `capacity` bytes.
    ///
    /// # Panics
    /// If `capacity` is zero: a ring that keeps nothing is a configuration bug.
    pub fn with_capacity(capacity: usize) -> Self {
        assert!(capacity > 0, "scrollback capacity must be positive");
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            len: 0,
        }
    }

    /// The most bytes this ring keeps.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes currently kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been kept yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append `data`, dropping the oldest bytes when the ring is full.
    pub fn push(&mut self, data: &[u8]) {
        let cap = self.buf.len();
        if data.len() >= cap {
            // Only the tail survives: reset to a contiguous layout.
            self.buf.copy_from_slice(&data[data.len() - cap..]);
            self.start = 0;
            self.len = cap;
            return;
        }
        // Where the new bytes go: just after the newest kept byte.
        let end = (self.start + self.len) % cap;
        let first = data.len().min(cap - end);
        self.buf[end..end + first].copy_from_slice(&data[..first]);
        self.buf[..data.len() - first].copy_from_slice(&data[first..]);

        let total = self.len + data.len();
        if total > cap {
            // The write overran the oldest bytes: the oldest kept byte moves on.
            self.start = (self.start + (total - cap)) % cap;
            self.len = cap;
        } else {
            self.len = total;
        }
    }

    /// The kept bytes, oldest first, as one contiguous copy.
    pub fn snapshot(&self) -> Bytes {
        let cap = self.buf.len();
        let first = self.len.min(cap - self.start);
        let mut out = Vec::with_capacity(self.len);
        out.extend_from_slice(&self.buf[self.start..self.start + first]);
        out.extend_from_slice(&self.buf[..self.len - first]);
        Bytes::from(out)
    }
}

impl Default for Scrollback {
    fn default() -> Self {
        Self::with_capacity(SCROLLBACK_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_ring_snapshots_nothing() {
        let ring = Scrollback::with_capacity(8);
        assert!(ring.is_empty());
        assert_eq!(ring.snapshot(), Bytes::new());
    }

    #[test]
    fn keeps_everything_below_capacity() {
        let mut ring = Scrollback::with_capacity(8);
        ring.push(b"abc");
        ring.push(b"def");
        assert_eq!(&ring.snapshot()[..], b"abcdef");
        assert_eq!(ring.len(), 6);
    }

    #[test]
    fn wraps_and_keeps_the_newest_bytes() {
        let mut ring = Scrollback::with_capacity(8);
        ring.push(b"abcdef");
        ring.push(b"ghij");
        assert_eq!(&ring.snapshot()[..], b"cdefghij");
        ring.push(b"k");
        assert_eq!(&ring.snapshot()[..], b"defghijk");
        assert_eq!(ring.len(), 8);
    }

    #[test]
    fn exact_capacity_fills_the_ring() {
        let mut ring = Scrollback::with_capacity(4);
        ring.push(b"ab");
        ring.push(b"cd");
        assert_eq!(&ring.snapshot()[..], b"abcd");
        ring.push(b"wxyz");
        assert_eq!(&ring.snapshot()[..], b"wxyz");
    }

    #[test]
    fn a_chunk_larger_than_the_ring_keeps_its_tail() {
        let mut ring = Scrollback::with_capacity(4);
        ring.push(b"xy");
        ring.push(b"0123456789");
        assert_eq!(&ring.snapshot()[..], b"6789");
        ring.push(b"ab");
        assert_eq!(&ring.snapshot()[..], b"89ab");
    }

    #[test]
    fn default_is_256_kib() {
        let mut ring = Scrollback::default();
        assert_eq!(ring.capacity(), 256 * 1024);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        ring.push(&data);
        assert_eq!(&ring.snapshot()[..], &data[data.len() - 256 * 1024..]);
    }

    proptest! {
        /// The ring always equals the tail of everything written to it.
        #[test]
        fn matches_the_tail_of_all_writes(
            cap in 1usize..64,
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..40),
        ) {
            let mut ring = Scrollback::with_capacity(cap);
            let mut all = Vec::new();
            for chunk in &chunks {
                ring.push(chunk);
                all.extend_from_slice(chunk);
                let tail = &all[all.len().saturating_sub(cap)..];
                prop_assert_eq!(&ring.snapshot()[..], tail);
                prop_assert_eq!(ring.len(), tail.len());
            }
        }
    }
}

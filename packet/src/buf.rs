//! An owned packet buffer with room reserved before and after the payload.
//!
//! The data path reads a packet from the TUN device into the payload area, writes the 16-byte WireGuard
//! transport header into the headroom and the padding and AEAD tag into the tailroom, and encrypts in
//! place: no copy, no allocation per packet. The receive path does the reverse.

use core::fmt;
use core::ops::Range;

/// Bytes reserved before the payload: the WireGuard transport header (type, receiver, counter).
pub const HEADROOM: usize = 16;

/// Bytes reserved after the payload: up to 15 bytes of padding to a multiple of 16 (WireGuard paper
/// section 5.4.6) plus the 16-byte Poly1305 tag, rounded up to 32.
pub const TAILROOM: usize = 32;

/// A buffer whose live bytes (the *payload*) sit between a headroom and a tailroom that the payload may
/// grow into without moving.
///
/// Invariant: `start <= end <= storage.len()`. The constructor places `start` at [`HEADROOM`] and keeps
/// at least [`TAILROOM`] bytes after the largest payload the buffer was made for.
#[derive(Clone)]
pub struct PacketBuf {
    storage: Box<[u8]>,
    start: usize,
    end: usize,
}

impl PacketBuf {
    /// A buffer for payloads of up to `capacity` bytes, plus the reserved head- and tailroom.
    pub fn new(capacity: usize) -> Self {
        PacketBuf {
            storage: vec![0; HEADROOM + capacity + TAILROOM].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// A buffer holding a copy of `payload` (for tests and the slow path; the data path reads in place).
    pub fn from_payload(payload: &[u8]) -> Self {
        let mut buf = PacketBuf::new(payload.len());
        buf.read_with(|area| {
            area[..payload.len()].copy_from_slice(payload);
            payload.len()
        });
        buf
    }

    /// The largest payload the buffer was made for.
    pub fn capacity(&self) -> usize {
        self.storage.len() - HEADROOM - TAILROOM
    }

    /// The live bytes.
    pub fn payload(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }

    /// The live bytes, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Free bytes before the payload.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Free bytes after the payload.
    pub fn tailroom(&self) -> usize {
        self.storage.len() - self.end
    }

    /// Resets the buffer to empty with the full headroom, then lets `read` fill the payload area (up to
    /// [`capacity`](Self::capacity) bytes) and return how many bytes it wrote. A count beyond the area is
    /// clamped, so a confused reader cannot break the invariant.
    pub fn read_with(&mut self, read: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let cap = self.capacity();
        let area = &mut self.storage[HEADROOM..HEADROOM + cap];
        let n = read(area).min(cap);
        self.start = HEADROOM;
        self.end = HEADROOM + n;
        n
    }

    /// Grows the payload by `n` bytes at the front (into the headroom) and returns the new front bytes,
    /// or `None` when the headroom is smaller than `n`.
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        let start = self.start.checked_sub(n)?;
        self.start = start;
        Some(&mut self.storage[start..start + n])
    }

    /// Drops `n` bytes from the front of the payload (they become headroom); `None` if the payload is
    /// shorter than `n`.
    pub fn pull_front(&mut self, n: usize) -> Option<()> {
        if n > self.len() {
            return None;
        }
        self.start += n;
        Some(())
    }

    /// Grows the payload by `n` bytes at the back (into the tailroom) and returns them; `None` if the
    /// tailroom is smaller than `n`.
    pub fn push_back(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let end = self.end;
        self.end += n;
        Some(&mut self.storage[end..end + n])
    }

    /// Shortens the payload to `len` bytes; longer values leave it unchanged.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.end = self.start + len;
        }
    }

    /// The whole storage and where the payload lies in it, for code that works in place across the
    /// headroom and tailroom (encryption writes a header before and a tag after the payload). The caller
    /// reports the new payload range with [`set_range`](Self::set_range).
    pub fn storage_mut(&mut self) -> (&mut [u8], Range<usize>) {
        (&mut self.storage, self.start..self.end)
    }

    /// Sets the payload to `range` of the storage; `None` (and no change) if the range is out of bounds
    /// or reversed.
    pub fn set_range(&mut self, range: Range<usize>) -> Option<()> {
        if range.start > range.end || range.end > self.storage.len() {
            return None;
        }
        self.start = range.start;
        self.end = range.end;
        Some(())
    }
}

impl fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketBuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_buffer_reserves_head_and_tailroom() {
        let buf = PacketBuf::new(1420);
        assert_eq!(buf.headroom(), HEADROOM);
        assert_eq!(buf.tailroom(), 1420 + TAILROOM);
        assert!(buf.is_empty());
    }

    #[test]
    fn header_and_tag_fit_around_a_full_payload() {
        let mut buf = PacketBuf::new(8);
        assert_eq!(
            buf.read_with(|a| {
                a.fill(7);
                a.len()
            }),
            8
        );
        buf.push_front(HEADROOM).unwrap().fill(1);
        buf.push_back(TAILROOM).unwrap().fill(2);
        let p = buf.payload();
        assert_eq!(p.len(), HEADROOM + 8 + TAILROOM);
        assert!(p[..HEADROOM].iter().all(|&b| b == 1));
        assert!(p[HEADROOM..HEADROOM + 8].iter().all(|&b| b == 7));
        assert!(p[HEADROOM + 8..].iter().all(|&b| b == 2));
        assert!(buf.push_front(1).is_none());
        assert!(buf.push_back(1).is_none());
    }

    #[test]
    fn read_with_clamps_a_bogus_count() {
        let mut buf = PacketBuf::new(4);
        assert_eq!(buf.read_with(|_| 1000), 4);
        assert_eq!(buf.len(), 4);
        assert_eq!(buf.tailroom(), TAILROOM);
    }

    #[test]
    fn pull_front_and_truncate_stay_in_bounds() {
        let mut buf = PacketBuf::from_payload(&[1, 2, 3, 4]);
        assert!(buf.pull_front(5).is_none());
        buf.pull_front(1).unwrap();
        assert_eq!(buf.payload(), &[2, 3, 4]);
        buf.truncate(10);
        assert_eq!(buf.payload(), &[2, 3, 4]);
        buf.truncate(1);
        assert_eq!(buf.payload(), &[2]);
    }

    #[test]
    fn set_range_rejects_out_of_bounds() {
        let mut buf = PacketBuf::new(4);
        let (storage, range) = buf.storage_mut();
        let total = storage.len();
        assert_eq!(range, HEADROOM..HEADROOM);
        assert!(buf.set_range(0..total + 1).is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 3..2;
        assert!(buf.set_range(reversed).is_none());
        buf.set_range(0..total).unwrap();
        assert_eq!(buf.len(), total);
        assert_eq!(buf.headroom(), 0);
        assert_eq!(buf.tailroom(), 0);
    }
}

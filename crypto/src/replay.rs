//! The anti-replay window of the receiving side (paper 5.4.6; the bitmap of RFC 6479 as in Linux
//! `counter_validate`).
//!
//! A ring of 64-bit words indexed by `counter / 64`: moving the window forward clears only the words
//! it passes over, so each packet costs O(1) however far the counter jumps. The window accepts a
//! counter not seen before that is at most [`WINDOW`] - 1 behind the greatest accepted; multipath and
//! GRO reorder far more than a single path, hence a window of thousands rather than WireGuard's
//! original 2048.

use crate::constants::REJECT_AFTER_MESSAGES;

const WORD_BITS: u64 = 64;
const WORDS: usize = 128;
const RING_BITS: u64 = WORDS as u64 * WORD_BITS;

/// How far behind the greatest accepted counter a counter may be and still be accepted (exclusive):
/// the ring minus one word, which the word being filled may share with the oldest counters.
pub const WINDOW: u64 = RING_BITS - WORD_BITS;

const _: () = assert!(WORDS.is_power_of_two());
const _: () = assert!(WINDOW >= 2048);

/// Counters seen on one session. Owned by the receiving thread; update it only after the message
/// authenticated, or forged counters would advance it.
#[derive(Clone)]
pub struct ReplayWindow {
    /// One past the greatest accepted counter (0: nothing accepted yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }

    /// Whether `counter` would be accepted, without recording it: the cheap check before decrypting.
    #[inline]
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        let (word, bit) = position(counter);
        self.bits[word] & bit == 0
    }

    /// Records `counter` if acceptable; returns whether it was.
    #[inline]
    pub fn accept(&mut self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        if counter >= self.next {
            self.advance_to(counter);
        } else if self.next - counter > WINDOW {
            return false;
        }
        let (word, bit) = position(counter);
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        fresh
    }

    /// One past the greatest counter accepted so far.
    pub fn next_expected(&self) -> u64 {
        self.next
    }

    /// Makes `counter` the greatest, clearing the words between the old greatest and it.
    fn advance_to(&mut self, counter: u64) {
        let old_word = if self.next == 0 {
            None
        } else {
            Some((self.next - 1) / WORD_BITS)
        };
        let new_word = counter / WORD_BITS;
        match old_word {
            Some(old) if new_word - old < WORDS as u64 => {
                for w in old + 1..=new_word {
                    self.bits[(w % WORDS as u64) as usize] = 0;
                }
            }
            _ => self.bits = [0; WORDS],
        }
        self.next = counter + 1;
    }
}

#[inline]
fn position(counter: u64) -> (usize, u64) {
    (
        ((counter / WORD_BITS) % WORDS as u64) as usize,
        1 << (counter % WORD_BITS),
    )
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicates_and_reordering() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(2));
        assert!(w.accept(1), "late but within the window");
        assert!(!w.accept(1));
        assert!(w.check(3));
        assert!(!w.check(2));
    }

    #[test]
    fn window_edge() {
        let mut w = ReplayWindow::new();
        let top = 100_000;
        assert!(w.accept(top));
        assert!(w.check(top + 1 - WINDOW), "exactly WINDOW - 1 behind");
        assert!(!w.check(top - WINDOW), "WINDOW behind");
        assert!(w.accept(top + 1 - WINDOW));
        assert!(!w.accept(top - WINDOW));
    }

    #[test]
    fn big_jump_clears_everything() {
        let mut w = ReplayWindow::new();
        for c in 0..500 {
            assert!(w.accept(c));
        }
        assert!(w.accept(10 * RING_BITS));
        // Counters that alias the old bits in the ring must not read as already seen.
        assert!(w.accept(10 * RING_BITS - 1));
        assert!(w.accept(9 * RING_BITS + 100));
        assert!(!w.accept(499));
    }

    #[test]
    fn reject_after_messages() {
        let mut w = ReplayWindow::new();
        assert!(!w.accept(REJECT_AFTER_MESSAGES));
        assert!(!w.accept(u64::MAX));
        assert!(w.accept(REJECT_AFTER_MESSAGES - 1));
        assert_eq!(w.next_expected(), REJECT_AFTER_MESSAGES);
    }
}

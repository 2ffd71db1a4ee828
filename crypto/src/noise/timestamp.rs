//! TAI64N timestamps, the initiation's replay protection (paper 5.1, 5.4.2).

use meshd_packet::wire::TIMESTAMP_LEN;
use std::time::{Duration, SystemTime};

/// TAI64 label of the Unix epoch: 2^62 + 10, the offset libtai and Linux WireGuard use (TAI was 10 s
/// ahead of UTC in 1970). Only the order of a peer's own timestamps matters, never their meaning.
const TAI64_EPOCH: u64 = (1 << 62) + 10;

/// Granularity timestamps are rounded down to, so an initiation does not reveal the sender's clock
/// precision: the largest power of two not above 1 s / 50 (Linux `noise.c` does the same).
const WHITENING_NANOS: u32 = 1 << 24;

/// A 12-byte TAI64N timestamp: big-endian seconds then nanoseconds, so byte order is time order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tai64N([u8; TIMESTAMP_LEN]);

impl Tai64N {
    /// The zero timestamp, older than any real one.
    pub const ZERO: Tai64N = Tai64N([0; TIMESTAMP_LEN]);

    /// From the time since the Unix epoch (the caller reads the wall clock).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = TAI64_EPOCH.wrapping_add(since_epoch.as_secs());
        let nanos = since_epoch.subsec_nanos() & !(WHITENING_NANOS - 1);
        let mut b = [0u8; TIMESTAMP_LEN];
        b[..8].copy_from_slice(&secs.to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Tai64N(b)
    }

    /// From a wall-clock reading; a clock before 1970 gives the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        Self::from_unix(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
    }

    pub const fn from_bytes(b: [u8; TIMESTAMP_LEN]) -> Self {
        Tai64N(b)
    }

    pub const fn as_bytes(&self) -> &[u8; TIMESTAMP_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for Tai64N {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let secs = u64::from_be_bytes([
            self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5], self.0[6], self.0[7],
        ]);
        let nanos = u32::from_be_bytes([self.0[8], self.0[9], self.0[10], self.0[11]]);
        write!(f, "Tai64N({}.{:09})", secs.wrapping_sub(TAI64_EPOCH), nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_order() {
        let t = Tai64N::from_unix(Duration::new(1, 500_000_000));
        assert_eq!(&t.as_bytes()[..8], &((1u64 << 62) + 11).to_be_bytes());
        let nanos = u32::from_be_bytes(t.as_bytes()[8..].try_into().unwrap());
        assert!(nanos <= 500_000_000 && 500_000_000 - nanos < WHITENING_NANOS);
        assert!(Tai64N::from_unix(Duration::new(1, 0)) < t);
        assert!(t < Tai64N::from_unix(Duration::new(2, 0)));
        assert!(Tai64N::ZERO < Tai64N::from_unix(Duration::ZERO));
    }

    #[test]
    fn whitening_hides_sub_granularity_differences() {
        let a = Tai64N::from_unix(Duration::new(5, 1));
        let b = Tai64N::from_unix(Duration::new(5, 1000));
        assert_eq!(a, b);
        let c = Tai64N::from_unix(Duration::new(5, WHITENING_NANOS));
        assert!(c > a);
    }
}

//! Handshake rate limiter keyed by source address (Linux `ratelimiter.c`): a token bucket per IPv4
//! address or IPv6 /64, 20 handshakes per second with a burst of 5.
//!
//! Consulted for handshake messages that carry a valid cookie while under load, so that a sender
//! who can receive at its address still cannot make us do unbounded DH work. Memory is bounded: idle
//! entries are collected once a second and, when the table is full, new sources are refused (the
//! only safe choice: evicting a live entry would reset its bucket).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sustained handshakes per second per source.
pub const PACKETS_PER_SECOND: u64 = 20;
/// Handshakes a quiet source may send at once.
pub const PACKETS_BURST: u64 = 5;
const PACKET_COST: u64 = 1_000_000_000 / PACKETS_PER_SECOND;
const TOKEN_MAX: u64 = PACKET_COST * PACKETS_BURST;
/// Entries idle this long are dropped, and collection runs this often.
const GC_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    last: Instant,
    /// Nanoseconds of credit.
    tokens: u64,
}

/// The per-source token buckets.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    buckets: BTreeMap<u128, Bucket>,
    max_entries: usize,
    last_gc: Option<Instant>,
}

impl RateLimiter {
    /// A limiter that tracks at most `max_entries` sources at once.
    pub fn new(max_entries: usize) -> Self {
        RateLimiter {
            buckets: BTreeMap::new(),
            max_entries,
            last_gc: None,
        }
    }

    /// Whether a handshake from `src` may be processed now; takes a token if so.
    pub fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        self.collect(now);
        let key = source_key(src);
        if let Some(b) = self.buckets.get_mut(&key) {
            let elapsed = now.saturating_duration_since(b.last).as_nanos();
            let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
            b.tokens = b.tokens.saturating_add(elapsed).min(TOKEN_MAX);
            b.last = now;
            if b.tokens >= PACKET_COST {
                b.tokens -= PACKET_COST;
                return true;
            }
            return false;
        }
        if self.buckets.len() >= self.max_entries {
            return false;
        }
        self.buckets.insert(
            key,
            Bucket {
                last: now,
                tokens: TOKEN_MAX - PACKET_COST,
            },
        );
        true
    }

    /// Sources currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn collect(&mut self, now: Instant) {
        let due = self
            .last_gc
            .is_none_or(|t| now.saturating_duration_since(t) >= GC_INTERVAL);
        if !due {
            return;
        }
        self.last_gc = Some(now);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < GC_INTERVAL);
    }
}

/// IPv4 by address, IPv6 by /64 (one host usually owns a whole /64), in disjoint key ranges.
fn source_key(src: IpAddr) -> u128 {
    match src {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => (u128::from(a) & !((1u128 << 64) - 1)) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> Instant {
        // Tests need one real Instant as the epoch of their virtual clock; nothing else reads it.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    #[test]
    fn burst_then_twenty_per_second() {
        let t0 = epoch();
        let mut rl = RateLimiter::new(100);
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let burst = (0..10).filter(|_| rl.allow(a, t0)).count();
        assert_eq!(burst as u64, PACKETS_BURST);
        // Over the next second, one token every 50 ms.
        let mut allowed = 0;
        for ms in 1..=1000u64 {
            if rl.allow(a, t0 + Duration::from_millis(ms)) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, PACKETS_PER_SECOND);
    }

    #[test]
    fn sources_are_independent_and_ipv6_counts_per_64() {
        let t0 = epoch();
        let mut rl = RateLimiter::new(100);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for _ in 0..PACKETS_BURST {
            assert!(rl.allow(a, t0));
        }
        assert!(!rl.allow(same64, t0));
        assert!(rl.allow(other64, t0));
        assert!(rl.allow("192.0.2.1".parse().unwrap(), t0));
        assert!(!rl.allow("::".parse().unwrap(), t0) || rl.len() == 4);
    }

    #[test]
    fn memory_is_bounded_and_idle_entries_are_collected() {
        let t0 = epoch();
        let mut rl = RateLimiter::new(3);
        for i in 1..=3u8 {
            assert!(rl.allow(IpAddr::from([192, 0, 2, i]), t0));
        }
        assert!(
            !rl.allow("192.0.2.4".parse().unwrap(), t0),
            "full: refuse new sources"
        );
        assert_eq!(rl.len(), 3);
        let later = t0 + GC_INTERVAL;
        assert!(rl.allow("192.0.2.4".parse().unwrap(), later));
        assert_eq!(rl.len(), 1);
    }
}

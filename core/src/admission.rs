//! Who may make a node compute a key it does not have yet.
//!
//! Opening an envelope from a key the channel has not seen costs an X25519 multiplication (about
//! 50 µs); anyone can make keys and forge source addresses, so without a limit a stranger fills a
//! core with random-key envelopes. Strangers' envelopes pass two token buckets before any of that
//! work: one per source address (IPv4 address or IPv6 /64, `meshd_crypto::ratelimiter`: 20 per
//! second, bursts of 5), and one for all strangers together, because forged sources are free and
//! the per-source table admits every new address once. Members never pass here: their keys are
//! cached when their first message is acted on, and cached keys cost no multiplication.
//!
//! Pure: `now` is a parameter.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use meshd_crypto::ratelimiter::RateLimiter;

/// Sources the per-source limiter tracks at once; beyond that, new sources wait for idle ones to be
/// collected (within a second).
pub const MAX_SOURCES: usize = 4096;
/// Strangers' envelopes opened per second, all sources together.
pub const GLOBAL_PER_SECOND: u64 = 500;
/// Strangers' envelopes opened at once after a quiet spell.
pub const GLOBAL_BURST: u64 = 100;

/// The two buckets in front of a stranger's key derivation.
#[derive(Debug, Clone)]
pub struct Admission {
    per_source: RateLimiter,
    global: Bucket,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(GLOBAL_PER_SECOND, GLOBAL_BURST)
    }
}

impl Admission {
    /// Strangers limited to `per_second` overall with bursts of `burst`, and per source as the
    /// handshake limiter limits them.
    pub fn new(per_second: u64, burst: u64) -> Self {
        Admission {
            per_source: RateLimiter::new(MAX_SOURCES),
            global: Bucket::new(per_second, burst),
        }
    }

    /// Whether a stranger's envelope from `from` may be opened now; takes a token from both buckets
    /// if so, from neither if not.
    pub fn allow(&mut self, from: IpAddr, now: Instant) -> bool {
        if !self.global.has_token(now) {
            return false;
        }
        if !self.per_source.allow(from, now) {
            return false;
        }
        self.global.take();
        true
    }
}

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone)]
struct Bucket {
    /// Nanoseconds of credit, at most `max`.
    tokens: u64,
    cost: u64,
    max: u64,
    last: Option<Instant>,
}

impl Bucket {
    fn new(per_second: u64, burst: u64) -> Self {
        let cost = 1_000_000_000 / per_second.max(1);
        let max = cost.saturating_mul(burst.max(1));
        Bucket {
            tokens: max,
            cost,
            max,
            last: None,
        }
    }

    fn has_token(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).min(Duration::from_secs(60));
            let elapsed = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            self.tokens = self.tokens.saturating_add(elapsed).min(self.max);
        }
        self.last = Some(now);
        self.tokens >= self.cost
    }

    fn take(&mut self) {
        self.tokens = self.tokens.saturating_sub(self.cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::epoch;

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let t0 = epoch();
        let mut a = Admission::default();
        let src: IpAddr = "192.0.2.9".parse().unwrap();
        let burst = (0..50).filter(|_| a.allow(src, t0)).count();
        assert_eq!(burst, 5);
        let later = (1..=1000u64)
            .filter(|ms| a.allow(src, t0 + Duration::from_millis(*ms)))
            .count();
        assert_eq!(later, 20, "20 per second after the burst");
    }

    #[test]
    fn forged_sources_share_one_global_budget() {
        let t0 = epoch();
        let mut a = Admission::new(100, 10);
        let allowed = (0..1000u32)
            .filter(|i| a.allow(IpAddr::from((0xc000_0200u32 + i).to_be_bytes()), t0))
            .count();
        assert_eq!(allowed, 10, "a thousand sources at once: only the global burst");
        let next_second = (0..1000u32)
            .filter(|i| {
                let t = t0 + Duration::from_micros(1000 * u64::from(*i));
                a.allow(IpAddr::from((0xc633_6400u32 + i).to_be_bytes()), t)
            })
            .count();
        assert!(
            (99..=101).contains(&next_second),
            "{next_second} in the next second"
        );
    }

    #[test]
    fn a_refused_source_costs_the_global_bucket_nothing() {
        let t0 = epoch();
        let mut a = Admission::new(100, 10);
        let src: IpAddr = "192.0.2.9".parse().unwrap();
        let from_one = (0..100).filter(|_| a.allow(src, t0)).count();
        assert_eq!(from_one, 5);
        let others = (1..=20u8)
            .filter(|i| a.allow(IpAddr::from([198, 51, 100, *i]), t0))
            .count();
        assert_eq!(
            others, 5,
            "the global burst of 10 less the 5 the first source used"
        );
    }
}

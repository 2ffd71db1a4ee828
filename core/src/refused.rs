//! Messages a receiver opened but did not act on (a join with a bad token, a poll from a key that is
//! not a member), remembered so that a replay of the same datagram is not answered again.
//!
//! The replay guard records counters only for senders the receiver acted on, because anyone can make
//! keys and a refused sender must not take one of its slots. Without this memory, one captured
//! refused join could be replayed from forged sources for the whole freshness window, each copy
//! drawing an answer. Memory is bounded: entries leave after twice the freshness window (by then the
//! message is stale anyway: a counter may be up to one window ahead of our clock and is refused one
//! window after it), and when full the oldest entry goes. Forgetting one early lets its replay be
//! answered once more, with an answer no larger than the replay (`crate::message::fit_reply`), and
//! strangers' messages are rate-limited (`crate::admission`), so an attacker must refuse
//! [`MAX_REFUSED`] new messages to buy one more answer.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use meshd_crypto::PublicKey;

/// Refused messages remembered at most (about 80 bytes each).
pub const MAX_REFUSED: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct Refused {
    keep: Duration,
    set: HashSet<(PublicKey, u64)>,
    /// In insertion order, with the time each may be forgotten.
    order: VecDeque<(Instant, PublicKey, u64)>,
    capacity: usize,
}

impl Refused {
    /// Remembers each entry for `keep`, at most `capacity` at once.
    pub fn new(keep: Duration, capacity: usize) -> Self {
        Refused {
            keep,
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers that the message `counter` from `sender` was refused.
    pub fn insert(&mut self, now: Instant, sender: &PublicKey, counter: u64) {
        self.expire(now);
        if !self.set.insert((*sender, counter)) {
            return;
        }
        if self.order.len() >= self.capacity
            && let Some((_, k, c)) = self.order.pop_front()
        {
            self.set.remove(&(k, c));
        }
        self.order.push_back((now + self.keep, *sender, counter));
    }

    /// Whether the message `counter` from `sender` was refused before.
    pub fn contains(&mut self, now: Instant, sender: &PublicKey, counter: u64) -> bool {
        self.expire(now);
        self.set.contains(&(*sender, counter))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((until, k, c)) = self.order.front().copied() {
            if until > now {
                break;
            }
            self.order.pop_front();
            self.set.remove(&(k, c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::epoch;

    #[test]
    fn remembers_until_it_expires() {
        let t0 = epoch();
        let k = PublicKey::from_bytes([7; 32]);
        let mut r = Refused::new(Duration::from_secs(10), 4);
        r.insert(t0, &k, 5);
        assert!(r.contains(t0 + Duration::from_secs(9), &k, 5));
        assert!(!r.contains(t0, &k, 6), "another counter is another message");
        assert!(!r.contains(t0 + Duration::from_secs(10), &k, 5));
        assert!(r.is_empty());
    }

    #[test]
    fn bounded_oldest_first() {
        let t0 = epoch();
        let mut r = Refused::new(Duration::from_secs(10), 3);
        for i in 0..10u8 {
            r.insert(t0, &PublicKey::from_bytes([i; 32]), 1);
            assert!(r.len() <= 3);
        }
        assert!(!r.contains(t0, &PublicKey::from_bytes([6; 32]), 1));
        for i in 7..10u8 {
            assert!(r.contains(t0, &PublicKey::from_bytes([i; 32]), 1));
        }
    }
}

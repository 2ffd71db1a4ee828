//! Who a relay forwards for: frames (`0x81 | token | destination key | inner datagram`) that carry a
//! relay token the relay issued to an authorized member, come from that member's endpoint, and go to
//! the endpoint of another authorized member of the same network; nothing else, so the relay is
//! neither an open reflector nor usable by a stranger who forges a member's address.
//!
//! The relay reads only the token and the destination key; the inner datagram is a WireGuard message
//! between the two members (or a sealed envelope), which the relay cannot open. The table is built by
//! the controller from the endpoints members' authenticated control messages came from, and published
//! to the receive thread by pointer swap.
//!
//! Tokens ([`TokenIssuer`]) are keyed hashes of the member's key and a rotation epoch under a secret
//! only the relay holds, so the relay keeps no per-member state for them. Each member gets its own
//! inside a sealed envelope after every poll; the relay accepts the current epoch's and the previous
//! one's, so a rotation never cuts off a member that has not polled since. Checking one costs a hash
//! map lookup in the receive thread, and the relay zeroes it before forwarding, so no member learns
//! another's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshd_crypto::primitives::hash::mac;
use meshd_packet::wire::meshd::RELAY_TOKEN_LEN;

use crate::address::canonical;

/// A relay token: the member's ticket, carried in each relay frame it sends.
pub type RelayToken = [u8; RELAY_TOKEN_LEN];

/// How long one epoch's tokens are issued. A token is accepted for up to twice this.
pub const TOKEN_ROTATION: Duration = Duration::from_secs(120);

/// Domain separation of the token derivation.
const TOKEN_LABEL: &[u8] = b"meshd relay token v1";

/// Why a relay frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one the relay did not issue (or issued over two rotations ago).
    BadToken,
    /// A good token from another address than its member's, or a destination that is not another
    /// member of a network the sender is in.
    NotAllowed,
}

/// Derives members' tokens from a secret the relay draws at start (pure: the epoch is a parameter).
#[derive(Clone)]
pub struct TokenIssuer {
    secret: [u8; 32],
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer")
    }
}

impl TokenIssuer {
    pub fn new(secret: [u8; 32]) -> Self {
        TokenIssuer { secret }
    }

    /// The token of `member` for `epoch`: the first eight bytes of a keyed BLAKE2s. Never zero (zero
    /// marks a frame whose token the relay removed).
    pub fn token(&self, member: &[u8; 32], epoch: u64) -> RelayToken {
        let full = mac(&self.secret, &[TOKEN_LABEL, member, &epoch.to_le_bytes()]);
        let mut token = [0; RELAY_TOKEN_LEN];
        token.copy_from_slice(&full[..RELAY_TOKEN_LEN]);
        if token == [0; RELAY_TOKEN_LEN] {
            token[0] = 1;
        }
        token
    }
}

/// When the tokens rotate: an epoch number that goes up every [`TOKEN_ROTATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub epoch: u64,
    pub since: Instant,
}

impl Rotation {
    pub fn new(now: Instant) -> Self {
        Rotation { epoch: 0, since: now }
    }

    pub fn next(&self) -> Instant {
        self.since + TOKEN_ROTATION
    }

    /// Moves to the epoch `now` is in. Returns whether it changed.
    pub fn advance(&mut self, now: Instant) -> bool {
        if now < self.next() {
            return false;
        }
        self.epoch += 1;
        self.since = now;
        true
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayTable {
    /// Member key -> (endpoint, networks it is an authorized member of).
    by_key: HashMap<[u8; 32], (SocketAddr, Vec<u32>)>,
    /// Token -> the member it was issued to.
    by_token: HashMap<RelayToken, [u8; 32]>,
}

impl RelayTable {
    /// Adds an authorized member of network `network` (any small number that names the network),
    /// seen at `endpoint`, with the tokens it may use.
    pub fn insert(&mut self, key: [u8; 32], endpoint: SocketAddr, network: u32, tokens: &[RelayToken]) {
        let endpoint = canonical(endpoint);
        let entry = self.by_key.entry(key).or_insert((endpoint, Vec::new()));
        entry.0 = endpoint;
        if !entry.1.contains(&network) {
            entry.1.push(network);
        }
        for token in tokens {
            if *token != [0; RELAY_TOKEN_LEN] {
                self.by_token.insert(*token, key);
            }
        }
    }

    /// Where a frame from `from` with `token` for `destination` goes, if anywhere.
    pub fn forward(
        &self,
        from: SocketAddr,
        token: &RelayToken,
        destination: &[u8; 32],
    ) -> Result<SocketAddr, Refusal> {
        let sender = self.by_token.get(token).ok_or(Refusal::BadToken)?;
        let from = canonical(from);
        let (sender_at, source_nets) = self.by_key.get(sender).ok_or(Refusal::BadToken)?;
        if *sender_at != from {
            return Err(Refusal::NotAllowed);
        }
        let (to, dest_nets) = self.by_key.get(destination).ok_or(Refusal::NotAllowed)?;
        if *to == from {
            // Back where it came from: useless, and a loop if two relays disagree.
            return Err(Refusal::NotAllowed);
        }
        if dest_nets.iter().any(|n| source_nets.contains(n)) {
            Ok(*to)
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const T1: RelayToken = [1; 8];
    const T2: RelayToken = [2; 8];
    const T3: RelayToken = [3; 8];

    fn table() -> RelayTable {
        let mut t = RelayTable::default();
        t.insert([1; 32], addr("192.0.2.1:1000"), 0, &[T1]);
        t.insert([2; 32], addr("192.0.2.2:2000"), 0, &[T2]);
        t.insert([3; 32], addr("192.0.2.3:3000"), 1, &[T3]);
        t
    }

    #[test]
    fn forwards_only_between_members_of_one_network() {
        let t = table();
        assert_eq!(
            t.forward(addr("192.0.2.1:1000"), &T1, &[2; 32]),
            Ok(addr("192.0.2.2:2000"))
        );
        assert_eq!(
            t.forward(addr("192.0.2.2:2000"), &T2, &[1; 32]),
            Ok(addr("192.0.2.1:1000"))
        );
        // Another network, an unknown destination, back to the sender.
        assert_eq!(
            t.forward(addr("192.0.2.1:1000"), &T1, &[3; 32]),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            t.forward(addr("192.0.2.1:1000"), &T1, &[9; 32]),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            t.forward(addr("192.0.2.1:1000"), &T1, &[1; 32]),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn a_forged_source_without_the_members_token_gets_nothing() {
        let t = table();
        // The member's own address and port, but no token, a made-up one, or another member's.
        let from = addr("192.0.2.1:1000");
        assert_eq!(t.forward(from, &[0; 8], &[2; 32]), Err(Refusal::BadToken));
        assert_eq!(t.forward(from, &[0x55; 8], &[2; 32]), Err(Refusal::BadToken));
        assert_eq!(t.forward(from, &T2, &[2; 32]), Err(Refusal::NotAllowed));
        assert_eq!(t.forward(from, &T3, &[2; 32]), Err(Refusal::NotAllowed));
        // The right token from anywhere but the member's endpoint.
        assert_eq!(
            t.forward(addr("198.51.100.9:1000"), &T1, &[2; 32]),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            t.forward(addr("192.0.2.1:1001"), &T1, &[2; 32]),
            Err(Refusal::NotAllowed)
        );
        // A zero token is never issued, even if asked to.
        let mut t = RelayTable::default();
        t.insert([1; 32], from, 0, &[[0; 8]]);
        t.insert([2; 32], addr("192.0.2.2:2000"), 0, &[T2]);
        assert_eq!(t.forward(from, &[0; 8], &[2; 32]), Err(Refusal::BadToken));
    }

    #[test]
    fn v4_mapped_sources_match_plain_v4() {
        let mut t = RelayTable::default();
        t.insert([1; 32], addr("192.0.2.1:1000"), 0, &[T1]);
        t.insert([2; 32], addr("[::ffff:192.0.2.2]:2000"), 0, &[T2]);
        assert_eq!(
            t.forward(addr("[::ffff:192.0.2.1]:1000"), &T1, &[2; 32]),
            Ok(addr("192.0.2.2:2000"))
        );
    }

    #[test]
    fn tokens_are_per_member_per_epoch_and_per_secret() {
        let issuer = TokenIssuer::new([7; 32]);
        let a = issuer.token(&[1; 32], 5);
        assert_eq!(a, issuer.token(&[1; 32], 5), "deterministic");
        assert_ne!(a, issuer.token(&[2; 32], 5), "another member");
        assert_ne!(a, issuer.token(&[1; 32], 6), "another epoch");
        assert_ne!(a, TokenIssuer::new([8; 32]).token(&[1; 32], 5), "another relay");
        assert_ne!(a, [0; 8]);
    }

    #[test]
    fn rotation_moves_one_epoch_per_period() {
        let start = crate::test_clock::epoch();
        let mut r = Rotation::new(start);
        assert!(!r.advance(start + TOKEN_ROTATION - Duration::from_millis(1)));
        assert_eq!(r.epoch, 0);
        assert!(r.advance(start + TOKEN_ROTATION));
        assert_eq!((r.epoch, r.next()), (1, start + 2 * TOKEN_ROTATION));
    }
}

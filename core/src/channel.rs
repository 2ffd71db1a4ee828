//! Seals and opens control messages: a sealed envelope (`meshd_crypto::sealed`) around an encoded
//! [`Envelope`], with the counter checks the envelope itself leaves to its caller.
//!
//! Pure: the wall-clock time and the RNG are parameters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use meshd_crypto::sealed::{self, PairKey, ReplayGuard, SealedError};
use meshd_crypto::{PublicKey, StaticSecret};
use meshd_packet::wire::meshd::{MeshdMessage, parse_meshd};
use rand_core::{CryptoRng, RngCore};

use super::admission::Admission;
use super::message::{Body, DecodeError, Envelope};
use super::refused::{MAX_REFUSED, Refused};

/// How far a message's time may be from ours. Wide, because clocks of machines that do not run NTP
/// drift; its only job is to stop a message recorded long ago from being replayed after the
/// receiver restarted and forgot its counters.
pub const FRESHNESS: Duration = Duration::from_secs(600);

/// Senders whose counters one channel remembers. A controller checks that the sender is a member
/// before the counter is recorded, so this bounds only what members can make it hold.
pub const MAX_SENDERS: usize = 1 << 16;

/// Pair keys of strangers one channel keeps. When full this cache (and only this one) is cleared:
/// strangers can fill it, but the keys of members and of the node's controller live apart and
/// strangers cannot push them out.
pub const MAX_STRANGER_KEYS: usize = 1024;

/// What the receiver makes of a sender whose key the channel has not derived yet, asked before
/// any work is spent on its envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A member (on a controller) or the node's controller: the key is derived without a limit
    /// and kept. Whoever claims such a key costs one derivation, once.
    Known,
    /// Someone the receiver may answer though it does not know them (a joining node, on a
    /// controller): only within the [`Admission`] limits, and the key goes to the strangers' cache.
    Stranger,
    /// Nobody the receiver talks to (on a node: anyone but its controller): dropped unopened.
    Unwanted,
}

/// Why a datagram was not accepted as a control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Sealed(SealedError),
    Decode(DecodeError),
    /// A stranger over the admission limits: dropped before any key derivation.
    RateLimited,
    /// A sender the receiver talks to in no case (or its own key reflected back).
    Unwanted,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Sealed(e) => e.fmt(f),
            OpenError::Decode(e) => e.fmt(f),
            OpenError::RateLimited => f.write_str("sender over its rate limit"),
            OpenError::Unwanted => f.write_str("sender is not one this node talks to"),
        }
    }
}

impl std::error::Error for OpenError {}

/// A message that opened and passed the freshness check, waiting for the caller to decide whether
/// the sender is welcome before its counter is recorded ([`Channel::accept`]) or the message is
/// remembered as refused ([`Channel::refuse`]).
#[derive(Debug)]
pub struct Opened {
    pub sender: PublicKey,
    pub counter: u64,
    pub body: Body,
}

/// Pair keys one way, in two tiers: the known senders' (members, the controller), which only the
/// owner of the channel adds to and removes from, and strangers', bounded.
#[derive(Default)]
struct Keys {
    known: HashMap<PublicKey, PairKey>,
    strangers: HashMap<PublicKey, PairKey>,
}

impl Keys {
    fn get(&self, peer: &PublicKey) -> Option<&PairKey> {
        self.known.get(peer).or_else(|| self.strangers.get(peer))
    }

    fn insert(&mut self, peer: PublicKey, key: PairKey, known: bool) {
        if known {
            self.strangers.remove(&peer);
            self.known.insert(peer, key);
        } else {
            if self.strangers.len() >= MAX_STRANGER_KEYS {
                self.strangers.clear();
            }
            self.strangers.insert(peer, key);
        }
    }

    fn promote(&mut self, peer: &PublicKey) {
        if let Some(key) = self.strangers.remove(peer) {
            self.known.insert(*peer, key);
        }
    }

    fn remove(&mut self, peer: &PublicKey) {
        self.known.remove(peer);
        self.strangers.remove(peer);
    }
}

pub struct Channel {
    secret: StaticSecret,
    guard: ReplayGuard,
    refused: Refused,
    admission: Admission,
    last_sent: u64,
    scratch: Vec<u8>,
    outgoing: Keys,
    incoming: Keys,
    derivations: u64,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("key", self.secret.public_key())
            .field("senders", &self.guard.len())
            .finish_non_exhaustive()
    }
}

impl Channel {
    pub fn new(secret: StaticSecret) -> Self {
        Channel::with_admission(secret, Admission::default())
    }

    /// A channel whose strangers pass `admission` (tests use tighter or looser limits).
    pub fn with_admission(secret: StaticSecret, admission: Admission) -> Self {
        Channel {
            secret,
            guard: ReplayGuard::new(MAX_SENDERS),
            refused: Refused::new(2 * FRESHNESS, MAX_REFUSED),
            admission,
            last_sent: 0,
            scratch: Vec::new(),
            outgoing: Keys::default(),
            incoming: Keys::default(),
            derivations: 0,
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        self.secret.public_key()
    }

    /// X25519 multiplications done so far (one per pair key derived), for status and tests.
    pub fn derivations(&self) -> u64 {
        self.derivations
    }

    /// The datagram carrying `body` to `to`. `wall` is the time since 1970.
    pub fn seal(
        &mut self,
        wall: Duration,
        to: &PublicKey,
        body: Body,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vec<u8>, SealedError> {
        let now = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        self.last_sent = now.max(self.last_sent + 1);
        let plaintext = Envelope {
            counter: self.last_sent,
            body,
        }
        .encode();
        if self.outgoing.get(to).is_none() {
            let key = PairKey::outgoing(&self.secret, to)?;
            self.derivations += 1;
            let known = self.incoming.known.contains_key(to);
            self.outgoing.insert(*to, key, known);
        }
        let key = self.outgoing.get(to).ok_or(SealedError::Decrypt)?;
        let mut out = Vec::with_capacity(plaintext.len() + 80);
        key.seal(&plaintext, &mut out, rng)?;
        Ok(out)
    }

    /// Opens a datagram that came from `from` at `now` (monotonic) and `wall` (since 1970), and
    /// checks that its time is within [`FRESHNESS`] of `wall`, that its counter is above the last
    /// accepted from the sender and that it is not one refused before. The counter is not recorded
    /// until [`Channel::accept`].
    ///
    /// The cheap checks come first: the framing, then whether the sender's key is cached; for a
    /// sender whose key is not, `admit` says what the receiver makes of it, and a stranger must pass
    /// the [`Admission`] limits before its key is derived.
    pub fn open(
        &mut self,
        now: Instant,
        wall: Duration,
        from: IpAddr,
        datagram: &[u8],
        admit: impl FnOnce(&PublicKey) -> Admit,
    ) -> Result<Opened, OpenError> {
        let envelope = match parse_meshd(datagram) {
            Ok(MeshdMessage::Sealed(envelope)) => envelope,
            Ok(_) => return Err(OpenError::Sealed(SealedError::Decrypt)),
            Err(e) => return Err(OpenError::Sealed(SealedError::Malformed(e))),
        };
        let sender = PublicKey::from_bytes(envelope.header.sender);
        if &sender == self.secret.public_key() {
            // Our own key: a reflection of something we sent, or a forgery; never worth a derivation.
            return Err(OpenError::Unwanted);
        }
        if self.incoming.get(&sender).is_none() {
            let known = match admit(&sender) {
                Admit::Known => true,
                Admit::Stranger if self.admission.allow(from, now) => false,
                Admit::Stranger => return Err(OpenError::RateLimited),
                Admit::Unwanted => return Err(OpenError::Unwanted),
            };
            let key = PairKey::incoming(&self.secret, &sender).map_err(OpenError::Sealed)?;
            self.derivations += 1;
            self.incoming.insert(sender, key, known);
        } else if !self.incoming.known.contains_key(&sender) && !self.admission.allow(from, now) {
            // A stranger whose key is cached still costs a decryption and whatever its message asks
            // (a join: a database lookup): the same limits hold.
            return Err(OpenError::RateLimited);
        }
        let key = self
            .incoming
            .get(&sender)
            .ok_or(OpenError::Sealed(SealedError::Decrypt))?;
        key.open(&envelope, &mut self.scratch)
            .map_err(OpenError::Sealed)?;
        let envelope = Envelope::decode(&self.scratch).map_err(OpenError::Decode)?;
        sealed::check_fresh(Duration::from_nanos(envelope.counter), wall, FRESHNESS)
            .map_err(OpenError::Sealed)?;
        let replayed = self
            .guard
            .last(&sender)
            .is_some_and(|last| envelope.counter <= last)
            || self.refused.contains(now, &sender, envelope.counter);
        if replayed {
            return Err(OpenError::Sealed(SealedError::Replayed));
        }
        Ok(Opened {
            sender,
            counter: envelope.counter,
            body: envelope.body,
        })
    }

    /// Records the counter of a message the caller decided to act on (its [`Opened`] `sender` and
    /// `counter`; the body has gone to whoever acted on it). The sender's keys are kept from now on
    /// where strangers cannot push them out.
    pub fn accept(&mut self, sender: &PublicKey, counter: u64) -> Result<(), SealedError> {
        self.guard.accept(sender, counter)?;
        self.incoming.promote(sender);
        self.outgoing.promote(sender);
        Ok(())
    }

    /// Remembers a message the caller opened and did not act on, so that its replays are refused
    /// ([`SealedError::Replayed`]) instead of answered again. Bounded: see [`crate::refused`].
    pub fn refuse(&mut self, now: Instant, sender: &PublicKey, counter: u64) {
        self.refused.insert(now, sender, counter);
    }

    /// Forgets a sender's counter and keys (a member removed), freeing their slots.
    pub fn forget(&mut self, sender: &PublicKey) {
        self.guard.forget(sender);
        self.outgoing.remove(sender);
        self.incoming.remove(sender);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::epoch;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn poll() -> Body {
        Body::MapCurrent {
            network: "lab".into(),
            version: 3,
        }
    }

    const WALL: Duration = Duration::from_secs(1_800_000_000);

    fn src(i: u32) -> IpAddr {
        IpAddr::from((0xc000_0200u32.wrapping_add(i)).to_be_bytes())
    }

    fn anyone(_: &PublicKey) -> Admit {
        Admit::Stranger
    }

    #[test]
    fn round_trip_then_replay_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let t0 = epoch();
        let mut a = Channel::new(StaticSecret::from_bytes([1; 32]));
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let b_key = *b.public_key();
        let datagram = a.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        let opened = b.open(t0, WALL, src(1), &datagram, anyone).unwrap();
        assert_eq!(opened.sender, *a.public_key());
        assert_eq!(opened.body, poll());
        b.accept(&opened.sender, opened.counter).unwrap();
        assert_eq!(
            b.open(t0, WALL, src(1), &datagram, anyone).unwrap_err(),
            OpenError::Sealed(SealedError::Replayed)
        );
        // The next message from a goes through even if the clock did not move.
        let next = a.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        let opened = b.open(t0, WALL, src(1), &next, anyone).unwrap();
        b.accept(&opened.sender, opened.counter).unwrap();
    }

    #[test]
    fn an_unaccepted_message_does_not_move_the_counter() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let t0 = epoch();
        let mut a = Channel::new(StaticSecret::from_bytes([1; 32]));
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let b_key = *b.public_key();
        let datagram = a.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        let _ignored = b.open(t0, WALL, src(1), &datagram, anyone).unwrap();
        assert!(b.open(t0, WALL, src(1), &datagram, anyone).is_ok());
    }

    #[test]
    fn a_refused_message_is_not_opened_again() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let t0 = epoch();
        let mut a = Channel::new(StaticSecret::from_bytes([1; 32]));
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let b_key = *b.public_key();
        let datagram = a.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        let opened = b.open(t0, WALL, src(1), &datagram, anyone).unwrap();
        b.refuse(t0, &opened.sender, opened.counter);
        // The same datagram replayed from anywhere, up to the end of its freshness: refused.
        for (i, later) in [0u64, 60, 599, 1199].into_iter().enumerate() {
            let t = t0 + Duration::from_secs(later);
            assert_eq!(
                b.open(t, WALL, src(10 + i as u32), &datagram, anyone)
                    .unwrap_err(),
                OpenError::Sealed(SealedError::Replayed),
                "{later} s later"
            );
        }
        // The sender's next message is another message.
        let next = a.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        assert!(b.open(t0, WALL, src(1), &next, anyone).is_ok());
    }

    #[test]
    fn stale_and_foreign_messages_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let t0 = epoch();
        let mut a = Channel::new(StaticSecret::from_bytes([1; 32]));
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let mut c = Channel::new(StaticSecret::from_bytes([3; 32]));
        let b_key = *b.public_key();
        let datagram = a.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        let later = WALL + FRESHNESS + Duration::from_secs(1);
        assert_eq!(
            b.open(t0, later, src(1), &datagram, anyone).unwrap_err(),
            OpenError::Sealed(SealedError::Stale)
        );
        assert_eq!(
            c.open(t0, WALL, src(1), &datagram, anyone).unwrap_err(),
            OpenError::Sealed(SealedError::Decrypt)
        );
    }

    /// Envelopes from `n` fresh random keys to `to`, each with a valid seal.
    fn strangers(n: usize, to: &PublicKey, rng: &mut ChaCha20Rng) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let mut bytes = [0u8; 32];
                rng.fill_bytes(&mut bytes);
                let mut c = Channel::new(StaticSecret::from_bytes(bytes));
                c.seal(WALL, to, poll(), rng).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_rate_limited_source_costs_no_key_derivation() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let t0 = epoch();
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let b_key = *b.public_key();
        let mut limited = 0;
        for datagram in strangers(200, &b_key, &mut rng) {
            match b.open(t0, WALL, src(1), &datagram, anyone) {
                Ok(_) => {}
                Err(OpenError::RateLimited) => limited += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(limited, 195, "one source: its burst of 5 opened, the rest not");
        assert_eq!(b.derivations(), 5, "no derivation for a rate-limited envelope");
        // A stranger whose key is cached is limited too: its messages still cost work.
        let mut c = Channel::new(StaticSecret::from_bytes([3; 32]));
        let d = c.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.open(t1, WALL, src(2), &d, anyone).is_ok());
        let opened = (0..50)
            .filter(|_| b.open(t1, WALL, src(2), &d, anyone).is_ok())
            .count();
        assert_eq!(opened, 4, "the rest of the burst of 5, then nothing");
        assert_eq!(b.derivations(), 6);
    }

    #[test]
    fn forged_sources_share_the_global_limit() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let t0 = epoch();
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let b_key = *b.public_key();
        for (i, datagram) in strangers(1000, &b_key, &mut rng).iter().enumerate() {
            let _ = b.open(t0, WALL, src(i as u32), datagram, anyone);
        }
        assert_eq!(b.derivations(), crate::admission::GLOBAL_BURST);
    }

    #[test]
    fn unwanted_senders_and_our_own_key_cost_nothing() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let t0 = epoch();
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let b_key = *b.public_key();
        for datagram in strangers(20, &b_key, &mut rng) {
            assert_eq!(
                b.open(t0, WALL, src(1), &datagram, |_| Admit::Unwanted)
                    .unwrap_err(),
                OpenError::Unwanted
            );
        }
        // An envelope naming the receiver's own key as sender (a reflection, or a forgery).
        let mut own = Channel::new(StaticSecret::from_bytes([2; 32]));
        let reflected = own.seal(WALL, &b_key, poll(), &mut rng).unwrap();
        own.derivations = 0;
        assert_eq!(
            b.open(t0, WALL, src(1), &reflected, anyone).unwrap_err(),
            OpenError::Unwanted
        );
        assert_eq!(b.derivations(), 0);
    }

    #[test]
    fn strangers_cannot_push_out_the_keys_of_members() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let t0 = epoch();
        // Limits loose enough that every stranger's key is derived and cached.
        let loose = Admission::new(1_000_000_000, 1_000_000);
        let mut ctl = Channel::with_admission(StaticSecret::from_bytes([2; 32]), loose);
        let ctl_key = *ctl.public_key();
        let mut member = Channel::new(StaticSecret::from_bytes([1; 32]));
        let member_key = *member.public_key();
        let first = member.seal(WALL, &ctl_key, poll(), &mut rng).unwrap();
        let opened = ctl.open(t0, WALL, src(0), &first, anyone).unwrap();
        ctl.accept(&opened.sender, opened.counter).unwrap();
        ctl.seal(WALL, &member_key, poll(), &mut rng).unwrap();
        let before = ctl.derivations();
        assert_eq!(before, 2, "one key each way");

        let n = 3 * MAX_STRANGER_KEYS;
        for (i, datagram) in strangers(n, &ctl_key, &mut rng).iter().enumerate() {
            let t = t0 + Duration::from_secs(i as u64);
            ctl.open(t, WALL, src(1 + i as u32), datagram, anyone).unwrap();
        }
        assert_eq!(ctl.derivations(), before + n as u64);
        assert!(ctl.incoming.strangers.len() <= MAX_STRANGER_KEYS);

        // The member's keys are still there: its next message and our answer derive nothing.
        let t = t0 + Duration::from_secs(n as u64);
        let next = member.seal(WALL, &ctl_key, poll(), &mut rng).unwrap();
        ctl.open(t, WALL, src(0), &next, anyone).unwrap();
        ctl.seal(WALL, &member_key, poll(), &mut rng).unwrap();
        assert_eq!(ctl.derivations(), before + n as u64);
    }

    #[test]
    fn a_known_sender_is_not_rate_limited_and_derives_once() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let t0 = epoch();
        let mut ctl = Channel::new(StaticSecret::from_bytes([2; 32]));
        let ctl_key = *ctl.public_key();
        let mut member = Channel::new(StaticSecret::from_bytes([1; 32]));
        for _ in 0..50 {
            let d = member.seal(WALL, &ctl_key, poll(), &mut rng).unwrap();
            let opened = ctl.open(t0, WALL, src(1), &d, |_| Admit::Known).unwrap();
            ctl.accept(&opened.sender, opened.counter).unwrap();
        }
        assert_eq!(ctl.derivations(), 1);
    }
}

//! Seals and opens control messages: a sealed envelope (`meshd_crypto::sealed`) around an encoded
//! [`Envelope`], with the counter checks the envelope itself leaves to its caller.
//!
//! Pure: the wall-clock time and the RNG are parameters.

use std::time::Duration;

use std::collections::HashMap;

use meshd_crypto::sealed::{self, PairKey, ReplayGuard, SealedError};
use meshd_crypto::{PublicKey, StaticSecret};
use meshd_packet::wire::meshd::{MeshdMessage, parse_meshd};
use rand_core::{CryptoRng, RngCore};

use super::message::{Body, DecodeError, Envelope};

/// How far a message's time may be from ours. Wide, because clocks of machines that do not run NTP
/// drift; its only job is to stop a message recorded long ago from being replayed after the
/// receiver restarted and forgot its counters.
pub const FRESHNESS: Duration = Duration::from_secs(600);

/// Senders whose counters one channel remembers. A controller checks that the sender is a member
/// before the counter is recorded, so this bounds only what members can make it hold.
pub const MAX_SENDERS: usize = 1 << 16;

/// Pair keys one channel keeps (one X25519 multiplication saved per envelope). When full the cache
/// is cleared and refills with the keys in use.
const MAX_CACHED_KEYS: usize = 1 << 16;

/// Why a datagram was not accepted as a control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Sealed(SealedError),
    Decode(DecodeError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Sealed(e) => e.fmt(f),
            OpenError::Decode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {}

/// A message that opened and passed the freshness check, waiting for the caller to decide whether
/// the sender is welcome before its counter is recorded ([`Channel::accept`]).
#[derive(Debug)]
pub struct Opened {
    pub sender: PublicKey,
    pub counter: u64,
    pub body: Body,
}

pub struct Channel {
    secret: StaticSecret,
    guard: ReplayGuard,
    last_sent: u64,
    scratch: Vec<u8>,
    outgoing: HashMap<PublicKey, PairKey>,
    incoming: HashMap<PublicKey, PairKey>,
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
        Channel {
            secret,
            guard: ReplayGuard::new(MAX_SENDERS),
            last_sent: 0,
            scratch: Vec::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        self.secret.public_key()
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
        let key = cached(&mut self.outgoing, to, || PairKey::outgoing(&self.secret, to))?;
        let mut out = Vec::with_capacity(plaintext.len() + 80);
        key.seal(&plaintext, &mut out, rng)?;
        Ok(out)
    }

    /// Opens a datagram and checks that its time is within [`FRESHNESS`] of `wall` and its counter is
    /// above the last accepted from the sender. The counter is not recorded until [`Channel::accept`].
    pub fn open(&mut self, wall: Duration, datagram: &[u8]) -> Result<Opened, OpenError> {
        let envelope = match parse_meshd(datagram) {
            Ok(MeshdMessage::Sealed(envelope)) => envelope,
            Ok(_) => return Err(OpenError::Sealed(SealedError::Decrypt)),
            Err(e) => return Err(OpenError::Sealed(SealedError::Malformed(e))),
        };
        let sender = PublicKey::from_bytes(envelope.header.sender);
        let secret = &self.secret;
        let key = cached(&mut self.incoming, &sender, || PairKey::incoming(secret, &sender))
            .map_err(OpenError::Sealed)?;
        key.open(&envelope, &mut self.scratch)
            .map_err(OpenError::Sealed)?;
        let envelope = Envelope::decode(&self.scratch).map_err(OpenError::Decode)?;
        sealed::check_fresh(Duration::from_nanos(envelope.counter), wall, FRESHNESS)
            .map_err(OpenError::Sealed)?;
        if self
            .guard
            .last(&sender)
            .is_some_and(|last| envelope.counter <= last)
        {
            return Err(OpenError::Sealed(SealedError::Replayed));
        }
        Ok(Opened {
            sender,
            counter: envelope.counter,
            body: envelope.body,
        })
    }

    /// Records the counter of a message the caller decided to act on (its [`Opened`] `sender` and
    /// `counter`; the body has gone to whoever acted on it).
    pub fn accept(&mut self, sender: &PublicKey, counter: u64) -> Result<(), SealedError> {
        self.guard.accept(sender, counter)
    }

    /// Forgets a sender's counter and keys (a member removed), freeing their slots.
    pub fn forget(&mut self, sender: &PublicKey) {
        self.guard.forget(sender);
        self.outgoing.remove(sender);
        self.incoming.remove(sender);
    }
}

fn cached<'a>(
    cache: &'a mut HashMap<PublicKey, PairKey>,
    peer: &PublicKey,
    make: impl FnOnce() -> Result<PairKey, SealedError>,
) -> Result<&'a PairKey, SealedError> {
    if !cache.contains_key(peer) {
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(*peer, make()?);
    }
    Ok(&cache[peer])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn poll() -> Body {
        Body::MapCurrent {
            network: "lab".into(),
            version: 3,
        }
    }

    #[test]
    fn round_trip_then_replay_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut a = Channel::new(StaticSecret::from_bytes([1; 32]));
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let wall = Duration::from_secs(1_800_000_000);
        let b_key = *b.public_key();
        let datagram = a.seal(wall, &b_key, poll(), &mut rng).unwrap();
        let opened = b.open(wall, &datagram).unwrap();
        assert_eq!(opened.sender, *a.public_key());
        assert_eq!(opened.body, poll());
        b.accept(&opened.sender, opened.counter).unwrap();
        assert_eq!(
            b.open(wall, &datagram).unwrap_err(),
            OpenError::Sealed(SealedError::Replayed)
        );
        // The next message from a goes through even if the clock did not move.
        let next = a.seal(wall, &b_key, poll(), &mut rng).unwrap();
        let opened = b.open(wall, &next).unwrap();
        b.accept(&opened.sender, opened.counter).unwrap();
    }

    #[test]
    fn an_unaccepted_message_does_not_move_the_counter() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut a = Channel::new(StaticSecret::from_bytes([1; 32]));
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let wall = Duration::from_secs(1_800_000_000);
        let b_key = *b.public_key();
        let datagram = a.seal(wall, &b_key, poll(), &mut rng).unwrap();
        let _ignored = b.open(wall, &datagram).unwrap();
        assert!(b.open(wall, &datagram).is_ok());
    }

    #[test]
    fn stale_and_foreign_messages_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut a = Channel::new(StaticSecret::from_bytes([1; 32]));
        let mut b = Channel::new(StaticSecret::from_bytes([2; 32]));
        let mut c = Channel::new(StaticSecret::from_bytes([3; 32]));
        let wall = Duration::from_secs(1_800_000_000);
        let b_key = *b.public_key();
        let datagram = a.seal(wall, &b_key, poll(), &mut rng).unwrap();
        let later = wall + FRESHNESS + Duration::from_secs(1);
        assert_eq!(
            b.open(later, &datagram).unwrap_err(),
            OpenError::Sealed(SealedError::Stale)
        );
        assert_eq!(
            c.open(wall, &datagram).unwrap_err(),
            OpenError::Sealed(SealedError::Decrypt)
        );
    }
}

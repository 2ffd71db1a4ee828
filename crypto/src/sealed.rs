//! Sealed envelopes: meshd's own messages, encrypted and authenticated between two nodes' static
//! keys (the NaCl-box idea), so they work before a WireGuard session exists and across a relay that
//! learns nothing but the two public keys.
//!
//! ```text
//! salt   = HASH("meshd sealed v1" || Spub_sender || Spub_recipient)
//! key    = KDF1(salt, DH(Spriv_sender, Spub_recipient))
//! header = 0x80 || 00 00 00 || Spub_sender || nonce        (nonce: 24 random bytes)
//! body   = XAEAD(key, nonce, plaintext, header)
//! ```
//!
//! The label keeps these keys apart from every key WireGuard derives from the same static pair.
//! Hashing both public keys in sender-then-recipient order makes the key directional: an envelope
//! from A to B reflected back at A (or relabelled as from B) derives another key and fails. The
//! header is the associated data, so the sender key in clear is authenticated twice over (it is in
//! the derivation too).
//!
//! What this does not give, and what callers must supply:
//!
//! - **No replay protection.** The same envelope opens every time it is delivered. Every message
//!   carried must hold a counter the receiver checks, after [`open`] succeeded, with a
//!   [`ReplayGuard`] (strictly increasing per sender); messages that may arrive after the receiver
//!   restarted (and forgot its guard) must also carry a wall-clock time checked with
//!   [`check_fresh`]. A counter taken from the wall clock (nanoseconds since 1970, bumped to stay
//!   above the last one sent) serves both and survives the sender's restarts.
//! - **No forward secrecy.** Whoever later learns either static secret can open every envelope
//!   recorded between the two nodes. Carry nothing here that must stay secret beyond the life of the
//!   keys: probes, endpoints, join requests; bulk traffic goes through WireGuard sessions.
//! - **Anyone can seal to a node.** [`open`] proves who sent an envelope, not that the sender is
//!   welcome: check the sender against the members before acting or spending memory on it.
//!
//! Neither function reads a clock or a global RNG; [`seal`] takes the RNG that draws the nonce.

use crate::keys::{PublicKey, StaticSecret};
use crate::primitives::{aead, dh, hash, kdf};
use core::fmt;
use meshd_packet::ParseError;
use meshd_packet::wire::IntoBytes;
use meshd_packet::wire::meshd::{MeshdMessage, SEALED_HEADER_LEN, SealedEnvelope, SealedHeader};
use meshd_packet::wire::{AEAD_TAG_LEN, meshd};
use rand_core::{CryptoRng, RngCore};
use std::collections::HashMap;
use std::time::Duration;
use zeroize::Zeroizing;

/// Domain separation of the key derivation.
pub const LABEL: &[u8] = b"meshd sealed v1";

/// Why an envelope was not sealed, opened or accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SealedError {
    /// Not a well-formed sealed envelope.
    Malformed(ParseError),
    /// The other side's public key is a low-order point: the shared secret would be all zero.
    LowOrderPoint,
    /// Authentication failed: forged, corrupted, or for another recipient.
    Decrypt,
    /// The counter is not greater than the last one accepted from this sender.
    Replayed,
    /// The replay guard already tracks as many senders as it was allowed.
    TooManySenders,
    /// The message's wall-clock time is outside the accepted window around ours.
    Stale,
}

impl fmt::Display for SealedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealedError::Malformed(e) => write!(f, "malformed sealed envelope: {e}"),
            SealedError::LowOrderPoint => f.write_str("low-order public key"),
            SealedError::Decrypt => f.write_str("sealed envelope did not authenticate"),
            SealedError::Replayed => f.write_str("counter not newer than the last one accepted"),
            SealedError::TooManySenders => f.write_str("replay guard is full"),
            SealedError::Stale => f.write_str("timestamp outside the accepted window"),
        }
    }
}

impl std::error::Error for SealedError {}

impl From<ParseError> for SealedError {
    fn from(e: ParseError) -> Self {
        SealedError::Malformed(e)
    }
}

/// The XChaCha20-Poly1305 key for envelopes from `sender` to `recipient`, given their shared secret.
fn derive_key(
    shared: &[u8; 32],
    sender: &PublicKey,
    recipient: &PublicKey,
) -> Zeroizing<[u8; aead::KEY_LEN]> {
    let salt = hash::hash(&[LABEL, sender.as_bytes(), recipient.as_bytes()]);
    Zeroizing::new(kdf::kdf1(&salt, shared))
}

/// The key of envelopes one way between two static keys: what [`seal`] and [`open`] derive each time,
/// computed once. A controller that seals a map page to a thousand nodes per change, or opens their
/// polls every few seconds, keeps one per member and saves an X25519 multiplication per envelope (the
/// NaCl `box_beforenm` idea).
pub struct PairKey {
    key: Zeroizing<[u8; aead::KEY_LEN]>,
    sender: PublicKey,
}

impl PairKey {
    /// For envelopes `sender` seals to `recipient`.
    pub fn outgoing(sender: &StaticSecret, recipient: &PublicKey) -> Result<Self, SealedError> {
        let shared = dh::dh(sender.dalek(), recipient.as_bytes()).map_err(|_| SealedError::LowOrderPoint)?;
        Ok(PairKey {
            key: derive_key(&shared, sender.public_key(), recipient),
            sender: *sender.public_key(),
        })
    }

    /// For envelopes `sender` sealed to `recipient` (the caller).
    pub fn incoming(recipient: &StaticSecret, sender: &PublicKey) -> Result<Self, SealedError> {
        let shared = dh::dh(recipient.dalek(), sender.as_bytes()).map_err(|_| SealedError::LowOrderPoint)?;
        Ok(PairKey {
            key: derive_key(&shared, sender, recipient.public_key()),
            sender: *sender,
        })
    }

    /// The sender these envelopes come from.
    pub fn sender(&self) -> &PublicKey {
        &self.sender
    }

    /// Appends a sealed envelope holding `plaintext` to `out` (`plaintext.len() + 76` bytes). Only for
    /// a key made with [`PairKey::outgoing`]. On error `out` is left as it was.
    pub fn seal(
        &self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(), SealedError> {
        let mut nonce = [0u8; meshd::SEALED_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let header = SealedHeader::new(*self.sender.as_bytes(), nonce);
        let start = out.len();
        out.extend_from_slice(header.as_bytes());
        out.resize(start + SEALED_HEADER_LEN + plaintext.len() + AEAD_TAG_LEN, 0);
        let body = &mut out[start + SEALED_HEADER_LEN..];
        if aead::xseal(&self.key, &nonce, header.as_bytes(), plaintext, body).is_err() {
            out.truncate(start);
            return Err(SealedError::Decrypt);
        }
        Ok(())
    }

    /// Opens an envelope with this key (made with [`PairKey::incoming`] for the sender the header
    /// names): the plaintext replaces `out`'s contents. On error `out` is empty.
    pub fn open(&self, envelope: &SealedEnvelope<'_>, out: &mut Vec<u8>) -> Result<(), SealedError> {
        out.clear();
        if envelope.header.sender != *self.sender.as_bytes() {
            return Err(SealedError::Decrypt);
        }
        out.resize(envelope.plaintext_len(), 0);
        let opened = aead::xopen(
            &self.key,
            &envelope.header.nonce,
            envelope.aad(),
            envelope.ciphertext,
            out,
        );
        if opened.is_err() {
            out.clear();
            return Err(SealedError::Decrypt);
        }
        Ok(())
    }
}

impl fmt::Debug for PairKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairKey")
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// Appends a sealed envelope holding `plaintext`, from `sender` to `recipient`, to `out`
/// (`plaintext.len() + 76` bytes). On error `out` is left as it was.
pub fn seal(
    sender: &StaticSecret,
    recipient: &PublicKey,
    plaintext: &[u8],
    out: &mut Vec<u8>,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(), SealedError> {
    PairKey::outgoing(sender, recipient)?.seal(plaintext, out, rng)
}

/// Opens a sealed envelope addressed to `recipient`: writes the plaintext to `out` (replacing its
/// contents; the caller keeps the allocation across calls) and returns the authenticated sender.
///
/// On error `out` is empty. Success says who sealed it, not that it is fresh: see the module docs.
pub fn open(recipient: &StaticSecret, envelope: &[u8], out: &mut Vec<u8>) -> Result<PublicKey, SealedError> {
    out.clear();
    match meshd::parse_meshd(envelope)? {
        MeshdMessage::Sealed(env) => open_envelope(recipient, &env, out),
        _ => Err(SealedError::Malformed(ParseError::UnknownType)),
    }
}

/// [`open`] for an envelope the receive path has already parsed.
pub fn open_envelope(
    recipient: &StaticSecret,
    envelope: &SealedEnvelope<'_>,
    out: &mut Vec<u8>,
) -> Result<PublicKey, SealedError> {
    out.clear();
    let sender = PublicKey::from_bytes(envelope.header.sender);
    PairKey::incoming(recipient, &sender)?.open(envelope, out)?;
    Ok(sender)
}

/// Refuses replayed messages: accepts from each sender only counters strictly greater than the
/// last one accepted from it.
///
/// Feed it only after [`open`] succeeded (so the sender is authenticated) and, preferably, only for
/// known members: anyone can make keys, so the number of senders tracked is capped.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    last: HashMap<PublicKey, u64>,
    max_senders: usize,
}

impl ReplayGuard {
    /// A guard that tracks at most `max_senders` senders.
    pub fn new(max_senders: usize) -> Self {
        ReplayGuard {
            last: HashMap::new(),
            max_senders,
        }
    }

    /// Accepts `counter` from `sender` if it is greater than every counter accepted from `sender`
    /// before, and remembers it. A refused counter changes nothing.
    pub fn accept(&mut self, sender: &PublicKey, counter: u64) -> Result<(), SealedError> {
        let full = self.last.len() >= self.max_senders;
        match self.last.get_mut(sender) {
            Some(last) if counter <= *last => Err(SealedError::Replayed),
            Some(last) => {
                *last = counter;
                Ok(())
            }
            None if full => Err(SealedError::TooManySenders),
            None => {
                self.last.insert(*sender, counter);
                Ok(())
            }
        }
    }

    /// The last counter accepted from `sender`.
    pub fn last(&self, sender: &PublicKey) -> Option<u64> {
        self.last.get(sender).copied()
    }

    /// Forgets `sender` (a member removed), freeing its slot.
    pub fn forget(&mut self, sender: &PublicKey) {
        self.last.remove(sender);
    }

    /// How many senders are tracked.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Accepts a message stamped `sent` (wall-clock time since 1970, from inside the envelope) if it is
/// within `window` of `now` either way. Both times are parameters: this reads no clock.
pub fn check_fresh(sent: Duration, now: Duration, window: Duration) -> Result<(), SealedError> {
    let skew = sent.abs_diff(now);
    if skew <= window {
        Ok(())
    } else {
        Err(SealedError::Stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_directional_and_labelled() {
        let a = StaticSecret::from_bytes([1; 32]);
        let b = StaticSecret::from_bytes([2; 32]);
        let shared = dh::dh(a.dalek(), b.public_key().as_bytes()).unwrap();
        let ab = derive_key(&shared, a.public_key(), b.public_key());
        let ba = derive_key(&shared, b.public_key(), a.public_key());
        assert_ne!(*ab, *ba, "the same shared secret gives a key per direction");
        assert_ne!(*ab, *shared);
    }

    #[test]
    fn pair_keys_interoperate_with_the_one_shot_functions() {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let a = StaticSecret::from_bytes([1; 32]);
        let b = StaticSecret::from_bytes([2; 32]);
        let out_key = PairKey::outgoing(&a, b.public_key()).unwrap();
        let mut env = Vec::new();
        out_key.seal(b"page", &mut env, &mut rng).unwrap();
        let mut plain = Vec::new();
        assert_eq!(open(&b, &env, &mut plain).unwrap(), *a.public_key());
        assert_eq!(plain, b"page");

        let mut env2 = Vec::new();
        seal(&a, b.public_key(), b"poll", &mut env2, &mut rng).unwrap();
        let in_key = PairKey::incoming(&b, a.public_key()).unwrap();
        let MeshdMessage::Sealed(parsed) = meshd::parse_meshd(&env2).unwrap() else {
            panic!()
        };
        in_key.open(&parsed, &mut plain).unwrap();
        assert_eq!(plain, b"poll");
        // A key for another sender refuses the envelope instead of misreading it.
        let other = PairKey::incoming(&b, &PublicKey::from_bytes([9; 32])).unwrap();
        assert_eq!(other.open(&parsed, &mut plain), Err(SealedError::Decrypt));
        assert!(plain.is_empty());
    }

    #[test]
    fn replay_guard_accepts_strictly_increasing_per_sender() {
        let (a, b) = (PublicKey::from_bytes([1; 32]), PublicKey::from_bytes([2; 32]));
        let mut g = ReplayGuard::new(2);
        assert_eq!(g.accept(&a, 5), Ok(()));
        assert_eq!(g.accept(&a, 5), Err(SealedError::Replayed));
        assert_eq!(g.accept(&a, 4), Err(SealedError::Replayed));
        assert_eq!(g.last(&a), Some(5), "a refused counter changes nothing");
        assert_eq!(g.accept(&b, 0), Ok(()), "senders are independent");
        assert_eq!(g.accept(&a, 6), Ok(()));
        assert_eq!(
            g.accept(&PublicKey::from_bytes([3; 32]), 1),
            Err(SealedError::TooManySenders)
        );
        g.forget(&b);
        assert_eq!(g.accept(&PublicKey::from_bytes([3; 32]), 1), Ok(()));
        assert_eq!(g.accept(&a, u64::MAX), Ok(()));
        assert_eq!(g.accept(&a, u64::MAX), Err(SealedError::Replayed));
    }

    #[test]
    fn freshness_window_is_symmetric_and_inclusive() {
        let s = Duration::from_secs;
        assert_eq!(check_fresh(s(100), s(130), s(30)), Ok(()));
        assert_eq!(check_fresh(s(130), s(100), s(30)), Ok(()));
        assert_eq!(check_fresh(s(99), s(130), s(30)), Err(SealedError::Stale));
        assert_eq!(check_fresh(s(131), s(100), s(30)), Err(SealedError::Stale));
    }
}

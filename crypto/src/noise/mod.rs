//! Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s exactly as the WireGuard paper (section 5.4) specifies it.
//!
//! The state split follows who owns what in the daemon:
//!
//! * [`Identity`]: the local static key and what can be precomputed from it. One per node.
//! * [`PeerHandshake`]: everything about one remote peer the handshake needs: its public key, the
//!   pre-shared key, the precomputed static-static DH, the last TAI64N timestamp accepted from it, and
//!   the [`CookieState`] that stamps `mac1`/`mac2` on messages to it.
//! * Initiator: [`create_initiation`] returns an [`InitiationState`] to keep until the response
//!   arrives; [`InitiationState::consume_response`] yields [`SessionKeys`].
//! * Responder, in two phases because the peer is unknown until its static key is decrypted:
//!   [`begin_response`] needs only the [`Identity`] and returns an [`IncomingInitiation`] exposing
//!   [`IncomingInitiation::initiator_static`]; the caller looks the peer up and passes its
//!   [`PeerHandshake`] to [`IncomingInitiation::finish`], which checks the timestamp and returns the
//!   response and the [`SessionKeys`].
//!
//! `mac1`/`mac2` on incoming messages are checked before any of this, by
//! [`CookieChecker`](crate::cookie::CookieChecker); outgoing messages leave here already stamped.

mod initiator;
mod responder;
mod symmetric;
mod timestamp;

pub use initiator::{InitiationState, create_initiation};
pub use responder::{IncomingInitiation, begin_response};
pub use symmetric::{CONSTRUCTION, IDENTIFIER, initial_chaining_key, initial_hash};
pub use timestamp::Tai64N;

use crate::cookie::CookieState;
use crate::error::HandshakeError;
use crate::keys::{PresharedKey, PublicKey, StaticSecret};
use crate::primitives::dh;
use std::time::Instant;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The local side of every handshake.
pub struct Identity {
    secret: StaticSecret,
    /// `HASH(Hi || Spub_self)`, where responder transcripts start.
    h0: [u8; 32],
}

impl Identity {
    pub fn new(secret: StaticSecret) -> Self {
        let h0 = symmetric::hash_with_responder(secret.public_key().as_bytes());
        Identity { secret, h0 }
    }

    pub fn public_key(&self) -> &PublicKey {
        self.secret.public_key()
    }

    pub fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Identity").field(&self.secret).finish()
    }
}

/// Per-peer handshake state, shared by both roles.
pub struct PeerHandshake {
    remote: PublicKey,
    psk: PresharedKey,
    /// `DH(Spriv_self, Spub_peer)`: the same in every handshake with this peer.
    static_static: Zeroizing<[u8; 32]>,
    /// `HASH(Hi || Spub_peer)`, where initiator transcripts towards this peer start.
    h0: [u8; 32],
    latest_timestamp: Tai64N,
    last_initiation_consumed: Option<Instant>,
    /// Stamps `mac1`/`mac2` on every handshake message to this peer and holds its cookie.
    pub cookies: CookieState,
}

impl PeerHandshake {
    /// Fails if `remote` is a low-order point (no handshake with it could be secret).
    ///
    /// Bound to `identity`: if the local key changes, create the peer state anew.
    pub fn new(
        identity: &Identity,
        remote: PublicKey,
        psk: Option<PresharedKey>,
    ) -> Result<Self, HandshakeError> {
        let static_static = dh::dh(identity.secret.dalek(), remote.as_bytes())?;
        Ok(PeerHandshake {
            remote,
            psk: psk.unwrap_or_default(),
            static_static,
            h0: symmetric::hash_with_responder(remote.as_bytes()),
            latest_timestamp: Tai64N::ZERO,
            last_initiation_consumed: None,
            cookies: CookieState::new(&remote),
        })
    }

    pub fn remote(&self) -> &PublicKey {
        &self.remote
    }

    pub fn set_preshared_key(&mut self, psk: Option<PresharedKey>) {
        self.psk = psk.unwrap_or_default();
    }

    /// The newest initiation timestamp accepted from this peer; a new initiation must be later.
    pub fn latest_timestamp(&self) -> Tai64N {
        self.latest_timestamp
    }
}

impl core::fmt::Debug for PeerHandshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerHandshake")
            .field("remote", &self.remote)
            .field("psk", &self.psk)
            .field("latest_timestamp", &self.latest_timestamp)
            .finish_non_exhaustive()
    }
}

/// The outcome of a handshake: the two transport keys and the indices that name the session.
///
/// Turn it into the sending and receiving halves with
/// [`session::new_session`](crate::session::new_session). A responder must not send with the new
/// keys until the initiator has used them (the first data message it decrypts with them), because
/// until then it cannot know the initiator got the response (paper 5.4.5, "key confirmation").
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    pub(crate) sending: [u8; 32],
    pub(crate) receiving: [u8; 32],
    #[zeroize(skip)]
    pub(crate) local_index: u32,
    #[zeroize(skip)]
    pub(crate) remote_index: u32,
    #[zeroize(skip)]
    pub(crate) initiator: bool,
}

impl SessionKeys {
    /// Our index: what the peer puts in the receiver field of data messages to us.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The peer's index: what we put in the receiver field of data messages to it.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// Whether we initiated this handshake (only the initiator rekeys on REKEY_AFTER_TIME).
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }
}

impl core::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

//! The initiator's half: build the initiation (paper 5.4.2), consume the response (5.4.3), derive the
//! transport keys (5.4.5).

use super::symmetric::SymmetricState;
use super::{Identity, PeerHandshake, SessionKeys, Tai64N};
use crate::error::HandshakeError;
use crate::primitives::dh;
use meshd_packet::wire::{HandshakeInitiation, HandshakeResponse};
use rand_core::{CryptoRng, RngCore};
use std::time::Instant;
use zeroize::Zeroize;

/// A sent initiation waiting for its response. Keep it until the response arrives or the handshake
/// is retried; it is consumed by reference so a forged response cannot destroy it.
pub struct InitiationState {
    local_index: u32,
    state: SymmetricState,
    ephemeral: x25519_dalek::StaticSecret,
    sent_at: Instant,
}

impl InitiationState {
    /// The sender index of the initiation; a response names it as its receiver index.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// When the initiation was created.
    pub fn sent_at(&self) -> Instant {
        self.sent_at
    }

    /// Processes the response. `mac1`/`mac2` must already have been checked by the caller's
    /// [`CookieChecker`](crate::cookie::CookieChecker); `peer` must be the peer the initiation went to.
    pub fn consume_response(
        &self,
        identity: &Identity,
        peer: &PeerHandshake,
        msg: &HandshakeResponse,
    ) -> Result<SessionKeys, HandshakeError> {
        if msg.receiver_index.get() != self.local_index {
            return Err(HandshakeError::WrongIndex);
        }
        let mut s = self.state.clone();
        let epub_r = &msg.unencrypted_ephemeral;

        s.mix_key(epub_r);
        s.mix_hash(epub_r);
        s.mix_key(&*dh::dh(&self.ephemeral, epub_r)?);
        s.mix_key(&*dh::dh(identity.secret.dalek(), epub_r)?);
        let k = s.mix_key_and_hash(peer.psk.as_bytes());
        s.decrypt_and_hash(&k, &msg.encrypted_nothing, &mut [])?;

        let (sending, receiving) = s.split();
        Ok(SessionKeys {
            sending,
            receiving,
            local_index: self.local_index,
            remote_index: msg.sender_index.get(),
            initiator: true,
        })
    }
}

impl core::fmt::Debug for InitiationState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InitiationState")
            .field("local_index", &self.local_index)
            .finish_non_exhaustive()
    }
}

/// Builds a handshake initiation to `peer`, stamped with `mac1` (and `mac2` if `peer` holds a fresh
/// cookie).
///
/// `local_index` should come from [`IndexTable`](crate::index::IndexTable); `timestamp` from the wall
/// clock, and it must grow between initiations to the same peer or the peer drops them.
pub fn create_initiation(
    identity: &Identity,
    peer: &mut PeerHandshake,
    local_index: u32,
    timestamp: Tai64N,
    now: Instant,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(InitiationState, HandshakeInitiation), HandshakeError> {
    let mut msg = HandshakeInitiation::new();
    msg.sender_index.set(local_index);

    let mut s = SymmetricState::new(&peer.h0);
    let ephemeral = x25519_dalek::StaticSecret::random_from_rng(rng);
    let epub = dh::public_key(&ephemeral);
    msg.unencrypted_ephemeral = epub;
    s.mix_key(&epub);
    s.mix_hash(&epub);

    let k = s.mix_key2(&*dh::dh(&ephemeral, peer.remote.as_bytes())?);
    s.encrypt_and_hash(&k, identity.public_key().as_bytes(), &mut msg.encrypted_static);

    let k = s.mix_key2(&*peer.static_static);
    let mut ts = *timestamp.as_bytes();
    s.encrypt_and_hash(&k, &ts, &mut msg.encrypted_timestamp);
    ts.zeroize();

    peer.cookies.stamp(&mut msg, now);
    Ok((
        InitiationState {
            local_index,
            state: s,
            ephemeral,
            sent_at: now,
        },
        msg,
    ))
}

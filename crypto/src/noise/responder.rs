//! The responder's half, in two phases: decrypt the initiator's static key with only the local
//! identity ([`begin_response`]), then, given that peer's state, check the timestamp and answer
//! ([`IncomingInitiation::finish`]).

use super::symmetric::SymmetricState;
use super::{Identity, PeerHandshake, SessionKeys, Tai64N};
use crate::constants::INITIATIONS_PER_SECOND;
use crate::error::HandshakeError;
use crate::keys::PublicKey;
use crate::primitives::dh;
use meshd_packet::wire::{HandshakeInitiation, HandshakeResponse, TIMESTAMP_LEN};
use rand_core::{CryptoRng, RngCore};
use std::time::{Duration, Instant};

/// An initiation whose sender is now known but not yet authenticated: the static key decrypted, so it
/// was sealed to us, but only [`finish`](Self::finish) proves the sender holds that key's secret.
pub struct IncomingInitiation {
    state: SymmetricState,
    initiator_static: PublicKey,
    initiator_ephemeral: [u8; 32],
    sender_index: u32,
    encrypted_timestamp: [u8; TIMESTAMP_LEN + 16],
}

impl IncomingInitiation {
    /// The static public key the initiator claims; look the peer up by it.
    pub fn initiator_static(&self) -> &PublicKey {
        &self.initiator_static
    }

    /// The initiator's index for the session.
    pub fn sender_index(&self) -> u32 {
        self.sender_index
    }

    /// Authenticates the initiation against `peer` (whose key must be the one returned by
    /// [`initiator_static`](Self::initiator_static)), refuses a timestamp not newer than the last
    /// accepted one or an initiation within 1/50 s of the previous, then builds the response (stamped
    /// with `mac1`/`mac2`) and derives the session keys.
    ///
    /// `peer` changes only on success.
    pub fn finish(
        self,
        peer: &mut PeerHandshake,
        local_index: u32,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(HandshakeResponse, SessionKeys), HandshakeError> {
        if peer.remote != self.initiator_static {
            return Err(HandshakeError::WrongPeer);
        }
        let mut s = self.state;
        let k = s.mix_key2(&*peer.static_static);
        let mut ts = [0u8; TIMESTAMP_LEN];
        s.decrypt_and_hash(&k, &self.encrypted_timestamp, &mut ts)?;
        let ts = Tai64N::from_bytes(ts);

        if ts <= peer.latest_timestamp {
            return Err(HandshakeError::ReplayedTimestamp);
        }
        let min_gap = Duration::from_secs(1) / INITIATIONS_PER_SECOND;
        if let Some(last) = peer.last_initiation_consumed
            && now.saturating_duration_since(last) < min_gap
        {
            return Err(HandshakeError::Flood);
        }

        let mut msg = HandshakeResponse::new();
        msg.sender_index.set(local_index);
        msg.receiver_index.set(self.sender_index);

        let ephemeral = x25519_dalek::StaticSecret::random_from_rng(rng);
        let epub = dh::public_key(&ephemeral);
        msg.unencrypted_ephemeral = epub;
        s.mix_key(&epub);
        s.mix_hash(&epub);
        s.mix_key(&*dh::dh(&ephemeral, &self.initiator_ephemeral)?);
        s.mix_key(&*dh::dh(&ephemeral, self.initiator_static.as_bytes())?);
        let k = s.mix_key_and_hash(peer.psk.as_bytes());
        s.encrypt_and_hash(&k, &[], &mut msg.encrypted_nothing);

        let (receiving, sending) = s.split();
        peer.latest_timestamp = ts;
        peer.last_initiation_consumed = Some(now);
        peer.cookies.stamp(&mut msg, now);
        Ok((
            msg,
            SessionKeys {
                sending,
                receiving,
                local_index,
                remote_index: self.sender_index,
                initiator: false,
            },
        ))
    }
}

impl core::fmt::Debug for IncomingInitiation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IncomingInitiation")
            .field("initiator_static", &self.initiator_static)
            .field("sender_index", &self.sender_index)
            .finish_non_exhaustive()
    }
}

/// Phase one: decrypts the initiator's static key with the local static secret alone.
///
/// `mac1` (and under load `mac2`) must already have been checked.
pub fn begin_response(
    identity: &Identity,
    msg: &HandshakeInitiation,
) -> Result<IncomingInitiation, HandshakeError> {
    let mut s = SymmetricState::new(&identity.h0);
    let epub_i = msg.unencrypted_ephemeral;
    s.mix_key(&epub_i);
    s.mix_hash(&epub_i);
    let k = s.mix_key2(&*dh::dh(identity.secret.dalek(), &epub_i)?);
    let mut spub_i = [0u8; 32];
    s.decrypt_and_hash(&k, &msg.encrypted_static, &mut spub_i)?;
    Ok(IncomingInitiation {
        state: s,
        initiator_static: PublicKey::from_bytes(spub_i),
        initiator_ephemeral: epub_i,
        sender_index: msg.sender_index.get(),
        encrypted_timestamp: msg.encrypted_timestamp,
    })
}

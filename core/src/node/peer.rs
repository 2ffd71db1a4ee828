//! One peer as the control path sees it: its key, the paths to it, handshake state, timers, sessions by
//! local index, the packets waiting for a session, and what `wg show` reports.
//!
//! A peer has up to two paths, a direct address and a relay ([`Paths`]); the one in use is its
//! [`active`](Paths::active) path, by the rule in [`endpoint`](super::endpoint): the direct address when
//! known, unless a handshake completed over the relay (or the peer keeps initiating over it) and nothing
//! has arrived directly since. Handshake retries alternate between the two, so a stale direct address
//! costs one REKEY_TIMEOUT before the relay carries the handshake; completing over the relay keeps the
//! direct address for when the peer is heard from there again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use meshd_crypto::noise::{Identity, InitiationState, PeerHandshake};
use meshd_crypto::session::Sender;
use meshd_crypto::timers::Timers;
use meshd_crypto::{PresharedKey, PublicKey};
use zeroize::Zeroizing;

use super::endpoint::Paths;

/// A peer's handle, stable for its lifetime and never reused while the node lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// Packets a peer holds while it waits for a session (Linux `MAX_STAGED_PACKETS`).
pub const MAX_QUEUED: usize = 128;

/// A session the node can send with: its local index names the matching receiver on the RX path.
#[derive(Debug)]
pub(crate) struct SendingSession {
    pub local_index: u32,
    pub sender: Arc<Sender>,
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub key: PublicKey,
    /// Built on first use (see [`Peer::handshake`]); `None` until then, and again after the interface's
    /// private key changes (the state is bound to it).
    pub handshake: Option<PeerHandshake>,
    pub timers: Timers,
    pub paths: Paths,
    pub persistent_keepalive: u16,
    /// Kept only to report it back through `get=1`.
    pub preshared_key: Option<Zeroizing<[u8; 32]>>,
    /// The initiation in flight, if any.
    pub initiation: Option<InitiationState>,
    /// The session sent with now.
    pub current: Option<SendingSession>,
    /// The session before `current`, still accepted on receive for packets in flight.
    pub previous: Option<u32>,
    /// A responder's session, usable once the initiator's first data message confirms it.
    pub next: Option<SendingSession>,
    pub queue: VecDeque<Vec<u8>>,
    pub last_handshake: Option<SystemTime>,
}

impl Peer {
    pub fn new(key: PublicKey) -> Self {
        Peer {
            key,
            handshake: None,
            timers: Timers::new(None),
            paths: Paths::default(),
            persistent_keepalive: 0,
            preshared_key: None,
            initiation: None,
            current: None,
            previous: None,
            next: None,
            queue: VecDeque::new(),
            last_handshake: None,
        }
    }

    /// The handshake state for `identity`, built now if it was not yet: its static-static
    /// Diffie-Hellman costs more than everything else about adding a peer, and a network map may add a
    /// thousand peers of which few are ever talked to. `None` if the key is not a usable point.
    pub fn handshake(&mut self, identity: &Identity) -> Option<&mut PeerHandshake> {
        if self.handshake.is_none() {
            let psk = self
                .preshared_key
                .as_deref()
                .map(|k| PresharedKey::from_bytes(*k));
            self.handshake = PeerHandshake::new(identity, self.key, psk).ok();
        }
        self.handshake.as_mut()
    }

    /// Every local index the peer's sessions and pending handshake hold.
    pub fn local_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.initiation
            .as_ref()
            .map(InitiationState::local_index)
            .into_iter()
            .chain(self.current.as_ref().map(|s| s.local_index))
            .chain(self.previous)
            .chain(self.next.as_ref().map(|s| s.local_index))
    }
}

//! One peer as the control path sees it: handshake state, timers, sessions by local index, the packets
//! waiting for a session, and what `wg show` reports.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use meshd_crypto::noise::{InitiationState, PeerHandshake};
use meshd_crypto::session::Sender;
use meshd_crypto::timers::Timers;
use zeroize::Zeroizing;

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
    /// `None` while the interface has no private key (the state is bound to it).
    pub handshake: Option<PeerHandshake>,
    pub timers: Timers,
    pub endpoint: Option<SocketAddr>,
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
    pub fn new(handshake: Option<PeerHandshake>) -> Self {
        Peer {
            handshake,
            timers: Timers::new(None),
            endpoint: None,
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

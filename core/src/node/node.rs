//! The control path of a WireGuard interface, sans IO: configuration, handshakes in both roles, cookies
//! under load, session rotation, timers, and the packets that wait for a session.
//!
//! The data path (TUN reads, encryption, UDP, decryption, TUN writes) runs outside, on the senders and
//! receivers this node hands out through [`Event`]s; it reports back what it did with
//! [`Node::handle_activity`] and hands over what it could not send with [`Node::handle_unsent`].
//!
//! A peer is reached directly or through a relay ([`Endpoint`]); which path is in use follows the rule in
//! [`endpoint`](super::endpoint). The node frames what it sends itself (a relayed peer's datagrams go to
//! the relay in relay frames), and expects relayed datagrams unwrapped, marked [`Endpoint::Relayed`].
//! [`Node::reconcile`] makes the peer set that of a network map.
//!
//! [`Node`] is one state machine written in several files, one concept each, as Linux's WireGuard
//! splits `noise.c`, `send.c`, `timers.c` and `netlink.c`; each file adds its own `impl Node` block:
//! - this file: the state, the getters and setters, `poll_event`, and the two helpers every part uses
//!   (a drop counted, a changed path announced);
//! - `handshake.rs`: admission (`mac1`, and under load cookies and the rate limit), the responder's and
//!   the initiator's side of a handshake, cookie replies;
//! - `rotation.rs`: the sessions a handshake yields handed to the data path, a responder's session
//!   confirmed, replaced and expired sessions retired;
//! - `send.rs`: packets that wait for a session, keepalives, sending on the current session;
//! - `timers.rs`: the peer timers, fed by the data path's reports and run when due;
//! - `configure.rs`: a wg(8) `set=1` request, adding and removing peers;
//! - `reconcile.rs`: the peer set made that of a network map;
//! - `status.rs`: what `get=1` reports.

use std::collections::{BTreeMap, HashMap, VecDeque};

use meshd_crypto::PublicKey;
use meshd_crypto::cookie::{CookieChecker, LoadMonitor};
use meshd_crypto::index::IndexTable;
use meshd_crypto::noise::Identity;
use meshd_crypto::ratelimiter::RateLimiter;
use meshd_packet::wire::meshd::RELAY_TOKEN_LEN;
use meshd_routing::AllowedIps;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::peer::Peer;
use super::{DropReason, Endpoint, Event, Paths, PeerId};

/// Source addresses the handshake rate limiter remembers at once.
const RATE_LIMITER_ENTRIES: usize = 1 << 16;

/// One WireGuard interface's control path: its key, its peers, and their sessions, timers and paths.
///
/// The methods come in four groups:
/// - **Getters** (`&self`), callable at any time: [`public_key`](Self::public_key),
///   [`peer_ids`](Self::peer_ids), [`peer_id`](Self::peer_id), [`peer_key`](Self::peer_key),
///   [`endpoint`](Self::endpoint), [`path_of`](Self::path_of), [`allowed_ips`](Self::allowed_ips),
///   [`listen_port`](Self::listen_port), [`mtu`](Self::mtu), [`status`](Self::status).
/// - **Handlers** of what the network, the data path and the clock did, `handle_*`:
///   [`handle_datagram`](Self::handle_datagram) (a handshake or cookie message),
///   [`handle_unsent`](Self::handle_unsent) (a packet with no session to go on),
///   [`handle_session_confirmed`](Self::handle_session_confirmed) (the first data on a responder's
///   session), [`handle_activity`](Self::handle_activity) (what the data path did since its last
///   report), [`handle_timeout`](Self::handle_timeout) (the timers that are due).
/// - **Mutators**, the operator's and the mesh's commands: [`apply`](Self::apply) (wg(8) `set=1`),
///   [`reconcile`](Self::reconcile) (a network map's peer set), [`set_mtu`](Self::set_mtu),
///   [`set_relay_token`](Self::set_relay_token), [`set_bound_port`](Self::set_bound_port).
/// - **Polls**, what the shell is to do next: [`poll_event`](Self::poll_event) and
///   [`poll_timeout`](Self::poll_timeout).
///
/// Call order (the shell's run loop):
/// 1. feed one input: a handler, or a mutator; `handle_timeout` once `poll_timeout` has passed;
/// 2. drain `poll_event` until `None`, acting on each event in order;
/// 3. sleep until `poll_timeout` or the next input.
///
/// Time is a parameter. Every handler but `handle_activity`, and `apply` and `reconcile`, take `now`
/// (timers, session ages, cookies) and `wall` (an initiation's timestamp, the last handshake `get=1`
/// reports); `handle_activity` takes the instants the data path recorded, in its
/// [`Activity`](super::Activity). The getters and the setters take no time.
pub struct Node {
    pub(super) identity: Option<Identity>,
    pub(super) cookie_checker: Option<CookieChecker>,
    pub(super) peers: BTreeMap<PeerId, Peer>,
    pub(super) by_key: HashMap<PublicKey, PeerId>,
    pub(super) indices: IndexTable<PeerId>,
    pub(super) allowed_ips: AllowedIps<PeerId>,
    pub(super) rate_limiter: RateLimiter,
    pub(super) load: LoadMonitor,
    pub(super) rng: ChaCha20Rng,
    pub(super) next_peer: u32,
    pub(super) listen_port: u16,
    pub(super) fwmark: u32,
    pub(super) mtu: usize,
    /// This node's ticket for its relay, put in every relay frame it writes (zero: none issued yet).
    pub(super) relay_token: [u8; RELAY_TOKEN_LEN],
    pub(super) events: VecDeque<Event>,
}

impl Node {
    /// A node with no key and no peers. `seed` drives every random choice (indices, ephemeral keys,
    /// jitter, cookie secrets): the shell seeds it from the OS, tests from a constant.
    pub fn new(seed: [u8; 32], mtu: usize) -> Self {
        Node {
            identity: None,
            cookie_checker: None,
            peers: BTreeMap::new(),
            by_key: HashMap::new(),
            indices: IndexTable::new(),
            allowed_ips: AllowedIps::new(),
            rate_limiter: RateLimiter::new(RATE_LIMITER_ENTRIES),
            load: LoadMonitor::new(),
            rng: ChaCha20Rng::from_seed(seed),
            next_peer: 0,
            listen_port: 0,
            fwmark: 0,
            mtu,
            relay_token: [0; RELAY_TOKEN_LEN],
            events: VecDeque::new(),
        }
    }

    pub fn public_key(&self) -> Option<&PublicKey> {
        self.identity.as_ref().map(Identity::public_key)
    }

    pub fn allowed_ips(&self) -> &AllowedIps<PeerId> {
        &self.allowed_ips
    }

    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    pub fn peer_id(&self, key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    pub fn peer_key(&self, peer: PeerId) -> Option<PublicKey> {
        self.peers.get(&peer).map(|p| p.key)
    }

    /// The path the peer's datagrams take now.
    pub fn endpoint(&self, peer: PeerId) -> Option<Endpoint> {
        self.peers.get(&peer).and_then(|p| p.paths.active())
    }

    /// Both of the peer's paths, and which is active.
    pub fn path_of(&self, peer: PeerId) -> Option<&Paths> {
        self.peers.get(&peer).map(|p| &p.paths)
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The tunnel MTU changed (`ip link set mtu`): padding never grows a packet past it.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// The relay issued this node a new token (over the control channel); frames written from now on
    /// carry it.
    pub fn set_relay_token(&mut self, token: [u8; RELAY_TOKEN_LEN]) {
        self.relay_token = token;
    }

    /// The shell bound the UDP socket (after [`Event::Rebind`] or at start).
    pub fn set_bound_port(&mut self, port: u16) {
        self.listen_port = port;
    }

    /// The next thing for the shell to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Tells the shell the peer's active path if it is no longer `before`.
    pub(super) fn announce_path(&mut self, id: PeerId, before: Option<Endpoint>) {
        let Some(peer) = self.peers.get(&id) else { return };
        let endpoint = peer.paths.active();
        if endpoint != before {
            self.events.push_back(Event::Endpoint { peer: id, endpoint });
        }
    }

    pub(super) fn dropped(&mut self, reason: DropReason) {
        self.events.push_back(Event::Dropped { reason, n: 1 });
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("public_key", &self.public_key())
            .field("peers", &self.peers.len())
            .field("listen_port", &self.listen_port)
            .finish_non_exhaustive()
    }
}

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
//! Run loop (the shell's contract):
//! 1. feed one input: `handle_datagram`, `handle_unsent`, `handle_activity`, `handle_session_confirmed`,
//!    `apply`, `reconcile`, or `handle_timeout` once `poll_timeout` has passed;
//! 2. drain `poll_event` until `None`, acting on each event in order;
//! 3. sleep until `poll_timeout` or the next input.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use meshd_crypto::cookie::{CookieChecker, LoadMonitor, MacProtected, MacVerdict};
use meshd_crypto::index::IndexTable;
use meshd_crypto::noise::{self, Identity, PeerHandshake, Tai64N};
use meshd_crypto::ratelimiter::RateLimiter;
use meshd_crypto::session::{self, HEADROOM, TAILROOM};
use meshd_crypto::timers::TimerAction;
use meshd_crypto::{PresharedKey, PublicKey, StaticSecret};
use meshd_packet::wire::meshd::{RELAY_HEADER_LEN, RELAY_TOKEN_LEN, RelayHeader};
use meshd_packet::wire::{self, Message};
use meshd_routing::AllowedIps;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zerocopy::IntoBytes;
use zeroize::Zeroizing;

use super::peer::{MAX_QUEUED, Peer, SendingSession};
use super::{
    Activity, ConfigError, DeviceStatus, DropReason, Endpoint, Event, Paths, PeerId, PeerStatus, PeerUpdate,
    SetDevice,
};

/// Capacity of the shell's queue of handshake messages; the node is under load when it is 1/8 full.
pub const HANDSHAKE_QUEUE: usize = 4096;

/// Source addresses the handshake rate limiter remembers at once.
const RATE_LIMITER_ENTRIES: usize = 1 << 16;

pub struct Node {
    pub(super) identity: Option<Identity>,
    cookie_checker: Option<CookieChecker>,
    pub(super) peers: BTreeMap<PeerId, Peer>,
    pub(super) by_key: HashMap<PublicKey, PeerId>,
    indices: IndexTable<PeerId>,
    pub(super) allowed_ips: AllowedIps<PeerId>,
    rate_limiter: RateLimiter,
    load: LoadMonitor,
    rng: ChaCha20Rng,
    next_peer: u32,
    listen_port: u16,
    fwmark: u32,
    mtu: usize,
    /// This node's ticket for its relay, put in every relay frame it writes (zero: none issued yet).
    relay_token: [u8; RELAY_TOKEN_LEN],
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

    /// When [`handle_timeout`](Self::handle_timeout) has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().filter_map(|p| p.timers.next_deadline()).min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.run_timers(id, now, wall);
        }
    }

    /// A handshake or cookie message from `from`: a datagram from a peer's address, or the inner
    /// datagram of a relay frame that came from a relay. `queue_len` is how many more wait behind it in
    /// the shell's handshake queue (of [`HANDSHAKE_QUEUE`]); it decides whether the node is under load.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: Endpoint,
        datagram: &[u8],
        queue_len: usize,
    ) {
        let message = match wire::parse(datagram) {
            Ok(m) => m,
            Err(_) => return self.dropped(DropReason::Malformed),
        };
        if self.identity.is_none() {
            return self.dropped(DropReason::NoPrivateKey);
        }
        match message {
            Message::Initiation(msg) => self.handle_initiation(now, from, msg, queue_len),
            Message::Response(msg) => self.handle_response(now, wall, from, msg, queue_len),
            Message::CookieReply(msg) => {
                let peer = self.indices.get(msg.receiver_index.get()).copied();
                let consumed = peer
                    .and_then(|id| self.peers.get_mut(&id))
                    .and_then(|p| p.handshake.as_mut())
                    .map(|h| h.cookies.consume_reply(msg, now));
                if !matches!(consumed, Some(Ok(()))) {
                    self.dropped(DropReason::BadCookie);
                }
            }
            // Data goes to the RX path's receivers, never here; other types are meshd's own, which this
            // interface does not speak.
            _ => self.dropped(DropReason::Malformed),
        }
    }

    /// The checks every handshake message passes before any expensive work: `mac1`, and under load a
    /// valid `mac2` (else a cookie reply goes back) and the per-source rate limit. False drops it.
    ///
    /// Cookies and the rate limit are by source address, which for a relayed message is the relay's:
    /// under load, everything relayed shares one budget. A cookie reply goes back the way the message
    /// came; through a relay that needs the sender's key, `relay_key`, which only a response has
    /// (from its receiver index), so a relayed initiation under load is dropped unanswered.
    fn admit(
        &mut self,
        now: Instant,
        from: Endpoint,
        msg: &impl MacProtected,
        queue_len: usize,
        relay_key: Option<PublicKey>,
    ) -> bool {
        let Some(checker) = &mut self.cookie_checker else {
            return false;
        };
        let source = from.addr();
        let under_load = self.load.under_load(now, queue_len, HANDSHAKE_QUEUE);
        match checker.check(msg, source, under_load, now, &mut self.rng) {
            Err(_) => {
                self.dropped(DropReason::BadMac1);
                return false;
            }
            Ok(MacVerdict::SendCookie) => {
                let key = match (from, relay_key) {
                    (Endpoint::Direct(_), _) => None,
                    (Endpoint::Relayed { .. }, Some(key)) => Some(key),
                    (Endpoint::Relayed { .. }, None) => {
                        self.dropped(DropReason::CookieUnroutable);
                        return false;
                    }
                };
                let reply = checker.create_reply(msg, source, now, &mut self.rng);
                let reply = reply.as_bytes().to_vec();
                let datagram = match key {
                    Some(key) => from.frame(&key, self.relay_token, reply),
                    None => reply,
                };
                self.events.push_back(Event::Transmit { to: source, datagram });
                self.dropped(DropReason::CookieSent);
                return false;
            }
            Ok(MacVerdict::Accept) => {}
        }
        if under_load && !self.rate_limiter.allow(source.ip(), now) {
            self.dropped(DropReason::RateLimited);
            return false;
        }
        true
    }

    fn handle_initiation(
        &mut self,
        now: Instant,
        from: Endpoint,
        msg: &wire::HandshakeInitiation,
        queue_len: usize,
    ) {
        if !self.admit(now, from, msg, queue_len, None) {
            return;
        }
        let Some(identity) = &self.identity else { return };
        let Ok(incoming) = noise::begin_response(identity, msg) else {
            return self.dropped(DropReason::HandshakeFailed);
        };
        let Some(&id) = self.by_key.get(incoming.initiator_static()) else {
            return self.dropped(DropReason::UnknownPeer);
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(handshake) = peer.handshake(identity) else {
            return self.dropped(DropReason::HandshakeFailed);
        };
        let local_index = self.indices.insert(id, &mut self.rng);
        let (response, keys) = match incoming.finish(handshake, local_index, now, &mut self.rng) {
            Ok(done) => done,
            Err(_) => {
                self.indices.remove(local_index);
                return self.dropped(DropReason::HandshakeFailed);
            }
        };
        let (sender, receiver) = session::new_session(keys, now);

        // The responder's new session waits in `next` until the initiator's first data confirms it;
        // the one it replaces, and the previous one, are done with (Linux noise.c does the same).
        let mut retired = Vec::new();
        retired.extend(peer.next.take().map(|s| s.local_index));
        retired.extend(peer.previous.take());
        peer.next = Some(SendingSession {
            local_index,
            sender: Arc::new(sender),
        });
        peer.timers.on_session_derived(now, false);
        peer.timers.on_authenticated_packet_sent(now);
        peer.timers.on_authenticated_packet_traversal(now);
        let before = peer.paths.active();
        peer.paths.on_initiation(from);
        // The response goes back the way the initiation came, whatever path data takes.
        let datagram = from.frame(&peer.key, self.relay_token, response.as_bytes().to_vec());
        self.publish_session(id, before, retired, receiver, true);
        self.events.push_back(Event::Transmit {
            to: from.addr(),
            datagram,
        });
    }

    fn handle_response(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: Endpoint,
        msg: &wire::HandshakeResponse,
        queue_len: usize,
    ) {
        let index = msg.receiver_index.get();
        let relay_key = self
            .indices
            .get(index)
            .and_then(|id| self.peers.get(id))
            .map(|p| p.key);
        if !self.admit(now, from, msg, queue_len, relay_key) {
            return;
        }
        let Some(identity) = &self.identity else { return };
        let Some(&id) = self.indices.get(index) else {
            return self.dropped(DropReason::HandshakeFailed);
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let (Some(initiation), Some(handshake)) = (&peer.initiation, &peer.handshake) else {
            return self.dropped(DropReason::HandshakeFailed);
        };
        if initiation.local_index() != index {
            return self.dropped(DropReason::HandshakeFailed);
        }
        let Ok(keys) = initiation.consume_response(identity, handshake, msg) else {
            return self.dropped(DropReason::HandshakeFailed);
        };
        peer.initiation = None;
        let (sender, receiver) = session::new_session(keys, now);
        let sender = Arc::new(sender);

        // A new initiator session becomes current at once. The one before it stays for receiving as
        // previous: the old current, or, after crossed handshakes, the pending responder session,
        // which the peer (as its initiator) already sends on; then the old current goes (Linux
        // noise.c `add_new_keypair` does the same). Dropping the responder session instead would lose
        // everything the peer sends until a handshake timer fires.
        let mut retired = Vec::new();
        retired.extend(peer.previous.take());
        match peer.next.take() {
            Some(next) => {
                retired.extend(peer.current.take().map(|s| s.local_index));
                peer.previous = Some(next.local_index);
            }
            None => peer.previous = peer.current.take().map(|s| s.local_index),
        }
        peer.current = Some(SendingSession {
            local_index: index,
            sender: Arc::clone(&sender),
        });
        peer.last_handshake = Some(wall);
        peer.timers.on_handshake_complete(now);
        peer.timers.on_session_derived(now, true);
        peer.timers.on_authenticated_packet_received(now);
        peer.timers.on_authenticated_packet_traversal(now);
        let before = peer.paths.active();
        peer.paths.on_response(from);
        self.publish_session(id, before, retired, receiver, false);
        self.events.push_back(Event::Sender {
            peer: id,
            sender: Some(sender),
        });
        // Confirm the session to the responder: with the waiting packets, or a keepalive.
        if !self.flush_queue(id, now) {
            self.send_keepalive(id, now);
        }
    }

    /// What both roles do once a handshake yields a session: the peer's active path is announced if the
    /// handshake changed it from `before`, the receivers of the sessions it replaces go, and the new
    /// receiving half goes to the RX path (`confirms` for a responder's session, which waits for the
    /// initiator's data).
    fn publish_session(
        &mut self,
        id: PeerId,
        before: Option<Endpoint>,
        retired: Vec<u32>,
        receiver: session::Receiver,
        confirms: bool,
    ) {
        self.announce_path(id, before);
        for index in retired {
            self.retire_receiver(index);
        }
        self.events.push_back(Event::Receiver {
            peer: id,
            receiver: Box::new(receiver),
            confirms,
        });
    }

    /// Tells the shell the peer's active path if it is no longer `before`.
    pub(super) fn announce_path(&mut self, id: PeerId, before: Option<Endpoint>) {
        let Some(peer) = self.peers.get(&id) else { return };
        let endpoint = peer.paths.active();
        if endpoint != before {
            self.events.push_back(Event::Endpoint { peer: id, endpoint });
        }
    }

    /// The RX path decrypted the first data message on a responder's session `local_index`: the
    /// initiator has the keys, so the session becomes the one to send with.
    pub fn handle_session_confirmed(&mut self, now: Instant, wall: SystemTime, id: PeerId, local_index: u32) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.next.as_ref().map(|s| s.local_index) != Some(local_index) {
            return;
        }
        let Some(next) = peer.next.take() else { return };
        let retired = peer.previous.take();
        peer.previous = peer.current.take().map(|s| s.local_index);
        let sender = Arc::clone(&next.sender);
        peer.current = Some(next);
        peer.last_handshake = Some(wall);
        peer.timers.on_handshake_complete(now);
        if let Some(old) = retired {
            self.retire_receiver(old);
        }
        self.events.push_back(Event::Sender {
            peer: id,
            sender: Some(sender),
        });
        self.flush_queue(id, now);
    }

    /// What the data path did for `id` since the last report.
    pub fn handle_activity(&mut self, id: PeerId, activity: &Activity) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let timers = &mut peer.timers;
        if let Some(t) = activity.data_sent {
            timers.on_data_sent(t, &mut self.rng);
            timers.on_authenticated_packet_sent(t);
            timers.on_authenticated_packet_traversal(t);
        }
        if let Some(t) = activity.authenticated_received {
            timers.on_authenticated_packet_received(t);
            timers.on_authenticated_packet_traversal(t);
        }
        if let Some(t) = activity.data_received {
            timers.on_data_received(t);
        }
        if let Some(t) = activity.rekey_wanted {
            timers.on_handshake_wanted(t);
        }
        if let Some(endpoint) = activity.endpoint {
            let before = peer.paths.active();
            peer.paths.on_data(endpoint);
            self.announce_path(id, before);
        }
    }

    /// The TX path had no usable session for `packet` (plaintext IP, no headroom) to `id`: hold it and
    /// start a handshake, or send it at once if a session appeared meanwhile.
    pub fn handle_unsent(&mut self, now: Instant, wall: SystemTime, id: PeerId, packet: Vec<u8>) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.queue.len() >= MAX_QUEUED {
            peer.queue.pop_front();
            self.events.push_back(Event::Dropped {
                reason: DropReason::QueueFull,
                n: 1,
            });
        }
        peer.queue.push_back(packet);
        let usable = peer.current.as_ref().is_some_and(|s| !s.sender.is_expired(now));
        if usable {
            self.flush_queue(id, now);
        } else {
            peer.timers.on_handshake_wanted(now);
            self.run_timers(id, now, wall);
        }
    }

    fn run_timers(&mut self, id: PeerId, now: Instant, wall: SystemTime) {
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(action) = peer.timers.poll(now) else {
                return;
            };
            match action {
                TimerAction::SendInitiation { retry } => self.send_initiation(id, now, wall, retry),
                TimerAction::SendKeepalive => {
                    self.send_keepalive(id, now);
                }
                TimerAction::ZeroKeys => self.zero_keys(id),
                TimerAction::GiveUp => {
                    let dropped = std::mem::take(&mut peer.queue).len();
                    if dropped > 0 {
                        self.events.push_back(Event::Dropped {
                            reason: DropReason::HandshakeGaveUp,
                            n: dropped as u64,
                        });
                    }
                }
            }
        }
    }

    fn send_initiation(&mut self, id: PeerId, now: Instant, wall: SystemTime, retry: bool) {
        let Some(identity) = &self.identity else { return };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        // Timers run on even without a way to send, so retries and giving up happen as they should.
        peer.timers.on_handshake_initiated(now, retry, &mut self.rng);
        let Some(path) = peer.paths.for_initiation(retry) else {
            let n = peer.queue.len().max(1) as u64;
            self.events.push_back(Event::Dropped {
                reason: DropReason::NoEndpoint,
                n,
            });
            return;
        };
        if let Some(old) = peer.initiation.take() {
            self.indices.remove(old.local_index());
        }
        let key = peer.key;
        let Some(handshake) = peer.handshake(identity) else {
            return self.dropped(DropReason::HandshakeFailed);
        };
        let local_index = self.indices.insert(id, &mut self.rng);
        let timestamp = Tai64N::from_system_time(wall);
        match noise::create_initiation(identity, handshake, local_index, timestamp, now, &mut self.rng) {
            Ok((state, msg)) => {
                peer.initiation = Some(state);
                peer.timers.on_authenticated_packet_sent(now);
                peer.timers.on_authenticated_packet_traversal(now);
                self.events.push_back(Event::Transmit {
                    to: path.addr(),
                    datagram: path.frame(&key, self.relay_token, msg.as_bytes().to_vec()),
                });
            }
            Err(_) => {
                self.indices.remove(local_index);
                self.dropped(DropReason::HandshakeFailed);
            }
        }
    }

    /// Sends an empty data message on the current session; false if there is none to send on.
    fn send_keepalive(&mut self, id: PeerId, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let (Some(current), Some(path)) = (&peer.current, peer.paths.active()) else {
            return false;
        };
        let mut buf = vec![0u8; HEADROOM + TAILROOM];
        match current.sender.encapsulate(now, &mut buf, 0, self.mtu) {
            Ok(len) => {
                buf.truncate(len);
                peer.timers.on_authenticated_packet_sent(now);
                peer.timers.on_authenticated_packet_traversal(now);
                self.events.push_back(Event::Transmit {
                    to: path.addr(),
                    datagram: path.frame(&peer.key, self.relay_token, buf),
                });
                true
            }
            Err(_) => false,
        }
    }

    /// Sends the packets waiting for `id` on its current session; false if nothing went.
    fn flush_queue(&mut self, id: PeerId, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let Some(current) = &peer.current else {
            return false;
        };
        if peer.queue.is_empty() {
            return false;
        }
        let Some(path) = peer.paths.active() else {
            let n = std::mem::take(&mut peer.queue).len() as u64;
            self.events.push_back(Event::Dropped {
                reason: DropReason::NoEndpoint,
                n,
            });
            return false;
        };
        let mut sent = false;
        // A relayed datagram is sealed behind room for the relay frame's header.
        let front = if path.is_relayed() { RELAY_HEADER_LEN } else { 0 };
        while let Some(packet) = peer.queue.pop_front() {
            let mut buf = vec![0u8; front + HEADROOM + packet.len() + TAILROOM];
            let start = front + HEADROOM;
            buf[start..start + packet.len()].copy_from_slice(&packet);
            match current
                .sender
                .encapsulate(now, &mut buf[front..], packet.len(), self.mtu)
            {
                Ok(len) => {
                    buf.truncate(front + len);
                    if path.is_relayed() {
                        buf[..front].copy_from_slice(
                            RelayHeader::new(*peer.key.as_bytes(), self.relay_token).as_bytes(),
                        );
                    }
                    self.events.push_back(Event::Transmit {
                        to: path.addr(),
                        datagram: buf,
                    });
                    sent = true;
                }
                Err(_) => {
                    // The session died under the queue: keep the packet for the next one.
                    peer.queue.push_front(packet);
                    peer.timers.on_handshake_wanted(now);
                    break;
                }
            }
        }
        if sent {
            peer.timers.on_data_sent(now, &mut self.rng);
            peer.timers.on_authenticated_packet_sent(now);
            peer.timers.on_authenticated_packet_traversal(now);
        }
        sent
    }

    /// Forgets every session and pending handshake of `id`.
    fn zero_keys(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let indices: Vec<u32> = peer.local_indices().collect();
        let had_sender = peer.current.is_some();
        peer.initiation = None;
        peer.current = None;
        peer.previous = None;
        peer.next = None;
        for index in indices {
            self.retire_receiver(index);
        }
        if had_sender {
            self.events.push_back(Event::Sender {
                peer: id,
                sender: None,
            });
        }
    }

    fn retire_receiver(&mut self, local_index: u32) {
        self.indices.remove(local_index);
        self.events.push_back(Event::RemoveReceiver { local_index });
    }

    fn dropped(&mut self, reason: DropReason) {
        self.events.push_back(Event::Dropped { reason, n: 1 });
    }

    /// Applies a `set=1` request. Changes before an invalid entry stay applied, as with wireguard-go.
    pub fn apply(&mut self, now: Instant, wall: SystemTime, set: &SetDevice) -> Result<(), ConfigError> {
        let mut routes_changed = false;
        if let Some(key) = &set.private_key {
            self.set_private_key(key.as_deref().copied());
            routes_changed = true;
        }
        if let Some(port) = set.listen_port
            && port != self.listen_port
        {
            self.events.push_back(Event::Rebind { port });
        }
        if let Some(mark) = set.fwmark
            && mark != self.fwmark
        {
            self.fwmark = mark;
            self.events.push_back(Event::Fwmark { mark });
        }
        if set.replace_peers {
            let ids: Vec<PeerId> = self.peers.keys().copied().collect();
            for id in ids {
                self.remove_peer(id);
            }
            routes_changed = true;
        }
        let mut result = Ok(());
        for update in &set.peers {
            match self.apply_peer(now, wall, update) {
                Ok(changed) => routes_changed |= changed,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if routes_changed {
            self.events.push_back(Event::RoutesChanged);
        }
        result
    }

    fn set_private_key(&mut self, key: Option<[u8; 32]>) {
        let same = match (&self.identity, &key) {
            (Some(identity), Some(k)) => *identity.secret().to_bytes() == *k,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for &id in &ids {
            self.zero_keys(id);
        }
        self.identity = key.map(|k| Identity::new(StaticSecret::from_bytes(k)));
        self.cookie_checker = self.identity.as_ref().map(|i| CookieChecker::new(i.public_key()));
        // A peer with our own public key would be a handshake with ourselves (Linux removes it too).
        if let Some(own) = self.public_key().copied()
            && let Some(&id) = self.by_key.get(&own)
        {
            self.remove_peer(id);
        }
        // Handshake state is bound to the local key: each peer's is built anew on first use.
        for peer in self.peers.values_mut() {
            peer.handshake = None;
        }
    }

    /// Returns whether the allowed IPs changed.
    fn apply_peer(
        &mut self,
        now: Instant,
        wall: SystemTime,
        update: &PeerUpdate,
    ) -> Result<bool, ConfigError> {
        let key = PublicKey::from_bytes(update.public_key);
        let existing = self.by_key.get(&key).copied();
        if update.remove {
            if let Some(id) = existing {
                self.remove_peer(id);
                return Ok(true);
            }
            return Ok(false);
        }
        if existing.is_none() && update.update_only {
            return Ok(false);
        }
        if self.public_key() == Some(&key) {
            // wireguard-go and Linux ignore a peer with the interface's own key.
            return Ok(false);
        }
        let id = match existing {
            Some(id) => id,
            None => self.add_peer(key)?,
        };
        let peer = self.peers.get_mut(&id).expect("peer exists: found or just added");
        if let Some(psk) = &update.preshared_key {
            peer.preshared_key = psk.clone();
            if let Some(h) = peer.handshake.as_mut() {
                h.set_preshared_key(psk.as_deref().map(|k| PresharedKey::from_bytes(*k)));
            }
        }
        if let Some(endpoint) = update.endpoint {
            // `endpoint=` is the peer's own address; a relay comes only from a network map.
            let before = peer.paths.active();
            peer.paths.configure_direct(endpoint);
            self.announce_path(id, before);
        }
        if let Some(interval) = update.persistent_keepalive_interval {
            self.set_persistent_keepalive(id, interval, now, wall);
        }
        let mut routes_changed = false;
        if update.replace_allowed_ips {
            routes_changed |= self.allowed_ips.remove_by_peer(id) > 0;
        }
        for &prefix in &update.allowed_ips {
            self.allowed_ips.insert(prefix, id);
            routes_changed = true;
        }
        Ok(routes_changed)
    }

    /// Sets the persistent keepalive interval (0: off) as `persistent_keepalive_interval=` does.
    pub(super) fn set_persistent_keepalive(
        &mut self,
        id: PeerId,
        interval: u16,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let was_off = peer.persistent_keepalive == 0;
        peer.persistent_keepalive = interval;
        let duration = (interval > 0).then(|| std::time::Duration::from_secs(u64::from(interval)));
        peer.timers.set_persistent_keepalive(duration, now);
        // Turning it on sends one at once, so a NAT mapping opens without waiting (as Linux does).
        if was_off && interval > 0 && !self.send_keepalive(id, now) {
            let peer = self.peers.get_mut(&id).expect("peer exists");
            peer.timers.on_handshake_wanted(now);
            self.run_timers(id, now, wall);
        }
    }

    /// A configured peer: its handshake state is built now, so that a key that is not a usable point
    /// is refused as wireguard-go refuses it.
    fn add_peer(&mut self, key: PublicKey) -> Result<PeerId, ConfigError> {
        let handshake = match &self.identity {
            Some(identity) => {
                Some(PeerHandshake::new(identity, key, None).map_err(|_| ConfigError::UnusablePeerKey)?)
            }
            None => None,
        };
        let id = self.insert_peer(key);
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.handshake = handshake;
        }
        Ok(id)
    }

    /// A new peer with nothing but its key; its handshake state is built on first use.
    pub(super) fn insert_peer(&mut self, key: PublicKey) -> PeerId {
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.peers.insert(id, Peer::new(key));
        self.by_key.insert(key, id);
        self.events.push_back(Event::PeerAdded { peer: id, key });
        id
    }

    pub(super) fn remove_peer(&mut self, id: PeerId) {
        self.zero_keys(id);
        if let Some(peer) = self.peers.remove(&id) {
            self.by_key.remove(&peer.key);
            let queued = peer.queue.len() as u64;
            if queued > 0 {
                self.events.push_back(Event::Dropped {
                    reason: DropReason::NoRoute,
                    n: queued,
                });
            }
        }
        self.allowed_ips.remove_by_peer(id);
        self.events.push_back(Event::PeerRemoved { peer: id });
    }

    /// What `get=1` reports, without the byte counters, which live in the data path: the shell fills
    /// them in for the peers listed in the returned order.
    pub fn status(&self) -> (DeviceStatus, Vec<PeerId>) {
        let mut ids = Vec::with_capacity(self.peers.len());
        let mut peers = Vec::with_capacity(self.peers.len());
        for (key, &id) in sorted(&self.by_key) {
            let Some(peer) = self.peers.get(&id) else { continue };
            ids.push(id);
            peers.push(PeerStatus {
                public_key: *key.as_bytes(),
                preshared_key: peer.preshared_key.clone(),
                endpoint: peer.paths.active().map(|e| e.addr()),
                last_handshake: peer
                    .last_handshake
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()),
                rx_bytes: 0,
                tx_bytes: 0,
                persistent_keepalive_interval: peer.persistent_keepalive,
                allowed_ips: self.allowed_ips.prefixes_of(id).collect(),
            });
        }
        let status = DeviceStatus {
            private_key: self
                .identity
                .as_ref()
                .map(|i| Zeroizing::new(*i.secret().to_bytes())),
            listen_port: self.listen_port,
            fwmark: self.fwmark,
            peers,
        };
        (status, ids)
    }
}

/// The peers in a stable order (by public key), so `wg show` does not reshuffle between calls.
fn sorted(map: &HashMap<PublicKey, PeerId>) -> Vec<(&PublicKey, &PeerId)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by_key(|(k, _)| **k);
    v
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

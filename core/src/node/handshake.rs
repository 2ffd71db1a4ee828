//! The handshake in both roles, what Linux's `receive.c` does with handshake messages and `send.c` with
//! initiations (the Noise and cookie crypto, Linux's `noise.c` and `cookie.c`, is `meshd_crypto`'s):
//! the checks a handshake message passes before any Diffie-Hellman (`mac1`, and under load a cookie
//! and the per-source rate limit), the responder's side (an initiation answered), the initiator's (an
//! initiation sent, a response consumed), and cookie replies. What becomes of the sessions a handshake
//! yields is `rotation.rs`'s.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use meshd_crypto::PublicKey;
use meshd_crypto::cookie::{MacProtected, MacVerdict};
use meshd_crypto::noise::{self, Tai64N};
use meshd_crypto::session;
use meshd_packet::wire::{self, Message};
use zerocopy::IntoBytes;

use super::peer::SendingSession;
use super::{DropReason, Endpoint, Event, Node, PeerId};

/// Capacity of the shell's queue of handshake messages; the node is under load when it is 1/8 full.
pub const HANDSHAKE_QUEUE: usize = 4096;

impl Node {
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

    pub(super) fn send_initiation(&mut self, id: PeerId, now: Instant, wall: SystemTime, retry: bool) {
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
}

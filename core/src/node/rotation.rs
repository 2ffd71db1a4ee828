//! Session rotation, as Linux's `noise.c` keeps its keypairs: a peer sends on `current`, and receives
//! on it, on `previous` (the one it replaced) and on `next` (a responder's session that waits for the
//! initiator's first data). Here the sessions a handshake yields go to the data path, a responder's
//! is confirmed, replaced ones are retired, and all of a peer's go when its keys are zeroed. Which
//! slot a new session takes is decided by its handshake role, in `handshake.rs`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use meshd_crypto::session;

use super::{Endpoint, Event, Node, PeerId};

impl Node {
    /// What both roles do once a handshake yields a session: the peer's active path is announced if the
    /// handshake changed it from `before`, the receivers of the sessions it replaces go, and the new
    /// receiving half goes to the RX path (`confirms` for a responder's session, which waits for the
    /// initiator's data).
    pub(super) fn publish_session(
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

    /// Forgets every session and pending handshake of `id`.
    pub(super) fn zero_keys(&mut self, id: PeerId) {
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
}

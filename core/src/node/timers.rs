//! The node's side of the peer timers (the timers themselves, Linux's `timers.c`, are
//! [`meshd_crypto::timers`]): the data path's activity reports become timer events, and what falls
//! due (an initiation, a keepalive, keys zeroed, a queue given up on) runs here, when the shell calls
//! [`Node::handle_timeout`].

use std::time::{Instant, SystemTime};

use meshd_crypto::timers::TimerAction;

use super::{Activity, DropReason, Event, Node, PeerId};

impl Node {
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

    pub(super) fn run_timers(&mut self, id: PeerId, now: Instant, wall: SystemTime) {
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
}

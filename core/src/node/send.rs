//! What the control path sends on a session (the part of Linux's `send.c` that is not the hot path):
//! the packets the data path could not send wait in the peer's queue until a session exists, then go
//! out on it; a keepalive is an empty data message. All other data goes out through the data path.

use std::time::{Instant, SystemTime};

use meshd_crypto::session::{HEADROOM, TAILROOM};
use meshd_packet::wire::meshd::{RELAY_HEADER_LEN, RelayHeader};
use zerocopy::IntoBytes;

use super::peer::MAX_QUEUED;
use super::{DropReason, Event, Node, PeerId};

impl Node {
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

    /// Sends an empty data message on the current session; false if there is none to send on.
    pub(super) fn send_keepalive(&mut self, id: PeerId, now: Instant) -> bool {
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
    pub(super) fn flush_queue(&mut self, id: PeerId, now: Instant) -> bool {
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
}

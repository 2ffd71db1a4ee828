//! State the data threads and the control loop share. The hot path reads it without locks: routes and
//! sessions are published by atomic pointer swap, activity and byte counts are relaxed atomics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use meshd_crypto::session::Sender;
use meshd_routing::AllowedIps;

use super::too_big::PathLimit;
use crate::sys::udp::Udp;
use meshd_core::mesh::relay::RelayTable;
use meshd_core::node::{Activity, DropCounters, Endpoint, PeerId};

/// One peer as the data threads see it.
#[derive(Debug)]
pub struct PeerShared {
    pub id: PeerId,
    /// The peer's public key: the destination of the relay frames its packets travel in when relayed.
    pub key: [u8; 32],
    /// The session to send with; `None` sends packets to the control loop to wait for a handshake.
    pub sender: ArcSwapOption<Sender>,
    /// The active path; the RX thread moves it when an authenticated packet arrives another way.
    pub endpoint: ArcSwapOption<Endpoint>,
    /// What a path carries when the kernel said it is less than the interface MTU (the TX thread's).
    pub path_limit: ArcSwapOption<PathLimit>,
    pub tx_bytes: AtomicU64,
    pub rx_bytes: AtomicU64,
    // Activity since the control loop last looked, as nanoseconds since `Shared::epoch` + 1 (0: none).
    data_sent: AtomicU64,
    data_received: AtomicU64,
    authenticated_received: AtomicU64,
    rekey_wanted: AtomicU64,
}

impl PeerShared {
    pub fn new(id: PeerId, key: [u8; 32]) -> Self {
        PeerShared {
            id,
            key,
            sender: ArcSwapOption::empty(),
            endpoint: ArcSwapOption::empty(),
            path_limit: ArcSwapOption::empty(),
            tx_bytes: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            data_sent: AtomicU64::new(0),
            data_received: AtomicU64::new(0),
            authenticated_received: AtomicU64::new(0),
            rekey_wanted: AtomicU64::new(0),
        }
    }

    pub fn note_data_sent(&self, at: Stamp) {
        self.data_sent.store(at.0, Ordering::Relaxed);
    }

    pub fn note_data_received(&self, at: Stamp) {
        self.data_received.store(at.0, Ordering::Relaxed);
    }

    pub fn note_authenticated_received(&self, at: Stamp) {
        self.authenticated_received.store(at.0, Ordering::Relaxed);
    }

    pub fn note_rekey_wanted(&self, at: Stamp) {
        self.rekey_wanted.store(at.0, Ordering::Relaxed);
    }

    /// Takes the activity recorded since the last call. `known_endpoint` is the endpoint the node
    /// has; a different one here means the peer roamed.
    pub fn take_activity(&self, epoch: Instant, known_endpoint: Option<Endpoint>) -> Activity {
        let take = |a: &AtomicU64| Stamp(a.swap(0, Ordering::Relaxed)).instant(epoch);
        let endpoint = self.endpoint.load().as_deref().copied();
        Activity {
            data_sent: take(&self.data_sent),
            data_received: take(&self.data_received),
            authenticated_received: take(&self.authenticated_received),
            rekey_wanted: take(&self.rekey_wanted),
            endpoint: endpoint.filter(|e| Some(*e) != known_endpoint),
        }
    }
}

/// A point in time as the data threads record it: nanoseconds since the daemon's epoch, plus one so that
/// zero can mean "nothing happened".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64);

impl Stamp {
    pub fn new(epoch: Instant, now: Instant) -> Stamp {
        Stamp(now.saturating_duration_since(epoch).as_nanos() as u64 + 1)
    }

    fn instant(self, epoch: Instant) -> Option<Instant> {
        (self.0 != 0).then(|| epoch + Duration::from_nanos(self.0 - 1))
    }
}

/// The routing snapshot the data threads use: allowed IPs and the peers they name, published together.
#[derive(Debug, Default)]
pub struct Routes {
    pub allowed_ips: AllowedIps<PeerId>,
    pub peers: HashMap<PeerId, Arc<PeerShared>>,
}

impl Routes {
    /// The peer whose allowed IPs contain the destination of `packet`.
    pub fn by_destination(&self, packet: &[u8]) -> Option<&Arc<PeerShared>> {
        self.allowed_ips
            .lookup_dst(packet)
            .and_then(|id| self.peers.get(&id))
    }
}

#[derive(Debug)]
pub struct Shared {
    pub epoch: Instant,
    pub routes: ArcSwap<Routes>,
    pub udp: ArcSwap<Udp>,
    /// The interface's public key, to tell relay frames for this node from ones to forward.
    pub own_key: ArcSwapOption<[u8; 32]>,
    /// Whom this node relays for (empty unless it runs the controller).
    pub relay: ArcSwap<RelayTable>,
    /// This node's ticket for its relay, as issued (little-endian bytes of the token; 0: none yet).
    pub relay_token: AtomicU64,
    pub drops: DropCounters,
    /// The TUN device's MTU, which `ip link set mtu` may change while running.
    pub mtu: AtomicUsize,
    /// Set when the daemon is going down (signal, or the interface was deleted).
    pub stopping: AtomicBool,
}

impl Shared {
    pub fn stamp(&self, now: Instant) -> Stamp {
        Stamp::new(self.epoch, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_taken_once() {
        #[allow(clippy::disallowed_methods, reason = "a fixed epoch for the test")]
        let epoch = Instant::now();
        let peer = PeerShared::new(PeerId(1), [0; 32]);
        let at = epoch + Duration::from_millis(1500);
        peer.note_data_sent(Stamp::new(epoch, at));
        peer.endpoint
            .store(Some(Arc::new(Endpoint::Direct("192.0.2.1:1".parse().unwrap()))));
        let a = peer.take_activity(epoch, None);
        assert_eq!(a.data_sent, Some(at));
        assert_eq!(a.data_received, None);
        assert_eq!(a.endpoint, Some(Endpoint::Direct("192.0.2.1:1".parse().unwrap())));
        let again = peer.take_activity(epoch, Some(Endpoint::Direct("192.0.2.1:1".parse().unwrap())));
        assert!(again.is_empty(), "{again:?}");
    }
}

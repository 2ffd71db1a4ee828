//! Making the peer set that of a network map: [`Node::reconcile`] takes the peers a node should have and
//! changes only what differs, so that a map that changed in one peer costs one peer's worth of work and
//! leaves every other peer's sessions alone.
//!
//! Contract:
//! - The peer set becomes exactly the specs' keys (the interface's own key is skipped; of two specs for
//!   one key the later wins). A removed peer loses its sessions, routes and queued packets (counted as
//!   [`DropReason::NoRoute`](super::DropReason::NoRoute)); its next initiation is refused as
//!   [`UnknownPeer`](super::DropReason::UnknownPeer) like any stranger's.
//! - An existing peer whose spec matches it emits no event. Otherwise: its allowed IPs are replaced only
//!   if the set differs (order and duplicates aside); a spec's direct address replaces the known one,
//!   while no direct address keeps one learned from the peer's packets (roaming); the relay becomes the
//!   spec's; the persistent keepalive changes as with `persistent_keepalive_interval=`.
//! - [`Event::RoutesChanged`] goes out once, if any allowed IP changed.
//! - Cost: linear in the number of specs and peers, plus each changed peer's prefixes. A new peer's
//!   handshake state (a Diffie-Hellman) is built when first used, not here; a key that is not a usable
//!   point is therefore accepted here and its handshakes fail
//!   ([`HandshakeFailed`](super::DropReason::HandshakeFailed)).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use meshd_crypto::PublicKey;
use meshd_packet::IpPrefix;

use super::{Event, Node, PeerId};

/// One peer as a network map describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub key: PublicKey,
    pub allowed_ips: Vec<IpPrefix>,
    /// The peer's own address, if the map knows one it can be reached at.
    pub direct: Option<SocketAddr>,
    /// The relay that forwards to the peer.
    pub relay: Option<SocketAddr>,
    /// Seconds; 0 is off.
    pub persistent_keepalive: u16,
}

/// What [`Node::reconcile`] changed, in peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub added: usize,
    pub removed: usize,
    /// Existing peers of which anything changed.
    pub updated: usize,
}

impl ReconcileSummary {
    pub fn is_empty(&self) -> bool {
        *self == ReconcileSummary::default()
    }
}

impl Node {
    /// Makes the peer set exactly `desired`, by the contract written at the top of
    /// `core/src/node/reconcile.rs`.
    pub fn reconcile(&mut self, now: Instant, wall: SystemTime, desired: &[PeerSpec]) -> ReconcileSummary {
        let own = self.public_key().copied();
        // The position of the spec that counts for each key: the last one.
        let mut wanted: HashMap<PublicKey, usize> = HashMap::with_capacity(desired.len());
        for (i, spec) in desired.iter().enumerate() {
            if Some(spec.key) != own {
                wanted.insert(spec.key, i);
            }
        }

        let mut summary = ReconcileSummary::default();
        let mut routes_changed = false;
        let gone: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, peer)| !wanted.contains_key(&peer.key))
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            routes_changed |= self.allowed_ips.prefixes_of(id).len() > 0;
            self.remove_peer(id);
            summary.removed += 1;
        }

        for (i, spec) in desired.iter().enumerate() {
            if wanted.get(&spec.key) != Some(&i) {
                continue;
            }
            let existing = self.by_key.get(&spec.key).copied();
            let id = existing.unwrap_or_else(|| self.insert_peer(spec.key));
            let change = self.update_peer(id, spec, now, wall);
            routes_changed |= change.routes;
            if existing.is_none() {
                summary.added += 1;
            } else if change.any {
                summary.updated += 1;
            }
        }
        if routes_changed {
            self.events.push_back(Event::RoutesChanged);
        }
        summary
    }

    /// Brings peer `id` to `spec`, touching only what differs.
    fn update_peer(&mut self, id: PeerId, spec: &PeerSpec, now: Instant, wall: SystemTime) -> Change {
        let Some(peer) = self.peers.get_mut(&id) else {
            return Change::default();
        };
        let mut change = Change::default();
        let before = peer.paths.active();
        if let Some(direct) = spec.direct
            && peer.paths.direct() != Some(direct)
        {
            peer.paths.configure_direct(direct);
            change.any = true;
        }
        if peer.paths.relay() != spec.relay {
            peer.paths.configure_relay(spec.relay);
            change.any = true;
        }
        let keepalive_changed = peer.persistent_keepalive != spec.persistent_keepalive;
        if !same_prefixes(self.allowed_ips.prefixes_of(id), &spec.allowed_ips) {
            self.allowed_ips.remove_by_peer(id);
            for &prefix in &spec.allowed_ips {
                self.allowed_ips.insert(prefix, id);
            }
            change.routes = true;
            change.any = true;
        }
        self.announce_path(id, before);
        if keepalive_changed {
            self.set_persistent_keepalive(id, spec.persistent_keepalive, now, wall);
            change.any = true;
        }
        change
    }
}

#[derive(Debug, Default)]
struct Change {
    any: bool,
    routes: bool,
}

/// Whether `spec` names the same set as `held` (ascending and without repeats, as the table keeps it).
fn same_prefixes(held: impl ExactSizeIterator<Item = IpPrefix>, spec: &[IpPrefix]) -> bool {
    if spec.is_sorted_by(|a, b| a < b) {
        return held.len() == spec.len() && held.eq(spec.iter().copied());
    }
    let mut sorted = spec.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    held.len() == sorted.len() && held.eq(sorted)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};

    use meshd_crypto::{PublicKey, StaticSecret};
    use zeroize::Zeroizing;

    use super::*;
    use crate::node::{DropReason, Endpoint, Event, SetDevice};
    use crate::test_clock::epoch;

    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn node(seed: u8) -> Node {
        let mut node = Node::new([seed; 32], 1420);
        let set = SetDevice {
            private_key: Some(Some(Zeroizing::new([seed; 32]))),
            ..Default::default()
        };
        node.apply(epoch(), wall(), &set).unwrap();
        drain(&mut node);
        node
    }

    fn key(seed: u8) -> PublicKey {
        *StaticSecret::from_bytes([seed; 32]).public_key()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn spec(seed: u8) -> PeerSpec {
        PeerSpec {
            key: key(seed),
            allowed_ips: vec![format!("10.0.0.{seed}/32").parse().unwrap()],
            direct: Some(addr(&format!("192.0.2.{seed}:51820"))),
            relay: Some(addr("203.0.113.1:51820")),
            persistent_keepalive: 0,
        }
    }

    fn drain(node: &mut Node) -> Vec<Event> {
        std::iter::from_fn(|| node.poll_event()).collect()
    }

    fn summary(added: usize, removed: usize, updated: usize) -> ReconcileSummary {
        ReconcileSummary {
            added,
            removed,
            updated,
        }
    }

    #[test]
    fn adds_every_peer_with_its_routes_and_path() {
        let mut n = node(1);
        let specs = [spec(2), spec(3)];
        assert_eq!(n.reconcile(epoch(), wall(), &specs), summary(2, 0, 0));
        let events = drain(&mut n);
        let added: Vec<PublicKey> = events
            .iter()
            .filter_map(|e| match e {
                Event::PeerAdded { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        assert_eq!(added, vec![key(2), key(3)]);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::RoutesChanged))
                .count(),
            1,
            "{events:?}"
        );
        let id = n.peer_id(&key(3)).unwrap();
        assert_eq!(n.peer_key(id), Some(key(3)));
        assert_eq!(n.endpoint(id), Some(Endpoint::Direct(addr("192.0.2.3:51820"))));
        assert_eq!(n.path_of(id).unwrap().relay(), Some(addr("203.0.113.1:51820")));
        assert_eq!(n.allowed_ips().lookup("10.0.0.3".parse().unwrap()), Some(id));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Endpoint { peer, endpoint: Some(_) } if *peer == id))
        );
    }

    #[test]
    fn the_same_map_again_changes_nothing_and_emits_nothing() {
        let mut n = node(1);
        let specs = [spec(2), spec(3), spec(4)];
        n.reconcile(epoch(), wall(), &specs);
        drain(&mut n);
        assert_eq!(n.reconcile(epoch(), wall(), &specs), summary(0, 0, 0));
        let events = drain(&mut n);
        assert!(events.is_empty(), "{events:?}");
        // Order and duplicates in a spec's allowed IPs do not make it differ.
        let mut shuffled = spec(2);
        shuffled.allowed_ips = vec!["10.0.2.0/24".parse().unwrap(), "10.0.0.2/32".parse().unwrap()];
        let mut again = shuffled.clone();
        again.allowed_ips = vec![
            "10.0.0.2/32".parse().unwrap(),
            "10.0.2.0/24".parse().unwrap(),
            "10.0.0.2/32".parse().unwrap(),
        ];
        n.reconcile(epoch(), wall(), &[shuffled, spec(3), spec(4)]);
        drain(&mut n);
        assert!(
            n.reconcile(epoch(), wall(), &[again, spec(3), spec(4)])
                .is_empty()
        );
        assert!(drain(&mut n).is_empty());
    }

    #[test]
    fn removes_peers_not_in_the_map_and_counts_their_queued_packets() {
        let mut n = node(1);
        n.reconcile(epoch(), wall(), &[spec(2), spec(3)]);
        let gone = n.peer_id(&key(2)).unwrap();
        // Two packets wait for a handshake with peer 2.
        for _ in 0..2 {
            n.handle_unsent(epoch(), wall(), gone, vec![0x45; 40]);
        }
        drain(&mut n);
        assert_eq!(n.reconcile(epoch(), wall(), &[spec(3)]), summary(0, 1, 0));
        let events = drain(&mut n);
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Dropped {
                    reason: DropReason::NoRoute,
                    n: 2
                }
            )),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::PeerRemoved { peer } if *peer == gone))
        );
        assert!(events.iter().any(|e| matches!(e, Event::RoutesChanged)));
        assert_eq!(n.peer_id(&key(2)), None);
        assert_eq!(n.allowed_ips().lookup("10.0.0.2".parse().unwrap()), None);
        assert_eq!(n.peer_ids().count(), 1);

        // An empty map removes everything.
        assert_eq!(n.reconcile(epoch(), wall(), &[]), summary(0, 1, 0));
        assert_eq!(n.peer_ids().count(), 0);
        assert!(n.allowed_ips().is_empty());
    }

    #[test]
    fn updates_only_what_differs() {
        let mut n = node(1);
        n.reconcile(epoch(), wall(), &[spec(2), spec(3)]);
        let id = n.peer_id(&key(2)).unwrap();
        drain(&mut n);

        // A new relay for peer 2: its path (direct) is unchanged, so no event but the count.
        let mut changed = spec(2);
        changed.relay = Some(addr("203.0.113.2:51820"));
        assert_eq!(
            n.reconcile(epoch(), wall(), &[changed.clone(), spec(3)]),
            summary(0, 0, 1)
        );
        assert!(drain(&mut n).is_empty());
        assert_eq!(n.path_of(id).unwrap().relay(), Some(addr("203.0.113.2:51820")));

        // New allowed IPs: replaced, routes republished once.
        changed.allowed_ips = vec!["10.0.9.0/24".parse().unwrap()];
        assert_eq!(
            n.reconcile(epoch(), wall(), &[changed.clone(), spec(3)]),
            summary(0, 0, 1)
        );
        let events = drain(&mut n);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(events[0], Event::RoutesChanged));
        assert_eq!(n.allowed_ips().lookup("10.0.0.2".parse().unwrap()), None);
        assert_eq!(n.allowed_ips().lookup("10.0.9.9".parse().unwrap()), Some(id));

        // A new direct address: the active path changes.
        changed.direct = Some(addr("198.51.100.2:4000"));
        n.reconcile(epoch(), wall(), &[changed.clone(), spec(3)]);
        let events = drain(&mut n);
        assert!(matches!(
            events[..],
            [Event::Endpoint { peer, endpoint: Some(Endpoint::Direct(a)) }]
                if peer == id && a == addr("198.51.100.2:4000")
        ));

        // No direct address in the map keeps the one known.
        changed.direct = None;
        assert_eq!(
            n.reconcile(epoch(), wall(), &[changed.clone(), spec(3)]),
            summary(0, 0, 0)
        );
        assert_eq!(n.endpoint(id), Some(Endpoint::Direct(addr("198.51.100.2:4000"))));

        // Keepalive on: the first one goes at once, which without a session is a handshake.
        changed.persistent_keepalive = 25;
        assert_eq!(
            n.reconcile(epoch(), wall(), &[changed, spec(3)]),
            summary(0, 0, 1)
        );
        let events = drain(&mut n);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Transmit { to, datagram } if *to == addr("198.51.100.2:4000") && datagram[0] == 1)),
            "{events:?}"
        );
    }

    #[test]
    fn an_unchanged_peer_keeps_its_session() {
        let mut a = node(1);
        let mut b = node(2);
        a.reconcile(epoch(), wall(), &[spec(2)]);
        b.reconcile(epoch(), wall(), &[spec(1)]);
        drain(&mut a);
        drain(&mut b);
        let a_b = a.peer_id(&key(2)).unwrap();
        // A handshake by hand: A's initiation to B, B's response to A.
        a.handle_unsent(epoch(), wall(), a_b, vec![0x45; 40]);
        let init = transmitted(drain(&mut a));
        deliver(&mut b, "192.0.2.1:51820", &init);
        let resp = transmitted(drain(&mut b));
        deliver(&mut a, "192.0.2.2:51820", &resp);
        let events = drain(&mut a);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Sender { sender: Some(_), .. }))
        );

        // The same map, and a map with another peer added: A's session with B stays.
        assert_eq!(a.reconcile(epoch(), wall(), &[spec(2)]), summary(0, 0, 0));
        assert_eq!(
            a.reconcile(epoch(), wall(), &[spec(2), spec(3)]),
            summary(1, 0, 0)
        );
        let events = drain(&mut a);
        let touches_b = |e: &Event| match e {
            Event::Sender { peer, .. } | Event::Endpoint { peer, .. } => *peer == a_b,
            Event::RemoveReceiver { .. } | Event::PeerRemoved { .. } => true,
            _ => false,
        };
        assert!(!events.iter().any(touches_b), "{events:?}");
    }

    /// Hands `node` a datagram that came directly from `from`.
    fn deliver(node: &mut Node, from: &str, datagram: &[u8]) {
        node.handle_datagram(epoch(), wall(), Endpoint::Direct(addr(from)), datagram, 0);
    }

    fn transmitted(events: Vec<Event>) -> Vec<u8> {
        events
            .into_iter()
            .find_map(|e| match e {
                Event::Transmit { datagram, .. } => Some(datagram),
                _ => None,
            })
            .expect("a datagram was sent")
    }

    #[test]
    fn the_interfaces_own_key_is_skipped_and_the_last_spec_for_a_key_wins() {
        let mut n = node(1);
        let mut later = spec(2);
        later.allowed_ips = vec!["10.0.7.0/24".parse().unwrap()];
        assert_eq!(
            n.reconcile(epoch(), wall(), &[spec(1), spec(2), later]),
            summary(1, 0, 0)
        );
        assert_eq!(n.peer_id(&key(1)), None);
        let id = n.peer_id(&key(2)).unwrap();
        assert_eq!(n.allowed_ips().lookup("10.0.7.1".parse().unwrap()), Some(id));
        assert_eq!(n.allowed_ips().lookup("10.0.0.2".parse().unwrap()), None);
    }

    #[test]
    fn a_removed_peers_initiation_is_refused_and_readding_restores_it() {
        let mut a = node(1);
        let mut b = node(2);
        a.reconcile(epoch(), wall(), &[spec(2)]);
        b.reconcile(epoch(), wall(), &[spec(1)]);
        a.reconcile(epoch(), wall(), &[]);
        drain(&mut a);
        let b_a = b.peer_id(&key(1)).unwrap();
        drain(&mut b);
        b.handle_unsent(epoch(), wall(), b_a, vec![0x45; 40]);
        let init = transmitted(drain(&mut b));
        deliver(&mut a, "192.0.2.2:51820", &init);
        let events = drain(&mut a);
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Dropped {
                    reason: DropReason::UnknownPeer,
                    ..
                }
            )),
            "{events:?}"
        );
        a.reconcile(epoch(), wall(), &[spec(2)]);
        drain(&mut a);
        deliver(&mut a, "192.0.2.2:51820", &init);
        let events = drain(&mut a);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Transmit { datagram, .. } if datagram[0] == 2)),
            "{events:?}"
        );
    }
}

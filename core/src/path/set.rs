//! A peer's paths: added from the configuration and from what arrives, looked up by id or by
//! addresses, bounded in number, and the events that move their states.
//!
//! Methods, in the order the node uses them:
//!
//! - getters: [`PathSet::get`], [`PathSet::get_mut`], [`PathSet::find`], [`PathSet::iter`],
//!   [`PathSet::active`], [`PathSet::last_attempt_relayed`], [`PathSet::newest_direct`],
//!   [`PathSet::newest_relayed`];
//! - what the configuration says: [`PathSet::handle_candidates`], [`PathSet::handle_relay`];
//! - what arrived: [`PathSet::handle_received`];
//! - what the node did with the policy's answers: [`PathSet::on_selected`],
//!   [`PathSet::on_initiation_sent`];
//! - plumbing: [`PathSet::add`], [`PathSet::remove`].

use std::net::SocketAddr;
use std::time::Instant;

use meshd_crypto::PublicKey;

use super::{Path, PathId, PathKind, Policy};

/// Paths a peer holds at most: a few local addresses times a few candidates, and a relay. When full,
/// a new path takes the place of the stalest one of its own class (direct or relayed), so a flood of
/// direct candidates never pushes out the relay.
pub const MAX_PATHS: usize = 8;

/// What authenticated message arrived over a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A handshake initiation from the peer, accepted.
    Initiation,
    /// The peer's handshake response to our initiation, accepted.
    Response,
    /// Transport data (a keepalive included) that opened under a current session.
    Data,
}

#[derive(Debug, Clone)]
pub struct PathSet {
    paths: Vec<Path>,
    policy: Policy,
    next_id: u64,
    next_freshness: u64,
    /// The path the node made active, and since when.
    active: Option<(PathId, Instant)>,
    /// Whether the latest handshake initiation went over a relay.
    last_attempt_relayed: Option<bool>,
}

impl PathSet {
    pub fn new(policy: Policy) -> Self {
        PathSet {
            paths: Vec::with_capacity(MAX_PATHS),
            policy,
            next_id: 0,
            next_freshness: 1,
            active: None,
            last_attempt_relayed: None,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn get(&self, id: PathId) -> Option<&Path> {
        self.paths.iter().find(|p| p.id == id)
    }

    pub fn get_mut(&mut self, id: PathId) -> Option<&mut Path> {
        self.paths.iter_mut().find(|p| p.id == id)
    }

    /// The path from `local` to `remote` of `kind`. The kind is part of the key: one address may be
    /// both a peer's own and the relay another path of the same peer goes through.
    pub fn find(&self, local: Option<SocketAddr>, remote: SocketAddr, kind: &PathKind) -> Option<PathId> {
        self.paths
            .iter()
            .find(|p| p.local == local && p.remote == remote && p.kind == *kind)
            .map(|p| p.id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.paths.iter()
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The path the node made active ([`PathSet::on_selected`]), and since when.
    pub fn active(&self) -> Option<(PathId, Instant)> {
        self.active
    }

    /// Whether the latest handshake initiation went over a relay; `None` before the first.
    pub fn last_attempt_relayed(&self) -> Option<bool> {
        self.last_attempt_relayed
    }

    /// The direct path heard of last (added, named anew, or something authenticated over it).
    pub fn newest_direct(&self) -> Option<&Path> {
        self.newest(false)
    }

    /// The relayed path heard of last.
    pub fn newest_relayed(&self) -> Option<&Path> {
        self.newest(true)
    }

    fn newest(&self, relayed: bool) -> Option<&Path> {
        self.paths
            .iter()
            .filter(|p| p.kind.is_relayed() == relayed)
            .max_by_key(|p| (p.freshness, p.id))
    }

    /// The path from `local` to `remote` of `kind`, added (as [`PathState::Unknown`](super::PathState::Unknown),
    /// the newest of its class) if the set does not hold it yet.
    pub fn add(&mut self, local: Option<SocketAddr>, remote: SocketAddr, kind: PathKind) -> PathId {
        if let Some(id) = self.find(local, remote, &kind) {
            return id;
        }
        let freshness = self.fresh();
        self.insert(local, remote, kind, freshness)
    }

    fn insert(
        &mut self,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        kind: PathKind,
        freshness: u64,
    ) -> PathId {
        if self.paths.len() >= MAX_PATHS {
            let relayed = kind.is_relayed();
            let stalest = |same_class: bool| {
                self.paths
                    .iter()
                    .filter(|p| !same_class || p.kind.is_relayed() == relayed)
                    .min_by_key(|p| (p.freshness, p.id))
                    .map(|p| p.id)
            };
            if let Some(evicted) = stalest(true).or_else(|| stalest(false)) {
                self.remove(evicted);
            }
        }
        let id = PathId(self.next_id);
        self.next_id += 1;
        self.paths.push(Path::new(id, local, remote, kind, freshness));
        id
    }

    /// Forgets a path.
    pub fn remove(&mut self, id: PathId) -> Option<Path> {
        let at = self.paths.iter().position(|p| p.id == id)?;
        if self.active.is_some_and(|(active, _)| active == id) {
            self.active = None;
        }
        Some(self.paths.remove(at))
    }

    fn fresh(&mut self) -> u64 {
        let f = self.next_freshness;
        self.next_freshness += 1;
        f
    }

    /// Makes `id` the newest of its class.
    fn renew(&mut self, id: PathId) {
        let freshness = self.fresh();
        if let Some(p) = self.get_mut(id) {
            p.freshness = freshness;
        }
    }

    /// The configuration names the peer's direct addresses, best first (a network map's candidates,
    /// or `endpoint=`). If the newest direct path is among them, nothing is new: only unknown
    /// candidates are added, as backups behind every path heard of. Otherwise the first becomes the
    /// newest direct path, with any doubt or failure on it forgotten (the map knows something new),
    /// and the rest are added as backups.
    pub fn handle_candidates(&mut self, candidates: &[SocketAddr]) {
        let Some((&first, rest)) = candidates.split_first() else {
            return;
        };
        let current = self.newest_direct().map(|p| p.remote);
        let backups = if current.is_some_and(|c| candidates.contains(&c)) {
            candidates
        } else {
            let id = self.add(None, first, PathKind::Direct);
            self.renew(id);
            if let Some(p) = self.get_mut(id) {
                p.state.on_named_anew();
            }
            rest
        };
        for &addr in backups {
            if self.find(None, addr, &PathKind::Direct).is_none() {
                // Freshness 0: older than anything heard of, so a backup never displaces a path in use.
                self.insert(None, addr, PathKind::Direct, 0);
            }
        }
    }

    /// The configuration names the peer's relay (its key and address), or none. A new relay address
    /// becomes the newest relayed path. Without a relay, the relayed paths go, and with them any
    /// doubt or failure of a direct path that only the comparison with the relay showed.
    pub fn handle_relay(&mut self, relay: Option<(PublicKey, SocketAddr)>) {
        match relay {
            Some((key, addr)) => {
                let kind = PathKind::Relayed { relay: key };
                let id = self.add(None, addr, kind);
                if self.newest_relayed().map(|p| p.id) != Some(id) {
                    self.renew(id);
                }
            }
            None => {
                let relayed: Vec<PathId> = self
                    .paths
                    .iter()
                    .filter(|p| p.kind.is_relayed())
                    .map(|p| p.id)
                    .collect();
                for id in relayed {
                    self.remove(id);
                }
                for p in &mut self.paths {
                    p.state.on_relay_gone();
                }
            }
        }
    }

    /// An authenticated `what` arrived from `remote` at `local` over a path of `kind`: the path is
    /// added if new, validated, and becomes the newest of its class. Over a relay, a handshake
    /// message also says something of the newest direct path: a response means our initiation went
    /// to the relay (the direct path failed an attempt or was never in use), and an initiation that
    /// the peer did not hear us directly, once in doubt and twice for certain. Data over a relay says
    /// nothing of the direct path.
    pub fn handle_received(
        &mut self,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        kind: PathKind,
        what: Received,
        now: Instant,
    ) -> PathId {
        let id = self.add(local, remote, kind);
        self.renew(id);
        if let Some(p) = self.get_mut(id) {
            p.state.on_authenticated_receive(now);
        }
        if kind.is_relayed()
            && let Some(direct) = self.newest_direct().map(|p| p.id)
            && let Some(direct) = self.get_mut(direct)
        {
            match what {
                Received::Initiation => direct.state.on_relayed_initiation(now),
                Received::Response => direct.state.on_answered_over_relay(now),
                Received::Data => {}
            }
        }
        id
    }

    /// The node made `id` the active path (the answer of [`select`](super::select)); the time it
    /// became active is kept for the policy's hysteresis.
    pub fn on_selected(&mut self, id: PathId, now: Instant) {
        if self.active.is_none_or(|(active, _)| active != id) && self.get(id).is_some() {
            self.active = Some((id, now));
        }
    }

    /// A handshake initiation went out over `id` (the answer of
    /// [`select_for_initiation`](super::select_for_initiation)).
    pub fn on_initiation_sent(&mut self, id: PathId) {
        if let Some(p) = self.get(id) {
            self.last_attempt_relayed = Some(p.kind.is_relayed());
        }
    }
}

impl Default for PathSet {
    fn default() -> Self {
        PathSet::new(Policy::default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::PathState;
    use super::*;
    use crate::test_clock::epoch;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const RELAY_KEY: [u8; 32] = [9; 32];

    fn relayed() -> PathKind {
        PathKind::Relayed {
            relay: PublicKey::from_bytes(RELAY_KEY),
        }
    }

    #[test]
    fn paths_are_found_by_id_and_by_addresses_and_kind_and_ids_are_not_reused() {
        let mut set = PathSet::default();
        let a = addr("192.0.2.1:51820");
        let local = Some(addr("198.51.100.2:51820"));
        let d = set.add(None, a, PathKind::Direct);
        let d_local = set.add(local, a, PathKind::Direct);
        let r = set.add(None, a, relayed());
        assert_eq!(set.len(), 3, "the local address and the kind are part of the key");
        assert_eq!(set.add(None, a, PathKind::Direct), d);
        assert_eq!(set.find(local, a, &PathKind::Direct), Some(d_local));
        assert_eq!(set.find(None, a, &relayed()), Some(r));
        assert_eq!(set.get(d_local).unwrap().local(), local);
        assert_eq!(set.iter().map(|p| p.id()).collect::<Vec<_>>(), [d, d_local, r]);

        assert_eq!(set.remove(d).map(|p| p.id()), Some(d));
        assert_eq!(set.get(d), None);
        assert_eq!(set.remove(d), None);
        let again = set.add(None, a, PathKind::Direct);
        assert_ne!(again, d, "a path added again is a new path");
    }

    #[test]
    fn a_full_set_replaces_the_stalest_path_of_the_new_ones_class() {
        let t0 = epoch();
        let mut set = PathSet::default();
        let relay = set.add(None, addr("203.0.113.1:51820"), relayed());
        let first = set.add(None, addr("192.0.2.1:1"), PathKind::Direct);
        for port in 2..MAX_PATHS as u16 {
            set.add(None, SocketAddr::from(([192, 0, 2, 1], port)), PathKind::Direct);
        }
        assert_eq!(set.len(), MAX_PATHS);
        // The first direct path is heard from: now the second is the stalest.
        set.handle_received(None, addr("192.0.2.1:1"), PathKind::Direct, Received::Data, t0);
        let second = set.find(None, addr("192.0.2.1:2"), &PathKind::Direct).unwrap();
        set.add(None, addr("192.0.2.1:100"), PathKind::Direct);
        assert_eq!(set.len(), MAX_PATHS);
        assert!(set.get(second).is_none());
        assert!(set.get(first).is_some());
        assert!(
            set.get(relay).is_some(),
            "a direct path never pushes out the relay"
        );
    }

    #[test]
    fn candidates_add_backups_behind_the_path_in_use() {
        let t0 = epoch();
        let (a, b, c) = (addr("192.0.2.1:1"), addr("192.0.2.2:1"), addr("192.0.2.3:1"));
        let mut set = PathSet::default();
        set.handle_candidates(&[]);
        assert!(set.is_empty());
        set.handle_candidates(&[a, b]);
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.newest_direct().unwrap().remote(),
            a,
            "the first candidate is preferred"
        );
        // The peer is heard from at b: the map naming a, b, c again changes nothing but adds c.
        set.handle_received(None, b, PathKind::Direct, Received::Data, t0);
        set.handle_candidates(&[a, b, c]);
        assert_eq!(set.len(), 3);
        assert_eq!(set.newest_direct().unwrap().remote(), b);
        // A map without b names a anew.
        set.handle_candidates(&[a, c]);
        assert_eq!(set.newest_direct().unwrap().remote(), a);
    }

    #[test]
    fn a_relay_named_anew_is_the_newest_and_no_relay_forgets_relayed_paths_and_their_verdicts() {
        let t0 = epoch();
        let key = PublicKey::from_bytes(RELAY_KEY);
        let (r1, r2, d) = (
            addr("203.0.113.1:51820"),
            addr("203.0.113.2:51820"),
            addr("192.0.2.1:51820"),
        );
        let mut set = PathSet::default();
        set.handle_candidates(&[d]);
        set.handle_relay(Some((key, r1)));
        set.handle_relay(Some((key, r2)));
        assert_eq!(set.newest_relayed().unwrap().remote(), r2);
        set.handle_relay(Some((key, r1)));
        assert_eq!(set.newest_relayed().unwrap().remote(), r1);

        set.handle_received(None, r1, relayed(), Received::Response, t0);
        assert!(set.newest_direct().unwrap().state().is_failed());
        assert!(set.newest_relayed().unwrap().state().is_validated());
        set.handle_relay(None);
        assert!(set.newest_relayed().is_none());
        assert_eq!(set.len(), 1);
        assert_eq!(set.newest_direct().unwrap().state(), PathState::Unknown);
    }

    #[test]
    fn the_active_path_and_its_start_are_kept_until_it_changes_or_goes() {
        let t0 = epoch();
        let t1 = t0 + std::time::Duration::from_secs(1);
        let mut set = PathSet::default();
        let a = set.add(None, addr("192.0.2.1:1"), PathKind::Direct);
        let b = set.add(None, addr("192.0.2.2:1"), PathKind::Direct);
        set.on_selected(a, t0);
        set.on_selected(a, t1);
        assert_eq!(set.active(), Some((a, t0)), "the same path again is no change");
        set.on_selected(b, t1);
        assert_eq!(set.active(), Some((b, t1)));
        set.remove(b);
        assert_eq!(set.active(), None);
    }
}

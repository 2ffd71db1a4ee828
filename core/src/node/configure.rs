//! Configuration, as Linux's `netlink.c` sets a device: a wg(8) `set=1` request ([`SetDevice`]) applied
//! to the node, the private key changed, peers added, updated and removed. A network map's peer set
//! goes through `reconcile.rs`, which shares the peer helpers here.

use std::time::{Instant, SystemTime};

use meshd_crypto::cookie::CookieChecker;
use meshd_crypto::noise::{Identity, PeerHandshake};
use meshd_crypto::{PresharedKey, PublicKey, StaticSecret};

use super::peer::Peer;
use super::{ConfigError, DropReason, Event, Node, PeerId, PeerUpdate, SetDevice};

impl Node {
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
}

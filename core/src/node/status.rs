//! What the node reports about itself and its peers: what wg(8)'s `get=1` shows (the `uapi` codec
//! renders it), and what `meshd status` shows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use meshd_crypto::PublicKey;
use meshd_packet::IpPrefix;
use zeroize::Zeroizing;

use super::{Endpoint, Node, PeerId};

/// The device as `get=1` reports it.
#[derive(Debug, Default)]
pub struct DeviceStatus {
    pub private_key: Option<Zeroizing<[u8; 32]>>,
    pub listen_port: u16,
    /// 0 when unset; not printed then.
    pub fwmark: u32,
    pub peers: Vec<PeerStatus>,
}

/// One peer as `get=1` reports it.
#[derive(Debug, Default)]
pub struct PeerStatus {
    pub public_key: [u8; 32],
    pub preshared_key: Option<Zeroizing<[u8; 32]>>,
    pub endpoint: Option<SocketAddr>,
    /// Wall-clock time of the last completed handshake since the Unix epoch; `None` if never.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds; 0 when off.
    pub persistent_keepalive_interval: u16,
    pub allowed_ips: Vec<IpPrefix>,
}

/// One peer as `meshd status` shows it, from the node and the data path's counters.
#[derive(Debug, Clone)]
pub struct PeerRuntime {
    pub key: PublicKey,
    pub endpoint: Option<Endpoint>,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl Node {
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

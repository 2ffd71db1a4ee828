//! What the node reports about itself and its peers: what wg(8)'s `get=1` shows (the `uapi` codec
//! renders it), and what `meshd status` shows.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use meshd_crypto::PublicKey;
use meshd_packet::IpPrefix;
use zeroize::Zeroizing;

use super::Endpoint;

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

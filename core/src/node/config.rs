//! The node's configuration changes, in the terms of wg(8)'s `set=1` (which the `uapi` codec parses
//! into them), and why one was refused.

use std::net::SocketAddr;

use meshd_packet::IpPrefix;
use zeroize::Zeroizing;

/// A change to the interface: its keys, then the peers in the order given (what a `set=1` request of
/// wg(8) says, and what the daemon asks of the node at start).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetDevice {
    /// `Some(None)` removes the private key (the protocol sends an all-zero key for that).
    pub private_key: Option<Option<Zeroizing<[u8; 32]>>>,
    pub listen_port: Option<u16>,
    /// `Some(0)` turns the mark off.
    pub fwmark: Option<u32>,
    /// Remove every peer not named in this request first.
    pub replace_peers: bool,
    pub peers: Vec<PeerUpdate>,
}

/// The changes to one peer, named by its public key.
#[derive(Debug, PartialEq, Eq)]
pub struct PeerUpdate {
    pub public_key: [u8; 32],
    /// Remove the peer; nothing else in the update applies.
    pub remove: bool,
    /// Change the peer only if it exists; never create it.
    pub update_only: bool,
    /// `Some(None)` clears the preshared key (an all-zero key on the wire).
    pub preshared_key: Option<Option<Zeroizing<[u8; 32]>>>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds; `Some(0)` turns persistent keepalive off.
    pub persistent_keepalive_interval: Option<u16>,
    /// Drop the peer's allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<IpPrefix>,
}

impl PeerUpdate {
    /// An update that changes nothing yet of the peer with this key.
    pub fn new(public_key: [u8; 32]) -> Self {
        PeerUpdate {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive_interval: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// Why the node refused a configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The peer's public key is not a usable Curve25519 point.
    UnusablePeerKey,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::UnusablePeerKey => f.write_str("public_key is not a usable Curve25519 point"),
        }
    }
}

impl std::error::Error for ConfigError {}

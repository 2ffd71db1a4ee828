//! What a node's agent and its controller agree on when a member of the map becomes a peer: both
//! build peer sets from the same map (the agent for its node, the controller for its own node), so
//! they take these from here rather than from each other.

use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};

/// Keepalive interval where a NAT mapping must stay open (below the 30 s many NATs keep an idle UDP
/// mapping; the same value as wg-quick's usual `PersistentKeepalive = 25`).
pub const NAT_KEEPALIVE: u16 = 25;

/// `0.0.0.0/0`, and `::/0` when the network has IPv6: the allowed IPs that make a peer the egress.
pub fn default_routes(ipv6: bool) -> Vec<IpPrefix> {
    let mut out = vec![IpPrefix::V4(Ipv4Prefix::ANY)];
    if ipv6 {
        out.push(IpPrefix::V6(Ipv6Prefix::ANY));
    }
    out
}

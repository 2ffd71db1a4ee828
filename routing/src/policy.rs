//! Source-based policy for the ingress: traffic sourced from the mesh's public block leaves through
//! the ingress peer.
//!
//! A node holding a public address from the operator's block must send its replies to the Internet
//! back through the border router that announces the block; sending them out of its local uplink
//! would leave with a source address that uplink does not route, and be dropped by reverse-path
//! filters. Its other traffic keeps using the local uplink: the kernel only hands meshd what the
//! policy rule `from <public IP> lookup <T>` selected. So once a packet is in meshd the question is
//! only which peer: a mesh peer if one holds the destination, otherwise the egress peer for the
//! source.

use std::hash::Hash;
use std::net::IpAddr;

use meshd_packet::IpPrefix;

use crate::allowed_ips::{destination, source};
use crate::{AllowedIps, PrefixMap};

/// Source prefixes, each mapped to the peer that carries their traffic to the Internet, plus the
/// destinations that must never be handed to that peer.
#[derive(Debug, Clone)]
pub struct SourcePolicy<P> {
    egress: PrefixMap<P>,
    internal: PrefixMap<()>,
}

impl<P> Default for SourcePolicy<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> SourcePolicy<P> {
    pub fn new() -> Self {
        SourcePolicy {
            egress: PrefixMap::new(),
            internal: PrefixMap::new(),
        }
    }

    /// Sends traffic from `source` (the node's public address, or the whole mesh block) that no mesh
    /// peer takes to `egress`. Returns the egress it replaces for exactly this prefix.
    pub fn insert(&mut self, source: IpPrefix, egress: P) -> Option<P> {
        self.egress.insert(source, egress)
    }

    pub fn remove(&mut self, source: IpPrefix) -> Option<P> {
        self.egress.remove(source)
    }

    /// Marks `destination` (normally the mesh block itself) as internal: an address in it that no
    /// peer holds is dropped rather than sent to the egress, which would only hairpin it through the
    /// ingress and its upstream back into the mesh.
    pub fn insert_internal(&mut self, destination: IpPrefix) {
        self.internal.insert(destination, ());
    }

    pub fn remove_internal(&mut self, destination: IpPrefix) -> bool {
        self.internal.remove(destination).is_some()
    }

    /// The egress peer for traffic from `source`: the longest source prefix containing it.
    pub fn egress_for(&self, source: IpAddr) -> Option<&P> {
        self.egress.lookup(source)
    }

    pub fn is_internal(&self, destination: IpAddr) -> bool {
        self.internal.lookup(destination).is_some()
    }

    /// The source rules in ascending prefix order.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = (IpPrefix, &P)> + '_ {
        self.egress.iter()
    }

    /// The internal destination prefixes in ascending order.
    pub fn internal(&self) -> impl ExactSizeIterator<Item = IpPrefix> + '_ {
        self.internal.iter().map(|(prefix, ())| prefix)
    }
}

/// Where an outgoing packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route<P> {
    /// A mesh peer holds the destination in its allowed IPs.
    Peer(P),
    /// No mesh peer holds the destination; the source policy sends it to this egress peer.
    Ingress(P),
    /// Neither: the packet is dropped (no route, or an unassigned address inside the mesh).
    None,
}

/// The outgoing routing decision: allowed IPs by destination first, the source policy only when no
/// peer holds the destination.
///
/// The two tables are kept together so the data path can publish both in one atomic swap and never
/// route with one table's new state and the other's old.
#[derive(Debug, Clone)]
pub struct Router<P> {
    allowed_ips: AllowedIps<P>,
    policy: SourcePolicy<P>,
}

impl<P: Copy + Eq + Hash> Default for Router<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq + Hash> Router<P> {
    pub fn new() -> Self {
        Router {
            allowed_ips: AllowedIps::new(),
            policy: SourcePolicy::new(),
        }
    }

    pub fn from_parts(allowed_ips: AllowedIps<P>, policy: SourcePolicy<P>) -> Self {
        Router { allowed_ips, policy }
    }

    pub fn allowed_ips(&self) -> &AllowedIps<P> {
        &self.allowed_ips
    }

    pub fn allowed_ips_mut(&mut self) -> &mut AllowedIps<P> {
        &mut self.allowed_ips
    }

    pub fn policy(&self) -> &SourcePolicy<P> {
        &self.policy
    }

    pub fn policy_mut(&mut self) -> &mut SourcePolicy<P> {
        &mut self.policy
    }

    /// Decides where a packet from `src` to `dst` goes.
    #[inline]
    pub fn route(&self, src: IpAddr, dst: IpAddr) -> Route<P> {
        if let Some(peer) = self.allowed_ips.lookup(dst) {
            return Route::Peer(peer);
        }
        if self.policy.is_internal(dst) {
            return Route::None;
        }
        match self.policy.egress_for(src) {
            Some(&egress) => Route::Ingress(egress),
            None => Route::None,
        }
    }

    /// [`route`](Self::route) for a raw IP packet; [`Route::None`] if it is not one.
    #[inline]
    pub fn route_packet(&self, packet: &[u8]) -> Route<P> {
        match (source(packet), destination(packet)) {
            (Some(src), Some(dst)) => self.route(src, dst),
            _ => Route::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowed_ips::tests::packet;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A node holding `203.0.113.7` and `2001:db8:7::7` from the mesh blocks; peer 1 is the ingress.
    fn node() -> Router<u32> {
        let mut r = Router::new();
        r.allowed_ips_mut().insert(p("203.0.113.1/32"), 1);
        r.allowed_ips_mut().insert(p("2001:db8::1/128"), 1);
        r.allowed_ips_mut().insert(p("203.0.113.20/32"), 2);
        r.allowed_ips_mut().insert(p("2001:db8:20::/64"), 2);
        r.policy_mut().insert(p("203.0.113.7/32"), 1);
        r.policy_mut().insert(p("2001:db8:7::7/128"), 1);
        r.policy_mut().insert_internal(p("203.0.113.0/24"));
        r.policy_mut().insert_internal(p("2001:db8::/32"));
        r
    }

    #[test]
    fn destination_peer_beats_source_rule() {
        let r = node();
        assert_eq!(r.route(a("203.0.113.7"), a("203.0.113.20")), Route::Peer(2));
        assert_eq!(r.route(a("203.0.113.7"), a("203.0.113.1")), Route::Peer(1));
        assert_eq!(r.route(a("2001:db8:7::7"), a("2001:db8:20::9")), Route::Peer(2));
    }

    #[test]
    fn internet_destinations_from_the_public_address_go_to_the_ingress() {
        let r = node();
        assert_eq!(r.route(a("203.0.113.7"), a("198.51.100.1")), Route::Ingress(1));
        assert_eq!(r.route(a("2001:db8:7::7"), a("2001:db9::1")), Route::Ingress(1));
        // Another source on the same node is not covered by the rule.
        assert_eq!(r.route(a("203.0.113.8"), a("198.51.100.1")), Route::None);
        assert_eq!(r.route(a("192.0.2.10"), a("198.51.100.1")), Route::None);
    }

    #[test]
    fn unheld_mesh_addresses_are_dropped_not_sent_to_the_ingress() {
        let mut r = node();
        assert_eq!(r.route(a("203.0.113.7"), a("203.0.113.99")), Route::None);
        assert_eq!(r.route(a("2001:db8:7::7"), a("2001:db8:99::1")), Route::None);
        assert!(r.policy_mut().remove_internal(p("203.0.113.0/24")));
        assert!(!r.policy_mut().remove_internal(p("203.0.113.0/24")));
        assert_eq!(r.route(a("203.0.113.7"), a("203.0.113.99")), Route::Ingress(1));
    }

    #[test]
    fn longest_source_rule_wins() {
        let mut r: Router<u32> = Router::new();
        r.policy_mut().insert(p("203.0.113.0/24"), 10);
        r.policy_mut().insert(p("203.0.113.128/25"), 11);
        assert_eq!(r.route(a("203.0.113.5"), a("198.51.100.1")), Route::Ingress(10));
        assert_eq!(r.route(a("203.0.113.200"), a("198.51.100.1")), Route::Ingress(11));
        assert_eq!(r.policy_mut().insert(p("203.0.113.128/25"), 12), Some(11));
        assert_eq!(r.route(a("203.0.113.200"), a("198.51.100.1")), Route::Ingress(12));
        assert_eq!(r.policy_mut().remove(p("203.0.113.128/25")), Some(12));
        assert_eq!(r.route(a("203.0.113.200"), a("198.51.100.1")), Route::Ingress(10));
        let rules: Vec<(IpPrefix, u32)> = r.policy().rules().map(|(p, &e)| (p, e)).collect();
        assert_eq!(rules, [(p("203.0.113.0/24"), 10)]);
    }

    #[test]
    fn routes_raw_packets() {
        let r = node();
        let out = packet(a("203.0.113.7"), a("198.51.100.1"), 20);
        assert_eq!(r.route_packet(&out), Route::Ingress(1));
        let mesh = packet(a("2001:db8:7::7"), a("2001:db8:20::1"), 0);
        assert_eq!(r.route_packet(&mesh), Route::Peer(2));
        assert_eq!(r.route_packet(&out[..12]), Route::None);
        assert_eq!(r.route_packet(&[0x45]), Route::None);
        assert_eq!(r.route_packet(&[]), Route::None);
    }

    #[test]
    fn lists_internal_prefixes() {
        let r = node();
        let internal: Vec<IpPrefix> = r.policy().internal().collect();
        assert_eq!(internal, [p("203.0.113.0/24"), p("2001:db8::/32")]);
    }
}

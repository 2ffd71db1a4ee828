//! `AllowedIps<P>`: WireGuard's cryptokey routing table, prefix -> peer.
//!
//! The semantics are those of Linux `allowedips.c` and wireguard-go `allowedips.go`: a prefix belongs
//! to at most one peer, and giving it to another peer takes it from the first. Outgoing packets go to
//! the peer holding the longest prefix that contains their destination; an incoming packet is accepted
//! only if the longest prefix containing its source belongs to the peer that sent it.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use meshd_packet::IpPrefix;

use crate::PrefixMap;

/// Prefixes mapped to an opaque peer handle `P` (an index, an id, an `Arc`'s address): the table never
/// looks inside it.
///
/// Besides the trie it keeps each peer's prefixes in a sorted set, so that removing a peer costs its own
/// prefixes rather than a walk over the whole table, and `wg show allowed-ips` prints in a stable order.
#[derive(Clone)]
pub struct AllowedIps<P> {
    map: PrefixMap<P>,
    by_peer: HashMap<P, BTreeSet<IpPrefix>>,
}

impl<P: Copy + Eq + Hash> Default for AllowedIps<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy + Eq + Hash> AllowedIps<P> {
    pub fn new() -> Self {
        AllowedIps {
            map: PrefixMap::new(),
            by_peer: HashMap::new(),
        }
    }

    /// The number of prefixes, over all peers.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.by_peer.clear();
    }

    /// Gives `prefix` to `peer`. Returns the peer that held it before, if any (which may be `peer`
    /// itself); a different previous holder loses it.
    pub fn insert(&mut self, prefix: IpPrefix, peer: P) -> Option<P> {
        let previous = self.map.insert(prefix, peer);
        if let Some(old) = previous {
            if old == peer {
                return previous;
            }
            self.forget(old, prefix);
        }
        self.by_peer.entry(peer).or_default().insert(prefix);
        previous
    }

    /// Removes exactly `prefix`, returning the peer that held it.
    pub fn remove(&mut self, prefix: IpPrefix) -> Option<P> {
        let peer = self.map.remove(prefix)?;
        self.forget(peer, prefix);
        Some(peer)
    }

    /// Removes every prefix of `peer`, returning how many there were.
    pub fn remove_by_peer(&mut self, peer: P) -> usize {
        let Some(prefixes) = self.by_peer.remove(&peer) else {
            return 0;
        };
        for &prefix in &prefixes {
            self.map.remove(prefix);
        }
        prefixes.len()
    }

    fn forget(&mut self, peer: P, prefix: IpPrefix) {
        if let Some(set) = self.by_peer.get_mut(&peer) {
            set.remove(&prefix);
            if set.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// The peer holding exactly `prefix`.
    pub fn get(&self, prefix: IpPrefix) -> Option<P> {
        self.map.get(prefix).copied()
    }

    /// The peer holding the longest prefix that contains `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<P> {
        self.map.lookup(addr).copied()
    }

    /// The peer an outgoing IP packet is sent to: the lookup of its destination address.
    /// `None` for anything shorter than a fixed IPv4 or IPv6 header, or with another version.
    #[inline]
    pub fn lookup_dst(&self, packet: &[u8]) -> Option<P> {
        self.lookup(destination(packet)?)
    }

    /// The peer allowed to send an incoming IP packet: the lookup of its source address.
    /// `None` for anything shorter than a fixed IPv4 or IPv6 header, or with another version.
    #[inline]
    pub fn lookup_src(&self, packet: &[u8]) -> Option<P> {
        self.lookup(source(packet)?)
    }

    /// The prefixes held by `peer` in ascending order (as `wg show allowed-ips` lists them).
    pub fn prefixes_of(&self, peer: P) -> impl ExactSizeIterator<Item = IpPrefix> + '_ {
        self.by_peer
            .get(&peer)
            .map(|set| set.iter())
            .unwrap_or_default()
            .copied()
    }

    /// Every prefix and its peer, in ascending prefix order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (IpPrefix, P)> + '_ {
        self.map.iter().map(|(prefix, &peer)| (prefix, peer))
    }
}

impl<P: core::fmt::Debug> core::fmt::Debug for AllowedIps<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.map.fmt(f)
    }
}

/// The source address of a raw IPv4 or IPv6 packet, read at its fixed header offset.
#[inline]
fn source(packet: &[u8]) -> Option<IpAddr> {
    address_at(packet, 12, 8)
}

/// The destination address of a raw IPv4 or IPv6 packet, read at its fixed header offset.
#[inline]
fn destination(packet: &[u8]) -> Option<IpAddr> {
    address_at(packet, 16, 24)
}

/// Reads the address at `v4_offset` or `v6_offset` after checking the version nibble and that the
/// fixed header (20 or 40 bytes) is present. Nothing else is checked: the packet was either read from
/// our own TUN device or already authenticated, and deeper validation belongs to the typed views.
fn address_at(packet: &[u8], v4_offset: usize, v6_offset: usize) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let bytes: [u8; 4] = packet.get(v4_offset..v4_offset + 4)?.try_into().ok()?;
            Some(Ipv4Addr::from(bytes).into())
        }
        6 if packet.len() >= 40 => {
            let bytes: [u8; 16] = packet.get(v6_offset..v6_offset + 16)?.try_into().ok()?;
            Some(Ipv6Addr::from(bytes).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A minimal header of either version with the given addresses, followed by `payload` bytes.
    fn packet(src: IpAddr, dst: IpAddr, payload: usize) -> Vec<u8> {
        let mut b = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut b = vec![0u8; 20];
                b[0] = 0x45;
                b[12..16].copy_from_slice(&s.octets());
                b[16..20].copy_from_slice(&d.octets());
                b
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut b = vec![0u8; 40];
                b[0] = 0x60;
                b[8..24].copy_from_slice(&s.octets());
                b[24..40].copy_from_slice(&d.octets());
                b
            }
            _ => unreachable!("one family per packet"),
        };
        b.resize(b.len() + payload, 0xee);
        b
    }

    #[test]
    fn inserting_for_another_peer_moves_the_prefix() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(p("10.0.0.0/8"), 'a'), None);
        assert_eq!(t.insert(p("10.1.0.0/16"), 'a'), None);
        assert_eq!(t.insert(p("10.0.0.0/8"), 'b'), Some('a'));
        assert_eq!(t.lookup(a("10.9.9.9")), Some('b'));
        assert_eq!(t.lookup(a("10.1.9.9")), Some('a'));
        assert_eq!(t.prefixes_of('a').collect::<Vec<_>>(), [p("10.1.0.0/16")]);
        assert_eq!(t.prefixes_of('b').collect::<Vec<_>>(), [p("10.0.0.0/8")]);
        assert_eq!(t.len(), 2);

        // Re-inserting for the same peer is idempotent.
        assert_eq!(t.insert(p("10.0.0.0/8"), 'b'), Some('b'));
        assert_eq!(t.prefixes_of('b').count(), 1);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn remove_by_peer_uncovers_shorter_prefixes_of_others() {
        let mut t = AllowedIps::new();
        t.insert(p("0.0.0.0/0"), 1);
        t.insert(p("192.0.2.0/24"), 2);
        t.insert(p("192.0.2.1/32"), 3);
        t.insert(p("2001:db8::/32"), 2);
        assert_eq!(t.lookup(a("192.0.2.1")), Some(3));
        assert_eq!(t.remove_by_peer(2), 2);
        assert_eq!(t.remove_by_peer(2), 0);
        assert_eq!(t.remove_by_peer(9), 0);
        assert_eq!(t.lookup(a("192.0.2.7")), Some(1));
        assert_eq!(t.lookup(a("192.0.2.1")), Some(3));
        assert_eq!(t.lookup(a("2001:db8::1")), None);
        assert_eq!(t.get(p("0.0.0.0/0")), Some(1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn remove_is_exact() {
        let mut t = AllowedIps::new();
        t.insert(p("198.51.100.0/24"), 7);
        assert_eq!(t.remove(p("198.51.100.0/25")), None);
        assert_eq!(t.remove(p("198.51.100.0/24")), Some(7));
        assert_eq!(t.lookup(a("198.51.100.1")), None);
        assert_eq!(t.prefixes_of(7).count(), 0);
        assert!(t.is_empty());
    }

    #[test]
    fn prefixes_of_lists_in_ascending_order() {
        let mut t = AllowedIps::new();
        for s in [
            "2001:db8::/48",
            "203.0.113.9/32",
            "10.0.0.0/8",
            "203.0.113.0/24",
            "::/0",
        ] {
            t.insert(p(s), ());
        }
        let listed: Vec<String> = t.prefixes_of(()).map(|x| x.to_string()).collect();
        assert_eq!(
            listed,
            [
                "10.0.0.0/8",
                "203.0.113.0/24",
                "203.0.113.9/32",
                "::/0",
                "2001:db8::/48"
            ]
        );
    }

    #[test]
    fn packet_lookups_read_the_right_field() {
        let mut t = AllowedIps::new();
        t.insert(p("192.0.2.0/24"), 'd');
        t.insert(p("198.51.100.0/24"), 's');
        t.insert(p("2001:db8:d::/48"), 'D');
        t.insert(p("2001:db8:5::/48"), 'S');
        let v4 = packet(a("198.51.100.1"), a("192.0.2.1"), 8);
        assert_eq!(t.lookup_dst(&v4), Some('d'));
        assert_eq!(t.lookup_src(&v4), Some('s'));
        let v6 = packet(a("2001:db8:5::1"), a("2001:db8:d::1"), 0);
        assert_eq!(t.lookup_dst(&v6), Some('D'));
        assert_eq!(t.lookup_src(&v6), Some('S'));
    }

    #[test]
    fn packet_lookups_reject_short_and_foreign_input() {
        let mut t = AllowedIps::new();
        t.insert(p("0.0.0.0/0"), 4);
        t.insert(p("::/0"), 6);
        let v4 = packet(a("192.0.2.1"), a("192.0.2.2"), 0);
        let v6 = packet(a("2001:db8::1"), a("2001:db8::2"), 0);
        assert_eq!(t.lookup_dst(&v4), Some(4));
        assert_eq!(t.lookup_dst(&v6), Some(6));
        assert_eq!(t.lookup_dst(&v4[..19]), None);
        assert_eq!(t.lookup_src(&v4[..19]), None);
        assert_eq!(t.lookup_dst(&v6[..39]), None);
        assert_eq!(t.lookup_src(&v6[..24]), None);
        assert_eq!(t.lookup_dst(&[]), None);
        let mut other = v4.clone();
        other[0] = 0x55;
        assert_eq!(t.lookup_dst(&other), None);
        // A 40-byte buffer that says IPv4 is read as IPv4, not as IPv6.
        let mut long_v4 = v4;
        long_v4.resize(40, 0);
        assert_eq!(t.lookup_dst(&long_v4), Some(4));
    }

    proptest! {
        #[test]
        fn packet_lookups_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut t = AllowedIps::new();
            t.insert(p("0.0.0.0/0"), 4);
            t.insert(p("::/0"), 6);
            let want = match (bytes.first().map(|b| b >> 4), bytes.len()) {
                (Some(4), 20..) => Some(4),
                (Some(6), 40..) => Some(6),
                _ => None,
            };
            prop_assert_eq!(t.lookup_dst(&bytes), want);
            prop_assert_eq!(t.lookup_src(&bytes), want);
        }

        #[test]
        fn packet_lookup_equals_address_lookup(src: u128, dst: u128, v4: bool, len in 0u8..=32) {
            let (s, d): (IpAddr, IpAddr) = if v4 {
                (Ipv4Addr::from_bits(src as u32).into(), Ipv4Addr::from_bits(dst as u32).into())
            } else {
                (Ipv6Addr::from_bits(src).into(), Ipv6Addr::from_bits(dst).into())
            };
            let mut t = AllowedIps::new();
            t.insert(IpPrefix::new(s, len).unwrap(), 's');
            t.insert(IpPrefix::new(d, len).unwrap(), 'd');
            let bytes = packet(s, d, 3);
            prop_assert_eq!(t.lookup_src(&bytes), t.lookup(s));
            prop_assert_eq!(t.lookup_dst(&bytes), t.lookup(d));
            prop_assert_eq!(t.lookup_dst(&bytes), Some(t.get(IpPrefix::new(d, len).unwrap()).unwrap()));
        }
    }
}

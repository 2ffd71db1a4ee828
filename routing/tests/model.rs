//! The tries against a linear scan: random sequences of updates and lookups, applied to the real
//! structure and to a `Vec` of entries whose lookup picks the longest containing prefix by brute force.
//!
//! Addresses and lengths are drawn to provoke the edge cases: a few shared base addresses and their
//! one-bit and low-octet neighbours (so prefixes overlap and nest), `/0`, host routes, lengths on and
//! off octet boundaries, and a handful of peers (so prefixes move between them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};
use meshd_routing::{AllowedIps, PrefixMap};
use proptest::prelude::*;
use proptest::sample::select;

const V4_BASES: [u32; 7] = [
    0,
    u32::MAX,
    0x0a00_0000,
    0x0a01_0203,
    0xc000_0201,
    0x8000_0000,
    0x7fff_ffff,
];
const V6_BASES: [u128; 6] = [
    0,
    u128::MAX,
    0x2001_0db8 << 96,
    0x2001_0db8 << 96 | 1,
    0xfe80 << 112,
    1 << 127,
];

fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        1 => any::<u32>(),
        2 => select(&V4_BASES[..]),
        3 => (select(&V4_BASES[..]), 0u32..32).prop_map(|(b, i)| b ^ 1 << i),
        3 => (select(&V4_BASES[..]), any::<u8>()).prop_map(|(b, x)| b ^ u32::from(x)),
    ]
    .prop_map(Ipv4Addr::from_bits)
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        1 => any::<u128>(),
        2 => select(&V6_BASES[..]),
        3 => (select(&V6_BASES[..]), 0u32..128).prop_map(|(b, i)| b ^ 1 << i),
        3 => (select(&V6_BASES[..]), any::<u16>()).prop_map(|(b, x)| b ^ u128::from(x)),
    ]
    .prop_map(Ipv6Addr::from_bits)
}

fn v4_prefix() -> impl Strategy<Value = IpPrefix> {
    let len = prop_oneof![
        1 => Just(0u8),
        2 => Just(32u8),
        1 => select(&[1u8, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31][..]),
        3 => 0u8..=32,
    ];
    (v4_addr(), len).prop_map(|(a, l)| Ipv4Prefix::new(a, l).unwrap().into())
}

fn v6_prefix() -> impl Strategy<Value = IpPrefix> {
    let len = prop_oneof![
        1 => Just(0u8),
        2 => Just(128u8),
        1 => select(&[1u8, 8, 16, 32, 48, 56, 63, 64, 65, 119, 120, 121, 127][..]),
        3 => 0u8..=128,
    ];
    (v6_addr(), len).prop_map(|(a, l)| Ipv6Prefix::new(a, l).unwrap().into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Both,
}

fn prefix(family: Family) -> BoxedStrategy<IpPrefix> {
    match family {
        Family::V4 => v4_prefix().boxed(),
        Family::V6 => v6_prefix().boxed(),
        Family::Both => prop_oneof![v4_prefix(), v6_prefix()].boxed(),
    }
}

fn addr(family: Family) -> BoxedStrategy<IpAddr> {
    match family {
        Family::V4 => v4_addr().prop_map(IpAddr::V4).boxed(),
        Family::V6 => v6_addr().prop_map(IpAddr::V6).boxed(),
        Family::Both => prop_oneof![v4_addr().prop_map(IpAddr::V4), v6_addr().prop_map(IpAddr::V6)].boxed(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(IpPrefix, u8),
    Remove(IpPrefix),
    RemoveByPeer(u8),
    Lookup(IpAddr),
    Get(IpPrefix),
}

fn ops(family: Family, max: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (prefix(family), 0u8..4).prop_map(|(p, v)| Op::Insert(p, v)),
        3 => prefix(family).prop_map(Op::Remove),
        1 => (0u8..4).prop_map(Op::RemoveByPeer),
        6 => addr(family).prop_map(Op::Lookup),
        2 => prefix(family).prop_map(Op::Get),
    ];
    prop::collection::vec(op, 1..max)
}

/// The obviously correct table: a list of entries, scanned in full.
#[derive(Default)]
struct Model {
    entries: Vec<(IpPrefix, u8)>,
}

impl Model {
    fn insert(&mut self, prefix: IpPrefix, value: u8) -> Option<u8> {
        match self.entries.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((prefix, value));
                None
            }
        }
    }

    fn remove(&mut self, prefix: IpPrefix) -> Option<u8> {
        let at = self.entries.iter().position(|(p, _)| *p == prefix)?;
        Some(self.entries.swap_remove(at).1)
    }

    fn remove_by_peer(&mut self, peer: u8) -> usize {
        let before = self.entries.len();
        self.entries.retain(|&(_, v)| v != peer);
        before - self.entries.len()
    }

    fn get(&self, prefix: IpPrefix) -> Option<u8> {
        self.entries.iter().find(|(p, _)| *p == prefix).map(|&(_, v)| v)
    }

    fn longest_match(&self, addr: IpAddr) -> Option<(IpPrefix, u8)> {
        self.entries
            .iter()
            .filter(|(p, _)| p.contains(addr))
            .max_by_key(|(p, _)| p.len())
            .copied()
    }

    fn sorted(&self) -> Vec<(IpPrefix, u8)> {
        let mut all = self.entries.clone();
        all.sort();
        all
    }
}

/// Addresses at and around every stored prefix's edges, where an off-by-one would show.
fn probes(model: &Model) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for &(p, _) in &model.entries {
        match p {
            IpPrefix::V4(p) => {
                let first = p.addr().to_bits();
                let last = first | u32::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
                for a in [first, last, first.wrapping_sub(1), last.wrapping_add(1)] {
                    out.push(Ipv4Addr::from_bits(a).into());
                }
            }
            IpPrefix::V6(p) => {
                let first = p.addr().to_bits();
                let last = first | u128::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
                for a in [first, last, first.wrapping_sub(1), last.wrapping_add(1)] {
                    out.push(Ipv6Addr::from_bits(a).into());
                }
            }
        }
    }
    out
}

fn check_prefix_map(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut map = PrefixMap::new();
    let mut model = Model::default();
    for op in ops {
        match *op {
            Op::Insert(p, v) => prop_assert_eq!(map.insert(p, v), model.insert(p, v), "{:?}", op),
            Op::Remove(p) => prop_assert_eq!(map.remove(p), model.remove(p), "{:?}", op),
            Op::RemoveByPeer(peer) => {
                // PrefixMap has no owner index: the same through its public API.
                let doomed: Vec<IpPrefix> = map.iter().filter(|&(_, &v)| v == peer).map(|(p, _)| p).collect();
                for p in &doomed {
                    prop_assert_eq!(map.remove(*p), Some(peer));
                }
                prop_assert_eq!(doomed.len(), model.remove_by_peer(peer));
            }
            Op::Lookup(a) => {
                let want = model.longest_match(a);
                prop_assert_eq!(map.lookup(a).copied(), want.map(|(_, v)| v), "{:?}", op);
                prop_assert_eq!(map.longest_match(a).map(|(p, &v)| (p, v)), want, "{:?}", op);
            }
            Op::Get(p) => prop_assert_eq!(map.get(p).copied(), model.get(p), "{:?}", op),
        }
        prop_assert_eq!(map.len(), model.entries.len());
    }
    for a in probes(&model) {
        prop_assert_eq!(
            map.lookup(a).copied(),
            model.longest_match(a).map(|(_, v)| v),
            "probe {}",
            a
        );
    }
    for &(p, v) in &model.entries {
        prop_assert_eq!(map.get(p), Some(&v));
    }
    let listed: Vec<(IpPrefix, u8)> = map.iter().map(|(p, &v)| (p, v)).collect();
    prop_assert_eq!(listed, model.sorted());
    prop_assert_eq!(map.iter().len(), model.entries.len());
    Ok(())
}

fn check_allowed_ips(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut table = AllowedIps::new();
    let mut model = Model::default();
    for op in ops {
        match *op {
            Op::Insert(p, peer) => prop_assert_eq!(table.insert(p, peer), model.insert(p, peer), "{:?}", op),
            Op::Remove(p) => prop_assert_eq!(table.remove(p), model.remove(p), "{:?}", op),
            Op::RemoveByPeer(peer) => {
                prop_assert_eq!(table.remove_by_peer(peer), model.remove_by_peer(peer), "{:?}", op);
                prop_assert_eq!(table.prefixes_of(peer).count(), 0);
            }
            Op::Lookup(a) => {
                let want = model.longest_match(a).map(|(_, v)| v);
                prop_assert_eq!(table.lookup(a), want, "{:?}", op);
            }
            Op::Get(p) => prop_assert_eq!(table.get(p), model.get(p), "{:?}", op),
        }
        prop_assert_eq!(table.len(), model.entries.len());
    }
    for a in probes(&model) {
        prop_assert_eq!(
            table.lookup(a),
            model.longest_match(a).map(|(_, v)| v),
            "probe {}",
            a
        );
    }
    for peer in 0..4 {
        let mut want: Vec<IpPrefix> = model
            .entries
            .iter()
            .filter(|&&(_, v)| v == peer)
            .map(|&(p, _)| p)
            .collect();
        want.sort();
        let got: Vec<IpPrefix> = table.prefixes_of(peer).collect();
        prop_assert_eq!(got, want, "prefixes of peer {}", peer);
    }
    let listed: Vec<(IpPrefix, u8)> = table.iter().collect();
    prop_assert_eq!(listed, model.sorted());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn prefix_map_v4_matches_linear_scan(ops in ops(Family::V4, 200)) {
        check_prefix_map(&ops)?;
    }

    #[test]
    fn prefix_map_v6_matches_linear_scan(ops in ops(Family::V6, 200)) {
        check_prefix_map(&ops)?;
    }

    #[test]
    fn prefix_map_mixed_families_match_linear_scan(ops in ops(Family::Both, 200)) {
        check_prefix_map(&ops)?;
    }

    #[test]
    fn allowed_ips_v4_matches_linear_scan(ops in ops(Family::V4, 200)) {
        check_allowed_ips(&ops)?;
    }

    #[test]
    fn allowed_ips_v6_matches_linear_scan(ops in ops(Family::V6, 200)) {
        check_allowed_ips(&ops)?;
    }

    #[test]
    fn allowed_ips_mixed_families_match_linear_scan(ops in ops(Family::Both, 200)) {
        check_allowed_ips(&ops)?;
    }
}

//! AllowedIps against a linear scan: any sequence of updates, and every lookup agrees with the entry
//! list searched in full for the longest containing prefix.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use meshd_packet::IpPrefix;
use meshd_routing::AllowedIps;

#[derive(Arbitrary, Debug)]
enum Op {
    Insert {
        addr: IpAddr,
        len: u8,
        peer: u8,
    },
    Remove {
        addr: IpAddr,
        len: u8,
    },
    RemoveByPeer(u8),
    Lookup(IpAddr),
    /// The edges of a stored prefix (first, last, and just outside), where off-by-ones show.
    Probe(u16),
    /// A raw packet: the version nibble and fixed offsets decide which address is looked up.
    Packet(Vec<u8>),
}

const PEERS: u8 = 4;

fn prefix(addr: IpAddr, len: u8) -> IpPrefix {
    let width = if addr.is_ipv4() { 33 } else { 129 };
    IpPrefix::new(addr, len % width).expect("length reduced below the width")
}

fn edges(p: IpPrefix) -> [IpAddr; 4] {
    match p {
        IpPrefix::V4(p) => {
            let first = p.addr().to_bits();
            let last = first | u32::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            [first, last, first.wrapping_sub(1), last.wrapping_add(1)].map(|a| Ipv4Addr::from_bits(a).into())
        }
        IpPrefix::V6(p) => {
            let first = p.addr().to_bits();
            let last = first | u128::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            [first, last, first.wrapping_sub(1), last.wrapping_add(1)].map(|a| Ipv6Addr::from_bits(a).into())
        }
    }
}

struct Model(Vec<(IpPrefix, u8)>);

impl Model {
    fn lookup(&self, addr: IpAddr) -> Option<u8> {
        self.0
            .iter()
            .filter(|(p, _)| p.contains(addr))
            .max_by_key(|(p, _)| p.len())
            .map(|&(_, v)| v)
    }
}

/// The destination of a raw packet as the contract states it, written independently of the crate.
fn destination(bytes: &[u8]) -> Option<IpAddr> {
    match (bytes.first()? >> 4, bytes.len()) {
        (4, 20..) => Some(IpAddr::from(<[u8; 4]>::try_from(&bytes[16..20]).ok()?)),
        (6, 40..) => Some(IpAddr::from(<[u8; 16]>::try_from(&bytes[24..40]).ok()?)),
        _ => None,
    }
}

fn source(bytes: &[u8]) -> Option<IpAddr> {
    match (bytes.first()? >> 4, bytes.len()) {
        (4, 20..) => Some(IpAddr::from(<[u8; 4]>::try_from(&bytes[12..16]).ok()?)),
        (6, 40..) => Some(IpAddr::from(<[u8; 16]>::try_from(&bytes[8..24]).ok()?)),
        _ => None,
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut table = AllowedIps::new();
    let mut model = Model(Vec::new());
    for op in ops.into_iter().take(1000) {
        match op {
            Op::Insert { addr, len, peer } => {
                let (p, peer) = (prefix(addr, len), peer % PEERS);
                let old = match model.0.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, v)) => Some(std::mem::replace(v, peer)),
                    None => {
                        model.0.push((p, peer));
                        None
                    }
                };
                assert_eq!(table.insert(p, peer), old);
            }
            Op::Remove { addr, len } => {
                let p = prefix(addr, len);
                let old = model
                    .0
                    .iter()
                    .position(|(q, _)| *q == p)
                    .map(|i| model.0.swap_remove(i).1);
                assert_eq!(table.remove(p), old);
            }
            Op::RemoveByPeer(peer) => {
                let peer = peer % PEERS;
                let before = model.0.len();
                model.0.retain(|&(_, v)| v != peer);
                assert_eq!(table.remove_by_peer(peer), before - model.0.len());
            }
            Op::Lookup(addr) => assert_eq!(table.lookup(addr), model.lookup(addr), "lookup {addr}"),
            Op::Probe(i) => {
                if let Some(&(p, _)) = model.0.get(usize::from(i) % model.0.len().max(1)) {
                    for addr in edges(p) {
                        assert_eq!(table.lookup(addr), model.lookup(addr), "edge {addr} of {p}");
                    }
                }
            }
            Op::Packet(bytes) => {
                assert_eq!(
                    table.lookup_dst(&bytes),
                    destination(&bytes).and_then(|a| model.lookup(a))
                );
                assert_eq!(
                    table.lookup_src(&bytes),
                    source(&bytes).and_then(|a| model.lookup(a))
                );
            }
        }
        assert_eq!(table.len(), model.0.len());
    }
    for peer in 0..PEERS {
        let mut want: Vec<IpPrefix> = model
            .0
            .iter()
            .filter(|&&(_, v)| v == peer)
            .map(|&(p, _)| p)
            .collect();
        want.sort();
        assert!(table.prefixes_of(peer).eq(want), "prefixes of peer {peer}");
    }
    model.0.sort();
    assert!(table.iter().eq(model.0.iter().copied()), "full listing");
});

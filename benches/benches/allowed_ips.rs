//! Allowed-IPs lookup and build cost on tables shaped like a mesh's.
//!
//! IPv4 tables: 30% `/32` host routes, 60% `/16`-`/24`, 8% `/25`-`/31`, 2% `/8`-`/15`, at uniformly
//! random addresses. IPv6 tables: 30% `/128`, the rest `/32`-`/64` (mostly `/48`-`/64`) and a few
//! `/16`-`/31`, inside `2000::/3`. Each lookup benchmark cycles through a precomputed array of
//! addresses so it measures the lookup rather than the RNG: `random` draws them uniformly (mostly
//! shallow matches or misses), `hit` picks a random address inside a random stored prefix (the data
//! path's normal case, and the deepest walks).
//!
//! Run: `cargo bench -p meshd-benches --bench allowed_ips`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};
use meshd_routing::AllowedIps;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const SIZES: [usize; 2] = [10_000, 100_000];
/// Lookup addresses per benchmark; a power of two so the index wraps with a mask.
const ADDRESSES: usize = 1 << 14;
const PEERS: u32 = 1_000;

fn below(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    // Modulo bias is irrelevant for a workload generator.
    rng.next_u32() % n
}

fn in_range(rng: &mut ChaCha8Rng, lo: u8, hi: u8) -> u8 {
    lo + below(rng, u32::from(hi - lo) + 1) as u8
}

fn u128_from(rng: &mut ChaCha8Rng) -> u128 {
    u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
}

fn v4_prefix(rng: &mut ChaCha8Rng) -> IpPrefix {
    let len = match below(rng, 100) {
        0..30 => 32,
        30..90 => in_range(rng, 16, 24),
        90..98 => in_range(rng, 25, 31),
        _ => in_range(rng, 8, 15),
    };
    Ipv4Prefix::new(Ipv4Addr::from_bits(rng.next_u32()), len)
        .expect("length within 32")
        .into()
}

fn v6_addr(rng: &mut ChaCha8Rng) -> Ipv6Addr {
    Ipv6Addr::from_bits(u128_from(rng) >> 3 | 1 << 125)
}

fn v6_prefix(rng: &mut ChaCha8Rng) -> IpPrefix {
    let len = match below(rng, 100) {
        0..30 => 128,
        30..50 => 64,
        50..65 => 56,
        65..80 => 48,
        80..98 => in_range(rng, 32, 64),
        _ => in_range(rng, 16, 31),
    };
    Ipv6Prefix::new(v6_addr(rng), len)
        .expect("length within 128")
        .into()
}

/// A random address inside `prefix`: its network bits, random host bits.
fn inside(rng: &mut ChaCha8Rng, prefix: IpPrefix) -> IpAddr {
    match prefix {
        IpPrefix::V4(p) => {
            let host = u32::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            Ipv4Addr::from_bits(p.addr().to_bits() | rng.next_u32() & host).into()
        }
        IpPrefix::V6(p) => {
            let host = u128::MAX.checked_shr(u32::from(p.len())).unwrap_or(0);
            Ipv6Addr::from_bits(p.addr().to_bits() | u128_from(rng) & host).into()
        }
    }
}

struct Workload {
    prefixes: Vec<IpPrefix>,
    random: Vec<IpAddr>,
    hit: Vec<IpAddr>,
}

fn workload(family: &str, n: usize) -> Workload {
    let seed = if family == "ipv4" { 4 } else { 6 } * 1_000_000 + n as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let make: fn(&mut ChaCha8Rng) -> IpPrefix = if family == "ipv4" { v4_prefix } else { v6_prefix };
    let prefixes: Vec<IpPrefix> = (0..n).map(|_| make(&mut rng)).collect();
    let random = (0..ADDRESSES)
        .map(|_| match family {
            "ipv4" => Ipv4Addr::from_bits(rng.next_u32()).into(),
            _ => v6_addr(&mut rng).into(),
        })
        .collect();
    let hit = (0..ADDRESSES)
        .map(|_| {
            let p = prefixes[below(&mut rng, n as u32) as usize];
            inside(&mut rng, p)
        })
        .collect();
    Workload {
        prefixes,
        random,
        hit,
    }
}

fn build(prefixes: &[IpPrefix]) -> AllowedIps<u32> {
    let mut table = AllowedIps::new();
    for (i, &p) in prefixes.iter().enumerate() {
        table.insert(p, i as u32 % PEERS);
    }
    table
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("allowed_ips_lookup");
    group.throughput(Throughput::Elements(1));
    for family in ["ipv4", "ipv6"] {
        for n in SIZES {
            let w = workload(family, n);
            let table = build(&w.prefixes);
            for (kind, addrs) in [("random", &w.random), ("hit", &w.hit)] {
                let id = BenchmarkId::new(format!("{family}_{kind}"), n);
                group.bench_function(id, |b| {
                    let mut i = 0usize;
                    b.iter(|| {
                        let addr = addrs[i & (ADDRESSES - 1)];
                        i = i.wrapping_add(1);
                        table.lookup(black_box(addr))
                    })
                });
            }
        }
    }
    group.finish();
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("allowed_ips_insert");
    group.sample_size(10);
    for family in ["ipv4", "ipv6"] {
        let n = 100_000;
        let w = workload(family, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new(family, n), |b| {
            b.iter(|| build(black_box(&w.prefixes)))
        });
        let table = build(&w.prefixes);
        group.bench_function(BenchmarkId::new(format!("{family}_remove_by_peer"), n), |b| {
            b.iter_batched(
                || table.clone(),
                |mut t| {
                    for peer in 0..PEERS {
                        t.remove_by_peer(peer);
                    }
                    t
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, insert);
criterion_main!(benches);

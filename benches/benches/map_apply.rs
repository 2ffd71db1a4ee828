//! Applying a network map: `Node::reconcile` with 1,000 peers.
//!
//! * `map_apply/first/1000`: a fresh node (private key set, no peers) takes a map of 1,000 peers.
//! * `map_apply/one_changed/1000`: a node with those peers takes a map that differs in one peer's
//!   allowed IPs (the two maps alternate, so every call changes one peer).
//! * `map_apply/unchanged/1000`: the same map again, which changes nothing.
//!
//! Each peer has an IPv4 /32 and an IPv6 /128, the relay, and for every other peer a direct address;
//! no persistent keepalive (turning one on starts a handshake at once, which is not the map's cost).
//! The events each call queues are drained inside the measurement.
//!
//! Run: `cargo bench -p meshd-benches --bench map_apply`.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use meshd_core::node::SetDevice;
use meshd_core::node::{Node, PeerSpec};
use meshd_crypto::StaticSecret;
use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

const PEERS: usize = 1000;

fn epoch() -> Instant {
    // The benchmark's fixed `now`; the benchmarked code itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn map(n: usize) -> Vec<PeerSpec> {
    let mut rng = ChaCha20Rng::seed_from_u64(1000);
    let relay: SocketAddr = "203.0.113.1:51820".parse().unwrap();
    (0..n)
        .map(|i| {
            let i = i as u32 + 2;
            let v4 = Ipv4Addr::from_bits(0x6440_0000 | i);
            let v6 = Ipv6Addr::from_bits(0xfd00_u128 << 112 | u128::from(i));
            PeerSpec {
                key: *StaticSecret::random(&mut rng).public_key(),
                allowed_ips: vec![
                    IpPrefix::V4(Ipv4Prefix::from(v4)),
                    IpPrefix::V6(Ipv6Prefix::from(v6)),
                ],
                direct: i
                    .is_multiple_of(2)
                    .then(|| SocketAddr::from((Ipv4Addr::from_bits(0xc612_0000 | i), 51820))),
                relay: Some(relay),
                persistent_keepalive: 0,
            }
        })
        .collect()
}

fn fresh_node() -> Node {
    let mut node = Node::new([7; 32], 1420);
    let set = SetDevice {
        private_key: Some(Some(Zeroizing::new([1; 32]))),
        ..Default::default()
    };
    node.apply(epoch(), wall(), &set).expect("a private key");
    drain(&mut node);
    node
}

fn drain(node: &mut Node) -> usize {
    std::iter::from_fn(|| node.poll_event()).count()
}

fn bench(c: &mut Criterion) {
    let now = epoch();
    let specs = map(PEERS);
    let mut changed = specs.clone();
    changed[PEERS / 2].allowed_ips = vec![IpPrefix::V4(Ipv4Prefix::from(Ipv4Addr::new(100, 127, 0, 1)))];

    let mut group = c.benchmark_group("map_apply");
    group.bench_function(BenchmarkId::new("first", PEERS), |b| {
        b.iter_batched(
            fresh_node,
            |mut node| {
                black_box(node.reconcile(now, wall(), &specs));
                drain(&mut node);
                node
            },
            BatchSize::LargeInput,
        )
    });

    let mut node = fresh_node();
    node.reconcile(now, wall(), &specs);
    drain(&mut node);
    let mut flip = false;
    group.bench_function(BenchmarkId::new("one_changed", PEERS), |b| {
        b.iter(|| {
            flip = !flip;
            let map = if flip { &changed } else { &specs };
            let summary = node.reconcile(now, wall(), map);
            debug_assert_eq!(summary.updated, 1);
            black_box(summary);
            drain(&mut node)
        })
    });
    // Leave the node on `specs` for the no-op case.
    if flip {
        node.reconcile(now, wall(), &specs);
        drain(&mut node);
    }
    group.bench_function(BenchmarkId::new("unchanged", PEERS), |b| {
        b.iter(|| {
            let summary = node.reconcile(now, wall(), &specs);
            debug_assert!(summary.is_empty());
            black_box(summary)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

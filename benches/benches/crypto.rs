//! The data path's AEAD and the handshake, meshd beside boringtun 0.7.
//!
//! * `seal_open/*`: one packet sealed and opened again, the per-packet crypto of a tunnel's two ends.
//!   meshd works in place on one buffer with headroom and tailroom; boringtun copies the packet into
//!   its destination buffer on each side, as its API requires.
//! * `encapsulate/*`: the sender's per-packet work alone: header, counter, padding, seal.
//! * `handshake`: initiation, response and both sides' key derivation.
//!
//! Both implementations use ring's ChaCha20-Poly1305 and warm, established sessions. Packets are
//! IPv4 so boringtun's receive path, which checks the inner header, accepts them.
//!
//! Run: `cargo bench -p meshd-benches --bench crypto`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meshd_crypto::StaticSecret;
use meshd_crypto::noise::{self, Identity, PeerHandshake, Tai64N};
use meshd_crypto::session::{self, HEADROOM, Receiver, Sender, TAILROOM};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const SIZES: [usize; 3] = [64, 512, 1420];
const MTU: usize = 1420;

fn ipv4_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[9] = 17;
    p
}

fn epoch() -> Instant {
    // The virtual clock's epoch; the benchmarked code itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn meshd_pair(rng: &mut ChaCha20Rng, now: Instant) -> ((Sender, Receiver), (Sender, Receiver)) {
    let a = Identity::new(StaticSecret::random(rng));
    let b = Identity::new(StaticSecret::random(rng));
    let mut pa = PeerHandshake::new(&a, *b.public_key(), None).unwrap();
    let mut pb = PeerHandshake::new(&b, *a.public_key(), None).unwrap();
    let ts = Tai64N::from_unix(Duration::from_secs(1_700_000_000));
    let (state, init) = noise::create_initiation(&a, &mut pa, 1, ts, now, rng).unwrap();
    let (resp, kb) = noise::begin_response(&b, &init)
        .unwrap()
        .finish(&mut pb, 2, now, rng)
        .unwrap();
    let ka = state.consume_response(&a, &pa, &resp).unwrap();
    (session::new_session(ka, now), session::new_session(kb, now))
}

fn boringtun_pair(rng: &mut ChaCha20Rng) -> (Tunn, Tunn) {
    let sa = x25519_dalek::StaticSecret::random_from_rng(&mut *rng);
    let sb = x25519_dalek::StaticSecret::random_from_rng(&mut *rng);
    let (pa, pb) = (
        x25519_dalek::PublicKey::from(&sa),
        x25519_dalek::PublicKey::from(&sb),
    );
    let mut a = Tunn::new(sa, pb, None, None, 1, None);
    let mut b = Tunn::new(sb, pa, None, None, 2, None);
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let init = match a.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => panic!("no initiation"),
    };
    let resp = match b.decapsulate(None, &init, &mut out) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => panic!("no response"),
    };
    let keepalive = match a.decapsulate(None, &resp, &mut out) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => panic!("no keepalive"),
    };
    assert!(matches!(
        b.decapsulate(None, &keepalive, &mut out),
        TunnResult::Done
    ));
    (a, b)
}

fn seal_open(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let now = epoch();
    let mut group = c.benchmark_group("seal_open");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let packet = ipv4_packet(size);

        let ((tx, _), (_, mut rx)) = meshd_pair(&mut rng, now);
        let mut buf = vec![0u8; HEADROOM + size + TAILROOM];
        buf[HEADROOM..HEADROOM + size].copy_from_slice(&packet);
        group.bench_with_input(BenchmarkId::new("meshd", size), &size, |b, &size| {
            b.iter(|| {
                // Sealing and opening in place leaves the plaintext where it was for the next round.
                let n = tx.encapsulate(now, &mut buf, size, MTU).unwrap();
                let d = rx.decapsulate(now, black_box(&mut buf[..n])).unwrap();
                black_box(d);
            })
        });

        let (mut a, mut bt) = boringtun_pair(&mut rng);
        let mut wire = vec![0u8; size + 64];
        let mut inner = vec![0u8; size + 64];
        group.bench_with_input(BenchmarkId::new("boringtun", size), &size, |b, _| {
            b.iter(|| {
                let n = match a.encapsulate(black_box(&packet), &mut wire) {
                    TunnResult::WriteToNetwork(p) => p.len(),
                    _ => panic!("encapsulate"),
                };
                match bt.decapsulate(None, black_box(&wire[..n]), &mut inner) {
                    TunnResult::WriteToTunnelV4(p, _) => black_box(p.len()),
                    _ => panic!("decapsulate"),
                };
            })
        });
    }
    group.finish();
}

fn encapsulate(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let now = epoch();
    let mut group = c.benchmark_group("encapsulate");
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let packet = ipv4_packet(size);

        let ((tx, _), _) = meshd_pair(&mut rng, now);
        let mut buf = vec![0u8; HEADROOM + size + TAILROOM];
        buf[HEADROOM..HEADROOM + size].copy_from_slice(&packet);
        group.bench_with_input(BenchmarkId::new("meshd", size), &size, |b, &size| {
            // Each round seals the previous round's ciphertext: same work, no copy to reset.
            b.iter(|| black_box(tx.encapsulate(now, black_box(&mut buf), size, MTU).unwrap()))
        });

        let (mut a, _) = boringtun_pair(&mut rng);
        let mut wire = vec![0u8; size + 64];
        group.bench_with_input(BenchmarkId::new("boringtun", size), &size, |b, _| {
            b.iter(|| match a.encapsulate(black_box(&packet), &mut wire) {
                TunnResult::WriteToNetwork(p) => black_box(p.len()),
                _ => panic!("encapsulate"),
            })
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut now = epoch();
    let a = Identity::new(StaticSecret::random(&mut rng));
    let b = Identity::new(StaticSecret::random(&mut rng));
    let mut pa = PeerHandshake::new(&a, *b.public_key(), None).unwrap();
    let mut pb = PeerHandshake::new(&b, *a.public_key(), None).unwrap();
    let mut secs = 1_700_000_000u64;
    c.bench_function("handshake/meshd", |bench| {
        bench.iter(|| {
            // Each initiation must carry a newer timestamp and arrive after the flood interval.
            secs += 1;
            now += Duration::from_millis(20);
            let ts = Tai64N::from_unix(Duration::from_secs(secs));
            let index = rng.next_u32();
            let (state, init) = noise::create_initiation(&a, &mut pa, index, ts, now, &mut rng).unwrap();
            let incoming = noise::begin_response(&b, black_box(&init)).unwrap();
            let (resp, kb) = incoming.finish(&mut pb, index ^ 1, now, &mut rng).unwrap();
            let ka = state.consume_response(&a, &pa, black_box(&resp)).unwrap();
            black_box((session::new_session(ka, now), session::new_session(kb, now)));
        })
    });
}

criterion_group!(benches, seal_open, encapsulate, handshake);
criterion_main!(benches);

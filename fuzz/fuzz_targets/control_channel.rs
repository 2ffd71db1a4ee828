//! The controller's side of the control channel as a stranger reaches it (`meshd_core::channel`):
//! arbitrary datagrams never open; a genuine envelope around arbitrary plaintext opens exactly when
//! the plaintext decodes to a fresh message, and then to that message; no one-byte change of it
//! opens; once refused, it never opens again; and a source over its limit costs no key derivation.
//!
//! Input layout: 8 bytes RNG seed, 2 bytes position and 1 byte mask of the flip, 1 byte of flags
//! (bit 0: accept rather than refuse the genuine message; bit 1: add envelopes from other strangers),
//! then the bytes that serve both as an arbitrary datagram and as the genuine envelope's plaintext.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshd_core::channel::{Admit, Channel, FRESHNESS, OpenError};
use meshd_core::message::Envelope;
use meshd_crypto::StaticSecret;
use meshd_crypto::sealed::{self, PairKey, SealedError};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const WALL: Duration = Duration::from_secs(1_800_000_000);

/// What costs a key derivation on the attacker's side, done once per process so that the runs spend
/// their time in the receiver: the stranger's key to the controller, and envelopes from other
/// strangers (valid seals of an empty plaintext).
struct Fixture {
    alice: PairKey,
    others: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ctl = StaticSecret::from_bytes([2; 32]);
        let alice = PairKey::outgoing(&StaticSecret::from_bytes([1; 32]), ctl.public_key()).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let others = (0..8u8)
            .map(|k| {
                let mut bytes = [9u8; 32];
                bytes[1] = k;
                let mut env = Vec::new();
                sealed::seal(
                    &StaticSecret::from_bytes(bytes),
                    ctl.public_key(),
                    b"",
                    &mut env,
                    &mut rng,
                )
                .unwrap();
                env
            })
            .collect();
        Fixture { alice, others }
    })
}

fuzz_target!(|data: &[u8]| {
    // A fixed epoch for the virtual clock; the channel itself reads no clock.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let from: IpAddr = "192.0.2.7".parse().unwrap();
    let stranger = |_: &meshd_crypto::PublicKey| Admit::Stranger;
    let ctl_secret = StaticSecret::from_bytes([2; 32]);
    let mut ctl = Channel::new(ctl_secret);

    // Arbitrary bytes never open.
    match ctl.open(now, WALL, from, data, stranger) {
        Ok(opened) => panic!("arbitrary bytes opened: {opened:?}"),
        Err(OpenError::Decode(_)) => panic!("arbitrary bytes authenticated"),
        Err(_) => {}
    }

    let (head, plaintext) = data.split_at(data.len().min(12));
    let mut seed = [0u8; 8];
    seed[..head.len().min(8)].copy_from_slice(&head[..head.len().min(8)]);
    let pos = head
        .get(8..10)
        .map_or(0, |p| usize::from(u16::from_le_bytes([p[0], p[1]])));
    let mask = head.get(10).copied().filter(|m| *m != 0).unwrap_or(1);
    let flags = head.get(11).copied().unwrap_or(0);

    // A genuine envelope around the plaintext, from a stranger's key.
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from_le_bytes(seed));
    let fixture = fixture();
    let alice = fixture.alice.sender();
    let mut env = Vec::new();
    fixture.alice.seal(plaintext, &mut env, &mut rng).unwrap();

    // Any one byte changed: never opens.
    let mut forged = env.clone();
    let i = pos % forged.len();
    forged[i] ^= mask;
    assert!(
        ctl.open(now, WALL, from, &forged, stranger).is_err(),
        "byte {i} ^ {mask:#x} still opened"
    );

    let expected = Envelope::decode(plaintext);
    match (ctl.open(now, WALL, from, &env, stranger), &expected) {
        (Ok(opened), Ok(envelope)) => {
            assert_eq!(opened.sender, *alice);
            assert_eq!(opened.counter, envelope.counter);
            assert_eq!(opened.body, envelope.body);
            assert!(Duration::from_nanos(envelope.counter).abs_diff(WALL) <= FRESHNESS);
            if flags & 1 == 1 {
                ctl.accept(&opened.sender, opened.counter).unwrap();
            } else {
                ctl.refuse(now, &opened.sender, opened.counter);
            }
            assert_eq!(
                ctl.open(now, WALL, from, &env, stranger).unwrap_err(),
                OpenError::Sealed(SealedError::Replayed),
                "a replay opened"
            );
        }
        (Err(OpenError::Decode(_)), Err(_)) => {}
        (Err(OpenError::Sealed(SealedError::Stale)), Ok(envelope)) => {
            assert!(Duration::from_nanos(envelope.counter).abs_diff(WALL) > FRESHNESS);
        }
        // The first datagram and the flip may have used up some of this source's burst.
        (Err(OpenError::RateLimited), _) => {}
        (got, want) => panic!("opened as {got:?}, plaintext decodes as {want:?}"),
    }

    // A source over its limit: no key derived for anyone new. Every envelope so far came from one
    // source, so however the runs above went, no more than its burst of keys was derived.
    // (Only on some runs: the derivations it allows are the slow part.)
    if flags & 2 == 2 {
        for other in &fixture.others {
            let _ = ctl.open(now, WALL, from, other, stranger);
        }
    }
    assert!(ctl.derivations() <= 5, "one source derived more than its burst");
});

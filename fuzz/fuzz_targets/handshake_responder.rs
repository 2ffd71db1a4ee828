//! The responder never panics on arbitrary input, and never accepts a changed initiation that the
//! reference (the same responder on the unchanged message) would not: any mutation of a valid
//! initiation outside `mac2` must be refused by `mac1` or by the handshake.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use meshd_crypto::cookie::CookieChecker;
use meshd_crypto::noise::{self, Identity, PeerHandshake, Tai64N};
use meshd_crypto::{PresharedKey, StaticSecret};
use meshd_packet::wire::IntoBytes;
use meshd_packet::wire::{self, INITIATION_MAC2_OFFSET, Message};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

struct Fixture {
    initiator: Identity,
    responder: Identity,
    valid: Vec<u8>,
    epoch: Instant,
}

const PSK: [u8; 32] = [0x33; 32];

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let initiator = Identity::new(StaticSecret::random(&mut rng));
    let responder = Identity::new(StaticSecret::random(&mut rng));
    // The epoch of the virtual clock; the code under test never reads a clock.
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    let mut peer = PeerHandshake::new(
        &initiator,
        *responder.public_key(),
        Some(PresharedKey::from_bytes(PSK)),
    )
    .unwrap();
    let ts = Tai64N::from_unix(Duration::from_secs(1_700_000_000));
    let (_, msg) = noise::create_initiation(&initiator, &mut peer, 0x1234, ts, epoch, &mut rng).unwrap();
    Fixture {
        initiator,
        responder,
        valid: msg.as_bytes().to_vec(),
        epoch,
    }
});

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Mutate {
        flips: Vec<(u16, u8)>,
        truncate: Option<u16>,
        extend: Vec<u8>,
    },
}

/// Whether a fresh responder accepts `bytes` as an initiation from the fixture's initiator.
fn accepts(f: &Fixture, bytes: &[u8]) -> bool {
    let Ok(Message::Initiation(m)) = wire::parse(bytes) else {
        return false;
    };
    if CookieChecker::new(f.responder.public_key())
        .verify_mac1(m)
        .is_err()
    {
        return false;
    }
    let Ok(incoming) = noise::begin_response(&f.responder, m) else {
        return false;
    };
    if incoming.initiator_static() != f.initiator.public_key() {
        return false;
    }
    let mut peer = PeerHandshake::new(
        &f.responder,
        *f.initiator.public_key(),
        Some(PresharedKey::from_bytes(PSK)),
    )
    .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    incoming.finish(&mut peer, 9, f.epoch, &mut rng).is_ok()
}

fuzz_target!(|input: Input| {
    let f = &*FIXTURE;
    match input {
        Input::Raw(bytes) => {
            let _ = accepts(f, &bytes);
        }
        Input::Mutate {
            flips,
            truncate,
            extend,
        } => {
            let mut b = f.valid.clone();
            for (at, x) in flips {
                let i = usize::from(at) % b.len();
                b[i] ^= x;
            }
            if let Some(n) = truncate {
                b.truncate(usize::from(n) % (b.len() + 1));
            }
            b.extend_from_slice(&extend);
            let unchanged_outside_mac2 =
                b.len() == f.valid.len() && b[..INITIATION_MAC2_OFFSET] == f.valid[..INITIATION_MAC2_OFFSET];
            assert_eq!(
                accepts(f, &b),
                unchanged_outside_mac2,
                "reference accepts only the original"
            );
        }
    }
});

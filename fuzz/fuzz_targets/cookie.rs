//! MAC checks and cookie replies never panic on arbitrary input; a genuine cookie round trip is
//! accepted, makes mac2 valid for its own source address only, and no other reply is accepted.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use meshd_crypto::PublicKey;
use meshd_crypto::cookie::{CookieChecker, CookieState, MacVerdict};
use meshd_packet::wire::{CookieReply, HandshakeInitiation, HandshakeResponse};
use meshd_packet::wire::{FromBytes, IntoBytes};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
struct Input {
    receiver: [u8; 32],
    src: ([u8; 16], u16, bool),
    other: ([u8; 16], u16, bool),
    message: Vec<u8>,
    reply: Vec<u8>,
    under_load: bool,
    later_ms: u32,
    seed: u64,
}

fn addr((ip, port, v4): ([u8; 16], u16, bool)) -> SocketAddr {
    let ip = if v4 {
        IpAddr::from([ip[0], ip[1], ip[2], ip[3]])
    } else {
        IpAddr::from(ip)
    };
    SocketAddr::new(ip, port)
}

fuzz_target!(|input: Input| {
    // The epoch of the virtual clock; the code under test never reads a clock.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let later = now + Duration::from_millis(u64::from(input.later_ms));
    let mut rng = ChaCha20Rng::seed_from_u64(input.seed);
    let receiver = PublicKey::from_bytes(input.receiver);
    let mut checker = CookieChecker::new(&receiver);
    let mut state = CookieState::new(&receiver);
    let (src, other) = (addr(input.src), addr(input.other));

    // Arbitrary messages and replies: no panics.
    if let Ok(m) = HandshakeInitiation::ref_from_bytes(&input.message) {
        let _ = checker.check(m, src, input.under_load, later, &mut rng);
    }
    if let Ok(m) = HandshakeResponse::ref_from_bytes(&input.message) {
        let _ = checker.check(m, src, input.under_load, later, &mut rng);
    }

    // A genuine exchange.
    let mut first = HandshakeInitiation::new();
    first.sender_index.set(1);
    state.stamp(&mut first, now);
    assert_eq!(
        checker.check(&first, src, true, now, &mut rng),
        Ok(MacVerdict::SendCookie)
    );
    let genuine = checker.create_reply(&first, src, now, &mut rng);

    // Any other reply is refused and leaves the state able to take the genuine one.
    if let Ok(forged) = CookieReply::read_from_bytes(&input.reply)
        && forged.as_bytes() != genuine.as_bytes()
    {
        assert!(state.consume_reply(&forged, now).is_err());
    }
    state.consume_reply(&genuine, now).unwrap();

    let mut second = HandshakeInitiation::new();
    second.sender_index.set(2);
    state.stamp(&mut second, now);
    assert_eq!(
        checker.check(&second, src, true, now, &mut rng),
        Ok(MacVerdict::Accept)
    );
    if other != src {
        assert_eq!(
            checker.check(&second, other, true, now, &mut rng),
            Ok(MacVerdict::SendCookie)
        );
    }
});

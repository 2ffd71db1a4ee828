//! Interoperability with boringtun 0.7 (an independent WireGuard implementation) in both directions:
//! handshakes with and without a pre-shared key, data both ways compared byte for byte, keepalives,
//! rekeying driven by each side's timers under virtual clocks, and the cookie exchange under load.
//!
//! boringtun is built with its `mock-instant` feature, so its clock is a thread-local that only moves
//! when the test calls `MockClock::advance`; meshd's clock is the test's `Clock`. Both move together.

mod common;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use common::{Clock, Handled, Meshd, ipv4_packet, ipv6_packet};
use meshd_crypto::constants::{REKEY_AFTER_TIME, REKEY_TIMEOUT};
use meshd_crypto::{PublicKey, StaticSecret};
use mock_instant::MockClock;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
enum Bt {
    Network(Vec<u8>),
    Tunnel(Vec<u8>),
    Done,
    Err(#[allow(dead_code, reason = "shown by Debug in assertion messages")] String),
}

fn bt(r: TunnResult<'_>) -> Bt {
    match r {
        TunnResult::Done => Bt::Done,
        TunnResult::Err(e) => Bt::Err(format!("{e:?}")),
        TunnResult::WriteToNetwork(p) => Bt::Network(p.to_vec()),
        TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => Bt::Tunnel(p.to_vec()),
    }
}

const BT_ADDR: &str = "198.51.100.7";

fn bt_decap(t: &mut Tunn, datagram: &[u8]) -> Bt {
    let mut dst = vec![0u8; 2048];
    bt(t.decapsulate(Some(BT_ADDR.parse::<IpAddr>().unwrap()), datagram, &mut dst))
}

fn bt_encap(t: &mut Tunn, packet: &[u8]) -> Bt {
    let mut dst = vec![0u8; packet.len().max(148) + 32];
    bt(t.encapsulate(packet, &mut dst))
}

fn bt_timers(t: &mut Tunn) -> Bt {
    let mut dst = vec![0u8; 2048];
    bt(t.update_timers(&mut dst))
}

fn network(b: Bt) -> Vec<u8> {
    match b {
        Bt::Network(p) => p,
        other => panic!("expected a datagram from boringtun, got {other:?}"),
    }
}

/// Both clocks forward by `d`.
fn advance(clock: &mut Clock, d: Duration) {
    clock.advance(d);
    MockClock::advance(d);
}

struct Pair {
    meshd: Meshd,
    bt: Tunn,
    clock: Clock,
}

/// `bt_under_load`: give boringtun a rate limiter that allows zero handshakes without a cookie.
fn pair(psk: Option<[u8; 32]>, seed: u64, bt_under_load: bool) -> Pair {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let meshd_secret = StaticSecret::random(&mut rng);
    let bt_secret = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let bt_public = x25519_dalek::PublicKey::from(&bt_secret);
    let meshd_public = x25519_dalek::PublicKey::from(*meshd_secret.public_key().as_bytes());
    let limiter = bt_under_load.then(|| Arc::new(RateLimiter::new(&bt_public, 0)));
    let tunn = Tunn::new(bt_secret, meshd_public, psk, None, rng.next_u32() >> 8, limiter);
    let meshd = Meshd::new(
        meshd_secret,
        PublicKey::from_bytes(bt_public.to_bytes()),
        psk,
        seed + 1,
    );
    Pair {
        meshd,
        bt: tunn,
        clock: Clock::new(),
    }
}

/// Sizes worth checking: the smallest IP headers, sizes around the 16-byte padding boundary, and the
/// full 1420-byte MTU.
fn packets() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [20usize, 21, 31, 32, 33, 100, 576, 1419, 1420]
        .into_iter()
        .enumerate()
        .map(|(i, n)| ipv4_packet(n, i as u8))
        .collect();
    v.push(ipv6_packet(40, 0x66));
    v.push(ipv6_packet(1420, 0x67));
    v
}

/// Data both ways on the established sessions, including keepalives.
fn exchange_data(p: &mut Pair) {
    for packet in packets() {
        // meshd -> boringtun: boringtun trims meshd's padding by the IP length.
        let datagram = p.meshd.send(&p.clock, &packet);
        match bt_decap(&mut p.bt, &datagram) {
            Bt::Tunnel(got) => assert_eq!(got, packet, "meshd -> boringtun, {} bytes", packet.len()),
            other => panic!("boringtun refused meshd's {} bytes: {other:?}", packet.len()),
        }
        // boringtun -> meshd: boringtun does not pad, so the plaintext is the packet exactly.
        let datagram = network(bt_encap(&mut p.bt, &packet));
        match p.meshd.handle(&p.clock, &datagram) {
            Ok(Handled::Data(got)) => {
                assert_eq!(&got[..packet.len()], &packet[..], "boringtun -> meshd");
                assert!(got[packet.len()..].iter().all(|&b| b == 0));
            }
            other => panic!("meshd refused boringtun's {} bytes: {other:?}", packet.len()),
        }
    }
    let keepalive = p.meshd.send(&p.clock, &[]);
    assert_eq!(keepalive.len(), 32, "a keepalive is header and tag only");
    assert!(matches!(bt_decap(&mut p.bt, &keepalive), Bt::Done));
    let keepalive = network(bt_encap(&mut p.bt, &[]));
    assert_eq!(p.meshd.handle(&p.clock, &keepalive), Ok(Handled::Keepalive));
}

fn meshd_initiates(p: &mut Pair) {
    p.meshd.timers.on_handshake_wanted(p.clock.now);
    let out = p.meshd.poll(&p.clock);
    assert_eq!(out.len(), 1, "the timers ask for exactly one initiation");
    let response = network(bt_decap(&mut p.bt, &out[0]));
    assert_eq!(response.len(), 92);
    assert_eq!(
        p.meshd.handle(&p.clock, &response),
        Ok(Handled::HandshakeComplete)
    );
}

fn boringtun_initiates(p: &mut Pair) {
    let mut dst = vec![0u8; 256];
    let init = network(bt(p.bt.format_handshake_initiation(&mut dst, false)));
    let response = match p.meshd.handle(&p.clock, &init) {
        Ok(Handled::Reply(r)) => r,
        other => panic!("meshd refused boringtun's initiation: {other:?}"),
    };
    assert!(p.meshd.sender.is_none() || p.meshd.unconfirmed.is_some());
    // boringtun answers the response with a keepalive on the new session, which confirms it to meshd.
    let keepalive = network(bt_decap(&mut p.bt, &response));
    assert_eq!(p.meshd.handle(&p.clock, &keepalive), Ok(Handled::Keepalive));
    assert!(
        p.meshd.unconfirmed.is_none(),
        "the keepalive confirmed the session"
    );
}

#[test]
fn meshd_initiator_with_boringtun_responder() {
    for psk in [None, Some([0x5a; 32])] {
        let mut p = pair(psk, 1, false);
        meshd_initiates(&mut p);
        exchange_data(&mut p);
    }
}

#[test]
fn boringtun_initiator_with_meshd_responder() {
    for psk in [None, Some([0xa5; 32])] {
        let mut p = pair(psk, 2, false);
        boringtun_initiates(&mut p);
        exchange_data(&mut p);
    }
}

#[test]
fn psk_mismatch_fails_both_ways() {
    let mut p = pair(Some([1; 32]), 3, false);
    p.meshd
        .peer
        .set_preshared_key(Some(meshd_crypto::PresharedKey::from_bytes([2; 32])));
    let init = p.meshd.initiate(&p.clock, false);
    let response = network(bt_decap(&mut p.bt, &init));
    assert!(p.meshd.handle(&p.clock, &response).is_err());

    advance(&mut p.clock, Duration::from_secs(1));
    let mut dst = vec![0u8; 256];
    let init = network(bt(p.bt.format_handshake_initiation(&mut dst, true)));
    let Ok(Handled::Reply(response)) = p.meshd.handle(&p.clock, &init) else {
        panic!("the psk is not checked yet")
    };
    assert!(matches!(bt_decap(&mut p.bt, &response), Bt::Err(_)));
}

/// meshd's timers start the rekey: the initiator sends on a session REKEY_AFTER_TIME old.
#[test]
fn meshd_rekeys_after_rekey_after_time() {
    for psk in [None, Some([0x11; 32])] {
        let mut p = pair(psk, 4, false);
        meshd_initiates(&mut p);
        exchange_data(&mut p);
        let first_remote = p.meshd.sender.as_ref().unwrap().remote_index();
        assert!(p.meshd.poll(&p.clock).is_empty());

        advance(&mut p.clock, REKEY_AFTER_TIME + Duration::from_secs(1));
        // Sending still works on the old session, and makes the timers ask for a new handshake.
        let packet = ipv4_packet(100, 9);
        let datagram = p.meshd.send(&p.clock, &packet);
        assert!(matches!(bt_decap(&mut p.bt, &datagram), Bt::Tunnel(_)));
        let out = p.meshd.poll(&p.clock);
        assert_eq!(out.len(), 1);
        let response = network(bt_decap(&mut p.bt, &out[0]));
        assert_eq!(
            p.meshd.handle(&p.clock, &response),
            Ok(Handled::HandshakeComplete)
        );
        let second_remote = p.meshd.sender.as_ref().unwrap().remote_index();
        assert_ne!(first_remote, second_remote, "a new session");

        exchange_data(&mut p);
        // boringtun moved to the new session too: its data names meshd's newest receiver.
        let datagram = network(bt_encap(&mut p.bt, &packet));
        assert_eq!(&datagram[4..8], &p.meshd.receivers[0].local_index().to_le_bytes());
        assert!(p.meshd.poll(&p.clock).is_empty(), "no further handshakes");
    }
}

/// boringtun's timers start the rekey; meshd answers and moves to the new session once confirmed.
#[test]
fn boringtun_rekeys_after_rekey_after_time() {
    for psk in [None, Some([0x22; 32])] {
        let mut p = pair(psk, 5, false);
        assert!(matches!(bt_timers(&mut p.bt), Bt::Done));
        boringtun_initiates(&mut p);
        exchange_data(&mut p);
        let first_remote = p.meshd.sender.as_ref().unwrap().remote_index();

        advance(&mut p.clock, REKEY_AFTER_TIME + Duration::from_secs(1));
        // boringtun reads its clock in update_timers; then it sends on the old session.
        let _ = bt_timers(&mut p.bt);
        let packet = ipv4_packet(60, 3);
        let datagram = network(bt_encap(&mut p.bt, &packet));
        assert!(matches!(
            p.meshd.handle(&p.clock, &datagram),
            Ok(Handled::Data(_))
        ));
        let init = loop {
            match bt_timers(&mut p.bt) {
                Bt::Network(d) if d[0] == 1 => break d,
                Bt::Network(d) => {
                    p.meshd.handle(&p.clock, &d).unwrap();
                }
                other => panic!("boringtun did not rekey: {other:?}"),
            }
        };
        let Ok(Handled::Reply(response)) = p.meshd.handle(&p.clock, &init) else {
            panic!("rekey refused")
        };
        assert_eq!(
            p.meshd.sender.as_ref().unwrap().remote_index(),
            first_remote,
            "not before confirmation"
        );
        let keepalive = network(bt_decap(&mut p.bt, &response));
        assert_eq!(p.meshd.handle(&p.clock, &keepalive), Ok(Handled::Keepalive));
        assert_ne!(p.meshd.sender.as_ref().unwrap().remote_index(), first_remote);
        exchange_data(&mut p);
    }
}

/// A boringtun responder under load answers with a cookie reply; meshd stores the cookie, its timers
/// retry after REKEY_TIMEOUT, and the retry carries a mac2 boringtun accepts.
#[test]
fn boringtun_cookie_reply_to_meshd() {
    let mut p = pair(None, 6, true);

    p.meshd.timers.on_handshake_wanted(p.clock.now);
    let init = p.meshd.poll(&p.clock).pop().unwrap();
    let reply = network(bt_decap(&mut p.bt, &init));
    assert_eq!(reply.len(), 64, "a cookie reply, not a response");
    assert_eq!(p.meshd.handle(&p.clock, &reply), Ok(Handled::CookieStored));

    advance(&mut p.clock, REKEY_TIMEOUT + Duration::from_millis(400));
    let retry = p.meshd.poll(&p.clock);
    assert_eq!(retry.len(), 1);
    assert_ne!(&retry[0][132..148], &[0u8; 16], "mac2 present");
    let response = network(bt_decap(&mut p.bt, &retry[0]));
    assert_eq!(response.len(), 92);
    assert_eq!(
        p.meshd.handle(&p.clock, &response),
        Ok(Handled::HandshakeComplete)
    );
    exchange_data(&mut p);
}

/// A meshd responder under load answers boringtun with a cookie reply; boringtun's retry carries a
/// mac2 that meshd accepts, and a mac2 made for another source address is refused.
#[test]
fn meshd_cookie_reply_to_boringtun() {
    let mut p = pair(None, 7, false);
    p.meshd.under_load = true;
    let mut dst = vec![0u8; 256];
    let init = network(bt(p.bt.format_handshake_initiation(&mut dst, false)));
    let Ok(Handled::Reply(reply)) = p.meshd.handle(&p.clock, &init) else {
        panic!()
    };
    assert_eq!(reply.len(), 64);
    assert!(matches!(bt_decap(&mut p.bt, &reply), Bt::Done));

    advance(&mut p.clock, REKEY_TIMEOUT + Duration::from_secs(1));
    let retry = network(bt_timers(&mut p.bt));
    assert_eq!(retry[0], 1);
    assert_ne!(&retry[132..148], &[0u8; 16], "boringtun used the cookie");

    let real_src = p.meshd.src;
    p.meshd.src = "192.0.2.99:51820".parse().unwrap();
    assert!(matches!(p.meshd.handle(&p.clock, &retry), Ok(Handled::Reply(r)) if r.len() == 64));
    p.meshd.src = real_src;

    let Ok(Handled::Reply(response)) = p.meshd.handle(&p.clock, &retry) else {
        panic!("mac2 refused")
    };
    assert_eq!(response.len(), 92);
    let keepalive = network(bt_decap(&mut p.bt, &response));
    assert_eq!(p.meshd.handle(&p.clock, &keepalive), Ok(Handled::Keepalive));
    exchange_data(&mut p);
}

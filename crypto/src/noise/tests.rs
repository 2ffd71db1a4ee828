use super::*;
use crate::cookie::CookieChecker;
use crate::error::HandshakeError;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::time::Duration;
use zerocopy::IntoBytes;

struct Side {
    identity: Identity,
    peer: PeerHandshake,
}

fn epoch() -> Instant {
    // Tests need one real Instant as the epoch of their virtual clock; nothing else reads it.
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn sides(psk_i: Option<[u8; 32]>, psk_r: Option<[u8; 32]>) -> (Side, Side, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let a = Identity::new(StaticSecret::random(&mut rng));
    let b = Identity::new(StaticSecret::random(&mut rng));
    let a_peer = PeerHandshake::new(&a, *b.public_key(), psk_i.map(PresharedKey::from_bytes)).unwrap();
    let b_peer = PeerHandshake::new(&b, *a.public_key(), psk_r.map(PresharedKey::from_bytes)).unwrap();
    (
        Side {
            identity: a,
            peer: a_peer,
        },
        Side {
            identity: b,
            peer: b_peer,
        },
        rng,
    )
}

fn ts(secs: u64) -> Tai64N {
    Tai64N::from_unix(Duration::from_secs(1_700_000_000 + secs))
}

#[test]
fn both_sides_derive_mirrored_keys() {
    for psk in [None, Some([7u8; 32])] {
        let (mut i, mut r, mut rng) = sides(psk, psk);
        let now = epoch();
        let (pending, init) = create_initiation(&i.identity, &mut i.peer, 111, ts(0), now, &mut rng).unwrap();
        assert_eq!(init.sender_index.get(), 111);

        let checker = CookieChecker::new(r.identity.public_key());
        checker.verify_mac1(&init).unwrap();
        let incoming = begin_response(&r.identity, &init).unwrap();
        assert_eq!(incoming.initiator_static(), i.identity.public_key());
        assert_eq!(incoming.sender_index(), 111);
        let (resp, r_keys) = incoming.finish(&mut r.peer, 222, now, &mut rng).unwrap();
        assert_eq!(resp.receiver_index.get(), 111);
        CookieChecker::new(i.identity.public_key())
            .verify_mac1(&resp)
            .unwrap();

        let i_keys = pending.consume_response(&i.identity, &i.peer, &resp).unwrap();
        assert_eq!(i_keys.sending, r_keys.receiving);
        assert_eq!(i_keys.receiving, r_keys.sending);
        assert_ne!(i_keys.sending, i_keys.receiving);
        assert_eq!((i_keys.local_index, i_keys.remote_index), (111, 222));
        assert_eq!((r_keys.local_index, r_keys.remote_index), (222, 111));
        assert!(i_keys.initiator && !r_keys.initiator);
    }
}

#[test]
fn psk_mismatch_fails_at_the_initiator() {
    let (mut i, mut r, mut rng) = sides(Some([1; 32]), Some([2; 32]));
    let now = epoch();
    let (pending, init) = create_initiation(&i.identity, &mut i.peer, 1, ts(0), now, &mut rng).unwrap();
    let (resp, _) = begin_response(&r.identity, &init)
        .unwrap()
        .finish(&mut r.peer, 2, now, &mut rng)
        .unwrap();
    assert_eq!(
        pending.consume_response(&i.identity, &i.peer, &resp).unwrap_err(),
        HandshakeError::Decrypt
    );
}

#[test]
fn timestamps_must_grow_and_initiations_not_flood() {
    let (mut i, mut r, mut rng) = sides(None, None);
    let t0 = epoch();
    let (_, first) = create_initiation(&i.identity, &mut i.peer, 1, ts(10), t0, &mut rng).unwrap();
    begin_response(&r.identity, &first)
        .unwrap()
        .finish(&mut r.peer, 2, t0, &mut rng)
        .unwrap();
    assert_eq!(r.peer.latest_timestamp(), ts(10));

    let later = t0 + Duration::from_secs(1);
    let replay = begin_response(&r.identity, &first)
        .unwrap()
        .finish(&mut r.peer, 3, later, &mut rng);
    assert_eq!(replay.unwrap_err(), HandshakeError::ReplayedTimestamp);

    let (_, older) = create_initiation(&i.identity, &mut i.peer, 4, ts(9), later, &mut rng).unwrap();
    let r_older = begin_response(&r.identity, &older)
        .unwrap()
        .finish(&mut r.peer, 5, later, &mut rng);
    assert_eq!(r_older.unwrap_err(), HandshakeError::ReplayedTimestamp);

    let (_, newer) = create_initiation(&i.identity, &mut i.peer, 6, ts(11), t0, &mut rng).unwrap();
    let soon = t0 + Duration::from_millis(19);
    let flood = begin_response(&r.identity, &newer)
        .unwrap()
        .finish(&mut r.peer, 7, soon, &mut rng);
    assert_eq!(flood.unwrap_err(), HandshakeError::Flood);
    assert_eq!(
        r.peer.latest_timestamp(),
        ts(10),
        "refused initiations leave the peer unchanged"
    );
    let fine = t0 + Duration::from_millis(20);
    begin_response(&r.identity, &newer)
        .unwrap()
        .finish(&mut r.peer, 7, fine, &mut rng)
        .unwrap();
    assert_eq!(r.peer.latest_timestamp(), ts(11));
}

#[test]
fn finish_refuses_state_of_another_peer() {
    let (mut i, r, mut rng) = sides(None, None);
    let now = epoch();
    let stranger = Identity::new(StaticSecret::random(&mut rng));
    let mut wrong = PeerHandshake::new(&r.identity, *stranger.public_key(), None).unwrap();
    let (_, init) = create_initiation(&i.identity, &mut i.peer, 1, ts(0), now, &mut rng).unwrap();
    let res = begin_response(&r.identity, &init)
        .unwrap()
        .finish(&mut wrong, 2, now, &mut rng);
    assert_eq!(res.unwrap_err(), HandshakeError::WrongPeer);
}

#[test]
fn initiation_to_another_responder_does_not_decrypt() {
    let (mut i, _, mut rng) = sides(None, None);
    let now = epoch();
    let other = Identity::new(StaticSecret::random(&mut rng));
    let (_, init) = create_initiation(&i.identity, &mut i.peer, 1, ts(0), now, &mut rng).unwrap();
    assert_eq!(
        begin_response(&other, &init).unwrap_err(),
        HandshakeError::Decrypt
    );
}

#[test]
fn every_single_bit_flip_of_an_initiation_is_refused() {
    use meshd_packet::wire::{INITIATION_MAC1_OFFSET, INITIATION_MAC2_OFFSET, Message, parse};
    let (mut i, r, mut rng) = sides(None, None);
    let now = epoch();
    let (_, init) = create_initiation(&i.identity, &mut i.peer, 1, ts(0), now, &mut rng).unwrap();
    let checker = CookieChecker::new(r.identity.public_key());
    let bytes = init.as_bytes().to_vec();
    for bit in 0..bytes.len() * 8 {
        let byte = bit / 8;
        let mut b = bytes.clone();
        b[byte] ^= 1 << (bit % 8);
        let Ok(Message::Initiation(m)) = parse(&b) else {
            assert!(
                byte < 4,
                "only the type and reserved bytes fail parsing (bit {bit})"
            );
            continue;
        };
        // A fresh peer state each time, so one accepted mutation cannot hide the next behind the
        // timestamp check.
        let mut peer = PeerHandshake::new(&r.identity, *i.identity.public_key(), None).unwrap();
        let mac_ok = checker.verify_mac1(m).is_ok();
        let handshake_ok = begin_response(&r.identity, m)
            .and_then(|inc| inc.finish(&mut peer, 2, now, &mut rng))
            .is_ok();
        match byte {
            // The sender index is outside the Noise transcript; mac1 is what covers it.
            4..8 => assert!(!mac_ok && handshake_ok, "bit {bit}"),
            // Ephemeral, sealed static, sealed timestamp: both layers catch it.
            8..INITIATION_MAC1_OFFSET => assert!(!mac_ok && !handshake_ok, "bit {bit}"),
            INITIATION_MAC1_OFFSET..INITIATION_MAC2_OFFSET => assert!(!mac_ok && handshake_ok, "bit {bit}"),
            // Without a cookie nobody checks mac2 unless under load; CookieChecker tests cover that.
            _ => assert!(mac_ok && handshake_ok, "bit {bit}"),
        }
    }
}

#[test]
fn low_order_peer_keys_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let me = Identity::new(StaticSecret::random(&mut rng));
    assert_eq!(
        PeerHandshake::new(&me, PublicKey::from_bytes([0; 32]), None).unwrap_err(),
        HandshakeError::LowOrderPoint
    );
}

#[test]
fn response_for_another_index_is_refused() {
    let (mut i, mut r, mut rng) = sides(None, None);
    let now = epoch();
    let (pending, init) = create_initiation(&i.identity, &mut i.peer, 1, ts(0), now, &mut rng).unwrap();
    let (mut resp, _) = begin_response(&r.identity, &init)
        .unwrap()
        .finish(&mut r.peer, 2, now, &mut rng)
        .unwrap();
    resp.receiver_index.set(9);
    assert_eq!(
        pending.consume_response(&i.identity, &i.peer, &resp).unwrap_err(),
        HandshakeError::WrongIndex
    );
}

#[test]
fn transcript_starts_from_the_published_constants() {
    let s = symmetric::SymmetricState::new(&[0; 32]);
    assert_eq!(s.parts().0, &initial_chaining_key());
}

#[test]
fn debug_of_session_material_never_shows_key_bytes() {
    let (mut i, mut r, mut rng) = sides(Some([9; 32]), Some([9; 32]));
    let now = epoch();
    let (pending, init) = create_initiation(&i.identity, &mut i.peer, 1, ts(0), now, &mut rng).unwrap();
    let (resp, r_keys) = begin_response(&r.identity, &init)
        .unwrap()
        .finish(&mut r.peer, 2, now, &mut rng)
        .unwrap();
    let keys = pending.consume_response(&i.identity, &i.peer, &resp).unwrap();
    let secrets = [
        hex::encode(keys.sending),
        hex::encode(keys.receiving),
        hex::encode([9u8; 32]),
    ];
    let (tx, rx) = crate::session::new_session(keys, now);
    let shown = format!(
        "{r_keys:?} {tx:?} {rx:?} {pending:?} {:?} {:?}",
        i.peer, i.identity
    );
    for s in &secrets {
        // Any 4-byte run of a key would show up in hex; none may.
        for w in s.as_bytes().chunks(8) {
            assert!(!shown.contains(std::str::from_utf8(w).unwrap()), "{shown}");
        }
    }
}

//! Deterministic simulation of two WireGuard interfaces built on `meshd_core::node`, on a virtual clock.
//! The expectations are the WireGuard paper's constants (section 6), not the code's own. The data path
//! around each node makes the decisions the daemon's threads make, by the same functions
//! (`meshd_core::datapath`): the roaming tests run the shipping rule.

mod sim;

use std::time::Duration;

use meshd_core::node::{DropReason, Endpoint};
use meshd_packet::wire;
use meshd_packet::wire::meshd::{MeshdMessage, RELAY_TOKEN_RANGE, parse_meshd};
use sim::{Sim, ipv4};

const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);

fn a_to_b(n: u8) -> Vec<u8> {
    ipv4("10.0.0.1", "10.0.0.2", &[n; 64])
}

fn b_to_a(n: u8) -> Vec<u8> {
    ipv4("10.0.0.2", "10.0.0.1", &[n; 64])
}

#[test]
fn first_packet_starts_a_handshake_and_arrives() {
    let mut sim = Sim::pair();
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(
        sim.hosts[1].delivered,
        vec![a_to_b(1)],
        "the queued packet is sent after the handshake"
    );

    // B learned A's endpoint from the initiation and answers on the confirmed session.
    sim.send_ip(1, b_to_a(2));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(2)]);
    let (status, _) = sim.hosts[1].node.status();
    assert_eq!(status.peers[0].endpoint, Some(sim.hosts[0].addr));
    assert!(status.peers[0].last_handshake.is_some());
}

#[test]
fn a_source_outside_the_peers_allowed_ips_is_dropped() {
    let mut sim = Sim::pair();
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    // A claims a source B did not allow for it.
    sim.send_ip(0, ipv4("10.9.9.9", "10.0.0.2", b"spoof"));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[1].delivered.len(), 1);
    assert!(sim.hosts[1].drops.contains(&DropReason::SourceNotAllowed));
}

#[test]
fn a_lost_initiation_is_retried_after_rekey_timeout() {
    let mut sim = Sim::pair();
    let mut initiations = 0;
    sim.lose = Box::new(move |_, _, d| {
        // Lose the first initiation only.
        if d[0] == 1 {
            initiations += 1;
            return initiations == 1;
        }
        false
    });
    let start = sim.now;
    sim.send_ip(0, a_to_b(1));
    sim.run_for(REKEY_TIMEOUT - Duration::from_millis(10));
    assert!(
        sim.hosts[1].delivered.is_empty(),
        "nothing can arrive before the retry"
    );
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1)]);
    let sent = sim.wire_log.iter().filter(|(_, _, _, t)| *t == 1).count();
    assert_eq!(sent, 2, "exactly one retry");
    assert!(sim.now - start >= REKEY_TIMEOUT);
}

#[test]
fn sessions_are_renewed_after_rekey_after_time_without_loss() {
    let mut sim = Sim::pair();
    // Traffic every second for 300 s of protocol time, both ways.
    for i in 0..300u32 {
        sim.send_ip(0, a_to_b(i as u8));
        sim.send_ip(1, b_to_a(i as u8));
        sim.run_for(Duration::from_secs(1));
    }
    assert_eq!(sim.hosts[1].delivered.len(), 300, "no packet lost across rekeys");
    assert_eq!(sim.hosts[0].delivered.len(), 300);
    // The initiator rekeys every REKEY_AFTER_TIME of sending: in 300 s that is at least 2 new sessions.
    let sessions = &sim.hosts[0].send_sessions;
    assert!(
        sessions.len() >= 3,
        "A sent on {} sessions in 300 s: {sessions:?}",
        sessions.len()
    );
    // And no session lived past REJECT_AFTER_TIME while in use (else packets would have been lost).
    let b = sim.hosts[0].peer(&sim.hosts[1].public);
    let sender = sim.hosts[0].sender(b).expect("a current session");
    assert!(sim.now - sender.born() <= REKEY_AFTER_TIME + REKEY_TIMEOUT + KEEPALIVE_TIMEOUT);
}

#[test]
fn a_session_is_refused_after_reject_after_time() {
    let mut sim = Sim::pair();
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    let b = sim.hosts[0].peer(&sim.hosts[1].public);
    let born = sim.hosts[0].sender(b).unwrap().born();

    // The network goes dark: no handshake can renew the session.
    sim.lose = Box::new(|_, _, _| true);
    sim.run_until(born + REJECT_AFTER_TIME + Duration::from_secs(1));
    sim.lose = Box::new(|_, _, _| false);
    // The old sender refuses to seal, so the packet waits for a new handshake instead of going out.
    let sender = sim.hosts[0].sender(b).cloned();
    if let Some(sender) = sender {
        let mut buf = vec![0u8; 64];
        assert!(sender.encapsulate(sim.now, &mut buf, 0, sim::MTU).is_err());
    }
    let delivered_before = sim.hosts[1].delivered.len();
    sim.send_ip(0, a_to_b(2));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.hosts[1].delivered.len(),
        delivered_before + 1,
        "a new handshake carried it"
    );
    let now_sender = sim.hosts[0].sender(b).unwrap();
    assert!(now_sender.born() > born + REJECT_AFTER_TIME);
}

#[test]
fn a_receiver_with_nothing_to_send_answers_with_a_keepalive() {
    let mut sim = Sim::pair();
    let sent = sim.now;
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    let before = sim.hosts[0].keepalives_received.len();
    sim.run_for(KEEPALIVE_TIMEOUT - Duration::from_millis(200));
    assert_eq!(
        sim.hosts[0].keepalives_received.len(),
        before,
        "no keepalive before KEEPALIVE_TIMEOUT"
    );
    sim.run_for(Duration::from_secs(1));
    let after = &sim.hosts[0].keepalives_received[before..];
    assert_eq!(after.len(), 1, "exactly one keepalive answers one data packet");
    assert!(after[0] - sent >= KEEPALIVE_TIMEOUT);
}

#[test]
fn persistent_keepalive_goes_out_on_an_idle_tunnel() {
    let mut sim = Sim::pair();
    let b_pub = sim.hosts[1].public;
    let b_addr = sim.hosts[1].addr;
    sim.configure(0, b_pub, Some(b_addr), "10.0.0.2/32", 25);
    // Turning it on makes a handshake (no session yet) and then keepalives every 25 s.
    sim.run_for(Duration::from_secs(101));
    let got = &sim.hosts[1].keepalives_received;
    assert!(
        (4..=5).contains(&got.len()),
        "{} keepalives in 101 s at 25 s",
        got.len()
    );
    for pair in got.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(25) && gap < Duration::from_secs(26),
            "gap {gap:?}"
        );
    }
}

#[test]
fn a_peer_that_roams_is_followed_to_its_new_address() {
    let mut sim = Sim::pair();
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    let a = sim.hosts[1].peer(&sim.hosts[0].public);
    assert_eq!(
        sim.hosts[1].endpoint(a),
        Some(Endpoint::Direct(sim.hosts[0].addr))
    );

    let new_addr = "198.51.100.7:40000".parse().unwrap();
    sim.move_host(0, new_addr);
    sim.send_ip(0, a_to_b(2));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(
        sim.hosts[1].endpoint(a),
        Some(Endpoint::Direct(new_addr)),
        "B follows A's authenticated packet"
    );
    sim.send_ip(1, b_to_a(3));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(
        sim.hosts[0].delivered,
        vec![b_to_a(3)],
        "B's reply reaches A at its new address"
    );
    let (status, _) = sim.hosts[1].node.status();
    assert_eq!(status.peers[0].endpoint, Some(new_addr));
}

/// A NAT in front of A gives it a new public port: what B sends to the old one is lost, and A's next
/// packet (a keepalive at the latest, as A keeps its mapping open) leaves through the new one. B follows
/// it there, by the receive thread's roaming rule, and so does B's node.
#[test]
fn a_peer_whose_nat_rebinds_its_port_is_followed_to_the_new_one() {
    let mut sim = Sim::pair();
    sim.hosts[0].behind_nat = true;
    let (b_key, b_addr) = (sim.hosts[1].public, sim.hosts[1].addr);
    sim.configure(0, b_key, Some(b_addr), "10.0.0.2/32", 25);
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    sim.send_ip(1, b_to_a(2));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(2)]);

    let rebound = std::net::SocketAddr::new(sim.hosts[0].addr.ip(), 40001);
    sim.rebind_nat(0, rebound);
    sim.send_ip(1, b_to_a(3));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(2)], "the old mapping is gone");

    sim.run_for(Duration::from_secs(25));
    let a = sim.hosts[1].peer(&sim.hosts[0].public);
    assert_eq!(sim.hosts[1].endpoint(a), Some(Endpoint::Direct(rebound)));
    assert_eq!(sim.hosts[1].node.endpoint(a), Some(Endpoint::Direct(rebound)));
    sim.send_ip(1, b_to_a(4));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(2), b_to_a(4)]);
}

#[test]
fn a_handshake_that_is_never_answered_gives_up_and_drops_the_queue() {
    let mut sim = Sim::pair();
    sim.lose = Box::new(|_, _, _| true);
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_secs(120));
    let initiations: Vec<_> = sim
        .wire_log
        .iter()
        .filter(|(_, _, _, t)| *t == 1)
        .map(|(at, _, _, _)| *at)
        .collect();
    // Retried every REKEY_TIMEOUT (plus jitter) for REKEY_ATTEMPT_TIME, then given up. Linux counts the
    // attempts so that one more retry goes out at REKEY_ATTEMPT_TIME + REKEY_TIMEOUT; allow both.
    assert!(
        (19..=20).contains(&initiations.len()),
        "{} initiations",
        initiations.len()
    );
    for pair in initiations.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= REKEY_TIMEOUT && gap <= REKEY_TIMEOUT + Duration::from_millis(334),
            "gap {gap:?}"
        );
    }
    let span = initiations[initiations.len() - 1] - initiations[0];
    assert!(span >= REKEY_ATTEMPT_TIME, "gave up after {span:?}");
    assert!(
        span <= REKEY_ATTEMPT_TIME + 2 * REKEY_TIMEOUT,
        "kept trying for {span:?}"
    );
    assert!(sim.hosts[0].drops.contains(&DropReason::HandshakeGaveUp));
}

#[test]
fn loss_of_a_third_of_all_datagrams_still_converges() {
    let mut sim = Sim::pair();
    let mut n = 0u32;
    sim.lose = Box::new(move |_, _, _| {
        n += 1;
        n.is_multiple_of(3)
    });
    for i in 0..60u8 {
        sim.send_ip(0, a_to_b(i));
        sim.run_for(Duration::from_secs(1));
    }
    let delivered = sim.hosts[1].delivered.len();
    assert!(delivered >= 30, "only {delivered} of 60 arrived");
    let b = sim.hosts[0].peer(&sim.hosts[1].public);
    assert!(sim.hosts[0].sender(b).is_some(), "a session exists despite loss");
}

#[test]
fn removing_a_peer_forgets_its_sessions_and_routes() {
    let mut sim = Sim::pair();
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    let b_pub = sim.hosts[1].public;
    let set = meshd_core::node::SetDevice {
        peers: vec![meshd_core::node::PeerUpdate {
            public_key: *b_pub.as_bytes(),
            remove: true,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive_interval: None,
            replace_allowed_ips: false,
            allowed_ips: vec![],
        }],
        ..Default::default()
    };
    let (now, wall) = (sim.now, sim.wall());
    sim.hosts[0].node.apply(now, wall, &set).unwrap();
    sim.run_for(Duration::from_millis(10));
    assert!(sim.hosts[0].node.peer_id(&b_pub).is_none());
    assert!(sim.hosts[0].node.allowed_ips().is_empty());
    sim.send_ip(0, a_to_b(2));
    assert!(sim.hosts[0].drops.contains(&DropReason::NoRoute));
}

#[test]
fn under_load_a_responder_demands_a_cookie_and_then_completes() {
    let mut sim = Sim::pair();
    sim.handshake_backlog = meshd_core::node::HANDSHAKE_QUEUE;
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_secs(12));
    // B answered the first initiation with a cookie reply (type 3), not a response; A's retry carries
    // mac2 made with that cookie and is accepted.
    let types: Vec<u8> = sim.wire_log.iter().map(|(_, _, _, t)| *t).collect();
    let first_response = types.iter().position(|&t| t == 2).expect("a response was sent");
    assert_eq!(
        types[..first_response].iter().filter(|&&t| t == 3).count(),
        1,
        "{types:?}"
    );
    assert!(sim.hosts[1].drops.contains(&DropReason::CookieSent));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1)]);
}

// Paths through a relay. `Sim::mesh` puts host i at 192.0.2.(i+1) with tunnel address 10.0.0.(i+1), and
// a relay at `sim::RELAY` that forwards relay frames by destination key.

fn relay() -> std::net::SocketAddr {
    sim::RELAY.parse().unwrap()
}

/// The inner WireGuard message type of a relay frame, or `None` if `datagram` is not a relay frame
/// around a WireGuard message.
fn relayed_type(datagram: &[u8]) -> Option<u8> {
    match parse_meshd(datagram) {
        Ok(MeshdMessage::Relay(frame)) => wire::parse(frame.inner).ok().map(|_| frame.inner[0]),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn two_nodes_behind_nat_talk_through_the_relay_which_sees_no_plaintext() {
    let mut sim = Sim::mesh(2);
    sim.hosts[0].behind_nat = true;
    sim.hosts[1].behind_nat = true;
    let (spec_a, spec_b) = (sim.spec(0, false, true), sim.spec(1, false, true));
    sim.reconcile(0, &[spec_b]);
    sim.reconcile(1, &[spec_a]);

    let (to_b, to_a): (&[u8], &[u8]) = (b"MARKER: from A to B in clear", b"MARKER: from B to A in clear");
    sim.send_ip(0, ipv4("10.0.0.1", "10.0.0.2", to_b));
    sim.run_for(Duration::from_millis(100));
    sim.send_ip(1, ipv4("10.0.0.2", "10.0.0.1", to_a));
    sim.run_for(Duration::from_millis(100));
    // Once more both ways on the established sessions.
    sim.send_ip(0, ipv4("10.0.0.1", "10.0.0.2", to_b));
    sim.send_ip(1, ipv4("10.0.0.2", "10.0.0.1", to_a));
    sim.run_for(Duration::from_millis(100));

    assert_eq!(
        sim.hosts[1].delivered,
        vec![ipv4("10.0.0.1", "10.0.0.2", to_b); 2]
    );
    assert_eq!(
        sim.hosts[0].delivered,
        vec![ipv4("10.0.0.2", "10.0.0.1", to_a); 2]
    );
    for h in 0..2 {
        let other = sim.hosts[1 - h].public;
        let peer = sim.hosts[h].peer(&other);
        assert_eq!(
            sim.hosts[h].node.endpoint(peer),
            Some(Endpoint::Relayed { relay: relay() })
        );
    }

    // Everything crossed the relay, as relay frames around WireGuard messages, and no byte of either
    // plaintext was on the wire.
    let mut inner_types = std::collections::BTreeSet::new();
    for (from, to, datagram) in &sim.capture {
        assert!(
            *from == relay() || *to == relay(),
            "{from} -> {to} bypassed the relay"
        );
        let t = relayed_type(datagram).unwrap_or_else(|| panic!("{from} -> {to}: not a relay frame"));
        inner_types.insert(t);
        assert!(
            !contains(datagram, to_b) && !contains(datagram, to_a),
            "plaintext on the wire"
        );
        assert!(!contains(datagram, &to_b[..8]), "the marker on the wire");
    }
    assert_eq!(inner_types.into_iter().collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(sim.relay_refused, 0);
}

/// The relay forwards by the relay table and the receive thread's decision: each frame reaches it with
/// its sender's token and leaves it without.
#[test]
fn the_relay_takes_each_senders_token_and_forwards_the_frame_without_it() {
    let mut sim = Sim::mesh(2);
    let (spec_a, spec_b) = (sim.spec(0, false, true), sim.spec(1, false, true));
    sim.reconcile(0, &[spec_b]);
    sim.reconcile(1, &[spec_a]);
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1)]);

    let (mut to_relay, mut from_relay) = (0, 0);
    for (from, to, datagram) in &sim.capture {
        let token = &datagram[RELAY_TOKEN_RANGE];
        if *to == relay() {
            to_relay += 1;
            assert_ne!(token, [0; 8], "{from} sent a frame without its token");
        } else if *from == relay() {
            from_relay += 1;
            assert_eq!(token, [0; 8], "the relay passed on {to}'s sender's token");
        }
    }
    assert!(
        to_relay >= 3 && from_relay == to_relay,
        "{to_relay} in, {from_relay} out"
    );
    assert_eq!(sim.relay_refused, 0);
}

#[test]
fn a_handshake_through_the_relay_is_answered_and_the_peers_move_to_the_direct_path() {
    let mut sim = Sim::mesh(2);
    // A is behind NAT and knows B's address; B knows only the relay for A.
    sim.hosts[0].behind_nat = true;
    let (spec_a, spec_b) = (sim.spec(0, false, true), sim.spec(1, true, true));
    sim.reconcile(0, &[spec_b]);
    sim.reconcile(1, &[spec_a]);
    let (a_addr, b_addr) = (sim.hosts[0].addr, sim.hosts[1].addr);
    let a_at_b = sim.hosts[1].peer(&sim.hosts[0].public);
    assert_eq!(
        sim.hosts[1].node.endpoint(a_at_b),
        Some(Endpoint::Relayed { relay: relay() })
    );

    sim.send_ip(1, b_to_a(1));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(1)]);
    // B's initiation went through the relay and A's response came back the same way.
    let relayed: Vec<u8> = sim
        .capture
        .iter()
        .filter_map(|(_, _, d)| relayed_type(d))
        .collect();
    assert!(relayed.starts_with(&[1, 1, 2, 2]), "{relayed:?}");

    // A answers on its own path to B, the direct one; that opens A's NAT towards B.
    let sent_before = sim.capture.len();
    sim.send_ip(0, a_to_b(2));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(2)]);
    assert!(
        sim.capture[sent_before..]
            .iter()
            .any(|(from, to, d)| (*from, *to, d[0]) == (a_addr, b_addr, 4)),
        "A's data went directly"
    );
    // B's data path saw an authenticated packet from A's address and reported it: B is now direct.
    assert_eq!(sim.hosts[1].node.endpoint(a_at_b), Some(Endpoint::Direct(a_addr)));
    assert_eq!(sim.hosts[1].endpoint(a_at_b), Some(Endpoint::Direct(a_addr)));
    let paths = sim.hosts[1].node.path_of(a_at_b).unwrap();
    assert_eq!(paths.relay(), Some(relay()), "the relay is kept for later");

    let sent_before = sim.capture.len();
    sim.send_ip(1, b_to_a(3));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(1), b_to_a(3)]);
    assert!(
        sim.capture[sent_before..]
            .iter()
            .all(|(from, to, _)| (*from, *to) == (b_addr, a_addr)),
        "B's data went directly"
    );
    assert_eq!(sim.nat_dropped, 0);
}

/// Two nodes and the relay, where A holds a direct address for B at which nobody answers (and B
/// has only the relay for A).
fn with_stale_direct_address() -> (Sim, std::net::SocketAddr) {
    let mut sim = Sim::mesh(2);
    let stale: std::net::SocketAddr = "192.0.2.99:51820".parse().unwrap();
    let mut spec_b = sim.spec(1, true, true);
    spec_b.direct = Some(stale);
    let spec_a = sim.spec(0, false, true);
    sim.reconcile(0, &[spec_b]);
    sim.reconcile(1, &[spec_a]);
    (sim, stale)
}

#[test]
fn a_stale_direct_address_falls_back_to_the_relay_within_one_retry() {
    let (mut sim, stale) = with_stale_direct_address();

    let start = sim.now;
    sim.send_ip(0, a_to_b(1));
    sim.run_for(REKEY_TIMEOUT + Duration::from_millis(400));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1)]);

    let a_addr = sim.hosts[0].addr;
    let initiations: Vec<_> = sim
        .capture
        .iter()
        .zip(&sim.wire_log)
        .filter(|((from, _, d), _)| *from == a_addr && (d[0] == 1 || relayed_type(d) == Some(1)))
        .map(|((_, to, _), (at, ..))| (*at - start, *to))
        .collect();
    assert_eq!(initiations.len(), 2, "{initiations:?}");
    assert_eq!(
        initiations[0],
        (Duration::ZERO, stale),
        "first to the known address"
    );
    let (retry_at, retry_to) = initiations[1];
    assert_eq!(retry_to, relay(), "the retry takes the relay");
    assert!(retry_at >= REKEY_TIMEOUT && retry_at <= REKEY_TIMEOUT + Duration::from_millis(334));

    let b_at_a = sim.hosts[0].peer(&sim.hosts[1].public);
    assert_eq!(
        sim.hosts[0].node.endpoint(b_at_a),
        Some(Endpoint::Relayed { relay: relay() })
    );
    assert_eq!(
        sim.hosts[0].node.path_of(b_at_a).unwrap().direct(),
        Some(stale),
        "the direct address is kept"
    );

    // Data flows both ways over the relay, and keeps flowing.
    sim.send_ip(1, b_to_a(2));
    sim.run_for(Duration::from_millis(100));
    sim.send_ip(0, a_to_b(3));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(2)]);
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1), a_to_b(3)]);
    let to_stale = sim.capture.iter().filter(|(_, to, _)| *to == stale).count();
    assert_eq!(to_stale, 1, "nothing more went to the stale address");
}

#[test]
fn a_peer_removed_from_the_map_is_refused_until_it_is_added_again() {
    let mut sim = Sim::mesh(2);
    let (spec_a, spec_b) = (sim.spec(0, true, true), sim.spec(1, true, true));
    sim.reconcile(0, std::slice::from_ref(&spec_b));
    sim.reconcile(1, &[spec_a]);
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1)]);

    let summary = sim.reconcile(0, &[]);
    assert_eq!(summary.removed, 1);
    assert!(sim.hosts[0].node.allowed_ips().is_empty());
    // B still has its session and sends on it; A has forgotten it. With no answer, B starts a new
    // handshake after KEEPALIVE_TIMEOUT + REKEY_TIMEOUT, which A refuses.
    sim.send_ip(1, b_to_a(2));
    sim.run_for(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + Duration::from_secs(1));
    assert!(sim.hosts[0].delivered.is_empty());
    assert!(sim.hosts[0].drops.contains(&DropReason::UnknownIndex));
    assert!(sim.hosts[0].drops.contains(&DropReason::UnknownPeer));

    let summary = sim.reconcile(0, &[spec_b]);
    assert_eq!(summary.added, 1);
    // B's next retry gets through.
    sim.run_for(REKEY_TIMEOUT + Duration::from_secs(1));
    sim.send_ip(1, b_to_a(3));
    sim.send_ip(0, a_to_b(4));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(3)]);
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1), a_to_b(4)]);
}

#[test]
fn a_responder_whose_direct_address_is_stale_moves_to_the_relay_when_the_peer_initiates_again() {
    let (mut sim, stale) = with_stale_direct_address();
    let b_at_a = sim.hosts[0].peer(&sim.hosts[1].public);

    // B initiates through the relay; A answers the handshake that way, but sends its data on its own
    // path to B, the stale address, where it is lost.
    sim.send_ip(1, b_to_a(1));
    sim.run_for(Duration::from_millis(100));
    sim.send_ip(0, a_to_b(2));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(1)]);
    assert!(sim.hosts[1].delivered.is_empty());
    assert_eq!(sim.hosts[0].node.endpoint(b_at_a), Some(Endpoint::Direct(stale)));

    // Hearing nothing back, B starts a new handshake, again through the relay: A takes that as B not
    // hearing it directly and moves to the relay.
    sim.run_for(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + Duration::from_secs(1));
    assert_eq!(
        sim.hosts[0].node.endpoint(b_at_a),
        Some(Endpoint::Relayed { relay: relay() })
    );
    sim.send_ip(0, a_to_b(3));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(3)]);
}

#[test]
fn under_load_a_relayed_initiation_is_dropped_as_its_cookie_reply_cannot_be_addressed() {
    let mut sim = Sim::mesh(2);
    let (spec_a, spec_b) = (sim.spec(0, false, true), sim.spec(1, false, true));
    sim.reconcile(0, &[spec_b]);
    sim.reconcile(1, &[spec_a]);
    sim.handshake_backlog = meshd_core::node::HANDSHAKE_QUEUE;
    sim.send_ip(0, a_to_b(1));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.hosts[1].drops.contains(&DropReason::CookieUnroutable));
    assert!(!sim.hosts[1].drops.contains(&DropReason::CookieSent));
    let answered = sim.capture.iter().any(|(from, ..)| *from == sim.hosts[1].addr);
    assert!(!answered, "B sent nothing back");

    // Once the load is gone, the retry is answered.
    sim.handshake_backlog = 0;
    sim.run_for(REKEY_TIMEOUT);
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1)]);
}

/// Both sides start a handshake at the same moment (two nodes that were just given each other by a
/// network map). Each completes its own as initiator while holding the other's as responder; each must
/// keep the other's session for receiving (as Linux does, as "previous"), or the first data each sends
/// lands on a session the other threw away and nothing flows until a handshake timer fires.
#[test]
fn crossed_handshakes_carry_data_both_ways_at_once() {
    let mut sim = Sim::pair();
    sim.send_ip(0, a_to_b(1));
    sim.send_ip(1, b_to_a(2));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1)]);
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(2)]);
    sim.send_ip(0, a_to_b(3));
    sim.send_ip(1, b_to_a(4));
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.hosts[1].delivered, vec![a_to_b(1), a_to_b(3)]);
    assert_eq!(sim.hosts[0].delivered, vec![b_to_a(2), b_to_a(4)]);
}

/// A handshake from a stranger (a key the responder has no peer for), idle and under load: the only
/// answer it can draw is a cookie reply, smaller than the initiation, so a forged source gains nothing.
#[test]
fn a_strangers_initiation_draws_no_answer_larger_than_itself() {
    for backlog in [0, meshd_core::node::HANDSHAKE_QUEUE] {
        let mut sim = Sim::pair();
        // B forgets A: A is now a stranger to B.
        sim.reconcile(1, &[]);
        sim.handshake_backlog = backlog;
        sim.send_ip(0, a_to_b(1));
        sim.run_for(Duration::from_secs(12));
        let (a, b) = (sim.hosts[0].addr, sim.hosts[1].addr);
        let asked: Vec<usize> = sim
            .capture
            .iter()
            .filter(|(from, to, _)| *from == a && *to == b)
            .map(|(_, _, d)| d.len())
            .collect();
        let answers: Vec<usize> = sim
            .capture
            .iter()
            .filter(|(from, to, _)| *from == b && *to == a)
            .map(|(_, _, d)| d.len())
            .collect();
        assert!(!asked.is_empty(), "A initiated");
        let smallest = *asked.iter().min().unwrap();
        assert!(
            answers.iter().all(|&n| n <= smallest),
            "backlog {backlog}: {asked:?} answered with {answers:?}"
        );
        if backlog == 0 {
            assert!(answers.is_empty(), "an unknown peer is not answered: {answers:?}");
            assert!(sim.hosts[1].drops.contains(&DropReason::UnknownPeer));
        } else {
            assert!(!answers.is_empty(), "under load, cookie replies");
            assert!(sim.hosts[1].drops.contains(&DropReason::CookieSent));
        }
    }
}

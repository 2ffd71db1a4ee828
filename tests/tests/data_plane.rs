//! meshd-wg moving real packets: against itself and against wireguard-go (the Debian package), in
//! both roles, over both underlay families, with bulk transfers whose checksums must match.

use std::time::Duration;

use meshd_tests::pair;
use meshd_tests::{Family, Initiator, PairConfig, Side, TunnelPair, WgImpl, e2e};

const MIB: u64 = 1 << 20;

fn full_check(lab: &meshd_tests::Lab, a: &WgImpl, b: &WgImpl, config: PairConfig, bytes: u64) {
    meshd_tests::pair::full_check(lab, a, b, config, bytes, Duration::from_secs(120));
}

#[test]
fn meshd_wg_pair_over_ipv4_with_256_mib_each_way() {
    e2e(|lab| {
        let meshd = WgImpl::meshd_wg();
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Both,
        };
        full_check(lab, &meshd, &meshd, config, 256 * MIB);
    });
}

#[test]
fn meshd_wg_pair_over_ipv6_responder_learns_endpoint() {
    e2e(|lab| {
        let meshd = WgImpl::meshd_wg();
        let config = PairConfig {
            underlay: Family::V6,
            initiator: Initiator::Only(Side::B),
        };
        full_check(lab, &meshd, &meshd, config, 32 * MIB);
    });
}

#[test]
fn meshd_wg_initiates_to_wireguard_go() {
    e2e(|lab| {
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Only(Side::A),
        };
        full_check(
            lab,
            &WgImpl::meshd_wg(),
            &WgImpl::wireguard_go(),
            config,
            32 * MIB,
        );
    });
}

#[test]
fn wireguard_go_initiates_to_meshd_wg() {
    e2e(|lab| {
        let config = PairConfig {
            underlay: Family::V6,
            initiator: Initiator::Only(Side::A),
        };
        full_check(
            lab,
            &WgImpl::wireguard_go(),
            &WgImpl::meshd_wg(),
            config,
            32 * MIB,
        );
    });
}

/// (c) Roaming: A moves to a new underlay address in the middle of a transfer it sends (a laptop
/// changing networks); B follows the source of A's authenticated packets at once and the transfer
/// completes intact.
#[test]
fn a_peer_that_changes_address_mid_transfer_is_followed() {
    e2e(|lab| {
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Only(Side::A),
        };
        let pair = TunnelPair::up(lab, &WgImpl::meshd_wg(), &WgImpl::meshd_wg(), config);
        pair.ping_both_ways();
        let ns_a = pair.peer(Side::A).netns();
        let old = pair::underlay_addr(Side::A, Family::V4).to_string();
        let new = "192.0.2.77";
        // Without this, deleting the primary address takes the new secondary one with it.
        ns_a.sysctl("net.ipv4.conf.eth0.promote_secondaries", "1");
        std::thread::scope(|s| {
            let transfer =
                s.spawn(|| pair.transfer(Side::A, Family::V4, 128 * MIB, Duration::from_secs(120)));
            std::thread::sleep(Duration::from_millis(300));
            ns_a.ip(&["addr", "add", &format!("{new}/24"), "dev", "eth0"]);
            ns_a.ip(&["addr", "del", &format!("{old}/24"), "dev", "eth0"]);
            transfer.join().expect("the transfer survives the address change");
        });
        let b = pair.peer(Side::B);
        let seen = b.peer(pair.peer(Side::A).public_key()).endpoint;
        let expected = format!("{new}:{}", pair::port(Side::A));
        assert_eq!(seen, Some(expected), "B follows A to its new address");
    });
}

/// (d) Datagrams from unknown peers and random garbage at the listen port do not disturb an
/// established tunnel: no endpoint change, no lost session, traffic keeps flowing.
#[test]
fn garbage_and_strangers_at_the_listen_port_change_nothing() {
    e2e(|lab| {
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Both,
        };
        let pair = TunnelPair::up(lab, &WgImpl::meshd_wg(), &WgImpl::meshd_wg(), config);
        pair.ping_both_ways();
        let target = std::net::SocketAddr::new(pair::underlay_addr(Side::B, Family::V4), pair::port(Side::B));
        let before = pair.peer(Side::B).peer(pair.peer(Side::A).public_key());
        pair.peer(Side::A).netns().enter(|| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket in namespace a");
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for i in 0..3000u32 {
                let len = [1, 4, 16, 32, 92, 148, 200, 1400][i as usize % 8];
                let mut datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                // A third look like WireGuard messages of the right type and length: an initiation
                // from an unknown key, a response and data for indices nobody issued.
                match i % 3 {
                    0 if len >= 4 => datagram[..4].copy_from_slice(&[(i % 4 + 1) as u8, 0, 0, 0]),
                    _ => {}
                }
                let _ = socket.send_to(&datagram, target);
            }
        });
        pair.ping_both_ways();
        pair.transfer(Side::A, Family::V4, 32 * MIB, Duration::from_secs(60));
        let after = pair.peer(Side::B).peer(pair.peer(Side::A).public_key());
        assert_eq!(
            after.endpoint, before.endpoint,
            "garbage must not move the endpoint"
        );
        assert_eq!(
            after.latest_handshake, before.latest_handshake,
            "no new handshake was needed"
        );
        pair.shutdown_checked();
    });
}

/// (e) Deleting the interface stops the daemon and removes its socket.
#[test]
fn deleting_the_interface_stops_the_daemon() {
    e2e(|lab| {
        let ns = lab.netns("solo");
        let mut peer = meshd_tests::WgPeer::start(lab, &ns, &WgImpl::meshd_wg(), "wg-solo", 51820);
        let socket = meshd_tests::wg::socket_path("wg-solo");
        assert!(socket.exists(), "the UAPI socket is served");
        ns.ip(&["link", "del", "wg-solo"]);
        let status = peer
            .daemon()
            .wait_exit(Duration::from_secs(5))
            .expect("meshd-wg exits when its interface goes");
        assert!(status.success(), "exit status {status}");
        meshd_tests::wait_until("the UAPI socket to be removed", Duration::from_secs(2), || {
            !socket.exists()
        });
    });
}

/// The packet that starts a handshake is held and delivered once the session exists, in both roles
/// (WireGuard queues it; losing it would cost every new connection a retransmission).
fn first_ping_arrives(a: WgImpl, b: WgImpl) {
    e2e(|lab| {
        let config = PairConfig {
            underlay: Family::V4,
            initiator: Initiator::Only(Side::A),
        };
        let pair = TunnelPair::up(lab, &a, &b, config);
        let to = pair::tunnel_addr(Side::B, Family::V4);
        pair.peer(Side::A)
            .netns()
            .ping_once(to)
            .unwrap_or_else(|e| panic!("{} -> {}: first ping lost: {e}", a.name, b.name));
        pair.shutdown_checked();
    });
}

#[test]
fn the_packet_that_starts_the_handshake_arrives_meshd_initiating() {
    first_ping_arrives(WgImpl::meshd_wg(), WgImpl::wireguard_go());
}

#[test]
fn the_packet_that_starts_the_handshake_arrives_meshd_responding() {
    first_ping_arrives(WgImpl::wireguard_go(), WgImpl::meshd_wg());
}

/// Without `-f`, meshd-wg returns once the interface is served and keeps running detached, as
/// wg-quick expects of a userspace implementation.
#[test]
fn without_foreground_it_detaches_once_serving() {
    e2e(|lab| {
        let ns = lab.netns("bg");
        let program = WgImpl::meshd_wg().program;
        let program = program.to_str().expect("a UTF-8 path");
        ns.run(&[program, "wg-bg"]);
        // The command has returned: the interface and its socket must already exist.
        assert!(
            ns.has_link("wg-bg"),
            "the interface exists when the command returns"
        );
        let socket = meshd_tests::wg::socket_path("wg-bg");
        assert!(
            socket.exists(),
            "the UAPI socket is served when the command returns"
        );
        let show = ns.run(&["wg", "show", "wg-bg", "listen-port"]);
        assert!(
            show.trim().parse::<u16>().is_ok(),
            "wg talks to the detached daemon: {show:?}"
        );
        ns.ip(&["link", "del", "wg-bg"]);
        meshd_tests::wait_until(
            "the detached daemon to remove its socket",
            Duration::from_secs(5),
            || !socket.exists(),
        );
    });
}

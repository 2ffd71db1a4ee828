//! Full-size packets on every path a peer may take: direct and through the controller's relay, over
//! both mesh families, with DF pings at the interface MTU and bulk TCP checked by SHA-256.
//!
//! A relayed datagram carries a relay frame on top of WireGuard's own overhead; when the interface MTU
//! did not account for it, pings of every size crossed directly while full-size packets between two
//! NATed nodes were refused by the sender's kernel (EMSGSIZE) and TCP between them stalled.

use std::net::IpAddr;
use std::time::Duration;

use meshd_tests::mesh::{Mesh, MeshNode, diagnostics, expect_path, ping_every_pair};
use meshd_tests::transfer::tcp_transfer;
use meshd_tests::{Family, e2e};

/// Bytes of the transfers, each way they are run.
const TRANSFER: u64 = 32 << 20;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(90);

/// 1. Every ordered pair of the controller, n1 (public) and n2, n3 (each behind NAT; they reach each
///    other only through the relay) answers `ping -M do` pings that fill the interface MTU exactly,
///    over IPv4 and IPv6; then 32 MiB of TCP cross a relayed pair and a direct pair in both mesh
///    families with the same SHA-256 on both ends. The underlay is IPv4.
#[test]
fn mesh_full_size_packets_and_tcp_cross_direct_and_relayed_paths() {
    e2e(|lab| full_size_on_every_path(&Mesh::three_nodes(lab), Family::V4));
}

/// 2. The same over an IPv6 underlay (the nodes join the controller at its IPv6 address; the NATs
///    are NAT66): the worst path the MTU is sized for, a full-size packet relayed over IPv6, fills a
///    1500-byte underlay packet exactly.
#[test]
fn mesh_full_size_packets_and_tcp_over_an_ipv6_underlay() {
    e2e(|lab| full_size_on_every_path(&Mesh::three_nodes_over(lab, Family::V6), Family::V6));
}

fn full_size_on_every_path(mesh: &Mesh<'_>, underlay: Family) {
    let all = mesh.all();
    let mtu = interface_mtu(&mesh.ctl);
    for node in &all {
        assert_eq!(
            interface_mtu(node),
            mtu,
            "{} has another interface MTU than the controller's node",
            node.name()
        );
    }
    println!("interface MTU {mtu}, {underlay:?} underlay");
    ping_every_pair(&all);
    let (n1, n2, n3) = (mesh.node("n1"), mesh.node("n2"), mesh.node("n3"));
    expect_path(n2, n3, "relayed", Duration::from_secs(10));
    expect_path(n3, n2, "relayed", Duration::from_secs(10));
    expect_path(n1, n2, "direct", Duration::from_secs(10));
    // The paths run over the underlay family asked for.
    for (a, b) in [(n2, n3), (n1, n2)] {
        let peer = a.peer_status(&b.public_key()).expect("listed");
        let endpoint = peer.str_field("endpoint");
        assert_eq!(
            endpoint.starts_with('['),
            underlay == Family::V6,
            "{} reaches {} at {endpoint}, not over {underlay:?}",
            a.name(),
            b.name()
        );
    }

    for from in &all {
        for to in &all {
            if from.name() != to.name() {
                ping_df(from, to, IpAddr::V4(to.mesh_v4()), mtu - 28);
                ping_df(from, to, IpAddr::V6(to.mesh_v6()), mtu - 48);
            }
        }
    }

    let mut port = 41000;
    for (from, to, path) in [(n2, n3, "relayed"), (n1, n2, "direct")] {
        for dest in [IpAddr::V4(to.mesh_v4()), IpAddr::V6(to.mesh_v6())] {
            port += 1;
            let report = tcp_transfer(from.netns(), to.netns(), dest, port, TRANSFER, TRANSFER_TIMEOUT)
                .unwrap_or_else(|e| {
                    panic!(
                        "32 MiB of TCP from {} to {} at {dest} ({path}) failed: {e}\n{}\n{}",
                        from.name(),
                        to.name(),
                        diagnostics(from),
                        diagnostics(to)
                    )
                });
            report.assert_intact();
            println!(
                "{} -> {} at {dest} ({path}): {} bytes in {:?} ({:.2} Gbit/s)",
                from.name(),
                to.name(),
                report.received_bytes,
                report.elapsed,
                report.gbit_per_s()
            );
        }
    }
}

/// The MTU of a node's mesh interface, as `ip` shows it.
#[track_caller]
fn interface_mtu(node: &MeshNode) -> u16 {
    let shown = node.netns().ip(&["-o", "link", "show", "dev", node.interface()]);
    let mut words = shown.split_whitespace();
    words
        .by_ref()
        .find(|w| *w == "mtu")
        .and_then(|_| words.next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no MTU in `ip link show` of {}: {shown}", node.interface()))
}

/// Three pings of `payload` bytes with don't-fragment, every one answered.
#[track_caller]
fn ping_df(from: &MeshNode, to: &MeshNode, dest: IpAddr, payload: u16) {
    let size = payload.to_string();
    let argv = [
        "ping",
        "-n",
        "-q",
        "-M",
        "do",
        "-s",
        &size,
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        &dest.to_string(),
    ];
    if let Err(e) = from.netns().try_run(&argv, Duration::from_secs(15)) {
        panic!(
            "{} -> {} at {dest}: {payload}-byte pings with DF set (a packet of the interface MTU) were \
             lost: {e}\n{}\n{}",
            from.name(),
            to.name(),
            diagnostics(from),
            diagnostics(to)
        );
    }
}

/// 3. A path that carries less than the interface MTU: n2's own link to its NAT is set to 1400 bytes,
///    so its relayed datagrams of a full-size packet (1376 + 104) do not fit. The kernel refuses the
///    first with EMSGSIZE; meshd learns that the path carries 1400 - 104 = 1296 and answers the next
///    too-big packets with ICMP "fragmentation needed" / "packet too big" into the TUN device: the
///    kernel of n2 then holds a path MTU of 1296 towards n3, DF pings of that size cross, and
///    32 MiB of TCP from n2 to n3 complete with the same SHA-256, in both families.
#[test]
fn mesh_a_smaller_underlay_mtu_is_learned_and_answered_with_icmp() {
    const LINK_MTU: u16 = 1400;
    const PATH_MTU: u16 = LINK_MTU - 104;
    e2e(|lab| {
        let mesh = Mesh::three_nodes(lab);
        let (n2, n3) = (mesh.node("n2"), mesh.node("n3"));
        let mtu = interface_mtu(n2);
        ping_every_pair(&[n2, n3]);
        expect_path(n2, n3, "relayed", Duration::from_secs(10));
        n2.netns()
            .ip(&["link", "set", "dev", "eth0", "mtu", &LINK_MTU.to_string()]);

        for dest in [IpAddr::V4(n3.mesh_v4()), IpAddr::V6(n3.mesh_v6())] {
            let header = if dest.is_ipv4() { 28 } else { 48 };
            // Full-size pings: the first meets EMSGSIZE, the next are answered "too big".
            let argv_full = [
                "ping",
                "-n",
                "-M",
                "do",
                "-s",
                &(mtu - header).to_string(),
                "-c",
                "3",
                "-i",
                "0.3",
                "-W",
                "1",
                &dest.to_string(),
            ];
            let full = n2.netns().try_run(&argv_full, Duration::from_secs(15));
            let text = match &full {
                Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
                Err(e) => e.to_string(),
            };
            println!("full-size pings from n2 to {dest} over the smaller link:\n{text}");
            let route = n2.netns().ip(&["route", "get", &dest.to_string()]);
            assert!(
                route.contains(&format!("mtu {PATH_MTU}")),
                "n2's kernel did not learn the path MTU {PATH_MTU} towards {dest} from meshd's answer; \
                 `ip route get` shows:\n{route}\n{}",
                diagnostics(n2)
            );
            ping_df(n2, n3, dest, PATH_MTU - header);
            let port = if dest.is_ipv4() { 42001 } else { 42002 };
            let report = tcp_transfer(n2.netns(), n3.netns(), dest, port, TRANSFER, TRANSFER_TIMEOUT)
                .unwrap_or_else(|e| {
                    panic!(
                        "32 MiB of TCP from n2 to n3 at {dest} over the smaller link failed: {e}\n{}\n{}",
                        diagnostics(n2),
                        diagnostics(n3)
                    )
                });
            report.assert_intact();
            println!(
                "n2 -> n3 at {dest} over a {LINK_MTU}-byte link: {} bytes in {:?}",
                report.received_bytes, report.elapsed
            );
        }
        let log = n2.log_tail(400);
        assert!(
            log.contains(&format!("carries packets of at most {PATH_MTU} bytes")),
            "n2's log does not say what it learned:\n{}",
            n2.log_tail(30)
        );
        assert!(
            log.contains("too_big="),
            "n2 counted no too_big drop:\n{}",
            n2.log_tail(30)
        );
    });
}

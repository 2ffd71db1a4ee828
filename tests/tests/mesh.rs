//! The mesh end to end: a controller and nodes, each `meshd up` in its own network namespace, some
//! behind NAT, joined with tokens and driven with the CLI as an operator would (see
//! `meshd_tests::mesh` for the topology and addresses).

use std::net::{IpAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use meshd_tests::capture::Capture;
use meshd_tests::json::Value;
use meshd_tests::mesh::{
    self, CONTROLLER_UNDERLAY, Mesh, MeshNode, NETWORK, NodeSpec, THREE_NODES, Uplink, expect_path,
    expect_refusal, ping_mesh, ping_run, unix_time,
};
use meshd_tests::{e2e, spoof, token};

/// Where the nodes of [`mesh::THREE_NODES`] stand: public ones are reached directly, two NATed ones
/// reach each other through the controller's relay.
fn expected_path(a: &str, b: &str) -> &'static str {
    let natted = |n: &str| n == "n2" || n == "n3";
    if natted(a) && natted(b) {
        "relayed"
    } else {
        "direct"
    }
}

/// 1. Four daemons (the controller's node, n1 public, n2 and n3 behind NATs of their own) join one
///    network with tokens and every pair pings over both mesh families; n2 and n3 go through the
///    relay, which forwards their traffic without seeing it: a marker sent from n2 to n3 arrives and
///    is visible on n3's mesh interface (so the capture works), while captures on the controller's
///    underlay and mesh interfaces see the relayed datagrams but never the marker.
#[test]
fn mesh_three_nodes_ping_through_nat_and_relay() {
    e2e(|lab| {
        let mesh = Mesh::three_nodes(lab);
        let (ctl, n1, n2, n3) = (&mesh.ctl, mesh.node("n1"), mesh.node("n2"), mesh.node("n3"));

        // Every node is a WireGuard interface the stock tool can read, with the daemon's key.
        for node in mesh.all() {
            let shown = node.netns().run(&["wg", "show", node.interface()]);
            let key = node.public_key();
            assert!(
                shown.contains(&key),
                "`wg show {}` on {} does not show the key {key} that `meshd status` reports:\n{shown}",
                node.interface(),
                node.name()
            );
        }

        mesh::ping_every_pair(&mesh.all());

        let all = mesh.all();
        for a in &all {
            for b in &all {
                if a.name() != b.name() {
                    expect_path(a, b, expected_path(a.name(), b.name()), Duration::from_secs(10));
                }
            }
        }

        // The controller shows where it hears each node from: the public address, or the NAT's.
        for node in [n1, n2, n3] {
            let expected = node.public_addr().to_string();
            let mut last = Value::Null;
            let seen = meshd_tests::process::try_wait_until(
                &format!("the member list to show {} last at {expected}", node.name()),
                Duration::from_secs(5),
                || {
                    last = mesh.member(node.name());
                    last.get("last_endpoint")
                        .and_then(Value::as_str)
                        .and_then(|e| e.rsplit_once(':'))
                        .is_some_and(|(ip, _)| ip == expected)
                        && last.get("last_seen").is_some_and(|t| !t.is_null())
                },
            );
            if let Err(e) = seen {
                panic!("{e}; it shows {last}");
            }
        }

        relay_does_not_see_the_marker(ctl, n2, n3);
        // n1 was pinged by everyone; the mesh is still whole after the marker test.
        ping_mesh(n3, n1, IpAddr::V4(n1.mesh_v4()));
    });
}

fn relay_does_not_see_the_marker(ctl: &MeshNode, n2: &MeshNode, n3: &MeshNode) {
    const MARKER: &[u8] = b"meshd-marker-3b1f9c2e7d45a06b";
    const DATAGRAMS: usize = 20;
    const PORT: u16 = 40404;
    let n3_v4 = n3.mesh_v4();
    let ctl_v4 = ctl.mesh_v4();
    let receiver = n3
        .netns()
        .enter(|| UdpSocket::bind((n3_v4, PORT)))
        .unwrap_or_else(|e| panic!("cannot bind {n3_v4}:{PORT} in n3: {e}"));
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("a read timeout");
    let sender = n2
        .netns()
        .enter(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("a UDP socket in n2");

    let limit = Duration::from_secs(60);
    let ctl_wire = Capture::start(ctl.netns(), "eth0", limit);
    let ctl_tun = Capture::start(ctl.netns(), ctl.interface(), limit);
    let n3_tun = Capture::start(n3.netns(), n3.interface(), limit);

    let mut payload = Vec::new();
    while payload.len() < 200 {
        payload.extend_from_slice(MARKER);
    }
    for _ in 0..DATAGRAMS {
        sender
            .send_to(&payload, (n3_v4, PORT))
            .unwrap_or_else(|e| panic!("n2 cannot send to {n3_v4}:{PORT}: {e}"));
        thread::sleep(Duration::from_millis(20));
    }
    let mut received = 0;
    let mut buf = [0u8; 2048];
    let _ =
        meshd_tests::process::try_wait_until("the marker datagrams at n3", Duration::from_secs(5), || {
            while let Ok((len, _)) = receiver.recv_from(&mut buf) {
                assert_eq!(&buf[..len], &payload[..], "n3 received something else");
                received += 1;
                if received == DATAGRAMS {
                    break;
                }
            }
            received == DATAGRAMS
        });
    // Traffic of the controller's own on its mesh interface, so that capture is shown to work too.
    n2.netns()
        .ping_once(IpAddr::V4(ctl_v4))
        .unwrap_or_else(|e| panic!("n2 cannot ping the controller's node at {ctl_v4}: {e}"));
    // Let the last packets reach the sockets of the captures.
    thread::sleep(Duration::from_millis(200));
    let ctl_wire = ctl_wire.stop();
    let ctl_tun = ctl_tun.stop();
    let n3_tun = n3_tun.stop();
    println!(
        "marker: {received}/{DATAGRAMS} datagrams arrived\n{}\n{}\n{}",
        ctl_wire.summary(),
        ctl_tun.summary(),
        n3_tun.summary()
    );

    assert!(
        received > 0,
        "none of {DATAGRAMS} UDP datagrams from n2 reached n3 at {n3_v4}:{PORT}\n{}\n--- n2 log ---\n{}\n--- n3 log ---\n{}",
        n3_tun.summary(),
        n2.log_tail(25),
        n3.log_tail(25)
    );
    // The positive control: the capture sees the marker where it must be visible.
    assert!(
        n3_tun.count_containing(MARKER) >= received,
        "the capture on n3's mesh interface missed the marker ({} packets with it, {received} datagrams \
         received): the negative checks below would prove nothing\n{}",
        n3_tun.count_containing(MARKER),
        n3_tun.summary()
    );
    // The relayed datagrams went through the controller's underlay interface, in and out.
    let min_len = payload.len();
    let in_from_n2 = ctl_wire.udp4_between(n2.public_addr(), CONTROLLER_UNDERLAY.parse().unwrap(), min_len);
    let out_to_n3 = ctl_wire.udp4_between(CONTROLLER_UNDERLAY.parse().unwrap(), n3.public_addr(), min_len);
    assert!(
        in_from_n2 >= received && out_to_n3 >= received,
        "n2 -> n3 is relayed, so each of the {received} datagrams n3 got must cross the controller's \
         underlay (from n2's NAT {} and on to n3's NAT {}, at least {min_len} bytes of UDP payload each); \
         seen {in_from_n2} in and {out_to_n3} out\n{}",
        n2.public_addr(),
        n3.public_addr(),
        ctl_wire.summary()
    );
    assert!(
        !ctl_tun.packets.is_empty(),
        "the capture on the controller's {} saw nothing, not even n2's ping to {ctl_v4}",
        ctl.interface()
    );
    assert_eq!(
        ctl_wire.count_containing(MARKER),
        0,
        "the relay's underlay carried the marker in clear text\n{}",
        ctl_wire.summary()
    );
    assert_eq!(
        ctl_tun.count_containing(MARKER),
        0,
        "the relay's own mesh interface saw the marker: it decrypted traffic between two other nodes\n{}",
        ctl_tun.summary()
    );
}

/// 2. Deauthorizing a member cuts it off from every peer, both ways, within 2 s of the CLI returning;
///    authorizing it again restores its pings within 10 s.
#[test]
fn mesh_deauthorize_cuts_off_within_2s_and_reauthorize_restores() {
    e2e(|lab| {
        let mesh = Mesh::three_nodes(lab);
        let n1 = mesh.node("n1");
        let others = [&mesh.ctl, mesh.node("n2"), mesh.node("n3")];
        let n1_v4 = IpAddr::V4(n1.mesh_v4());
        let directions: Vec<(&MeshNode, &MeshNode, IpAddr)> = others
            .iter()
            .flat_map(|o| {
                let o_v4 = IpAddr::V4(o.mesh_v4());
                [(n1, *o, o_v4), (*o, n1, n1_v4)]
            })
            .collect();
        for (from, to, dest) in &directions {
            ping_mesh(from, to, *dest);
        }

        // Pings every 200 ms in all six directions; the deauthorization lands in the middle.
        const COUNT: u32 = 30;
        const INTERVAL: Duration = Duration::from_millis(200);
        let (runs, cut_at) = thread::scope(|s| {
            let handles: Vec<_> = directions
                .iter()
                .map(|(from, _, dest)| s.spawn(move || ping_run(from, *dest, COUNT, INTERVAL)))
                .collect();
            thread::sleep(Duration::from_millis(1200));
            mesh.ctl.cli_ok(&["member", "deauthorize", "n1"]);
            let cut_at = unix_time();
            let runs: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("a ping thread"))
                .collect();
            (runs, cut_at)
        });
        let mut report = String::new();
        for ((from, to, _), run) in directions.iter().zip(&runs) {
            let last = run
                .last_reply()
                .map_or("none".to_owned(), |t| format!("{:+.2} s", t - cut_at));
            report.push_str(&format!(
                "{} -> {} ({}): {} replies before the CLI returned, last reply at {last}, {} after +2 s\n",
                from.name(),
                to.name(),
                run.to,
                run.replies_before(cut_at),
                run.replies_after(cut_at + 2.0)
            ));
        }
        println!("deauthorize n1:\n{report}");
        for ((from, to, _), run) in directions.iter().zip(&runs) {
            assert!(
                run.replies_before(cut_at) > 0,
                "{} -> {}: no reply even before the deauthorization; the measurement is void\n{report}\n{}",
                from.name(),
                to.name(),
                run.output
            );
            assert_eq!(
                run.replies_after(cut_at + 2.0),
                0,
                "{} -> {}: pings still answered more than 2 s after `member deauthorize n1` returned\n\
                 {report}\n{}\n--- n1 log ---\n{}\n--- controller log ---\n{}",
                from.name(),
                to.name(),
                run.output,
                n1.log_tail(20),
                mesh.ctl.log_tail(20)
            );
        }

        let member = mesh.member("n1");
        assert_eq!(
            member.field("authorized").as_bool(),
            Some(false),
            "the member list must show n1 deauthorized: {member}"
        );
        let mut last = Value::Null;
        let told = meshd_tests::process::try_wait_until(
            "n1's status to show its membership deauthorized",
            Duration::from_secs(5),
            || {
                last = n1.status();
                last.get("membership")
                    .and_then(|m| m.get("authorized"))
                    .and_then(Value::as_bool)
                    == Some(false)
            },
        );
        if let Err(e) = told {
            panic!("{e}: {last}");
        }

        mesh.ctl.cli_ok(&["member", "authorize", "n1"]);
        let restored_from = unix_time();
        // The node that comes back speaks first (its three directions probed at once), then its peers:
        // each direction until it answers. Probing the reverse
        // directions at the same time would let a peer's packets repair what n1's alone must repair.
        // (seconds after the CLI returned when probing began, and when the first answer came)
        let probe = |group: &[&(&MeshNode, &MeshNode, IpAddr)]| -> Vec<(f64, Option<f64>)> {
            thread::scope(|s| {
                let probes: Vec<_> = group
                    .iter()
                    .map(|(from, _, dest)| {
                        s.spawn(move || {
                            // Up to 25 s from the CLI returning (at least 3 s each), so that a late
                            // direction is measured, not just failed; the bound checked is 10 s.
                            let began = unix_time() - restored_from;
                            let left = (25.0 - began).max(3.0);
                            let what = format!("{} to ping {dest}", from.name());
                            let answered = meshd_tests::process::try_wait_until(
                                &what,
                                Duration::from_secs_f64(left),
                                || from.netns().ping_once(*dest).is_ok(),
                            );
                            (began, answered.ok().map(|()| unix_time() - restored_from))
                        })
                    })
                    .collect();
                probes
                    .into_iter()
                    .map(|p| p.join().expect("a probe thread"))
                    .collect()
            })
        };
        let (from_n1, to_n1): (Vec<_>, Vec<_>) =
            directions.iter().partition(|(from, _, _)| from.name() == "n1");
        let mut answered = probe(&from_n1);
        answered.extend(probe(&to_n1));
        let directions: Vec<_> = from_n1.into_iter().chain(to_n1).copied().collect();
        let mut outcome = String::new();
        for ((from, to, dest), (began, answered)) in directions.iter().zip(&answered) {
            outcome.push_str(&format!(
                "{} -> {} ({dest}): probed from {began:+.2} s, {}\n",
                from.name(),
                to.name(),
                match answered {
                    Some(t) if *t <= 10.0 => format!("answers at {t:+.2} s"),
                    Some(t) => format!("answers only at {t:+.2} s, later than 10 s"),
                    None => "NO ANSWER".to_owned(),
                }
            ));
        }
        let failed = answered.iter().any(|(_, t)| t.is_none_or(|t| t > 10.0));
        println!("authorize n1:\n{outcome}");
        assert!(
            !failed,
            "pings did not all come back within 10 s of `member authorize n1` returning:\n{outcome}\n{}\n{}",
            mesh::diagnostics(n1),
            mesh::diagnostics(&mesh.ctl)
        );
        for (from, to, dest) in &directions {
            ping_mesh(from, to, *dest);
        }
    });
}

/// 3. `kill -9` of the controller: tunnels that do not go through it keep working while it is down;
///    restarted with the same configuration it has the same networks, members, addresses and tokens,
///    and a new node joins with a token made before the crash.
#[test]
fn mesh_controller_kill_9_keeps_tunnels_and_state() {
    e2e(|lab| {
        let mut mesh = Mesh::three_nodes(lab);
        let spare = mesh.token(&["--uses", "1"]);
        // When and where members were last heard from is written a second or more after it happens,
        // so it may legitimately differ between two snapshots; everything else must not.
        let ignore = ["last_seen", "last_endpoint"];
        let snapshot = |mesh: &Mesh<'_>| {
            (
                mesh.members().without_keys(&ignore).sorted(),
                mesh.ctl
                    .cli_json(&["network", "show", NETWORK])
                    .without_keys(&ignore),
                mesh.ctl
                    .cli_json(&["token", "list"])
                    .without_keys(&ignore)
                    .sorted(),
                mesh.ctl.status().str_field("public_key").to_owned(),
                mesh::mesh_addrs(&mesh.ctl.status()),
            )
        };
        let before = snapshot(&mesh);
        println!(
            "state before kill -9: members {}\nnetwork {}\ntokens {}",
            before.0, before.1, before.2
        );

        // Field by field, so the controller can be killed and restarted while these are borrowed.
        let (n1, n2) = (&mesh.nodes[0], &mesh.nodes[1]);
        let (n1_v6, n2_v4) = (n1.mesh_v6(), n2.mesh_v4());
        ping_mesh(n1, n2, IpAddr::V4(n2_v4));
        ping_mesh(n2, n1, IpAddr::V6(n1_v6));
        expect_path(n1, n2, "direct", Duration::from_secs(10));
        expect_path(n2, n1, "direct", Duration::from_secs(10));

        mesh.ctl.kill9();
        let (a, b) = thread::scope(|s| {
            let a = s.spawn(|| ping_run(n1, IpAddr::V4(n2_v4), 25, Duration::from_millis(200)));
            let b = s.spawn(|| ping_run(n2, IpAddr::V6(n1_v6), 25, Duration::from_millis(200)));
            (a.join().expect("ping thread"), b.join().expect("ping thread"))
        });
        for run in [&a, &b] {
            assert!(
                run.transmitted >= 25 && run.replies.len() >= 25,
                "{} -> {} lost pings while the controller was down ({} of {} answered)\n{}\n\
                 --- n1 log ---\n{}\n--- n2 log ---\n{}",
                run.from,
                run.to,
                run.replies.len(),
                run.transmitted,
                run.output,
                n1.log_tail(20),
                n2.log_tail(20)
            );
        }
        let n1_status = n1.status();
        assert_eq!(
            n1_status
                .get("membership")
                .and_then(|m| m.get("network"))
                .and_then(Value::as_str),
            Some(NETWORK),
            "n1 must keep its membership while the controller is down: {n1_status}"
        );

        mesh.ctl.start();
        let after = snapshot(&mesh);
        assert_eq!(
            after.0, before.0,
            "the member list changed across kill -9 and restart (last_seen and last_endpoint ignored)"
        );
        assert_eq!(
            after.1, before.1,
            "the network changed across kill -9 and restart"
        );
        assert_eq!(
            after.2, before.2,
            "the token list changed across kill -9 and restart"
        );
        assert_eq!(
            after.3, before.3,
            "the controller's key changed across kill -9 and restart"
        );
        assert_eq!(
            after.4, before.4,
            "the controller's node has other addresses after the restart"
        );

        let index = mesh.nodes.len();
        mesh.add_node(NodeSpec {
            name: "n4",
            interface: "mesh4",
            uplink: Uplink::Public("192.0.2.35"),
        });
        mesh.join_ok(index, &spare);
        let (ctl, n1, n4) = (&mesh.ctl, mesh.node("n1"), mesh.node("n4"));
        ping_mesh(n4, n1, IpAddr::V4(n1.mesh_v4()));
        ping_mesh(n1, n4, IpAddr::V6(n4.mesh_v6()));
        ping_mesh(n4, ctl, IpAddr::V4(ctl.mesh_v4()));
        ping_mesh(ctl, mesh.node("n2"), IpAddr::V4(mesh.node("n2").mesh_v4()));
    });
}

/// 4. Tokens the controller must refuse, each with its reason, and none of them changes its members or
///    tokens: text that is no token, a real token with a character changed, a well-formed token with an
///    id this controller never issued (made from a real one: its key, another id, a valid check), a
///    real token's id with a wrong secret, an expired token, a revoked one, and a single-use token
///    already used by another node. The node refused every time then joins with a good token.
#[test]
fn mesh_bad_tokens_are_refused_and_change_nothing() {
    e2e(|lab| {
        // n1 public and n2 behind NAT, as in the three-node scenario.
        let mut mesh = Mesh::start(lab, &THREE_NODES[..2]);
        let ctl_at = Mesh::controller_endpoint();
        let snapshot = |mesh: &Mesh<'_>| {
            (
                mesh.members().without_keys(&["last_seen"]).sorted(),
                mesh.ctl.cli_json(&["token", "list"]).sorted(),
            )
        };
        let refused = |mesh: &Mesh<'_>, what: &str, token: &str, words: &[&str]| {
            let before = snapshot(mesh);
            let out = mesh.node("n2").join(token, ctl_at);
            let message = expect_refusal(&out, what, words);
            println!("{what}: refused: {message}");
            let after = snapshot(mesh);
            assert_eq!(after.0, before.0, "{what}: the refusal changed the member list");
            assert_eq!(after.1, before.1, "{what}: the refusal changed the token list");
            let status = mesh.node("n2").status();
            assert!(
                status.field("membership").is_null(),
                "{what}: the refused node must not be a member: {status}"
            );
        };
        let malformed = ["malformed", "invalid", "not a"];
        let unknown = ["does not know", "unknown", "not known"];

        refused(&mesh, "text that is not a token", "not-a-token", &malformed);
        let good = mesh.token(&[]);
        refused(
            &mesh,
            "a token with one character changed",
            &token::damaged(&good),
            &malformed,
        );
        refused(
            &mesh,
            "a token id this controller never issued",
            &token::with_unknown_id(&good),
            &unknown,
        );
        refused(
            &mesh,
            "a real token id with a wrong secret",
            &token::with_wrong_secret(&good),
            &unknown,
        );

        let expiring = mesh.token(&["--expires", "1s"]);
        thread::sleep(Duration::from_millis(2100));
        refused(&mesh, "an expired token", &expiring, &["expired"]);

        let revoked = mesh.token(&[]);
        mesh.ctl.cli_ok(&["token", "revoke", &token::id_hex(&revoked)]);
        refused(&mesh, "a revoked token", &revoked, &["revoked"]);

        let single = mesh.token(&["--uses", "1"]);
        mesh.join_ok(0, &single);
        refused(
            &mesh,
            "a single-use token used by n1",
            &single,
            &["used", "no uses left"],
        );

        // The refusals left nothing behind on n2: the good token, untouched by the guesses, works.
        mesh.join_ok(1, &good);
        let (n1, n2) = (mesh.node("n1"), mesh.node("n2"));
        ping_mesh(n2, n1, IpAddr::V4(n1.mesh_v4()));
    });
}

/// The harness under the tests above, without meshd: public hosts route to each other through `inet`,
/// a NATed host is seen from its router's outside address, and a capture sees a datagram in both
/// directions with its payload (so the relay test's "never the marker" cannot pass vacuously).
#[test]
fn mesh_underlay_routes_nats_and_captures() {
    e2e(|lab| {
        let mut underlay = mesh::Underlay::new(lab);
        let (ctl, _) = underlay.host("ctl", Uplink::Public(CONTROLLER_UNDERLAY));
        let (n1, _) = underlay.host("n1", Uplink::Public("192.0.2.11"));
        let (n2, n2_public) = underlay.host("n2", Uplink::Nat("192.0.2.19"));
        n1.ping_ok(CONTROLLER_UNDERLAY.parse().unwrap(), 1, Duration::from_secs(5));
        n2.ping_ok("192.0.2.11".parse().unwrap(), 1, Duration::from_secs(5));

        let server = ctl
            .enter(|| UdpSocket::bind((CONTROLLER_UNDERLAY, 9999)))
            .expect("a UDP socket in ctl");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        let client = n2
            .enter(|| UdpSocket::bind("0.0.0.0:0"))
            .expect("a UDP socket in n2");
        let capture = Capture::start(&ctl, "eth0", Duration::from_secs(30));
        client
            .send_to(b"harness-marker", (CONTROLLER_UNDERLAY, 9999))
            .expect("send");
        let mut buf = [0u8; 64];
        let (len, from) = server.recv_from(&mut buf).expect("the datagram arrives");
        assert_eq!(&buf[..len], b"harness-marker");
        assert_eq!(
            from.ip(),
            IpAddr::V4(n2_public),
            "seen from the NAT's outside address"
        );
        server.send_to(b"harness-answer", from).expect("answer");
        let (len, _) = n2
            .enter(|| {
                client.set_read_timeout(Some(Duration::from_secs(5)))?;
                client.recv_from(&mut buf)
            })
            .expect("the answer comes back through the NAT");
        assert_eq!(&buf[..len], b"harness-answer");
        thread::sleep(Duration::from_millis(100));
        let seen = capture.stop();
        let ctl_ip = CONTROLLER_UNDERLAY.parse().unwrap();
        assert_eq!(seen.count_containing(b"harness-marker"), 1, "{}", seen.summary());
        assert_eq!(seen.count_containing(b"harness-answer"), 1, "{}", seen.summary());
        assert_eq!(seen.udp4_between(n2_public, ctl_ip, 14), 1, "{}", seen.summary());
        assert_eq!(seen.udp4_between(ctl_ip, n2_public, 14), 1, "{}", seen.summary());
        assert!(seen.packets.iter().any(|p| p.outgoing) && seen.packets.iter().any(|p| !p.outgoing));
    });
}

/// 6. A stranger on the Internet who forges a NATed member's address and port (as the controller
///    sees it) sends relay frames for another member, without a token and with a made-up one: the
///    relay forwards none of them (a capture on its underlay sees them come in and never go out),
///    counts every one as `relay_bad_token`, and the members' own relayed traffic keeps flowing.
#[test]
fn mesh_relay_forwards_nothing_for_a_forged_member_address() {
    const MARKER: &[u8] = b"meshd-forged-relay-frame-5c1d";
    const EACH: usize = 20;
    e2e(|lab| {
        let mesh = Mesh::three_nodes(lab);
        let (ctl, n2, n3) = (&mesh.ctl, mesh.node("n2"), mesh.node("n3"));
        ping_mesh(n2, n3, IpAddr::V4(n3.mesh_v4()));
        expect_path(n2, n3, "relayed", Duration::from_secs(10));
        // Where the controller hears n2 from (its NAT's address), once it has written it down.
        let mut n2_seen = Value::Null;
        meshd_tests::wait_until(
            "the controller to show n2's endpoint",
            Duration::from_secs(10),
            || {
                n2_seen = mesh.member("n2");
                n2_seen.get("last_endpoint").and_then(Value::as_str).is_some()
            },
        );
        let n2_at: std::net::SocketAddrV4 = n2_seen
            .str_field("last_endpoint")
            .parse()
            .unwrap_or_else(|e| panic!("n2's last endpoint is not IPv4 address:port ({e}): {n2_seen}"));
        let relay: std::net::SocketAddrV4 = format!("{CONTROLLER_UNDERLAY}:{}", mesh::PORT).parse().unwrap();

        let capture = Capture::start(ctl.netns(), "eth0", Duration::from_secs(30));
        let n3_key = spoof::key_bytes(&n3.public_key());
        for token in [[0u8; 8], [0x42; 8]] {
            // 0x81 | 0 0 0 | token | destination key | an inner "data message" with the marker.
            let mut frame = vec![0x81, 0, 0, 0];
            frame.extend_from_slice(&token);
            frame.extend_from_slice(&n3_key);
            frame.extend_from_slice(&[4, 0, 0, 0]);
            frame.extend_from_slice(MARKER);
            spoof::send_udp4(mesh.underlay.inet(), n2_at, relay, &frame, EACH);
        }
        // The relay's own counter, as its debug log reports it every 5 s.
        let mut counted = 0;
        let logged = meshd_tests::process::try_wait_until(
            &format!("the controller to log relay_bad_token={}", 2 * EACH),
            Duration::from_secs(12),
            || {
                counted = ctl
                    .log_tail(400)
                    .lines()
                    .filter_map(|l| l.split("relay_bad_token=").nth(1))
                    .filter_map(|n| n.split_whitespace().next()?.parse::<usize>().ok())
                    .max()
                    .unwrap_or(0);
                counted >= 2 * EACH
            },
        );
        let seen = capture.stop();
        let relay_ip = *relay.ip();
        let came_in = seen
            .packets
            .iter()
            .filter(|p| !p.outgoing && p.contains(MARKER))
            .count();
        let went_out = seen
            .packets
            .iter()
            .filter(|p| p.outgoing && p.contains(MARKER))
            .count();
        println!(
            "forged frames: {came_in} in, {went_out} out, {counted} counted\n{}",
            seen.summary()
        );
        assert!(
            came_in >= 2 * EACH,
            "the forged frames must reach the relay for the test to mean anything: {came_in} of {} \
             seen arriving at {relay_ip}\n{}",
            2 * EACH,
            seen.summary()
        );
        assert_eq!(
            went_out,
            0,
            "the relay forwarded forged frames\n{}",
            seen.summary()
        );
        if let Err(e) = logged {
            panic!("{e}: counted {counted}\n{}", ctl.log_tail(30));
        }
        // The members' own relayed traffic is untouched.
        ping_mesh(n2, n3, IpAddr::V4(n3.mesh_v4()));
        ping_mesh(n3, n2, IpAddr::V6(n2.mesh_v6()));
    });
}

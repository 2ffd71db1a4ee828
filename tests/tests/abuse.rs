//! A stranger on the Internet against the controller's port, while the members work.
//!
//! An attacker namespace on the underlay (192.0.2.35, and 192.0.2.36: the "forged" source whose
//! answers it can see) floods the controller's UDP port for [`FLOOD`] with random bytes, forged joins
//! (valid envelopes from fresh keys with no token), the same forged join again, envelopes under random
//! keys that do not authenticate, relay frames for a member from a non-member, and replays of a
//! member's own control messages and WireGuard packets captured at the controller; meanwhile an admin
//! client holds [`IDLE_CONNECTIONS`] idle connections to the controller's API (its open-files limit
//! lowered to 1024, as on a default system) and the members ping each other and the controller.
//!
//! It checks that the members lose no more than 1% of their pings, the controller's resident memory
//! grows by less than [`RSS_GROWTH_KIB`], every datagram is counted under a drop reason in
//! `meshd status --json` (or in the kernel's receive-buffer errors), each kind of attack under its
//! own reason, the API still answers, and no datagram to the forged source is larger than the
//! smallest it sent.
//!
//! `MESHD_ABUSE_IDLE_CONNECTIONS=N` holds N idle connections instead of [`IDLE_CONNECTIONS`]: a way to
//! look at the rest of the test on a build whose API has no connection cap (there the idle
//! connections exhaust the daemon's descriptors and it shuts down).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use meshd_core::channel::Channel;
use meshd_core::message::{Body, JoinMsg, LocalInfo};
use meshd_crypto::{PublicKey, StaticSecret};
use meshd_tests::capture::{Capture, Captured};
use meshd_tests::e2e;
use meshd_tests::json::Value;
use meshd_tests::mesh::{
    CONTROLLER_UNDERLAY, Mesh, MeshNode, PORT, THREE_NODES, Uplink, ping_mesh, ping_run, unix_time,
};
use meshd_tests::netns::Netns;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// How long the flood lasts; the pings run as long.
const FLOOD: Duration = Duration::from_secs(10);
/// Datagrams per second the attacker sends.
const RATE: u64 = 2000;
/// The attacker's own address, and the address it "forges" (a second address of its namespace, so
/// the test sees what the controller sends there).
const ATTACKER: &str = "192.0.2.35";
const FORGED: &str = "192.0.2.36";
/// Idle connections an admin client holds to the controller's API during the flood.
const IDLE_CONNECTIONS: usize = 1100;
/// The controller's open-files limit during the test, as on a default system.
const NOFILE: &str = "1024";
/// How much the controller's resident memory may grow over the flood.
const RSS_GROWTH_KIB: u64 = 64 * 1024;
/// Pings per member pair, one every 100 ms for the length of the flood.
const PINGS: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    RandomBytes,
    ForgedJoin,
    ForgedJoinAgain,
    RandomKeyEnvelope,
    ForgedRelayFrame,
    ReplayedCapture,
}

const KINDS: [Kind; 6] = [
    Kind::RandomBytes,
    Kind::ForgedJoin,
    Kind::ForgedJoinAgain,
    Kind::RandomKeyEnvelope,
    Kind::ForgedRelayFrame,
    Kind::ReplayedCapture,
];

#[test]
fn a_strangers_flood_costs_the_members_nothing() {
    e2e(|lab| {
        let mut mesh = Mesh::start(lab, &THREE_NODES[..2]);
        for i in 0..2 {
            let token = mesh.token(&[]);
            mesh.join_ok(i, &token);
        }
        let (n1_v4, n2_v4, ctl_v4) = (
            mesh.node("n1").mesh_v4(),
            mesh.node("n2").mesh_v4(),
            mesh.ctl.mesh_v4(),
        );
        ping_mesh(mesh.node("n1"), mesh.node("n2"), IpAddr::V4(n2_v4));
        ping_mesh(mesh.node("n2"), &mesh.ctl, IpAddr::V4(ctl_v4));
        let (evil, _) = mesh.underlay.host("evil", Uplink::Public(ATTACKER));
        evil.add_addr("eth0", &format!("{FORGED}/29"));
        let (ctl, n1, n2) = (&mesh.ctl, mesh.node("n1"), mesh.node("n2"));
        let ctl_key = key_of(ctl);
        let n2_key = key_of(n2);

        // What a member sends the controller, captured on its underlay: at least one poll.
        let n1_addr = n1.public_addr();
        let capture = Capture::start(ctl.netns(), "eth0", Duration::from_secs(30));
        thread::sleep(Duration::from_secs(6));
        let replays = udp_payloads(&capture.stop(), n1_addr);
        assert!(
            replays.iter().any(|d| d[0] == 0x80),
            "no control message from n1 captured in 6 s"
        );

        let pid = meshd_pid(ctl.netns());
        let limited = std::process::Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={NOFILE}:{NOFILE}")])
            .status()
            .expect("prlimit (util-linux) runs");
        assert!(limited.success(), "prlimit failed");
        let rss_before = rss_kib(pid);
        let cpu_before = cpu_secs(pid);
        let drops_before = drops(&ctl.status());
        let kernel_before = udp_receive_errors(ctl.netns());

        let idle_wanted = std::env::var("MESHD_ABUSE_IDLE_CONNECTIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(IDLE_CONNECTIONS);
        let idle: Vec<TcpStream> = ctl.netns().enter(|| {
            (0..idle_wanted)
                .map_while(|_| TcpStream::connect("127.0.0.1:7450").ok())
                .collect()
        });
        let replies = Capture::start(&evil, "eth0", FLOOD * 6);
        let flood_started = unix_time();
        let ((sent, smallest_sealed), pings) = thread::scope(|s| {
            let a = s.spawn(|| ping_run(n1, IpAddr::V4(n2_v4), PINGS, FLOOD / PINGS));
            let b = s.spawn(|| ping_run(n2, IpAddr::V4(n1_v4), PINGS, FLOOD / PINGS));
            let c = s.spawn(|| ping_run(n2, IpAddr::V4(ctl_v4), PINGS, FLOOD / PINGS));
            let sent = evil.enter(|| flood(ctl_key, n2_key, &replays));
            let pings = [a, b, c].map(|h| h.join().expect("ping thread"));
            (sent, pings)
        });
        let flood_secs = unix_time() - flood_started;

        // The daemon lives and the API still answers with the idle connections held.
        assert!(
            ctl_alive(ctl),
            "the controller's daemon died or its API stopped answering under the flood with {} idle \
             connections held:\n{}",
            idle.len(),
            ctl.log_tail(30)
        );
        let status = ctl.status();
        assert_eq!(
            idle.len(),
            idle_wanted,
            "the test could not open its idle connections"
        );
        drop(idle);

        let mut report = format!("flood of {flood_secs:.1} s: {sent:?}\n");
        for p in &pings {
            report += &format!(
                "{} -> {}: {}/{} replies\n",
                p.from,
                p.to,
                p.replies.len(),
                p.transmitted
            );
        }
        let rss_after = rss_kib(pid);
        let cpu = cpu_secs(pid) - cpu_before;
        report += &format!(
            "controller RSS {rss_before} KiB -> {rss_after} KiB; {cpu:.2} CPU seconds over the flood\n"
        );
        let drops_after = drops(&status);
        let delta: BTreeMap<String, u64> = drops_after
            .iter()
            .map(|(k, v)| (k.clone(), v - drops_before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let kernel = udp_receive_errors(ctl.netns()) - kernel_before;
        report += &format!("drops: {delta:?}, kernel receive errors: {kernel}\n");
        let captured = replies.stop();
        let forged: Ipv4Addr = FORGED.parse().expect("address");
        let ctl_addr: Ipv4Addr = CONTROLLER_UNDERLAY.parse().expect("address");
        let asked = payloads(&captured, forged, ctl_addr);
        let answered = payloads(&captured, ctl_addr, forged);
        // The controller can answer only what authenticates (the forged joins, the replayed
        // captures) and WireGuard handshake messages of their exact length (with a cookie reply).
        let answerable: Vec<usize> = asked
            .iter()
            .filter(|&&(len, first)| (first == 1 && len == 148) || (first == 2 && len == 92))
            .map(|(len, _)| *len)
            .chain(smallest_sealed)
            .collect();
        let asked: Vec<usize> = asked.iter().map(|(len, _)| *len).collect();
        let answered: Vec<usize> = answered.iter().map(|(len, _)| *len).collect();
        report += &format!(
            "to the forged source: {} datagrams, {} bytes, largest {:?}; from it: {} bytes, the \
             smallest it could draw an answer with {:?}\n",
            answered.len(),
            answered.iter().sum::<usize>(),
            answered.iter().max(),
            asked.iter().sum::<usize>(),
            answerable.iter().min()
        );
        eprintln!("{report}");

        // The members lost no more than 1% of their pings.
        for p in &pings {
            let lost = p.transmitted.saturating_sub(p.replies.len() as u32);
            assert!(
                p.transmitted == PINGS && lost * 100 <= PINGS,
                "{} -> {} lost {lost} of {PINGS} pings under the flood\n{report}",
                p.from,
                p.to
            );
        }
        // Memory stayed bounded.
        assert!(
            rss_after <= rss_before + RSS_GROWTH_KIB,
            "the controller grew by more than {RSS_GROWTH_KIB} KiB\n{report}"
        );
        // Every datagram is counted somewhere, each kind under its own reason.
        let total: u64 = sent.values().sum();
        let counted: u64 = delta.values().sum::<u64>() + kernel;
        assert!(
            counted >= total,
            "{total} datagrams sent, {counted} counted as dropped\n{report}"
        );
        let has = |reason: &str| delta.get(reason).copied().unwrap_or(0) > 0;
        for reason in [
            "malformed",
            "control_rate_limited",
            "control_refused",
            "control_replayed",
            "relay_bad_token",
        ] {
            assert!(has(reason), "nothing counted as {reason}\n{report}");
        }
        assert!(
            has("control_bad_auth") || has("control_rate_limited"),
            "random-key envelopes counted nowhere\n{report}"
        );
        // No answer to the forged source is larger than the smallest datagram it could have drawn
        // an answer with, and in all it got back less than it sent.
        let smallest = answerable.iter().min().copied().unwrap_or(0);
        assert!(
            !answerable.is_empty(),
            "the capture saw none of the flood\n{report}"
        );
        assert!(
            answered.iter().all(|n| *n <= smallest),
            "an answer to the forged source was larger than the smallest request it answers\n{report}"
        );
        assert!(
            answered.iter().sum::<usize>() <= asked.iter().sum::<usize>(),
            "amplification\n{report}"
        );
    });
}

/// Sends the flood from the forged source for [`FLOOD`] at [`RATE`]; returns how many of each kind,
/// and the smallest datagram sent that authenticates (a forged join or a replayed envelope).
fn flood(ctl_key: PublicKey, n2_key: PublicKey, replays: &[Vec<u8>]) -> (BTreeMap<Kind, u64>, Option<usize>) {
    let socket = UdpSocket::bind(SocketAddr::new(FORGED.parse().expect("address"), 0))
        .expect("bind the forged source");
    let to = SocketAddr::new(CONTROLLER_UNDERLAY.parse().expect("address"), PORT);
    let mut rng = ChaCha20Rng::seed_from_u64(0xbad);
    let mut sent: BTreeMap<Kind, u64> = BTreeMap::new();
    let mut first_join: Option<Vec<u8>> = None;
    let mut smallest_sealed = None;
    #[expect(
        clippy::disallowed_methods,
        reason = "the attacker paces real datagrams on the real clock; this is no protocol code"
    )]
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < FLOOD {
        // Paced: the n-th datagram leaves at n / RATE seconds.
        let due = Duration::from_micros(n * 1_000_000 / RATE);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
        let kind = KINDS[(n % KINDS.len() as u64) as usize];
        n += 1;
        let datagram = match kind {
            Kind::RandomBytes => {
                let mut d = vec![0u8; 1 + (rng.next_u32() % 200) as usize];
                rng.fill_bytes(&mut d);
                // Not a relay frame or an envelope: those have kinds of their own.
                if d[0] == 0x80 || d[0] == 0x81 {
                    d[0] = 0x82;
                }
                d
            }
            Kind::ForgedJoin => {
                let d = forged_join(&ctl_key, &mut rng);
                first_join.get_or_insert_with(|| d.clone());
                d
            }
            Kind::ForgedJoinAgain => match &first_join {
                Some(d) => d.clone(),
                None => continue,
            },
            Kind::RandomKeyEnvelope => {
                let mut d = vec![0x80, 0, 0, 0];
                let mut rest = vec![0u8; 32 + 24 + 16 + (rng.next_u32() % 64) as usize];
                rng.fill_bytes(&mut rest);
                d.extend_from_slice(&rest);
                d
            }
            Kind::ForgedRelayFrame => {
                // Type, reserved, a made-up relay token, the destination key (docs/protocol.md).
                let mut d = vec![0x81, 0, 0, 0];
                let mut token = [0u8; 8];
                rng.fill_bytes(&mut token);
                d.extend_from_slice(&token);
                d.extend_from_slice(n2_key.as_bytes());
                let mut inner = vec![4u8, 0, 0, 0];
                inner.resize(32 + (rng.next_u32() % 64) as usize, 0);
                rng.fill_bytes(&mut inner[4..]);
                d.extend_from_slice(&inner);
                d
            }
            Kind::ReplayedCapture => replays[(n as usize / KINDS.len()) % replays.len()].clone(),
        };
        if socket.send_to(&datagram, to).is_ok() {
            *sent.entry(kind).or_default() += 1;
            let sealed = matches!(kind, Kind::ForgedJoin | Kind::ForgedJoinAgain)
                || (kind == Kind::ReplayedCapture && datagram[0] == 0x80);
            if sealed {
                smallest_sealed =
                    Some(smallest_sealed.map_or(datagram.len(), |s: usize| s.min(datagram.len())));
            }
        }
    }
    (sent, smallest_sealed)
}

/// A join any stranger can make: a valid envelope from a fresh key, with no token.
fn forged_join(ctl_key: &PublicKey, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut channel = Channel::new(StaticSecret::random(rng));
    let wall = Duration::from_secs_f64(unix_time());
    let body = Body::Join(JoinMsg {
        token: String::new(),
        name: String::new(),
        local: LocalInfo {
            listen_port: 0,
            local_addrs: Vec::new(),
        },
    });
    channel.seal(wall, ctl_key, body, rng).expect("seal")
}

fn key_of(node: &MeshNode) -> PublicKey {
    let text = node.public_key();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64 key");
    PublicKey::from_bytes(bytes.try_into().expect("32 bytes"))
}

/// The UDP payloads `from` sent (any port), in capture order: the member's datagrams to replay.
fn udp_payloads(captured: &Captured, from: Ipv4Addr) -> Vec<Vec<u8>> {
    captured
        .packets
        .iter()
        .filter(|p| !p.outgoing)
        .filter_map(|p| {
            let udp = p.udp4()?;
            let ihl = usize::from(p.data[0] & 0x0f) * 4;
            let payload = p.data.get(ihl + 8..ihl + 8 + udp.payload_len)?;
            (udp.src == from && !payload.is_empty()).then(|| payload.to_vec())
        })
        .collect()
}

/// (length, first byte) of the UDP payloads from `src` to `dst` in a capture.
fn payloads(captured: &Captured, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<(usize, u8)> {
    captured
        .packets
        .iter()
        .filter_map(|p| {
            let udp = p.udp4()?;
            let ihl = usize::from(p.data[0] & 0x0f) * 4;
            let first = p.data.get(ihl + 8).copied().unwrap_or(0);
            (udp.src == src && udp.dst == dst).then_some((udp.payload_len, first))
        })
        .collect()
}

/// The drop counters of a `meshd status --json`.
fn drops(status: &Value) -> BTreeMap<String, u64> {
    let Some(Value::Object(fields)) = status.get("drops") else {
        panic!("`meshd status --json` has no drops: {status}");
    };
    fields
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_else(|| panic!("drops.{k} = {v}"))))
        .collect()
}

/// The `meshd` process in `ns`.
fn meshd_pid(ns: &Netns) -> u32 {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "meshd"))
        .unwrap_or_else(|| panic!("no meshd running in {}", ns.name()))
}

fn ctl_alive(ctl: &MeshNode) -> bool {
    let out = ctl.cli(&["status", "--json"]);
    out.success()
}

/// CPU time `pid` has used (user and system), in seconds, at 100 ticks a second.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// UDP datagrams the kernel dropped in `ns` for lack of receive buffer (`RcvbufErrors`), which the
/// daemon never sees and cannot count.
fn udp_receive_errors(ns: &Netns) -> u64 {
    let snmp = ns.run(&["cat", "/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        panic!("no Udp lines in /proc/net/snmp")
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .expect("RcvbufErrors")
}

/// One forged envelope (a random sender key, random ciphertext) and one with a reserved byte set,
/// from a stranger: each is counted under its reason in `meshd status --json`, and `meshd status`
/// names them.
#[test]
fn a_forged_envelope_is_counted_in_status() {
    e2e(|lab| {
        let mut mesh = Mesh::start(lab, &[]);
        let (evil, _) = mesh.underlay.host("evil", Uplink::Public(ATTACKER));
        let ctl = &mesh.ctl;
        let before = drops(&ctl.status());
        let to = SocketAddr::new(CONTROLLER_UNDERLAY.parse().expect("address"), PORT);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut forged = vec![0x80, 0, 0, 0];
        let mut rest = vec![0u8; 32 + 24 + 40];
        rng.fill_bytes(&mut rest);
        forged.extend_from_slice(&rest);
        let mut reserved = forged.clone();
        reserved[2] = 1;
        evil.enter(|| {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
            socket.send_to(&forged, to).expect("send");
            socket.send_to(&reserved, to).expect("send");
        });
        let counted = |status: &Value, reason: &str| {
            drops(status).get(reason).copied().unwrap_or(0) - before.get(reason).copied().unwrap_or(0)
        };
        let mut last = Value::Null;
        let got = meshd_tests::process::try_wait_until(
            "the forged envelopes to be counted",
            Duration::from_secs(5),
            || {
                last = ctl.status();
                counted(&last, "control_bad_auth") == 1 && counted(&last, "control_malformed") == 1
            },
        );
        if let Err(e) = got {
            panic!("{e}; drops: {:?}", drops(&last));
        }
        let text = ctl.cli_ok(&["status"]);
        assert!(
            text.contains("control_bad_auth 1") && text.contains("control_malformed 1"),
            "`meshd status` does not name the drops:\n{text}"
        );
    });
}

//! Two peers joined by one tunnel: the scenario that every data-plane implementation must pass,
//! written once and run with any pair of implementations in either role.
//!
//! ```text
//!  namespace <prefix>-a                                  namespace <prefix>-b
//!  wg-a 198.51.100.1/24 2001:db8:1::1/64                 wg-b 198.51.100.2/24 2001:db8:1::2/64
//!    | implementation A, UDP 51820                         | implementation B, UDP 51821
//!  eth0 192.0.2.1/24 2001:db8:ff::1/64  ==== veth ====  eth0 192.0.2.2/24 2001:db8:ff::2/64
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::netns::{End, veth};
use crate::transfer::{TransferReport, tcp_transfer};
use crate::wg::{PeerConfig, WgImpl, WgPeer};
use crate::{Lab, addr};

/// The tunnel MTU every implementation gets, as wg-quick would set over a 1500-byte underlay.
pub const TUNNEL_MTU: u16 = 1420;
const PORT_A: u16 = 51820;
const PORT_B: u16 = 51821;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Which side is configured with the other's endpoint. A side without it can only answer, and
/// learns where the other is from its first authenticated packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    Both,
    Only(Side),
}

#[derive(Clone, Copy, Debug)]
pub struct PairConfig {
    /// The family of the UDP packets between the peers.
    pub underlay: Family,
    pub initiator: Initiator,
}

/// Both ends of the tunnel. Dropping it stops both daemons and deletes both namespaces.
pub struct TunnelPair {
    pub a: WgPeer,
    pub b: WgPeer,
    pub config: PairConfig,
    next_port: AtomicU16,
}

pub fn underlay_addr(side: Side, family: Family) -> IpAddr {
    let text = match (side, family) {
        (Side::A, Family::V4) => "192.0.2.1",
        (Side::B, Family::V4) => "192.0.2.2",
        (Side::A, Family::V6) => "2001:db8:ff::1",
        (Side::B, Family::V6) => "2001:db8:ff::2",
    };
    addr::checked(text)
}

/// The address of `side`'s tunnel interface.
pub fn tunnel_addr(side: Side, family: Family) -> IpAddr {
    let text = match (side, family) {
        (Side::A, Family::V4) => "198.51.100.1",
        (Side::B, Family::V4) => "198.51.100.2",
        (Side::A, Family::V6) => "2001:db8:1::1",
        (Side::B, Family::V6) => "2001:db8:1::2",
    };
    addr::checked(text)
}

pub fn port(side: Side) -> u16 {
    match side {
        Side::A => PORT_A,
        Side::B => PORT_B,
    }
}

impl TunnelPair {
    /// Builds the topology above, starts `impl_a` in namespace a and `impl_b` in namespace b, and
    /// configures both with `wg`. No packet has crossed the tunnel yet when this returns.
    #[track_caller]
    pub fn up(lab: &Lab, impl_a: &WgImpl, impl_b: &WgImpl, config: PairConfig) -> TunnelPair {
        let ns_a = lab.netns("a");
        let ns_b = lab.netns("b");
        let a_v4 = format!("{}/24", underlay_addr(Side::A, Family::V4));
        let a_v6 = format!("{}/64", underlay_addr(Side::A, Family::V6));
        let b_v4 = format!("{}/24", underlay_addr(Side::B, Family::V4));
        let b_v6 = format!("{}/64", underlay_addr(Side::B, Family::V6));
        veth(
            End {
                ns: &ns_a,
                dev: "eth0",
                addrs: &[&a_v4, &a_v6],
            },
            End {
                ns: &ns_b,
                dev: "eth0",
                addrs: &[&b_v4, &b_v6],
            },
        );

        let a = WgPeer::start(lab, &ns_a, impl_a, "wg-a", PORT_A);
        let b = WgPeer::start(lab, &ns_b, impl_b, "wg-b", PORT_B);
        for (me, them, side) in [(&a, &b, Side::A), (&b, &a, Side::B)] {
            let knows_endpoint = match config.initiator {
                Initiator::Both => true,
                Initiator::Only(initiator) => initiator == side,
            };
            let other = side.other();
            me.add_peer(&PeerConfig {
                public_key: them.public_key().to_owned(),
                allowed_ips: vec![
                    format!("{}/32", tunnel_addr(other, Family::V4)),
                    format!("{}/128", tunnel_addr(other, Family::V6)),
                ],
                endpoint: knows_endpoint
                    .then(|| SocketAddr::new(underlay_addr(other, config.underlay), port(other))),
                persistent_keepalive: None,
            });
            me.up(
                &[
                    &format!("{}/24", tunnel_addr(side, Family::V4)),
                    &format!("{}/64", tunnel_addr(side, Family::V6)),
                ],
                TUNNEL_MTU,
            );
        }
        TunnelPair {
            a,
            b,
            config,
            next_port: AtomicU16::new(40000),
        }
    }

    pub fn peer(&self, side: Side) -> &WgPeer {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn first_sender(&self) -> Side {
        match self.config.initiator {
            Initiator::Both => Side::A,
            Initiator::Only(side) => side,
        }
    }

    /// Pings over IPv4 and IPv6 inside the tunnel, from the initiator first (the other side cannot
    /// send before it has heard from it), then back. The first reply may wait for the handshake.
    #[track_caller]
    pub fn ping_both_ways(&self) {
        let first = self.first_sender();
        for from in [first, first.other()] {
            for family in [Family::V4, Family::V6] {
                let to = tunnel_addr(from.other(), family);
                self.peer(from).netns().ping_ok(to, 3, Duration::from_secs(10));
            }
        }
    }

    /// Sends `bytes` over TCP from `from` to the other side's tunnel address of `family`, and
    /// checks by SHA-256 that it arrived intact.
    #[track_caller]
    pub fn transfer(&self, from: Side, family: Family, bytes: u64, timeout: Duration) -> TransferReport {
        let port = self.next_port.fetch_add(1, Ordering::Relaxed);
        let to = from.other();
        let report = tcp_transfer(
            self.peer(from).netns(),
            self.peer(to).netns(),
            tunnel_addr(to, family),
            port,
            bytes,
            timeout,
        )
        .unwrap_or_else(|e| panic!("TCP transfer {from:?} -> {to:?} over {family:?}: {e}"));
        report.assert_intact();
        println!(
            "{} -> {}: {} MiB over {family:?} in {:.2?} ({:.2} Gbit/s), sha256 {}",
            self.peer(from).implementation(),
            self.peer(to).implementation(),
            report.received_bytes >> 20,
            report.elapsed,
            report.gbit_per_s(),
            report.received_sha256
        );
        report
    }

    /// What `wg show` reports on each side about the other: a handshake happened, the endpoint is
    /// the other side's underlay address and port, and at least `min_bytes` went each way.
    #[track_caller]
    pub fn check_wg_show(&self, min_bytes: u64) {
        for side in [Side::A, Side::B] {
            let me = self.peer(side);
            let them = self.peer(side.other());
            let stats = me.peer(them.public_key());
            let expected = SocketAddr::new(
                underlay_addr(side.other(), self.config.underlay),
                port(side.other()),
            );
            let who = format!("{} ({:?}) about its peer", me.implementation(), side);
            assert_ne!(
                stats.latest_handshake, 0,
                "{who}: no handshake reported: {stats:?}"
            );
            assert_eq!(
                stats.endpoint,
                Some(expected.to_string()),
                "{who}: wrong endpoint"
            );
            assert!(
                stats.rx_bytes >= min_bytes,
                "{who}: received {} < {min_bytes} bytes",
                stats.rx_bytes
            );
            assert!(
                stats.tx_bytes >= min_bytes,
                "{who}: sent {} < {min_bytes} bytes",
                stats.tx_bytes
            );
        }
    }

    /// Stops both daemons with SIGTERM and checks that each removed its interface and socket.
    #[track_caller]
    pub fn shutdown_checked(self) {
        self.a.shutdown_checked();
        self.b.shutdown_checked();
    }
}

/// The whole scenario for one pair of implementations: pings both ways over both inner families, one
/// bulk transfer each way (A -> B over IPv4, B -> A over IPv6) with checksums compared, the counters
/// `wg show` reports, and a clean shutdown of both daemons.
#[track_caller]
pub fn full_check(lab: &Lab, a: &WgImpl, b: &WgImpl, config: PairConfig, bytes: u64, timeout: Duration) {
    let pair = TunnelPair::up(lab, a, b, config);
    pair.ping_both_ways();
    pair.transfer(Side::A, Family::V4, bytes, timeout);
    pair.transfer(Side::B, Family::V6, bytes, timeout);
    pair.check_wg_show(bytes);
    pair.shutdown_checked();
}

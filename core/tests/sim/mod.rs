//! A deterministic simulation: nodes, a minimal data path for each (the same session halves the daemon's
//! threads use, and the same per-datagram decisions, `meshd_core::datapath`), an in-memory network with
//! latency and a loss filter, and a virtual clock. Minutes of protocol time run in milliseconds.
//!
//! The network can also have a relay (an address that forwards relay frames to the host whose key they
//! name, by the relay table and the decision a relaying node's receive thread uses) and hosts behind
//! NAT (datagrams to them arrive only from addresses they sent to first, and from the relay, to which
//! they are taken to keep a mapping open).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshd_crypto::session::{HEADROOM, Receiver, Sender, TAILROOM};
use meshd_crypto::{PublicKey, StaticSecret};
use meshd_packet::IpPacket;
use meshd_packet::wire::meshd::{RELAY_HEADER_LEN, RELAY_TOKEN_LEN, TYPE_RELAY, write_relay_frame};
use meshd_routing::AllowedIps;

use meshd_core::datapath::{
    Inbound, RelayFrame, classify, open_failed, receive_relay_frame, roam, strip_token,
};
use meshd_core::mesh::relay::RelayTable;
use meshd_core::node::{Activity, DropReason, Endpoint, Event, Node, PeerId, PeerSpec, ReconcileSummary};
use meshd_core::node::{PeerUpdate, SetDevice};

pub const MTU: usize = 1420;

/// The relay of [`Sim::mesh`].
pub const RELAY: &str = "203.0.113.1:3478";

/// One simulated host: a node and the data path around it.
pub struct Host {
    pub node: Node,
    pub addr: SocketAddr,
    pub public: PublicKey,
    routes: AllowedIps<PeerId>,
    /// The host's ticket for the relay, in the frames its node and its data path send there.
    relay_token: [u8; RELAY_TOKEN_LEN],
    senders: HashMap<PeerId, Arc<Sender>>,
    receivers: HashMap<u32, (PeerId, Box<Receiver>, bool)>,
    /// The data path's endpoint for each peer: as the node announced it, or as [`roam`] moved it.
    endpoints: HashMap<PeerId, Endpoint>,
    keys: HashMap<PeerId, PublicKey>,
    activity: HashMap<PeerId, Activity>,
    /// Datagrams reach the host only from addresses it sent to, and from the relay.
    pub behind_nat: bool,
    nat_open: HashSet<SocketAddr>,
    /// IP packets the host's TUN device received, in order.
    pub delivered: Vec<Vec<u8>>,
    /// Empty data messages (keepalives) received, with their arrival time.
    pub keepalives_received: Vec<Instant>,
    pub drops: Vec<DropReason>,
    /// Local indices of the sessions data was sent with, in order of first use.
    pub send_sessions: Vec<u32>,
}

impl Host {
    fn new(seed: u8, addr: SocketAddr) -> Host {
        let secret = StaticSecret::from_bytes([seed; 32]);
        let public = *secret.public_key();
        let mut node = Node::new([seed.wrapping_add(100); 32], MTU);
        let set = SetDevice {
            private_key: Some(Some(zeroize::Zeroizing::new(*secret.to_bytes()))),
            listen_port: Some(addr.port()),
            ..Default::default()
        };
        node.apply(epoch(), SystemTime::UNIX_EPOCH, &set).unwrap();
        node.set_bound_port(addr.port());
        let relay_token = [seed; RELAY_TOKEN_LEN];
        node.set_relay_token(relay_token);
        Host {
            node,
            addr,
            public,
            routes: AllowedIps::new(),
            relay_token,
            senders: HashMap::new(),
            receivers: HashMap::new(),
            endpoints: HashMap::new(),
            keys: HashMap::new(),
            activity: HashMap::new(),
            behind_nat: false,
            nat_open: HashSet::new(),
            delivered: Vec::new(),
            keepalives_received: Vec::new(),
            drops: Vec::new(),
            send_sessions: Vec::new(),
        }
    }

    pub fn peer(&self, key: &PublicKey) -> PeerId {
        self.node.peer_id(key).expect("peer configured")
    }

    pub fn sender(&self, peer: PeerId) -> Option<&Arc<Sender>> {
        self.senders.get(&peer)
    }

    /// The path the data path sends to `peer` on: the node's, or where the peer roamed since.
    pub fn endpoint(&self, peer: PeerId) -> Option<Endpoint> {
        self.endpoints.get(&peer).copied()
    }
}

/// The virtual clock's epoch. `Instant` has no constructor, so the simulation reads the clock once;
/// everything after is offsets from it.
fn epoch() -> Instant {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods, reason = "the virtual clock's one real reading")]
    *EPOCH.get_or_init(Instant::now)
}

/// Decides per datagram (from, to, bytes) whether the network loses it.
pub type LossFilter = Box<dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool>;

struct InFlight {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    datagram: Vec<u8>,
}

pub struct Sim {
    pub now: Instant,
    pub hosts: Vec<Host>,
    pub latency: Duration,
    network: VecDeque<InFlight>,
    /// Decides per datagram (from, to, bytes) whether the network loses it.
    pub lose: LossFilter,
    /// The handshake queue depth each host reports to its node (under load from 1/8 of
    /// `meshd_core::node::HANDSHAKE_QUEUE`).
    pub handshake_backlog: usize,
    /// Datagrams offered to the network (time, from, to, message type), for tests that look at the wire.
    pub wire_log: Vec<(Instant, SocketAddr, SocketAddr, u8)>,
    /// Every datagram offered to the network (from, to, bytes).
    pub capture: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// The relay's address, if the network has one.
    pub relay: Option<SocketAddr>,
    /// Datagrams the relay received that were no relay frame for a known host.
    pub relay_refused: usize,
    /// Datagrams a NAT dropped.
    pub nat_dropped: usize,
}

impl Sim {
    /// Two hosts that know each other: A (10.0.0.1) with B's endpoint, B (10.0.0.2) without A's, so B
    /// learns it from the handshake.
    pub fn pair() -> Sim {
        let a = Host::new(1, "192.0.2.1:51820".parse().unwrap());
        let b = Host::new(2, "192.0.2.2:51820".parse().unwrap());
        let (a_pub, b_pub, b_addr) = (a.public, b.public, b.addr);
        let mut sim = Sim::with_hosts(vec![a, b]);
        sim.configure(0, b_pub, Some(b_addr), "10.0.0.2/32", 0);
        sim.configure(1, a_pub, None, "10.0.0.1/32", 0);
        sim
    }

    /// `n` hosts without peers, host `i` at 192.0.2.(i+1):51820 with the tunnel address 10.0.0.(i+1),
    /// and a relay at [`RELAY`].
    pub fn mesh(n: u8) -> Sim {
        let hosts = (1..=n)
            .map(|i| Host::new(i, SocketAddr::from(([192, 0, 2, i], 51820))))
            .collect();
        let mut sim = Sim::with_hosts(hosts);
        sim.relay = Some(RELAY.parse().unwrap());
        sim
    }

    fn with_hosts(hosts: Vec<Host>) -> Sim {
        Sim {
            now: epoch() + Duration::from_secs(1),
            hosts,
            latency: Duration::from_millis(5),
            network: VecDeque::new(),
            lose: Box::new(|_, _, _| false),
            handshake_backlog: 0,
            wire_log: Vec::new(),
            capture: Vec::new(),
            relay: None,
            relay_refused: 0,
            nat_dropped: 0,
        }
    }

    /// Host `of` as a network map describes it to the others: its key, its tunnel address, and (if
    /// asked) its direct address and the relay.
    pub fn spec(&self, of: usize, direct: bool, relay: bool) -> PeerSpec {
        PeerSpec {
            key: self.hosts[of].public,
            allowed_ips: vec![format!("10.0.0.{}/32", of + 1).parse().unwrap()],
            direct: direct.then_some(self.hosts[of].addr),
            relay: if relay { self.relay } else { None },
            persistent_keepalive: 0,
        }
    }

    /// Applies a network map to host `h`.
    pub fn reconcile(&mut self, h: usize, desired: &[PeerSpec]) -> ReconcileSummary {
        let (now, wall) = (self.now, self.wall());
        let summary = self.hosts[h].node.reconcile(now, wall, desired);
        self.pump();
        summary
    }

    pub fn configure(
        &mut self,
        host: usize,
        key: PublicKey,
        endpoint: Option<SocketAddr>,
        allowed: &str,
        keepalive: u16,
    ) {
        let set = SetDevice {
            peers: vec![PeerUpdate {
                public_key: *key.as_bytes(),
                remove: false,
                update_only: false,
                preshared_key: None,
                endpoint,
                persistent_keepalive_interval: Some(keepalive),
                replace_allowed_ips: true,
                allowed_ips: vec![allowed.parse().unwrap()],
            }],
            ..Default::default()
        };
        let now = self.now;
        let wall = self.wall();
        self.hosts[host].node.apply(now, wall, &set).unwrap();
        self.pump();
    }

    pub fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + (self.now - epoch())
    }

    /// Host `h` sends an IP packet from its TUN device, through the simulated TX path.
    pub fn send_ip(&mut self, h: usize, packet: Vec<u8>) {
        let now = self.now;
        let wall = self.wall();
        let host = &mut self.hosts[h];
        let Some(peer) = host.routes.lookup_dst(&packet) else {
            host.drops.push(DropReason::NoRoute);
            return;
        };
        let (Some(sender), Some(path)) = (host.senders.get(&peer), host.endpoints.get(&peer).copied()) else {
            host.node.handle_unsent(now, wall, peer, packet);
            return self.pump();
        };
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(&packet);
        match sender.encapsulate(now, &mut buf, packet.len(), MTU) {
            Ok(len) => {
                buf.truncate(len);
                let index = sender.remote_index();
                if host.send_sessions.last() != Some(&index) {
                    host.send_sessions.push(index);
                }
                let rekey = sender.needs_rekey(now);
                let act = host.activity.entry(peer).or_default();
                act.data_sent = Some(now);
                if rekey {
                    act.rekey_wanted = Some(now);
                }
                // The data path frames a relayed peer's datagrams itself.
                let datagram = match path {
                    Endpoint::Direct(_) => buf,
                    Endpoint::Relayed { .. } => {
                        let key = host.keys[&peer];
                        let mut framed = Vec::new();
                        write_relay_frame(*key.as_bytes(), host.relay_token, &buf, &mut framed);
                        framed
                    }
                };
                self.send(h, path.addr(), datagram);
            }
            Err(_) => {
                host.node.handle_unsent(now, wall, peer, packet);
                self.pump();
            }
        }
    }

    /// Host `h` sends: behind NAT, that opens the way back from `to`.
    fn send(&mut self, h: usize, to: SocketAddr, datagram: Vec<u8>) {
        let host = &mut self.hosts[h];
        if host.behind_nat {
            host.nat_open.insert(to);
        }
        let from = host.addr;
        self.transmit(from, to, datagram);
    }

    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, datagram: Vec<u8>) {
        self.wire_log.push((self.now, from, to, datagram[0]));
        self.capture.push((from, to, datagram.clone()));
        if (self.lose)(from, to, &datagram) {
            return;
        }
        self.network.push_back(InFlight {
            at: self.now + self.latency,
            from,
            to,
            datagram,
        });
    }

    /// Drains every host's events and applies them.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for h in 0..self.hosts.len() {
                while let Some(event) = self.hosts[h].node.poll_event() {
                    any = true;
                    self.apply(h, event);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn apply(&mut self, h: usize, event: Event) {
        let host = &mut self.hosts[h];
        match event {
            Event::Transmit { to, datagram } => self.send(h, to, datagram),
            Event::PeerAdded { peer, key } => {
                host.keys.insert(peer, key);
            }
            Event::Rebind { .. } | Event::Fwmark { .. } => {}
            Event::PeerRemoved { peer } => {
                host.senders.remove(&peer);
                host.endpoints.remove(&peer);
                host.keys.remove(&peer);
            }
            Event::Endpoint { peer, endpoint } => match endpoint {
                Some(e) => {
                    host.endpoints.insert(peer, e);
                }
                None => {
                    host.endpoints.remove(&peer);
                }
            },
            Event::Sender { peer, sender } => match sender {
                Some(s) => {
                    host.senders.insert(peer, s);
                }
                None => {
                    host.senders.remove(&peer);
                }
            },
            Event::Receiver {
                peer,
                receiver,
                confirms,
            } => {
                host.receivers
                    .insert(receiver.local_index(), (peer, receiver, confirms));
            }
            Event::RemoveReceiver { local_index } => {
                host.receivers.remove(&local_index);
            }
            Event::RoutesChanged => host.routes = host.node.allowed_ips().clone(),
            Event::Dropped { reason, n } => host.drops.extend(std::iter::repeat_n(reason, n as usize)),
        }
    }

    /// The relay forwards a relay frame, unchanged but for its token, to the host whose key it names,
    /// as a relaying node's receive thread does: by a relay table that holds every host, where it is
    /// now, with its token, all members of one network (what the controller would publish).
    fn relay(&mut self, mut d: InFlight) {
        let mut table = RelayTable::default();
        for host in &self.hosts {
            table.insert(*host.public.as_bytes(), host.addr, 0, &[host.relay_token]);
        }
        match receive_relay_frame(&d.datagram, d.from, None, &table) {
            RelayFrame::Forward { to } => {
                strip_token(&mut d.datagram);
                self.transmit(d.to, to, d.datagram);
            }
            RelayFrame::ForThisNode { .. } | RelayFrame::Drop(_) => self.relay_refused += 1,
        }
    }

    fn deliver(&mut self, d: InFlight) {
        let now = self.now;
        let wall = self.wall();
        if Some(d.to) == self.relay {
            return self.relay(d);
        }
        let Some(h) = self.hosts.iter().position(|host| host.addr == d.to) else {
            return;
        };
        let host = &self.hosts[h];
        if host.behind_nat && Some(d.from) != self.relay && !host.nat_open.contains(&d.from) {
            self.nat_dropped += 1;
            return;
        }
        // A relay frame, as the receive thread decides: the inner datagram of one for this host, as
        // coming through the relay. A host relays for nobody (the relay is its own address).
        let (path, mut datagram) = if d.datagram[0] == TYPE_RELAY {
            let own_key = host.public.as_bytes();
            match receive_relay_frame(&d.datagram, d.from, Some(own_key), &RelayTable::default()) {
                RelayFrame::ForThisNode { via } => (via, d.datagram[RELAY_HEADER_LEN..].to_vec()),
                RelayFrame::Forward { .. } => unreachable!("an empty relay table forwards nothing"),
                RelayFrame::Drop(reason) => {
                    self.hosts[h].drops.push(reason);
                    return;
                }
            }
        } else {
            (Endpoint::Direct(d.from), d.datagram)
        };
        let index = match classify(&datagram, path) {
            Inbound::Data { index } => index,
            Inbound::Handshake => {
                let backlog = self.handshake_backlog;
                self.hosts[h]
                    .node
                    .handle_datagram(now, wall, path, &datagram, backlog);
                return self.pump();
            }
            // A host runs no mesh agent, as a daemon without one.
            Inbound::Sealed { .. } => {
                self.hosts[h].drops.push(DropReason::ControlUnexpected);
                return;
            }
            Inbound::Drop(reason) => {
                self.hosts[h].drops.push(reason);
                return;
            }
        };
        let host = &mut self.hosts[h];
        let Some((peer, receiver, confirms)) = host.receivers.get_mut(&index) else {
            host.drops.push(DropReason::UnknownIndex);
            return;
        };
        let peer = *peer;
        let plain = match receiver.decapsulate(now, &mut datagram) {
            Ok(plain) => plain,
            Err(e) => {
                host.drops.push(open_failed(e));
                return;
            }
        };
        let confirm = std::mem::take(confirms).then_some(index);
        let rekey = receiver.needs_rekey(now);
        let packet = datagram[plain.plaintext.clone()].to_vec();
        let current = host.endpoints.get(&peer).copied();
        if let Some(next) = roam(current, path) {
            host.endpoints.insert(peer, next);
        }
        let act = host.activity.entry(peer).or_default();
        act.authenticated_received = Some(now);
        if rekey {
            act.rekey_wanted = Some(now);
        }
        if packet.is_empty() {
            host.keepalives_received.push(now);
        } else {
            act.data_received = Some(now);
            match IpPacket::parse(&packet) {
                Ok(ip) if host.routes.lookup(ip.source()) == Some(peer) => {
                    let len = ip.total_len();
                    host.delivered.push(packet[..len].to_vec());
                }
                Ok(_) => host.drops.push(DropReason::SourceNotAllowed),
                Err(_) => host.drops.push(DropReason::InnerNotIp),
            }
        }
        if let Some(index) = confirm {
            host.node.handle_session_confirmed(now, wall, peer, index);
            self.pump();
        }
    }

    /// Hands each host's recorded activity to its node, as the daemon does on every tick: with the data
    /// path's endpoint when it is not the node's (the peer roamed).
    fn report_activity(&mut self) {
        for host in &mut self.hosts {
            let mut peers: Vec<PeerId> = host.keys.keys().copied().collect();
            peers.sort();
            for peer in peers {
                let mut act = host.activity.remove(&peer).unwrap_or_default();
                let known = host.node.endpoint(peer);
                act.endpoint = host.endpoints.get(&peer).copied().filter(|e| Some(*e) != known);
                if !act.is_empty() {
                    host.node.handle_activity(peer, &act);
                }
            }
            host.activity.clear();
        }
    }

    /// Runs the network and the timers until `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.report_activity();
            self.pump();
            let next_net = self.network.iter().map(|d| d.at).min();
            let next_timer = self.hosts.iter().filter_map(|h| h.node.poll_timeout()).min();
            let next = [next_net, next_timer].into_iter().flatten().min();
            let Some(next) = next.filter(|&t| t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let wall = self.wall();
            if let Some(pos) = self.network.iter().position(|d| d.at <= now) {
                let d = self.network.remove(pos).expect("position is in range");
                self.deliver(d);
            }
            for host in &mut self.hosts {
                if host.node.poll_timeout().is_some_and(|t| t <= now) {
                    host.node.handle_timeout(now, wall);
                }
            }
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Moves host `h` to a new underlay address, as when a laptop changes networks.
    pub fn move_host(&mut self, h: usize, addr: SocketAddr) {
        self.hosts[h].addr = addr;
    }

    /// The NAT in front of host `h` maps it to a new public address, as when a mapping expires or the
    /// router restarts: the old mapping and the ways in that it had opened are gone.
    pub fn rebind_nat(&mut self, h: usize, public: SocketAddr) {
        let host = &mut self.hosts[h];
        assert!(host.behind_nat, "only a host behind NAT is rebound");
        host.addr = public;
        host.nat_open.clear();
    }
}

/// A minimal IPv4 packet from `src` to `dst` carrying `payload` (UDP, checksum left zero).
pub fn ipv4(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.parse().unwrap(), dst.parse().unwrap()) else {
        panic!("ipv4 addresses expected")
    };
    let total = 20 + 8 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&[
        0x30,
        0x39,
        0x30,
        0x39,
        ((8 + payload.len()) >> 8) as u8,
        (8 + payload.len()) as u8,
        0,
        0,
    ]);
    p.extend_from_slice(payload);
    p
}

//! A deterministic simulation: nodes, a minimal data path for each (the same session halves the daemon's
//! threads use), an in-memory network with latency and a loss filter, and a virtual clock. Minutes of
//! protocol time run in milliseconds.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshd_crypto::session::{HEADROOM, Receiver, Sender, TAILROOM};
use meshd_crypto::{PublicKey, StaticSecret};
use meshd_packet::IpPacket;
use meshd_packet::wire::{self, Message};
use meshd_routing::AllowedIps;

use meshd::node::{Activity, DropReason, Event, Node, PeerId};
use meshd::uapi::{PeerUpdate, SetDevice};

pub const MTU: usize = 1420;

/// One simulated host: a node and the data path around it.
pub struct Host {
    pub node: Node,
    pub addr: SocketAddr,
    pub public: PublicKey,
    routes: AllowedIps<PeerId>,
    senders: HashMap<PeerId, Arc<Sender>>,
    receivers: HashMap<u32, (PeerId, Box<Receiver>, bool)>,
    endpoints: HashMap<PeerId, SocketAddr>,
    activity: HashMap<PeerId, Activity>,
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
        Host {
            node,
            addr,
            public,
            routes: AllowedIps::new(),
            senders: HashMap::new(),
            receivers: HashMap::new(),
            endpoints: HashMap::new(),
            activity: HashMap::new(),
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

    pub fn endpoint(&self, peer: PeerId) -> Option<SocketAddr> {
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
    /// `meshd::node::HANDSHAKE_QUEUE`).
    pub handshake_backlog: usize,
    /// Datagrams offered to the network (time, from, to, message type), for tests that look at the wire.
    pub wire_log: Vec<(Instant, SocketAddr, SocketAddr, u8)>,
}

impl Sim {
    /// Two hosts that know each other: A (10.0.0.1) with B's endpoint, B (10.0.0.2) without A's, so B
    /// learns it from the handshake.
    pub fn pair() -> Sim {
        let a = Host::new(1, "192.0.2.1:51820".parse().unwrap());
        let b = Host::new(2, "192.0.2.2:51820".parse().unwrap());
        let (a_pub, b_pub, b_addr) = (a.public, b.public, b.addr);
        let mut sim = Sim {
            now: epoch() + Duration::from_secs(1),
            hosts: vec![a, b],
            latency: Duration::from_millis(5),
            network: VecDeque::new(),
            lose: Box::new(|_, _, _| false),
            handshake_backlog: 0,
            wire_log: Vec::new(),
        };
        sim.configure(0, b_pub, Some(b_addr), "10.0.0.2/32", 0);
        sim.configure(1, a_pub, None, "10.0.0.1/32", 0);
        sim
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
        let (Some(sender), Some(to)) = (host.senders.get(&peer), host.endpoints.get(&peer).copied()) else {
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
                let from = host.addr;
                self.transmit(from, to, buf);
            }
            Err(_) => {
                host.node.handle_unsent(now, wall, peer, packet);
                self.pump();
            }
        }
    }

    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, datagram: Vec<u8>) {
        self.wire_log.push((self.now, from, to, datagram[0]));
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
            Event::Transmit { to, datagram } => {
                let from = host.addr;
                self.transmit(from, to, datagram);
            }
            Event::PeerAdded { .. } | Event::Rebind { .. } | Event::Fwmark { .. } => {}
            Event::PeerRemoved { peer } => {
                host.senders.remove(&peer);
                host.endpoints.remove(&peer);
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

    fn deliver(&mut self, d: InFlight) {
        let now = self.now;
        let wall = self.wall();
        let Some(h) = self.hosts.iter().position(|host| host.addr == d.to) else {
            return;
        };
        let mut datagram = d.datagram;
        let is_data = matches!(wire::parse(&datagram), Ok(Message::Data { .. }));
        if !is_data {
            let backlog = self.handshake_backlog;
            self.hosts[h]
                .node
                .handle_datagram(now, wall, d.from, &datagram, backlog);
            return self.pump();
        }
        let host = &mut self.hosts[h];
        let index = u32::from_le_bytes(datagram[4..8].try_into().unwrap());
        let Some((peer, receiver, confirms)) = host.receivers.get_mut(&index) else {
            host.drops.push(DropReason::UnknownIndex);
            return;
        };
        let peer = *peer;
        let Ok(plain) = receiver.decapsulate(now, &mut datagram) else {
            host.drops.push(DropReason::DecryptFailed);
            return;
        };
        let confirm = std::mem::take(confirms).then_some(index);
        let rekey = receiver.needs_rekey(now);
        let packet = datagram[plain.plaintext.clone()].to_vec();
        let act = host.activity.entry(peer).or_default();
        act.authenticated_received = Some(now);
        act.endpoint = Some(d.from);
        if rekey {
            act.rekey_wanted = Some(now);
        }
        host.endpoints.insert(peer, d.from);
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

    /// Hands each host's recorded activity to its node, as the daemon does on every tick.
    fn report_activity(&mut self) {
        for host in &mut self.hosts {
            for (peer, act) in host.activity.drain() {
                host.node.handle_activity(peer, &act);
            }
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

//! The mesh's control plane in one process: a controller service on a real database and node agents,
//! exchanging real sealed envelopes over an in-memory network with a virtual clock. No sockets, no
//! threads: every step is deterministic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshd_controller::service::{self, ControllerService, Received};
use meshd_controller::store::{NetworkSpec, Store};
use meshd_core::channel::{Admit, Channel, Opened};
use meshd_core::map::NetworkMap;
use meshd_core::mesh::agent::{self, Agent};
use meshd_core::mesh::join::{JoinFailure, JoinFailureKind, JoinResponse};
use meshd_core::mesh::membership::Membership;
use meshd_core::mesh::peer_rules::NAT_KEEPALIVE;
use meshd_core::mesh::relay::{self, Refusal, RelayTable};
use meshd_core::message::{Body, LocalInfo, NetworkId};
use meshd_core::node::PeerSpec;
use meshd_core::token::{JoinToken, TokenPolicy};
use meshd_crypto::{PublicKey, StaticSecret};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const CONTROLLER: &str = "192.0.2.1:51820";

struct NodeSim {
    agent: Agent,
    channel: Channel,
    /// Where the controller sees it (after NAT, for a NATed node).
    seen_at: SocketAddr,
    peers: Option<Vec<PeerSpec>>,
    joined: Option<Result<JoinResponse, JoinFailure>>,
    left: Option<Result<String, String>>,
    /// The interface's addresses, as the agent last set them.
    addresses: Option<Vec<(IpAddr, u8)>>,
    /// What is on disk: the membership and map as last persisted (`None` after `Forget`).
    saved: Option<(Membership, Option<NetworkMap>)>,
    /// The relay token the controller issued it last.
    relay_token: Option<[u8; 8]>,
}

struct World {
    dir: PathBuf,
    store: Arc<Mutex<Store>>,
    controller: ControllerService,
    ctl_channel: Channel,
    ctl_key: PublicKey,
    own_peers: Vec<PeerSpec>,
    own_addresses: Vec<(IpAddr, u8)>,
    relay: RelayTable,
    nodes: Vec<NodeSim>,
    start: Instant,
    now: Instant,
    wall: SystemTime,
    rng: ChaCha20Rng,
    /// Datagrams the controller sent, by destination: to count pushes.
    sent_to: HashMap<SocketAddr, usize>,
    /// Answers the controller withheld because they would have been larger than their request.
    withheld: usize,
    extra_dirs: Vec<PathBuf>,
}

/// What the daemon's controller makes of a key it has not derived yet: its members are known,
/// anyone else is a stranger within the admission limits.
fn controller_admits(controller: &ControllerService) -> impl FnOnce(&PublicKey) -> Admit + '_ {
    |k| {
        if controller.is_member(k) {
            Admit::Known
        } else {
            Admit::Stranger
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshd-control-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl World {
    fn new(name: &str) -> World {
        let dir = temp_dir(name);
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ctl_secret = StaticSecret::from_bytes([0xc0; 32]);
        let ctl_key = *ctl_secret.public_key();
        let mut store = Store::open(&dir).unwrap();
        store
            .create_network(
                &NetworkSpec {
                    name: "lab".into(),
                    ipv4: "203.0.113.0/24".parse().unwrap(),
                    ipv6: Some("2001:db8:1000::/64".parse().unwrap()),
                    mtu: 1376,
                    reserve_controller: true,
                },
                wall,
            )
            .unwrap();
        let store = Arc::new(Mutex::new(store));
        let controller = ControllerService::new(Arc::clone(&store), ctl_key, "border".into(), [0x5e; 32]);
        #[allow(clippy::disallowed_methods, reason = "a fixed origin for the virtual clock")]
        let start = Instant::now();
        let mut world = World {
            dir,
            store,
            controller,
            ctl_channel: Channel::new(ctl_secret),
            ctl_key,
            own_peers: Vec::new(),
            own_addresses: Vec::new(),
            relay: RelayTable::default(),
            nodes: Vec::new(),
            start,
            now: start,
            wall,
            rng: ChaCha20Rng::seed_from_u64(7),
            sent_to: HashMap::new(),
            withheld: 0,
            extra_dirs: Vec::new(),
        };
        world.controller.refresh(world.now, world.wall).unwrap();
        world.pump();
        world
    }

    fn token(&mut self, policy: TokenPolicy) -> String {
        let (_, text) = self
            .store
            .lock()
            .unwrap()
            .create_token("lab", &self.ctl_key, policy, self.wall, &mut self.rng)
            .unwrap();
        text.expose().to_string()
    }

    /// A node at `local` (its own address) that the controller sees at `seen_at` (the same for a
    /// public node, a NAT's for one behind NAT).
    fn add_node(&mut self, seed: u8, local: &str, seen_at: &str) -> usize {
        let secret = StaticSecret::from_bytes([seed; 32]);
        let local: SocketAddr = local.parse().unwrap();
        let info = LocalInfo {
            listen_port: local.port(),
            local_addrs: vec![local.ip()],
        };
        let agent = Agent::new(self.now, *secret.public_key(), info, None, None);
        self.nodes.push(NodeSim {
            agent,
            channel: Channel::new(secret),
            seen_at: seen_at.parse().unwrap(),
            peers: None,
            joined: None,
            left: None,
            addresses: None,
            saved: None,
            relay_token: None,
        });
        self.nodes.len() - 1
    }

    fn key(&self, node: usize) -> PublicKey {
        *self.nodes[node].channel.public_key()
    }

    fn join(&mut self, node: usize, token: &str, name: &str) -> Result<JoinResponse, JoinFailure> {
        let now = self.now;
        self.nodes[node].joined = None;
        self.nodes[node]
            .agent
            .join(now, token, CONTROLLER.parse().unwrap(), name)?;
        self.pump();
        for _ in 0..12 {
            if let Some(result) = self.nodes[node].joined.take() {
                return result;
            }
            self.advance(Duration::from_secs(1));
        }
        panic!("join did not finish");
    }

    fn wall_since_epoch(&self) -> Duration {
        self.wall.duration_since(UNIX_EPOCH).unwrap()
    }

    /// Delivers every message until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(out) = self.controller.poll_output() {
                moved = true;
                match out {
                    service::Output::Send { to, key, body } => {
                        *self.sent_to.entry(to).or_default() += 1;
                        let wall = self.wall_since_epoch();
                        let datagram = self.ctl_channel.seal(wall, &key, body, &mut self.rng).unwrap();
                        let Some(node) = self.nodes.iter_mut().find(|n| n.seen_at == to) else {
                            continue;
                        };
                        // As the daemon does: a node opens envelopes only from its controller.
                        let NodeSim { agent, channel, .. } = node;
                        let admit = |k: &PublicKey| {
                            if agent.expects(k) {
                                Admit::Known
                            } else {
                                Admit::Unwanted
                            }
                        };
                        let from = CONTROLLER.parse::<SocketAddr>().unwrap().ip();
                        let Ok(Opened {
                            sender,
                            counter,
                            body,
                        }) = channel.open(self.now, wall, from, &datagram, admit)
                        else {
                            continue;
                        };
                        if agent.handle_message(self.now, &sender, body) {
                            channel.accept(&sender, counter).unwrap();
                        } else {
                            channel.refuse(self.now, &sender, counter);
                        }
                    }
                    service::Output::OwnPeers(peers) => self.own_peers = peers,
                    service::Output::OwnInterface { addresses, .. } => self.own_addresses = addresses,
                    service::Output::Relay(table) => self.relay = table,
                    service::Output::Withheld { .. } => self.withheld += 1,
                }
            }
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].agent.poll_output() {
                    moved = true;
                    match out {
                        agent::Output::Send { to, key, body } => {
                            assert_eq!(to, CONTROLLER.parse().unwrap());
                            let wall = self.wall_since_epoch();
                            let node = &mut self.nodes[i];
                            let datagram = node.channel.seal(wall, &key, body, &mut self.rng).unwrap();
                            let seen_at = node.seen_at;
                            let Ok(Opened {
                                sender,
                                counter,
                                body,
                            }) = self.ctl_channel.open(
                                self.now,
                                wall,
                                seen_at.ip(),
                                &datagram,
                                controller_admits(&self.controller),
                            )
                            else {
                                // Sealed to another controller's key: this one cannot read it.
                                continue;
                            };
                            let sent = UNIX_EPOCH + Duration::from_nanos(counter);
                            let received = Received {
                                from: seen_at,
                                sender: &sender,
                                sent,
                                len: datagram.len(),
                            };
                            if self
                                .controller
                                .handle_message(self.now, self.wall, received, body)
                            {
                                self.ctl_channel.accept(&sender, counter).unwrap();
                            } else {
                                self.ctl_channel.refuse(self.now, &sender, counter);
                            }
                        }
                        agent::Output::Peers(peers) => self.nodes[i].peers = Some(peers),
                        agent::Output::JoinDone(result) => self.nodes[i].joined = Some(result),
                        agent::Output::LeaveDone(result) => self.nodes[i].left = Some(result),
                        agent::Output::Interface { addresses, .. } => {
                            self.nodes[i].addresses = Some(addresses);
                        }
                        agent::Output::Persist { membership, map } => {
                            self.nodes[i].saved = Some((membership, map));
                        }
                        agent::Output::Forget => self.nodes[i].saved = None,
                        agent::Output::RelayToken(token) => self.nodes[i].relay_token = Some(token),
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// A datagram from `from` that is not one of the simulated nodes (a stranger, or a forged
    /// source), handled as the daemon handles it. Returns the datagrams the controller sent back to
    /// `from` (sealed as they would leave), and whether the message was refused unopened.
    fn stranger_sends(&mut self, from: SocketAddr, datagram: &[u8]) -> (Vec<Vec<u8>>, bool) {
        self.pump();
        let wall = self.wall_since_epoch();
        let opened = self.ctl_channel.open(
            self.now,
            wall,
            from.ip(),
            datagram,
            controller_admits(&self.controller),
        );
        let Ok(Opened {
            sender,
            counter,
            body,
        }) = opened
        else {
            return (Vec::new(), true);
        };
        let sent = UNIX_EPOCH + Duration::from_nanos(counter);
        let received = Received {
            from,
            sender: &sender,
            sent,
            len: datagram.len(),
        };
        let acted = self
            .controller
            .handle_message(self.now, self.wall, received, body);
        if acted {
            self.ctl_channel.accept(&sender, counter).unwrap();
        } else {
            self.ctl_channel.refuse(self.now, &sender, counter);
        }
        let mut replies = Vec::new();
        while let Some(out) = self.controller.poll_output() {
            match out {
                service::Output::Send { to, key, body } if to == from => {
                    let sealed = self.ctl_channel.seal(wall, &key, body, &mut self.rng).unwrap();
                    replies.push(sealed);
                }
                service::Output::Withheld { .. } => self.withheld += 1,
                other => panic!("a stranger's message caused {other:?}"),
            }
        }
        (replies, false)
    }

    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        loop {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.agent.poll_timeout())
                .chain(self.controller.poll_timeout())
                .filter(|&t| t <= target)
                .min();
            let Some(at) = next else { break };
            let step = at.max(self.now);
            self.wall += step - self.now;
            self.now = step;
            for n in &mut self.nodes {
                n.agent.handle_timeout(step);
            }
            self.controller.handle_timeout(step, self.wall);
            self.pump();
        }
        self.wall += target - self.now;
        self.now = target;
    }

    /// Restarts a node's daemon: a new agent from what it saved, with its sealing state kept.
    fn restart_node(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let (membership, map) = n.saved.clone().unzip();
        let key = *n.channel.public_key();
        let local = LocalInfo {
            listen_port: n.seen_at.port(),
            local_addrs: vec![n.seen_at.ip()],
        };
        n.agent = Agent::new(self.now, key, local, membership, map.flatten());
        n.peers = None;
        n.addresses = None;
        self.pump();
    }

    /// Replaces the controller by one on a new, empty database in `dir` (its key unchanged), with the
    /// networks `setup` makes: as after a database lost and made again.
    fn replace_database(&mut self, name: &str, setup: impl FnOnce(&mut Store)) {
        let dir = temp_dir(name);
        let mut store = Store::open(&dir).unwrap();
        setup(&mut store);
        let store = Arc::new(Mutex::new(store));
        self.store = Arc::clone(&store);
        self.controller = ControllerService::new(store, self.ctl_key, "border".into(), [0x5e; 32]);
        self.controller.refresh(self.now, self.wall).unwrap();
        self.pump();
        self.extra_dirs.push(dir);
    }

    fn peers_of(&self, node: usize) -> &[PeerSpec] {
        self.nodes[node].peers.as_deref().unwrap_or(&[])
    }

    fn spec(&self, node: usize, peer: &PublicKey) -> Option<&PeerSpec> {
        self.peers_of(node).iter().find(|p| &p.key == peer)
    }

    /// Every member's name and address, from the database.
    fn addresses(&self) -> Vec<(String, IpAddr)> {
        let store = self.store.lock().unwrap();
        let members = store.members("lab").unwrap();
        members
            .into_iter()
            .map(|m| (m.name, IpAddr::V4(m.ipv4)))
            .collect()
    }

    /// Members (without when and where they were last seen, which polls update) and tokens.
    fn snapshot(&self) -> String {
        let store = self.store.lock().unwrap();
        let members: Vec<_> = store
            .members("lab")
            .unwrap()
            .into_iter()
            .map(|m| (m.public_key, m.name, m.authorized, m.ipv4, m.ipv6, m.created))
            .collect();
        let tokens = store.tokens("lab").unwrap();
        format!("{members:?}\n{tokens:?}")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for dir in &self.extra_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Three nodes: n1 public, n2 and n3 behind NAT.
fn three_nodes(name: &str) -> (World, [usize; 3]) {
    let mut w = World::new(name);
    let n1 = w.add_node(1, "192.0.2.11:51820", "192.0.2.11:51820");
    let n2 = w.add_node(2, "198.51.100.2:51820", "192.0.2.20:40002");
    let n3 = w.add_node(3, "198.51.100.18:51820", "192.0.2.30:40003");
    let token = w.token(TokenPolicy::unlimited());
    for (i, (n, name)) in [(n1, "n1"), (n2, "n2"), (n3, "n3")].into_iter().enumerate() {
        let joined = w.join(n, &token, name).unwrap();
        assert_eq!(joined.ipv4.to_string(), format!("203.0.113.{}", i + 2));
        assert_eq!(joined.network, "lab");
    }
    (w, [n1, n2, n3])
}

#[test]
fn joined_nodes_get_every_peer_with_the_right_path() {
    let (w, [n1, n2, n3]) = three_nodes("paths");
    let relay: SocketAddr = CONTROLLER.parse().unwrap();
    let (k1, k2, k3) = (w.key(n1), w.key(n2), w.key(n3));

    for n in [n1, n2, n3] {
        // The controller's node, and the other two.
        assert_eq!(w.peers_of(n).len(), 3, "{:?}", w.peers_of(n));
        let ctl = w.spec(n, &w.ctl_key).expect("the controller is a peer");
        assert_eq!(ctl.direct, Some(relay));
        assert_eq!(ctl.persistent_keepalive, NAT_KEEPALIVE);
        assert_eq!(
            ctl.allowed_ips.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["203.0.113.1/32", "2001:db8:1000::1/128"]
        );
    }
    // n1 is public: both NATed nodes get its address, and keep their mapping to it open.
    for n in [n2, n3] {
        let s = w.spec(n, &k1).unwrap();
        assert_eq!(s.direct, Some("192.0.2.11:51820".parse().unwrap()));
        assert_eq!(s.relay, Some(relay));
        assert_eq!(s.persistent_keepalive, NAT_KEEPALIVE);
    }
    // NATed peers have only the relay; n1 needs no keepalive for them.
    let s = w.spec(n1, &k2).unwrap();
    assert_eq!(
        (s.direct, s.relay, s.persistent_keepalive),
        (None, Some(relay), 0)
    );
    let s = w.spec(n2, &k3).unwrap();
    assert_eq!((s.direct, s.relay), (None, Some(relay)));
    assert_eq!(
        s.allowed_ips.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["203.0.113.4/32", "2001:db8:1000::4/128"]
    );

    // The controller's own node has all three, at the addresses it saw them at.
    assert_eq!(w.own_peers.len(), 3);
    let own2 = w.own_peers.iter().find(|p| p.key == k2).unwrap();
    assert_eq!(own2.direct, Some("192.0.2.20:40002".parse().unwrap()));
    // The relay forwards between them, by those addresses, with the token each was issued.
    let n2_at: SocketAddr = "192.0.2.20:40002".parse().unwrap();
    let t2 = w.nodes[n2].relay_token.expect("n2 was issued a relay token");
    let t3 = w.nodes[n3].relay_token.expect("n3 was issued a relay token");
    assert_ne!(t2, t3, "tokens are per member");
    assert_eq!(
        w.relay.forward(n2_at, &t2, k3.as_bytes()),
        Ok("192.0.2.30:40003".parse().unwrap())
    );
    assert_eq!(
        w.relay
            .forward("198.51.100.99:1".parse().unwrap(), &t2, k3.as_bytes()),
        Err(Refusal::NotAllowed)
    );
    // A stranger who forges n2's address gets nothing without n2's token.
    for forged in [[0; 8], [0x42; 8], t3] {
        assert!(
            w.relay.forward(n2_at, &forged, k3.as_bytes()).is_err(),
            "{forged:?}"
        );
    }
    assert_eq!(
        w.relay.forward(n2_at, &[0x42; 8], k3.as_bytes()),
        Err(Refusal::BadToken)
    );
}

#[test]
fn relay_tokens_rotate_and_members_keep_up() {
    let (mut w, [_n1, n2, n3]) = three_nodes("rotate");
    let k3 = w.key(n3);
    let n2_at: SocketAddr = "192.0.2.20:40002".parse().unwrap();
    let first = w.nodes[n2].relay_token.unwrap();
    // Past one rotation: n2 polled meanwhile and holds the new token; the old one still works (a
    // member that has not polled since keeps relaying).
    w.advance(relay::TOKEN_ROTATION + agent::POLL_INTERVAL + Duration::from_millis(10));
    let second = w.nodes[n2].relay_token.unwrap();
    assert_ne!(first, second, "a new token after the rotation");
    assert!(w.relay.forward(n2_at, &second, k3.as_bytes()).is_ok());
    assert!(
        w.relay.forward(n2_at, &first, k3.as_bytes()).is_ok(),
        "the previous epoch's"
    );
    // Two rotations on, the first one is refused; the member's current one works.
    w.advance(relay::TOKEN_ROTATION);
    assert_eq!(
        w.relay.forward(n2_at, &first, k3.as_bytes()),
        Err(Refusal::BadToken)
    );
    let current = w.nodes[n2].relay_token.unwrap();
    assert!(w.relay.forward(n2_at, &current, k3.as_bytes()).is_ok());
}

#[test]
fn deauthorizing_drops_a_member_everywhere_and_authorizing_restores_it() {
    let (mut w, [n1, n2, n3]) = three_nodes("deauth");
    let k1 = w.key(n1);
    w.store.lock().unwrap().set_authorized("lab", &k1, false).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    // Pushed at once, no clock movement needed.
    for n in [n2, n3] {
        assert!(w.spec(n, &k1).is_none(), "n{n} still has n1");
    }
    assert!(w.own_peers.iter().all(|p| p.key != k1));
    assert!(!w.nodes[n1].agent.authorized());
    // Not even the controller's node: its session would be stale once n1 is authorized again.
    assert!(
        w.peers_of(n1).is_empty(),
        "n1 keeps no peer: {:?}",
        w.peers_of(n1)
    );
    let t2 = w.nodes[n2].relay_token.unwrap();
    assert_eq!(
        w.relay
            .forward("192.0.2.20:40002".parse().unwrap(), &t2, k1.as_bytes()),
        Err(Refusal::NotAllowed)
    );

    w.store.lock().unwrap().set_authorized("lab", &k1, true).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    for n in [n2, n3] {
        assert!(w.spec(n, &k1).is_some());
    }
    // n1 hears on its next poll that it is back.
    w.advance(agent::POLL_INTERVAL + Duration::from_millis(10));
    assert!(w.nodes[n1].agent.authorized());
    assert_eq!(w.peers_of(n1).len(), 3);
}

fn prefixes(spec: &PeerSpec) -> Vec<String> {
    spec.allowed_ips.iter().map(|p| p.to_string()).collect()
}

#[test]
fn an_ingress_carries_everyone_elses_internet_traffic() {
    let (mut w, [n1, n2, n3]) = three_nodes("ingress");
    let k1 = w.key(n1);
    // n1 becomes the network's ingress; the map says so at once.
    w.store.lock().unwrap().set_ingress("lab", &k1, true).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    for n in [n2, n3] {
        let s = w.spec(n, &k1).unwrap();
        assert_eq!(
            prefixes(s),
            ["203.0.113.2/32", "2001:db8:1000::2/128", "0.0.0.0/0", "::/0"]
        );
        // Kept warm even from a node that is itself public, so inbound traffic finds a session.
        assert_eq!(s.persistent_keepalive, NAT_KEEPALIVE);
        // Nobody else gets the default routes.
        let others: Vec<_> = w.peers_of(n).iter().filter(|p| p.key != k1).collect();
        assert!(
            others.iter().all(|p| p.allowed_ips.iter().all(|a| a.len() > 0)),
            "{others:?}"
        );
    }
    let own1 = w.own_peers.iter().find(|p| p.key == k1).unwrap();
    assert_eq!(
        prefixes(own1),
        ["203.0.113.2/32", "2001:db8:1000::2/128", "0.0.0.0/0", "::/0"]
    );
    // The ingress itself sends nothing of its own through another member.
    assert!(
        w.peers_of(n1)
            .iter()
            .all(|p| p.allowed_ips.iter().all(|a| a.len() > 0))
    );

    // Back to an ordinary member: the default routes go with it.
    w.store.lock().unwrap().set_ingress("lab", &k1, false).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    for n in [n2, n3] {
        assert_eq!(
            prefixes(w.spec(n, &k1).unwrap()),
            ["203.0.113.2/32", "2001:db8:1000::2/128"]
        );
    }
    assert!(
        w.own_peers
            .iter()
            .all(|p| p.allowed_ips.iter().all(|a| a.len() > 0))
    );

    // The controller's own node as the ingress: it keeps every member warm, and every member
    // sends its Internet traffic to it.
    let ctl = w.ctl_key;
    w.store.lock().unwrap().set_ingress("lab", &ctl, true).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    assert_eq!(w.own_peers.len(), 3);
    assert!(
        w.own_peers
            .iter()
            .all(|p| p.persistent_keepalive == NAT_KEEPALIVE)
    );
    for n in [n1, n2, n3] {
        assert!(prefixes(w.spec(n, &ctl).unwrap()).contains(&"0.0.0.0/0".to_string()));
    }
}

#[test]
fn a_removed_member_is_told_and_dropped() {
    let (mut w, [n1, n2, _]) = three_nodes("remove");
    let k2 = w.key(n2);
    w.store.lock().unwrap().remove_member("lab", &k2, w.wall).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    assert!(w.spec(n1, &k2).is_none());
    assert!(!w.nodes[n2].agent.authorized());
}

#[test]
fn refused_tokens_say_why_and_change_nothing() {
    let mut w = World::new("tokens");
    let n = w.add_node(9, "192.0.2.50:51820", "192.0.2.50:51820");
    let before = w.snapshot();

    let e = w.join(n, "meshd1-notatoken", "x").unwrap_err();
    assert_eq!(e.kind, JoinFailureKind::Malformed);

    // Genuine format, right controller, but never stored.
    let forged = JoinToken::generate(w.ctl_key, &mut ChaCha20Rng::seed_from_u64(99));
    let e = w.join(n, forged.encode().expose(), "x").unwrap_err();
    assert_eq!(e.kind, JoinFailureKind::Unknown, "{}", e.message);
    assert!(e.message.contains("does not know"), "{}", e.message);

    let expiring = {
        let at = w.wall + Duration::from_secs(1);
        w.token(TokenPolicy::single_use().expiring(at))
    };
    let revoked = w.token(TokenPolicy::single_use());
    let revoked_id = JoinToken::parse(&revoked).unwrap().id();
    w.store.lock().unwrap().revoke_token(revoked_id).unwrap();
    let single = w.token(TokenPolicy::single_use());
    let snapshot = w.snapshot();
    assert_ne!(snapshot, before);

    w.advance(Duration::from_secs(2));
    let e = w.join(n, &expiring, "x").unwrap_err();
    assert_eq!(e.kind, JoinFailureKind::Expired, "{}", e.message);
    assert!(e.message.contains("expired"), "{}", e.message);
    let e = w.join(n, &revoked, "x").unwrap_err();
    assert_eq!(e.kind, JoinFailureKind::Revoked, "{}", e.message);
    assert!(e.message.contains("revoked"), "{}", e.message);
    assert_eq!(w.snapshot(), snapshot, "refusals changed the controller's state");

    // Used up: another node takes the only use first.
    let other = w.add_node(10, "192.0.2.51:51820", "192.0.2.51:51820");
    w.join(other, &single, "first").unwrap();
    let after_first = w.snapshot();
    let e = w.join(n, &single, "x").unwrap_err();
    assert_eq!(e.kind, JoinFailureKind::UsedUp, "{}", e.message);
    assert_eq!(w.snapshot(), after_first);

    // A token made for another controller is sealed to that controller's key: this one cannot even
    // read the request, so the node hears nothing and says so.
    let foreign = JoinToken::generate(
        PublicKey::from_bytes([0x42; 32]),
        &mut ChaCha20Rng::seed_from_u64(5),
    );
    let e = w.join(n, foreign.encode().expose(), "x").unwrap_err();
    assert_eq!(e.kind, JoinFailureKind::Unreachable, "{}", e.message);
    assert_eq!(w.snapshot(), after_first);
}

#[test]
fn a_restarted_controller_serves_the_same_members_and_addresses() {
    let (mut w, [n1, n2, n3]) = three_nodes("restart");
    let before = w.addresses();
    let peers_before = w.peers_of(n2).to_vec();
    // A new service on the same database, as after kill -9 and a restart.
    let store = Arc::new(Mutex::new(Store::open(&w.dir).unwrap()));
    w.store = Arc::clone(&store);
    w.controller = ControllerService::new(store, w.ctl_key, "border".into(), [0x5e; 32]);
    w.ctl_channel = Channel::new(StaticSecret::from_bytes([0xc0; 32]));
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    let after = w.addresses();
    assert_eq!(before, after);
    // The nodes' next polls bring them a map with the same peers and addresses.
    let version_before = w.nodes[n2].agent.map_version();
    w.advance(agent::POLL_INTERVAL + Duration::from_millis(10));
    for n in [n1, n2, n3] {
        assert!(w.nodes[n].agent.last_heard().is_some_and(|t| t > w.start));
    }
    assert!(w.nodes[n2].agent.map_version() > version_before);
    let mut a: Vec<_> = peers_before
        .iter()
        .map(|p| (p.key, p.allowed_ips.clone()))
        .collect();
    let mut b: Vec<_> = w
        .peers_of(n2)
        .iter()
        .map(|p| (p.key, p.allowed_ips.clone()))
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn hundreds_of_members_fit_in_pages_that_a_node_reassembles() {
    let mut w = World::new("many");
    let token = w.token(TokenPolicy::unlimited());
    // Members straight into the store (a join per member over the wire would only be slower).
    {
        let mut store = w.store.lock().unwrap();
        for i in 0..240u32 {
            // Bytes 1-4: clamping clears the low bits of byte 0, which would make keys collide.
            let mut k = [0u8; 32];
            k[1..5].copy_from_slice(&(i + 1000).to_le_bytes());
            let key = *StaticSecret::from_bytes(k).public_key();
            store.join(&token, &key, &format!("m{i}"), w.wall).unwrap();
        }
    }
    let n = w.add_node(77, "192.0.2.77:51820", "192.0.2.77:51820");
    w.join(n, &token, "watcher").unwrap();
    // 240 others and the controller (a /24 holds 253 members), not itself; the map took many pages.
    assert_eq!(w.peers_of(n).len(), 241);
    let encoded = w.nodes[n].agent.map().unwrap().encode();
    assert!(
        encoded.len() > 10 * meshd_core::map::PAGE_DATA,
        "{} bytes",
        encoded.len()
    );
    // The welcome, then each page once (the push after the join is the only copy of the map), then
    // the relay token.
    let pages = encoded.len().div_ceil(meshd_core::map::PAGE_DATA);
    assert_eq!(w.sent_to[&w.nodes[n].seen_at], 1 + pages + 1);
}

/// Every message a stranger can send the controller before it is a member, at its smallest and
/// with the fields that are echoed back at their longest, draws answers no larger than itself: the
/// source may be forged, and the answer then goes to a victim.
#[test]
fn no_answer_to_a_stranger_is_larger_than_what_asked_for_it() {
    use meshd_core::message::{Body, JoinMsg, MapPageMsg, PollMsg};
    let mut w = World::new("stranger-sizes");
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let nobody = LocalInfo {
        listen_port: 0,
        local_addrs: Vec::new(),
    };
    let join = |token: &str, name: &str| {
        Body::Join(JoinMsg {
            token: token.into(),
            name: name.into(),
            local: nobody.clone(),
        })
    };
    let poll = |network: &str| {
        Body::Poll(PollMsg {
            network: network.into(),
            have_version: 0,
            local: nobody.clone(),
        })
    };
    let forged = JoinToken::generate(w.ctl_key, &mut ChaCha20Rng::seed_from_u64(99));
    let used_up = w.token(TokenPolicy::single_use());
    let holder = w.add_node(8, "192.0.2.60:51820", "192.0.2.60:51820");
    w.join(holder, &used_up, "first").unwrap();
    let bodies = vec![
        ("empty join", join("", "")),
        ("join with a malformed token", join("meshd1-x", "")),
        ("join with an unknown token", join(forged.encode().expose(), "")),
        ("join with a used-up token", join(&used_up, "")),
        ("poll of no network", poll("")),
        ("poll of a network", poll("lab")),
        ("poll of a long network name", poll(&"n".repeat(900))),
        (
            "a map page",
            Body::MapPage(MapPageMsg {
                network: String::new(),
                version: 0,
                index: 0,
                count: 0,
                data: Vec::new(),
            }),
        ),
        (
            "not authorized",
            Body::NotAuthorized {
                network: String::new(),
                member: false,
            },
        ),
    ];
    let victim: SocketAddr = "203.0.113.200:53".parse().unwrap();
    let mut answered = 0;
    for (i, (what, body)) in bodies.into_iter().enumerate() {
        // A new key each time (anyone can make keys), from one forged source.
        let mut stranger = Channel::new(StaticSecret::from_bytes([0x60 + i as u8; 32]));
        let wall = w.wall_since_epoch();
        let datagram = stranger.seal(wall, &w.ctl_key, body, &mut rng).unwrap();
        // A second apart, within the victim's per-source rate.
        w.advance(Duration::from_secs(1));
        let (replies, unopened) = w.stranger_sends(victim, &datagram);
        assert!(!unopened, "{what}: within the limits, so opened");
        for reply in &replies {
            assert!(
                reply.len() <= datagram.len(),
                "{what}: {} bytes answered with {}",
                datagram.len(),
                reply.len()
            );
        }
        answered += replies.len();
        // The same datagram again, from anywhere: never answered twice.
        let (again, _) = w.stranger_sends("198.51.100.9:4000".parse().unwrap(), &datagram);
        assert!(again.is_empty(), "{what}: a replay was answered");
    }
    assert!(answered >= 5, "the refusals are answered, shortened: {answered}");
    assert_eq!(w.withheld, 0, "every refusal fits, shortened if need be");
}

/// A refused join keeps saying why to a real node (the refusal fits the node's own join), and the
/// node explains a shortened refusal by its kind.
#[test]
fn a_shortened_refusal_still_says_what_to_do() {
    let mut w = World::new("short-refusal");
    let n = w.add_node(9, "192.0.2.50:51820", "192.0.2.50:51820");
    let e = w.join(n, "meshd1-x", "").unwrap_err();
    assert_eq!(e.kind, JoinFailureKind::Malformed);
    assert!(e.message.contains("copy it again"), "{}", e.message);
}

/// Forged joins from one source are not all worked on: beyond the per-source burst they are dropped
/// before any key is derived, and the controller's members are unaffected.
#[test]
fn a_flood_of_forged_joins_is_rate_limited_before_any_work() {
    use meshd_core::message::{Body, JoinMsg};
    let mut w = World::new("join-flood");
    let member = w.add_node(9, "192.0.2.50:51820", "192.0.2.50:51820");
    let token = w.token(TokenPolicy::single_use());
    w.join(member, &token, "m").unwrap();
    let derivations = w.ctl_channel.derivations();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let attacker: SocketAddr = "198.51.100.66:9999".parse().unwrap();
    let mut opened = 0;
    for i in 0..200u32 {
        let mut seed = [0u8; 32];
        // Not the first byte: clamping clears its low bits, so keys would repeat.
        seed[1..5].copy_from_slice(&i.to_le_bytes());
        seed[31] = 0x77;
        let mut stranger = Channel::new(StaticSecret::from_bytes(seed));
        let body = Body::Join(JoinMsg {
            token: String::new(),
            name: String::new(),
            local: LocalInfo {
                listen_port: 0,
                local_addrs: Vec::new(),
            },
        });
        let wall = w.wall_since_epoch();
        let datagram = stranger.seal(wall, &w.ctl_key, body, &mut rng).unwrap();
        if !w.stranger_sends(attacker, &datagram).1 {
            opened += 1;
        }
    }
    assert_eq!(opened, 5, "the per-source burst, then nothing");
    // One derivation to open each admitted join and one to seal its refusal.
    assert_eq!(w.ctl_channel.derivations(), derivations + 10);
    // The member still polls and gets its map.
    w.advance(Duration::from_secs(30));
    assert!(w.nodes[member].agent.authorized());
}

fn sorted_keys(specs: &[PeerSpec]) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = specs.iter().map(|p| p.key).collect();
    keys.sort();
    keys
}

#[test]
fn a_removed_member_learns_it_drops_everything_and_joins_again_with_a_token() {
    let (mut w, [n1, n2, n3]) = three_nodes("remove-rejoin");
    let k2 = w.key(n2);
    let old_v4 = w.nodes[n2].agent.membership().unwrap().ipv4;
    assert!(w.nodes[n2].saved.as_ref().is_some_and(|(_, map)| map.is_some()));
    w.store.lock().unwrap().remove_member("lab", &k2, w.wall).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    // Pushed at once: n2 knows it was removed, and lets go of its addresses, peers and files.
    let n = &w.nodes[n2];
    assert!(n.agent.membership().is_none());
    assert_eq!(
        n.agent.standing(),
        &agent::Standing::Removed {
            network: "lab".into()
        }
    );
    assert_eq!(n.addresses.as_deref(), Some(&[][..]), "the addresses stay");
    assert!(w.peers_of(n2).is_empty());
    assert!(n.saved.is_none(), "the membership and map stay on disk");
    assert!(w.spec(n1, &k2).is_none() && w.spec(n3, &k2).is_none());
    // It joins again with a new token, as a new member.
    let token = w.token(TokenPolicy::single_use());
    let joined = w.join(n2, &token, "n2").unwrap();
    assert_eq!(joined.network, "lab");
    assert_eq!(joined.ipv4, old_v4, "the lowest free address, its old one");
    assert!(w.nodes[n2].agent.membership().is_some());
    assert_eq!(w.peers_of(n2).len(), 3);
    assert!(w.spec(n1, &k2).is_some());
}

#[test]
fn a_member_removed_while_it_was_down_learns_it_after_a_restart() {
    let (mut w, [_, n2, _]) = three_nodes("remove-offline");
    let k2 = w.key(n2);
    // Removed while its daemon is down: the push goes nowhere.
    let seen_at = w.nodes[n2].seen_at;
    w.nodes[n2].seen_at = "192.0.2.99:9".parse().unwrap();
    w.store.lock().unwrap().remove_member("lab", &k2, w.wall).unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    assert!(w.nodes[n2].saved.is_some());
    // Restarted from its files, it polls, hears it was removed, and forgets.
    w.nodes[n2].seen_at = seen_at;
    w.restart_node(n2);
    assert!(w.nodes[n2].agent.membership().is_some());
    w.advance(Duration::from_millis(10));
    assert!(w.nodes[n2].agent.membership().is_none());
    assert!(w.nodes[n2].saved.is_none());
    assert_eq!(w.nodes[n2].addresses.as_deref(), Some(&[][..]));
    let token = w.token(TokenPolicy::single_use());
    w.join(n2, &token, "n2").unwrap();
}

#[test]
fn a_node_that_leaves_is_removed_everywhere() {
    let (mut w, [n1, n2, n3]) = three_nodes("leave");
    let k3 = w.key(n3);
    w.nodes[n3].agent.leave(w.now).unwrap();
    w.pump();
    assert_eq!(w.nodes[n3].left, Some(Ok("lab".to_string())));
    assert!(w.nodes[n3].agent.membership().is_none());
    assert!(w.nodes[n3].saved.is_none());
    assert_eq!(w.nodes[n3].addresses.as_deref(), Some(&[][..]));
    assert!(matches!(
        w.store.lock().unwrap().member("lab", &k3),
        Err(meshd_controller::StoreError::NoSuchMember { .. })
    ));
    for n in [n1, n2] {
        assert!(w.spec(n, &k3).is_none());
    }
    // Not a member any more, so there is nothing to leave.
    assert!(w.nodes[n3].agent.leave(w.now).is_err());
}

#[test]
fn leaving_without_a_controller_says_so_and_keeps_the_membership() {
    let (mut w, [_, n2, _]) = three_nodes("leave-unreachable");
    // The controller cannot read what is sealed to another key: as good as unreachable.
    w.ctl_channel = Channel::new(StaticSecret::from_bytes([0x77; 32]));
    w.nodes[n2].agent.leave(w.now).unwrap();
    w.advance(agent::JOIN_TIMEOUT + Duration::from_secs(1));
    let why = w.nodes[n2].left.clone().unwrap().unwrap_err();
    assert!(why.contains("still a member"), "{why}");
    assert!(w.nodes[n2].agent.membership().is_some());
    assert!(w.nodes[n2].saved.is_some());
}

#[test]
fn a_controller_that_lost_its_database_does_not_empty_its_members_maps() {
    let (mut w, [n1, n2, n3]) = three_nodes("lost-db");
    let before: Vec<Vec<PublicKey>> = [n1, n2, n3].iter().map(|&n| sorted_keys(w.peers_of(n))).collect();
    let maps: Vec<u64> = [n1, n2, n3]
        .iter()
        .map(|&n| w.nodes[n].agent.map_version())
        .collect();
    // An empty database (a truncated file made anew), then one with another network of the same
    // name (a foreign database): neither knows these members.
    for (i, foreign) in [false, true].into_iter().enumerate() {
        w.replace_database(&format!("lost-db-new-{i}"), |store| {
            if foreign {
                store
                    .create_network(
                        &NetworkSpec {
                            name: "lab".into(),
                            ipv4: "198.51.100.0/24".parse().unwrap(),
                            ipv6: None,
                            mtu: 1376,
                            reserve_controller: true,
                        },
                        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                    )
                    .unwrap();
            }
        });
        w.advance(agent::POLL_INTERVAL * 3);
        for (i, &n) in [n1, n2, n3].iter().enumerate() {
            let node = &w.nodes[n];
            assert_eq!(sorted_keys(w.peers_of(n)), before[i], "node {n} lost peers");
            assert_eq!(node.agent.map_version(), maps[i], "node {n} lost its map");
            assert!(
                node.saved.as_ref().is_some_and(|(_, map)| map.is_some()),
                "node {n} forgot its map"
            );
            assert!(node.agent.membership().is_some());
            assert_eq!(node.agent.standing(), &agent::Standing::Disowned);
        }
    }
}

#[test]
fn a_removal_for_another_network_id_is_not_believed() {
    let (mut w, [_, n2, _]) = three_nodes("foreign-removal");
    let saved = w.nodes[n2].agent.membership().unwrap().clone();
    assert!(saved.network_id.is_some());
    let ctl = w.ctl_key;
    // Sealed by the controller's key, about the right name, but not the network this node joined.
    let acted = w.nodes[n2].agent.handle_message(
        w.now,
        &ctl,
        Body::Removed {
            network: "lab".into(),
            network_id: NetworkId([0x99; 16]),
        },
    );
    assert!(acted);
    w.pump();
    assert_eq!(w.nodes[n2].agent.membership(), Some(&saved));
    assert_eq!(w.peers_of(n2).len(), 3);
    // From anyone but its controller, not even looked at.
    let id = saved.network_id.unwrap();
    let stranger = PublicKey::from_bytes([0x31; 32]);
    let removed = Body::Removed {
        network: "lab".into(),
        network_id: id,
    };
    assert!(!w.nodes[n2].agent.handle_message(w.now, &stranger, removed));
    assert!(w.nodes[n2].agent.membership().is_some());
}

#[test]
fn a_network_deleted_with_its_members_removes_them() {
    let (mut w, [n1, n2, n3]) = three_nodes("delete-net");
    let ctl = w.ctl_key;
    assert_eq!(w.own_addresses.len(), 2);
    let removed = w
        .store
        .lock()
        .unwrap()
        .delete_network("lab", true, &ctl, w.wall)
        .unwrap();
    assert_eq!(removed, 3);
    w.controller.refresh(w.now, w.wall).unwrap();
    w.pump();
    for n in [n1, n2, n3] {
        assert!(w.nodes[n].agent.membership().is_none(), "node {n}");
        assert!(w.nodes[n].saved.is_none());
    }
    assert!(w.own_peers.is_empty());
    // The controller's own node lets go of the network's addresses too.
    assert!(w.own_addresses.is_empty());
}

#[test]
fn one_network_that_cannot_be_read_does_not_stop_the_others() {
    let (mut w, [n1, _, _]) = three_nodes("bad-row");
    w.store
        .lock()
        .unwrap()
        .create_network(
            &NetworkSpec {
                name: "other".into(),
                ipv4: "198.51.100.0/24".parse().unwrap(),
                ipv6: None,
                mtu: 1376,
                reserve_controller: true,
            },
            w.wall,
        )
        .unwrap();
    w.controller.refresh(w.now, w.wall).unwrap();
    // Damage the other network's row behind the store's back (a hand edit, a bad restore).
    rusqlite::Connection::open(w.dir.join("controller.db"))
        .unwrap()
        .execute(
            "UPDATE networks SET ipv4_block = 'garbage' WHERE name = 'other'",
            [],
        )
        .unwrap();
    let version = w.controller.map_version("lab").unwrap();
    w.controller
        .refresh(w.now, w.wall)
        .expect("a damaged network stops the refresh of every network");
    assert_eq!(w.controller.map_version("lab"), Some(version));
    // lab works on: a new member joins and everyone gets it.
    let n4 = w.add_node(4, "192.0.2.44:51820", "192.0.2.44:51820");
    let token = w.token(TokenPolicy::single_use());
    w.join(n4, &token, "n4").unwrap();
    let k4 = w.key(n4);
    assert!(w.spec(n1, &k4).is_some());
    assert!(w.own_peers.iter().any(|p| p.key == k4));
}

#[test]
fn leaving_a_controller_that_does_not_know_the_node_forgets_it_here() {
    let (mut w, [n1, _, _]) = three_nodes("leave-unknown");
    w.replace_database("leave-unknown-new", |_| {});
    w.advance(agent::POLL_INTERVAL + Duration::from_millis(10));
    assert_eq!(w.nodes[n1].agent.standing(), &agent::Standing::Disowned);
    w.nodes[n1].agent.leave(w.now).unwrap();
    w.pump();
    assert_eq!(w.nodes[n1].left, Some(Ok("lab".to_string())));
    assert!(w.nodes[n1].agent.membership().is_none());
    assert!(w.nodes[n1].saved.is_none());
}

#[test]
fn a_leave_replayed_after_the_node_joined_again_is_ignored() {
    let (mut w, [n1, _, n3]) = three_nodes("leave-replay");
    let k3 = w.key(n3);
    let left_at = w.wall;
    w.nodes[n3].agent.leave(w.now).unwrap();
    w.pump();
    assert_eq!(w.nodes[n3].left, Some(Ok("lab".to_string())));
    w.advance(Duration::from_secs(30));
    let token = w.token(TokenPolicy::single_use());
    w.join(n3, &token, "n3").unwrap();
    // The same request again, as a restarted controller (no counters remembered) would take it
    // from someone who recorded it: the member that joined since stays.
    let seen_at = w.nodes[n3].seen_at;
    let (now, wall) = (w.now, w.wall);
    let received = Received {
        from: seen_at,
        sender: &k3,
        sent: left_at,
        len: usize::MAX,
    };
    let leave = Body::Leave {
        network: "lab".into(),
        pad: Vec::new(),
    };
    let acted = w.controller.handle_message(now, wall, received, leave);
    w.pump();
    assert!(!acted);
    assert!(w.store.lock().unwrap().member("lab", &k3).is_ok());
    assert!(w.nodes[n3].agent.membership().is_some());
    assert!(w.spec(n1, &k3).is_some());
}

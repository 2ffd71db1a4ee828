//! The mesh's control plane in one process: a controller service on a real database and node agents,
//! exchanging real sealed envelopes over an in-memory network with a virtual clock. No sockets, no
//! threads: every step is deterministic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshd::api::node::{JoinFailure, JoinFailureKind, JoinResponse};
use meshd::controller::service::{self, ControllerService};
use meshd::controller::store::{NetworkSpec, Store};
use meshd::controller::token::{JoinToken, TokenPolicy};
use meshd::mesh::agent::{self, Agent, NAT_KEEPALIVE};
use meshd::mesh::channel::{Channel, Opened};
use meshd::mesh::message::LocalInfo;
use meshd::mesh::relay::{self, Refusal, RelayTable};
use meshd::node::PeerSpec;
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
    relay: RelayTable,
    nodes: Vec<NodeSim>,
    start: Instant,
    now: Instant,
    wall: SystemTime,
    rng: ChaCha20Rng,
    /// Datagrams the controller sent, by destination: to count pushes.
    sent_to: HashMap<SocketAddr, usize>,
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
            relay: RelayTable::default(),
            nodes: Vec::new(),
            start,
            now: start,
            wall,
            rng: ChaCha20Rng::seed_from_u64(7),
            sent_to: HashMap::new(),
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
                        let Ok(Opened {
                            sender,
                            counter,
                            body,
                        }) = node.channel.open(wall, &datagram)
                        else {
                            continue;
                        };
                        if node.agent.handle_message(self.now, &sender, body) {
                            node.channel.accept(&sender, counter).unwrap();
                        }
                    }
                    service::Output::OwnPeers(peers) => self.own_peers = peers,
                    service::Output::OwnInterface { .. } => {}
                    service::Output::Relay(table) => self.relay = table,
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
                            let Ok(Opened {
                                sender,
                                counter,
                                body,
                            }) = self.ctl_channel.open(wall, &datagram)
                            else {
                                // Sealed to another controller's key: this one cannot read it.
                                continue;
                            };
                            let seen_at = node.seen_at;
                            if self
                                .controller
                                .handle_message(self.now, self.wall, seen_at, &sender, body)
                            {
                                self.ctl_channel.accept(&sender, counter).unwrap();
                            }
                        }
                        agent::Output::Peers(peers) => self.nodes[i].peers = Some(peers),
                        agent::Output::JoinDone(result) => self.nodes[i].joined = Some(result),
                        agent::Output::RelayToken(token) => self.nodes[i].relay_token = Some(token),
                        agent::Output::Interface { .. } | agent::Output::Persist { .. } => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
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
    w.store.lock().unwrap().remove_member("lab", &k2).unwrap();
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
        encoded.len() > 10 * meshd::mesh::map::PAGE_DATA,
        "{} bytes",
        encoded.len()
    );
    // The welcome, then each page once (the push after the join is the only copy of the map), then
    // the relay token.
    let pages = encoded.len().div_ceil(meshd::mesh::map::PAGE_DATA);
    assert_eq!(w.sent_to[&w.nodes[n].seen_at], 1 + pages + 1);
}

//! The network map at 1,000 members, end to end on both sides (no sockets).
//!
//! * `mesh_map/controller_change/1000`: one member's authorization flips in the database, and the
//!   controller reloads, rebuilds the map, cuts it in pages and seals every page for each of the
//!   other 999 online members (with the pair keys cached, as in a running controller). The store is
//!   on `/dev/shm` when present, so the figure is the controller's work, not the disk's fsync.
//! * `mesh_map/node_apply/1000`: a node gets the pages of a 1,000-member map: it opens each
//!   envelope, reassembles and decodes the map, derives the peer set and applies it to its node
//!   (`Node::reconcile`, the first time: 1,000 new peers).
//!
//! Run: `cargo bench -p meshd-benches --bench mesh_map`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use meshd_controller::service::{self, ControllerService, Received};
use meshd_controller::store::{NetworkSpec, Store};
use meshd_core::channel::{Admit, Channel, Opened};
use meshd_core::mesh::agent::{self, Agent};
use meshd_core::message::{Body, LocalInfo, PollMsg, sealed_len};
use meshd_core::node::Node;
use meshd_core::node::SetDevice;
use meshd_core::token::TokenPolicy;
use meshd_crypto::{PublicKey, StaticSecret};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

const MEMBERS: u32 = 1000;
const CONTROLLER: &str = "192.0.2.1:51820";

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn epoch() -> Instant {
    // The benchmark's fixed `now`; the benchmarked code never reads a clock itself.
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn member_secret(i: u32) -> StaticSecret {
    // Bytes 1-4 differ: clamping clears the low bits of byte 0.
    let mut k = [7u8; 32];
    k[1..5].copy_from_slice(&i.to_le_bytes());
    StaticSecret::from_bytes(k)
}

fn member_addr(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from_bits(0xc633_0000 | i), 51820))
}

/// A member's first poll, from its own address (so the controller finds it reachable).
fn first_poll(addr: SocketAddr) -> Body {
    Body::Poll(PollMsg {
        network: "lab".into(),
        have_version: 0,
        local: LocalInfo {
            listen_port: addr.port(),
            local_addrs: vec![addr.ip()],
        },
    })
}

struct Controller {
    dir: PathBuf,
    store: Arc<Mutex<Store>>,
    service: ControllerService,
    channel: Channel,
    rng: ChaCha20Rng,
    keys: Vec<PublicKey>,
}

/// A controller with `MEMBERS` members, every one of them seen (so every one gets pushes).
fn controller() -> Controller {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("meshd-bench-map-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ctl = StaticSecret::from_bytes([0xc0; 32]);
    let ctl_key = *ctl.public_key();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut store = Store::open(&dir).unwrap();
    store
        .create_network(
            &NetworkSpec {
                name: "lab".into(),
                ipv4: "10.64.0.0/16".parse().unwrap(),
                ipv6: Some("2001:db8:40::/64".parse().unwrap()),
                mtu: 1376,
                reserve_controller: true,
            },
            wall(),
        )
        .unwrap();
    let (_, token) = store
        .create_token("lab", &ctl_key, TokenPolicy::unlimited(), wall(), &mut rng)
        .unwrap();
    let mut keys = Vec::new();
    for i in 0..MEMBERS {
        let key = *member_secret(i).public_key();
        store
            .join(token.expose(), &key, &format!("node-{i}"), wall())
            .unwrap();
        keys.push(key);
    }
    let store = Arc::new(Mutex::new(store));
    let mut service = ControllerService::new(Arc::clone(&store), ctl_key, "border".into(), [0x5e; 32]);
    let now = epoch();
    service.refresh(now, wall()).unwrap();
    for (i, key) in keys.iter().enumerate() {
        let addr = member_addr(i as u32);
        let poll = first_poll(addr);
        let len = sealed_len(&poll);
        let received = Received {
            from: addr,
            sender: key,
            sent: wall(),
            len,
        };
        service.handle_message(now, wall(), received, poll);
    }
    // The addresses just learned go out in one debounced push.
    service.handle_timeout(now + Duration::from_secs(1), wall());
    let mut c = Controller {
        dir,
        store,
        service,
        channel: Channel::new(ctl),
        rng,
        keys,
    };
    // Warm the pair-key cache, as a running controller has it.
    c.drain();
    c
}

impl Controller {
    /// Seals every datagram the service asked for; returns how many and their bytes.
    fn drain(&mut self) -> (usize, usize) {
        let wall = wall().duration_since(UNIX_EPOCH).unwrap();
        let (mut n, mut bytes) = (0, 0);
        while let Some(out) = self.service.poll_output() {
            if let service::Output::Send { key, body, .. } = out {
                let datagram = self.channel.seal(wall, &key, body, &mut self.rng).unwrap();
                n += 1;
                bytes += datagram.len();
                black_box(datagram);
            }
        }
        (n, bytes)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn controller_change(c: &mut Criterion) {
    let mut ctl = controller();
    let victim = ctl.keys[500];
    let mut authorized = true;
    let now = epoch();
    // Report the size of one push once.
    {
        ctl.store
            .lock()
            .unwrap()
            .set_authorized("lab", &victim, false)
            .unwrap();
        ctl.service.refresh(now, wall()).unwrap();
        let (n, bytes) = ctl.drain();
        eprintln!(
            "one membership change: {n} datagrams, {:.1} MB sealed",
            bytes as f64 / 1e6
        );
        ctl.store
            .lock()
            .unwrap()
            .set_authorized("lab", &victim, true)
            .unwrap();
        ctl.service.refresh(now, wall()).unwrap();
        ctl.drain();
    }
    let mut group = c.benchmark_group("mesh_map");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("controller_change", MEMBERS), |b| {
        b.iter(|| {
            authorized = !authorized;
            ctl.store
                .lock()
                .unwrap()
                .set_authorized("lab", &victim, authorized)
                .unwrap();
            ctl.service.refresh(now, wall()).unwrap();
            black_box(ctl.drain())
        })
    });
    group.finish();
}

/// The datagrams a controller sends a node that has just joined (the map's pages, sealed to it).
fn pages_for_member(ctl: &mut Controller, member: u32) -> Vec<Vec<u8>> {
    let key = ctl.keys[member as usize];
    let addr = member_addr(member);
    let poll = first_poll(addr);
    let len = sealed_len(&poll);
    let received = Received {
        from: addr,
        sender: &key,
        sent: wall(),
        len,
    };
    ctl.service.handle_message(epoch(), wall(), received, poll);
    ctl.service
        .handle_timeout(epoch() + Duration::from_secs(2), wall());
    let wall = wall().duration_since(UNIX_EPOCH).unwrap();
    let mut out = Vec::new();
    while let Some(o) = ctl.service.poll_output() {
        if let service::Output::Send { key: to, body, .. } = o
            && to == key
        {
            out.push(ctl.channel.seal(wall, &to, body, &mut ctl.rng).unwrap());
        }
    }
    out
}

fn node_apply(c: &mut Criterion) {
    let mut ctl = controller();
    let member = 3;
    let pages = pages_for_member(&mut ctl, member);
    let secret = member_secret(member);
    let own = *secret.public_key();
    let ctl_key = PublicKey::from_bytes(*StaticSecret::from_bytes([0xc0; 32]).public_key().as_bytes());
    let membership = {
        let store = ctl.store.lock().unwrap();
        let m = store.member("lab", &own).unwrap();
        meshd_core::mesh::membership::Membership {
            network: "lab".into(),
            name: m.name,
            controller_key: *ctl_key.as_bytes(),
            controller: CONTROLLER.parse().unwrap(),
            ipv4: m.ipv4,
            ipv6: m.ipv6,
            ipv4_block: ("10.64.0.0".parse().unwrap(), 16),
            ipv6_block: Some(("2001:db8:40::".parse().unwrap(), 64)),
            mtu: 1376,
            network_id: None,
        }
    };
    eprintln!("a node receives {} datagrams", pages.len());
    let now = epoch();
    let mut group = c.benchmark_group("mesh_map");
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("node_apply", MEMBERS), |b| {
        b.iter_batched(
            || {
                let mut node = Node::new([3; 32], 1420);
                let set = SetDevice {
                    private_key: Some(Some(Zeroizing::new(*secret.to_bytes()))),
                    ..SetDevice::default()
                };
                node.apply(now, wall(), &set).unwrap();
                while node.poll_event().is_some() {}
                let local = LocalInfo {
                    listen_port: 51820,
                    local_addrs: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))],
                };
                let agent = Agent::new(now, own, local, Some(membership.clone()), None);
                (
                    node,
                    agent,
                    Channel::new(StaticSecret::from_bytes(*secret.to_bytes())),
                )
            },
            |(mut node, mut agent, mut channel)| {
                let wall_d = wall().duration_since(UNIX_EPOCH).unwrap();
                let ctl_ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
                for datagram in &pages {
                    let Opened {
                        sender,
                        counter,
                        body,
                    } = channel
                        .open(now, wall_d, ctl_ip, datagram, |_| Admit::Known)
                        .unwrap();
                    if agent.handle_message(now, &sender, body) {
                        channel.accept(&sender, counter).unwrap();
                    }
                }
                let mut applied = 0;
                while let Some(out) = agent.poll_output() {
                    if let agent::Output::Peers(peers) = out {
                        applied = peers.len();
                        node.reconcile(now, wall(), &peers);
                        while node.poll_event().is_some() {}
                    }
                }
                assert_eq!(applied, MEMBERS as usize, "the whole map was applied");
                black_box(node)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, controller_change, node_apply);
criterion_main!(benches);

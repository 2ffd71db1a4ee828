//! The mesh task: the control channel's end in the daemon. It opens and seals control messages,
//! feeds them to the node's [`Agent`] and, on a controller, to the [`ControllerService`], and carries
//! out what they ask: datagrams on the tunnel's socket, the interface's peers (through the control
//! loop, which owns the node), its addresses, the relay table, state files, and answers to the admin
//! API.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use meshd_core::log_limit::{LogLimiter, left_out};
use meshd_crypto::PublicKey;
use meshd_crypto::sealed::SealedError;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::mesh_cmd::MeshCmd;
use super::routing::{RoutingReport, RoutingView};
use super::state;
use crate::api::node::{
    JoinFailure, JoinFailureKind, JoinResponse, LeaveResponse, MemberStanding, MembershipStatus, NodeRequest,
    NodeStatus, PathKind, PeerStatusView,
};
use meshd_controller::service::{self, ControllerService, Received};
use meshd_core::channel::{Admit, Channel, OpenError, Opened};
use meshd_core::mesh::agent::{self, Agent, Standing, base64_key};
use meshd_core::message::{Body, LocalInfo};
use meshd_core::node::PeerRuntime;
use meshd_core::node::{DropReason, Endpoint, PeerSpec};
use meshd_wg::rx::MeshInput;
use meshd_wg::shared::Shared;
use meshd_wg::sys::{clock, ifaddrs, ifconfig};

/// Capacity of the RX thread's queue of meshd messages; beyond it they are dropped (and counted).
pub const MESH_QUEUE: usize = 4096;

/// How often the socket's local addresses are looked at again (an uplink came or went).
const LOCAL_REFRESH: Duration = Duration::from_secs(30);

pub struct MeshTask {
    pub channel: Channel,
    pub agent: Option<Agent>,
    pub controller: Option<ControllerService>,
    pub shared: Arc<Shared>,
    pub control: mpsc::Sender<MeshCmd>,
    pub interface: String,
    pub state_dir: PathBuf,
    pub rng: ChaCha20Rng,
    pub pending_join: Option<oneshot::Sender<Result<JoinResponse, JoinFailure>>>,
    pub pending_leave: Option<oneshot::Sender<Result<LeaveResponse, String>>>,
    pub addresses: Vec<(IpAddr, u8)>,
    /// What the routing task should install, from the map in use.
    pub routing: watch::Sender<Option<RoutingView>>,
    /// What the routing task installed, for `meshd status`.
    pub routing_report: Arc<std::sync::Mutex<RoutingReport>>,
    /// Control messages that did not open are logged (at debug), but strangers choose how many.
    pub refused_log: LogLimiter,
}

impl MeshTask {
    /// The local information a node reports: the socket's port and the machine's addresses.
    pub fn local_info(interface: &str, port: u16) -> LocalInfo {
        let local_addrs = ifaddrs::local_addresses(&[interface]).unwrap_or_else(|e| {
            tracing::warn!("cannot list the machine's addresses: {e}");
            Vec::new()
        });
        LocalInfo {
            listen_port: port,
            local_addrs,
        }
    }

    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<MeshInput>,
        mut api: mpsc::Receiver<NodeRequest>,
        changed: Arc<Notify>,
        port: impl Fn() -> u16,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut local_refresh = tokio::time::interval(LOCAL_REFRESH);
        local_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if let Some(c) = &mut self.controller
            && let Err(e) = c.refresh(clock::now(), clock::wall())
        {
            tracing::error!("cannot load the controller's state: {e}");
        }
        self.carry_out().await;
        loop {
            let deadline = [
                self.agent.as_ref().and_then(Agent::poll_timeout),
                self.controller.as_ref().and_then(ControllerService::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            let timer = meshd_wg::sleep_until(deadline);
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some(input) = inputs.recv() => self.on_datagram(input),
                Some(request) = api.recv() => self.on_request(request).await,
                _ = changed.notified() => {
                    if let Some(c) = &mut self.controller
                        && let Err(e) = c.refresh(clock::now(), clock::wall())
                    {
                        tracing::error!("cannot reload the controller's state: {e}");
                    }
                }
                _ = timer => {
                    let now = clock::now();
                    if let Some(a) = &mut self.agent {
                        a.handle_timeout(now);
                    }
                    if let Some(c) = &mut self.controller {
                        c.handle_timeout(now, clock::wall());
                    }
                }
                _ = local_refresh.tick() => {
                    if let Some(a) = &mut self.agent {
                        a.set_local(Self::local_info(&self.interface, port()));
                    }
                }
            }
            self.carry_out().await;
        }
        if let Some(c) = &mut self.controller {
            c.flush_sightings();
        }
    }

    fn on_datagram(&mut self, input: MeshInput) {
        let wall = clock::wall().duration_since(UNIX_EPOCH).unwrap_or_default();
        let now = clock::now();
        let from = meshd_core::address::canonical(input.from);
        // Who may cost a key derivation: on a controller its members without limit and anyone else
        // (a joining node) within the strangers' limits; on a node only its controller.
        let (controller, agent) = (&self.controller, &self.agent);
        let admit = |key: &PublicKey| match (controller, agent) {
            (Some(c), _) if c.is_member(key) => Admit::Known,
            (Some(_), _) => Admit::Stranger,
            (None, Some(a)) if a.expects(key) => Admit::Known,
            _ => Admit::Unwanted,
        };
        let opened = self.channel.open(now, wall, from.ip(), &input.datagram, admit);
        let Opened {
            sender,
            counter,
            body,
        } = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.shared.drops.add(open_drop(&e), 1);
                if let Some(skipped) = self.refused_log.check(now) {
                    tracing::debug!("control message from {from} refused: {e}{}", left_out(skipped));
                }
                return;
            }
        };
        let request_len = input.datagram.len();
        let acted = match (&mut self.controller, &mut self.agent) {
            (Some(c), _) => {
                let sent = UNIX_EPOCH + Duration::from_nanos(counter);
                c.handle_message(
                    now,
                    clock::wall(),
                    Received {
                        from,
                        sender: &sender,
                        sent,
                        len: request_len,
                    },
                    body,
                )
            }
            (None, Some(a)) => a.handle_message(now, &sender, body),
            (None, None) => false,
        };
        if acted {
            if let Err(e) = self.channel.accept(&sender, counter) {
                tracing::debug!("control message from {} not recorded: {e}", sender.fingerprint());
            }
        } else {
            // Opened but not acted on (a refused join, a stranger's poll): its replays are refused.
            self.shared.drops.add(DropReason::ControlRefused, 1);
            self.channel.refuse(now, &sender, counter);
        }
    }

    async fn on_request(&mut self, request: NodeRequest) {
        match request {
            NodeRequest::Status(reply) => {
                let status = self.status().await;
                let _ = reply.send(status);
            }
            NodeRequest::Join(join, reply) => {
                if self.controller.is_some() {
                    let _ = reply.send(Err(JoinFailure {
                        kind: JoinFailureKind::AlreadyJoined,
                        message: "this daemon runs the controller; its node is in every network it hosts \
                                  and joins none"
                            .to_string(),
                    }));
                    return;
                }
                // The API stops waiting for a join that cannot succeed (nothing listens at the
                // controller's address); its caller may try again at once.
                if self.pending_join.as_ref().is_some_and(oneshot::Sender::is_closed) {
                    self.pending_join = None;
                    if let Some(agent) = &mut self.agent {
                        agent.abandon_join();
                    }
                }
                if self.pending_join.is_some() {
                    let _ = reply.send(Err(JoinFailure {
                        kind: JoinFailureKind::Refused,
                        message: "a join is in progress already; wait for it to finish".to_string(),
                    }));
                    return;
                }
                let name = join.name.clone().unwrap_or_else(host_name);
                let Some(agent) = &mut self.agent else { return };
                match agent.join(clock::now(), &join.token, join.controller, &name) {
                    Ok(()) => self.pending_join = Some(reply),
                    Err(failure) => {
                        let _ = reply.send(Err(failure));
                    }
                }
            }
            NodeRequest::Leave(reply) => {
                let Some(agent) = &mut self.agent else {
                    let _ = reply.send(Err("this daemon runs the controller; its node leaves no \
                                            network (delete networks with `meshd network delete`)"
                        .to_string()));
                    return;
                };
                if self.pending_leave.is_some() {
                    let _ = reply.send(Err("leaving is in progress already".to_string()));
                    return;
                }
                match agent.leave(clock::now()) {
                    Ok(()) => self.pending_leave = Some(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    /// Carries out everything the agent and the controller asked for.
    async fn carry_out(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(out) = self.agent.as_mut().and_then(Agent::poll_output) {
                progressed = true;
                self.on_agent_output(out).await;
            }
            while let Some(out) = self.controller.as_mut().and_then(ControllerService::poll_output) {
                progressed = true;
                self.on_controller_output(out).await;
            }
            if !progressed {
                break;
            }
        }
        let view = self.routing_view();
        self.routing.send_if_modified(|current| {
            let changed = *current != view;
            *current = view;
            changed
        });
    }

    /// This node's place in the map in use: its addresses, its block, its ingress role. `None`
    /// before a map, and while the controller says this node is not authorized.
    fn routing_view(&self) -> Option<RoutingView> {
        let own = self.channel.public_key().as_bytes();
        match (&self.controller, &self.agent) {
            (Some(c), _) => c.maps().find_map(|m| RoutingView::of(m, own)),
            (None, Some(a)) if a.authorized() => a.map().and_then(|m| RoutingView::of(m, own)),
            _ => None,
        }
    }

    async fn on_agent_output(&mut self, out: agent::Output) {
        match out {
            agent::Output::Send { to, key, body } => self.send(to, &key, body),
            agent::Output::Peers(peers) => self.set_peers(peers).await,
            agent::Output::Interface { addresses, mtu } => self.set_interface(addresses, mtu),
            agent::Output::Persist { membership, map } => {
                if let Err(e) = state::save(&self.state_dir, &membership, map.as_ref()) {
                    tracing::error!("{e:#}");
                }
            }
            agent::Output::Forget => {
                if let Err(e) = state::forget(&self.state_dir) {
                    tracing::error!("{e:#}");
                }
            }
            agent::Output::LeaveDone(result) => {
                match &result {
                    Ok(network) => tracing::info!("left network {network:?}"),
                    Err(e) => tracing::warn!("leaving failed: {e}"),
                }
                if let Some(reply) = self.pending_leave.take() {
                    let _ = reply.send(result.map(|network| LeaveResponse { network }));
                }
            }
            agent::Output::RelayToken(token) => {
                if self.control.send(MeshCmd::RelayToken(token)).await.is_err() {
                    tracing::debug!("control loop gone; relay token not applied");
                }
            }
            agent::Output::JoinDone(result) => {
                match &result {
                    Ok(r) => tracing::info!("joined network {:?} as {:?} with {}", r.network, r.name, r.ipv4),
                    Err(e) => tracing::warn!("join failed: {}", e.message),
                }
                if let Some(reply) = self.pending_join.take() {
                    let _ = reply.send(result);
                }
            }
        }
    }

    async fn on_controller_output(&mut self, out: service::Output) {
        match out {
            service::Output::Send { to, key, body } => self.send(to, &key, body),
            service::Output::OwnPeers(peers) => self.set_peers(peers).await,
            service::Output::OwnInterface { addresses, mtu } => self.set_interface(addresses, mtu),
            service::Output::Relay(table) => self.shared.relay.store(Arc::new(table)),
            service::Output::Withheld { to } => {
                self.shared.drops.add(DropReason::ControlReplyWithheld, 1);
                tracing::debug!("answer to {to} withheld: larger than the message it answers");
            }
        }
    }

    fn send(&mut self, to: SocketAddr, key: &PublicKey, body: Body) {
        let wall = clock::wall().duration_since(UNIX_EPOCH).unwrap_or_default();
        match self.channel.seal(wall, key, body, &mut self.rng) {
            Ok(datagram) => {
                if let Err(e) = self.shared.udp.load().send(to, &datagram, None) {
                    tracing::debug!("control message to {to} not sent: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot seal a control message to {}: {e}", key.fingerprint()),
        }
    }

    async fn set_peers(&mut self, peers: Vec<PeerSpec>) {
        if self.control.send(MeshCmd::Reconcile(peers)).await.is_err() {
            tracing::debug!("control loop gone; peers not applied");
        }
    }

    /// Gives the interface exactly these addresses (an `mtu` of 0 leaves the MTU as it is): those it
    /// had and no longer should are taken off, since the controller may give them to another member.
    fn set_interface(&mut self, addresses: Vec<(IpAddr, u8)>, mtu: u16) {
        for (addr, len) in self.addresses.clone() {
            if addresses.contains(&(addr, len)) {
                continue;
            }
            match ifconfig::remove_address(&self.interface, addr, len) {
                Ok(()) => tracing::info!("{} no longer has address {addr}/{len}", self.interface),
                Err(e) => tracing::error!("cannot take {addr}/{len} off {}: {e}", self.interface),
            }
        }
        self.addresses.retain(|a| addresses.contains(a));
        if mtu == 0 || addresses.is_empty() {
            return;
        }
        let mtu = fitting_mtu(mtu);
        if let Err(e) = ifconfig::configure(&self.interface, &addresses, mtu) {
            tracing::error!("cannot configure {}: {e}", self.interface);
            return;
        }
        for (addr, len) in &addresses {
            if !self.addresses.contains(&(*addr, *len)) {
                tracing::info!("{} has address {addr}/{len}", self.interface);
            }
        }
        self.addresses = addresses;
    }

    async fn status(&mut self) -> NodeStatus {
        let runtime = MeshCmd::peers(&self.control).await;
        let wall = clock::wall();
        let now = clock::now();
        let names = self.peer_names();
        let report = self.routing_report.lock().ok();
        let peers = runtime
            .into_iter()
            .map(|p: PeerRuntime| {
                let info = names.iter().find(|n| n.0 == p.key);
                PeerStatusView {
                    name: info.map(|n| n.1.clone()).unwrap_or_default(),
                    public_key: base64_key(p.key.as_bytes()),
                    mesh_ipv4: info.map(|n| n.2),
                    mesh_ipv6: info.and_then(|n| n.3),
                    endpoint: p.endpoint.map(|e| e.addr()),
                    path: match p.endpoint {
                        Some(Endpoint::Direct(_)) => PathKind::Direct,
                        Some(Endpoint::Relayed { .. }) => PathKind::Relayed,
                        None => PathKind::None,
                    },
                    last_handshake_secs: p
                        .last_handshake
                        .and_then(|t| wall.duration_since(t).ok())
                        .map(|d| d.as_secs()),
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                }
            })
            .collect();
        let membership = self.agent.as_ref().and_then(|a| {
            a.membership().map(|m| MembershipStatus {
                network: m.network.clone(),
                name: m.name.clone(),
                controller_key: base64_key(&m.controller_key),
                controller: m.controller,
                authorized: a.authorized(),
                standing: match a.standing() {
                    Standing::Deauthorized => MemberStanding::Deauthorized,
                    Standing::Disowned => MemberStanding::Disowned,
                    Standing::Authorized | Standing::Removed { .. } => MemberStanding::Authorized,
                },
                map_version: a.map_version(),
                controller_last_heard_secs: a
                    .last_heard()
                    .map(|t| now.saturating_duration_since(t).as_secs()),
            })
        });
        NodeStatus {
            public_key: base64_key(self.channel.public_key().as_bytes()),
            interface: self.interface.clone(),
            listen_port: self.shared.udp.load().port(),
            controller_role: self.controller.is_some(),
            membership,
            addresses: self.addresses.iter().map(|(a, l)| format!("{a}/{l}")).collect(),
            peers,
            routing: report.as_ref().and_then(|r| r.routing.clone()),
            ingress: report.as_ref().and_then(|r| r.ingress.clone()),
            drops: self
                .shared
                .drops
                .all()
                .into_iter()
                .map(|(name, n)| (name.to_string(), n))
                .collect(),
            removed_from: self.agent.as_ref().and_then(|a| match a.standing() {
                Standing::Removed { network } if a.membership().is_none() => Some(network.clone()),
                _ => None,
            }),
        }
    }

    /// (key, name, mesh IPv4, mesh IPv6) of every peer the maps in use name.
    fn peer_names(&self) -> Vec<(PublicKey, String, std::net::Ipv4Addr, Option<std::net::Ipv6Addr>)> {
        let maps: Vec<&meshd_core::map::NetworkMap> = match (&self.controller, &self.agent) {
            (Some(c), _) => c.maps().collect(),
            (None, Some(a)) => a.map().into_iter().collect(),
            _ => Vec::new(),
        };
        maps.into_iter()
            .flat_map(|m| &m.peers)
            .map(|p| (PublicKey::from_bytes(p.key), p.name.clone(), p.ipv4, p.ipv6))
            .collect()
    }
}

/// The counter a control message that did not open goes under.
fn open_drop(e: &OpenError) -> DropReason {
    match e {
        OpenError::Sealed(SealedError::Malformed(_)) | OpenError::Decode(_) => DropReason::ControlMalformed,
        OpenError::Sealed(SealedError::Decrypt | SealedError::LowOrderPoint) => DropReason::ControlBadAuth,
        OpenError::Sealed(SealedError::Stale) => DropReason::ControlStale,
        OpenError::Sealed(SealedError::Replayed | SealedError::TooManySenders) => DropReason::ControlReplayed,
        OpenError::RateLimited => DropReason::ControlRateLimited,
        OpenError::Unwanted => DropReason::ControlUnwanted,
    }
}

/// This machine's host name, the default name of a joining node.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// The network's MTU, or the largest that fits every path when the network asks for more (a network
/// created before that limit existed): a full-size packet relayed over a 1500-byte IPv6 underlay would
/// not arrive. Said at warning level, once for each MTU asked for.
fn fitting_mtu(mtu: u16) -> u16 {
    use meshd_packet::mtu::{MAX_MTU, WORST_PATH_OVERHEAD};
    use std::sync::atomic::{AtomicU16, Ordering};
    static WARNED: AtomicU16 = AtomicU16::new(0);
    if mtu <= MAX_MTU {
        return mtu;
    }
    if WARNED.swap(mtu, Ordering::Relaxed) == mtu {
        return MAX_MTU;
    }
    tracing::warn!(
        "the network's MTU of {mtu} does not fit a packet relayed over a 1500-byte IPv6 underlay \
         ({WORST_PATH_OVERHEAD} bytes of headers); the interface uses {MAX_MTU}"
    );
    MAX_MTU
}

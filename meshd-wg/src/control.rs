//! The control loop: owns the sans-IO [`Node`], feeds it what the data threads and the configuration
//! socket hand over, runs its timers, and carries out its events on the shared state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Sender as UpdateSender;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use super::rx::RxUpdate;
use super::shared::{PeerShared, Routes, Shared};
use meshd_crypto::PublicKey;

use crate::sys::clock;
use crate::sys::udp::Udp;
use meshd_core::node::{DropReason, Endpoint, Event, Node, PeerId, PeerRuntime, PeerSpec};
use meshd_core::uapi::{self, Request};

/// What the data threads hand to the control loop.
#[derive(Debug)]
pub enum ControlMsg {
    /// A handshake or cookie message from the network, directly or through a relay.
    Handshake { from: Endpoint, datagram: Vec<u8> },
    /// A packet for a peer without a usable session.
    Unsent { peer: PeerId, packet: Vec<u8> },
    /// The first data message decrypted on a responder's session.
    Confirmed { peer: PeerId, local_index: u32 },
}

/// A configuration request and where its answer goes.
#[derive(Debug)]
pub struct UapiCall {
    pub request: Request,
    pub reply: oneshot::Sender<Zeroizing<String>>,
}

/// A command from whoever drives the interface besides wg(8) (the mesh daemon), carried out on the
/// control loop, which owns the node. The loop knows nothing of the mesh: a command calls the
/// [`Control`] methods it needs.
pub trait Command: Send + 'static {
    fn run(self, control: &mut Control);
}

/// No commands: the loop of an interface that only wg(8) configures.
impl Command for std::convert::Infallible {
    fn run(self, _: &mut Control) {
        match self {}
    }
}

/// How often the data path's activity is turned into timer events, and drop counters checked.
const TICK: Duration = Duration::from_millis(100);

/// How often changed drop counters are logged (at debug level).
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(5);

pub struct Control {
    node: Node,
    shared: Arc<Shared>,
    rx_updates: UpdateSender<RxUpdate>,
    peers: HashMap<PeerId, Arc<PeerShared>>,
    routes_dirty: bool,
    fwmark: u32,
    rebind_failed: bool,
    logged_drops: Vec<(DropReason, u64)>,
}

impl Control {
    pub fn new(node: Node, shared: Arc<Shared>, rx_updates: UpdateSender<RxUpdate>) -> Self {
        Control {
            node,
            shared,
            rx_updates,
            peers: HashMap::new(),
            routes_dirty: false,
            fwmark: 0,
            rebind_failed: false,
            logged_drops: Vec::new(),
        }
    }

    /// Runs until `stop` resolves.
    pub async fn run(
        self,
        msgs: mpsc::Receiver<ControlMsg>,
        calls: mpsc::Receiver<UapiCall>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        // No mesh task: a command channel nothing sends on.
        let (_unused, cmds) = mpsc::channel::<std::convert::Infallible>(1);
        self.run_mesh(msgs, calls, cmds, stop).await;
    }

    /// Runs until `stop` resolves, also taking the mesh task's commands.
    pub async fn run_mesh<C: Command>(
        mut self,
        mut msgs: mpsc::Receiver<ControlMsg>,
        mut calls: mpsc::Receiver<UapiCall>,
        mut cmds: mpsc::Receiver<C>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        self.publish_own_key();
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drops_logged_at = clock::now();
        loop {
            let deadline = self.node.poll_timeout();
            let timer = super::sleep_until(deadline);
            tokio::select! {
                biased;
                _ = &mut stop => return,
                Some(msg) = msgs.recv() => {
                    let waiting = msgs.len();
                    self.on_message(msg, waiting);
                }
                Some(call) = calls.recv() => self.on_call(call),
                Some(cmd) = cmds.recv() => cmd.run(&mut self),
                _ = timer => self.node.handle_timeout(clock::now(), clock::wall()),
                _ = tick.tick() => {
                    self.drain_activity();
                    let now = clock::now();
                    if now.duration_since(drops_logged_at) >= DROP_LOG_INTERVAL {
                        drops_logged_at = now;
                        self.log_drops();
                    }
                }
            }
            self.apply_events();
        }
    }

    fn on_message(&mut self, msg: ControlMsg, waiting: usize) {
        let (now, wall) = (clock::now(), clock::wall());
        match msg {
            ControlMsg::Handshake { from, datagram } => {
                self.node.handle_datagram(now, wall, from, &datagram, waiting)
            }
            ControlMsg::Unsent { peer, packet } => self.node.handle_unsent(now, wall, peer, packet),
            ControlMsg::Confirmed { peer, local_index } => {
                self.node.handle_session_confirmed(now, wall, peer, local_index)
            }
        }
    }

    fn on_call(&mut self, call: UapiCall) {
        let answer = match call.request {
            Request::Get => {
                self.drain_activity();
                let (mut status, ids) = self.node.status();
                for (peer, id) in status.peers.iter_mut().zip(ids) {
                    if let Some(shared) = self.peers.get(&id) {
                        peer.tx_bytes = shared.tx_bytes.load(std::sync::atomic::Ordering::Relaxed);
                        peer.rx_bytes = shared.rx_bytes.load(std::sync::atomic::Ordering::Relaxed);
                    }
                }
                uapi::render(&status)
            }
            Request::Set(set) => {
                // The node's refusal is answered as the codec answers an invalid value.
                let result = self
                    .node
                    .apply(clock::now(), clock::wall(), &set)
                    .map_err(uapi::UapiError::from);
                self.rebind_failed = false;
                self.apply_events();
                self.publish_own_key();
                match result {
                    Err(e) => {
                        tracing::info!("configuration refused: {e}");
                        Zeroizing::new(uapi::errno_answer(e.errno()))
                    }
                    Ok(()) if self.rebind_failed => Zeroizing::new(uapi::errno_answer(uapi::EADDRINUSE)),
                    Ok(()) => Zeroizing::new(uapi::errno_answer(0)),
                }
            }
        };
        // The client may have gone; nothing to do then.
        let _ = call.reply.send(answer);
    }

    /// Makes the interface's peers exactly these (from the network map).
    pub fn reconcile(&mut self, peers: &[PeerSpec]) {
        let summary = self.node.reconcile(clock::now(), clock::wall(), peers);
        tracing::debug!("peers from the map: {summary:?}");
    }

    /// Puts this token in relay frames from now on (the relay issued it).
    pub fn set_relay_token(&mut self, token: [u8; 8]) {
        self.node.set_relay_token(token);
        self.shared
            .relay_token
            .store(u64::from_le_bytes(token), std::sync::atomic::Ordering::Relaxed);
    }

    /// Every peer's path, last handshake and byte counts.
    pub fn peers(&mut self) -> Vec<PeerRuntime> {
        self.drain_activity();
        let (status, ids) = self.node.status();
        status
            .peers
            .iter()
            .zip(ids)
            .map(|(p, id)| {
                let shared = self.peers.get(&id);
                let load = |f: fn(&PeerShared) -> &std::sync::atomic::AtomicU64| {
                    shared.map_or(0, |s| f(s).load(std::sync::atomic::Ordering::Relaxed))
                };
                PeerRuntime {
                    key: PublicKey::from_bytes(p.public_key),
                    endpoint: self.node.endpoint(id),
                    last_handshake: p.last_handshake.map(|d| SystemTime::UNIX_EPOCH + d),
                    rx_bytes: load(|s| &s.rx_bytes),
                    tx_bytes: load(|s| &s.tx_bytes),
                }
            })
            .collect()
    }

    /// The RX thread tells relay frames for this node from ones to forward by the node's key.
    fn publish_own_key(&self) {
        let key = self.node.public_key().map(|k| *k.as_bytes());
        if self.shared.own_key.load().as_deref().copied() != key {
            self.shared.own_key.store(key.map(Arc::new));
        }
    }

    fn drain_activity(&mut self) {
        let epoch = self.shared.epoch;
        for (id, peer) in &self.peers {
            let activity = peer.take_activity(epoch, self.node.endpoint(*id));
            if !activity.is_empty() {
                self.node.handle_activity(*id, &activity);
            }
        }
    }

    fn apply_events(&mut self) {
        while let Some(event) = self.node.poll_event() {
            self.apply(event);
        }
        if std::mem::take(&mut self.routes_dirty) {
            let routes = Routes {
                allowed_ips: self.node.allowed_ips().clone(),
                peers: self.peers.clone(),
            };
            self.shared.routes.store(Arc::new(routes));
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Transmit { to, datagram } => {
                if let Err(e) = self.shared.udp.load().send(to, &datagram, None) {
                    tracing::debug!("send to {to} failed: {e}");
                    self.shared.drops.add(DropReason::SendFailed, 1);
                }
            }
            Event::PeerAdded { peer, key } => {
                self.peers
                    .insert(peer, Arc::new(PeerShared::new(peer, *key.as_bytes())));
                self.routes_dirty = true;
            }
            Event::PeerRemoved { peer } => {
                if let Some(shared) = self.peers.remove(&peer) {
                    shared.sender.store(None);
                }
                self.routes_dirty = true;
            }
            Event::Endpoint { peer, endpoint } => {
                if let Some(shared) = self.peers.get(&peer) {
                    shared.endpoint.store(endpoint.map(Arc::new));
                }
            }
            Event::Sender { peer, sender } => {
                if let Some(shared) = self.peers.get(&peer) {
                    shared.sender.store(sender);
                }
            }
            Event::Receiver {
                peer,
                receiver,
                confirms,
            } => {
                if let Some(shared) = self.peers.get(&peer) {
                    let update = RxUpdate::Add {
                        peer: Arc::clone(shared),
                        receiver,
                        confirms,
                    };
                    // The RX thread only goes away when the daemon stops.
                    let _ = self.rx_updates.send(update);
                }
            }
            Event::RemoveReceiver { local_index } => {
                let _ = self.rx_updates.send(RxUpdate::Remove { local_index });
            }
            Event::RoutesChanged => self.routes_dirty = true,
            Event::Rebind { port } => match Udp::bind(port) {
                Ok(udp) => {
                    if self.fwmark != 0
                        && let Err(e) = udp.set_fwmark(self.fwmark)
                    {
                        tracing::warn!("cannot set fwmark {} on the new socket: {e}", self.fwmark);
                    }
                    let bound = udp.port();
                    self.shared.udp.store(Arc::new(udp));
                    self.node.set_bound_port(bound);
                    tracing::info!("listening on UDP port {bound}");
                }
                Err(e) => {
                    tracing::warn!("cannot listen on UDP port {port}: {e}");
                    self.rebind_failed = true;
                }
            },
            Event::Fwmark { mark } => {
                self.fwmark = mark;
                if let Err(e) = self.shared.udp.load().set_fwmark(mark) {
                    tracing::warn!("cannot set fwmark {mark}: {e}");
                }
            }
            Event::Dropped { reason, n } => self.shared.drops.add(reason, n),
        }
    }

    fn log_drops(&mut self) {
        let now = self.shared.drops.nonzero();
        if now != self.logged_drops {
            let line: Vec<String> = now.iter().map(|(r, n)| format!("{}={n}", r.name())).collect();
            tracing::debug!("dropped packets: {}", line.join(" "));
            self.logged_drops = now;
        }
    }
}

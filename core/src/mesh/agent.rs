//! A node's side of the mesh, sans IO: joining with a token, polling the controller, putting map
//! pages together, and turning the map into the peer set the node's interface should have.
//!
//! Driven like the node core: feed `join`, `handle_message` and `handle_timeout` (with `now`), then
//! drain `poll_output`. The shell seals and opens envelopes ([`crate::channel`]), carries out the
//! outputs (datagrams, the interface's peers and addresses, files) and answers the admin API.
//!
//! Paths: every peer gets the relay (the controller's node) as a fallback path. It gets a direct
//! address only when the controller saw that the peer's address is its own socket (`reachable`); a
//! peer behind NAT is reached through the relay until it sends directly, which the data path notices
//! (a public node learns a NATed peer's address from its first direct packet). A node behind NAT
//! keeps its mappings open with a keepalive to the controller (which is also the relay's address) and
//! to the reachable peers it talks to directly.
//!
//! Losing the membership: only an authenticated [`Body::Removed`] from the node's controller, for the
//! network id saved at the join, ends it (after `meshd member remove` there, or the node's own
//! [`Agent::leave`]); the node then takes its addresses off the interface, drops its peers, forgets
//! its saved membership and map, and may join again. A controller that answers "not a member" (one
//! that lost its database, or runs another) is not believed: the node keeps its peers and map, logs
//! an error, and keeps polling.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use meshd_crypto::PublicKey;
use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};
use zeroize::Zeroizing;

use super::join::{JoinFailure, JoinFailureKind, JoinResponse};
use super::membership::Membership;
use super::peer_rules::{NAT_KEEPALIVE, default_routes};
use crate::map::{Assembler, NetworkMap, PageOutcome};
use crate::message::{
    Body, JoinMsg, JoinedMsg, LEAVE_PAD, LocalInfo, NetworkId, PollMsg, RefusalKind, RefusedMsg,
};
use crate::node::PeerSpec;
use crate::token::JoinToken;

/// How often a node polls its controller: its liveness signal, its endpoint report, and how a lost
/// push is caught up.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How soon a node asks again when pages of a map are missing.
pub const PAGE_RETRY: Duration = Duration::from_millis(300);
/// How often a join request is repeated while unanswered, and when the node gives up.
pub const JOIN_RETRY: Duration = Duration::from_secs(1);
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
#[derive(Debug)]
pub enum Output {
    /// Seal `body` to `key` and send it to `to`.
    Send {
        to: SocketAddr,
        key: PublicKey,
        body: Body,
    },
    /// The interface's peers should be exactly these.
    Peers(Vec<PeerSpec>),
    /// The interface's addresses (with the block's prefix length) and MTU.
    Interface { addresses: Vec<(IpAddr, u8)>, mtu: u16 },
    /// Write the membership and the last complete map (`None`: forget it) to disk.
    Persist {
        membership: Membership,
        map: Option<NetworkMap>,
    },
    /// The answer to [`Agent::join`].
    JoinDone(Result<JoinResponse, JoinFailure>),
    /// The node is no longer a member: remove the saved membership and map.
    Forget,
    /// The answer to [`Agent::leave`]: the network left, or why not.
    LeaveDone(Result<String, String>),
    /// The relay (the controller's node) issued this node a token for its relay frames.
    RelayToken([u8; 8]),
}

/// Where the node stands with its controller, as far as it has heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// A member (or nothing heard to the contrary yet).
    Authorized,
    /// The controller says this node is a member but deauthorized: no peers until it is authorized.
    Deauthorized,
    /// The controller says it does not know this node or its network. Peers and map are kept: the
    /// controller may have lost its state.
    Disowned,
    /// Removed from this network by the controller; no membership any more.
    Removed { network: String },
}

struct Leaving {
    next_send: Instant,
    deadline: Instant,
}

struct Joining {
    token: Zeroizing<String>,
    controller_key: PublicKey,
    controller: SocketAddr,
    name: String,
    next_send: Instant,
    deadline: Instant,
}

pub struct Agent {
    own_key: PublicKey,
    local: LocalInfo,
    membership: Option<Membership>,
    map: Option<NetworkMap>,
    authorized: bool,
    standing: Standing,
    assembler: Assembler,
    joining: Option<Joining>,
    leaving: Option<Leaving>,
    next_poll: Option<Instant>,
    last_heard: Option<Instant>,
    /// The relay token last received, so an unchanged one is not passed on again.
    relay_token: Option<[u8; 8]>,
    outputs: VecDeque<Output>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("own_key", &self.own_key)
            .field("network", &self.membership.as_ref().map(|m| &m.network))
            .field("map_version", &self.map_version())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent for the node `own_key`, resuming `membership` and its last `map` if the node joined
    /// before (both as persisted), so the node works on its last map while the controller is away.
    pub fn new(
        now: Instant,
        own_key: PublicKey,
        local: LocalInfo,
        membership: Option<Membership>,
        map: Option<NetworkMap>,
    ) -> Self {
        let map = map.filter(|m| membership.as_ref().is_some_and(|ms| ms.network == m.network));
        let mut agent = Agent {
            own_key,
            local,
            authorized: true,
            standing: Standing::Authorized,
            membership,
            map,
            assembler: Assembler::default(),
            joining: None,
            leaving: None,
            next_poll: None,
            last_heard: None,
            relay_token: None,
            outputs: VecDeque::new(),
        };
        if let Some(m) = &agent.membership {
            agent.outputs.push_back(Output::Interface {
                addresses: m.interface_addresses(),
                mtu: m.mtu,
            });
            agent.publish_peers();
            agent.next_poll = Some(now);
        }
        agent
    }

    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    pub fn map(&self) -> Option<&NetworkMap> {
        self.map.as_ref()
    }

    pub fn map_version(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.version)
    }

    pub fn authorized(&self) -> bool {
        self.authorized
    }

    pub fn standing(&self) -> &Standing {
        &self.standing
    }

    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// Whether `key` is one this node takes control messages from: the controller it joins or is a
    /// member through. Envelopes from any other key are dropped before any work is spent on them.
    pub fn expects(&self, key: &PublicKey) -> bool {
        self.joining.as_ref().is_some_and(|j| &j.controller_key == key)
            || self
                .membership
                .as_ref()
                .is_some_and(|m| &m.controller_key == key.as_bytes())
    }

    /// The socket's port or addresses changed.
    pub fn set_local(&mut self, local: LocalInfo) {
        self.local = local;
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let join = self.joining.as_ref().map(|j| j.next_send.min(j.deadline));
        let leave = self.leaving.as_ref().map(|l| l.next_send.min(l.deadline));
        [join, leave, self.next_poll].into_iter().flatten().min()
    }

    /// Starts joining with `token` through the controller at `controller`. The answer comes as
    /// [`Output::JoinDone`], at the latest after [`JOIN_TIMEOUT`].
    pub fn join(
        &mut self,
        now: Instant,
        token: &str,
        controller: SocketAddr,
        name: &str,
    ) -> Result<(), JoinFailure> {
        if let Some(m) = &self.membership {
            return Err(JoinFailure {
                kind: JoinFailureKind::AlreadyJoined,
                message: format!(
                    "this node is a member of network {:?} already (controller {}); it rejoins by \
                     itself after a restart, and a node belongs to one network. To join another, \
                     leave this one first with `meshd leave`",
                    m.network, m.controller
                ),
            });
        }
        if self.joining.is_some() {
            return Err(JoinFailure {
                kind: JoinFailureKind::Refused,
                message: "a join is in progress already; wait for it to finish".to_string(),
            });
        }
        let parsed = JoinToken::parse(token).map_err(|e| JoinFailure {
            kind: JoinFailureKind::Malformed,
            message: e.to_string(),
        })?;
        self.joining = Some(Joining {
            token: Zeroizing::new(token.trim().to_string()),
            controller_key: *parsed.controller_key(),
            controller,
            name: name.to_string(),
            next_send: now,
            deadline: now + JOIN_TIMEOUT,
        });
        self.handle_timeout(now);
        Ok(())
    }

    /// Gives up the join in progress, if any, without an answer (its caller went away).
    pub fn abandon_join(&mut self) {
        self.joining = None;
    }

    /// Asks the controller to remove this node from its network. The answer comes as
    /// [`Output::LeaveDone`], at the latest after [`JOIN_TIMEOUT`]; on success the membership is
    /// forgotten as after any removal.
    pub fn leave(&mut self, now: Instant) -> Result<(), String> {
        if self.membership.is_none() {
            return Err("this node is not a member of a network".to_string());
        }
        if self.leaving.is_some() {
            return Err("leaving is in progress already; wait for it to finish".to_string());
        }
        self.leaving = Some(Leaving {
            next_send: now,
            deadline: now + JOIN_TIMEOUT,
        });
        self.handle_timeout(now);
        Ok(())
    }

    /// A control message sealed by `sender`. Returns whether it was acted on (the shell then records
    /// its counter); messages from anyone but the controller are not.
    pub fn handle_message(&mut self, now: Instant, sender: &PublicKey, body: Body) -> bool {
        if let Some(j) = &self.joining
            && sender == &j.controller_key
        {
            match body {
                Body::Joined(msg) => {
                    self.on_joined(now, msg);
                    return true;
                }
                Body::JoinRefused(msg) => {
                    self.joining = None;
                    self.outputs.push_back(Output::JoinDone(Err(refusal(msg))));
                    return true;
                }
                _ => {}
            }
        }
        let Some(m) = &self.membership else { return false };
        if sender.as_bytes() != &m.controller_key {
            return false;
        }
        let network = m.network.clone();
        self.last_heard = Some(now);
        match body {
            Body::MapPage(page) => {
                match self.assembler.add(&network, self.map_version(), page) {
                    PageOutcome::Complete(map) => self.on_map(map),
                    PageOutcome::Pending => {
                        // Pages are pushed back to back; if some are lost, ask again soon.
                        self.next_poll = Some(now + PAGE_RETRY);
                    }
                    PageOutcome::Ignored => {}
                    PageOutcome::Corrupt(e) => {
                        tracing::warn!("controller sent a map that does not decode: {e}");
                    }
                }
                true
            }
            Body::MapCurrent { network: n, .. } if n == network => {
                self.standing = Standing::Authorized;
                if !self.authorized {
                    self.authorized = true;
                    self.publish_peers();
                }
                true
            }
            Body::NotAuthorized {
                network: n,
                member: true,
            } if n == network => {
                if self.authorized || self.map.is_some() {
                    tracing::warn!(
                        "the controller says this node is not authorized in network {network:?}; it \
                         keeps asking"
                    );
                }
                self.standing = Standing::Deauthorized;
                self.authorized = false;
                self.map = None;
                self.publish_peers();
                self.persist();
                true
            }
            Body::NotAuthorized {
                network: n,
                member: false,
            } if n == network => {
                // A node that asked to leave is out either way: the controller has no record of it.
                if self.leaving.is_some() {
                    tracing::warn!(
                        "the controller does not know this node in network {network:?}; leaving here"
                    );
                    self.forget_membership(&network);
                    return true;
                }
                // Not a removal: a controller that lost its database, or a foreign one, says this of
                // everyone. Keep working on the last map.
                if self.standing != Standing::Disowned {
                    tracing::error!(
                        "the controller says it does not know this node in network {network:?}, but \
                         it has not removed it: its database may be lost or replaced. Keeping the \
                         peers and the last map, and asking again; if the node was meant to leave, \
                         `meshd leave`"
                    );
                }
                self.standing = Standing::Disowned;
                true
            }
            Body::Removed {
                network: n,
                network_id,
            } => {
                self.on_removed(&n, network_id);
                true
            }
            Body::RelayToken { network: n, token } if n == network => {
                if self.relay_token != Some(token) {
                    self.relay_token = Some(token);
                    self.outputs.push_back(Output::RelayToken(token));
                }
                true
            }
            // Joined/JoinRefused outside a join (late duplicates) and messages about other networks.
            _ => false,
        }
    }

    fn on_removed(&mut self, network: &str, id: NetworkId) {
        let Some(m) = &self.membership else { return };
        if !m.is_network(network, id) {
            tracing::warn!(
                "the controller says this node was removed from network {network:?} ({id}), which is \
                 not the network it joined ({:?}, {}); ignored",
                m.network,
                m.network_id
                    .map_or_else(|| "no id".to_string(), |i| i.to_string())
            );
            return;
        }
        tracing::warn!(
            "removed from network {network:?} by its controller; the addresses and peers are gone, \
             and `meshd join` with a new token joins again"
        );
        self.forget_membership(network);
    }

    /// Ends the membership here: addresses, peers, saved files, and a pending leave answered.
    fn forget_membership(&mut self, network: &str) {
        let Some(m) = &self.membership else { return };
        self.outputs.push_back(Output::Interface {
            addresses: Vec::new(),
            mtu: m.mtu,
        });
        self.outputs.push_back(Output::Peers(Vec::new()));
        self.outputs.push_back(Output::Forget);
        if self.leaving.take().is_some() {
            self.outputs.push_back(Output::LeaveDone(Ok(network.to_string())));
        }
        self.membership = None;
        self.map = None;
        self.authorized = false;
        self.standing = Standing::Removed {
            network: network.to_string(),
        };
        self.next_poll = None;
        self.assembler = Assembler::default();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(l) = &mut self.leaving {
            if now >= l.deadline {
                self.leaving = None;
                let controller = self.membership.as_ref().map(|m| m.controller);
                self.outputs.push_back(Output::LeaveDone(Err(format!(
                    "no answer from the controller{} within {} s, so this node is still a member; \
                     try again when the controller is reachable, or ask its operator to `meshd \
                     member remove` it",
                    controller.map(|c| format!(" at {c}")).unwrap_or_default(),
                    JOIN_TIMEOUT.as_secs()
                ))));
            } else if now >= l.next_send
                && let Some(m) = &self.membership
            {
                l.next_send = now + JOIN_RETRY;
                self.outputs.push_back(Output::Send {
                    to: m.controller,
                    key: PublicKey::from_bytes(m.controller_key),
                    body: Body::Leave {
                        network: m.network.clone(),
                        pad: vec![0; LEAVE_PAD],
                    },
                });
            }
        }
        if let Some(j) = &mut self.joining {
            if now >= j.deadline {
                let controller = j.controller;
                self.joining = None;
                self.outputs.push_back(Output::JoinDone(Err(JoinFailure {
                    kind: JoinFailureKind::Unreachable,
                    message: format!(
                        "no answer from the controller at {controller} within {} s; check the address \
                         and port (the controller's listen_port), and that UDP reaches it",
                        JOIN_TIMEOUT.as_secs()
                    ),
                })));
            } else if now >= j.next_send {
                j.next_send = now + JOIN_RETRY;
                let body = Body::Join(JoinMsg {
                    token: j.token.to_string(),
                    name: j.name.clone(),
                    local: self.local.clone(),
                });
                self.outputs.push_back(Output::Send {
                    to: j.controller,
                    key: j.controller_key,
                    body,
                });
            }
        }
        if let (Some(at), Some(m)) = (self.next_poll, &self.membership)
            && now >= at
        {
            self.next_poll = Some(now + POLL_INTERVAL);
            let body = Body::Poll(PollMsg {
                network: m.network.clone(),
                have_version: self.map_version(),
                local: self.local.clone(),
            });
            self.outputs.push_back(Output::Send {
                to: m.controller,
                key: PublicKey::from_bytes(m.controller_key),
                body,
            });
        }
    }

    fn on_joined(&mut self, now: Instant, msg: JoinedMsg) {
        let Some(j) = self.joining.take() else { return };
        let membership = Membership {
            network: msg.network,
            name: msg.name,
            controller_key: *j.controller_key.as_bytes(),
            controller: j.controller,
            ipv4: msg.ipv4,
            ipv6: msg.ipv6,
            ipv4_block: msg.ipv4_block,
            ipv6_block: msg.ipv6_block,
            mtu: msg.mtu,
            network_id: Some(msg.network_id),
        };
        let response = JoinResponse {
            network: membership.network.clone(),
            name: membership.name.clone(),
            ipv4: membership.ipv4,
            ipv6: membership.ipv6,
            controller_key: base64_key(&membership.controller_key),
            controller: membership.controller,
        };
        self.outputs.push_back(Output::Interface {
            addresses: membership.interface_addresses(),
            mtu: membership.mtu,
        });
        self.membership = Some(membership);
        self.map = None;
        self.authorized = true;
        self.standing = Standing::Authorized;
        self.last_heard = Some(now);
        self.persist();
        self.publish_peers();
        self.outputs.push_back(Output::JoinDone(Ok(response)));
        // The controller pushes the map after the welcome; poll soon in case it was lost.
        self.next_poll = Some(now + PAGE_RETRY);
    }

    fn on_map(&mut self, map: NetworkMap) {
        let mtu_changed = self.membership.as_ref().is_some_and(|m| m.mtu != map.mtu);
        if let Some(m) = &mut self.membership
            && mtu_changed
        {
            m.mtu = map.mtu;
            self.outputs.push_back(Output::Interface {
                addresses: m.interface_addresses(),
                mtu: m.mtu,
            });
        }
        self.map = Some(map);
        self.authorized = true;
        self.standing = Standing::Authorized;
        self.publish_peers();
        self.persist();
    }

    fn persist(&mut self) {
        if let Some(m) = &self.membership {
            self.outputs.push_back(Output::Persist {
                membership: m.clone(),
                map: self.map.clone(),
            });
        }
    }

    /// A member not (or no longer) authorized has no peers at all, not even the controller's node: the
    /// control channel needs no WireGuard peer, and a session kept with a controller that dropped its
    /// side would carry nothing once the member is authorized again, until a handshake timer fired.
    fn publish_peers(&mut self) {
        if let Some(m) = &self.membership {
            let peers = if self.authorized {
                peer_specs(&self.own_key, m, self.map.as_ref())
            } else {
                Vec::new()
            };
            self.outputs.push_back(Output::Peers(peers));
        }
    }
}

/// The peers a member should have: the controller's node always (the control channel's and the
/// relay's address), and with a map every other authorized member, each with its mesh addresses as
/// allowed IPs, a direct address when it has a reachable one, and the relay.
pub fn peer_specs(own: &PublicKey, membership: &Membership, map: Option<&NetworkMap>) -> Vec<PeerSpec> {
    let controller_key = PublicKey::from_bytes(membership.controller_key);
    let relay = membership.controller;
    let own_reachable = map
        .and_then(|m| m.peer(own.as_bytes()))
        .is_some_and(|p| p.reachable);
    let egress = map.and_then(|m| m.egress_for(own.as_bytes())).map(|p| p.key);
    // An ingress keeps a session with every member (see the controller's `publish_own`).
    let own_ingress = map
        .and_then(|m| m.peer(own.as_bytes()))
        .is_some_and(|p| p.ingress);
    let mut specs = Vec::with_capacity(map.map_or(1, |m| m.peers.len()));
    let mut controller_listed = false;
    for p in map.into_iter().flat_map(|m| &m.peers) {
        if &p.key == own.as_bytes() {
            continue;
        }
        let mut allowed_ips = host_prefixes(p.ipv4, p.ipv6);
        // The egress ingress carries this node's Internet traffic both ways: whatever the kernel's
        // source rule hands the interface goes to it, and what it forwards from the Internet may
        // come from anywhere. It is kept warm so that inbound traffic finds a session, and a NAT
        // mapping, ready.
        let is_egress = egress == Some(p.key);
        if is_egress {
            allowed_ips.extend(default_routes(map.is_some_and(|m| m.ipv6_block.is_some())));
        }
        let key = PublicKey::from_bytes(p.key);
        if p.controller || key == controller_key {
            controller_listed = true;
            specs.push(PeerSpec {
                key,
                allowed_ips,
                direct: Some(relay),
                relay: None,
                persistent_keepalive: NAT_KEEPALIVE,
            });
            continue;
        }
        let direct = p.endpoint.filter(|_| p.reachable);
        specs.push(PeerSpec {
            key,
            allowed_ips,
            direct,
            relay: Some(relay),
            persistent_keepalive: if own_ingress || is_egress || (direct.is_some() && !own_reachable) {
                NAT_KEEPALIVE
            } else {
                0
            },
        });
    }
    if !controller_listed {
        specs.push(PeerSpec {
            key: controller_key,
            allowed_ips: Vec::new(),
            direct: Some(relay),
            relay: None,
            persistent_keepalive: NAT_KEEPALIVE,
        });
    }
    specs
}

fn host_prefixes(v4: Ipv4Addr, v6: Option<Ipv6Addr>) -> Vec<IpPrefix> {
    let mut out = vec![IpPrefix::V4(Ipv4Prefix::from(v4))];
    if let Some(v6) = v6 {
        out.push(IpPrefix::V6(Ipv6Prefix::from(v6)));
    }
    out
}

fn refusal(msg: RefusedMsg) -> JoinFailure {
    let kind = match msg.kind {
        RefusalKind::Malformed => JoinFailureKind::Malformed,
        RefusalKind::Unknown => JoinFailureKind::Unknown,
        RefusalKind::Expired => JoinFailureKind::Expired,
        RefusalKind::Revoked => JoinFailureKind::Revoked,
        RefusalKind::UsedUp => JoinFailureKind::UsedUp,
        RefusalKind::Other => JoinFailureKind::Refused,
    };
    // A controller shortens its message to fit the size of the join it answers (a refusal may go
    // to a forged source and must not be larger than what asked for it); the kind says it all.
    let message = if !msg.message.is_empty() {
        msg.message
    } else {
        match msg.kind {
            RefusalKind::Malformed => "the controller could not read the join token; copy it again in full",
            RefusalKind::Unknown => {
                "the controller does not know the token; create a new one with `meshd token create`"
            }
            RefusalKind::Expired => "the token expired; create a new one with `meshd token create`",
            RefusalKind::Revoked => "the token was revoked; create a new one with `meshd token create`",
            RefusalKind::UsedUp => "the token has no uses left; create a new one with `meshd token create`",
            RefusalKind::Other => "the controller refused the join; its log says why",
        }
        .to_string()
    };
    JoinFailure { kind, message }
}

pub fn base64_key(key: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

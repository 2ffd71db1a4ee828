//! The controller at work: answers nodes' joins and polls, builds each network's map, pushes it to
//! every member when it changes, and derives from the same state the controller's own node's peers,
//! addresses and relay table.
//!
//! Driven like the node core (inputs with `now`/`wall`, outputs drained with `poll_output`), but not
//! pure: it reads and writes the [`Store`]. The store is the truth; this keeps only what is learned
//! on the wire (where members were seen, whether that address is their own) and the maps made from
//! both.
//!
//! A map changes when a member joins, is authorized, deauthorized or removed, or is seen at a new
//! address; the admin API's changes arrive through [`ControllerService::refresh`]. A new map gets a
//! version from the wall clock (milliseconds, and above the previous one) so versions keep rising
//! across restarts, and goes to every authorized member the controller knows an address for. A
//! member that lost its place is told so and every other member's map no longer lists it, so its
//! handshakes are refused everywhere: a deauthorized member with [`Body::NotAuthorized`], a removed
//! one with [`Body::Removed`], which only a key the store has a removal record for ever gets. A key
//! the controller knows nothing of gets `NotAuthorized { member: false }`, which a node does not take
//! for a removal: a controller that lost its database must not empty its members' maps.
//!
//! One network whose stored row cannot be read is logged and left out (or kept as it was last
//! loaded); the others are served as usual.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshd_crypto::PublicKey;
use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};

use super::store::{Member, Network, Removal, Sighting, Store, StoreError};
use meshd_core::address::canonical;
use meshd_core::log_limit::{LogLimiter, left_out};
use meshd_core::map::{MapPeer, NetworkMap, paginate};
use meshd_core::mesh::peer_rules::{NAT_KEEPALIVE, default_routes};
use meshd_core::mesh::relay::{RelayTable, Rotation, TokenIssuer};
use meshd_core::message::{
    Body, JoinMsg, JoinedMsg, LocalInfo, MapPageMsg, NetworkId, PollMsg, RefusalKind, RefusedMsg, fit_reply,
};
use meshd_core::node::PeerSpec;
use meshd_core::token::TokenError;

/// How often sightings (last seen, last endpoint) are written to the database: one transaction per
/// network for all members seen meanwhile.
pub const SIGHTING_FLUSH: Duration = Duration::from_secs(10);
/// How long a map change caused by members' addresses waits for more before it is pushed: when a
/// thousand nodes poll a restarted controller within a few seconds, they cause a few pushes, not a
/// thousand.
pub const MAP_DEBOUNCE: Duration = Duration::from_millis(200);
/// How far a member's clock may be behind the controller's for a `Leave` right after its join.
pub const LEAVE_CLOCK_SLACK: Duration = Duration::from_secs(2);
/// How soon a member seen at a new address is written.
pub const SIGHTING_FLUSH_MOVED: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub enum Output {
    /// Seal `body` to `key` and send it to `to`.
    Send {
        to: SocketAddr,
        key: PublicKey,
        body: Body,
    },
    /// The controller's own node should have exactly these peers.
    OwnPeers(Vec<PeerSpec>),
    /// The controller's own node's addresses (with the block's prefix length) and MTU (0 when it is
    /// in no network: leave the MTU as it is).
    OwnInterface { addresses: Vec<(IpAddr, u8)>, mtu: u16 },
    /// The relay forwards by this table from now on.
    Relay(RelayTable),
    /// An answer to a sender not authenticated as a member was not sent: it would have been larger
    /// than the datagram that asked for it (which may come from a forged source).
    Withheld { to: SocketAddr },
}

/// Where a member was last heard from in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    endpoint: SocketAddr,
    reachable: bool,
    at: Instant,
}

struct NetState {
    /// A small number naming the network in the relay table.
    index: u32,
    network: Network,
    members: Vec<Member>,
    map: NetworkMap,
    pages: Vec<MapPageMsg>,
}

/// How a control message arrived: from where, sealed by whom and when (the envelope's counter, the
/// sender's clock), in a datagram of how many bytes (an answer to a stranger is never larger).
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub from: SocketAddr,
    pub sender: &'a PublicKey,
    pub sent: SystemTime,
    pub len: usize,
}

pub struct ControllerService {
    store: Arc<Mutex<Store>>,
    own: PublicKey,
    own_name: String,
    nets: BTreeMap<String, NetState>,
    /// Keys removed from a network (by name) and not joined again, with the network's id.
    removed: HashMap<(String, PublicKey), NetworkId>,
    seen: HashMap<(String, PublicKey), Seen>,
    sightings: HashMap<String, Vec<Sighting>>,
    next_flush: Option<Instant>,
    /// Networks whose map must be rebuilt at `rebuild_at` (members seen at new addresses).
    dirty: std::collections::BTreeSet<String>,
    rebuild_at: Option<Instant>,
    last_version: u64,
    next_index: u32,
    /// Members' relay tokens: derived from a secret drawn at start, rotated every
    /// [`meshd_core::mesh::relay::TOKEN_ROTATION`].
    tokens: TokenIssuer,
    rotation: Option<Rotation>,
    outputs: VecDeque<Output>,
    /// Refused joins are logged, but strangers choose how many there are.
    refusal_log: LogLimiter,
}

impl std::fmt::Debug for ControllerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerService")
            .field("own", &self.own)
            .field("networks", &self.nets.len())
            .finish_non_exhaustive()
    }
}

impl ControllerService {
    /// A controller whose own node is `own` (named `own_name` in every network that reserves it an
    /// address), whose relay derives members' tokens from `relay_secret` (random, drawn at start).
    /// Call [`refresh`](Self::refresh) to load the store.
    pub fn new(store: Arc<Mutex<Store>>, own: PublicKey, own_name: String, relay_secret: [u8; 32]) -> Self {
        ControllerService {
            store,
            own,
            own_name,
            nets: BTreeMap::new(),
            removed: HashMap::new(),
            seen: HashMap::new(),
            sightings: HashMap::new(),
            next_flush: None,
            dirty: std::collections::BTreeSet::new(),
            rebuild_at: None,
            last_version: 0,
            next_index: 0,
            tokens: TokenIssuer::new(relay_secret),
            rotation: None,
            outputs: VecDeque::new(),
            refusal_log: LogLimiter::default(),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let rotate = self.rotation.map(|r| r.next());
        [self.next_flush, self.rebuild_at, rotate]
            .into_iter()
            .flatten()
            .min()
    }

    /// The map version of `network` in use.
    pub fn map_version(&self, network: &str) -> Option<u64> {
        self.nets.get(network).map(|n| n.map.version)
    }

    /// The maps in use, by network.
    pub fn maps(&self) -> impl Iterator<Item = &NetworkMap> {
        self.nets.values().map(|n| &n.map)
    }

    /// Reloads networks and members from the store (after the admin API changed them, and at start),
    /// and pushes every map that changed.
    ///
    /// A network that cannot be loaded is logged and keeps the state it was last loaded with (or is
    /// left out), so one damaged row does not stop the others.
    pub fn refresh(&mut self, now: Instant, wall: SystemTime) -> Result<(), StoreError> {
        self.rotation.get_or_insert(Rotation::new(now));
        let (names, loaded, removals) = {
            let mut store = lock(&self.store);
            let names = store.network_names()?;
            let mut loaded = Vec::new();
            for name in &names {
                let network = match store.network(name) {
                    Ok(network) => network,
                    Err(e) => {
                        tracing::error!("network {name:?} is not served: {e}");
                        continue;
                    }
                };
                if network.plan.controller_v4().is_some()
                    && let Err(e) = store.add_controller_member(name, &self.own, &self.own_name, wall)
                {
                    tracing::warn!("the controller's node cannot take its address in {name:?}: {e}");
                }
                match store.members(name) {
                    Ok(members) => loaded.push((network, members)),
                    Err(e) => tracing::error!("network {name:?} is not served: {e}"),
                }
            }
            let removals = store.removals().unwrap_or_else(|e| {
                tracing::error!("cannot read the removal records, keeping those loaded before: {e}");
                Vec::new()
            });
            (names, loaded, removals)
        };
        if removals.is_empty() && !self.removed.is_empty() {
            // Either none are left (every removed key joined again) or they could not be read; the
            // old ones only ever make a removed key hear `Removed`, which is still true.
        } else {
            self.removed = removals
                .into_iter()
                .map(
                    |Removal {
                         network,
                         network_id,
                         public_key,
                         ..
                     }| ((network, public_key), network_id),
                )
                .collect();
        }
        // Networks deleted since: their members hear that they were removed.
        let deleted: Vec<String> = self
            .nets
            .keys()
            .filter(|name| !names.contains(name))
            .cloned()
            .collect();
        for name in deleted {
            let own = self.own;
            if let Some(net) = self.nets.remove(&name) {
                for m in net.members.iter().filter(|m| m.public_key != own) {
                    if let Some(to) = self.endpoint_of(&name, m) {
                        self.tell_lost(to, m.public_key, &name, false);
                    }
                }
            }
        }
        for (network, members) in loaded {
            self.update_network(now, wall, network, members);
        }
        self.publish_own();
        Ok(())
    }

    /// Whether `key` is a member of any network (authorized or not): its envelopes are opened
    /// without the limits strangers' pass (`meshd_core::admission`).
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.nets
            .values()
            .any(|n| n.members.iter().any(|m| &m.public_key == key))
    }

    /// A control message that arrived as `received` says. Returns whether the sender is a member the
    /// message was acted on for (the shell then records its counter; otherwise it remembers the
    /// message as refused, so that its replays are not answered again).
    ///
    /// An answer to a sender this does not act on (a refused join, a poll from a key that is not a
    /// member) may be going to a forged source address: it is never larger than `received.len`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        wall: SystemTime,
        received: Received<'_>,
        body: Body,
    ) -> bool {
        let Received { sender, len, .. } = received;
        let from = canonical(received.from);
        if sender == &self.own {
            return false;
        }
        match body {
            Body::Join(msg) => self.on_join(now, wall, from, sender, msg, len),
            Body::Poll(msg) => self.on_poll(now, wall, from, sender, msg, len),
            Body::Leave { network, .. } => {
                let received = Received { from, ..received };
                self.on_leave(now, wall, received, network)
            }
            _ => false,
        }
    }

    /// Pushes the maps that members' new addresses changed, and writes the sightings gathered since
    /// the last flush.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime) {
        // New tokens for the new epoch; members get theirs with their next poll's answer.
        if self.rotation.as_mut().is_some_and(|r| r.advance(now)) {
            self.publish_own();
        }
        if self.rebuild_at.is_some_and(|at| now >= at) {
            self.rebuild_at = None;
            for network in std::mem::take(&mut self.dirty) {
                self.rebuild(now, wall, &network);
            }
            self.publish_own();
        }
        if self.next_flush.is_some_and(|at| now >= at) {
            self.next_flush = None;
            self.flush_sightings();
        }
    }

    /// Writes pending sightings now (at shutdown).
    pub fn flush_sightings(&mut self) {
        let pending = std::mem::take(&mut self.sightings);
        if pending.is_empty() {
            return;
        }
        let mut store = lock(&self.store);
        for (network, sightings) in pending {
            if let Err(e) = store.record_seen(&network, &sightings) {
                tracing::warn!("cannot record where members of {network:?} were seen: {e}");
            }
        }
    }

    fn on_join(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        sender: &PublicKey,
        msg: JoinMsg,
        request_len: usize,
    ) -> bool {
        let name = if msg.name.trim().is_empty() {
            format!("node-{}", sender.fingerprint())
        } else {
            msg.name.trim().to_string()
        };
        let joined = lock(&self.store).join(&msg.token, sender, &name, wall);
        let joined = match joined {
            Ok(joined) => joined,
            Err(e) => {
                if let Some(skipped) = self.refusal_log.check(now) {
                    tracing::info!(
                        "join by {} from {from} refused: {e}{}",
                        sender.fingerprint(),
                        left_out(skipped)
                    );
                }
                let kind = match &e {
                    StoreError::Token(TokenError::Malformed) => RefusalKind::Malformed,
                    StoreError::Token(TokenError::Unknown) => RefusalKind::Unknown,
                    StoreError::Token(TokenError::Expired { .. }) => RefusalKind::Expired,
                    StoreError::Token(TokenError::Revoked) => RefusalKind::Revoked,
                    StoreError::Token(TokenError::UsedUp) => RefusalKind::UsedUp,
                    _ => RefusalKind::Other,
                };
                self.send_within(
                    from,
                    *sender,
                    Body::JoinRefused(RefusedMsg {
                        kind,
                        message: e.to_string(),
                    }),
                    request_len,
                );
                // Not recorded: anyone can make keys, and a refused sender must not take a slot.
                return false;
            }
        };
        let network = joined.network.name.clone();
        if joined.new {
            tracing::info!(
                "{} joined {network:?} as {:?} with {}",
                sender.fingerprint(),
                joined.member.name,
                joined.member.ipv4
            );
        }
        self.note_seen(now, wall, &network, sender, from, &msg.local);
        self.send(
            from,
            *sender,
            Body::Joined(JoinedMsg {
                network: network.clone(),
                network_id: joined.network.id,
                name: joined.member.name.clone(),
                ipv4: joined.member.ipv4,
                ipv6: joined.member.ipv6,
                ipv4_block: (joined.network.ipv4().addr(), joined.network.ipv4().len()),
                ipv6_block: joined.network.ipv6().map(|p| (p.addr(), p.len())),
                mtu: joined.network.mtu,
            }),
        );
        // The member set changed (or, for a repeat, maybe only the address): rebuild and push, which
        // reaches the new member too since it was just seen.
        let version = self.map_version(&network);
        if let Err(e) = self.refresh(now, wall) {
            tracing::warn!("cannot reload the controller's state after a join: {e}");
        }
        if !joined.member.authorized {
            self.not_authorized(from, *sender, network, true);
            return true;
        }
        if self.map_version(&network) == version {
            // A repeat join with nothing new changes no map, so nothing was pushed: send it.
            self.send_map(from, *sender, &network);
        }
        self.send_relay_token(now, from, *sender, network);
        true
    }

    fn on_poll(
        &mut self,
        now: Instant,
        wall: SystemTime,
        from: SocketAddr,
        sender: &PublicKey,
        msg: PollMsg,
        request_len: usize,
    ) -> bool {
        let Some(member) = self
            .nets
            .get(&msg.network)
            .and_then(|net| net.members.iter().find(|m| &m.public_key == sender))
        else {
            return self.not_a_member(from, sender, msg.network, request_len);
        };
        let authorized = member.authorized;
        let moved = self.note_seen(now, wall, &msg.network, sender, from, &msg.local);
        if !authorized {
            self.not_authorized(from, *sender, msg.network, true);
            return true;
        }
        if moved {
            // Its address may be in everyone's map, and is in the relay table: rebuild soon, together
            // with whatever else moves meanwhile. The push reaches this member too.
            self.dirty.insert(msg.network.clone());
            let due = now + MAP_DEBOUNCE;
            self.rebuild_at = Some(self.rebuild_at.map_or(due, |at| at.min(due)));
        }
        let Some(net) = self.nets.get(&msg.network) else {
            return true;
        };
        if msg.have_version < net.map.version {
            self.send_map(from, *sender, &msg.network);
        } else {
            let version = net.map.version;
            self.send(
                from,
                *sender,
                Body::MapCurrent {
                    network: msg.network.clone(),
                    version,
                },
            );
        }
        self.send_relay_token(now, from, *sender, msg.network);
        true
    }

    /// A member asks to be removed: it is, and hears `Removed` (again, if its first answer was lost).
    ///
    /// A request sent before the member joined is not acted on: it is a `Leave` of an earlier
    /// membership, replayed (the replay guard's counters do not survive a controller restart, and a
    /// sealed message stays fresh for [`meshd_core::channel::FRESHNESS`]).
    fn on_leave(&mut self, now: Instant, wall: SystemTime, received: Received<'_>, network: String) -> bool {
        let Received {
            from,
            sender,
            sent,
            len,
        } = received;
        let member = self
            .nets
            .get(&network)
            .and_then(|net| net.members.iter().find(|m| &m.public_key == sender));
        if let Some(m) = member
            && sent + LEAVE_CLOCK_SLACK < m.created
        {
            tracing::info!(
                "a request of {} to leave {network:?}, sent before it joined, ignored (a replay?)",
                sender.fingerprint()
            );
            return false;
        }
        if member.is_some() {
            let removed = lock(&self.store).remove_member(&network, sender, wall);
            match removed {
                Ok(m) => tracing::info!("{:?} ({}) left network {network:?}", m.name, sender.fingerprint()),
                Err(e) => {
                    tracing::warn!("{} cannot leave network {network:?}: {e}", sender.fingerprint());
                    return false;
                }
            }
            if let Err(e) = self.refresh(now, wall) {
                tracing::warn!("cannot reload the controller's state after a member left: {e}");
            }
        }
        self.not_a_member(from, sender, network, len)
    }

    /// Answers a key that is not a member of `network`: `Removed` if the store recorded its removal,
    /// else "not a member", which the node does not act on. Returns whether the sender is known.
    /// "Not a member" is no larger than `limit` bytes sealed: the key may be anyone's, and `from` a
    /// forged source.
    fn not_a_member(&mut self, from: SocketAddr, sender: &PublicKey, network: String, limit: usize) -> bool {
        match self.removed.get(&(network.clone(), *sender)) {
            // Not a stranger: the message was sealed by the removed key, and acting on it records
            // its counter, so a replay draws nothing.
            Some(&network_id) => {
                self.send(from, *sender, Body::Removed { network, network_id });
                true
            }
            None => {
                let body = Body::NotAuthorized {
                    network,
                    member: false,
                };
                self.send_within(from, *sender, body, limit);
                false
            }
        }
    }

    /// Tells a member that lost its place in `network`: deauthorized (`still_member`), removed (a
    /// removal record), or unknown.
    fn tell_lost(&mut self, to: SocketAddr, key: PublicKey, network: &str, still_member: bool) {
        if still_member {
            self.not_authorized(to, key, network.to_string(), true);
        } else {
            // Pushed to the address the member was last heard from, not an answer: no limit.
            self.not_a_member(to, &key, network.to_string(), usize::MAX);
        }
    }

    /// The member's relay token for the current epoch, sealed to it.
    fn send_relay_token(&mut self, now: Instant, to: SocketAddr, key: PublicKey, network: String) {
        let epoch = self.rotation.get_or_insert(Rotation::new(now)).epoch;
        let token = self.tokens.token(key.as_bytes(), epoch);
        self.send(to, key, Body::RelayToken { network, token });
    }

    /// Records where a member was heard from. Returns whether that changed what the map says.
    fn note_seen(
        &mut self,
        now: Instant,
        wall: SystemTime,
        network: &str,
        key: &PublicKey,
        from: SocketAddr,
        local: &LocalInfo,
    ) -> bool {
        let reachable = from.port() == local.listen_port
            && local.local_addrs.iter().any(|a| canonical_ip(*a) == from.ip());
        let seen = Seen {
            endpoint: from,
            reachable,
            at: now,
        };
        let previous = self.seen.insert((network.to_string(), *key), seen);
        let moved = previous.is_none_or(|p| p.endpoint != from || p.reachable != reachable);
        let recorded = self.sightings.entry(network.to_string()).or_default();
        recorded.retain(|s| &s.public_key != key);
        recorded.push(Sighting {
            public_key: *key,
            at: wall,
            endpoint: Some(from),
        });
        // A new address is worth writing soon (`meshd member list` shows it); the rest can wait.
        let due = now
            + if moved {
                SIGHTING_FLUSH_MOVED
            } else {
                SIGHTING_FLUSH
            };
        self.next_flush = Some(self.next_flush.map_or(due, |at| at.min(due)));
        moved
    }

    fn update_network(&mut self, now: Instant, wall: SystemTime, network: Network, members: Vec<Member>) {
        let name = network.name.clone();
        let previous = self.nets.remove(&name);
        let index = match &previous {
            Some(p) => p.index,
            None => {
                self.next_index += 1;
                self.next_index
            }
        };
        // Members that lost their place since the last map: tell them. A deauthorized member that is
        // then removed hears it too.
        if let Some(prev) = &previous {
            for old in &prev.members {
                let still = members.iter().find(|m| m.public_key == old.public_key);
                let lost = match still {
                    Some(m) => old.authorized && !m.authorized,
                    None => true,
                };
                if !lost || old.public_key == self.own {
                    continue;
                }
                if let Some(to) = self.endpoint_of(&name, old) {
                    self.tell_lost(to, old.public_key, &name, still.is_some());
                }
            }
        }
        // Until the rebuild below: a map of nobody, replaced before anyone sees it.
        let placeholder = build_map(&network, &[], &self.own, |_| None);
        let pages = previous.as_ref().map(|p| p.pages.clone()).unwrap_or_default();
        self.nets.insert(
            name.clone(),
            NetState {
                index,
                network,
                members,
                map: placeholder,
                pages,
            },
        );
        let old_map = previous.map(|p| p.map);
        self.rebuild_if_changed(now, wall, &name, old_map);
    }

    fn rebuild(&mut self, now: Instant, wall: SystemTime, network: &str) {
        self.rebuild_if_changed(now, wall, network, None);
    }

    /// Recomputes `network`'s map; if it differs from `old` (ignoring the version), gives it a new
    /// version and pushes it to every authorized member with an address.
    fn rebuild_if_changed(
        &mut self,
        _now: Instant,
        wall: SystemTime,
        network: &str,
        old: Option<NetworkMap>,
    ) {
        let Some(net) = self.nets.get(network) else { return };
        let mut map = build_map(&net.network, &net.members, &self.own, |key| {
            self.seen
                .get(&(network.to_string(), *key))
                .copied()
                .map(|s| (s.endpoint, s.reachable))
        });
        if let Some(old) = &old {
            map.version = old.version;
            if &map == old {
                if let Some(net) = self.nets.get_mut(network) {
                    net.map = map;
                }
                return;
            }
        }
        let wall_ms = u64::try_from(wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis())
            .unwrap_or(u64::MAX);
        let version = wall_ms.max(self.last_version + 1).max(map.version + 1);
        self.last_version = version;
        map.version = version;
        let encoded = map.encode();
        let pages = paginate(network, version, &encoded);
        let recipients: Vec<(SocketAddr, PublicKey)> = net
            .members
            .iter()
            .filter(|m| m.authorized && m.public_key != self.own)
            .filter_map(|m| self.endpoint_of(network, m).map(|to| (to, m.public_key)))
            .collect();
        for (to, key) in recipients {
            for page in &pages {
                self.send(to, key, Body::MapPage(page.clone()));
            }
        }
        tracing::debug!(
            "map of {network:?} is now version {version} ({} pages)",
            pages.len()
        );
        if let Some(net) = self.nets.get_mut(network) {
            net.map = map;
            net.pages = pages;
        }
    }

    /// Where to reach a member: where it was heard from in this run, else where it was last seen.
    fn endpoint_of(&self, network: &str, member: &Member) -> Option<SocketAddr> {
        self.seen
            .get(&(network.to_string(), member.public_key))
            .map(|s| s.endpoint)
            .or(member.last_endpoint)
    }

    /// The controller's own node: its peers (every authorized member of every network), addresses,
    /// and the relay table.
    fn publish_own(&mut self) {
        let mut specs: BTreeMap<PublicKey, PeerSpec> = BTreeMap::new();
        let mut addresses = Vec::new();
        let mut mtu: Option<u16> = None;
        let mut relay = RelayTable::default();
        // This epoch's tokens and the last one's: a member that has not polled since the rotation
        // still holds the old one.
        let epoch = self.rotation.map_or(0, |r| r.epoch);
        // Only one peer can hold the default routes; the first network with an ingress decides.
        let mut egress_taken = false;
        for (name, net) in &self.nets {
            let own_is_ingress = net.members.iter().any(|m| m.public_key == self.own && m.ingress);
            for m in &net.members {
                if m.public_key == self.own {
                    addresses.push((IpAddr::V4(m.ipv4), net.network.ipv4().len()));
                    if let (Some(v6), Some(block)) = (m.ipv6, net.network.ipv6()) {
                        addresses.push((IpAddr::V6(v6), block.len()));
                    }
                    mtu = Some(mtu.map_or(net.network.mtu, |x| x.min(net.network.mtu)));
                    continue;
                }
                if !m.authorized {
                    continue;
                }
                let endpoint = self.endpoint_of(name, m);
                if let Some(seen) = self.seen.get(&(name.clone(), m.public_key)) {
                    let key = m.public_key.as_bytes();
                    let tokens = [
                        self.tokens.token(key, epoch),
                        self.tokens.token(key, epoch.wrapping_sub(1)),
                    ];
                    relay.insert(*key, seen.endpoint, net.index, &tokens);
                }
                let spec = specs.entry(m.public_key).or_insert_with(|| PeerSpec {
                    key: m.public_key,
                    allowed_ips: Vec::new(),
                    direct: None,
                    relay: None,
                    persistent_keepalive: 0,
                });
                spec.direct = spec.direct.or(endpoint);
                spec.allowed_ips.push(IpPrefix::V4(Ipv4Prefix::from(m.ipv4)));
                if let Some(v6) = m.ipv6 {
                    spec.allowed_ips.push(IpPrefix::V6(Ipv6Prefix::from(v6)));
                }
                // An ingress keeps a session with every member: its health counts live sessions,
                // and inbound traffic should find one ready. After a restart it is the one that
                // must start them, since the members still hold their old ones.
                if own_is_ingress {
                    spec.persistent_keepalive = NAT_KEEPALIVE;
                }
                if m.ingress && !own_is_ingress && !egress_taken {
                    egress_taken = true;
                    spec.allowed_ips
                        .extend(default_routes(net.network.ipv6().is_some()));
                    spec.persistent_keepalive = NAT_KEEPALIVE;
                }
            }
        }
        self.outputs
            .push_back(Output::OwnPeers(specs.into_values().collect()));
        // In no network (the last one deleted): no addresses, and the MTU left as it is.
        self.outputs.push_back(Output::OwnInterface {
            addresses,
            mtu: mtu.unwrap_or(0),
        });
        self.outputs.push_back(Output::Relay(relay));
    }

    /// Sends every page of `network`'s map in use to one member.
    fn send_map(&mut self, to: SocketAddr, key: PublicKey, network: &str) {
        let pages = self
            .nets
            .get(network)
            .map(|n| n.pages.clone())
            .unwrap_or_default();
        for page in pages {
            self.send(to, key, Body::MapPage(page));
        }
    }

    /// Tells a key that it is not (`member: false`) or no longer authorized (`member: true`) in
    /// `network`.
    fn not_authorized(&mut self, to: SocketAddr, key: PublicKey, network: String, member: bool) {
        self.send(to, key, Body::NotAuthorized { network, member });
    }

    fn send(&mut self, to: SocketAddr, key: PublicKey, body: Body) {
        self.outputs.push_back(Output::Send { to, key, body });
    }

    /// Sends an answer to a sender not authenticated as a member, no larger than `limit` bytes
    /// sealed (the datagram it answers), shortened or withheld if need be.
    fn send_within(&mut self, to: SocketAddr, key: PublicKey, body: Body, limit: usize) {
        match fit_reply(body, limit) {
            Some(body) => self.send(to, key, body),
            None => self.outputs.push_back(Output::Withheld { to }),
        }
    }
}

/// A network's map: every authorized member, with the address it was seen at when that is its own
/// socket (`seen(key)`: endpoint and whether it is reachable there).
pub fn build_map(
    network: &Network,
    members: &[Member],
    controller: &PublicKey,
    seen: impl Fn(&PublicKey) -> Option<(SocketAddr, bool)>,
) -> NetworkMap {
    let peers = members
        .iter()
        .filter(|m| m.authorized)
        .map(|m| {
            let is_controller = &m.public_key == controller;
            // Only an address others can use goes in the map: one behind NAT changes with the NAT's
            // whims, and would make every node's map change with it.
            let (endpoint, reachable) = match seen(&m.public_key) {
                Some((e, true)) => (Some(e), true),
                _ => (None, false),
            };
            MapPeer {
                key: *m.public_key.as_bytes(),
                name: m.name.clone(),
                ipv4: m.ipv4,
                ipv6: m.ipv6,
                endpoint: if is_controller { None } else { endpoint },
                reachable: is_controller || reachable,
                controller: is_controller,
                ingress: m.ingress,
            }
        })
        .collect();
    NetworkMap {
        network: network.name.clone(),
        version: 0,
        mtu: network.mtu,
        ipv4_block: (network.ipv4().addr(), network.ipv4().len()),
        ipv6_block: network.ipv6().map(|p| (p.addr(), p.len())),
        peers,
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    canonical(SocketAddr::new(ip, 0)).ip()
}

/// The store's lock. A panic while holding it cannot leave the database half-written (SQLite's
/// transactions roll back), so a poisoned lock is still safe to use.
fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

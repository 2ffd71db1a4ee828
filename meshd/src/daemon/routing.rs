//! The kernel side of public addresses: the policy rules and routes a node or an ingress installs,
//! and the ingress's announcement, kept in step with the map and with the ingress's health.
//!
//! ```text
//!  node:     ip rule  fwmark M lookup main pref P-1        (the tunnel's own UDP never enters it)
//!            ip rule  from <node address> lookup T pref P
//!            ip route default dev mesh0 table T proto R    (then the egress peer: allowed IPs /0)
//!  ingress:  ip rule  from <block> iif mesh0 lookup E pref Pi
//!            ip route default via <upstream> table E proto R
//!            ip route <block> dev mesh0 table A proto R   (only while healthy: BIRD announces it)
//! ```
//!
//! Everything is applied by comparison with what is installed, on every change of the map and every
//! few seconds, so a restart (even after `kill -9`) finds its own rules and adds nothing twice; rules
//! of meshd's shapes, priorities and tables that the map no longer asks for (a killed run's, for an
//! address this node has lost since) are removed once the first map is known. A
//! clean stop withdraws the announcement first and then removes the rest. The announcement and the
//! table routes hang on the TUN device, so if meshd dies they go with it; only the rules stay, and
//! the next start finds them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};
use meshd_routing::bird;
use tokio::sync::{mpsc, watch};

use super::mesh_cmd::MeshCmd;
use crate::api::node::{IngressStatus, RoutingStatus};
use crate::config::{IngressConfig, RoutingConfig};
use meshd_core::ingress::announcer::{Announcer, Decision, Health, Upstream};
use meshd_core::map::NetworkMap;
use meshd_wg::sys::bird::BirdClient;
use meshd_wg::sys::clock;
use meshd_wg::sys::netlink::{Netlink, RouteSpec, RuleSpec};

/// How often health is looked at (and a withdrawal can happen at the latest after a failure).
const TICK: Duration = Duration::from_millis(500);
/// How often the installed rules and routes are checked against the kernel when nothing changed
/// (someone may have deleted one, or the interface went down and took its routes).
const RECHECK: Duration = Duration::from_secs(5);
/// A session is live while its keys may be used: WireGuard's REJECT_AFTER_TIME.
const LIVE_SESSION: Duration = Duration::from_secs(180);
/// The longest one look at BIRD may take.
const BIRD_TIMEOUT: Duration = Duration::from_secs(1);
/// The main table, for the tunnel's own marked packets.
const MAIN_TABLE: u32 = 254;

/// What the map says about this node, as far as the kernel's routing is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingView {
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub block_v4: Ipv4Prefix,
    pub block_v6: Option<Ipv6Prefix>,
    /// The controller marked this node an ingress.
    pub ingress: bool,
    /// Another member is the ingress this node sends its Internet traffic to.
    pub has_egress: bool,
}

impl RoutingView {
    /// The network's blocks: IPv4, then IPv6 if the network has one.
    fn blocks(&self) -> Vec<IpPrefix> {
        let mut blocks = vec![IpPrefix::V4(self.block_v4)];
        blocks.extend(self.block_v6.map(IpPrefix::V6));
        blocks
    }

    /// This node's view of `map`, if it is a member of it.
    pub fn of(map: &NetworkMap, own: &[u8; 32]) -> Option<RoutingView> {
        let me = map.peer(own)?;
        Some(RoutingView {
            ipv4: me.ipv4,
            ipv6: me.ipv6,
            block_v4: Ipv4Prefix::new(map.ipv4_block.0, map.ipv4_block.1).ok()?,
            block_v6: map.ipv6_block.and_then(|(a, l)| Ipv6Prefix::new(a, l).ok()),
            ingress: me.ingress,
            has_egress: map.egress_for(own).is_some(),
        })
    }
}

/// What `meshd status` shows of this task; written by it, read by the mesh task.
#[derive(Debug, Default)]
pub struct RoutingReport {
    pub routing: Option<RoutingStatus>,
    pub ingress: Option<IngressStatus>,
}

/// The rules and policy routes one view asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Policy {
    rules: Vec<RuleSpec>,
    routes: Vec<RouteSpec>,
}

pub struct RoutingTask {
    pub interface: String,
    pub routing: RoutingConfig,
    pub ingress: IngressConfig,
    pub control: mpsc::Sender<MeshCmd>,
    pub report: Arc<Mutex<RoutingReport>>,
}

impl RoutingTask {
    pub async fn run(self, mut view: watch::Receiver<Option<RoutingView>>, stop: impl Future<Output = ()>) {
        let netlink = match Netlink::connect() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("no policy routing or ingress announcement: {e}");
                return;
            }
        };
        let mut state = State {
            task: self,
            netlink,
            installed: Policy::default(),
            announcer: None,
            last_check: None,
            last_view: None,
            swept: false,
            ifindex: None,
        };
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                changed = view.changed() => if changed.is_err() { break },
                _ = tick.tick() => {}
            }
            let current = view.borrow_and_update().clone();
            state.step(current).await;
        }
        state.shut_down().await;
    }
}

struct State {
    task: RoutingTask,
    netlink: Netlink,
    installed: Policy,
    announcer: Option<Announcer>,
    last_check: Option<Instant>,
    last_view: Option<Option<RoutingView>>,
    /// Rules a previous run left behind (it was killed, and this node's address has changed since)
    /// have been looked for.
    swept: bool,
    /// The interface's index, once known.
    ifindex: Option<u32>,
}

impl State {
    async fn step(&mut self, view: Option<RoutingView>) {
        let now = clock::now();
        // The interface lives as long as the daemon, so its index is looked up until found, once.
        if self.ifindex.is_none() {
            self.ifindex = match self.netlink.link_index(&self.task.interface).await {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            };
        }
        let ifindex = self.ifindex;
        let due = self
            .last_check
            .is_none_or(|t| now.saturating_duration_since(t) >= RECHECK);
        if due || self.last_view.as_ref() != Some(&view) {
            self.last_check = Some(now);
            self.last_view = Some(view.clone());
            let wanted = self.policy(view.as_ref(), ifindex);
            // Only once the map is known: before it, everything would look stale.
            if !self.swept && view.is_some() && ifindex.is_some() {
                self.swept = true;
                self.sweep(&wanted).await;
            }
            self.apply_policy(wanted, view.as_ref()).await;
        }
        let role = view.as_ref().filter(|v| v.ingress && self.task.ingress.enabled);
        match role {
            Some(v) => self.ingress_step(now, v, ifindex).await,
            None => {
                if self.announcer.take().is_some() {
                    tracing::info!("no longer an ingress; withdrawing the announcement");
                    self.withdraw().await;
                }
                self.task.report.lock().map(|mut r| r.ingress = None).ok();
            }
        }
    }

    /// The rules and routes `view` asks for (none without an interface index yet).
    fn policy(&self, view: Option<&RoutingView>, ifindex: Option<u32>) -> Policy {
        let (Some(v), Some(ifindex)) = (view, ifindex) else {
            return Policy::default();
        };
        let r = &self.task.routing;
        let protocol = self.task.ingress.route_protocol;
        let mut policy = Policy::default();
        if v.has_egress && !v.ingress {
            let mut sources = vec![IpAddr::V4(v.ipv4)];
            sources.extend(v.ipv6.map(IpAddr::V6));
            for addr in sources {
                let any = any_of(addr);
                policy.rules.push(RuleSpec {
                    priority: r.rule_priority - 1,
                    table: MAIN_TABLE,
                    source: any,
                    input_interface: None,
                    fwmark: Some(r.fwmark),
                    unless_fwmark: None,
                });
                policy.rules.push(RuleSpec {
                    priority: r.rule_priority,
                    table: r.table,
                    source: IpPrefix::host(addr),
                    input_interface: None,
                    fwmark: None,
                    unless_fwmark: None,
                });
                policy.routes.push(RouteSpec {
                    table: r.table,
                    destination: any,
                    gateway: None,
                    interface: ifindex,
                    protocol,
                });
            }
        }
        let i = &self.task.ingress;
        if v.ingress && i.enabled {
            let blocks = v.blocks();
            for gateway in [
                i.egress_gateway.map(IpAddr::V4),
                i.egress_gateway6.map(IpAddr::V6),
            ]
            .into_iter()
            .flatten()
            {
                let Some(&block) = blocks.iter().find(|b| b.is_ipv4() == gateway.is_ipv4()) else {
                    continue;
                };
                let any = any_of(gateway);
                policy.rules.push(RuleSpec {
                    priority: i.rule_priority,
                    table: i.egress_table,
                    source: block,
                    input_interface: Some(self.task.interface.clone()),
                    fwmark: None,
                    unless_fwmark: None,
                });
                policy.routes.push(RouteSpec {
                    table: i.egress_table,
                    destination: any,
                    gateway: Some(gateway),
                    interface: 0,
                    protocol,
                });
            }
        }
        policy
    }

    /// Removes rules of the shapes this task installs, at its priorities and tables, that `wanted`
    /// does not hold: what a killed run left for an address this node no longer has.
    async fn sweep(&self, wanted: &Policy) {
        let rules = match self.netlink.list_rules().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot look for stale rules: {e}");
                return;
            }
        };
        let r = &self.task.routing;
        let i = &self.task.ingress;
        let host = |rule: &RuleSpec| rule.source.len() == rule.source.max_len();
        let ours = |rule: &RuleSpec| {
            let plain = rule.fwmark.is_none() && rule.unless_fwmark.is_none();
            (rule.table == r.table
                && rule.priority == r.rule_priority
                && plain
                && rule.input_interface.is_none()
                && host(rule))
                || (rule.table == MAIN_TABLE
                    && rule.priority == r.rule_priority - 1
                    && rule.fwmark == Some(r.fwmark)
                    && rule.source.len() == 0
                    && rule.input_interface.is_none())
                || (rule.table == i.egress_table
                    && rule.priority == i.rule_priority
                    && plain
                    && rule.input_interface.as_deref() == Some(self.task.interface.as_str()))
        };
        for stale in rules
            .iter()
            .filter(|rule| ours(rule) && !wanted.rules.contains(rule))
        {
            match self.netlink.remove_rule(stale).await {
                Ok(n) if n > 0 => tracing::info!("removed stale rule `{stale}`"),
                Ok(_) => {}
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// Makes the kernel hold exactly `wanted` of what this task installs.
    async fn apply_policy(&mut self, wanted: Policy, view: Option<&RoutingView>) {
        let mut error = None;
        for rule in self.installed.rules.iter().filter(|r| !wanted.rules.contains(r)) {
            match self.netlink.remove_rule(rule).await {
                Ok(_) => tracing::info!("removed rule `{rule}`"),
                Err(e) => error = Some(e.to_string()),
            }
        }
        for route in self
            .installed
            .routes
            .iter()
            .filter(|r| !wanted.routes.contains(r))
        {
            if let Err(e) = self.netlink.remove_route(route).await {
                error = Some(e.to_string());
            }
        }
        for rule in &wanted.rules {
            match self.netlink.ensure_rule(rule).await {
                Ok(true) => tracing::info!("added rule `{rule}`"),
                Ok(false) => {}
                Err(e) => error = Some(e.to_string()),
            }
        }
        for route in &wanted.routes {
            if let Err(e) = self.netlink.ensure_route(route).await {
                error = Some(e.to_string());
            }
        }
        if let Some(e) = &error {
            tracing::warn!("policy routing: {e}");
        }
        let node_rules: Vec<String> = wanted
            .rules
            .iter()
            .filter(|r| r.table == self.task.routing.table)
            .map(ToString::to_string)
            .collect();
        let routing = view
            .filter(|v| v.has_egress && !v.ingress)
            .map(|_| RoutingStatus {
                table: self.task.routing.table,
                rules: node_rules,
                error,
            });
        self.installed = wanted;
        self.task.report.lock().map(|mut r| r.routing = routing).ok();
    }

    async fn ingress_step(&mut self, now: Instant, view: &RoutingView, ifindex: Option<u32>) {
        let i = self.task.ingress.clone();
        let announcer = self.announcer.get_or_insert_with(|| {
            tracing::info!(
                "ingress for {}: announcing after {} s of health",
                view.block_v4,
                i.hold_down_secs
            );
            Announcer::new(
                Duration::from_secs(i.hold_down_secs),
                Duration::from_secs(i.bird_restart_grace_secs),
            )
        });
        let was = announcer.announced();
        let tun_up = ifindex.is_some() && interface_up(&self.task.interface);
        let live_peers = live_peers(&self.task.control).await;
        let upstream = upstream(i.bird_socket.clone(), i.upstream.clone()).await;
        let health = Health {
            tun_up,
            live_peers,
            upstream,
        };
        let decision = announcer.update(now, &health);
        if decision.announce != was {
            if decision.announce {
                tracing::info!("announcing {}: {}", view.block_v4, decision.reason);
            } else {
                tracing::warn!("withdrawing {}: {}", view.block_v4, decision.reason);
            }
        }
        let wanted = match (decision.announce, ifindex) {
            (true, Some(ifindex)) => announcement(view, &i, ifindex),
            _ => Vec::new(),
        };
        let announced = self.reconcile_announcement(&wanted).await;
        self.report_ingress(view, &health, &decision, announced);
    }

    /// Makes the announcement table hold exactly `wanted` of meshd's routes; true if it holds any.
    async fn reconcile_announcement(&mut self, wanted: &[RouteSpec]) -> bool {
        let i = &self.task.ingress;
        let present = match self.netlink.routes(i.announce_table, i.route_protocol).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{e}");
                return false;
            }
        };
        for stale in present.iter().filter(|p| !wanted.contains(p)) {
            if let Err(e) = self.netlink.remove_route(stale).await {
                tracing::warn!("{e}");
            }
        }
        let mut any = false;
        for route in wanted {
            if present.contains(route) {
                any = true;
                continue;
            }
            match self.netlink.ensure_route(route).await {
                Ok(()) => {
                    tracing::info!("added route `{route}` (on {})", self.task.interface);
                    any = true;
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        any
    }

    fn report_ingress(&self, view: &RoutingView, health: &Health, decision: &Decision, announced: bool) {
        let blocks = view.blocks().iter().map(ToString::to_string).collect();
        let status = IngressStatus {
            healthy: decision.healthy,
            announced,
            tun_up: health.tun_up,
            live_peers: health.live_peers,
            upstream: self.task.ingress.upstream.clone(),
            upstream_state: health.upstream.state().to_string(),
            upstream_established: matches!(health.upstream, Upstream::Established { .. }),
            blocks,
            reason: decision.reason.to_string(),
        };
        self.task.report.lock().map(|mut r| r.ingress = Some(status)).ok();
    }

    /// Deletes every announcement route of meshd's protocol.
    async fn withdraw(&mut self) {
        self.reconcile_announcement(&[]).await;
    }

    /// A clean stop: the announcement first, so the upstream stops sending at once, then the rest.
    async fn shut_down(mut self) {
        if self.announcer.is_some() || self.task.ingress.enabled {
            self.withdraw().await;
            tracing::info!("withdrew the announcement");
        }
        self.apply_policy(Policy::default(), None).await;
    }
}

/// `0.0.0.0/0` or `::/0`, whichever is of `like`'s family.
fn any_of(like: IpAddr) -> IpPrefix {
    match like {
        IpAddr::V4(_) => IpPrefix::V4(Ipv4Prefix::ANY),
        IpAddr::V6(_) => IpPrefix::V6(Ipv6Prefix::ANY),
    }
}

/// The announcement routes: each block onto the mesh interface, in the table BIRD learns from.
fn announcement(view: &RoutingView, i: &IngressConfig, ifindex: u32) -> Vec<RouteSpec> {
    view.blocks()
        .into_iter()
        .map(|destination| RouteSpec {
            table: i.announce_table,
            destination,
            gateway: None,
            interface: ifindex,
            protocol: i.route_protocol,
        })
        .collect()
}

/// The interface is administratively up and has carrier (a TUN has it while its owner holds it
/// open). sysfs's `flags` is the configured set, without the computed `IFF_RUNNING`, hence `carrier`.
fn interface_up(name: &str) -> bool {
    let dir = PathBuf::from("/sys/class/net").join(name);
    let up = std::fs::read_to_string(dir.join("flags"))
        .ok()
        .and_then(|text| u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & libc::IFF_UP as u32 != 0);
    let carrier = std::fs::read_to_string(dir.join("carrier")).is_ok_and(|text| text.trim() == "1");
    up && carrier
}

/// How many peers have a session in use.
async fn live_peers(control: &mpsc::Sender<MeshCmd>) -> usize {
    let peers = MeshCmd::peers(control).await;
    let wall = clock::wall();
    peers
        .iter()
        .filter(|p| {
            p.last_handshake
                .and_then(|t| wall.duration_since(t).ok())
                .is_some_and(|age| age < LIVE_SESSION)
                || p.last_handshake.is_some_and(|t| t > wall)
        })
        .count()
}

/// The upstream session's state, read from BIRD (read-only, after `restrict`).
async fn upstream(socket: PathBuf, protocol: String) -> Upstream {
    let asked = tokio::task::spawn_blocking(move || ask_bird(&socket, &protocol)).await;
    match asked {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => Upstream::Unreachable { error: e.to_string() },
        Err(e) => Upstream::Unreachable { error: e.to_string() },
    }
}

fn ask_bird(socket: &std::path::Path, protocol: &str) -> std::io::Result<Upstream> {
    let mut client = BirdClient::connect_restricted(socket, BIRD_TIMEOUT)?;
    let status = client.command("show status")?;
    let bird_started = bird::last_reboot(&status).unwrap_or_default().to_string();
    let reply = client.command(&format!("show protocols {protocol}"))?;
    let row = bird::protocols(&reply).into_iter().find(|r| r.name == protocol);
    Ok(match row {
        Some(row) if row.bgp_established() => Upstream::Established { bird_started },
        Some(row) => Upstream::Down {
            // BGP's own state is the first word of Info, after the Since time (Idle, Connect,
            // Active, ...); time and date start with digits.
            state: row
                .rest
                .iter()
                .find(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()))
                .cloned()
                .unwrap_or(row.state),
            bird_started,
        },
        None => Upstream::Down {
            state: format!("missing (BIRD has no protocol {protocol:?})"),
            bird_started,
        },
    })
}

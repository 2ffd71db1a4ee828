//! What the admin API asks of the running node (as opposed to the controller's database): its
//! status, joining a network, and leaving it. The daemon's mesh task answers these over a channel, so the HTTP
//! side never touches the node's state directly.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

// What a join gives, or why it failed, is the agent's answer; the API sends it as it is.
pub use meshd_core::mesh::join::{JoinFailure, JoinFailureKind, JoinResponse};

/// A request from the API to the mesh task, with the channel its answer goes back on.
#[derive(Debug)]
pub enum NodeRequest {
    Status(oneshot::Sender<NodeStatus>),
    Join(JoinRequest, oneshot::Sender<Result<JoinResponse, JoinFailure>>),
    /// `Err` says why the node is still a member.
    Leave(oneshot::Sender<Result<LeaveResponse, String>>),
}

/// What `POST /v1/leave` answers: the network this node left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveResponse {
    pub network: String,
}

/// `POST /v1/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The `meshd1-...` token as the operator pasted it.
    pub token: String,
    /// The controller's UDP endpoint, `host:port` (a name is resolved by the CLI before sending).
    pub controller: std::net::SocketAddr,
    /// The name this machine asks for (the daemon uses the host name when absent); the controller
    /// makes it unique and DNS-safe.
    #[serde(default)]
    pub name: Option<String>,
}

/// `GET /v1/status`: this node as `meshd status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's public key, base64.
    pub public_key: String,
    pub interface: String,
    pub listen_port: u16,
    /// Whether this daemon runs the controller.
    pub controller_role: bool,
    /// The network this node joined; `None` before `meshd join` (and on a controller, which is in
    /// every network it hosts: see `networks`).
    pub membership: Option<MembershipStatus>,
    /// The addresses on the interface.
    pub addresses: Vec<String>,
    pub peers: Vec<PeerStatusView>,
    /// Source-based routing of this node's public addresses through its network's ingress;
    /// `None` when the network has no ingress (or this node is one).
    #[serde(default)]
    pub routing: Option<RoutingStatus>,
    /// The ingress role (`[ingress] enabled = true` and marked as an ingress by the controller);
    /// `None` on other nodes.
    #[serde(default)]
    pub ingress: Option<IngressStatus>,
    /// Packets and messages dropped since the daemon started, by reason (every reason, zeros
    /// included; the names are `core/src/node/drop.rs`'s).
    #[serde(default)]
    pub drops: std::collections::BTreeMap<String, u64>,
    /// The network this node was removed from (or left) since the daemon started, when it has no
    /// membership now.
    #[serde(default)]
    pub removed_from: Option<String>,
}

/// What a node installed so that traffic from its public addresses leaves through the ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingStatus {
    /// The route table holding `default dev <interface>`.
    pub table: u32,
    /// The `ip rule` lines installed, in `ip` syntax.
    pub rules: Vec<String>,
    /// The last error installing them, if the last attempt failed.
    pub error: Option<String>,
}

/// The ingress's health and announcement, as `meshd status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressStatus {
    /// Healthy by the rule: interface up, a peer with a live session, the upstream Established.
    pub healthy: bool,
    /// The announcement route is in the kernel table BIRD learns from.
    pub announced: bool,
    pub tun_up: bool,
    /// Peers whose session is live (handshake within the last 180 s).
    pub live_peers: usize,
    /// BIRD's protocol name for the upstream session.
    pub upstream: String,
    /// Its state as BIRD reports it (`Established`, `Active`, ...), or `unreachable`.
    pub upstream_state: String,
    pub upstream_established: bool,
    /// The blocks announced while healthy.
    pub blocks: Vec<String>,
    /// Why it is, or is not, announced.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipStatus {
    pub network: String,
    pub name: String,
    pub controller_key: String,
    pub controller: std::net::SocketAddr,
    /// False when the controller said this node is not (or no longer) authorized.
    pub authorized: bool,
    /// What the controller last said of this node.
    #[serde(default)]
    pub standing: MemberStanding,
    /// Version of the map in use (0: none yet).
    pub map_version: u64,
    /// Seconds since the controller last answered; `None` if it has not since the daemon started.
    pub controller_last_heard_secs: Option<u64>,
}

/// What the controller last said of this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStanding {
    /// A member in good standing (or nothing heard yet).
    #[default]
    Authorized,
    /// Deauthorized: a member, but without peers until authorized again.
    Deauthorized,
    /// The controller does not know this node or its network: its database may be lost or replaced.
    /// The node keeps its peers and last map and keeps asking.
    Disowned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatusView {
    pub name: String,
    pub public_key: String,
    pub mesh_ipv4: Option<std::net::Ipv4Addr>,
    pub mesh_ipv6: Option<std::net::Ipv6Addr>,
    /// Where packets go: the peer's address, or the relay's when `path` is `relayed`.
    pub endpoint: Option<std::net::SocketAddr>,
    pub path: PathKind,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    Direct,
    Relayed,
    /// No endpoint known yet.
    None,
}

//! What a join gives the node, or why it failed: the agent's answer to [`Agent::join`], which the
//! admin API passes to the operator as it is (its JSON is this serde form).
//!
//! [`Agent::join`]: super::agent::Agent::join

use serde::{Deserialize, Serialize};

/// What a successful join gave this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub network: String,
    pub name: String,
    pub ipv4: std::net::Ipv4Addr,
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// The controller's public key (base64), as the token named it.
    pub controller_key: String,
    pub controller: std::net::SocketAddr,
}

/// Why a join failed: the controller's refusal (wrong, expired, revoked or used-up token, ...) or no
/// answer. `message` is for the operator and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinFailure {
    pub kind: JoinFailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinFailureKind {
    /// The token does not parse (a typo, a truncated paste).
    Malformed,
    /// The controller does not know the token (wrong controller, or deleted).
    Unknown,
    Expired,
    Revoked,
    UsedUp,
    /// Refused for another reason (the network is full, say); `message` has it.
    Refused,
    /// The controller did not answer in time.
    Unreachable,
    /// The node is a member of a network already.
    AlreadyJoined,
}

//! The mesh: how nodes join a network and learn their peers from its controller.
//!
//! - [`membership`]: what a node keeps on disk;
//! - [`agent`]: a node's side (join, poll, map to peers);
//! - [`join`]: what a join gives, or why it failed;
//! - [`peer_rules`]: what the agent and the controller agree on when a member becomes a peer;
//! - [`relay`]: which frames a relay forwards.
//!
//! The messages, their channel and the map are [`crate::message`], [`crate::channel`] and
//! [`crate::map`]; the controller's side is the `meshd-controller` crate, and the daemon runs both.
//! Like the node core, nothing here does IO or reads a clock.

pub mod agent;
pub mod join;
pub mod membership;
pub mod peer_rules;
pub mod relay;

//! The mesh: how nodes join a network and learn their peers from its controller.
//!
//! - [`message`]: the control messages and their encoding;
//! - [`channel`]: sealing and opening them between static keys, with replay and freshness checks;
//! - [`map`]: the network map and its pages;
//! - [`membership`]: what a node keeps on disk;
//! - [`agent`]: a node's side (join, poll, map to peers), sans IO;
//! - [`relay`]: which frames a relay forwards.
//!
//! The controller's side is `crate::controller::service`; the daemon that runs both is
//! `crate::daemon`. Like the node core, nothing here does IO or reads a clock.

pub mod agent;
pub mod channel;
pub mod map;
pub mod membership;
pub mod message;
pub mod relay;

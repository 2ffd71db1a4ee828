//! The mesh: how nodes join a network and learn their peers from its controller.
//!
//! - [`message`], [`channel`], [`map`]: the control messages, their sealed channel and the network
//!   map, from `meshd_core`;
//! - [`membership`]: what a node keeps on disk;
//! - [`agent`]: a node's side (join, poll, map to peers), sans IO;
//! - [`relay`]: which frames a relay forwards.
//!
//! The controller's side is `crate::controller::service`; the daemon that runs both is
//! `crate::daemon`. Like the node core, nothing here does IO or reads a clock.

pub mod agent;
pub mod membership;
pub mod relay;

// The messages, their channel and the map live in the sans-IO core crate, where the fuzz targets
// reach them; they keep their paths here.
pub use meshd_core::{channel, map, message};

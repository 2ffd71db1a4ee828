//! The sans-IO core of a meshd interface: per-peer state machines composed from `meshd-crypto` and
//! `meshd-routing`, driven by `handle_*` calls with the time passed in (`now`, or the instants an
//! [`Activity`] carries) and drained with `poll_*`. [`Node`] documents its methods and their order.
//!
//! Contract: nothing here does IO, spawns a thread or reads a clock (the crate has no dependency that
//! could, and clippy.toml bans the clock); time comes in as arguments and randomness from a seeded
//! RNG, so the simulation tests in `core/tests/` replay exactly.

mod activity;
mod config;
mod configure;
mod drop;
mod endpoint;
mod event;
mod handshake;
#[allow(clippy::module_inception)]
mod node;
mod peer;
mod reconcile;
mod rotation;
mod send;
mod status;
mod timers;

pub use activity::Activity;
pub use config::{ConfigError, PeerUpdate, SetDevice};
pub use drop::{DropCounters, DropReason};
pub use endpoint::{Endpoint, Paths};
pub use event::Event;
pub use handshake::HANDSHAKE_QUEUE;
pub use node::Node;
pub use peer::{MAX_QUEUED, PeerId};
pub use reconcile::{PeerSpec, ReconcileSummary};
pub use status::{DeviceStatus, PeerRuntime, PeerStatus};

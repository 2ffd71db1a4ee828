//! meshd's sans-IO core: what a node and its controller say to each other, without sockets,
//! threads, a clock or an RNG of its own (time and randomness are parameters).
//!
//! - [`message`]: the control messages and their encoding;
//! - [`channel`]: sealing and opening them between static keys, with replay and freshness checks;
//! - [`map`]: the network map and its pages;
//! - [`path`]: a peer's paths, what is known of each, and the policy that picks one;
//! - [`admission`]: the limits a stranger's envelope passes before any key is derived for it;
//! - [`refused`]: messages refused once, so their replays are not answered again;
//! - [`log_limit`]: a limit on the log lines strangers can cause.
//!
//! Being its own crate, it builds without tokio, SQLite, axum or libc, so the fuzz workspace can
//! reach every decoder a stranger can reach, and Cargo (not a grep) keeps IO out of it.
#![forbid(unsafe_code)]

pub mod admission;
pub mod channel;
pub mod log_limit;
pub mod map;
pub mod message;
pub mod path;
pub mod refused;

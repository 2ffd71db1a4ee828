//! meshd's sans-IO core: what a node and its controller say to each other, without sockets,
//! threads, a clock or an RNG of its own (time and randomness are parameters).
//!
//! - [`message`]: the control messages and their encoding;
//! - [`channel`]: sealing and opening them between static keys, with replay and freshness checks;
//! - [`map`]: the network map and its pages.
//!
//! Being its own crate, it builds without tokio, SQLite, axum or libc, so the fuzz workspace can
//! reach every decoder a stranger can reach, and Cargo (not a grep) keeps IO out of it.
#![forbid(unsafe_code)]

pub mod channel;
pub mod map;
pub mod message;

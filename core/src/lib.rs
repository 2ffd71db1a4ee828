//! meshd's sans-IO core: a node's WireGuard state machines, what a node and its controller say to
//! each other, and the codecs between them and the operator, without sockets, threads, a clock or
//! an RNG of its own (time and randomness are parameters).
//!
//! - [`node`]: one interface's peers, handshakes, sessions and paths, driven by `handle_*` calls
//!   with the time passed in (`now`, the wall clock where it matters, or the data threads' own
//!   timestamps in an `Activity`) and drained with `poll_*`;
//! - [`mesh`]: a node's side of the mesh (joining, polling, the map turned into peers), the relay
//!   table;
//! - [`message`]: the control messages and their encoding;
//! - [`channel`]: sealing and opening them between static keys, with replay and freshness checks;
//! - [`map`]: the network map and its pages;
//! - [`datapath`]: what the data threads decide per datagram (roaming, relay frames), shared with
//!   the simulation;
//! - [`path`]: a peer's paths, what is known of each, and the policy that picks one;
//! - [`admission`]: the limits a stranger's envelope passes before any key is derived for it;
//! - [`refused`]: messages refused once, so their replays are not answered again;
//! - [`log_limit`]: a limit on the log lines strangers can cause;
//! - [`token`]: the join token codec and its limits;
//! - [`ingress`]: when a border router announces the network's block, and the BIRD snippet for it;
//! - [`uapi`]: the wg(8) configuration protocol's codec, over the node's own types;
//! - [`address`]: socket addresses in one form (IPv4 never v4-mapped).
//!
//! Being its own crate, it builds without tokio, SQLite, axum or libc, so the fuzz workspace can
//! reach every decoder a stranger can reach, and Cargo (not a grep) keeps IO out of it. The shell
//! (the `meshd` daemon) owns the sockets, the threads and the one place that reads the clock.
#![forbid(unsafe_code)]

pub mod address;
pub mod admission;
pub mod channel;
pub mod datapath;
pub mod ingress;
pub mod log_limit;
pub mod map;
pub mod mesh;
pub mod message;
pub mod node;
pub mod path;
pub mod refused;
pub mod token;
pub mod uapi;

/// The tests' clock. `Instant` has no constructor, so the tests take one reading as the origin of
/// their virtual clock and count from it; nothing else reads the clock, and the code under test is
/// only ever handed that value and what the tests add to it.
#[cfg(test)]
mod test_clock {
    use std::time::Instant;

    pub fn epoch() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }
}

//! What the data threads decide for each datagram, as pure functions: the receive thread's dispatch
//! (who handles a datagram), its roaming rule and what it does with a relay frame. The threads around them load and store the shared state
//! (the peer's endpoint, the relay table); the simulation in `core/tests/sim` calls the same
//! functions, so the tests that roam or relay run the rules that ship.
//!
//! Sending needs no decision of its own here: a sealed datagram goes to the peer's active
//! [`Endpoint`](crate::node::Endpoint) as the node published it (or as [`roam`] moved it), framed
//! for the relay when that endpoint is relayed.
//!
//! Like the rest of the crate, nothing here does IO or reads a clock.

mod inbound;
mod relay_frame;
mod roaming;

pub use inbound::{Inbound, classify, open_failed};
pub use relay_frame::{RelayFrame, receive_relay_frame, strip_token};
pub use roaming::roam;

//! WireGuard's cryptography, sans IO: keys, the Noise_IKpsk2 handshake, MAC1/MAC2 and cookies,
//! transport sessions with their replay window, timers, and the handshake rate limiter.
//!
//! Contract: this crate does no IO, never reads a clock and never uses a global RNG. Every function
//! that needs the time takes `now: Instant` (monotonic) or, for the handshake's TAI64N timestamp, a
//! wall-clock value; every function that needs randomness takes an RNG. Under a virtual clock and a
//! seeded RNG it is deterministic.
//!
//! The pieces compose in the daemon roughly so:
//!
//! ```text
//! RX thread:  datagram -> meshd_packet::wire::parse
//!               Data        -> session::Receiver::decapsulate (owned by RX: key + replay window)
//!               Initiation  -> cookie::CookieChecker::check (mac1, mac2 under load) -> ratelimiter
//!                              -> noise::begin_response -> look up peer by initiator_static()
//!                              -> IncomingInitiation::finish -> send response, new_session()
//!               Response    -> cookie check -> InitiationState::consume_response -> new_session()
//!               CookieReply -> PeerHandshake.cookies.consume_reply
//! TX thread:  packet at buf[16..] -> session::Sender::encapsulate (shared &self, atomic counter)
//! timers:     timers::Timers hooks on every event above; poll(now) for due actions
//! control:    sealed::seal / sealed::open for meshd's own messages between two static keys
//! ```

#![forbid(unsafe_code)]

pub mod constants;
pub mod cookie;
pub mod error;
pub mod index;
pub mod keys;
pub mod noise;
pub mod primitives;
pub mod ratelimiter;
pub mod replay;
pub mod sealed;
pub mod session;
pub mod timers;

pub use error::{CookieError, HandshakeError, RecvError, SendError};
pub use keys::{PresharedKey, PublicKey, StaticSecret};

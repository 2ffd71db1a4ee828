//! Packet buffers and typed, zero-copy views over the bytes meshd moves.
//!
//! Contract: this crate does no IO, no crypto and never reads a clock. Every view is built by a
//! constructor that checks lengths once; after that no accessor can panic. Parse errors are a small
//! `Copy` enum ([`ParseError`]) so the hot path never allocates to report a bad packet.
#![forbid(unsafe_code)]

pub mod buf;
pub mod error;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod prefix;
pub mod udp;
pub mod wire;


pub use error::ParseError;



//! Packet buffers and typed, zero-copy views over the bytes meshd moves.
//!
//! Contract: this crate does no IO, no crypto and never reads a clock. Every view is built by a
//! constructor that checks lengths once; after that no accessor can panic. Parse errors are a small
//! `Copy` enum ([`ParseError`]) so the hot path never allocates to report a bad packet.
//!
//! - [`PacketBuf`]: an owned buffer with [`HEADROOM`] before and [`TAILROOM`] after the payload, so
//!   encryption adds the WireGuard header and tag in place.
//! - [`ipv4`], [`ipv6`], [`udp`], [`ip`]: views over any `AsRef<[u8]>`.
//! - [`wire`]: the WireGuard messages.
//! - [`icmp`]: the "too big" answers written back into the TUN device.
//! - [`mtu`]: what each path adds around a packet, and the interface MTU that fits them all.
//! - [`prefix`]: address prefixes whose constructor masks host bits.
#![forbid(unsafe_code)]

pub mod buf;
pub mod checksum;
pub mod error;
pub mod icmp;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod mtu;
pub mod prefix;
pub mod udp;
pub mod wire;

pub use buf::{HEADROOM, PacketBuf, TAILROOM};
pub use error::ParseError;
pub use ip::IpPacket;
pub use prefix::{IpPrefix, Ipv4Prefix, Ipv6Prefix};

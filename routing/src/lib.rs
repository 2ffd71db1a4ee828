//! Longest-prefix maps, allowed-IPs and source policy, sans IO.
//!
//! Contract: this crate does no IO, never reads a clock, never draws randomness and knows nothing of
//! crypto. Peers are opaque handles (`P: Copy + Eq + Hash`); the check "the decrypted packet's source
//! belongs to the peer that sent it" is composed by the caller from [`AllowedIps::lookup_src`] and its
//! own peer identity. Lookups never allocate and never panic, whatever bytes they are given.
//!
//! One concept per file:
//!
//! - [`trie`]: [`PrefixMap<V>`], longest-prefix match for IPv4 and IPv6 (a bitmap-compressed trie
//!   with one level per octet: at most 4 node visits for IPv4, 16 for IPv6).
//! - [`allowed_ips`]: [`AllowedIps<P>`], WireGuard's prefix -> peer table. A prefix has one owner;
//!   inserting it for another peer moves it.
//! - [`policy`]: [`SourcePolicy<P>`] and [`Router<P>`], the outgoing decision of a node with a public
//!   address from the mesh block: a mesh peer by destination if one holds it, otherwise the ingress
//!   peer chosen by source, otherwise nothing ([`Route`]).
//! - [`bird`]: BIRD 2's control-socket replies, read line by line, and the rows of `show protocols`
//!   (is the upstream BGP session Established?).
//!
//! A node `203.0.113.7` in the mesh block `203.0.113.0/24`, whose Internet traffic leaves through the
//! ingress:
//!
//! ```
//! use std::net::IpAddr;
//! use meshd_routing::{Route, Router};
//!
//! let (ingress, laptop) = (1u32, 2u32);
//! let mut router = Router::new();
//! router.allowed_ips_mut().insert("203.0.113.1/32".parse()?, ingress);
//! router.allowed_ips_mut().insert("203.0.113.20/32".parse()?, laptop);
//! router.policy_mut().insert("203.0.113.7/32".parse()?, ingress);
//! router.policy_mut().insert_internal("203.0.113.0/24".parse()?);
//!
//! let me: IpAddr = "203.0.113.7".parse()?;
//! // A mesh destination goes to the peer that holds it.
//! assert_eq!(router.route(me, "203.0.113.20".parse()?), Route::Peer(laptop));
//! // An Internet destination from the public address goes to the ingress.
//! assert_eq!(router.route(me, "198.51.100.9".parse()?), Route::Ingress(ingress));
//! // A mesh address nobody holds is dropped here instead of hairpinning through the ingress.
//! assert_eq!(router.route(me, "203.0.113.99".parse()?), Route::None);
//! // Traffic from any other source address is not the mesh's business.
//! assert_eq!(router.route("192.0.2.10".parse()?, "198.51.100.9".parse()?), Route::None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod allowed_ips;
pub mod bird;
pub mod policy;
pub mod trie;

pub use allowed_ips::AllowedIps;
pub use policy::{Route, Router, SourcePolicy};
pub use trie::PrefixMap;

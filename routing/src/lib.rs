//! Longest-prefix maps and allowed-IPs, and BIRD's control-socket replies, sans IO.
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
//! - [`bird`]: BIRD 2's control-socket replies, read line by line, and the rows of `show protocols`
//!   (is the upstream BGP session Established?).
//!
//! The ingress's source routing is not decided here: the kernel's rule `from <public IP> lookup <T>`
//! hands meshd only the traffic of a node's public address, and the egress ingress holds `0.0.0.0/0`
//! (and `::/0`) among its allowed IPs, so one destination lookup answers for mesh and Internet
//! destinations alike. A node in the mesh block `203.0.113.0/24` whose Internet traffic leaves
//! through the ingress:
//!
//! ```
//! use meshd_routing::AllowedIps;
//!
//! let (ingress, laptop) = (1u32, 2u32);
//! let mut peers = AllowedIps::new();
//! peers.insert("203.0.113.1/32".parse()?, ingress);
//! peers.insert("0.0.0.0/0".parse()?, ingress);
//! peers.insert("203.0.113.20/32".parse()?, laptop);
//!
//! // A mesh destination goes to the peer that holds it.
//! assert_eq!(peers.lookup("203.0.113.20".parse()?), Some(laptop));
//! // An Internet destination goes to the ingress.
//! assert_eq!(peers.lookup("198.51.100.9".parse()?), Some(ingress));
//! // Without an IPv6 default, an IPv6 destination goes nowhere.
//! assert_eq!(peers.lookup("2001:db8::1".parse()?), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod allowed_ips;
pub mod bird;
pub mod trie;

pub use allowed_ips::AllowedIps;
pub use trie::PrefixMap;

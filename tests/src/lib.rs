//! Network-namespace harness for the end-to-end tests: real binaries, real TUN devices, real
//! namespaces, real peers.
//!
//! Contract:
//! - every end-to-end test body runs through [`e2e`], which runs it in a private mount namespace
//!   with its own `/run/netns` and `/var/run/wireguard` (see [`isolation`]);
//! - nothing is configured in the namespace the tests start in: links, addresses, routes and
//!   daemons live in namespaces the test created, and are removed when their guards drop, also
//!   when the test fails;
//! - every wait and every command is bounded in time and fails naming what it waited for;
//! - only documentation address ranges are used ([`addr`]);
//! - a missing prerequisite (root, `/dev/net/tun`, a tool) fails the test and says how to get it.
//!
//! A test reads like this:
//!
//! ```no_run
//! use meshd_tests::{Family, Initiator, PairConfig, TunnelPair, WgImpl, e2e};
//!
//! #[test]
//! fn wireguard_go_both_ends() {
//!     e2e(|lab| {
//!         let wg_go = WgImpl::wireguard_go();
//!         let config = PairConfig { underlay: Family::V4, initiator: Initiator::Both };
//!         let pair = TunnelPair::up(lab, &wg_go, &wg_go, config);
//!         pair.ping_both_ways();
//!         pair.shutdown_checked();
//!     });
//! }
//! ```

pub mod addr;
pub mod capture;
pub mod ingress;
pub mod isolation;
pub mod json;
pub mod mesh;
pub mod netns;
pub mod pair;
pub mod process;
pub mod spoof;
pub mod token;
pub mod tools;
pub mod transfer;
pub mod wg;

pub use isolation::{Lab, e2e};
pub use netns::{End, Nat, NatRouter, Netns, veth};
pub use pair::{Family, Initiator, PairConfig, Side, TunnelPair};
pub use process::{Background, wait_until};
pub use transfer::{TransferReport, tcp_transfer};
pub use wg::{PeerConfig, WgImpl, WgPeer};

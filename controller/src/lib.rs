//! The mesh controller's state: networks, their members, and the tokens that let machines join.
//!
//! The controller runs inside meshd (usually on the border router) and is the one place that decides
//! who is in a network and which addresses they hold. This crate is that state and its rules, and
//! the service that answers the nodes' control messages. It never does network IO, runs no runtime
//! (no tokio, no axum) and never reads the clock: its only IO is the SQLite database under the state
//! directory. The daemon (`meshd`) carries its datagrams; the admin API, the CLI and the daemon's
//! mesh task sit on top of it.
//!
//! - a **network** has a name, an IPv4 block, an optional IPv6 block and an MTU, and may keep the first
//!   usable address of each block for the controller's own node;
//! - a **member** is a node's X25519 public key in a network, with a name, an authorized flag, the
//!   addresses it was given, and when and from where it was last seen. A key can be a member of several
//!   networks; within one network its key and its addresses are unique;
//! - a **join token** admits new members to one network; it can be single-use, good for N uses or
//!   unlimited, can expire, and can be revoked. The controller stores only a hash of its secret.
//!
//! The parts:
//!
//! - [`alloc`] chooses addresses (pure): the lowest free address of the block, never the network,
//!   broadcast or controller address, never one already held;
//! - [`blocks`] says which blocks a network may take (pure): no special-purpose range, no overlap;
//! - [`names`] gives members unique DNS-safe names and printable labels (pure);
//! - [`meshd_core::token`] makes, reads and checks join tokens (pure); its doc has the token format;
//! - [`service`] answers the nodes' join, poll and leave messages from the store, and keeps the
//!   network maps and the relay table;
//! - [`store`] keeps it all in SQLite under the state directory; its doc has the schema and the
//!   durability contract: a write that returned `Ok` survives `kill -9` and power loss, and an operation
//!   that fails (a refused join, say) changes nothing.
//!
//! Like the node core, nothing here reads the clock or draws OS randomness: `now` and the RNG are
//! parameters.
//!
//! ```no_run
//! # use std::{num::NonZeroU32, path::Path, time::SystemTime};
//! # use meshd_controller::{store::{Store, NetworkSpec}, TokenPolicy};
//! # fn demo(now: SystemTime, controller: meshd_crypto::PublicKey, node: meshd_crypto::PublicKey,
//! #         rng: &mut rand_chacha::ChaCha20Rng) -> Result<(), Box<dyn std::error::Error>> {
//! let mut store = Store::open(Path::new("/var/lib/meshd"))?;
//! store.create_network(
//!     &NetworkSpec {
//!         name: "lab".into(),
//!         ipv4: "44.30.127.0/24".parse()?,
//!         ipv6: None,
//!         mtu: 1376,
//!         reserve_controller: true,
//!     },
//!     now,
//! )?;
//! let (_info, text) = store.create_token("lab", &controller, TokenPolicy::single_use(), now, rng)?;
//! // ... the operator gives `text.expose()` to the new machine, which presents it with its key:
//! let joined = store.join(text.expose(), &node, "laptop", now)?;
//! assert_eq!(joined.member.ipv4.to_string(), "44.30.127.2");
//! # Ok(()) }
//! ```

pub mod alloc;
pub mod blocks;
pub mod names;
pub mod service;
pub mod store;

pub use alloc::{AddressPlan, AllocError};
pub use meshd_core::token::{JoinToken, TokenError, TokenId, TokenLimits, TokenPolicy, TokenString};
pub use store::{Joined, Member, Network, NetworkSpec, Removal, Sighting, Store, StoreError, TokenInfo};

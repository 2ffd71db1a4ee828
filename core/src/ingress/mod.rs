//! The ingress role: a node of the mesh that is also the network's border router. It announces the
//! network's block through BIRD while it is healthy, and forwards the block's traffic between the
//! mesh and its upstream.
//!
//! Like `node/` and `mesh/`, this module does no IO and reads no clock; the daemon gathers
//! the facts (BIRD's answers, the peers, the interface) and applies the decisions over rtnetlink.
//!
//! - [`announcer`]: when the block is announced: the health rule, the hold-down, BIRD restarts.
//! - [`bird_config`]: the BIRD snippet the operator includes (`meshd bird-config`).

pub mod announcer;
pub mod bird_config;

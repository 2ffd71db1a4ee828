//! The ingress role: a node of the mesh that is also the network's border router. It announces the
//! network's block through BIRD while it is healthy, and forwards the block's traffic between the
//! mesh and its upstream.
//!
//! - [`bird_config`]: the BIRD snippet the operator includes (`meshd bird-config`).

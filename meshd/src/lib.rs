//! The meshd daemon.
//!
//! The sans-IO core (the node, the mesh agent, the codecs) is the `meshd-core` crate: it never does
//! IO and never reads a clock (`now` is passed in). The controller's state is `meshd-controller`; the
//! data plane (the interface's threads and control loop, and `sys`, the only place with
//! operating-system calls and `unsafe`) is `meshd-wg`. This crate runs them together: the daemon's
//! mesh, routing and ingress tasks, the admin API, the CLI and the lab.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod lab;

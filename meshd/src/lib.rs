//! The meshd daemon.
//!
//! The sans-IO core (the node, the mesh agent, the codecs) is the `meshd-core` crate: it never does
//! IO and never reads a clock (`now` is passed in). This crate is its shell: `sys/` is the only place
//! with operating-system calls and `unsafe`.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod lab;
pub mod sys;
pub mod wg;

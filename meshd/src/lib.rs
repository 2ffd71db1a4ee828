//! The meshd daemon.
//!
//! `node/` is the sans-IO mesh core: it never does IO and never reads a clock (`now` is passed in).
//! `sys/` is the only place with operating-system calls and `unsafe`.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod ingress;
pub mod lab;
pub mod mesh;
pub mod node;
pub mod sys;
pub mod uapi;
pub mod wg;

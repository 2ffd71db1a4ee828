//! The only part of meshd that talks to the operating system: the TUN device, the UDP socket, the clock
//! and process control. Every `unsafe` block of meshd (this crate and the daemon) lives under this
//! module, each with a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod bird;
pub mod clock;
pub mod files;
pub mod ifaddrs;
pub mod ifconfig;
pub mod logging;
pub mod netlink;
pub mod netns;
pub mod poll;
pub mod process;
pub mod random;
pub mod tun;
pub mod udp;

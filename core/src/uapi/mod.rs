//! The WireGuard cross-platform userspace API (<https://www.wireguard.com/xplatform/>): the text
//! protocol `wg(8)` speaks over `/var/run/wireguard/IFNAME.sock`. This module is the codec only (no
//! socket): [`RequestParser`] turns lines into a typed [`Request`] whose changes are the node's own
//! [`SetDevice`], and [`render`] writes the node's [`DeviceStatus`](crate::node::DeviceStatus) as the answer to `get=1`. The
//! codec knows the node's types; the node does not know the codec.
//!
//! The protocol is a sequence of `key=value` lines ended by an empty line. A `set=1` request lists the
//! interface keys first, then each peer starting with its `public_key`; every answer ends with
//! `errno=N` and an empty line, where `N` is 0 or a positive errno value.

mod get;
mod hex;
mod set;

pub use get::render;
pub use hex::{decode_key, encode_key};
pub use set::RequestParser;

use crate::node::{ConfigError, SetDevice};

/// One request read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `get=1`: report the device.
    Get,
    /// `set=1`: change the device.
    Set(SetDevice),
}

/// Why a request was refused; [`errno`](UapiError::errno) is what goes on the `errno=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapiError {
    kind: UapiErrorKind,
    /// The offending line, for the daemon's log (never contains a private or preshared key).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UapiErrorKind {
    /// The request is not the protocol (no `get=1`/`set=1` first, a line without `=`).
    Protocol,
    /// A known key with a value that does not parse, or a key the protocol does not have.
    Invalid,
}

impl UapiError {
    pub(crate) fn protocol(detail: impl Into<String>) -> Self {
        UapiError {
            kind: UapiErrorKind::Protocol,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        UapiError {
            kind: UapiErrorKind::Invalid,
            detail: detail.into(),
        }
    }

    pub fn kind(&self) -> UapiErrorKind {
        self.kind
    }

    /// The errno value for the answer, as wireguard-go and the kernel report them.
    pub fn errno(&self) -> i32 {
        match self.kind {
            UapiErrorKind::Protocol => EPROTO,
            UapiErrorKind::Invalid => EINVAL,
        }
    }
}

impl std::fmt::Display for UapiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            UapiErrorKind::Protocol => write!(f, "protocol error: {}", self.detail),
            UapiErrorKind::Invalid => write!(f, "invalid value: {}", self.detail),
        }
    }
}

impl std::error::Error for UapiError {}

/// The node's refusal, answered as an invalid value.
impl From<ConfigError> for UapiError {
    fn from(e: ConfigError) -> Self {
        UapiError::invalid(e.to_string())
    }
}

// Linux errno values; the protocol carries them as numbers.
pub const EINVAL: i32 = 22;
pub const EPROTO: i32 = 71;
pub const EADDRINUSE: i32 = 98;
pub const EIO: i32 = 5;

/// The answer to a request that changed nothing but status: `errno=N` and the closing empty line.
pub fn errno_answer(errno: i32) -> String {
    format!("errno={errno}\n\n")
}

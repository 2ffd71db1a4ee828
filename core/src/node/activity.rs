//! What the data path did for a peer since the last report: the control path turns it into timer
//! events. The data threads record it in atomics; the shell drains them into one [`Activity`] per peer.

use std::time::Instant;

use super::Endpoint;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// The last data message (not a keepalive) sent.
    pub data_sent: Option<Instant>,
    /// The last data message (not a keepalive) received and authenticated.
    pub data_received: Option<Instant>,
    /// The last authenticated message of any kind received (data or keepalive).
    pub authenticated_received: Option<Instant>,
    /// A session asked for a new handshake (REKEY_AFTER_MESSAGES, or an initiator's REKEY_AFTER_TIME).
    pub rekey_wanted: Option<Instant>,
    /// The path of the newest authenticated packet, when it is not the node's active path for the
    /// peer ([`Node::endpoint`](super::Node::endpoint)): `Direct` from the packet's source address,
    /// `Relayed` from the relay's address when it came in a relay frame. A direct one means the peer
    /// roamed there, or can be reached without the relay; a relayed one only records the relay.
    pub endpoint: Option<Endpoint>,
}

impl Activity {
    pub fn is_empty(&self) -> bool {
        *self == Activity::default()
    }
}

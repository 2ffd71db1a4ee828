//! What the node asks the shell to do. Drained with [`Node::poll_event`](super::Node::poll_event).

use std::net::SocketAddr;
use std::sync::Arc;

use meshd_crypto::PublicKey;
use meshd_crypto::session::{Receiver, Sender};

use super::{DropReason, Endpoint, PeerId};

#[derive(Debug)]
pub enum Event {
    /// Send `datagram` to `to` on the tunnel's UDP socket. For a peer reached through a relay, `to` is
    /// the relay and `datagram` already a relay frame: the shell sends it as it is.
    Transmit { to: SocketAddr, datagram: Vec<u8> },
    /// A peer was created: the shell sets up its shared state (counters, endpoint, sending slot). The
    /// key is what the data path puts in the relay frames of a relayed peer's packets.
    PeerAdded { peer: PeerId, key: PublicKey },
    /// A peer was removed: the shell forgets it (its receivers are removed by separate events).
    PeerRemoved { peer: PeerId },
    /// The peer's active path changed (configuration, a handshake, or the data path's report of a
    /// packet over another path): the data path sends its packets this way from now on.
    Endpoint {
        peer: PeerId,
        endpoint: Option<Endpoint>,
    },
    /// Publish `sender` as the peer's session for the TX path (`None`: nothing to send with).
    Sender {
        peer: PeerId,
        sender: Option<Arc<Sender>>,
    },
    /// Give the RX path a receiving half under its local index. With `confirms`, the session is a
    /// responder's unconfirmed one: the first data decrypted with it must be reported to
    /// [`Node::handle_session_confirmed`](super::Node::handle_session_confirmed).
    Receiver {
        peer: PeerId,
        receiver: Box<Receiver>,
        confirms: bool,
    },
    /// The RX path forgets the receiver with this local index.
    RemoveReceiver { local_index: u32 },
    /// The allowed IPs changed: republish the routing snapshot from [`Node::allowed_ips`](super::Node::allowed_ips).
    RoutesChanged,
    /// Bind the UDP socket to this port (0: any), then report the port with
    /// [`Node::set_bound_port`](super::Node::set_bound_port).
    Rebind { port: u16 },
    /// Mark outgoing datagrams with this `SO_MARK` (0: none).
    Fwmark { mark: u32 },
    /// Something was dropped in the control path.
    Dropped { reason: DropReason, n: u64 },
}

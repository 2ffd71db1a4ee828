//! Where the receive thread sends a datagram that arrived on a path (a relay frame's inner one
//! included), by its first bytes alone: WireGuard data to its session, handshake messages and cookie
//! replies to the node, sealed envelopes to the mesh agent if they came directly (the control channel
//! runs between a node and its controller, never through a relay), anything else nowhere.

use std::net::SocketAddr;

use meshd_crypto::RecvError;
use meshd_packet::wire::meshd::TYPE_SEALED;
use meshd_packet::wire::{TYPE_COOKIE_REPLY, TYPE_DATA, TYPE_INITIATION, TYPE_RESPONSE};

use crate::node::{DropReason, Endpoint};

/// Who handles a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// WireGuard data for the receiving session with this local index, opened by the receive thread.
    Data {
        index: u32,
    },
    /// A handshake message or a cookie reply, for the node.
    Handshake,
    /// A sealed envelope that came directly `from` an address, for the mesh agent.
    Sealed {
        from: SocketAddr,
    },
    Drop(DropReason),
}

/// Decides who handles `datagram`, which arrived `via` a path.
pub fn classify(datagram: &[u8], via: Endpoint) -> Inbound {
    match datagram.first().copied() {
        Some(TYPE_DATA) => match datagram.get(4..8) {
            Some(&[a, b, c, d]) => Inbound::Data {
                index: u32::from_le_bytes([a, b, c, d]),
            },
            _ => Inbound::Drop(DropReason::Malformed),
        },
        Some(TYPE_INITIATION | TYPE_RESPONSE | TYPE_COOKIE_REPLY) => Inbound::Handshake,
        Some(TYPE_SEALED) => match via {
            Endpoint::Direct(from) => Inbound::Sealed { from },
            Endpoint::Relayed { .. } => Inbound::Drop(DropReason::ControlUnexpected),
        },
        _ => Inbound::Drop(DropReason::Malformed),
    }
}

/// Why a data message its session would not open is dropped.
pub fn open_failed(e: RecvError) -> DropReason {
    match e {
        RecvError::Malformed(_) => DropReason::Malformed,
        RecvError::WrongIndex => DropReason::UnknownIndex,
        RecvError::Expired => DropReason::SessionExpired,
        RecvError::Replayed => DropReason::Replayed,
        RecvError::Decrypt => DropReason::DecryptFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct() -> Endpoint {
        Endpoint::Direct("192.0.2.1:51820".parse().unwrap())
    }

    fn relayed() -> Endpoint {
        Endpoint::Relayed {
            relay: "203.0.113.1:3478".parse().unwrap(),
        }
    }

    #[test]
    fn data_goes_to_the_session_its_receiver_index_names() {
        let datagram = [4, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0, 0, 0, 0, 0];
        for via in [direct(), relayed()] {
            assert_eq!(classify(&datagram, via), Inbound::Data { index: 0x1234_5678 });
        }
        assert_eq!(
            classify(&datagram[..7], direct()),
            Inbound::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn handshake_messages_and_cookie_replies_go_to_the_node_on_any_path() {
        for t in [1, 2, 3] {
            for via in [direct(), relayed()] {
                assert_eq!(classify(&[t, 0, 0, 0], via), Inbound::Handshake);
            }
        }
    }

    #[test]
    fn only_a_direct_sealed_envelope_goes_to_the_mesh_agent() {
        assert_eq!(
            classify(&[0x80, 0, 0, 0], direct()),
            Inbound::Sealed {
                from: "192.0.2.1:51820".parse().unwrap()
            }
        );
        assert_eq!(
            classify(&[0x80, 0, 0, 0], relayed()),
            Inbound::Drop(DropReason::ControlUnexpected)
        );
    }

    #[test]
    fn anything_else_is_malformed() {
        for datagram in [
            &[][..],
            &[0][..],
            &[5, 0, 0, 0][..],
            &[0x81, 0, 0, 0][..],
            &[0xff][..],
        ] {
            assert_eq!(classify(datagram, direct()), Inbound::Drop(DropReason::Malformed));
        }
    }

    #[test]
    fn a_session_that_will_not_open_a_message_says_why() {
        assert_eq!(open_failed(RecvError::WrongIndex), DropReason::UnknownIndex);
        assert_eq!(open_failed(RecvError::Expired), DropReason::SessionExpired);
        assert_eq!(open_failed(RecvError::Replayed), DropReason::Replayed);
        assert_eq!(open_failed(RecvError::Decrypt), DropReason::DecryptFailed);
    }
}

//! A relay frame (`0x81 | token | destination key | inner datagram`) as the receive thread gets it:
//! for this node, the inner datagram is handled as arriving through the relay that sent the frame;
//! for another, this node forwards it if its relay table allows (only a node that runs the relay has
//! one that is not empty), with the sender's token cleared; anything else is dropped with its reason.

use std::net::SocketAddr;

use meshd_packet::wire::meshd::{MeshdMessage, RELAY_TOKEN_RANGE, parse_meshd};

use crate::mesh::relay::{Refusal, RelayTable};
use crate::node::{DropReason, Endpoint};

/// What becomes of a relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFrame {
    /// For this node: the inner datagram (after `RELAY_HEADER_LEN`) arrived `via` the relay.
    ForThisNode {
        via: Endpoint,
    },
    /// For another member: sent on to `to`, unchanged but for the token ([`strip_token`]).
    Forward {
        to: SocketAddr,
    },
    Drop(DropReason),
}

/// Decides what a relay frame `from` an address becomes, for a node with the key `own_key` (if it has
/// one yet) that relays for the members of `relay`.
pub fn receive_relay_frame(
    datagram: &[u8],
    from: SocketAddr,
    own_key: Option<&[u8; 32]>,
    relay: &RelayTable,
) -> RelayFrame {
    let Ok(MeshdMessage::Relay(frame)) = parse_meshd(datagram) else {
        return RelayFrame::Drop(DropReason::Malformed);
    };
    let destination = &frame.header.destination;
    if own_key == Some(destination) {
        return RelayFrame::ForThisNode {
            via: Endpoint::Relayed { relay: from },
        };
    }
    match relay.forward(from, &frame.header.token, destination) {
        Ok(to) => RelayFrame::Forward { to },
        Err(Refusal::BadToken) => RelayFrame::Drop(DropReason::RelayBadToken),
        Err(Refusal::NotAllowed) => RelayFrame::Drop(DropReason::RelayRefused),
    }
}

/// Clears the token of a frame about to be forwarded: it is the sender's ticket to this relay, not the
/// destination's business.
pub fn strip_token(frame: &mut [u8]) {
    if let Some(token) = frame.get_mut(RELAY_TOKEN_RANGE) {
        token.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use meshd_packet::wire::meshd::{RELAY_HEADER_LEN, write_relay_frame};

    use super::*;

    const OWN: [u8; 32] = [1; 32];
    const OTHER: [u8; 32] = [2; 32];
    const TOKEN: [u8; 8] = [7; 8];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A frame for `destination` around a (data message) header.
    fn frame(destination: [u8; 32], token: [u8; 8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_relay_frame(destination, token, &[4, 0, 0, 0, 9, 9], &mut out);
        out
    }

    /// A relay for OWN at 192.0.2.1 and OTHER at 192.0.2.2 in one network, OWN holding TOKEN.
    fn table() -> RelayTable {
        let mut t = RelayTable::default();
        t.insert(OWN, addr("192.0.2.1:51820"), 0, &[TOKEN]);
        t.insert(OTHER, addr("192.0.2.2:51820"), 0, &[]);
        t
    }

    #[test]
    fn a_frame_for_this_node_arrived_through_the_relay_that_sent_it() {
        let relay = addr("203.0.113.1:3478");
        let decided = receive_relay_frame(&frame(OWN, [0; 8]), relay, Some(&OWN), &RelayTable::default());
        assert_eq!(
            decided,
            RelayFrame::ForThisNode {
                via: Endpoint::Relayed { relay }
            }
        );
    }

    #[test]
    fn a_frame_for_another_member_is_forwarded_where_the_table_says() {
        let decided = receive_relay_frame(&frame(OTHER, TOKEN), addr("192.0.2.1:51820"), None, &table());
        assert_eq!(
            decided,
            RelayFrame::Forward {
                to: addr("192.0.2.2:51820")
            }
        );
    }

    #[test]
    fn a_node_that_relays_for_nobody_refuses_frames_for_others() {
        let from = addr("192.0.2.1:51820");
        let decided = receive_relay_frame(&frame(OTHER, TOKEN), from, Some(&OWN), &RelayTable::default());
        assert_eq!(decided, RelayFrame::Drop(DropReason::RelayBadToken));
        let decided = receive_relay_frame(
            &frame(OTHER, TOKEN),
            addr("192.0.2.9:1"),
            Some(&[3; 32]),
            &table(),
        );
        assert_eq!(
            decided,
            RelayFrame::Drop(DropReason::RelayRefused),
            "not the token's member's address"
        );
    }

    #[test]
    fn a_frame_with_a_token_the_relay_did_not_issue_is_refused() {
        let decided = receive_relay_frame(&frame(OTHER, [8; 8]), addr("192.0.2.1:51820"), None, &table());
        assert_eq!(decided, RelayFrame::Drop(DropReason::RelayBadToken));
    }

    #[test]
    fn what_does_not_parse_as_a_relay_frame_is_malformed() {
        let mut short = frame(OWN, [0; 8]);
        short.truncate(RELAY_HEADER_LEN + 2);
        for datagram in [&short[..], &[0x81][..], &[4, 0, 0, 0, 1, 2, 3, 4][..]] {
            let decided = receive_relay_frame(datagram, addr("192.0.2.1:51820"), Some(&OWN), &table());
            assert_eq!(decided, RelayFrame::Drop(DropReason::Malformed), "{datagram:?}");
        }
    }

    #[test]
    fn a_forwarded_frame_loses_only_its_token() {
        let mut forwarded = frame(OTHER, TOKEN);
        strip_token(&mut forwarded);
        assert_eq!(forwarded, frame(OTHER, [0; 8]));
    }
}

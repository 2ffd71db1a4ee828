//! Roaming: the receive thread moves a peer's active path to where its latest authenticated packet
//! came from, before the node hears of it, so replies follow a peer that changed address at once.
//!
//! A packet that arrives directly makes the sender's address the path (the peer roamed, or a direct
//! path replaces the relay). One that arrives through a relay moves the path only from nothing or from
//! another relay, never off a direct path: whether the direct path failed is the node's decision, from
//! the handshakes (see `node::endpoint`).

use crate::node::Endpoint;

/// What a peer's endpoint becomes when an authenticated packet from it arrives `via` a path, given the
/// `current` one.
pub fn roam(current: Option<Endpoint>, via: Endpoint) -> Option<Endpoint> {
    match (current, via) {
        (Some(Endpoint::Direct(_)), Endpoint::Relayed { .. }) => current,
        _ => Some(via),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(s: &str) -> Endpoint {
        Endpoint::Direct(s.parse().unwrap())
    }

    fn relayed(s: &str) -> Endpoint {
        Endpoint::Relayed {
            relay: s.parse().unwrap(),
        }
    }

    #[test]
    fn a_direct_packet_sets_the_path_from_nothing() {
        assert_eq!(roam(None, direct("192.0.2.1:1")), Some(direct("192.0.2.1:1")));
    }

    #[test]
    fn a_direct_packet_from_a_new_address_is_followed() {
        assert_eq!(
            roam(Some(direct("192.0.2.1:1")), direct("198.51.100.7:40000")),
            Some(direct("198.51.100.7:40000"))
        );
    }

    #[test]
    fn a_direct_packet_takes_the_peer_off_the_relay() {
        assert_eq!(
            roam(Some(relayed("203.0.113.1:3478")), direct("192.0.2.1:1")),
            Some(direct("192.0.2.1:1"))
        );
    }

    #[test]
    fn a_packet_on_the_current_path_changes_nothing() {
        for path in [direct("192.0.2.1:1"), relayed("203.0.113.1:3478")] {
            assert_eq!(roam(Some(path), path), Some(path));
        }
    }

    #[test]
    fn a_relayed_packet_sets_the_path_from_nothing_or_another_relay() {
        assert_eq!(
            roam(None, relayed("203.0.113.1:3478")),
            Some(relayed("203.0.113.1:3478"))
        );
        assert_eq!(
            roam(Some(relayed("203.0.113.1:3478")), relayed("203.0.113.2:3478")),
            Some(relayed("203.0.113.2:3478"))
        );
    }

    #[test]
    fn a_relayed_packet_never_moves_the_peer_off_its_direct_path() {
        assert_eq!(
            roam(Some(direct("192.0.2.1:1")), relayed("203.0.113.1:3478")),
            Some(direct("192.0.2.1:1"))
        );
    }
}

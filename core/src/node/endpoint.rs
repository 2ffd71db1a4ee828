//! The ways to reach a peer: its own address (direct) or a relay that forwards to it (relayed), and the
//! rule that picks one.
//!
//! A relayed datagram is a relay frame (`0x81 | 0 0 0 | relay token | destination key | inner
//! datagram`, see `meshd_packet::wire::meshd`) sent to the relay, which forwards it to the destination
//! with the token zeroed. The relay sees only the frame header and an inner WireGuard message, never
//! plaintext. On receive, the shell unwraps a frame and hands the inner datagram on as coming
//! [`Endpoint::Relayed`] from the relay's address.
//!
//! # Which path is used
//!
//! A peer may know a direct address (configured, or learned from an authenticated packet that arrived
//! from it) and a relay (configured, or learned from a handshake message that came through one). Data,
//! keepalives and new handshakes use the *active* path: the direct one if known, else the relay, except
//! that with both known the peer can be *on the relay*:
//!
//! - A handshake **response** that arrives over the relay puts the peer on the relay: our initiation went
//!   there, so the direct address failed an attempt or was never in use. The direct address is kept.
//! - An **initiation** over the relay leaves a peer we send to directly on the direct path the first
//!   time: the initiator may just not know our address, and what we send it directly will teach it. A
//!   second one before anything authenticated arrives directly means the peer does not hear us
//!   directly: the peer goes on the relay.
//! - Anything authenticated that arrives **directly** (a handshake message, or data the data path
//!   reports through [`Activity`](super::Activity)) sets the direct address and takes the peer off the
//!   relay: the peer roamed, or the direct path works.
//! - Data reported over the relay only records the relay; it does not move a peer off its direct path.
//! - A **configured** direct address that differs from the known one replaces it and takes the peer off
//!   the relay (the map knows something new); the same address again changes nothing.
//! - **Retries alternate.** With both paths known, a retransmitted initiation goes over the other path
//!   than the attempt before, so a stale direct address falls back to the relay within one
//!   REKEY_TIMEOUT, and a relay that is down falls back to the direct address.
//!
//! Once on the relay, a peer stays there until something authenticated arrives directly or the
//! configuration names a new direct address. No probe tests the direct path in between (the
//! [`path`](crate::path) layer's probes are not wired into the node yet): it is tried again only when
//! a handshake over the relay needs a retry, which alternates onto it, or when the peer sends to it.

use std::fmt;
use std::net::SocketAddr;

use meshd_crypto::PublicKey;
use meshd_packet::wire::meshd::{RELAY_HEADER_LEN, RELAY_TOKEN_LEN, write_relay_frame};

/// Where a peer's datagrams go, or where a received one came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The peer's own UDP address.
    Direct(SocketAddr),
    /// Through the relay at this address, in relay frames addressed to the peer's key.
    Relayed { relay: SocketAddr },
}

impl Endpoint {
    /// The UDP address datagrams are sent to: the peer's, or the relay's.
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Endpoint::Direct(addr) => addr,
            Endpoint::Relayed { relay } => relay,
        }
    }

    pub fn is_relayed(&self) -> bool {
        matches!(self, Endpoint::Relayed { .. })
    }

    /// The datagram that carries `message` to the peer with `key` over this path: the message itself,
    /// or a relay frame around it with this node's relay `token`.
    pub(crate) fn frame(&self, key: &PublicKey, token: [u8; RELAY_TOKEN_LEN], message: Vec<u8>) -> Vec<u8> {
        match self {
            Endpoint::Direct(_) => message,
            Endpoint::Relayed { .. } => {
                let mut out = Vec::with_capacity(RELAY_HEADER_LEN + message.len());
                write_relay_frame(*key.as_bytes(), token, &message, &mut out);
                out
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Direct(addr) => write!(f, "{addr}"),
            Endpoint::Relayed { relay } => write!(f, "{relay} (relay)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Relay,
}

/// A peer's known paths and which one is active, by the rule in the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    direct: Option<SocketAddr>,
    relay: Option<SocketAddr>,
    /// With both known: the relay is the active path.
    on_relay: bool,
    /// An initiation came over the relay while the direct path was active, and nothing authenticated
    /// has arrived directly since.
    relayed_initiation: bool,
    /// The path the latest initiation went over.
    last_attempt: Option<Kind>,
}

impl Paths {
    /// The peer's direct address, in use or not.
    pub fn direct(&self) -> Option<SocketAddr> {
        self.direct
    }

    /// The relay the peer is reachable through, in use or not.
    pub fn relay(&self) -> Option<SocketAddr> {
        self.relay
    }

    /// The path data, keepalives and new handshakes take.
    pub fn active(&self) -> Option<Endpoint> {
        self.endpoint(self.active_kind()?)
    }

    fn active_kind(&self) -> Option<Kind> {
        match (self.direct, self.relay) {
            (Some(_), Some(_)) if self.on_relay => Some(Kind::Relay),
            (Some(_), _) => Some(Kind::Direct),
            (None, Some(_)) => Some(Kind::Relay),
            (None, None) => None,
        }
    }

    fn endpoint(&self, kind: Kind) -> Option<Endpoint> {
        match kind {
            Kind::Direct => self.direct.map(Endpoint::Direct),
            Kind::Relay => self.relay.map(|relay| Endpoint::Relayed { relay }),
        }
    }

    /// Where the next initiation goes: the active path, or for a retry with both paths known, the
    /// other one than the attempt before.
    pub(crate) fn for_initiation(&mut self, retry: bool) -> Option<Endpoint> {
        let kind = match (self.direct, self.relay, self.last_attempt) {
            (Some(_), Some(_), Some(Kind::Direct)) if retry => Kind::Relay,
            (Some(_), Some(_), Some(Kind::Relay)) if retry => Kind::Direct,
            _ => self.active_kind()?,
        };
        self.last_attempt = Some(kind);
        self.endpoint(kind)
    }

    /// A direct address from the configuration (`endpoint=`, or a network map's).
    pub(crate) fn configure_direct(&mut self, addr: SocketAddr) {
        if self.direct != Some(addr) {
            self.arrived_directly(addr);
        }
    }

    /// The relay from the configuration; `None` forgets it.
    pub(crate) fn configure_relay(&mut self, relay: Option<SocketAddr>) {
        self.relay = relay;
        if relay.is_none() {
            self.on_relay = false;
            self.relayed_initiation = false;
        }
    }

    /// An authenticated packet arrived directly from `addr`.
    pub(crate) fn arrived_directly(&mut self, addr: SocketAddr) {
        self.direct = Some(addr);
        self.on_relay = false;
        self.relayed_initiation = false;
    }

    /// The data path saw authenticated data over `from` (it reports only a path other than the active
    /// one).
    pub(crate) fn on_data(&mut self, from: Endpoint) {
        match from {
            Endpoint::Direct(addr) => self.arrived_directly(addr),
            Endpoint::Relayed { relay } => self.relay = Some(relay),
        }
    }

    /// A handshake initiation from the peer was accepted.
    pub(crate) fn on_initiation(&mut self, from: Endpoint) {
        match from {
            Endpoint::Direct(addr) => self.arrived_directly(addr),
            Endpoint::Relayed { relay } => {
                self.relay = Some(relay);
                if self.direct.is_some() && !self.on_relay {
                    if self.relayed_initiation {
                        self.on_relay = true;
                        self.relayed_initiation = false;
                    } else {
                        self.relayed_initiation = true;
                    }
                }
            }
        }
    }

    /// The peer's handshake response to our initiation was accepted.
    pub(crate) fn on_response(&mut self, from: Endpoint) {
        match from {
            Endpoint::Direct(addr) => self.arrived_directly(addr),
            Endpoint::Relayed { relay } => {
                self.relay = Some(relay);
                self.on_relay = self.direct.is_some();
                self.relayed_initiation = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const DIRECT: &str = "192.0.2.1:51820";
    const STALE: &str = "192.0.2.9:51820";
    const RELAY: &str = "203.0.113.1:51820";

    fn relayed() -> Endpoint {
        Endpoint::Relayed { relay: addr(RELAY) }
    }

    fn both() -> Paths {
        let mut p = Paths::default();
        p.configure_direct(addr(DIRECT));
        p.configure_relay(Some(addr(RELAY)));
        p
    }

    #[test]
    fn displays_the_address_and_marks_a_relay() {
        assert_eq!(Endpoint::Direct(addr(DIRECT)).to_string(), "192.0.2.1:51820");
        assert_eq!(relayed().to_string(), "203.0.113.1:51820 (relay)");
        assert_eq!(relayed().addr(), addr(RELAY));
        assert!(relayed().is_relayed());
        assert!(!Endpoint::Direct(addr(DIRECT)).is_relayed());
    }

    #[test]
    fn a_relayed_frame_carries_the_token_the_destination_key_and_the_message_unchanged() {
        let key = PublicKey::from_bytes([7; 32]);
        let msg = vec![4, 0, 0, 0, 1, 2, 3];
        assert_eq!(
            Endpoint::Direct(addr(DIRECT)).frame(&key, [5; 8], msg.clone()),
            msg
        );
        let framed = relayed().frame(&key, [5; 8], msg.clone());
        let Ok(meshd_packet::wire::meshd::MeshdMessage::Relay(frame)) =
            meshd_packet::wire::meshd::parse_meshd(&framed)
        else {
            panic!("not a relay frame")
        };
        assert_eq!(frame.header.destination, [7; 32]);
        assert_eq!(frame.header.token, [5; 8]);
        assert_eq!(frame.inner, &msg[..]);
    }

    #[test]
    fn direct_is_active_when_known() {
        let mut p = Paths::default();
        assert_eq!(p.active(), None);
        p.configure_relay(Some(addr(RELAY)));
        assert_eq!(p.active(), Some(relayed()));
        p.configure_direct(addr(DIRECT));
        assert_eq!(p.active(), Some(Endpoint::Direct(addr(DIRECT))));
    }

    #[test]
    fn retries_alternate_between_known_paths() {
        let mut p = both();
        assert_eq!(p.for_initiation(false), Some(Endpoint::Direct(addr(DIRECT))));
        assert_eq!(p.for_initiation(true), Some(relayed()));
        assert_eq!(p.for_initiation(true), Some(Endpoint::Direct(addr(DIRECT))));
        // A new handshake starts on the active path again.
        assert_eq!(p.for_initiation(true), Some(relayed()));
        assert_eq!(p.for_initiation(false), Some(Endpoint::Direct(addr(DIRECT))));

        let mut only_relay = Paths::default();
        only_relay.configure_relay(Some(addr(RELAY)));
        assert_eq!(only_relay.for_initiation(false), Some(relayed()));
        assert_eq!(only_relay.for_initiation(true), Some(relayed()));
    }

    #[test]
    fn a_response_over_the_relay_keeps_the_direct_address_but_uses_the_relay() {
        let mut p = both();
        p.for_initiation(false);
        p.for_initiation(true);
        p.on_response(relayed());
        assert_eq!(p.active(), Some(relayed()));
        assert_eq!(p.direct(), Some(addr(DIRECT)));
        // New handshakes stay on the relay; a retry still tries the direct address.
        assert_eq!(p.for_initiation(false), Some(relayed()));
        assert_eq!(p.for_initiation(true), Some(Endpoint::Direct(addr(DIRECT))));
        // Data reported over the relay changes nothing; data arriving directly moves the peer back.
        p.on_data(relayed());
        assert_eq!(p.active(), Some(relayed()));
        p.on_data(Endpoint::Direct(addr(STALE)));
        assert_eq!(p.active(), Some(Endpoint::Direct(addr(STALE))));
    }

    #[test]
    fn the_second_relayed_initiation_without_direct_traffic_moves_to_the_relay() {
        let mut p = both();
        p.on_initiation(relayed());
        assert_eq!(
            p.active(),
            Some(Endpoint::Direct(addr(DIRECT))),
            "first one: answer directly"
        );
        p.on_initiation(relayed());
        assert_eq!(p.active(), Some(relayed()), "the peer does not hear us directly");

        // Something arriving directly in between resets the count.
        let mut p = both();
        p.on_initiation(relayed());
        p.on_initiation(Endpoint::Direct(addr(DIRECT)));
        p.on_initiation(relayed());
        assert_eq!(p.active(), Some(Endpoint::Direct(addr(DIRECT))));
    }

    #[test]
    fn a_relayed_initiation_teaches_the_relay_of_a_peer_without_one() {
        let mut p = Paths::default();
        p.on_initiation(relayed());
        assert_eq!(p.active(), Some(relayed()));
        p.on_data(Endpoint::Direct(addr(DIRECT)));
        assert_eq!(p.active(), Some(Endpoint::Direct(addr(DIRECT))));
        assert_eq!(p.relay(), Some(addr(RELAY)));
    }

    #[test]
    fn configuring_a_new_direct_address_leaves_the_relay_and_the_same_one_does_not() {
        let mut p = both();
        p.on_response(relayed());
        p.configure_direct(addr(DIRECT));
        assert_eq!(p.active(), Some(relayed()), "nothing new");
        p.configure_direct(addr(STALE));
        assert_eq!(p.active(), Some(Endpoint::Direct(addr(STALE))));
        p.configure_relay(None);
        assert_eq!(p.relay(), None);
        assert_eq!(p.active(), Some(Endpoint::Direct(addr(STALE))));
    }
}

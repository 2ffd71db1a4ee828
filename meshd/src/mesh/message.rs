//! The control messages between a node and its controller, as carried inside sealed envelopes
//! (`meshd_crypto::sealed`, wire type 0x80) on the tunnel's UDP port.
//!
//! Encoding: [postcard](https://postcard.jamesmunns.com/wire-format) (varints, length-prefixed
//! strings and sequences, enums as a varint discriminant), of [`Envelope`]. The field order below is
//! the wire order; `docs/protocol.md` lists it byte by byte. Decoding is total: a malformed or
//! truncated plaintext is an error, never a panic, and trailing bytes are refused.
//!
//! Every envelope holds a `counter`: the sender's wall clock in nanoseconds since 1970, bumped to stay
//! above the last one it sent. The receiver accepts only counters above the last one from that sender
//! (replay) and within [`super::channel::FRESHNESS`] of its own clock (replay after a restart).
//!
//! ```text
//! node -> controller   Join { token, name, listen_port, local_addrs }    answered by Joined or JoinRefused
//!                      Poll { network, have_version, listen_port, local_addrs }   every few seconds;
//!                          answered by MapPage x n (a newer map), MapCurrent, or NotAuthorized
//! controller -> node   MapPage { network, version, index, count, data }  also pushed on every change
//!                      RelayToken { network, token }                    after every poll answer
//! ```
//!
//! Secrets: the token crosses the wire only inside the envelope, sealed to the controller key the
//! token itself names, so only that controller can read it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// A sealed envelope's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub counter: u64,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Join(JoinMsg),
    Poll(PollMsg),
    Joined(JoinedMsg),
    JoinRefused(RefusedMsg),
    MapPage(MapPageMsg),
    /// The node's map is the newest (`version`); nothing to send.
    MapCurrent {
        network: String,
        version: u64,
    },
    /// The sender is a member of `network` but not authorized (deauthorized), or not a member at all
    /// (`member: false`, removed). The node keeps its membership and asks again later.
    NotAuthorized {
        network: String,
        member: bool,
    },
    /// The member's current ticket for the controller's relay, sent after every answer to its poll
    /// (tokens rotate; see `mesh::relay`). A secret between the two, hence only in an envelope.
    RelayToken {
        network: String,
        token: [u8; 8],
    },
}

/// What the node tells the controller about its socket, so the controller can tell whether the
/// address it sees is the node's own (a public node) or a NAT's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalInfo {
    pub listen_port: u16,
    pub local_addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinMsg {
    /// The join token's text (a secret: this message is sealed to the controller).
    pub token: String,
    pub name: String,
    pub local: LocalInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollMsg {
    pub network: String,
    /// The version of the newest complete map the node holds (0: none).
    pub have_version: u64,
    pub local: LocalInfo,
}

/// A join was accepted: the node's place in the network. The map follows in [`MapPageMsg`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedMsg {
    pub network: String,
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ipv4_block: (Ipv4Addr, u8),
    pub ipv6_block: Option<(Ipv6Addr, u8)>,
    pub mtu: u16,
}

/// Why a join was refused. The kinds are the ones the operator can act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalKind {
    Malformed,
    Unknown,
    Expired,
    Revoked,
    UsedUp,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedMsg {
    pub kind: RefusalKind,
    /// For the operator; says what to do.
    pub message: String,
}

/// One piece of an encoded [`super::map::NetworkMap`]: maps are larger than a datagram, so they go in
/// pages of at most [`super::map::PAGE_DATA`] bytes that the node puts back together by `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapPageMsg {
    pub network: String,
    pub version: u64,
    pub index: u16,
    pub count: u16,
    pub data: Vec<u8>,
}

/// Why a plaintext did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed control message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these types into a Vec cannot fail: no maps with non-string keys, no
        // unsupported types, and the Vec grows as needed.
        postcard::to_allocvec(self).expect("postcard encodes every Envelope")
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let (envelope, rest) =
            postcard::take_from_bytes::<Envelope>(bytes).map_err(|e| DecodeError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", rest.len())));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Envelope> {
        let local = LocalInfo {
            listen_port: 51820,
            local_addrs: vec!["192.0.2.5".parse().unwrap(), "2001:db8::5".parse().unwrap()],
        };
        vec![
            Body::Join(JoinMsg {
                token: "meshd1-abc".into(),
                name: "laptop".into(),
                local: local.clone(),
            }),
            Body::Poll(PollMsg {
                network: "lab".into(),
                have_version: 7,
                local,
            }),
            Body::Joined(JoinedMsg {
                network: "lab".into(),
                name: "laptop".into(),
                ipv4: "203.0.113.2".parse().unwrap(),
                ipv6: Some("2001:db8:1::2".parse().unwrap()),
                ipv4_block: ("203.0.113.0".parse().unwrap(), 24),
                ipv6_block: Some(("2001:db8:1::".parse().unwrap(), 64)),
                mtu: 1420,
            }),
            Body::JoinRefused(RefusedMsg {
                kind: RefusalKind::Expired,
                message: "expired".into(),
            }),
            Body::MapPage(MapPageMsg {
                network: "lab".into(),
                version: 9,
                index: 1,
                count: 3,
                data: vec![1, 2, 3, 255],
            }),
            Body::MapCurrent {
                network: "lab".into(),
                version: 9,
            },
            Body::NotAuthorized {
                network: "lab".into(),
                member: true,
            },
            Body::RelayToken {
                network: "lab".into(),
                token: [0xa5; 8],
            },
        ]
        .into_iter()
        .enumerate()
        .map(|(i, body)| Envelope {
            counter: 1_700_000_000_000_000_000 + i as u64,
            body,
        })
        .collect()
    }

    #[test]
    fn every_message_round_trips() {
        for envelope in samples() {
            let bytes = envelope.encode();
            assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn truncated_and_padded_messages_are_refused() {
        for envelope in samples() {
            let bytes = envelope.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Envelope::decode(&bytes[..cut]).is_err(),
                    "{envelope:?} cut at {cut}"
                );
            }
            let mut padded = bytes.clone();
            padded.push(0);
            assert!(Envelope::decode(&padded).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = Envelope::decode(&bytes);
        }
    }
}

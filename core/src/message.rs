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
//!                          answered by MapPage x n (a newer map), MapCurrent, NotAuthorized or Removed
//!                      Leave { network }                                 answered by Removed
//! controller -> node   MapPage { network, version, index, count, data }  also pushed on every change
//!                      Removed { network, network_id }                   also pushed on removal
//!                      RelayToken { network, token }                    after every poll answer
//! ```
//!
//! Only `Removed` ends a membership, and only for the network id the node saved when it joined: a
//! controller that answers "not a member" (a restored old database, a foreign one) is not believed
//! to have removed anyone.
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
    /// The sender is a member of `network` but not authorized (deauthorized), or not a member the
    /// controller knows of (`member: false`: an unknown network, or a key it has no record of). The
    /// node keeps its membership and asks again later; with `member: false` it also keeps its peers
    /// and map, since the controller may have lost its state.
    NotAuthorized {
        network: String,
        member: bool,
    },
    /// The controller removed the sender from the network `network_id` (`meshd member remove`, the
    /// network deleted, or the node's own `Leave`): the node forgets its membership and may join again
    /// with a token.
    Removed {
        network: String,
        network_id: NetworkId,
    },
    /// The sender wants out of `network`: the controller removes it and answers `Removed`. A
    /// controller that does not know the sender answers "not a member", which must fit in the request
    /// (the source may be forged): `pad` makes the room (zero bytes, [`LEAVE_PAD`] of them).
    Leave {
        network: String,
        pad: Vec<u8>,
    },
    /// The member's current ticket for the controller's relay, sent after every answer to its poll
    /// (tokens rotate; see `mesh::relay`). A secret between the two, hence only in an envelope.
    RelayToken {
        network: String,
        token: [u8; 8],
    },
}

/// The padding a node puts in its `Leave`, so that a "not a member" answer fits in it.
pub const LEAVE_PAD: usize = 8;

/// A network's random id, drawn when the network is created and saved by each member with its
/// membership, so that a `Removed` from a controller whose database is another one (restored from a
/// backup of a different controller, say) cannot end a membership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkId(pub [u8; 16]);

impl std::fmt::Display for NetworkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for NetworkId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{s:?} is not a network id (32 hex digits)"));
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(NetworkId(id))
    }
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
    /// The network's id, which the node keeps with its membership.
    pub network_id: NetworkId,
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

/// The most bytes a sealed envelope carrying `body` takes on the wire, whatever its counter.
pub fn sealed_len(body: &Body) -> usize {
    let worst = Envelope {
        counter: u64::MAX,
        body: body.clone(),
    };
    meshd_packet::wire::meshd::SEALED_OVERHEAD + worst.encode().len()
}

/// `body` as an answer to a sender not yet authenticated as a member, made to fit `limit` sealed
/// bytes (the length of the datagram it answers), or `None` if it cannot: such an answer may go to
/// a forged source, so it must never be larger than what asked for it. A refusal too long to fit
/// loses its message (not half of it): its kind says what happened, and the node explains each kind
/// itself.
pub fn fit_reply(body: Body, limit: usize) -> Option<Body> {
    if sealed_len(&body) <= limit {
        return Some(body);
    }
    let Body::JoinRefused(RefusedMsg { kind, .. }) = body else {
        return None;
    };
    let bare = Body::JoinRefused(RefusedMsg {
        kind,
        message: String::new(),
    });
    (sealed_len(&bare) <= limit).then_some(bare)
}

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
                network_id: NetworkId([0xab; 16]),
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
            Body::Removed {
                network: "lab".into(),
                network_id: NetworkId([7; 16]),
            },
            Body::Leave {
                network: "lab".into(),
                pad: vec![0; LEAVE_PAD],
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
    fn replies_fit_the_limit_or_are_not_made() {
        let refusal = |message: &str| {
            Body::JoinRefused(RefusedMsg {
                kind: RefusalKind::Unknown,
                message: message.into(),
            })
        };
        let long = "é".repeat(100) + "this controller does not know the token";
        let full = sealed_len(&refusal(&long));
        let bare = sealed_len(&refusal(""));
        for limit in 0..full + 5 {
            let fitted = fit_reply(refusal(&long), limit);
            if let Some(body) = &fitted {
                assert!(sealed_len(body) <= limit, "limit {limit}");
            }
            let expected = match limit {
                l if l >= full => Some(refusal(&long)),
                l if l >= bare => Some(refusal("")),
                _ => None,
            };
            assert_eq!(fitted, expected, "limit {limit}");
        }
        let other = Body::NotAuthorized {
            network: "lab".into(),
            member: false,
        };
        let len = sealed_len(&other);
        assert_eq!(fit_reply(other.clone(), len), Some(other.clone()));
        assert_eq!(fit_reply(other, len - 1), None, "only a refusal can shrink");
    }

    #[test]
    fn network_ids_read_back_from_hex() {
        let id = NetworkId(core::array::from_fn(|i| (i * 17) as u8));
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<NetworkId>(), Ok(id));
        assert!("00".parse::<NetworkId>().is_err());
        assert!("zz".repeat(16).parse::<NetworkId>().is_err());
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

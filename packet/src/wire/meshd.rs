//! meshd's own messages on the WireGuard UDP port: sealed envelopes and relay frames.
//!
//! They share the port with WireGuard, so their first four bytes must never read as a WireGuard
//! header. Every stock implementation reads the first four bytes as one little-endian 32-bit type
//! and drops anything other than 1-4 (with the matching length) without answering: Linux
//! (`drivers/net/wireguard/receive.c`, `validate_header_len` returns 0 and `prepare_skb_header`
//! fails, so `wg_packet_receive` frees the skb), wireguard-go (`device/receive.go`,
//! `RoutineReceiveIncoming`: the `default` arm logs "Received message with unknown type" and
//! continues) and boringtun (`Tunn::parse_incoming_packet` matches on `(type, length)` and returns
//! `InvalidPacket`). So a meshd message sent to a stock peer costs it one dropped datagram.
//!
//! meshd takes the first bytes with the high bit set, `0x80..=0xff`, and keeps the reserved bytes
//! zero like WireGuard. The high bit leaves 5-127 free should WireGuard ever define more messages,
//! and makes [`is_meshd`] one test on the first byte.
//!
//! Layouts (little-endian where it matters; these two carry no integers):
//!
//! ```text
//! sealed envelope  0x80 | 0 0 0 | sender static key (32) | nonce (24) | ciphertext (n) | tag (16)
//! relay frame      0x81 | 0 0 0 | relay token (8) | destination static key (32) | inner datagram (>= 4)
//! ```
//!
//! The relay token is the sender's ticket to use the relay: a random value the relay issued to that
//! member over their sealed control channel, rotated, and checked before a frame is forwarded (see
//! `meshd::mesh::relay`). The relay zeroes it on the way out, so members never see each other's.
//!
//! The crypto that fills and opens an envelope is `meshd_crypto::sealed`; this module only frames.

use super::{AEAD_TAG_LEN, PUBLIC_KEY_LEN};
use crate::ParseError;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The first type byte meshd uses; every first byte from here to 0xff is meshd's.
pub const MESHD_TYPE_MIN: u8 = 0x80;
/// Message type byte of a sealed envelope.
pub const TYPE_SEALED: u8 = 0x80;
/// Message type byte of a relay frame.
pub const TYPE_RELAY: u8 = 0x81;

/// Length of the XChaCha20-Poly1305 nonce of a sealed envelope.
pub const SEALED_NONCE_LEN: usize = 24;
/// Size of a sealed envelope's header; the header is also the AEAD's associated data.
pub const SEALED_HEADER_LEN: usize = 60;
/// The shortest sealed envelope: header plus the tag of an empty plaintext.
pub const SEALED_MIN_LEN: usize = SEALED_HEADER_LEN + AEAD_TAG_LEN;
/// Bytes a sealed envelope adds around its plaintext.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER_LEN + AEAD_TAG_LEN;
/// Length of the relay token in a relay frame's header.
pub const RELAY_TOKEN_LEN: usize = 8;
/// Where the relay token sits in a relay frame, for a relay that zeroes it in place.
pub const RELAY_TOKEN_RANGE: core::ops::Range<usize> = 4..4 + RELAY_TOKEN_LEN;
/// Size of a relay frame's header.
pub const RELAY_HEADER_LEN: usize = 44;
/// The shortest inner datagram worth forwarding: a four-byte type header.
pub const RELAY_INNER_MIN_LEN: usize = 4;
/// The shortest relay frame.
pub const RELAY_MIN_LEN: usize = RELAY_HEADER_LEN + RELAY_INNER_MIN_LEN;

/// The fixed front of a sealed envelope.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SealedHeader {
    pub message_type: u8,
    pub reserved: [u8; 3],
    /// The sender's static public key, in clear: the recipient needs it to derive the key. It is
    /// authenticated (it is in the key derivation and in the associated data).
    pub sender: [u8; PUBLIC_KEY_LEN],
    /// Random per envelope; 192 bits, so random choice never repeats in practice.
    pub nonce: [u8; SEALED_NONCE_LEN],
}

const _: () = assert!(size_of::<SealedHeader>() == SEALED_HEADER_LEN);

impl SealedHeader {
    pub fn new(sender: [u8; PUBLIC_KEY_LEN], nonce: [u8; SEALED_NONCE_LEN]) -> Self {
        let mut h = Self::new_zeroed();
        h.message_type = TYPE_SEALED;
        h.sender = sender;
        h.nonce = nonce;
        h
    }
}

impl core::fmt::Debug for SealedHeader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SealedHeader")
            .field("sender", &Short(&self.sender))
            .finish_non_exhaustive()
    }
}

/// The fixed front of a relay frame.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RelayHeader {
    pub message_type: u8,
    pub reserved: [u8; 3],
    /// The sender's ticket for the relay (zero on the way from the relay to the destination).
    pub token: [u8; RELAY_TOKEN_LEN],
    /// The static public key of the node the inner datagram is for. The relay forwards the frame
    /// unchanged to the endpoint it knows for this key; the destination checks that it is its own.
    pub destination: [u8; PUBLIC_KEY_LEN],
}

const _: () = assert!(size_of::<RelayHeader>() == RELAY_HEADER_LEN);

impl RelayHeader {
    pub fn new(destination: [u8; PUBLIC_KEY_LEN], token: [u8; RELAY_TOKEN_LEN]) -> Self {
        let mut h = Self::new_zeroed();
        h.message_type = TYPE_RELAY;
        h.token = token;
        h.destination = destination;
        h
    }
}

impl core::fmt::Debug for RelayHeader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RelayHeader")
            .field("destination", &Short(&self.destination))
            .finish_non_exhaustive()
    }
}

/// Keys in `Debug` output as the four-byte fingerprint the rest of meshd logs.
struct Short<'a>(&'a [u8; PUBLIC_KEY_LEN]);

impl core::fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// A sealed envelope, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedEnvelope<'a> {
    pub header: &'a SealedHeader,
    /// The ciphertext followed by the 16-byte tag; never shorter than the tag.
    pub ciphertext: &'a [u8],
}

impl SealedEnvelope<'_> {
    /// The associated data the AEAD authenticates: the whole header.
    pub fn aad(&self) -> &[u8] {
        self.header.as_bytes()
    }

    /// Length of the plaintext inside.
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len().saturating_sub(AEAD_TAG_LEN)
    }
}

/// A relay frame, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayFrame<'a> {
    pub header: &'a RelayHeader,
    /// The datagram being relayed: a WireGuard message or a sealed envelope, at least four bytes,
    /// never itself a relay frame.
    pub inner: &'a [u8],
}

/// A parsed meshd message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeshdMessage<'a> {
    Sealed(SealedEnvelope<'a>),
    Relay(RelayFrame<'a>),
}

impl MeshdMessage<'_> {
    /// The message type byte.
    pub fn message_type(&self) -> u8 {
        match self {
            MeshdMessage::Sealed(_) => TYPE_SEALED,
            MeshdMessage::Relay(_) => TYPE_RELAY,
        }
    }

    /// Total length on the wire.
    pub fn len(&self) -> usize {
        match self {
            MeshdMessage::Sealed(m) => SEALED_HEADER_LEN + m.ciphertext.len(),
            MeshdMessage::Relay(m) => RELAY_HEADER_LEN + m.inner.len(),
        }
    }

    /// Never true: every message has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the wire bytes to `out` (the same bytes it was parsed from).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            MeshdMessage::Sealed(m) => {
                out.extend_from_slice(m.header.as_bytes());
                out.extend_from_slice(m.ciphertext);
            }
            MeshdMessage::Relay(m) => {
                out.extend_from_slice(m.header.as_bytes());
                out.extend_from_slice(m.inner);
            }
        }
    }
}

/// Whether a datagram belongs to meshd rather than WireGuard, by its first byte alone.
///
/// The receive path routes on this before parsing; it does not validate. A datagram for which it is
/// false is never accepted by [`parse_meshd`], and one for which it is true is never accepted by
/// `wire::parse`.
#[inline]
pub fn is_meshd(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|t| *t >= MESHD_TYPE_MIN)
}

/// Appends a relay frame for `destination` with the sender's relay `token` around `inner` to `out`.
pub fn write_relay_frame(
    destination: [u8; PUBLIC_KEY_LEN],
    token: [u8; RELAY_TOKEN_LEN],
    inner: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(RelayHeader::new(destination, token).as_bytes());
    out.extend_from_slice(inner);
}

/// Parses one datagram as a meshd message.
///
/// Rejects fewer than four bytes ([`ParseError::Truncated`]); a first byte that is not a meshd type
/// ([`ParseError::UnknownType`]); nonzero reserved bytes ([`ParseError::ReservedNotZero`]); an
/// envelope shorter than header plus tag or a relay frame with fewer than four inner bytes
/// ([`ParseError::BadMessageLength`]); and a relay frame whose inner datagram is itself a relay frame
/// ([`ParseError::UnknownType`]: nesting would let one frame bounce between relays).
pub fn parse_meshd(datagram: &[u8]) -> Result<MeshdMessage<'_>, ParseError> {
    let [t, r0, r1, r2, ..] = datagram else {
        return Err(ParseError::Truncated);
    };
    if *t != TYPE_SEALED && *t != TYPE_RELAY {
        return Err(ParseError::UnknownType);
    }
    if (*r0 | *r1 | *r2) != 0 {
        return Err(ParseError::ReservedNotZero);
    }
    // The casts can only fail on length, which the guards have fixed; a failure maps to the same
    // error rather than a panic.
    match *t {
        TYPE_SEALED if datagram.len() >= SEALED_MIN_LEN => SealedHeader::ref_from_prefix(datagram)
            .map(|(header, ciphertext)| MeshdMessage::Sealed(SealedEnvelope { header, ciphertext }))
            .map_err(|_| ParseError::BadMessageLength),
        TYPE_RELAY if datagram.len() >= RELAY_MIN_LEN => {
            let (header, inner) =
                RelayHeader::ref_from_prefix(datagram).map_err(|_| ParseError::BadMessageLength)?;
            if inner.first() == Some(&TYPE_RELAY) {
                return Err(ParseError::UnknownType);
            }
            Ok(MeshdMessage::Relay(RelayFrame { header, inner }))
        }
        _ => Err(ParseError::BadMessageLength),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    use proptest::prelude::*;

    fn sealed_bytes(ciphertext_len: usize) -> Vec<u8> {
        let mut v = SealedHeader::new([0xaa; 32], [0x0b; 24]).as_bytes().to_vec();
        v.extend((0..ciphertext_len).map(|i| i as u8));
        v
    }

    #[test]
    fn fields_sit_at_the_documented_offsets() {
        let b = sealed_bytes(16);
        assert_eq!(&b[0..4], &[0x80, 0, 0, 0]);
        assert_eq!(&b[4..36], &[0xaa; 32]);
        assert_eq!(&b[36..60], &[0x0b; 24]);
        assert_eq!(b.len(), 76);

        let mut b = Vec::new();
        write_relay_frame([0xdd; 32], [0x7e; 8], &[4, 0, 0, 0, 9], &mut b);
        assert_eq!(&b[0..4], &[0x81, 0, 0, 0]);
        assert_eq!(&b[4..12], &[0x7e; 8]);
        assert_eq!(&b[RELAY_TOKEN_RANGE], &[0x7e; 8]);
        assert_eq!(&b[12..44], &[0xdd; 32]);
        assert_eq!(&b[44..], &[4, 0, 0, 0, 9]);
    }

    #[test]
    fn sealed_envelope_parses_into_header_and_ciphertext() {
        let b = sealed_bytes(20);
        let Ok(MeshdMessage::Sealed(m)) = parse_meshd(&b) else {
            panic!("{:?}", parse_meshd(&b));
        };
        assert_eq!(m.header.sender, [0xaa; 32]);
        assert_eq!(m.header.nonce, [0x0b; 24]);
        assert_eq!(m.ciphertext, &b[60..]);
        assert_eq!(m.aad(), &b[..60]);
        assert_eq!(m.plaintext_len(), 4);
    }

    #[test]
    fn sealed_length_bounds() {
        assert!(parse_meshd(&sealed_bytes(16)).is_ok(), "empty plaintext");
        assert_eq!(
            parse_meshd(&sealed_bytes(15)),
            Err(ParseError::BadMessageLength),
            "shorter than the tag"
        );
        assert_eq!(
            parse_meshd(&sealed_bytes(0)[..4]),
            Err(ParseError::BadMessageLength)
        );
        assert_eq!(parse_meshd(&[0x80, 0, 0]), Err(ParseError::Truncated));
        assert_eq!(parse_meshd(&[]), Err(ParseError::Truncated));
    }

    #[test]
    fn relay_frame_carries_wireguard_or_sealed_but_not_relay() {
        let keepalive = [4u8, 0, 0, 0];
        let mut b = Vec::new();
        write_relay_frame([0xdd; 32], [1; 8], &keepalive, &mut b);
        let Ok(MeshdMessage::Relay(f)) = parse_meshd(&b) else {
            panic!("{:?}", parse_meshd(&b));
        };
        assert_eq!(f.header.destination, [0xdd; 32]);
        assert_eq!(f.inner, &keepalive);

        let mut b = Vec::new();
        write_relay_frame([0xdd; 32], [1; 8], &sealed_bytes(16), &mut b);
        assert!(matches!(parse_meshd(&b), Ok(MeshdMessage::Relay(_))));

        let mut nested = Vec::new();
        write_relay_frame([0xee; 32], [1; 8], &b, &mut nested);
        assert_eq!(parse_meshd(&nested), Err(ParseError::UnknownType));

        let mut short = Vec::new();
        write_relay_frame([0xdd; 32], [1; 8], &[4, 0, 0], &mut short);
        assert_eq!(parse_meshd(&short), Err(ParseError::BadMessageLength));
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        for i in 1..4 {
            let mut b = sealed_bytes(16);
            b[i] = 1;
            assert_eq!(parse_meshd(&b), Err(ParseError::ReservedNotZero), "byte {i}");
        }
    }

    #[test]
    fn only_the_two_meshd_types_parse() {
        for t in 0..=255u8 {
            let mut b = sealed_bytes(40);
            b[0] = t;
            let r = parse_meshd(&b);
            match t {
                TYPE_SEALED => assert!(matches!(r, Ok(MeshdMessage::Sealed(_)))),
                TYPE_RELAY => assert!(matches!(r, Ok(MeshdMessage::Relay(_)))),
                _ => assert_eq!(r, Err(ParseError::UnknownType), "type {t}"),
            }
            assert_eq!(is_meshd(&b), t >= 0x80, "type {t}");
        }
        assert!(!is_meshd(&[]));
    }

    #[test]
    fn wireguard_and_meshd_never_both_accept() {
        // Each of WireGuard's messages is refused here, and each of meshd's by WireGuard's parser:
        // the stock implementations read the same four bytes the same way.
        let mut data = vec![4u8, 0, 0, 0];
        data.resize(60, 0);
        assert!(wire::parse(&data).is_ok());
        assert!(!is_meshd(&data));
        assert_eq!(parse_meshd(&data), Err(ParseError::UnknownType));

        let b = sealed_bytes(16);
        assert_eq!(wire::parse(&b), Err(ParseError::UnknownType));
        assert_eq!(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), 0x80);
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            match parse_meshd(&data) {
                Ok(m) => {
                    let mut out = Vec::new();
                    m.write_to(&mut out);
                    prop_assert_eq!(&out, &data);
                    prop_assert_eq!(m.len(), data.len());
                    prop_assert!(is_meshd(&data));
                    prop_assert_eq!(m.message_type(), data[0]);
                    prop_assert!(wire::parse(&data).is_err());
                }
                Err(ParseError::Truncated) => prop_assert!(data.len() < 4),
                Err(e) => prop_assert!(matches!(
                    e,
                    ParseError::UnknownType | ParseError::ReservedNotZero | ParseError::BadMessageLength
                )),
            }
            if !is_meshd(&data) {
                prop_assert!(parse_meshd(&data).is_err());
            }
        }

        #[test]
        fn typed_headers_always_parse_at_any_length(
            relay in any::<bool>(),
            key in any::<[u8; 32]>(),
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut b = if relay {
                RelayHeader::new(key, [3; 8]).as_bytes().to_vec()
            } else {
                SealedHeader::new(key, [7; 24]).as_bytes().to_vec()
            };
            b.extend_from_slice(&body);
            let min_body = if relay { RELAY_INNER_MIN_LEN } else { AEAD_TAG_LEN };
            let r = parse_meshd(&b);
            if body.len() < min_body {
                prop_assert_eq!(r, Err(ParseError::BadMessageLength));
            } else if relay && body[0] == TYPE_RELAY {
                prop_assert_eq!(r, Err(ParseError::UnknownType));
            } else {
                prop_assert!(r.is_ok());
            }
        }
    }
}

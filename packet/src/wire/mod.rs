//! The four WireGuard messages (WireGuard paper, section 5.4) as fixed little-endian layouts.
//!
//! Every message starts with a one-byte type and three reserved zero bytes. Handshake and cookie
//! messages have one fixed size each; a transport data message is a 16-byte header followed by the
//! AEAD ciphertext (the padded packet and a 16-byte tag). [`parse`] is the single entry point: it
//! decides on (type, length), checks the reserved bytes, and hands back a borrowed, typed view. After
//! it succeeds no accessor can panic.
//!
//! Types 1-4 are WireGuard's; a stock peer drops anything else. meshd's own messages use 0x80 and up
//! (see [`meshd`]), which [`parse`] reports as [`ParseError::UnknownType`] and
//! [`meshd::parse_meshd`] reads.

mod cookie;
mod data;
mod handshake;
pub mod meshd;

pub use cookie::CookieReply;
pub use data::DataHeader;
pub use handshake::{HandshakeInitiation, HandshakeResponse};

use crate::ParseError;
/// The traits that view bytes as these messages and back (`ref_from_bytes`, `as_bytes`, ...), so users
/// of the layouts need no direct dependency on zerocopy.
pub use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Message type byte of a handshake initiation.
pub const TYPE_INITIATION: u8 = 1;
/// Message type byte of a handshake response.
pub const TYPE_RESPONSE: u8 = 2;
/// Message type byte of a cookie reply.
pub const TYPE_COOKIE_REPLY: u8 = 3;
/// Message type byte of a transport data message.
pub const TYPE_DATA: u8 = 4;

/// Size of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Size of the transport data header (type, reserved, receiver index, counter).
pub const DATA_HEADER_LEN: usize = 16;
/// Size of a Poly1305 tag, the ciphertext overhead of every AEAD in the protocol.
pub const AEAD_TAG_LEN: usize = 16;
/// The shortest transport data message: header plus the tag of an empty (keepalive) payload.
pub const DATA_MIN_LEN: usize = DATA_HEADER_LEN + AEAD_TAG_LEN;
/// Bytes a transport data message adds around its plaintext (before padding).
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + AEAD_TAG_LEN;
/// The paper pads transport plaintext to a multiple of this.
pub const DATA_PADDING_MULTIPLE: usize = 16;

/// Length of `mac1` and `mac2` (keyed BLAKE2s-128).
pub const MAC_LEN: usize = 16;
/// Offset of `mac1` in a handshake initiation; `mac1` covers every byte before it.
pub const INITIATION_MAC1_OFFSET: usize = INITIATION_LEN - 2 * MAC_LEN;
/// Offset of `mac2` in a handshake initiation; `mac2` covers every byte before it.
pub const INITIATION_MAC2_OFFSET: usize = INITIATION_LEN - MAC_LEN;
/// Offset of `mac1` in a handshake response.
pub const RESPONSE_MAC1_OFFSET: usize = RESPONSE_LEN - 2 * MAC_LEN;
/// Offset of `mac2` in a handshake response.
pub const RESPONSE_MAC2_OFFSET: usize = RESPONSE_LEN - MAC_LEN;

/// Length of an X25519 public key on the wire.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of a TAI64N timestamp.
pub const TIMESTAMP_LEN: usize = 12;
/// Length of the XChaCha20 nonce in a cookie reply.
pub const COOKIE_NONCE_LEN: usize = 24;
/// Length of a cookie (a keyed BLAKE2s-128 output).
pub const COOKIE_LEN: usize = 16;

/// A parsed WireGuard message, borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message<'a> {
    Initiation(&'a HandshakeInitiation),
    Response(&'a HandshakeResponse),
    CookieReply(&'a CookieReply),
    /// `payload` is the ciphertext: the padded packet followed by the 16-byte tag.
    Data {
        header: &'a DataHeader,
        payload: &'a [u8],
    },
}

impl Message<'_> {
    /// The message type byte.
    pub fn message_type(&self) -> u8 {
        match self {
            Message::Initiation(_) => TYPE_INITIATION,
            Message::Response(_) => TYPE_RESPONSE,
            Message::CookieReply(_) => TYPE_COOKIE_REPLY,
            Message::Data { .. } => TYPE_DATA,
        }
    }

    /// The index the receiver of this message chose for the session it belongs to (what the receiver
    /// demultiplexes on); `None` for an initiation, which opens a session and so names none.
    pub fn receiver_index(&self) -> Option<u32> {
        match self {
            Message::Initiation(_) => None,
            Message::Response(m) => Some(m.receiver_index.get()),
            Message::CookieReply(m) => Some(m.receiver_index.get()),
            Message::Data { header, .. } => Some(header.receiver_index.get()),
        }
    }

    /// Total length on the wire.
    pub fn len(&self) -> usize {
        match self {
            Message::Initiation(_) => INITIATION_LEN,
            Message::Response(_) => RESPONSE_LEN,
            Message::CookieReply(_) => COOKIE_REPLY_LEN,
            Message::Data { payload, .. } => DATA_HEADER_LEN + payload.len(),
        }
    }

    /// Never true: every message has at least its four-byte type header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the message's wire bytes to `out` (the same bytes it was parsed from).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use zerocopy::IntoBytes;
        match self {
            Message::Initiation(m) => out.extend_from_slice(m.as_bytes()),
            Message::Response(m) => out.extend_from_slice(m.as_bytes()),
            Message::CookieReply(m) => out.extend_from_slice(m.as_bytes()),
            Message::Data { header, payload } => {
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(payload);
            }
        }
    }
}

/// Reads the type byte and checks the reserved bytes, without looking at the length.
///
/// Useful to demultiplex WireGuard messages from meshd's own (types 0x80 and 0x81, see [`meshd`]) before full parsing.
pub fn message_type(datagram: &[u8]) -> Result<u8, ParseError> {
    match datagram {
        [t, r0, r1, r2, ..] => {
            if !(TYPE_INITIATION..=TYPE_DATA).contains(t) {
                Err(ParseError::UnknownType)
            } else if (*r0 | *r1 | *r2) != 0 {
                Err(ParseError::ReservedNotZero)
            } else {
                Ok(*t)
            }
        }
        _ => Err(ParseError::Truncated),
    }
}

/// Parses one datagram as a WireGuard message.
///
/// Rejects datagrams shorter than the four-byte type header ([`ParseError::Truncated`]), types other
/// than 1-4 ([`ParseError::UnknownType`]), nonzero reserved bytes ([`ParseError::ReservedNotZero`]) and
/// a length that is not exactly the message's size, or for data shorter than header plus tag
/// ([`ParseError::BadMessageLength`]).
pub fn parse(datagram: &[u8]) -> Result<Message<'_>, ParseError> {
    let t = message_type(datagram)?;
    // The casts below can only fail on length (the types are `Unaligned` and accept any bytes), which
    // the match arms have already fixed, so a cast failure maps to the same error for robustness.
    match (t, datagram.len()) {
        (TYPE_INITIATION, INITIATION_LEN) => HandshakeInitiation::ref_from_bytes(datagram)
            .map(Message::Initiation)
            .map_err(|_| ParseError::BadMessageLength),
        (TYPE_RESPONSE, RESPONSE_LEN) => HandshakeResponse::ref_from_bytes(datagram)
            .map(Message::Response)
            .map_err(|_| ParseError::BadMessageLength),
        (TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN) => CookieReply::ref_from_bytes(datagram)
            .map(Message::CookieReply)
            .map_err(|_| ParseError::BadMessageLength),
        (TYPE_DATA, len) if len >= DATA_MIN_LEN => DataHeader::ref_from_prefix(datagram)
            .map(|(header, payload)| Message::Data { header, payload })
            .map_err(|_| ParseError::BadMessageLength),
        _ => Err(ParseError::BadMessageLength),
    }
}

#[cfg(test)]
mod tests;

//! The one error type of the parsers: small, `Copy`, never allocates.

use core::fmt;

/// Why a byte string is not the packet or message it was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Fewer bytes than the fixed part of the header needs.
    Truncated,
    /// The IP version nibble is neither 4 nor 6.
    BadVersion,
    /// A length field disagrees with the bytes present (too short, or beyond the buffer).
    BadLength,
    /// The IPv4 header length field is below 5 words.
    BadHeaderLength,
    /// The message type is not one this parser knows.
    UnknownType,
    /// A known message type with the wrong total length for it.
    BadMessageLength,
    /// The reserved bytes of a WireGuard message header are not zero.
    ReservedNotZero,
    /// A prefix length beyond the address width (32 for IPv4, 128 for IPv6).
    BadPrefixLength,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Truncated => "packet shorter than its fixed header",
            ParseError::BadVersion => "IP version is neither 4 nor 6",
            ParseError::BadLength => "length field disagrees with the packet size",
            ParseError::BadHeaderLength => "IPv4 header length below 20 bytes",
            ParseError::UnknownType => "unknown message type",
            ParseError::BadMessageLength => "wrong length for the message type",
            ParseError::ReservedNotZero => "reserved header bytes are not zero",
            ParseError::BadPrefixLength => "prefix length longer than the address",
        })
    }
}

impl std::error::Error for ParseError {}

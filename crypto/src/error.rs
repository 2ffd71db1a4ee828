//! Error types. All are small `Copy` enums: the receive path drops bad packets by the thousand and
//! must not allocate to say why. Each variant is one drop reason the daemon can count.

use core::fmt;
use meshd_packet::ParseError;

/// An AEAD operation failed: wrong key, nonce, associated data, or a forged or truncated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AeadError;

/// X25519 produced the all-zero output: the public key is a low-order point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DhError;

/// Why a handshake message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeError {
    /// A field did not decrypt: the message is forged, corrupted, or for another key.
    Decrypt,
    /// A public key in the message (or the configured peer key) is a low-order point.
    LowOrderPoint,
    /// The initiation carries a TAI64N timestamp not greater than the last one accepted from the peer.
    ReplayedTimestamp,
    /// The peer's previous initiation was consumed less than 1/50 s ago.
    Flood,
    /// The initiation decrypted to a static key other than the one of the peer state supplied.
    WrongPeer,
    /// A response whose receiver index is not the one of the pending initiation.
    WrongIndex,
}

/// Why a MAC check or a cookie reply was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CookieError {
    /// `mac1` does not match: the sender does not know our public key (or the message is corrupt).
    BadMac1,
    /// A cookie reply did not decrypt.
    Decrypt,
    /// A cookie reply arrived but we have not sent a handshake message it could answer.
    Unexpected,
}

/// Why a transport message could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendError {
    /// The session has sent REJECT_AFTER_MESSAGES messages; a new handshake is needed.
    CounterExhausted,
    /// The session is REJECT_AFTER_TIME old.
    Expired,
    /// The buffer has no room for header, padding and tag around the plaintext.
    BufferTooSmall,
}

/// Why a transport message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvError {
    /// Not a well-formed transport data message.
    Malformed(ParseError),
    /// The receiver index is not this session's.
    WrongIndex,
    /// The session is REJECT_AFTER_TIME old.
    Expired,
    /// The counter was already seen, is too old for the window, or is past REJECT_AFTER_MESSAGES.
    Replayed,
    /// Authentication failed.
    Decrypt,
}

impl fmt::Display for AeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("authenticated decryption failed")
    }
}

impl fmt::Display for DhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X25519 with a low-order point")
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::Decrypt => "handshake field did not decrypt",
            HandshakeError::LowOrderPoint => "low-order public key",
            HandshakeError::ReplayedTimestamp => "initiation timestamp not newer than the last one",
            HandshakeError::Flood => "initiations arrive faster than 50 per second",
            HandshakeError::WrongPeer => "initiation from a different static key",
            HandshakeError::WrongIndex => "response for another handshake",
        })
    }
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CookieError::BadMac1 => "bad mac1",
            CookieError::Decrypt => "cookie reply did not decrypt",
            CookieError::Unexpected => "cookie reply without a handshake message to answer",
        })
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::CounterExhausted => "session reached REJECT_AFTER_MESSAGES",
            SendError::Expired => "session reached REJECT_AFTER_TIME",
            SendError::BufferTooSmall => "no room for header, padding and tag",
        })
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Malformed(e) => write!(f, "malformed data message: {e}"),
            RecvError::WrongIndex => f.write_str("receiver index of another session"),
            RecvError::Expired => f.write_str("session reached REJECT_AFTER_TIME"),
            RecvError::Replayed => f.write_str("replayed or too old counter"),
            RecvError::Decrypt => f.write_str("authentication failed"),
        }
    }
}

impl std::error::Error for AeadError {}
impl std::error::Error for DhError {}
impl std::error::Error for HandshakeError {}
impl std::error::Error for CookieError {}
impl std::error::Error for SendError {}
impl std::error::Error for RecvError {}

impl From<AeadError> for HandshakeError {
    fn from(_: AeadError) -> Self {
        HandshakeError::Decrypt
    }
}

impl From<DhError> for HandshakeError {
    fn from(_: DhError) -> Self {
        HandshakeError::LowOrderPoint
    }
}

impl From<ParseError> for RecvError {
    fn from(e: ParseError) -> Self {
        RecvError::Malformed(e)
    }
}

//! Cookie reply (type 3, 64 bytes), WireGuard paper 5.4.7.

use super::{AEAD_TAG_LEN, COOKIE_LEN, COOKIE_NONCE_LEN, COOKIE_REPLY_LEN, TYPE_COOKIE_REPLY};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Sent by a responder under load instead of a handshake response.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CookieReply {
    pub message_type: u8,
    pub reserved: [u8; 3],
    /// The sender index of the handshake message this answers.
    pub receiver_index: U32,
    /// Random XChaCha20 nonce.
    pub nonce: [u8; COOKIE_NONCE_LEN],
    /// The cookie, sealed with the answered message's `mac1` as associated data.
    pub encrypted_cookie: [u8; COOKIE_LEN + AEAD_TAG_LEN],
}

const _: () = assert!(size_of::<CookieReply>() == COOKIE_REPLY_LEN);

impl CookieReply {
    /// A cookie reply with the type set and every other byte zero.
    pub fn new() -> Self {
        let mut m = Self::new_zeroed();
        m.message_type = TYPE_COOKIE_REPLY;
        m
    }
}

impl Default for CookieReply {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for CookieReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieReply")
            .field("receiver_index", &self.receiver_index.get())
            .finish_non_exhaustive()
    }
}

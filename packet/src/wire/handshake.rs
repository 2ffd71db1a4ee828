//! Handshake initiation (type 1, 148 bytes) and response (type 2, 92 bytes), WireGuard paper 5.4.2
//! and 5.4.3.

use super::AEAD_TAG_LEN;
use super::{
    INITIATION_LEN, INITIATION_MAC1_OFFSET, INITIATION_MAC2_OFFSET, MAC_LEN, PUBLIC_KEY_LEN, RESPONSE_LEN,
    RESPONSE_MAC1_OFFSET, RESPONSE_MAC2_OFFSET, TIMESTAMP_LEN, TYPE_INITIATION, TYPE_RESPONSE,
};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The first handshake message, initiator to responder.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HandshakeInitiation {
    pub message_type: u8,
    pub reserved: [u8; 3],
    /// The initiator's index for the session this handshake creates.
    pub sender_index: U32,
    /// The initiator's ephemeral public key, in the clear.
    pub unencrypted_ephemeral: [u8; PUBLIC_KEY_LEN],
    /// The initiator's static public key, sealed.
    pub encrypted_static: [u8; PUBLIC_KEY_LEN + AEAD_TAG_LEN],
    /// A TAI64N timestamp, sealed.
    pub encrypted_timestamp: [u8; TIMESTAMP_LEN + AEAD_TAG_LEN],
    pub mac1: [u8; MAC_LEN],
    pub mac2: [u8; MAC_LEN],
}

const _: () = assert!(size_of::<HandshakeInitiation>() == INITIATION_LEN);
const _: () = assert!(core::mem::offset_of!(HandshakeInitiation, mac1) == INITIATION_MAC1_OFFSET);
const _: () = assert!(core::mem::offset_of!(HandshakeInitiation, mac2) == INITIATION_MAC2_OFFSET);

impl HandshakeInitiation {
    /// An initiation with the type set and every other byte zero.
    pub fn new() -> Self {
        let mut m = Self::new_zeroed();
        m.message_type = TYPE_INITIATION;
        m
    }

    /// The bytes `mac1` authenticates.
    pub fn mac1_input(&self) -> &[u8] {
        &self.as_bytes()[..INITIATION_MAC1_OFFSET]
    }

    /// The bytes `mac2` authenticates (everything up to and including `mac1`).
    pub fn mac2_input(&self) -> &[u8] {
        &self.as_bytes()[..INITIATION_MAC2_OFFSET]
    }
}

impl Default for HandshakeInitiation {
    fn default() -> Self {
        Self::new()
    }
}

/// The second handshake message, responder to initiator.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HandshakeResponse {
    pub message_type: u8,
    pub reserved: [u8; 3],
    /// The responder's index for the session.
    pub sender_index: U32,
    /// The initiator's index, copied from the initiation.
    pub receiver_index: U32,
    /// The responder's ephemeral public key, in the clear.
    pub unencrypted_ephemeral: [u8; PUBLIC_KEY_LEN],
    /// The empty string, sealed: only a tag, which proves the responder derived the same keys.
    pub encrypted_nothing: [u8; AEAD_TAG_LEN],
    pub mac1: [u8; MAC_LEN],
    pub mac2: [u8; MAC_LEN],
}

const _: () = assert!(size_of::<HandshakeResponse>() == RESPONSE_LEN);
const _: () = assert!(core::mem::offset_of!(HandshakeResponse, mac1) == RESPONSE_MAC1_OFFSET);
const _: () = assert!(core::mem::offset_of!(HandshakeResponse, mac2) == RESPONSE_MAC2_OFFSET);

impl HandshakeResponse {
    /// A response with the type set and every other byte zero.
    pub fn new() -> Self {
        let mut m = Self::new_zeroed();
        m.message_type = TYPE_RESPONSE;
        m
    }

    /// The bytes `mac1` authenticates.
    pub fn mac1_input(&self) -> &[u8] {
        &self.as_bytes()[..RESPONSE_MAC1_OFFSET]
    }

    /// The bytes `mac2` authenticates (everything up to and including `mac1`).
    pub fn mac2_input(&self) -> &[u8] {
        &self.as_bytes()[..RESPONSE_MAC2_OFFSET]
    }
}

impl Default for HandshakeResponse {
    fn default() -> Self {
        Self::new()
    }
}

// Handshake messages carry no secrets in the clear, but the ciphertext fields are long; the derived
// `Debug` of byte arrays is unreadable, so print the fields that identify a message.
impl core::fmt::Debug for HandshakeInitiation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandshakeInitiation")
            .field("sender_index", &self.sender_index.get())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for HandshakeResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandshakeResponse")
            .field("sender_index", &self.sender_index.get())
            .field("receiver_index", &self.receiver_index.get())
            .finish_non_exhaustive()
    }
}

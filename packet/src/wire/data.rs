//! Transport data message header (type 4, 16 bytes), WireGuard paper 5.4.6.

use super::{DATA_HEADER_LEN, TYPE_DATA};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The cleartext header in front of every transport data ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DataHeader {
    pub message_type: u8,
    pub reserved: [u8; 3],
    /// The index the receiver chose for this session.
    pub receiver_index: U32,
    /// The nonce counter (also the replay-window position).
    pub counter: U64,
}

const _: () = assert!(size_of::<DataHeader>() == DATA_HEADER_LEN);

impl DataHeader {
    pub fn new(receiver_index: u32, counter: u64) -> Self {
        DataHeader {
            message_type: TYPE_DATA,
            reserved: [0; 3],
            receiver_index: U32::new(receiver_index),
            counter: U64::new(counter),
        }
    }
}

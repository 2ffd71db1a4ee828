//! `wire::parse` never panics, agrees with `message_type`, and a parsed message re-serialises to
//! exactly the bytes it was parsed from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_packet::ParseError;
use meshd_packet::wire::{self, Message};

fuzz_target!(|data: &[u8]| {
    match wire::parse(data) {
        Ok(m) => {
            let mut out = Vec::with_capacity(data.len());
            m.write_to(&mut out);
            assert_eq!(out, data, "round trip");
            assert_eq!(m.len(), data.len());
            assert_eq!(wire::message_type(data), Ok(m.message_type()));
            if let Message::Data { payload, .. } = m {
                assert!(payload.len() >= wire::AEAD_TAG_LEN);
            }
        }
        Err(ParseError::Truncated) => assert!(data.len() < 4),
        Err(e) => assert!(
            matches!(
                e,
                ParseError::UnknownType | ParseError::ReservedNotZero | ParseError::BadMessageLength
            ),
            "{e:?}"
        ),
    }
});

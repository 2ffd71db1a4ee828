//! The control messages a node and its controller exchange (`meshd_core::message`): decoding
//! arbitrary plaintext never panics, what decodes encodes and decodes back to the same message, and
//! an answer fitted to a stranger's request is never larger than the limit it was fitted to.
//!
//! Input layout: 2 bytes limit for `fit_reply`, then the plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_core::message::{Envelope, fit_reply, sealed_len};

fuzz_target!(|data: &[u8]| {
    let (head, plaintext) = data.split_at(data.len().min(2));
    let limit = match head {
        [a, b] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => 0,
    };
    for bytes in [data, plaintext] {
        let Ok(envelope) = Envelope::decode(bytes) else {
            continue;
        };
        let encoded = envelope.encode();
        assert_eq!(Envelope::decode(&encoded).as_ref(), Ok(&envelope), "round trip");
        assert!(encoded.len() <= bytes.len(), "re-encoding grew the message");
        if let Some(fitted) = fit_reply(envelope.body.clone(), limit) {
            assert!(sealed_len(&fitted) <= limit, "{fitted:?} over {limit}");
        }
    }
});

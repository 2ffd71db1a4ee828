//! The network map and its pages (`meshd_core::map`): decoding arbitrary bytes never panics and
//! round-trips what it accepts; the assembler fed arbitrary pages never panics and only ever
//! completes a map of the network and a version above the one held; and any decodable map cut into
//! pages comes back whole from the pages in reverse order.
//!
//! Input layout: a sequence of pages, each `version (1) | index (1) | count (1) | len (1) | data (len)`;
//! the whole input is also tried as an encoded map.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_core::map::{Assembler, NetworkMap, PageOutcome, paginate};
use meshd_core::message::MapPageMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(map) = NetworkMap::decode(data) {
        let encoded = map.encode();
        assert_eq!(NetworkMap::decode(&encoded).as_ref(), Ok(&map), "round trip");
        if map.version > 0 {
            let mut pages = paginate(&map.network, map.version, &encoded);
            pages.reverse();
            let mut assembler = Assembler::default();
            let mut done = None;
            for page in pages {
                if let PageOutcome::Complete(m) = assembler.add(&map.network, map.version - 1, page) {
                    done = Some(m);
                }
            }
            assert_eq!(done.as_ref(), Some(&map), "every page given, not the same map");
        }
    }

    let have = 3u64;
    let mut assembler = Assembler::default();
    let mut rest = data;
    while let [version, index, count, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let page = MapPageMsg {
            network: if version & 0x80 == 0 { "lab" } else { "other" }.to_string(),
            version: u64::from(*version & 0x7f),
            index: u16::from(*index),
            count: u16::from(*count),
            data: tail[..n].to_vec(),
        };
        rest = &tail[n..];
        if let PageOutcome::Complete(map) = assembler.add("lab", have, page) {
            assert!(map.version > have, "completed a version not above the one held");
        }
    }
});

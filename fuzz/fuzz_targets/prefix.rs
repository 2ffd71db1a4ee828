//! Prefix text parsing: never panics, round-trips through `Display`, agrees with the standard
//! library's address parser, and never yields a prefix with host bits set.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let parsed = s.parse::<IpPrefix>();
    let (v4, v6) = (s.parse::<Ipv4Prefix>(), s.parse::<Ipv6Prefix>());

    // The family-specific parsers accept exactly what the general one does, for their family.
    match parsed {
        Ok(IpPrefix::V4(p)) => assert!(v4 == Ok(p) && v6.is_err()),
        Ok(IpPrefix::V6(p)) => assert!(v6 == Ok(p) && v4.is_err()),
        Err(_) => assert!(v4.is_err() && v6.is_err()),
    }

    // Against std: an address it accepts, with a canonical decimal length within the width, parses.
    let (addr, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => Some(width),
            Some(l) => l.parse::<u8>().ok().filter(|n| n.to_string() == l && *n <= width),
        };
        match len {
            Some(len) => assert_eq!(parsed, Ok(IpPrefix::new(ip, len).expect("length within width"))),
            None => assert!(parsed.is_err()),
        }
    } else {
        assert!(parsed.is_err(), "{s:?} parsed although std rejects its address");
    }

    let Ok(prefix) = parsed else { return };
    assert!(prefix.len() <= prefix.max_len());
    assert!(prefix.contains(prefix.addr()));
    assert_eq!(
        IpPrefix::new(prefix.addr(), prefix.len()),
        Ok(prefix),
        "host bits were left set"
    );
    let shown = prefix.to_string();
    assert_eq!(
        shown.parse::<IpPrefix>(),
        Ok(prefix),
        "{shown} does not parse back"
    );
    assert_eq!(
        shown.parse::<IpPrefix>().map(|p| p.to_string()),
        Ok(shown.clone()),
        "display not canonical"
    );
});

//! The only addresses the tests may use: ranges reserved for documentation and shared address space,
//! so that nothing a test configures can ever mean a real host.

use std::net::IpAddr;

/// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 (RFC 5737), 100.64.0.0/10 (RFC 6598) and
/// 2001:db8::/32 (RFC 3849).
pub fn is_documentation(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113)) || (a == 100 && b & 0xc0 == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}

/// Parses `ADDR` or `ADDR/LEN` and panics unless the address is in a documentation range.
#[track_caller]
pub fn checked(text: &str) -> IpAddr {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("`{text}` is not an IP address: {e}"));
    if let Some(len) = len {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let ok = len.parse::<u8>().is_ok_and(|len| len <= max);
        assert!(ok, "`{text}` has a bad prefix length");
    }
    assert!(
        is_documentation(addr),
        "`{text}` is outside the documentation ranges the tests may use \
         (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 100.64.0.0/10, 2001:db8::/32)"
    );
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_the_documentation_ranges() {
        for ok in [
            "192.0.2.0",
            "192.0.2.255",
            "198.51.100.7",
            "203.0.113.1",
            "100.64.0.1",
            "100.127.255.254",
            "2001:db8::1",
            "2001:db8:ffff::1",
        ] {
            assert!(is_documentation(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "192.0.3.1",
            "198.51.101.1",
            "203.0.112.255",
            "100.63.255.255",
            "100.128.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "2001:db9::1",
            "2001:0:db8::1",
            "fe80::1",
        ] {
            assert!(!is_documentation(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn checked_reads_prefixes() {
        assert_eq!(
            checked("2001:db8::2/64"),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
        assert!(std::panic::catch_unwind(|| checked("192.0.2.1/33")).is_err());
        assert!(std::panic::catch_unwind(|| checked("10.1.2.3/8")).is_err());
    }
}

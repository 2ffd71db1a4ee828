//! Which blocks a network may take: not a special-purpose range that no operator can route, and not
//! one that overlaps another network's.
//!
//! Pure. The special-purpose ranges are those of the IANA registries (RFC 6890 and its updates) that
//! never carry unicast traffic between hosts: "this network", loopback, link-local, multicast,
//! broadcast and the reserved 240.0.0.0/4, and in IPv6 the unspecified and loopback addresses,
//! IPv4-mapped addresses, link-local, the old site-local, multicast and the discard-only block. A
//! block that covers any of them (`0.0.0.0/0`, `::/0`) or lies in one is refused.
//!
//! Allowed on purpose, though not globally routable: the private ranges (RFC 1918 and the unique
//! local `fc00::/7`) and the shared address space `100.64.0.0/10` are what private meshes use, and the
//! documentation ranges (`192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`) are what
//! tests and labs use.

use meshd_packet::{Ipv4Prefix, Ipv6Prefix};

/// An IPv4 range that a network's block may not touch, and what it is.
const SPECIAL_V4: &[(&str, &str)] = &[
    (
        "0.0.0.0/8",
        "\"this network\" (RFC 791), which includes the unspecified address",
    ),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "the limited broadcast address"),
];

/// An IPv6 range that a network's block may not touch, and what it is.
const SPECIAL_V6: &[(&str, &str)] = &[
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped addresses"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated by RFC 3879)"),
    ("ff00::/8", "multicast"),
];

/// `Err` names the special-purpose range `block` touches.
pub fn check_v4(block: Ipv4Prefix) -> Result<(), String> {
    let table = SPECIAL_V4.iter().map(|(range, what)| {
        let range: Ipv4Prefix = range.parse().expect("the table holds valid prefixes");
        (
            range,
            range.len(),
            range.covers(block),
            block.covers(range),
            *what,
        )
    });
    first_touched(table).map_or(Ok(()), |(range, what)| {
        Err(special(&block.to_string(), &range.to_string(), what))
    })
}

/// `Err` names the special-purpose range `block` touches.
pub fn check_v6(block: Ipv6Prefix) -> Result<(), String> {
    let table = SPECIAL_V6.iter().map(|(range, what)| {
        let range: Ipv6Prefix = range.parse().expect("the table holds valid prefixes");
        (
            range,
            range.len(),
            range.covers(block),
            block.covers(range),
            *what,
        )
    });
    first_touched(table).map_or(Ok(()), |(range, what)| {
        Err(special(&block.to_string(), &range.to_string(), what))
    })
}

/// The range to name: the narrowest that holds the block, else the first the block holds.
fn first_touched<P: Copy>(
    table: impl Iterator<Item = (P, u8, bool, bool, &'static str)>,
) -> Option<(P, &'static str)> {
    let rows: Vec<_> = table.collect();
    rows.iter()
        .filter(|r| r.2)
        .max_by_key(|r| r.1)
        .or_else(|| rows.iter().find(|r| r.3))
        .map(|r| (r.0, r.4))
}

fn special(block: &str, range: &str, what: &str) -> String {
    let relation = if block == range { "is" } else { "overlaps" };
    format!(
        "the block {block} {relation} {range}, {what}, which cannot be routed to a mesh member; use a \
         block you hold, or a private one (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, \
         fd00::/8)"
    )
}

/// Whether two IPv4 blocks share an address.
pub fn overlap_v4(a: Ipv4Prefix, b: Ipv4Prefix) -> bool {
    a.covers(b) || b.covers(a)
}

/// Whether two IPv6 blocks share an address.
pub fn overlap_v6(a: Ipv6Prefix, b: Ipv6Prefix) -> bool {
    a.covers(b) || b.covers(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Result<(), String> {
        check_v4(s.parse().unwrap())
    }

    fn v6(s: &str) -> Result<(), String> {
        check_v6(s.parse().unwrap())
    }

    #[test]
    fn special_ranges_are_refused_and_named() {
        for (block, named) in [
            ("0.0.0.0/0", "0.0.0.0/8"),
            ("0.0.0.0/8", "0.0.0.0/8"),
            ("127.0.0.0/8", "127.0.0.0/8"),
            ("127.5.0.0/16", "127.0.0.0/8"),
            ("64.0.0.0/2", "127.0.0.0/8"),
            ("169.254.10.0/24", "169.254.0.0/16"),
            ("224.0.0.0/24", "224.0.0.0/4"),
            ("239.1.0.0/16", "224.0.0.0/4"),
            ("240.0.0.0/8", "240.0.0.0/4"),
            ("255.255.255.255/32", "255.255.255.255/32"),
            ("192.0.0.0/29", "192.0.0.0/24"),
        ] {
            let e = v4(block).unwrap_err();
            assert!(e.contains(named), "{block}: {e}");
        }
        for (block, named) in [
            ("::/0", "::/128"),
            ("::1/128", "::1/128"),
            ("::ffff:0:0/104", "IPv4-mapped"),
            ("fe80::/64", "fe80::/10"),
            ("ff02::/16", "ff00::/8"),
            ("fec0::/48", "fec0::/10"),
            ("100::/64", "100::/64"),
        ] {
            let e = v6(block).unwrap_err();
            assert!(e.contains(named), "{block}: {e}");
        }
    }

    #[test]
    fn private_shared_documentation_and_public_blocks_are_allowed() {
        for block in [
            "10.0.0.0/8",
            "10.77.0.0/24",
            "172.16.0.0/12",
            "192.168.1.0/24",
            "100.64.0.0/10",
            "192.0.2.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "44.30.127.0/24",
            "1.0.0.0/8",
            "223.255.255.0/24",
        ] {
            assert_eq!(v4(block), Ok(()), "{block}");
        }
        for block in [
            "fd00::/8",
            "fd77:1::/64",
            "fc00::/7",
            "2001:db8::/32",
            "2001:db8:1000::/64",
            "2a0e:1234::/48",
            "64:ff9b::/96",
        ] {
            assert_eq!(v6(block), Ok(()), "{block}");
        }
    }

    #[test]
    fn overlaps_are_symmetric_and_exact() {
        let a: Ipv4Prefix = "10.0.0.0/16".parse().unwrap();
        let b: Ipv4Prefix = "10.0.5.0/24".parse().unwrap();
        let c: Ipv4Prefix = "10.1.0.0/24".parse().unwrap();
        assert!(overlap_v4(a, b) && overlap_v4(b, a) && overlap_v4(a, a));
        assert!(!overlap_v4(a, c) && !overlap_v4(b, c));
        let x: Ipv6Prefix = "2001:db8::/48".parse().unwrap();
        let y: Ipv6Prefix = "2001:db8:0:1::/64".parse().unwrap();
        let z: Ipv6Prefix = "2001:db8:1::/64".parse().unwrap();
        assert!(overlap_v6(x, y) && overlap_v6(y, x));
        assert!(!overlap_v6(x, z));
    }
}

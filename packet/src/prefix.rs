//! IP prefixes (CIDR blocks) that cannot hold a malformed value.
//!
//! The constructors clear the host bits, so `10.1.2.3/8` becomes `10.0.0.0/8` and two prefixes that
//! cover the same addresses always compare equal. A length beyond the address width is rejected with
//! [`ParseError::BadPrefixLength`]. The derived ordering is by address, then by length, which is the
//! order `ip route` and `wg show` print in.

use core::fmt;
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ParseError;

/// An IPv4 prefix: an address with all bits beyond `len` cleared, and a length of at most 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Prefix {
    addr: Ipv4Addr,
    len: u8,
}

/// An IPv6 prefix: an address with all bits beyond `len` cleared, and a length of at most 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv6Prefix {
    addr: Ipv6Addr,
    len: u8,
}

/// An IPv4 or IPv6 prefix. Every IPv4 prefix orders before every IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpPrefix {
    V4(Ipv4Prefix),
    V6(Ipv6Prefix),
}

/// Why a string is not a prefix.
///
/// Separate from [`ParseError`] because a text literal can be wrong in a way no packet field can: the
/// address part may not be an address at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrefixParseError {
    /// The part before `/` is not an address of the expected family.
    BadAddress,
    /// The part after `/` is not a decimal length within the address width.
    BadPrefixLength,
}

impl fmt::Display for PrefixParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrefixParseError::BadAddress => "not an IP address",
            PrefixParseError::BadPrefixLength => "prefix length is not a number within the address width",
        })
    }
}

impl std::error::Error for PrefixParseError {}

impl From<ParseError> for PrefixParseError {
    /// The constructors only fail on the length, so every [`ParseError`] they return maps to it.
    fn from(_: ParseError) -> Self {
        PrefixParseError::BadPrefixLength
    }
}

impl Ipv4Prefix {
    /// The width of an IPv4 address in bits.
    pub const MAX_LEN: u8 = 32;

    /// `0.0.0.0/0`, the prefix that contains every IPv4 address.
    pub const ANY: Ipv4Prefix = Ipv4Prefix {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };

    /// The prefix of the first `len` bits of `addr`; the remaining bits are cleared.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Result<Self, ParseError> {
        if len > Self::MAX_LEN {
            return Err(ParseError::BadPrefixLength);
        }
        let bits = addr.to_bits() & mask_u32(len);
        Ok(Ipv4Prefix {
            addr: Ipv4Addr::from_bits(bits),
            len,
        })
    }

    /// The `/32` prefix holding exactly `addr`.
    pub const fn host(addr: Ipv4Addr) -> Self {
        Ipv4Prefix {
            addr,
            len: Self::MAX_LEN,
        }
    }

    /// The network address (host bits are always zero).
    pub const fn addr(self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length in bits, `0..=32`.
    #[expect(
        clippy::len_without_is_empty,
        reason = "a prefix length, not a container size"
    )]
    pub const fn len(self) -> u8 {
        self.len
    }

    /// The netmask as an address, e.g. `255.255.255.0` for a `/24`.
    pub const fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from_bits(mask_u32(self.len))
    }

    /// Whether `addr` lies inside this prefix.
    pub const fn contains(self, addr: Ipv4Addr) -> bool {
        addr.to_bits() & mask_u32(self.len) == self.addr.to_bits()
    }

    /// Whether every address of `other` lies inside this prefix.
    pub const fn covers(self, other: Ipv4Prefix) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

impl Ipv6Prefix {
    /// The width of an IPv6 address in bits.
    pub const MAX_LEN: u8 = 128;

    /// `::/0`, the prefix that contains every IPv6 address.
    pub const ANY: Ipv6Prefix = Ipv6Prefix {
        addr: Ipv6Addr::UNSPECIFIED,
        len: 0,
    };

    /// The prefix of the first `len` bits of `addr`; the remaining bits are cleared.
    pub const fn new(addr: Ipv6Addr, len: u8) -> Result<Self, ParseError> {
        if len > Self::MAX_LEN {
            return Err(ParseError::BadPrefixLength);
        }
        let bits = addr.to_bits() & mask_u128(len);
        Ok(Ipv6Prefix {
            addr: Ipv6Addr::from_bits(bits),
            len,
        })
    }

    /// The `/128` prefix holding exactly `addr`.
    pub const fn host(addr: Ipv6Addr) -> Self {
        Ipv6Prefix {
            addr,
            len: Self::MAX_LEN,
        }
    }

    /// The network address (host bits are always zero).
    pub const fn addr(self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length in bits, `0..=128`.
    #[expect(
        clippy::len_without_is_empty,
        reason = "a prefix length, not a container size"
    )]
    pub const fn len(self) -> u8 {
        self.len
    }

    /// Whether `addr` lies inside this prefix.
    pub const fn contains(self, addr: Ipv6Addr) -> bool {
        addr.to_bits() & mask_u128(self.len) == self.addr.to_bits()
    }

    /// Whether every address of `other` lies inside this prefix.
    pub const fn covers(self, other: Ipv6Prefix) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

impl IpPrefix {
    /// The prefix of the first `len` bits of `addr`; the remaining bits are cleared.
    pub const fn new(addr: IpAddr, len: u8) -> Result<Self, ParseError> {
        match addr {
            IpAddr::V4(a) => match Ipv4Prefix::new(a, len) {
                Ok(p) => Ok(IpPrefix::V4(p)),
                Err(e) => Err(e),
            },
            IpAddr::V6(a) => match Ipv6Prefix::new(a, len) {
                Ok(p) => Ok(IpPrefix::V6(p)),
                Err(e) => Err(e),
            },
        }
    }

    /// The host prefix (`/32` or `/128`) holding exactly `addr`.
    pub const fn host(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => IpPrefix::V4(Ipv4Prefix::host(a)),
            IpAddr::V6(a) => IpPrefix::V6(Ipv6Prefix::host(a)),
        }
    }

    /// The network address (host bits are always zero).
    pub const fn addr(self) -> IpAddr {
        match self {
            IpPrefix::V4(p) => IpAddr::V4(p.addr),
            IpPrefix::V6(p) => IpAddr::V6(p.addr),
        }
    }

    /// The prefix length in bits.
    #[expect(
        clippy::len_without_is_empty,
        reason = "a prefix length, not a container size"
    )]
    pub const fn len(self) -> u8 {
        match self {
            IpPrefix::V4(p) => p.len,
            IpPrefix::V6(p) => p.len,
        }
    }

    /// The address width of this prefix's family: 32 or 128.
    pub const fn max_len(self) -> u8 {
        match self {
            IpPrefix::V4(_) => Ipv4Prefix::MAX_LEN,
            IpPrefix::V6(_) => Ipv6Prefix::MAX_LEN,
        }
    }

    pub const fn is_ipv4(self) -> bool {
        matches!(self, IpPrefix::V4(_))
    }

    pub const fn is_ipv6(self) -> bool {
        matches!(self, IpPrefix::V6(_))
    }

    /// Whether `addr` lies inside this prefix; an address of the other family never does.
    pub const fn contains(self, addr: IpAddr) -> bool {
        match (self, addr) {
            (IpPrefix::V4(p), IpAddr::V4(a)) => p.contains(a),
            (IpPrefix::V6(p), IpAddr::V6(a)) => p.contains(a),
            _ => false,
        }
    }

    /// Whether every address of `other` lies inside this prefix.
    pub const fn covers(self, other: IpPrefix) -> bool {
        match (self, other) {
            (IpPrefix::V4(p), IpPrefix::V4(o)) => p.covers(o),
            (IpPrefix::V6(p), IpPrefix::V6(o)) => p.covers(o),
            _ => false,
        }
    }
}

/// The `len` leading bits set. A shift by the full width is undefined for `<<`, hence `checked_shl`.
const fn mask_u32(len: u8) -> u32 {
    match u32::MAX.checked_shl(32 - len as u32) {
        Some(m) => m,
        None => 0,
    }
}

const fn mask_u128(len: u8) -> u128 {
    match u128::MAX.checked_shl(128 - len as u32) {
        Some(m) => m,
        None => 0,
    }
}

impl From<Ipv4Addr> for Ipv4Prefix {
    fn from(addr: Ipv4Addr) -> Self {
        Ipv4Prefix::host(addr)
    }
}

impl From<Ipv6Addr> for Ipv6Prefix {
    fn from(addr: Ipv6Addr) -> Self {
        Ipv6Prefix::host(addr)
    }
}

impl From<IpAddr> for IpPrefix {
    fn from(addr: IpAddr) -> Self {
        IpPrefix::host(addr)
    }
}

impl From<Ipv4Prefix> for IpPrefix {
    fn from(p: Ipv4Prefix) -> Self {
        IpPrefix::V4(p)
    }
}

impl From<Ipv6Prefix> for IpPrefix {
    fn from(p: Ipv6Prefix) -> Self {
        IpPrefix::V6(p)
    }
}

/// Splits `"addr/len"` into the address text and the length; a bare address gets `max_len`.
///
/// The length is strict decimal: one to three digits, no sign, no leading zero, so every prefix has
/// exactly one spelling of its length.
fn split_len(s: &str, max_len: u8) -> Result<(&str, u8), PrefixParseError> {
    let Some((addr, len)) = s.split_once('/') else {
        return Ok((s, max_len));
    };
    let digits = len.as_bytes();
    let well_formed = !digits.is_empty()
        && digits.len() <= 3
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    if !well_formed {
        return Err(PrefixParseError::BadPrefixLength);
    }
    let value = digits.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match u8::try_from(value) {
        Ok(v) if v <= max_len => Ok((addr, v)),
        _ => Err(PrefixParseError::BadPrefixLength),
    }
}

impl FromStr for Ipv4Prefix {
    type Err = PrefixParseError;

    /// Parses `"203.0.113.0/24"`; a bare address means `/32`. Host bits are cleared.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = split_len(s, Self::MAX_LEN)?;
        let addr = addr
            .parse::<Ipv4Addr>()
            .map_err(|_| PrefixParseError::BadAddress)?;
        Ok(Ipv4Prefix::new(addr, len)?)
    }
}

impl FromStr for Ipv6Prefix {
    type Err = PrefixParseError;

    /// Parses `"2001:db8::/32"`; a bare address means `/128`. Host bits are cleared.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = split_len(s, Self::MAX_LEN)?;
        let addr = addr
            .parse::<Ipv6Addr>()
            .map_err(|_| PrefixParseError::BadAddress)?;
        Ok(Ipv6Prefix::new(addr, len)?)
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixParseError;

    /// Parses either family; an IPv6 address always contains a `:` and an IPv4 one never does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr = s.split_once('/').map_or(s, |(a, _)| a);
        if addr.contains(':') {
            s.parse().map(IpPrefix::V6)
        } else {
            s.parse().map(IpPrefix::V4)
        }
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpPrefix::V4(p) => p.fmt(f),
            IpPrefix::V6(p) => p.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn constructor_clears_host_bits() {
        let p = Ipv4Prefix::new(Ipv4Addr::new(10, 1, 2, 3), 8).unwrap();
        assert_eq!(p.addr(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(p.len(), 8);
        assert_eq!(p, Ipv4Prefix::new(Ipv4Addr::new(10, 255, 255, 255), 8).unwrap());

        let p = Ipv4Prefix::new(Ipv4Addr::new(203, 0, 113, 77), 25).unwrap();
        assert_eq!(p.addr(), Ipv4Addr::new(203, 0, 113, 0));
        let p = Ipv4Prefix::new(Ipv4Addr::new(203, 0, 113, 200), 25).unwrap();
        assert_eq!(p.addr(), Ipv4Addr::new(203, 0, 113, 128));

        let p = Ipv6Prefix::new("2001:db8:1234:5678::1".parse().unwrap(), 33).unwrap();
        assert_eq!(p.addr(), "2001:db8::".parse::<Ipv6Addr>().unwrap());
        let p = Ipv6Prefix::new("2001:db8:ffff::".parse().unwrap(), 33).unwrap();
        assert_eq!(p.addr(), "2001:db8:8000::".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn zero_and_full_lengths() {
        let any = Ipv4Prefix::new(Ipv4Addr::new(255, 1, 2, 3), 0).unwrap();
        assert_eq!(any, Ipv4Prefix::ANY);
        assert!(any.contains(Ipv4Addr::BROADCAST));
        assert!(any.contains(Ipv4Addr::UNSPECIFIED));
        assert_eq!(any.netmask(), Ipv4Addr::UNSPECIFIED);

        let host = Ipv4Prefix::new(Ipv4Addr::new(192, 0, 2, 1), 32).unwrap();
        assert_eq!(host, Ipv4Prefix::host(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(host.contains(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(!host.contains(Ipv4Addr::new(192, 0, 2, 0)));
        assert_eq!(host.netmask(), Ipv4Addr::BROADCAST);

        let any6 = Ipv6Prefix::new(Ipv6Addr::from_bits(u128::MAX), 0).unwrap();
        assert_eq!(any6, Ipv6Prefix::ANY);
        assert!(any6.contains(Ipv6Addr::from_bits(u128::MAX)));
        let host6 = Ipv6Prefix::new(Ipv6Addr::from_bits(u128::MAX), 128).unwrap();
        assert!(host6.contains(Ipv6Addr::from_bits(u128::MAX)));
        assert!(!host6.contains(Ipv6Addr::from_bits(u128::MAX - 1)));
    }

    #[test]
    fn rejects_length_beyond_width() {
        assert_eq!(
            Ipv4Prefix::new(Ipv4Addr::LOCALHOST, 33),
            Err(ParseError::BadPrefixLength)
        );
        assert_eq!(
            Ipv4Prefix::new(Ipv4Addr::LOCALHOST, 255),
            Err(ParseError::BadPrefixLength)
        );
        assert_eq!(
            Ipv6Prefix::new(Ipv6Addr::LOCALHOST, 129),
            Err(ParseError::BadPrefixLength)
        );
        assert_eq!(
            IpPrefix::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 64),
            Err(ParseError::BadPrefixLength)
        );
        assert!(IpPrefix::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 64).is_ok());
    }

    #[test]
    fn parses_documented_forms() {
        assert_eq!(
            v4("203.0.113.0/24"),
            Ipv4Prefix::new(Ipv4Addr::new(203, 0, 113, 0), 24).unwrap()
        );
        assert_eq!(v4("203.0.113.9"), Ipv4Prefix::host(Ipv4Addr::new(203, 0, 113, 9)));
        assert_eq!(v4("10.1.2.3/8").addr(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(v4("0.0.0.0/0"), Ipv4Prefix::ANY);
        assert_eq!(v6("2001:db8::/32").len(), 32);
        assert_eq!(v6("2001:db8::1").len(), 128);
        assert_eq!(v6("::/0"), Ipv6Prefix::ANY);
        assert_eq!(
            v6("::ffff:192.0.2.1/96").addr(),
            "::ffff:0.0.0.0".parse::<Ipv6Addr>().unwrap()
        );

        let p: IpPrefix = "198.51.100.0/24".parse().unwrap();
        assert!(p.is_ipv4());
        let p: IpPrefix = "2001:db8::/48".parse().unwrap();
        assert!(p.is_ipv6());
        assert_eq!(p.len(), 48);
        let p: IpPrefix = "2001:db8::7".parse().unwrap();
        assert_eq!(p, IpPrefix::host("2001:db8::7".parse().unwrap()));
    }

    #[test]
    fn rejects_malformed_strings() {
        use PrefixParseError::{BadAddress, BadPrefixLength};
        let cases: &[(&str, PrefixParseError)] = &[
            ("", BadAddress),
            ("/24", BadAddress),
            ("203.0.113.0/", BadPrefixLength),
            ("203.0.113.0/33", BadPrefixLength),
            ("203.0.113.0/256", BadPrefixLength),
            ("203.0.113.0/1000", BadPrefixLength),
            ("203.0.113.0/024", BadPrefixLength),
            ("203.0.113.0/+24", BadPrefixLength),
            ("203.0.113.0/-1", BadPrefixLength),
            ("203.0.113.0/24 ", BadPrefixLength),
            ("203.0.113.0/2/4", BadPrefixLength),
            ("203.0.113/24", BadAddress),
            ("203.0.113.256/24", BadAddress),
            (" 203.0.113.0/24", BadAddress),
            ("2001:db8::/129", BadPrefixLength),
            ("2001:db8::/", BadPrefixLength),
            ("2001:db8:::/32", BadAddress),
            ("fe80::1%eth0/64", BadAddress),
            ("example.org/24", BadAddress),
        ];
        for &(s, want) in cases {
            assert_eq!(s.parse::<IpPrefix>(), Err(want), "{s:?}");
        }
        assert_eq!("2001:db8::/32".parse::<Ipv4Prefix>(), Err(BadAddress));
        assert_eq!("192.0.2.0/24".parse::<Ipv6Prefix>(), Err(BadAddress));
        // A length valid for IPv6 but not IPv4 is a length error, not an address error.
        assert_eq!("192.0.2.0/64".parse::<Ipv4Prefix>(), Err(BadPrefixLength));
    }

    #[test]
    fn displays_canonical_form() {
        assert_eq!(v4("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(v4("192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(v6("2001:0db8:0000::/32").to_string(), "2001:db8::/32");
        let p: IpPrefix = "2001:db8::1".parse().unwrap();
        assert_eq!(p.to_string(), "2001:db8::1/128");
    }

    #[test]
    fn contains_respects_boundaries() {
        let p = v4("198.51.100.128/25");
        assert!(!p.contains(Ipv4Addr::new(198, 51, 100, 127)));
        assert!(p.contains(Ipv4Addr::new(198, 51, 100, 128)));
        assert!(p.contains(Ipv4Addr::new(198, 51, 100, 255)));
        assert!(!p.contains(Ipv4Addr::new(198, 51, 101, 0)));

        let p6 = v6("2001:db8::/32");
        assert!(p6.contains("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert!(!p6.contains("2001:db9::".parse().unwrap()));

        let any: IpPrefix = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(IpAddr::V4(Ipv4Addr::BROADCAST)));
        assert!(
            !any.contains(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            "families never mix"
        );
    }

    #[test]
    fn covers_is_containment_of_prefixes() {
        let block: IpPrefix = "203.0.113.0/24".parse().unwrap();
        assert!(block.covers("203.0.113.64/26".parse().unwrap()));
        assert!(block.covers(block));
        assert!(!block.covers("203.0.112.0/23".parse().unwrap()));
        assert!(!block.covers("203.0.114.0/26".parse().unwrap()));
        assert!(!block.covers("2001:db8::/32".parse().unwrap()));
    }

    #[test]
    fn orders_by_address_then_length_and_v4_first() {
        let mut ps: Vec<IpPrefix> = ["2001:db8::/32", "10.0.0.0/16", "10.0.0.0/8", "9.0.0.0/8", "::/0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        ps.sort();
        let shown: Vec<String> = ps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "::/0", "2001:db8::/32"]
        );
    }

    proptest! {
        #[test]
        fn masked_prefix_contains_its_source(bits: u32, len in 0u8..=32) {
            let addr = Ipv4Addr::from_bits(bits);
            let p = Ipv4Prefix::new(addr, len).unwrap();
            prop_assert!(p.contains(addr));
            prop_assert!(p.contains(p.addr()));
            // Host bits are zero: re-masking is the identity.
            prop_assert_eq!(Ipv4Prefix::new(p.addr(), len).unwrap(), p);
            prop_assert_eq!(p.addr().to_bits() & !p.netmask().to_bits(), 0);
        }

        #[test]
        fn contains_matches_bitwise_definition(a: u128, b: u128, len in 0u8..=128) {
            let p = Ipv6Prefix::new(Ipv6Addr::from_bits(a), len).unwrap();
            let same_leading = len == 0 || (a ^ b).leading_zeros() >= u32::from(len);
            prop_assert_eq!(p.contains(Ipv6Addr::from_bits(b)), same_leading);
        }

        #[test]
        fn display_round_trips(bits: u32, len in 0u8..=32, bits6: u128, len6 in 0u8..=128) {
            let p = IpPrefix::new(IpAddr::V4(Ipv4Addr::from_bits(bits)), len).unwrap();
            prop_assert_eq!(p.to_string().parse::<IpPrefix>(), Ok(p));
            let p = IpPrefix::new(IpAddr::V6(Ipv6Addr::from_bits(bits6)), len6).unwrap();
            prop_assert_eq!(p.to_string().parse::<IpPrefix>(), Ok(p));
        }

        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,48}") {
            if let Ok(p) = s.parse::<IpPrefix>() {
                prop_assert_eq!(p.to_string().parse::<IpPrefix>(), Ok(p));
            }
        }

        #[test]
        fn parse_near_miss_strings(s in "[0-9a-f:./]{0,24}") {
            if let Ok(p) = s.parse::<IpPrefix>() {
                prop_assert!(p.len() <= p.max_len());
                prop_assert_eq!(p.to_string().parse::<IpPrefix>(), Ok(p));
            }
        }
    }
}

//! An IP packet of either version, chosen by the version nibble: what the data path reads from TUN.

use core::net::IpAddr;

use crate::ParseError;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;

/// A checked IPv4 or IPv6 packet borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPacket<'a> {
    V4(Ipv4Packet<&'a [u8]>),
    V6(Ipv6Packet<&'a [u8]>),
}

impl<'a> IpPacket<'a> {
    /// Parses `bytes` as IPv4 or IPv6 by its version nibble.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        match bytes.first().map(|b| b >> 4) {
            None => Err(ParseError::Truncated),
            Some(4) => Ipv4Packet::new_checked(bytes).map(IpPacket::V4),
            Some(6) => Ipv6Packet::new_checked(bytes).map(IpPacket::V6),
            Some(_) => Err(ParseError::BadVersion),
        }
    }

    pub fn source(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.source().into(),
            IpPacket::V6(p) => p.source().into(),
        }
    }

    pub fn destination(&self) -> IpAddr {
        match self {
            IpPacket::V4(p) => p.destination().into(),
            IpPacket::V6(p) => p.destination().into(),
        }
    }

    /// The transport protocol number (IPv4 protocol, or IPv6's first next-header).
    pub fn protocol(&self) -> u8 {
        match self {
            IpPacket::V4(p) => p.protocol(),
            IpPacket::V6(p) => p.next_header(),
        }
    }

    /// Header plus payload as the header states it; link padding after it is excluded.
    pub fn total_len(&self) -> usize {
        match self {
            IpPacket::V4(p) => p.total_len(),
            IpPacket::V6(p) => p.total_len(),
        }
    }

    pub fn payload(&self) -> &'a [u8] {
        match *self {
            IpPacket::V4(p) => {
                let bytes = p.into_inner();
                let header_len = usize::from(bytes[0] & 0x0f) * 4;
                &bytes[header_len..p.total_len()]
            }
            IpPacket::V6(p) => {
                let end = p.total_len();
                &p.into_inner()[crate::ipv6::HEADER_LEN..end]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatches_on_the_version_nibble() {
        let v4 = crate::ipv4::tests::sample();
        let p = IpPacket::parse(&v4).unwrap();
        assert!(matches!(p, IpPacket::V4(_)));
        assert_eq!(p.source(), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.destination(), "198.51.100.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.payload().len(), 12);

        let v6 = crate::ipv6::tests::sample();
        let p = IpPacket::parse(&v6).unwrap();
        assert!(matches!(p, IpPacket::V6(_)));
        assert_eq!(p.destination(), "2001:db8::2".parse::<IpAddr>().unwrap());
        assert_eq!(p.total_len(), 52);
        assert_eq!(p.payload().len(), 12);
    }

    #[test]
    fn rejects_empty_and_unknown_versions() {
        assert_eq!(IpPacket::parse(&[]).unwrap_err(), ParseError::Truncated);
        assert_eq!(IpPacket::parse(&[0x50; 40]).unwrap_err(), ParseError::BadVersion);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            if let Ok(p) = IpPacket::parse(&bytes) {
                let _ = (p.source(), p.destination(), p.protocol());
                proptest::prop_assert!(p.payload().len() <= bytes.len());
                proptest::prop_assert!(p.total_len() <= bytes.len());
            }
        }
    }
}

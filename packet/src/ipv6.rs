//! A typed view of an IPv6 packet (RFC 8200) over any byte container. Extension headers are left in the
//! payload: meshd routes on addresses and never needs to walk them.

use core::net::Ipv6Addr;

use crate::ParseError;

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

mod field {
    use core::ops::Range;
    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// An IPv6 packet whose version and payload length were checked against the buffer by
/// [`Ipv6Packet::new_checked`]; accessors cannot panic afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks version 6 and that the payload length fits in the buffer. Jumbograms (payload length 0
    /// with a hop-by-hop jumbo option) are not supported and parse as an empty payload.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if b[field::VERSION] >> 4 != 6 {
            return Err(ParseError::BadVersion);
        }
        let payload_len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if HEADER_LEN + payload_len > b.len() {
            return Err(ParseError::BadLength);
        }
        Ok(Ipv6Packet { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn payload_len(&self) -> usize {
        let b = &self.bytes()[field::PAYLOAD_LEN];
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// The first next-header value (6 TCP, 17 UDP, 58 ICMPv6, or an extension header).
    pub fn next_header(&self) -> u8 {
        self.bytes()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.bytes()[field::HOP_LIMIT]
    }

    pub fn source(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr(&self.bytes()[field::SRC]))
    }

    pub fn destination(&self) -> Ipv6Addr {
        Ipv6Addr::from(addr(&self.bytes()[field::DST]))
    }

    pub fn payload(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..self.total_len()]
    }

    /// The header and payload, without any link padding after them.
    pub fn packet(&self) -> &[u8] {
        &self.bytes()[..self.total_len()]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

fn addr(b: &[u8]) -> [u8; 16] {
    let mut a = [0; 16];
    a.copy_from_slice(b);
    a
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A UDP-in-IPv6 packet 2001:db8::1 -> 2001:db8::2 with a 4-byte UDP payload.
    pub(crate) fn sample() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[
            0x03, 0xe8, 0x07, 0xd0, 0x00, 12, 0x00, 0x00, b'p', b'o', b'n', b'g',
        ]);
        p
    }

    #[test]
    fn reads_every_field() {
        let p = sample();
        let v = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.payload_len(), 12);
        assert_eq!(v.total_len(), 52);
        assert_eq!(v.next_header(), 17);
        assert_eq!(v.hop_limit(), 64);
        assert_eq!(v.source(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(v.destination(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(&v.payload()[8..], b"pong");
    }

    #[test]
    fn rejects_bad_headers() {
        let p = sample();
        assert_eq!(
            Ipv6Packet::new_checked(&p[..39]).unwrap_err(),
            ParseError::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&p[..51]).unwrap_err(),
            ParseError::BadLength
        );
        let mut v4 = p.clone();
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).unwrap_err(),
            ParseError::BadVersion
        );
    }

    #[test]
    fn hop_limit_is_writable() {
        let mut p = sample();
        let mut v = Ipv6Packet::new_checked(&mut p[..]).unwrap();
        v.set_hop_limit(1);
        assert_eq!(v.hop_limit(), 1);
    }
}

//! A typed view of an IPv4 packet (RFC 791) over any byte container.

use core::net::Ipv4Addr;

use crate::ParseError;
use crate::checksum;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// An IPv4 packet whose version, header length and total length were checked against the buffer by
/// [`Ipv4Packet::new_checked`]; accessors cannot panic afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks that `buffer` holds a whole IPv4 packet: version 4, header length at least 20 bytes, and a
    /// total length that covers the header and fits in the buffer. Bytes past the total length (link
    /// padding) are allowed and ignored by [`payload`](Self::payload).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(ParseError::BadVersion);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if header_len < HEADER_LEN {
            return Err(ParseError::BadHeaderLength);
        }
        let total_len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total_len < header_len || total_len > b.len() {
            return Err(ParseError::BadLength);
        }
        Ok(Ipv4Packet { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn be16(&self, range: core::ops::Range<usize>) -> u16 {
        let b = &self.bytes()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.bytes()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(self.be16(field::TOTAL_LEN))
    }

    pub fn ident(&self) -> u16 {
        self.be16(field::IDENT)
    }

    /// The "don't fragment" flag.
    pub fn dont_fragment(&self) -> bool {
        self.be16(field::FLAGS_FRAG) & 0x4000 != 0
    }

    /// True for any fragment but an unfragmented packet (more-fragments set or a nonzero offset).
    pub fn is_fragment(&self) -> bool {
        self.be16(field::FLAGS_FRAG) & 0x3fff != 0
    }

    pub fn ttl(&self) -> u8 {
        self.bytes()[field::TTL]
    }

    /// The payload's protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub fn protocol(&self) -> u8 {
        self.bytes()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        self.be16(field::CHECKSUM)
    }

    pub fn source(&self) -> Ipv4Addr {
        let b = &self.bytes()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn destination(&self) -> Ipv4Addr {
        let b = &self.bytes()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.bytes()[..self.header_len()]) == 0
    }

    /// The bytes after the header up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len()..self.total_len()]
    }

    /// The header and payload, without any link padding after the total length.
    pub fn packet(&self) -> &[u8] {
        &self.bytes()[..self.total_len()]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the total length field. The caller keeps it within the buffer; the view stays panic-free
    /// only if it does, so this is for writers that just sized the buffer.
    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].fill(0);
        let sum = checksum::checksum(&b[..header_len]);
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A UDP-in-IPv4 packet 192.0.2.1:1000 -> 198.51.100.2:2000 with a 4-byte payload and a correct
    /// header checksum, shared with the UDP and dispatch tests.
    pub(crate) fn sample() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 32, 0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 2,
        ];
        p.extend_from_slice(&[
            0x03, 0xe8, 0x07, 0xd0, 0x00, 12, 0x00, 0x00, b'p', b'i', b'n', b'g',
        ]);
        let mut view = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        view.fill_checksum();
        p
    }

    #[test]
    fn reads_every_field() {
        let p = sample();
        let v = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.header_len(), 20);
        assert_eq!(v.total_len(), 32);
        assert_eq!(v.ident(), 0x1234);
        assert!(v.dont_fragment());
        assert!(!v.is_fragment());
        assert_eq!(v.ttl(), 64);
        assert_eq!(v.protocol(), 17);
        assert_eq!(v.source(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(v.destination(), Ipv4Addr::new(198, 51, 100, 2));
        assert!(v.verify_checksum());
        assert_eq!(v.payload().len(), 12);
    }

    #[test]
    fn link_padding_is_not_payload() {
        let mut p = sample();
        p.extend_from_slice(&[0xee; 6]);
        let v = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(v.payload().len(), 12);
        assert_eq!(v.packet().len(), 32);
    }

    #[test]
    fn rejects_bad_headers() {
        let p = sample();
        assert_eq!(
            Ipv4Packet::new_checked(&p[..19]).unwrap_err(),
            ParseError::Truncated
        );
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            ParseError::BadVersion
        );
        let mut short_ihl = p.clone();
        short_ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&short_ihl[..]).unwrap_err(),
            ParseError::BadHeaderLength
        );
        assert_eq!(
            Ipv4Packet::new_checked(&p[..31]).unwrap_err(),
            ParseError::BadLength
        );
        let mut ihl_past_total = p.clone();
        ihl_past_total[0] = 0x4f; // 60-byte header in a 32-byte packet
        assert_eq!(
            Ipv4Packet::new_checked(&ihl_past_total[..]).unwrap_err(),
            ParseError::BadLength
        );
    }

    #[test]
    fn ttl_change_breaks_and_fill_restores_the_checksum() {
        let mut p = sample();
        let mut v = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        v.set_ttl(63);
        assert!(!v.verify_checksum());
        v.fill_checksum();
        assert!(v.verify_checksum());
    }
}

//! A typed view of a UDP datagram (RFC 768) over any byte container.

use crate::ParseError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A UDP datagram whose length field was checked against the buffer by [`UdpPacket::new_checked`];
/// accessors cannot panic afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks that the length field covers the header and fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if len < HEADER_LEN || len > b.len() {
            return Err(ParseError::BadLength);
        }
        Ok(UdpPacket { buffer })
    }

    fn be16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    pub fn source_port(&self) -> u16 {
        self.be16(0)
    }

    pub fn destination_port(&self) -> u16 {
        self.be16(2)
    }

    /// The length field: header plus payload.
    pub fn len(&self) -> usize {
        usize::from(self.be16(4))
    }

    /// Never true for a checked datagram (the length covers at least the header); present for clippy's
    /// `len_without_is_empty` and for symmetry with slices.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checksum field (0 means "none" over IPv4).
    pub fn checksum(&self) -> u16 {
        self.be16(6)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_datagram_inside_the_ipv4_sample() {
        let ip = crate::ipv4::tests::sample();
        let udp = UdpPacket::new_checked(&ip[20..]).unwrap();
        assert_eq!(udp.source_port(), 1000);
        assert_eq!(udp.destination_port(), 2000);
        assert_eq!(udp.len(), 12);
        assert_eq!(udp.payload(), b"ping");
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(
            UdpPacket::new_checked(&[0u8; 7][..]).unwrap_err(),
            ParseError::Truncated
        );
        let mut short = [0u8; 8];
        short[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&short[..]).unwrap_err(),
            ParseError::BadLength
        );
        let mut long = [0u8; 8];
        long[5] = 9;
        assert_eq!(
            UdpPacket::new_checked(&long[..]).unwrap_err(),
            ParseError::BadLength
        );
    }
}

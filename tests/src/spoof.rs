//! IPv4 UDP datagrams with any source address, sent from a raw socket: what an attacker who forges a
//! member's address sends. Used from a router namespace that does no NAT, so the forged source leaves
//! as written.

use std::net::SocketAddrV4;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, sendto, socket,
};

use crate::netns::Netns;

/// Sends `payload` from `src` to `dst` in one IPv4 UDP datagram (UDP checksum 0, as IPv4 allows),
/// `count` times, from a raw socket in `ns`.
#[track_caller]
pub fn send_udp4(ns: &Netns, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], count: usize) {
    crate::addr::checked(&src.ip().to_string());
    crate::addr::checked(&dst.ip().to_string());
    let packet = udp4_packet(src, dst, payload);
    let result = ns.enter(|| -> nix::Result<()> {
        // IPPROTO_RAW implies IP_HDRINCL: the kernel sends the header as written (and fills the
        // identification and checksum only if zero).
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Raw,
        )?;
        let to = SockaddrIn::from(SocketAddrV4::new(*dst.ip(), 0));
        for _ in 0..count {
            sendto(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &packet,
                &to,
                MsgFlags::empty(),
            )?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("cannot send forged UDP from {src} to {dst} in {}: {e}", ns.name());
    }
}

fn udp4_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The 32 bytes of a key in standard base64 (as `wg` and `meshd status` print keys).
pub fn key_bytes(base64: &str) -> [u8; 32] {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::with_capacity(32);
    for c in base64.bytes().take_while(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("{base64:?} is not base64"));
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out.try_into()
        .unwrap_or_else(|v: Vec<u8>| panic!("{base64:?} is {} bytes, not a 32-byte key", v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_and_key_decoding() {
        let p = udp4_packet(
            "192.0.2.19:51820".parse().unwrap(),
            "192.0.2.1:51820".parse().unwrap(),
            b"abc",
        );
        assert_eq!(p.len(), 31);
        assert_eq!(checksum(&p[..20]), 0, "a header with its checksum sums to zero");
        assert_eq!(key_bytes(&("A".repeat(43) + "=")), [0; 32]);
        // A key as `meshd status` prints it, decoded independently (Python's base64 module).
        let key = key_bytes("lsXDzTUwz993ASIqYUDSHnWpN11ikUTcr66OGx748Es=");
        assert_eq!((key[0], key[1], key[31]), (150, 197, 75));
    }
}

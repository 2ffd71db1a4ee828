//! The answer to a packet too big for its path: ICMP "fragmentation needed and DF set" (RFC 792,
//! RFC 1191) for IPv4 and ICMPv6 "packet too big" (RFC 4443) for IPv6, built in the caller's buffer
//! so the sender's path MTU discovery learns the size the tunnel carries.
//!
//! The answer comes from the original packet's destination: to the sender it looks as if the far
//! side of the tunnel (the first hop, as far as the sender can tell) reported the limit. Linux and the
//! other stacks take a "too big" report from any unicast source, as long as it quotes a packet they
//! sent, which is why the quote starts with the original's own header.
//!
//! Rules from RFC 1122 section 3.2.2 and RFC 4443 section 2.4 decide when no answer may be sent: never
//! about an ICMP error, never about a non-initial IPv4 fragment, never to a source that does not name
//! one host (unspecified, multicast, broadcast, loopback). An IPv4 packet without DF may be fragmented,
//! so "fragmentation needed and DF set" would be a lie about it; the caller drops it instead.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::ipv4::{self, Ipv4Packet};
use crate::ipv6::{self, Ipv6Packet};

/// Longest IPv4 answer: RFC 1812 section 4.3.2.3 quotes as much of the original as fits in 576 bytes.
pub const V4_MAX_LEN: usize = 576;
/// Longest IPv6 answer: RFC 4443 section 2.4(c), the IPv6 minimum MTU.
pub const V6_MAX_LEN: usize = 1280;
/// A buffer of this size holds any answer.
pub const MAX_LEN: usize = V6_MAX_LEN;

/// ICMP header: type, code, checksum, and four bytes (unused + next-hop MTU, or the IPv6 MTU).
pub const ICMP_HEADER_LEN: usize = 8;

const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// The hop limit of the answers (Linux's default for its own packets).
const HOP_LIMIT: u8 = 64;
/// IPv4 type of service "internetwork control", which Linux gives its ICMP errors.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

/// Why no answer was built. The packet is dropped either way; this says why nobody is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoAnswer {
    /// Not a whole IPv4 or IPv6 packet.
    NotIp,
    /// An IPv4 packet without DF: the limit is not the sender's to learn that way.
    MayFragment,
    /// A non-initial IPv4 fragment: its header is not the one the sender's socket matches on.
    Fragment,
    /// An ICMP or ICMPv6 error message: errors are never answered with errors.
    AboutAnError,
    /// The source or destination does not name one host (unspecified, multicast, broadcast, loopback).
    NotUnicast,
    /// `out` is shorter than the smallest answer.
    BufferTooSmall,
}

/// Writes into `out` the answer to `original`, which does not fit a path that carries `mtu` bytes,
/// and returns its length. `out` of [`MAX_LEN`] bytes always suffices; a shorter one quotes less.
pub fn too_big(original: &[u8], mtu: u16, out: &mut [u8]) -> Result<usize, NoAnswer> {
    match original.first().map(|b| b >> 4) {
        Some(4) => too_big_v4(original, mtu, out),
        Some(6) => too_big_v6(original, mtu, out),
        _ => Err(NoAnswer::NotIp),
    }
}

/// ICMP type 3 code 4 with the next-hop MTU (RFC 1191 section 4).
fn too_big_v4(original: &[u8], mtu: u16, out: &mut [u8]) -> Result<usize, NoAnswer> {
    let packet = Ipv4Packet::new_checked(original).map_err(|_| NoAnswer::NotIp)?;
    if !packet.dont_fragment() {
        return Err(NoAnswer::MayFragment);
    }
    // A later fragment (nonzero offset); the first one is answered: it has the ports.
    if u16::from_be_bytes([original[6], original[7]]) & 0x1fff != 0 {
        return Err(NoAnswer::Fragment);
    }
    let (src, dst) = (packet.source(), packet.destination());
    if !unicast_v4(src) || !unicast_v4(dst) {
        return Err(NoAnswer::NotUnicast);
    }
    let payload = packet.payload();
    if packet.protocol() == PROTO_ICMP && payload.first().is_some_and(|t| is_icmp_error(*t)) {
        return Err(NoAnswer::AboutAnError);
    }
    let quoted = packet.packet();
    let room = out.len().min(V4_MAX_LEN);
    let header_len = ipv4::HEADER_LEN + ICMP_HEADER_LEN;
    // At least the original's header and eight bytes of its payload (RFC 792).
    let minimum = header_len + packet.header_len() + payload.len().min(8);
    if room < minimum {
        return Err(NoAnswer::BufferTooSmall);
    }
    let quote_len = quoted.len().min(room - header_len);
    let total = header_len + quote_len;
    let out = &mut out[..total];

    let ip = &mut out[..ipv4::HEADER_LEN];
    ip.fill(0);
    ip[0] = 0x45;
    ip[1] = TOS_INTERNETWORK_CONTROL;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = HOP_LIMIT;
    ip[9] = PROTO_ICMP;
    ip[12..16].copy_from_slice(&dst.octets());
    ip[16..20].copy_from_slice(&src.octets());
    let sum = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let icmp = &mut out[ipv4::HEADER_LEN..];
    icmp[..ICMP_HEADER_LEN].fill(0);
    icmp[0] = ICMP_DEST_UNREACHABLE;
    icmp[1] = ICMP_FRAG_NEEDED;
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&quoted[..quote_len]);
    let sum = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(total)
}

/// ICMPv6 type 2 with the MTU (RFC 4443 section 3.2).
fn too_big_v6(original: &[u8], mtu: u16, out: &mut [u8]) -> Result<usize, NoAnswer> {
    let packet = Ipv6Packet::new_checked(original).map_err(|_| NoAnswer::NotIp)?;
    let (src, dst) = (packet.source(), packet.destination());
    // Packet Too Big may answer a multicast destination (RFC 4443 2.4(e.2)), but it is sent from the
    // destination here, and a multicast source is not allowed.
    if !unicast_v6(src) || !unicast_v6(dst) {
        return Err(NoAnswer::NotUnicast);
    }
    if packet.next_header() == PROTO_ICMPV6 && packet.payload().first().is_some_and(|t| *t < 128) {
        return Err(NoAnswer::AboutAnError);
    }
    let quoted = packet.packet();
    let room = out.len().min(V6_MAX_LEN);
    let header_len = ipv6::HEADER_LEN + ICMP_HEADER_LEN;
    if room < header_len + ipv6::HEADER_LEN {
        return Err(NoAnswer::BufferTooSmall);
    }
    let quote_len = quoted.len().min(room - header_len);
    let total = header_len + quote_len;
    let icmp_len = total - ipv6::HEADER_LEN;
    let out = &mut out[..total];

    let ip = &mut out[..ipv6::HEADER_LEN];
    ip.fill(0);
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    ip[6] = PROTO_ICMPV6;
    ip[7] = HOP_LIMIT;
    ip[8..24].copy_from_slice(&dst.octets());
    ip[24..40].copy_from_slice(&src.octets());

    let icmp = &mut out[ipv6::HEADER_LEN..];
    icmp[..ICMP_HEADER_LEN].fill(0);
    icmp[0] = ICMPV6_PACKET_TOO_BIG;
    icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
    icmp[ICMP_HEADER_LEN..].copy_from_slice(&quoted[..quote_len]);
    // The pseudo-header of RFC 8200 section 8.1: source, destination, length, next header.
    let mut sum = checksum::accumulate(0, &dst.octets());
    sum = checksum::accumulate(sum, &src.octets());
    sum = checksum::accumulate(sum, &(icmp_len as u32).to_be_bytes());
    sum = checksum::accumulate(sum, &[0, 0, 0, PROTO_ICMPV6]);
    let sum = checksum::finish(checksum::accumulate(sum, icmp));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(total)
}

/// ICMP types that report errors (RFC 1122 3.2.2): unreachable, source quench, redirect, time
/// exceeded, parameter problem.
fn is_icmp_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

fn unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback())
}

fn unicast_v6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Internet checksum written out another way than `checksum`: a 64-bit sum of big-endian
    /// words, folded at the end. A correct message sums to 0xffff with its checksum in place.
    fn ones_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u64 = 0;
        for i in (0..bytes.len()).step_by(2) {
            let hi = u64::from(bytes[i]) << 8;
            let lo = bytes.get(i + 1).copied().map_or(0, u64::from);
            sum += hi | lo;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn v4_packet(proto: u8, flags_frag: [u8; 2], len: usize, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&[0xbe, 0xef]);
        p[6..8].copy_from_slice(&flags_frag);
        p[8] = 64;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let mut v = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        v.fill_checksum();
        p
    }

    fn v6_packet(next: u8, len: usize, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = (i * 11 + 5) as u8;
        }
        p
    }

    const SRC4: [u8; 4] = [203, 0, 113, 2];
    const DST4: [u8; 4] = [203, 0, 113, 3];
    const DF: [u8; 2] = [0x40, 0];

    #[test]
    fn v4_answer_has_the_fields_of_rfc_1191_and_correct_checksums() {
        let original = v4_packet(6, DF, 1400, SRC4, DST4);
        let mut out = [0u8; MAX_LEN];
        let n = too_big(&original, 1376, &mut out).unwrap();
        let answer = &out[..n];
        assert_eq!(n, V4_MAX_LEN, "quotes as much as fits in 576 bytes");
        // The IP header: from the original's destination to its source, ICMP, a correct checksum.
        assert_eq!(answer[0], 0x45);
        assert_eq!(u16::from_be_bytes([answer[2], answer[3]]) as usize, n);
        assert_eq!(answer[9], 1);
        assert_eq!(&answer[12..16], &DST4);
        assert_eq!(&answer[16..20], &SRC4);
        assert_eq!(ones_sum(&[&answer[..20]]), 0xffff, "IPv4 header checksum");
        // ICMP: 3/4, unused zero, the MTU, then the original from its first byte.
        let icmp = &answer[20..];
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(&icmp[4..6], &[0, 0]);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1376);
        assert_eq!(&icmp[8..], &original[..n - 28]);
        assert_eq!(ones_sum(&[icmp]), 0xffff, "ICMP checksum");
        // The kernel's parser agrees with ours.
        let view = Ipv4Packet::new_checked(answer).unwrap();
        assert!(view.verify_checksum());
    }

    #[test]
    fn v4_short_original_is_quoted_whole_with_an_odd_length() {
        let original = v4_packet(17, DF, 61, SRC4, DST4);
        let mut out = [0u8; MAX_LEN];
        let n = too_big(&original, 1280, &mut out).unwrap();
        assert_eq!(n, 28 + 61);
        assert_eq!(&out[28..n], &original[..]);
        assert_eq!(ones_sum(&[&out[20..n]]), 0xffff);
    }

    /// A known answer computed outside this crate (Python, `struct` and a plain word sum): the
    /// checksum fields of both headers for a fixed 48-byte UDP original.
    #[test]
    fn v4_known_answer() {
        let mut original = v4_packet(17, DF, 48, [192, 0, 2, 1], [198, 51, 100, 2]);
        original[20..].fill(0xab);
        let mut v = Ipv4Packet::new_checked(&mut original[..]).unwrap();
        v.fill_checksum();
        let mut out = [0u8; MAX_LEN];
        let n = too_big(&original, 1376, &mut out).unwrap();
        assert_eq!(n, 76);
        assert_eq!(&out[10..12], &[0x8d, 0xba], "IPv4 header checksum");
        assert_eq!(&out[22..24], &[0x94, 0x38], "ICMP checksum");
    }

    #[test]
    fn v6_answer_has_the_fields_of_rfc_4443_and_a_correct_checksum() {
        let src: Ipv6Addr = "2001:db8:1000::2".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8:1000::3".parse().unwrap();
        let original = v6_packet(6, 1500, src, dst);
        let mut out = [0u8; MAX_LEN];
        let n = too_big(&original, 1376, &mut out).unwrap();
        assert_eq!(n, V6_MAX_LEN, "quotes as much as fits in 1280 bytes");
        let answer = &out[..n];
        assert_eq!(answer[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([answer[4], answer[5]]) as usize, n - 40);
        assert_eq!(answer[6], 58);
        assert_eq!(&answer[8..24], &dst.octets());
        assert_eq!(&answer[24..40], &src.octets());
        let icmp = &answer[40..];
        assert_eq!((icmp[0], icmp[1]), (2, 0));
        assert_eq!(u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]), 1376);
        assert_eq!(&icmp[8..], &original[..n - 48]);
        let len = (icmp.len() as u32).to_be_bytes();
        let pseudo: &[&[u8]] = &[&dst.octets(), &src.octets(), &len, &[0, 0, 0, 58], icmp];
        assert_eq!(ones_sum(pseudo), 0xffff, "ICMPv6 checksum with the pseudo-header");
    }

    /// Known answer computed outside this crate, as for IPv4.
    #[test]
    fn v6_known_answer() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut original = v6_packet(17, 56, src, dst);
        original[40..].fill(0xab);
        let mut out = [0u8; MAX_LEN];
        let n = too_big(&original, 1376, &mut out).unwrap();
        assert_eq!(n, 104);
        assert_eq!(&out[42..44], &[0x72, 0x8d], "ICMPv6 checksum");
    }

    #[test]
    fn no_answer_where_the_rfcs_forbid_one() {
        let mut out = [0u8; MAX_LEN];
        let no_df = v4_packet(6, [0, 0], 1400, SRC4, DST4);
        assert_eq!(too_big(&no_df, 1376, &mut out), Err(NoAnswer::MayFragment));
        let later_fragment = v4_packet(6, [0x40, 0x10], 1400, SRC4, DST4);
        assert_eq!(too_big(&later_fragment, 1376, &mut out), Err(NoAnswer::Fragment));
        let first_fragment = v4_packet(6, [0x60, 0], 1400, SRC4, DST4);
        assert!(
            too_big(&first_fragment, 1376, &mut out).is_ok(),
            "the first fragment has the ports"
        );
        let mut icmp_error = v4_packet(1, DF, 1400, SRC4, DST4);
        icmp_error[20] = 3;
        assert_eq!(too_big(&icmp_error, 1376, &mut out), Err(NoAnswer::AboutAnError));
        let mut echo = v4_packet(1, DF, 1400, SRC4, DST4);
        echo[20] = 8;
        assert!(
            too_big(&echo, 1376, &mut out).is_ok(),
            "an echo request is answered"
        );
        for (src, dst) in [
            ([0, 0, 0, 0], DST4),
            ([224, 0, 0, 1], DST4),
            (SRC4, [255, 255, 255, 255]),
            ([127, 0, 0, 1], DST4),
        ] {
            let p = v4_packet(17, DF, 1400, src, dst);
            assert_eq!(
                too_big(&p, 1376, &mut out),
                Err(NoAnswer::NotUnicast),
                "{src:?} -> {dst:?}"
            );
        }

        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut error6 = v6_packet(58, 1400, a, "2001:db8::2".parse().unwrap());
        error6[40] = 1;
        assert_eq!(too_big(&error6, 1376, &mut out), Err(NoAnswer::AboutAnError));
        error6[40] = 128;
        assert!(
            too_big(&error6, 1376, &mut out).is_ok(),
            "an echo request is answered"
        );
        let multicast = v6_packet(17, 1400, a, "ff02::1".parse().unwrap());
        assert_eq!(too_big(&multicast, 1376, &mut out), Err(NoAnswer::NotUnicast));
        let unspecified = v6_packet(17, 1400, Ipv6Addr::UNSPECIFIED, a);
        assert_eq!(too_big(&unspecified, 1376, &mut out), Err(NoAnswer::NotUnicast));

        assert_eq!(too_big(&[0x45, 0], 1376, &mut out), Err(NoAnswer::NotIp));
        assert_eq!(too_big(&[], 1376, &mut out), Err(NoAnswer::NotIp));
        let p = v4_packet(17, DF, 1400, SRC4, DST4);
        assert_eq!(too_big(&p, 1376, &mut out[..40]), Err(NoAnswer::BufferTooSmall));
        assert!(
            too_big(&p, 1376, &mut out[..56]).is_ok(),
            "header and eight bytes fit"
        );
    }
}

//! The size arithmetic of every path a peer may take, in one place.
//!
//! A packet of the interface MTU travels, on the worst path meshd uses, inside:
//!
//! ```text
//!   IPv6 header 40 + UDP header 8 + relay frame header 44 + WireGuard data header 16
//!   + packet (padded to 16, never past the MTU) + Poly1305 tag 16
//! ```
//!
//! so on a 1500-byte underlay the interface MTU that fits every path is 1500 - 124 = 1376. WireGuard's
//! own 1420 is the same sum for a direct IPv6 path (80 bytes); a relayed path over IPv4 needs 104, a
//! direct IPv4 path 60. 1376 is a multiple of 16, so the padding of a full-size packet adds nothing.

use crate::wire::DATA_OVERHEAD;
use crate::wire::meshd::RELAY_HEADER_LEN;
use crate::{ipv4, ipv6, udp};

/// The underlay MTU meshd assumes of every link between members: Ethernet's.
pub const UNDERLAY_MTU: usize = 1500;

/// Bytes around an inner packet on a path: the underlay's IP and UDP headers, WireGuard's data header
/// and tag, and the relay frame's header when relayed.
pub const fn path_overhead(ipv6_underlay: bool, relayed: bool) -> usize {
    let ip = if ipv6_underlay {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let relay = if relayed { RELAY_HEADER_LEN } else { 0 };
    ip + udp::HEADER_LEN + DATA_OVERHEAD + relay
}

/// The worst path: relayed over IPv6 (124 bytes).
pub const WORST_PATH_OVERHEAD: usize = path_overhead(true, true);

/// The interface MTU that fits every path on a [`UNDERLAY_MTU`] underlay: 1376.
pub const DEFAULT_MTU: u16 = (UNDERLAY_MTU - WORST_PATH_OVERHEAD) as u16;

/// The largest network MTU meshd accepts: larger would not fit the worst path, and a member cannot
/// know which path it will take to every peer tomorrow.
pub const MAX_MTU: u16 = DEFAULT_MTU;

/// The largest inner packet a path whose underlay carries `underlay_mtu` bytes takes (0 when none
/// fits).
pub const fn inner_limit(underlay_mtu: usize, ipv6_underlay: bool, relayed: bool) -> usize {
    underlay_mtu.saturating_sub(path_overhead(ipv6_underlay, relayed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sums written out, against the numbers of the protocol documents rather than the
    /// constants: RFC 8200 (IPv6 header 40), RFC 791 (IPv4 20), RFC 768 (UDP 8), the WireGuard paper
    /// (data header 16, tag 16), docs/protocol.md (relay frame 44).
    #[test]
    fn every_path_fits_the_default_mtu() {
        assert_eq!(path_overhead(false, false), 20 + 8 + 32);
        assert_eq!(path_overhead(true, false), 40 + 8 + 32);
        assert_eq!(path_overhead(false, true), 20 + 8 + 32 + 44);
        assert_eq!(WORST_PATH_OVERHEAD, 40 + 8 + 32 + 44);
        assert_eq!(DEFAULT_MTU, 1376);
        assert_eq!(
            usize::from(DEFAULT_MTU) % 16,
            0,
            "padding never grows a full-size packet"
        );
        for v6 in [false, true] {
            for relayed in [false, true] {
                assert!(usize::from(DEFAULT_MTU) <= inner_limit(UNDERLAY_MTU, v6, relayed));
            }
        }
        // WireGuard's 1420 is the direct IPv6 path.
        assert_eq!(inner_limit(1500, true, false), 1420);
        assert_eq!(inner_limit(40, true, true), 0);
    }
}

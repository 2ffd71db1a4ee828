//! Packets larger than their path carries: what the path carries, and the ICMP answer that tells the
//! sender (`meshd_packet::icmp`), written back into the TUN device at a bounded rate.
//!
//! The interface MTU is sized for the worst path (`meshd_packet::mtu`), so on a 1500-byte underlay
//! nothing is too big. A path can still carry less: an underlay link with a smaller MTU (a PPPoE or
//! tunnelled uplink), or an interface MTU an operator raised with `ip link`. The kernel says so with
//! EMSGSIZE on the send (meshd's socket does not fragment); the TX thread then asks the kernel for
//! the route's MTU, remembers what that leaves for inner packets on that path, and from then on
//! answers larger packets, before sealing them, with "too big". The packet that met EMSGSIZE was
//! sealed already and cannot be quoted; TCP resends it at the new size.
//!
//! TSO super-packets from the TUN device are cut into segments of the size the sender's TCP chose
//! (its MSS, from the interface MTU or the path MTU it learned); each segment is checked alone, so a
//! super-packet whose segments are too big gets one answer per segment (within the rate) and the
//! sender's next super-packets come with a smaller MSS. UDP GSO sends only carry segments that passed.

use std::io;
use std::time::{Duration, Instant};

use meshd_packet::icmp;
use meshd_packet::mtu::inner_limit;

use crate::sys::tun::WRITE_OFFSET;
use meshd_core::node::{DropReason, Endpoint};

/// Answers per second, and the burst, over all destinations (Linux's own ICMP rate limit is of the
/// same order): enough for every TCP flow to learn quickly, too few to flood the host.
const ANSWERS_PER_SECOND: u64 = 100;
const ANSWER_BURST: u64 = 20;

/// The underlay MTU assumed when the kernel refused a datagram but cannot say the route's MTU: the
/// smallest any IPv6 link may have.
const FALLBACK_UNDERLAY_MTU: usize = 1280;

/// What one path of a peer carries, learned from EMSGSIZE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathLimit {
    pub path: Endpoint,
    /// The largest inner packet.
    pub mtu: usize,
}

/// The largest inner packet `path` carries: the interface MTU, or less if learned for that path.
pub fn limit(mtu: usize, learned: Option<&PathLimit>, path: &Endpoint) -> usize {
    match learned {
        Some(l) if l.path == *path => l.mtu.min(mtu),
        _ => mtu,
    }
}

/// What `path` carries after the kernel refused a datagram on it, given the route MTU the kernel
/// reported (`None`: it could not say).
pub fn learned(path: Endpoint, route_mtu: Option<usize>) -> PathLimit {
    let ipv6 = meshd_core::address::canonical(path.addr()).is_ipv6();
    let underlay = route_mtu.unwrap_or(FALLBACK_UNDERLAY_MTU);
    PathLimit {
        path,
        mtu: inner_limit(underlay, ipv6, path.is_relayed()),
    }
}

/// Writes "too big" answers, at most `ANSWERS_PER_SECOND`.
pub struct Answerer {
    buf: Box<[u8]>,
    tokens: u64,
    refilled: Instant,
}

impl Answerer {
    pub fn new(now: Instant) -> Self {
        Answerer {
            buf: vec![0; WRITE_OFFSET + icmp::MAX_LEN].into_boxed_slice(),
            tokens: ANSWER_BURST,
            refilled: now,
        }
    }

    /// Answers `packet`, too big for a path that carries `limit` bytes, by handing `write` a buffer
    /// with [`WRITE_OFFSET`] bytes of room and then the answer. Returns the reason to count the drop
    /// under.
    pub fn answer(
        &mut self,
        now: Instant,
        packet: &[u8],
        limit: usize,
        write: impl FnOnce(&mut [u8]) -> io::Result<()>,
    ) -> DropReason {
        self.refill(now);
        if self.tokens == 0 {
            return DropReason::TooBigUnanswered;
        }
        let mtu = u16::try_from(limit).unwrap_or(u16::MAX);
        let Ok(n) = icmp::too_big(packet, mtu, &mut self.buf[WRITE_OFFSET..]) else {
            return DropReason::TooBigUnanswered;
        };
        self.tokens -= 1;
        match write(&mut self.buf[..WRITE_OFFSET + n]) {
            Ok(()) => DropReason::TooBig,
            Err(e) => {
                tracing::debug!("writing a \"too big\" answer to the TUN device: {e}");
                DropReason::TooBigUnanswered
            }
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        let add = elapsed.as_millis() as u64 * ANSWERS_PER_SECOND / 1000;
        if add > 0 {
            self.tokens = (self.tokens + add).min(ANSWER_BURST);
            // Keep the remainder: a refill every millisecond still adds up.
            self.refilled += Duration::from_millis(add * 1000 / ANSWERS_PER_SECOND);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshd_packet::ipv4::Ipv4Packet;

    fn addr(s: &str) -> std::net::SocketAddr {
        s.parse().unwrap()
    }

    /// A 1400-byte UDP packet 203.0.113.2 -> 203.0.113.3, DF set or not.
    fn packet(df: bool) -> Vec<u8> {
        let mut p = vec![0u8; 1400];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&1400u16.to_be_bytes());
        p[6] = if df { 0x40 } else { 0 };
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[203, 0, 113, 2]);
        p[16..20].copy_from_slice(&[203, 0, 113, 3]);
        Ipv4Packet::new_checked(&mut p[..]).unwrap().fill_checksum();
        p
    }

    #[test]
    fn a_learned_limit_applies_to_its_path_only() {
        let relayed = Endpoint::Relayed {
            relay: addr("192.0.2.1:51820"),
        };
        let direct = Endpoint::Direct(addr("192.0.2.9:51820"));
        // A 1400-byte IPv4 underlay under the relay: 1400 - 104.
        let l = learned(relayed, Some(1400));
        assert_eq!(l.mtu, 1296);
        assert_eq!(limit(1376, Some(&l), &relayed), 1296);
        assert_eq!(limit(1376, Some(&l), &direct), 1376, "another path");
        assert_eq!(limit(1376, None, &relayed), 1376);
        assert_eq!(
            limit(1200, Some(&l), &relayed),
            1200,
            "never above the interface MTU"
        );
        // The kernel could not say: the smallest IPv6 link, relayed over IPv6.
        let v6 = Endpoint::Direct(addr("[2001:db8::1]:51820"));
        assert_eq!(learned(v6, None).mtu, 1280 - 80);
        // A v4-mapped address is an IPv4 path.
        let mapped = Endpoint::Direct(addr("[::ffff:192.0.2.9]:51820"));
        assert_eq!(learned(mapped, Some(1500)).mtu, 1440);
    }

    #[test]
    fn a_too_big_packet_is_answered_with_the_limit_and_counted() {
        #[allow(clippy::disallowed_methods, reason = "a fixed start for the test")]
        let start = Instant::now();
        let mut answerer = Answerer::new(start);
        let original = packet(true);
        let mut written = Vec::new();
        let reason = answerer.answer(start, &original, 1296, |buf| {
            written = buf.to_vec();
            Ok(())
        });
        assert_eq!(reason, DropReason::TooBig);
        let answer = &written[WRITE_OFFSET..];
        let ip = Ipv4Packet::new_checked(answer).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.protocol(), ip.destination()),
            (1, "203.0.113.2".parse().unwrap())
        );
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1296);

        // Without DF there is nothing to say; nothing is written.
        let reason = answerer.answer(start, &packet(false), 1296, |_| panic!("written"));
        assert_eq!(reason, DropReason::TooBigUnanswered);
        // A failed write counts as unanswered.
        let reason = answerer.answer(start, &original, 1296, |_| Err(io::Error::other("EIO")));
        assert_eq!(reason, DropReason::TooBigUnanswered);
    }

    #[test]
    fn answers_are_rate_limited() {
        #[allow(clippy::disallowed_methods, reason = "a fixed start for the test")]
        let start = Instant::now();
        let mut answerer = Answerer::new(start);
        let original = packet(true);
        let mut count = |at: Instant, n: usize| {
            (0..n)
                .filter(|_| answerer.answer(at, &original, 1296, |_| Ok(())) == DropReason::TooBig)
                .count()
        };
        assert_eq!(count(start, 1000) as u64, ANSWER_BURST);
        // A second later the bucket is full again, no fuller.
        assert_eq!(count(start + Duration::from_secs(1), 1000) as u64, ANSWER_BURST);
        // Refills every millisecond add up: 100 ms bring 10 answers.
        let t = start + Duration::from_secs(1);
        let mut answered = 0;
        for ms in 1..=100 {
            answered += count(t + Duration::from_millis(ms), 1);
        }
        assert_eq!(answered, 10);
    }
}

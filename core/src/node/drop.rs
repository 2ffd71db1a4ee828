//! Why a packet was dropped. Every drop in the daemon names one of these and bumps its counter; the
//! counters map one-to-one onto log lines and, later, metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// A reason a packet or message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    // From the TUN side.
    /// Not an IPv4 or IPv6 packet.
    NotIp,
    /// No peer's allowed IPs contain the destination.
    NoRoute,
    /// The peer has no endpoint to send to.
    NoEndpoint,
    /// Too many packets waiting for a handshake; the oldest went.
    QueueFull,
    /// The handshake went unanswered for REKEY_ATTEMPT_TIME; the waiting packets went.
    HandshakeGaveUp,
    /// Sending on the UDP socket failed.
    SendFailed,
    /// Larger than its path carries; the sender was answered with ICMP "fragmentation needed" or
    /// ICMPv6 "packet too big" carrying the size that fits, so its path MTU discovery adapts.
    TooBig,
    /// Larger than its path carries, and no ICMP answer was allowed: an IPv4 packet without DF, an
    /// ICMP error, a source or destination that is not one host, or over the answer rate.
    TooBigUnanswered,

    // From the UDP side.
    /// Not a message of the WireGuard protocol (type, length or reserved bytes).
    Malformed,
    /// A data message for a receiver index that names no live session.
    UnknownIndex,
    /// A data message with a counter already seen or older than the replay window.
    Replayed,
    /// A data message whose tag did not verify.
    DecryptFailed,
    /// A data message on a session past REJECT_AFTER_TIME.
    SessionExpired,
    /// A decrypted packet that is not IP.
    InnerNotIp,
    /// A decrypted packet whose source is not in the sending peer's allowed IPs (cryptokey routing).
    SourceNotAllowed,
    /// Writing to the TUN device failed.
    TunWriteFailed,
    /// A handshake message with a wrong `mac1`.
    BadMac1,
    /// A handshake message dropped because the responder is under load and the source is over its rate.
    RateLimited,
    /// A handshake message answered with a cookie reply instead of being processed (under load).
    CookieSent,
    /// Under load, an initiation that came through a relay without a valid `mac2`: the cookie reply it
    /// calls for cannot be addressed (a relay forwards by destination key, and the initiator's key is
    /// known only after decryption), so it is dropped unanswered.
    CookieUnroutable,
    /// An initiation from a key that is not a configured peer.
    UnknownPeer,
    /// A handshake message that failed to decrypt or authenticate, or replayed a timestamp.
    HandshakeFailed,
    /// A cookie reply that did not decrypt or answered nothing outstanding.
    BadCookie,
    /// A message arrived before a private key was configured.
    NoPrivateKey,
    /// The queue of handshake messages waiting for the control thread was full.
    HandshakeQueueFull,

    // meshd's own messages.
    /// A relay frame to forward without a relay token this relay issued (or one over two rotations
    /// old): a stranger's, or one with a forged source address.
    RelayBadToken,
    /// A relay frame this node does not forward: not for it, and not from and to authorized members
    /// of one network (or the node relays for no one).
    RelayRefused,
    /// A control message (sealed envelope) arrived where none is expected, or its queue was full.
    ControlUnexpected,
    /// A control message that is not a well-formed sealed envelope (its length or reserved bytes),
    /// or whose plaintext did not decode.
    ControlMalformed,
    /// A control message from a key this node takes none from (a member: any key but its
    /// controller's), or naming our own key as its sender. Dropped unopened.
    ControlUnwanted,
    /// A stranger's control message over the per-source or the overall limit. Dropped unopened: no
    /// key derived, no answer.
    ControlRateLimited,
    /// A control message that did not authenticate (forged, corrupted, for another node, or a
    /// low-order sender key).
    ControlBadAuth,
    /// A control message whose time is outside the freshness window around ours.
    ControlStale,
    /// A control message whose counter is not above the last one acted on from its sender, or that
    /// was refused before (a replay).
    ControlReplayed,
    /// A control message that opened but was not acted on: a join with a token the controller
    /// refused, a poll from a key that is not a member, a message this role does not take. Its
    /// answer, if any, is no larger than it; its replays are refused.
    ControlRefused,
    /// An answer to a sender not authenticated as a member that would have been larger than the
    /// datagram asking for it: not sent.
    ControlReplyWithheld,

    // The host.
    /// A data thread's system call failed for lack of descriptors, memory or buffers (EMFILE,
    /// ENFILE, ENOMEM, ENOBUFS): what it held is lost, it pauses briefly and goes on.
    ResourceExhausted,
}

impl DropReason {
    pub const ALL: [DropReason; 37] = [
        DropReason::NotIp,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::QueueFull,
        DropReason::HandshakeGaveUp,
        DropReason::SendFailed,
        DropReason::TooBig,
        DropReason::TooBigUnanswered,
        DropReason::Malformed,
        DropReason::UnknownIndex,
        DropReason::Replayed,
        DropReason::DecryptFailed,
        DropReason::SessionExpired,
        DropReason::InnerNotIp,
        DropReason::SourceNotAllowed,
        DropReason::TunWriteFailed,
        DropReason::BadMac1,
        DropReason::RateLimited,
        DropReason::CookieSent,
        DropReason::CookieUnroutable,
        DropReason::UnknownPeer,
        DropReason::HandshakeFailed,
        DropReason::BadCookie,
        DropReason::NoPrivateKey,
        DropReason::HandshakeQueueFull,
        DropReason::RelayBadToken,
        DropReason::RelayRefused,
        DropReason::ControlUnexpected,
        DropReason::ControlMalformed,
        DropReason::ControlUnwanted,
        DropReason::ControlRateLimited,
        DropReason::ControlBadAuth,
        DropReason::ControlStale,
        DropReason::ControlReplayed,
        DropReason::ControlRefused,
        DropReason::ControlReplyWithheld,
        DropReason::ResourceExhausted,
    ];

    /// A stable snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotIp => "not_ip",
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::QueueFull => "queue_full",
            DropReason::HandshakeGaveUp => "handshake_gave_up",
            DropReason::SendFailed => "send_failed",
            DropReason::TooBig => "too_big",
            DropReason::TooBigUnanswered => "too_big_unanswered",
            DropReason::Malformed => "malformed",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::Replayed => "replayed",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::SessionExpired => "session_expired",
            DropReason::InnerNotIp => "inner_not_ip",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::TunWriteFailed => "tun_write_failed",
            DropReason::BadMac1 => "bad_mac1",
            DropReason::RateLimited => "rate_limited",
            DropReason::CookieSent => "cookie_sent",
            DropReason::CookieUnroutable => "cookie_unroutable",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::BadCookie => "bad_cookie",
            DropReason::NoPrivateKey => "no_private_key",
            DropReason::HandshakeQueueFull => "handshake_queue_full",
            DropReason::RelayBadToken => "relay_bad_token",
            DropReason::RelayRefused => "relay_refused",
            DropReason::ControlUnexpected => "control_unexpected",
            DropReason::ControlMalformed => "control_malformed",
            DropReason::ControlUnwanted => "control_unwanted",
            DropReason::ControlRateLimited => "control_rate_limited",
            DropReason::ControlBadAuth => "control_bad_auth",
            DropReason::ControlStale => "control_stale",
            DropReason::ControlReplayed => "control_replayed",
            DropReason::ControlRefused => "control_refused",
            DropReason::ControlReplyWithheld => "control_reply_withheld",
            DropReason::ResourceExhausted => "resource_exhausted",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// One counter per [`DropReason`], shared by the data threads (relaxed atomics: counts, not order).
#[derive(Debug)]
pub struct DropCounters {
    counts: [AtomicU64; DropReason::ALL.len()],
}

// `Default` for arrays stops at 32 elements.
impl Default for DropCounters {
    fn default() -> Self {
        DropCounters {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl DropCounters {
    pub fn add(&self, reason: DropReason, n: u64) {
        self.counts[reason.slot()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.slot()].load(Ordering::Relaxed)
    }

    /// Every counter by its name, zeros included, in declaration order (for status and the API).
    pub fn all(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL.iter().map(|&r| (r.name(), self.get(r))).collect()
    }

    /// The nonzero counters, in declaration order.
    pub fn nonzero(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_name() {
        let mut names = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.slot(), i, "{r:?} is out of order in ALL");
            assert!(names.insert(r.name()), "{r:?} shares a name");
        }
    }

    #[test]
    fn counters_count() {
        let c = DropCounters::default();
        c.add(DropReason::Replayed, 2);
        c.add(DropReason::Replayed, 1);
        c.add(DropReason::NoRoute, 5);
        assert_eq!(c.get(DropReason::Replayed), 3);
        assert_eq!(
            c.nonzero(),
            vec![(DropReason::NoRoute, 5), (DropReason::Replayed, 3)]
        );
    }
}

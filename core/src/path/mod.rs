//! The path layer: the ways to reach one peer, what is known of each, and which one carries its
//! traffic.
//!
//! A [`Path`] is one way datagrams reach a peer: from a local address (or whichever the OS picks) to a
//! remote one, either the peer's own ([`PathKind::Direct`]) or a relay's that forwards relay frames to
//! it ([`PathKind::Relayed`]). Each has a stable [`PathId`], a [`PathState`] (unknown, probing,
//! validated, failed), an [`RttEstimator`], a [`LossEstimate`] and the largest datagram it is known to
//! carry. A peer's paths form a [`PathSet`]; which one carries data, keepalives and new handshakes is
//! the pure function [`select`] of the set and the time, under the set's [`Policy`]. What the data
//! path sends is a [`Transmit`]: source, destination, TTL and segment size, and the path it belongs to.
//!
//! # What it never does
//!
//! No IO and no clock: it sends nothing, probes nothing and arms no timer. It is told what happened
//! (with `now`), keeps the books, and answers which path to use. It never decides that a probe is
//! due: the node does, from [`RttEstimator::probe_timeout`] and the states.
//!
//! # How the node drives it
//!
//! The node owns one `PathSet` per peer and feeds it the events it hears of, with `now` where the
//! time is part of the news (`handle_*` in):
//!
//! - [`PathSet::handle_candidates`], [`PathSet::handle_relay`]: the network map names a peer's
//!   direct candidates and its relay;
//! - [`PathSet::handle_received`]: something authenticated arrived over a path: a handshake message
//!   the node accepted, or data the RX thread reports;
//! - [`Path::on_probe_sent`], [`Path::on_probe_answered`], [`Path::on_probe_timeout`],
//!   [`Path::on_mtu_learned`]: what the node's probes and the TX thread learn of one path;
//! - [`PathSet::on_initiation_sent`]: which path a handshake initiation went over.
//!
//! Then it asks for the decision (where quinn drains `poll_*`, this layer has nothing queued: its
//! answers are pure functions): [`select`] for the active path (published to the data threads, and
//! recorded back with [`PathSet::on_selected`]), [`select_for_initiation`] for where a handshake
//! initiation goes, and builds a [`Transmit`] for the chosen path. Nothing here needs calling on a
//! timer: the answers are functions of the state and `now`.

#[cfg(test)]
mod endpoint_rule;
mod loss;
mod policy;
mod rtt;
mod set;
mod state;
mod transmit;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshd_crypto::PublicKey;

pub use loss::{LOSS_WINDOW, LossEstimate};
pub use policy::{Hysteresis, Policy, Rule, select, select_for_initiation};
pub use rtt::{GRANULARITY, INITIAL_PROBE_TIMEOUT, MAX_PROBE_TIMEOUT, RttEstimator};
pub use set::{MAX_PATHS, PathSet, Received};
pub use state::{FailReason, MAX_PROBES, PathState};
pub use transmit::Transmit;

/// A path's identity within its peer's [`PathSet`], for the path's whole life: never reused for
/// another path of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathId(u64);

impl fmt::Display for PathId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path {}", self.0)
    }
}

/// Whose address a path's remote address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// The peer's own.
    Direct,
    /// The relay node with this key's, which forwards relay frames addressed to the peer.
    Relayed { relay: PublicKey },
}

impl PathKind {
    pub fn is_relayed(&self) -> bool {
        matches!(self, PathKind::Relayed { .. })
    }
}

/// One way to reach a peer, and what is known of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    id: PathId,
    local: Option<SocketAddr>,
    remote: SocketAddr,
    kind: PathKind,
    state: PathState,
    rtt: RttEstimator,
    loss: LossEstimate,
    mtu: Option<usize>,
    /// Higher is newer news of the path: set when the path is added or named anew by the
    /// configuration, and at each authenticated receive over it. The active-backup rule follows the
    /// newest direct path and the newest relay.
    freshness: u64,
}

impl Path {
    fn new(
        id: PathId,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        kind: PathKind,
        freshness: u64,
    ) -> Self {
        Path {
            id,
            local,
            remote,
            kind,
            state: PathState::Unknown,
            rtt: RttEstimator::default(),
            loss: LossEstimate::default(),
            mtu: None,
            freshness,
        }
    }

    pub fn id(&self) -> PathId {
        self.id
    }

    /// The local address datagrams leave from; `None`: whichever the OS routes from.
    pub fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Where datagrams go: the peer's address, or the relay's.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub fn kind(&self) -> PathKind {
        self.kind
    }

    pub fn state(&self) -> PathState {
        self.state
    }

    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    pub fn loss(&self) -> &LossEstimate {
        &self.loss
    }

    /// The largest UDP payload the path is known to carry, once something (a refused send, a probe)
    /// said so; `None`: as large as the interface's MTU allows.
    pub fn mtu(&self) -> Option<usize> {
        self.mtu
    }

    /// A probe went out over the path.
    pub fn on_probe_sent(&mut self, now: Instant) {
        self.state.on_probe_sent(now);
    }

    /// A probe's authenticated answer arrived over the path, `rtt` after the probe left.
    pub fn on_probe_answered(&mut self, rtt: Duration, now: Instant) {
        self.rtt.update(rtt);
        self.loss.on_answered();
        self.state.on_authenticated_receive(now);
    }

    /// A probe's timeout ([`RttEstimator::probe_timeout`]) passed without an answer.
    pub fn on_probe_timeout(&mut self, now: Instant) {
        self.loss.on_lost();
        self.state.on_probe_timeout(now);
    }

    /// The path carries UDP payloads of at most `limit` bytes, as the kernel said after EMSGSIZE (the
    /// route's MTU less the headers) or a probe found. Only a lower limit is news: a path's limit
    /// falls until the path is replaced.
    pub fn on_mtu_learned(&mut self, limit: usize) {
        self.mtu = Some(self.mtu.map_or(limit, |mtu| mtu.min(limit)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::epoch;

    fn path() -> Path {
        Path::new(
            PathId(3),
            None,
            "192.0.2.1:51820".parse().unwrap(),
            PathKind::Direct,
            0,
        )
    }

    #[test]
    fn an_answered_probe_measures_and_validates_the_path_and_a_lost_one_counts() {
        let t0 = epoch();
        let mut p = path();
        assert_eq!(p.state(), PathState::Unknown);
        p.on_probe_sent(t0);
        assert_eq!(p.state(), PathState::Probing { since: t0, tries: 1 });
        let t1 = t0 + Duration::from_millis(30);
        p.on_probe_answered(Duration::from_millis(30), t1);
        assert_eq!(p.state(), PathState::Validated { at: t1 });
        assert_eq!(p.rtt().smoothed(), Some(Duration::from_millis(30)));
        p.on_probe_sent(t1);
        p.on_probe_timeout(t1 + p.rtt().probe_timeout());
        assert_eq!(p.loss().fraction(), Some(0.5));
        assert!(matches!(p.state(), PathState::Probing { tries: 1, .. }));
    }

    #[test]
    fn the_mtu_only_falls() {
        let mut p = path();
        assert_eq!(p.mtu(), None);
        p.on_mtu_learned(1452);
        assert_eq!(p.mtu(), Some(1452));
        p.on_mtu_learned(1472);
        assert_eq!(p.mtu(), Some(1452), "a larger limit says nothing new");
        p.on_mtu_learned(1232);
        assert_eq!(p.mtu(), Some(1232));
    }

    #[test]
    fn ids_and_kinds_display_and_classify() {
        assert_eq!(PathId(7).to_string(), "path 7");
        assert!(
            PathKind::Relayed {
                relay: PublicKey::from_bytes([1; 32])
            }
            .is_relayed()
        );
        assert!(!PathKind::Direct.is_relayed());
    }
}

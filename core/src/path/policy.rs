//! Which of a peer's paths carries its traffic: a pure function of the [`PathSet`] and the time.
//!
//! The first rule, [`Rule::ActiveBackup`], is the node's rule from before the path layer, unchanged:
//!
//! - the newest direct path (the peer's address heard of last: configured, or something
//!   authenticated arrived from it) is active when there is one, and the newest relay is the backup;
//! - the relay is active instead while the direct path has *failed*. It fails when a handshake
//!   response comes over the relay (our initiation went there: the direct path failed an attempt or
//!   was never in use), or when a second handshake initiation comes over the relay with nothing
//!   authenticated arriving directly in between (the peer does not hear us directly; the first one
//!   may only mean the peer did not know our address, and what we send it directly teaches it). See
//!   [`PathSet::handle_received`];
//! - it stays failed, and the peer on the relay, until something authenticated arrives directly, or
//!   the configuration names another direct address ([`PathSet::handle_candidates`]), or the peer
//!   loses its relay ([`PathSet::handle_relay`]);
//! - a retried handshake initiation goes over the other path than the attempt before
//!   ([`select_for_initiation`]), so a stale direct address falls back to the relay within one
//!   REKEY_TIMEOUT, and a relay that is down falls back to the direct address.
//!
//! An unknown (never validated) direct path is used: it is how a configured address is tried at all.
//! Nothing probes a direct path while the relay is active; the rule only listens.
//!
//! [`Hysteresis`] is the hook for rules that compare paths by RTT and loss: it keeps the active path
//! for a while after a switch unless it failed, so that two close paths do not flap. The
//! active-backup rule switches at once (no hysteresis), as the node always has.

use std::time::{Duration, Instant};

use super::{PathId, PathSet};

/// How a peer's active path is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub rule: Rule,
    pub hysteresis: Hysteresis,
}

/// Which path a policy prefers, before hysteresis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rule {
    /// The direct path, unless it failed; then the relay (the module docs).
    #[default]
    ActiveBackup,
}

/// How long a switch holds before the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hysteresis {
    /// A path made active stays active this long, whatever the rule prefers, unless it fails or
    /// goes.
    pub min_dwell: Duration,
}

impl Hysteresis {
    /// Switch as soon as the rule prefers another path.
    pub const NONE: Hysteresis = Hysteresis {
        min_dwell: Duration::ZERO,
    };

    /// The path to use when the rule prefers `best`.
    fn hold(&self, paths: &PathSet, best: PathId, now: Instant) -> PathId {
        match paths.active() {
            Some((current, since))
                if current != best
                    && paths.get(current).is_some_and(|p| !p.state().is_failed())
                    && now.saturating_duration_since(since) < self.min_dwell =>
            {
                current
            }
            _ => best,
        }
    }
}

/// The path that carries the peer's data, keepalives and new handshakes at `now`, under the set's
/// policy; `None` while the peer has no path.
pub fn select(paths: &PathSet, now: Instant) -> Option<PathId> {
    let policy = paths.policy();
    let best = match policy.rule {
        Rule::ActiveBackup => active_backup(paths)?,
    };
    Some(policy.hysteresis.hold(paths, best, now))
}

fn active_backup(paths: &PathSet) -> Option<PathId> {
    match (paths.newest_direct(), paths.newest_relayed()) {
        (Some(direct), Some(relayed)) if direct.state().is_failed() => Some(relayed.id()),
        (Some(direct), _) => Some(direct.id()),
        (None, Some(relayed)) => Some(relayed.id()),
        (None, None) => None,
    }
}

/// Where the next handshake initiation goes: for a `retry` with both a direct path and a relay known,
/// the other one than the attempt before ([`PathSet::on_initiation_sent`]); otherwise the active
/// path.
pub fn select_for_initiation(paths: &PathSet, retry: bool, now: Instant) -> Option<PathId> {
    if retry
        && let (Some(direct), Some(relayed), Some(last_relayed)) = (
            paths.newest_direct(),
            paths.newest_relayed(),
            paths.last_attempt_relayed(),
        )
    {
        return Some(if last_relayed { direct.id() } else { relayed.id() });
    }
    select(paths, now)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use meshd_crypto::PublicKey;

    use super::super::{PathKind, Received};
    use super::*;
    use crate::test_clock::epoch;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_hysteresis_the_rule_decides_alone() {
        let t0 = epoch();
        let mut set = PathSet::default();
        assert_eq!(set.policy().hysteresis, Hysteresis::NONE);
        set.handle_relay(Some((PublicKey::from_bytes([9; 32]), addr("203.0.113.1:51820"))));
        let relay = select(&set, t0).unwrap();
        set.on_selected(relay, t0);
        set.handle_candidates(&[addr("192.0.2.1:51820")]);
        let direct = set.newest_direct().unwrap().id();
        assert_eq!(select(&set, t0), Some(direct));
    }

    #[test]
    fn hysteresis_keeps_a_new_active_path_for_its_dwell_unless_it_fails() {
        let t0 = epoch();
        let policy = Policy {
            rule: Rule::ActiveBackup,
            hysteresis: Hysteresis {
                min_dwell: Duration::from_secs(10),
            },
        };
        let relay_addr = addr("203.0.113.1:51820");
        let relay_kind = PathKind::Relayed {
            relay: PublicKey::from_bytes([9; 32]),
        };
        let mut set = PathSet::new(policy);
        set.handle_relay(Some((PublicKey::from_bytes([9; 32]), relay_addr)));
        let relay = select(&set, t0).unwrap();
        set.on_selected(relay, t0);

        set.handle_candidates(&[addr("192.0.2.1:51820")]);
        let direct = set.newest_direct().unwrap().id();
        assert_eq!(select(&set, t0 + Duration::from_secs(9)), Some(relay), "held");
        assert_eq!(
            select(&set, t0 + Duration::from_secs(10)),
            Some(direct),
            "dwell over"
        );

        // Back on the relay at t = 10 (the handshake was answered over it); the direct path, heard
        // from again at 11, waits for the relay's dwell.
        set.on_selected(direct, t0 + Duration::from_secs(10));
        set.handle_received(
            None,
            relay_addr,
            relay_kind,
            Received::Response,
            t0 + Duration::from_secs(10),
        );
        assert_eq!(
            select(&set, t0 + Duration::from_secs(10)),
            Some(relay),
            "a failed path is left at once"
        );
        set.on_selected(relay, t0 + Duration::from_secs(10));
        let t11 = t0 + Duration::from_secs(11);
        set.handle_received(
            None,
            addr("192.0.2.1:51820"),
            PathKind::Direct,
            Received::Data,
            t11,
        );
        assert_eq!(select(&set, t11), Some(relay));
        assert_eq!(select(&set, t0 + Duration::from_secs(20)), Some(direct));
    }
}

//! When the ingress announces its block: the health rule and the hold-down, sans IO.
//!
//! The ingress is healthy when its TUN device is up, at least one peer has a live session with it,
//! and BIRD's session to the upstream is Established. Then, and only after it has been healthy for the
//! whole hold-down, the block is announced. The moment it is not healthy, the announcement is
//! withdrawn; announcing again takes a new hold-down, so a flapping ingress does not make its
//! upstream's routes flap with it (upstreams damp prefixes that flap).
//!
//! One exception keeps the announcement through BIRD's own restarts. The route BIRD announces lives
//! in the kernel, so a restarted BIRD learns it again by itself; withdrawing it while BIRD comes
//! back would only add the hold-down to every `systemctl restart bird`. So when BIRD cannot be
//! reached, or a *different* BIRD (a later start time) reports the session not yet Established, an
//! announcement already made is kept for up to the restart grace. A session that drops while the same
//! BIRD keeps running is an upstream failure, and withdraws at once.

use std::fmt;
use std::time::{Duration, Instant};

/// What BIRD said about the upstream session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The session is Established. `bird_started` identifies the running BIRD (its start time).
    Established { bird_started: String },
    /// BIRD answered; the session is in `state` (Active, Connect, Idle, ..., or "missing" when BIRD
    /// has no protocol of that name).
    Down { state: String, bird_started: String },
    /// BIRD did not answer (not running, socket missing, timeout).
    Unreachable { error: String },
}

impl Upstream {
    /// The state in one word or phrase, for `meshd status`.
    pub fn state(&self) -> &str {
        match self {
            Upstream::Established { .. } => "Established",
            Upstream::Down { state, .. } => state,
            Upstream::Unreachable { .. } => "unreachable",
        }
    }
}

/// Everything the health rule looks at, gathered by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub tun_up: bool,
    /// Peers whose last handshake is recent enough for their session to be in use.
    pub live_peers: usize,
    pub upstream: Upstream,
}

/// The announcer's answer to one look at the health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The announcement route should exist.
    pub announce: bool,
    /// Healthy by the rule (the announcement may still wait for the hold-down, or be kept in a
    /// BIRD restart's grace while not healthy).
    pub healthy: bool,
    /// Why it is, or is not, announced; for the log and `meshd status`.
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Announced,
    HoldDown {
        left: Duration,
    },
    TunDown,
    NoLivePeer,
    UpstreamDown {
        state: String,
    },
    BirdUnreachable {
        error: String,
    },
    /// Not healthy, but kept: BIRD restarted (or is restarting) within the grace.
    BirdRestarting {
        left: Duration,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Announced => write!(f, "healthy, announced"),
            Reason::HoldDown { left } => write!(
                f,
                "healthy, announcing after the hold-down ({:.1} s left)",
                left.as_secs_f64()
            ),
            Reason::TunDown => write!(f, "the mesh interface is down"),
            Reason::NoLivePeer => write!(f, "no peer has a live session"),
            Reason::UpstreamDown { state } => write!(f, "the upstream BGP session is {state}"),
            Reason::BirdUnreachable { error } => write!(f, "BIRD does not answer: {error}"),
            Reason::BirdRestarting { left } => write!(
                f,
                "BIRD is restarting; the announcement is kept for {:.1} s more",
                left.as_secs_f64()
            ),
        }
    }
}

/// The announcement's state between looks at the health.
#[derive(Debug)]
pub struct Announcer {
    hold_down: Duration,
    restart_grace: Duration,
    announced: bool,
    /// Since when the ingress has been healthy without a break.
    healthy_since: Option<Instant>,
    /// When the session was last seen Established, and by which BIRD.
    last_established: Option<(Instant, String)>,
}

impl Announcer {
    pub fn new(hold_down: Duration, restart_grace: Duration) -> Self {
        Announcer {
            hold_down,
            restart_grace,
            announced: false,
            healthy_since: None,
            last_established: None,
        }
    }

    pub fn announced(&self) -> bool {
        self.announced
    }

    /// Looks at the health at `now` and says whether the block should be announced.
    pub fn update(&mut self, now: Instant, health: &Health) -> Decision {
        if let Upstream::Established { bird_started } = &health.upstream {
            self.last_established = Some((now, bird_started.clone()));
        }
        let failure = if !health.tun_up {
            Some(Reason::TunDown)
        } else if health.live_peers == 0 {
            Some(Reason::NoLivePeer)
        } else {
            match &health.upstream {
                Upstream::Established { .. } => None,
                Upstream::Down { state, .. } => Some(Reason::UpstreamDown { state: state.clone() }),
                Upstream::Unreachable { error } => Some(Reason::BirdUnreachable { error: error.clone() }),
            }
        };
        let Some(failure) = failure else {
            let since = *self.healthy_since.get_or_insert(now);
            let waited = now.saturating_duration_since(since);
            if self.announced || waited >= self.hold_down {
                self.announced = true;
                return self.decision(true, Reason::Announced);
            }
            return self.decision(
                true,
                Reason::HoldDown {
                    left: self.hold_down - waited,
                },
            );
        };
        self.healthy_since = None;
        if self.announced
            && !matches!(failure, Reason::TunDown | Reason::NoLivePeer)
            && let Some(left) = self.restart_grace_left(now, &health.upstream)
        {
            return self.decision(false, Reason::BirdRestarting { left });
        }
        self.announced = false;
        self.decision(false, failure)
    }

    /// How much of the restart grace is left, if the upstream's state is one a BIRD restart
    /// explains: BIRD unreachable, or a BIRD other than the one that last saw the session
    /// Established.
    fn restart_grace_left(&self, now: Instant, upstream: &Upstream) -> Option<Duration> {
        let (seen, by) = self.last_established.as_ref()?;
        let restarted = match upstream {
            Upstream::Unreachable { .. } => true,
            Upstream::Down { bird_started, .. } => bird_started != by,
            Upstream::Established { .. } => false,
        };
        let elapsed = now.saturating_duration_since(*seen);
        (restarted && elapsed < self.restart_grace).then(|| self.restart_grace - elapsed)
    }

    fn decision(&self, healthy: bool, reason: Reason) -> Decision {
        Decision {
            announce: self.announced,
            healthy,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::epoch as origin;

    const HOLD: Duration = Duration::from_secs(5);
    const GRACE: Duration = Duration::from_secs(30);

    fn healthy() -> Health {
        Health {
            tun_up: true,
            live_peers: 2,
            upstream: Upstream::Established {
                bird_started: "boot-1".into(),
            },
        }
    }

    fn upstream(state: &str, bird: &str) -> Health {
        Health {
            upstream: Upstream::Down {
                state: state.into(),
                bird_started: bird.into(),
            },
            ..healthy()
        }
    }

    fn unreachable() -> Health {
        Health {
            upstream: Upstream::Unreachable {
                error: "connection refused".into(),
            },
            ..healthy()
        }
    }

    /// An announcer that has been healthy long enough to announce, at `t0 + HOLD`.
    fn announced_at(t0: Instant) -> (Announcer, Instant) {
        let mut a = Announcer::new(HOLD, GRACE);
        a.update(t0, &healthy());
        let t = t0 + HOLD;
        assert!(a.update(t, &healthy()).announce);
        (a, t)
    }

    #[test]
    fn announces_only_after_a_whole_hold_down_of_health() {
        let t0 = origin();
        let mut a = Announcer::new(HOLD, GRACE);
        let d = a.update(t0, &healthy());
        assert!(!d.announce && d.healthy);
        assert_eq!(d.reason, Reason::HoldDown { left: HOLD });
        let d = a.update(t0 + HOLD - Duration::from_millis(1), &healthy());
        assert!(!d.announce);
        let d = a.update(t0 + HOLD, &healthy());
        assert!(d.announce);
        assert_eq!(d.reason, Reason::Announced);
    }

    #[test]
    fn a_break_in_health_restarts_the_hold_down() {
        let t0 = origin();
        let mut a = Announcer::new(HOLD, GRACE);
        a.update(t0, &healthy());
        let no_peer = Health {
            live_peers: 0,
            ..healthy()
        };
        assert_eq!(
            a.update(t0 + Duration::from_secs(4), &no_peer).reason,
            Reason::NoLivePeer
        );
        let t1 = t0 + Duration::from_secs(5);
        assert!(!a.update(t1, &healthy()).announce);
        assert!(
            !a.update(t1 + HOLD - Duration::from_millis(1), &healthy())
                .announce
        );
        assert!(a.update(t1 + HOLD, &healthy()).announce);
    }

    #[test]
    fn every_failure_withdraws_at_once_and_needs_a_new_hold_down() {
        let failures = [
            (
                Health {
                    tun_up: false,
                    ..healthy()
                },
                Reason::TunDown,
            ),
            (
                Health {
                    live_peers: 0,
                    ..healthy()
                },
                Reason::NoLivePeer,
            ),
            (
                upstream("Active", "boot-1"),
                Reason::UpstreamDown {
                    state: "Active".into(),
                },
            ),
        ];
        for (health, reason) in failures {
            let t0 = origin();
            let (mut a, t) = announced_at(t0);
            let d = a.update(t + Duration::from_millis(1), &health);
            assert!(!d.announce && !d.healthy, "{health:?}");
            assert_eq!(d.reason, reason);
            let t2 = t + Duration::from_secs(1);
            assert!(!a.update(t2, &healthy()).announce, "{health:?}");
            assert!(a.update(t2 + HOLD, &healthy()).announce, "{health:?}");
        }
    }

    #[test]
    fn a_bird_restart_keeps_the_announcement_within_the_grace() {
        let t0 = origin();
        let (mut a, t) = announced_at(t0);
        // BIRD stops: unreachable, kept.
        let d = a.update(t + Duration::from_secs(1), &unreachable());
        assert!(d.announce && !d.healthy);
        assert!(matches!(d.reason, Reason::BirdRestarting { .. }));
        // A new BIRD, session still connecting: kept.
        let d = a.update(t + Duration::from_secs(2), &upstream("Connect", "boot-2"));
        assert!(d.announce);
        // Established again in the new BIRD: announced without a hold-down.
        let d = a.update(
            t + Duration::from_secs(4),
            &Health {
                upstream: Upstream::Established {
                    bird_started: "boot-2".into(),
                },
                ..healthy()
            },
        );
        assert!(d.announce && d.healthy);
        assert_eq!(d.reason, Reason::Announced);
        // The new BIRD's session then drops while it keeps running: withdrawn at once.
        let d = a.update(t + Duration::from_secs(5), &upstream("Active", "boot-2"));
        assert!(!d.announce);
    }

    #[test]
    fn the_grace_ends() {
        let t0 = origin();
        let (mut a, t) = announced_at(t0);
        assert!(
            a.update(t + GRACE - Duration::from_millis(1), &unreachable())
                .announce
        );
        let d = a.update(t + GRACE, &unreachable());
        assert!(!d.announce);
        assert!(matches!(d.reason, Reason::BirdUnreachable { .. }));
    }

    #[test]
    fn no_grace_for_what_a_bird_restart_does_not_explain() {
        let t0 = origin();
        // Never Established: nothing to keep, nothing announced.
        let mut a = Announcer::new(HOLD, GRACE);
        assert!(!a.update(t0, &unreachable()).announce);
        assert!(!a.update(t0 + HOLD * 2, &unreachable()).announce);
        // Lost peers while BIRD restarts: withdrawn.
        let (mut a, t) = announced_at(t0);
        let d = a.update(
            t + Duration::from_secs(1),
            &Health {
                live_peers: 0,
                ..unreachable()
            },
        );
        assert!(!d.announce);
        assert_eq!(d.reason, Reason::NoLivePeer);
    }
}

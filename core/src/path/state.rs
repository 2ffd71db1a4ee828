//! Where a path stands: never tested, in doubt, known to work, or given up on; the transitions are
//! methods named after the events that cause them.
//!
//! | event                      | Unknown      | Probing            | Validated        | Failed    |
//! |----------------------------|--------------|--------------------|------------------|-----------|
//! | `on_probe_sent`            | Probing (1)  | one more try       | stays            | stays     |
//! | `on_probe_timeout`         | stays        | Failed at the last | Probing (1)      | stays     |
//! | `on_authenticated_receive` | Validated    | Validated          | Validated        | Validated |
//! | `on_relayed_initiation`    | Probing (0)  | Failed             | Probing (0)      | stays     |
//! | `on_answered_over_relay`   | Failed       | Failed             | Failed           | stays     |
//! | `on_relay_gone`            | stays        | Unknown            | stays            | Unknown * |
//! | `on_named_anew`            | stays        | Unknown            | stays            | Unknown   |
//!
//! (n): the tries the probing starts with. *: if it failed only by comparison with the relay.
//!
//! Only something authenticated arriving over a path (a probe's answer, a handshake message, data)
//! validates it, and only that brings a failed path back: probing a failed path goes on, but it
//! stays failed until an answer comes.

use std::time::Instant;

/// Probes in a row without an answer after which a path has failed.
pub const MAX_PROBES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Named (by the configuration or a candidate list) but never tested, and nothing heard over it.
    Unknown,
    /// In doubt since `since`: `tries` probes of ours went unanswered so far, or (`tries` 0) the peer
    /// reached us around this path, and what we send over it is the test.
    Probing { since: Instant, tries: u8 },
    /// Something authenticated arrived over it, last `at`.
    Validated { at: Instant },
    /// Given up on `at`, for `why`.
    Failed { at: Instant, why: FailReason },
}

/// Why a path failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// [`MAX_PROBES`] probes in a row went unanswered.
    ProbesUnanswered,
    /// Our handshake initiation was answered over a relay: it went there because this path failed
    /// an attempt, or because it was never in use.
    AnsweredOverRelay,
    /// The peer's initiations came over a relay twice, with nothing authenticated arriving over this
    /// path in between: the peer does not hear us on it.
    PeerDoesNotHear,
}

impl FailReason {
    /// A failure judged only by comparison with a relay, which a peer without a relay forgets.
    fn relative_to_relay(self) -> bool {
        matches!(self, FailReason::AnsweredOverRelay | FailReason::PeerDoesNotHear)
    }
}

impl PathState {
    pub fn is_failed(&self) -> bool {
        matches!(self, PathState::Failed { .. })
    }

    pub fn is_validated(&self) -> bool {
        matches!(self, PathState::Validated { .. })
    }

    /// A probe went out over the path. A validated path stays validated (its probes measure it); a
    /// failed one stays failed until answered.
    pub fn on_probe_sent(&mut self, now: Instant) {
        *self = match *self {
            PathState::Unknown => PathState::Probing { since: now, tries: 1 },
            PathState::Probing { since, tries } => PathState::Probing {
                since,
                tries: tries.saturating_add(1),
            },
            state @ (PathState::Validated { .. } | PathState::Failed { .. }) => state,
        };
    }

    /// Something authenticated arrived over the path.
    pub fn on_authenticated_receive(&mut self, now: Instant) {
        *self = PathState::Validated { at: now };
    }

    /// A probe's timeout passed without an answer: a validated path falls in doubt, and a path in
    /// doubt fails once [`MAX_PROBES`] went unanswered.
    pub fn on_probe_timeout(&mut self, now: Instant) {
        *self = match *self {
            PathState::Validated { .. } => PathState::Probing { since: now, tries: 1 },
            PathState::Probing { tries, .. } if tries >= MAX_PROBES => PathState::Failed {
                at: now,
                why: FailReason::ProbesUnanswered,
            },
            state => state,
        };
    }

    /// The peer's handshake initiation came over a relay although this path should have carried it:
    /// the first time the path falls in doubt (the peer may just not know this address, and what we
    /// send over it will teach it), a second time while in doubt it fails.
    pub fn on_relayed_initiation(&mut self, now: Instant) {
        *self = match *self {
            PathState::Unknown | PathState::Validated { .. } => PathState::Probing { since: now, tries: 0 },
            PathState::Probing { .. } => PathState::Failed {
                at: now,
                why: FailReason::PeerDoesNotHear,
            },
            state @ PathState::Failed { .. } => state,
        };
    }

    /// Our handshake initiation was answered over a relay, not over this path.
    pub fn on_answered_over_relay(&mut self, now: Instant) {
        if !self.is_failed() {
            *self = PathState::Failed {
                at: now,
                why: FailReason::AnsweredOverRelay,
            };
        }
    }

    /// The configuration names this path anew, as the one to use: it knows something new, so a doubt
    /// or a failure is forgotten and the path is tried again.
    pub fn on_named_anew(&mut self) {
        if matches!(self, PathState::Probing { .. } | PathState::Failed { .. }) {
            *self = PathState::Unknown;
        }
    }

    /// The peer no longer has a relay: a doubt or a failure that only a comparison with the relay
    /// showed is forgotten.
    pub fn on_relay_gone(&mut self) {
        match *self {
            PathState::Probing { .. } => *self = PathState::Unknown,
            PathState::Failed { why, .. } if why.relative_to_relay() => *self = PathState::Unknown,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_clock::epoch;

    #[test]
    fn probes_unanswered_max_times_fail_a_path_and_an_answer_brings_it_back() {
        let t0 = epoch();
        let t = |s| t0 + Duration::from_secs(s);
        let mut s = PathState::Unknown;
        s.on_probe_timeout(t(0));
        assert_eq!(s, PathState::Unknown, "nothing was sent");
        s.on_probe_sent(t(1));
        s.on_probe_timeout(t(2));
        s.on_probe_sent(t(2));
        s.on_probe_timeout(t(3));
        assert_eq!(
            s,
            PathState::Probing {
                since: t(1),
                tries: 2
            }
        );
        s.on_probe_sent(t(3));
        s.on_probe_timeout(t(4));
        assert_eq!(
            s,
            PathState::Failed {
                at: t(4),
                why: FailReason::ProbesUnanswered
            }
        );
        s.on_probe_sent(t(5));
        assert!(s.is_failed(), "probing a failed path does not clear it");
        s.on_authenticated_receive(t(6));
        assert_eq!(s, PathState::Validated { at: t(6) });
    }

    #[test]
    fn a_validated_path_falls_in_doubt_at_a_lost_probe_not_at_a_sent_one() {
        let t0 = epoch();
        let mut s = PathState::Validated { at: t0 };
        s.on_probe_sent(t0);
        assert!(s.is_validated());
        let t1 = t0 + Duration::from_secs(1);
        s.on_probe_timeout(t1);
        assert_eq!(s, PathState::Probing { since: t1, tries: 1 });
    }

    #[test]
    fn the_second_relayed_initiation_in_doubt_fails_the_path() {
        let t0 = epoch();
        let mut s = PathState::Validated { at: t0 };
        s.on_relayed_initiation(t0);
        assert_eq!(s, PathState::Probing { since: t0, tries: 0 });
        s.on_relayed_initiation(t0);
        assert_eq!(
            s,
            PathState::Failed {
                at: t0,
                why: FailReason::PeerDoesNotHear
            }
        );
        s.on_relayed_initiation(t0 + Duration::from_secs(1));
        assert_eq!(
            s,
            PathState::Failed {
                at: t0,
                why: FailReason::PeerDoesNotHear
            },
            "failed stays failed, with its first reason"
        );
    }

    #[test]
    fn an_answer_over_the_relay_fails_the_path_and_losing_the_relay_forgets_it() {
        let t0 = epoch();
        let mut s = PathState::Unknown;
        s.on_answered_over_relay(t0);
        assert_eq!(
            s,
            PathState::Failed {
                at: t0,
                why: FailReason::AnsweredOverRelay
            }
        );
        s.on_relay_gone();
        assert_eq!(s, PathState::Unknown);

        let mut in_doubt = PathState::Probing { since: t0, tries: 0 };
        in_doubt.on_relay_gone();
        assert_eq!(in_doubt, PathState::Unknown);

        // A failure the path's own probes showed is not about the relay.
        let mut dead = PathState::Failed {
            at: t0,
            why: FailReason::ProbesUnanswered,
        };
        dead.on_relay_gone();
        assert!(dead.is_failed());
        let mut good = PathState::Validated { at: t0 };
        good.on_relay_gone();
        assert!(good.is_validated());
    }

    #[test]
    fn a_path_named_anew_is_tried_again_and_a_working_one_stays_validated() {
        let t0 = epoch();
        let mut failed = PathState::Failed {
            at: t0,
            why: FailReason::ProbesUnanswered,
        };
        failed.on_named_anew();
        assert_eq!(failed, PathState::Unknown);
        let mut in_doubt = PathState::Probing { since: t0, tries: 2 };
        in_doubt.on_named_anew();
        assert_eq!(in_doubt, PathState::Unknown);
        let mut good = PathState::Validated { at: t0 };
        good.on_named_anew();
        assert!(good.is_validated());
    }
}

//! Per-peer protocol timers (WireGuard paper section 6; Linux `timers.c` is the semantic reference),
//! as a pure state machine.
//!
//! The daemon tells [`Timers`] what happened through hooks named after events, and asks what is due
//! with [`Timers::poll`], calling it again until it returns `None`, and sleeping until
//! [`Timers::next_deadline`]. Nothing here reads a clock or owns an RNG.
//!
//! | event | hooks to call |
//! |---|---|
//! | a data message (not a keepalive) was sent | [`on_data_sent`](Timers::on_data_sent) |
//! | a data message (not a keepalive) authenticated | [`on_data_received`](Timers::on_data_received) |
//! | any authenticated message was sent (data, keepalive, handshake) | [`on_authenticated_packet_sent`](Timers::on_authenticated_packet_sent), [`on_authenticated_packet_traversal`](Timers::on_authenticated_packet_traversal) |
//! | any authenticated message was received | [`on_authenticated_packet_received`](Timers::on_authenticated_packet_received), [`on_authenticated_packet_traversal`](Timers::on_authenticated_packet_traversal) |
//! | an initiation was sent | [`on_handshake_initiated`](Timers::on_handshake_initiated) |
//! | the initiator consumed a response, or the responder decrypted the first data with new keys | [`on_handshake_complete`](Timers::on_handshake_complete) |
//! | new session keys were derived (either role) | [`on_session_derived`](Timers::on_session_derived) |
//! | a packet waits and there is no usable session, or [`Sender::needs_rekey`](crate::session::Sender::needs_rekey) | [`on_handshake_wanted`](Timers::on_handshake_wanted) |

use crate::constants::{
    KEEPALIVE_TIMEOUT, MAX_TIMER_HANDSHAKES, REJECT_AFTER_TIME, REKEY_AFTER_TIME, REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX, ZERO_KEYS_AFTER,
};
use rand_core::RngCore;
use std::time::{Duration, Instant};

/// What a due timer asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Send a handshake initiation. `retry` is true for a retransmission of an unanswered one (pass it
    /// on to [`Timers::on_handshake_initiated`]).
    SendInitiation { retry: bool },
    /// Send an empty data message on the current session.
    SendKeepalive,
    /// Erase all session keys and any pending handshake of the peer.
    ZeroKeys,
    /// The handshake went unanswered for REKEY_ATTEMPT_TIME: drop the packets queued for the peer.
    GiveUp,
}

/// The timers of one peer.
#[derive(Debug, Clone)]
pub struct Timers {
    persistent_keepalive: Option<Duration>,

    retransmit_handshake: Option<Instant>,
    send_keepalive: Option<Instant>,
    new_handshake: Option<Instant>,
    zero_key_material: Option<Instant>,
    persistent_keepalive_at: Option<Instant>,
    /// An initiation asked for, deliverable at this instant (no sooner than REKEY_TIMEOUT after the
    /// previous one).
    wanted_initiation: Option<Instant>,

    handshake_attempts: u32,
    need_another_keepalive: bool,
    /// The keepalive timer fired while more data had arrived: re-arm it once the keepalive is sent.
    rearm_keepalive_after_send: bool,
    sent_lastminute_handshake: bool,
    last_sent_handshake: Option<Instant>,
    last_handshake_complete: Option<Instant>,
    /// Birth and role of the newest session.
    current_session: Option<(Instant, bool)>,
}

impl Timers {
    pub fn new(persistent_keepalive: Option<Duration>) -> Self {
        Timers {
            persistent_keepalive: persistent_keepalive.filter(|d| !d.is_zero()),
            retransmit_handshake: None,
            send_keepalive: None,
            new_handshake: None,
            zero_key_material: None,
            persistent_keepalive_at: None,
            wanted_initiation: None,
            handshake_attempts: 0,
            need_another_keepalive: false,
            rearm_keepalive_after_send: false,
            sent_lastminute_handshake: false,
            last_sent_handshake: None,
            last_handshake_complete: None,
            current_session: None,
        }
    }

    /// Changes the persistent keepalive interval (`None` or zero: off). Turning it on sends the first
    /// keepalive at once, as `wg set` does.
    pub fn set_persistent_keepalive(&mut self, interval: Option<Duration>, now: Instant) {
        self.persistent_keepalive = interval.filter(|d| !d.is_zero());
        self.persistent_keepalive_at = self.persistent_keepalive.map(|_| now);
    }

    /// A data message was sent: expect an answer within KEEPALIVE_TIMEOUT + REKEY_TIMEOUT, or start a
    /// new handshake. The initiator of a session REKEY_AFTER_TIME old also starts one now.
    pub fn on_data_sent(&mut self, now: Instant, rng: &mut impl RngCore) {
        if self.new_handshake.is_none() {
            self.new_handshake = Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter(rng));
        }
        if let Some((born, true)) = self.current_session
            && now.saturating_duration_since(born) >= REKEY_AFTER_TIME
        {
            self.on_handshake_wanted(now);
        }
    }

    /// A data message authenticated: answer it within KEEPALIVE_TIMEOUT (with a keepalive if nothing
    /// else goes out). The initiator of a session nearly REJECT_AFTER_TIME old starts a new handshake,
    /// once per session.
    pub fn on_data_received(&mut self, now: Instant) {
        if self.send_keepalive.is_none() {
            self.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
        } else {
            self.need_another_keepalive = true;
        }
        if let Some((born, true)) = self.current_session
            && !self.sent_lastminute_handshake
            && now.saturating_duration_since(born) >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        {
            self.sent_lastminute_handshake = true;
            self.on_handshake_wanted(now);
        }
    }

    /// Any authenticated message went out: it answers for a pending keepalive.
    pub fn on_authenticated_packet_sent(&mut self, now: Instant) {
        self.send_keepalive = None;
        if self.rearm_keepalive_after_send {
            self.rearm_keepalive_after_send = false;
            self.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
        }
    }

    /// Any authenticated message came in: the peer is alive, no new handshake needed for silence.
    pub fn on_authenticated_packet_received(&mut self, _now: Instant) {
        self.new_handshake = None;
    }

    /// Any authenticated message went either way: restart the persistent keepalive interval.
    pub fn on_authenticated_packet_traversal(&mut self, now: Instant) {
        if let Some(interval) = self.persistent_keepalive {
            self.persistent_keepalive_at = Some(now + interval);
        }
    }

    /// An initiation was sent: retry after REKEY_TIMEOUT plus up to 333 ms of jitter if unanswered.
    pub fn on_handshake_initiated(&mut self, now: Instant, retry: bool, rng: &mut impl RngCore) {
        if !retry {
            self.handshake_attempts = 0;
        }
        self.last_sent_handshake = Some(now);
        self.wanted_initiation = None;
        self.retransmit_handshake = Some(now + REKEY_TIMEOUT + jitter(rng));
    }

    /// The handshake finished: stop retrying.
    pub fn on_handshake_complete(&mut self, now: Instant) {
        self.retransmit_handshake = None;
        self.wanted_initiation = None;
        self.handshake_attempts = 0;
        self.sent_lastminute_handshake = false;
        self.last_handshake_complete = Some(now);
    }

    /// New keys exist: erase everything if no newer ones follow within 3 x REJECT_AFTER_TIME.
    pub fn on_session_derived(&mut self, now: Instant, initiator: bool) {
        self.zero_key_material = Some(now + ZERO_KEYS_AFTER);
        self.current_session = Some((now, initiator));
    }

    /// A handshake is needed (a packet waits without a session, or a counter nears its limit). It is
    /// sent by [`poll`](Self::poll) no sooner than REKEY_TIMEOUT after the previous initiation, and not
    /// at all while one is outstanding (its retransmission covers the need).
    pub fn on_handshake_wanted(&mut self, now: Instant) {
        if self.retransmit_handshake.is_some() || self.wanted_initiation.is_some() {
            return;
        }
        let earliest = self
            .last_sent_handshake
            .map_or(now, |t| now.max(t + REKEY_TIMEOUT));
        self.wanted_initiation = Some(earliest);
    }

    /// When the last handshake completed.
    pub fn last_handshake(&self) -> Option<Instant> {
        self.last_handshake_complete
    }

    /// Whether an initiation is outstanding.
    pub fn handshake_in_progress(&self) -> bool {
        self.retransmit_handshake.is_some()
    }

    /// The earliest instant at which [`poll`](Self::poll) has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.retransmit_handshake,
            self.send_keepalive,
            self.new_handshake,
            self.zero_key_material,
            self.persistent_keepalive_at,
            self.wanted_initiation,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles the earliest timer due at `now` and returns what the daemon must do; call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<TimerAction> {
        loop {
            let deadline = self.next_deadline().filter(|&d| d <= now)?;
            if let Some(action) = self.expire(deadline) {
                return Some(action);
            }
        }
    }

    fn expire(&mut self, at: Instant) -> Option<TimerAction> {
        if self.zero_key_material == Some(at) {
            self.zero_key_material = None;
            self.current_session = None;
            return Some(TimerAction::ZeroKeys);
        }
        if self.retransmit_handshake == Some(at) {
            self.retransmit_handshake = None;
            if self.handshake_attempts > MAX_TIMER_HANDSHAKES {
                self.send_keepalive = None;
                self.rearm_keepalive_after_send = false;
                self.new_handshake = None;
                self.wanted_initiation = None;
                if self.zero_key_material.is_none() {
                    self.zero_key_material = Some(at + ZERO_KEYS_AFTER);
                }
                return Some(TimerAction::GiveUp);
            }
            self.handshake_attempts += 1;
            return Some(TimerAction::SendInitiation { retry: true });
        }
        if self.new_handshake == Some(at) {
            self.new_handshake = None;
            self.on_handshake_wanted(at);
            return None;
        }
        if self.wanted_initiation == Some(at) {
            self.wanted_initiation = None;
            return Some(TimerAction::SendInitiation { retry: false });
        }
        if self.send_keepalive == Some(at) {
            self.send_keepalive = None;
            if self.need_another_keepalive {
                self.need_another_keepalive = false;
                self.rearm_keepalive_after_send = true;
            }
            return Some(TimerAction::SendKeepalive);
        }
        if self.persistent_keepalive_at == Some(at) {
            self.persistent_keepalive_at = None;
            return Some(TimerAction::SendKeepalive);
        }
        None
    }
}

fn jitter(rng: &mut impl RngCore) -> Duration {
    let max = REKEY_TIMEOUT_JITTER_MAX.as_micros() as u32;
    Duration::from_micros(u64::from(rng.next_u32() % (max + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::REKEY_ATTEMPT_TIME;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn epoch() -> Instant {
        // Tests need one real Instant as the epoch of their virtual clock; nothing else reads it.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn drain(t: &mut Timers, now: Instant) -> Vec<TimerAction> {
        std::iter::from_fn(|| t.poll(now)).collect()
    }

    #[test]
    fn idle_peer_has_nothing_due() {
        let t0 = epoch();
        let mut t = Timers::new(None);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.poll(t0 + s(1000)), None);
    }

    #[test]
    fn retransmits_with_jitter_then_gives_up_then_zeroes() {
        let t0 = epoch();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut t = Timers::new(None);
        t.on_handshake_wanted(t0);
        assert_eq!(drain(&mut t, t0), [TimerAction::SendInitiation { retry: false }]);
        t.on_handshake_initiated(t0, false, &mut rng);

        let mut now = t0;
        let mut sent = 1;
        loop {
            let d = t.next_deadline().unwrap();
            let gap = d - now;
            assert!(
                gap >= REKEY_TIMEOUT && gap <= REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX,
                "{gap:?}"
            );
            assert_eq!(
                t.poll(d - Duration::from_millis(1)),
                None,
                "nothing before the deadline"
            );
            now = d;
            match t.poll(now) {
                Some(TimerAction::SendInitiation { retry: true }) => {
                    sent += 1;
                    t.on_handshake_initiated(now, true, &mut rng);
                }
                Some(TimerAction::GiveUp) => break,
                other => panic!("{other:?}"),
            }
        }
        // Linux: one initiation and MAX_TIMER_HANDSHAKES + 1 retries, then give up; that spans at
        // least REKEY_ATTEMPT_TIME.
        assert_eq!(sent, MAX_TIMER_HANDSHAKES + 2);
        assert!(now - t0 >= REKEY_ATTEMPT_TIME);
        assert_eq!(t.next_deadline(), Some(now + ZERO_KEYS_AFTER));
        assert_eq!(drain(&mut t, now + ZERO_KEYS_AFTER), [TimerAction::ZeroKeys]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn complete_handshake_stops_retries() {
        let t0 = epoch();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut t = Timers::new(None);
        t.on_handshake_initiated(t0, false, &mut rng);
        t.on_handshake_complete(t0 + s(1));
        t.on_session_derived(t0 + s(1), true);
        assert_eq!(t.next_deadline(), Some(t0 + s(1) + ZERO_KEYS_AFTER));
        assert_eq!(drain(&mut t, t0 + s(100)), []);
    }

    #[test]
    fn keepalive_after_unanswered_data() {
        let t0 = epoch();
        let mut t = Timers::new(None);
        t.on_data_received(t0);
        t.on_authenticated_packet_received(t0);
        assert_eq!(
            drain(&mut t, t0 + KEEPALIVE_TIMEOUT - Duration::from_millis(1)),
            []
        );
        assert_eq!(
            drain(&mut t, t0 + KEEPALIVE_TIMEOUT),
            [TimerAction::SendKeepalive]
        );
        t.on_authenticated_packet_sent(t0 + KEEPALIVE_TIMEOUT);
        assert_eq!(t.next_deadline(), None);

        // Answered by our own data: no keepalive.
        t.on_data_received(t0 + s(20));
        t.on_authenticated_packet_sent(t0 + s(21));
        assert_eq!(drain(&mut t, t0 + s(40)), []);
    }

    #[test]
    fn more_data_while_keepalive_pending_rearms_after_sending() {
        let t0 = epoch();
        let mut t = Timers::new(None);
        t.on_data_received(t0);
        t.on_data_received(t0 + s(1));
        let fire = t0 + KEEPALIVE_TIMEOUT;
        assert_eq!(drain(&mut t, fire), [TimerAction::SendKeepalive]);
        t.on_authenticated_packet_sent(fire);
        assert_eq!(t.next_deadline(), Some(fire + KEEPALIVE_TIMEOUT));
    }

    #[test]
    fn silence_after_sending_starts_a_handshake() {
        let t0 = epoch();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut t = Timers::new(None);
        t.on_data_sent(t0, &mut rng);
        let d = t.next_deadline().unwrap();
        assert!(d - t0 >= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT);
        assert!(d - t0 <= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
        assert_eq!(drain(&mut t, d), [TimerAction::SendInitiation { retry: false }]);

        // An answer in time cancels it.
        let mut t = Timers::new(None);
        t.on_data_sent(t0, &mut rng);
        t.on_authenticated_packet_received(t0 + s(3));
        assert_eq!(drain(&mut t, t0 + s(60)), []);
    }

    #[test]
    fn initiator_rekeys_on_send_after_rekey_after_time() {
        let t0 = epoch();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut t = Timers::new(None);
        t.on_session_derived(t0, true);
        t.on_data_sent(t0 + s(119), &mut rng);
        t.on_authenticated_packet_received(t0 + s(119));
        assert_eq!(drain(&mut t, t0 + s(119)), []);
        t.on_data_sent(t0 + REKEY_AFTER_TIME, &mut rng);
        assert_eq!(
            drain(&mut t, t0 + REKEY_AFTER_TIME),
            [TimerAction::SendInitiation { retry: false }]
        );

        // The responder of a session does not.
        let mut t = Timers::new(None);
        t.on_session_derived(t0, false);
        t.on_data_sent(t0 + s(150), &mut rng);
        t.on_authenticated_packet_received(t0 + s(150));
        assert_eq!(drain(&mut t, t0 + s(150)), []);
    }

    #[test]
    fn initiator_rekeys_on_receive_once_near_reject_after_time() {
        let t0 = epoch();
        let mut t = Timers::new(None);
        t.on_session_derived(t0, true);
        let near = t0 + REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;
        t.on_data_received(near - Duration::from_millis(1));
        t.on_authenticated_packet_sent(near);
        assert_eq!(drain(&mut t, near), []);
        t.on_data_received(near);
        assert_eq!(t.poll(near), Some(TimerAction::SendInitiation { retry: false }));
        t.on_data_received(near + s(1));
        assert_eq!(t.poll(near + s(1)), None, "only once per session");
    }

    #[test]
    fn wanted_initiations_are_rate_limited_to_one_per_rekey_timeout() {
        let t0 = epoch();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut t = Timers::new(None);
        t.on_handshake_initiated(t0, false, &mut rng);
        t.on_handshake_complete(t0 + s(1));
        t.on_handshake_wanted(t0 + s(2));
        assert_eq!(t.poll(t0 + s(2)), None);
        assert_eq!(t.next_deadline(), Some(t0 + REKEY_TIMEOUT));
        assert_eq!(
            t.poll(t0 + REKEY_TIMEOUT),
            Some(TimerAction::SendInitiation { retry: false })
        );

        // While an initiation is outstanding, its retransmission covers further wants.
        t.on_handshake_initiated(t0 + s(6), false, &mut rng);
        t.on_handshake_wanted(t0 + s(7));
        assert_eq!(t.poll(t0 + s(7)), None);
    }

    #[test]
    fn persistent_keepalive_follows_traffic() {
        let t0 = epoch();
        let mut t = Timers::new(None);
        t.set_persistent_keepalive(Some(s(25)), t0);
        assert_eq!(drain(&mut t, t0), [TimerAction::SendKeepalive]);
        t.on_authenticated_packet_traversal(t0);
        assert_eq!(t.next_deadline(), Some(t0 + s(25)));
        t.on_authenticated_packet_traversal(t0 + s(10));
        assert_eq!(drain(&mut t, t0 + s(25)), []);
        assert_eq!(drain(&mut t, t0 + s(35)), [TimerAction::SendKeepalive]);
        t.set_persistent_keepalive(None, t0 + s(35));
        t.on_authenticated_packet_traversal(t0 + s(35));
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn session_keys_zeroed_three_reject_times_after_the_last_derivation() {
        let t0 = epoch();
        let mut t = Timers::new(None);
        t.on_session_derived(t0, true);
        t.on_session_derived(t0 + s(120), true);
        assert_eq!(drain(&mut t, t0 + ZERO_KEYS_AFTER), []);
        assert_eq!(
            drain(&mut t, t0 + s(120) + ZERO_KEYS_AFTER),
            [TimerAction::ZeroKeys]
        );
        assert_eq!(ZERO_KEYS_AFTER, 3 * REJECT_AFTER_TIME);
    }
}

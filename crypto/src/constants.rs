//! The protocol's limits and timer constants, WireGuard paper section 6.1, in one place.

use std::time::Duration;

/// After this many messages on one session the initiator starts a new handshake.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// No message is sent or accepted with a counter at or past this value: `2^64 - 2^13 - 1`, leaving
/// room for the replay window below the nonce space's end.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// A session's initiator starts a new handshake when sending on a session this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// No message is sent or accepted on a session this old.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Handshake attempts for one new session stop after this long.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// An unanswered initiation is retried after this (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of the random jitter added to handshake retries (Linux `REKEY_TIMEOUT_JITTER_MAX_JIFFIES`
/// is HZ / 3).
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);
/// Received data not answered within this long triggers an empty keepalive.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries of one handshake before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT.
pub const MAX_TIMER_HANDSHAKES: u32 = (REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()) as u32;
/// Without a new session, all key material is erased after this long (3 x REJECT_AFTER_TIME).
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);

/// A responder processes at most this many initiations per second from one peer (Linux
/// `INITIATIONS_PER_SECOND`), which is also the TAI64N timestamp's precision.
pub const INITIATIONS_PER_SECOND: u32 = 50;

/// The responder's cookie secret is replaced this often (paper 5.4.7: "every two minutes").
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// A received cookie is used for mac2 for this long (Linux `COOKIE_SECRET_MAX_AGE`; the paper: 120 s).
pub const COOKIE_MAX_AGE: Duration = Duration::from_secs(120);
/// The responder stays "under load" this long after its handshake queue last passed the threshold.
pub const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);

const _: () = assert!(MAX_TIMER_HANDSHAKES == 18);
const _: () = assert!(REJECT_AFTER_MESSAGES == 18_446_744_073_709_543_423);

//! The daemon's one reading of the clocks. Everything else takes `now` as a parameter, so the protocol
//! core runs the same under the virtual clock of the simulation tests.

use std::time::{Instant, SystemTime};

/// The monotonic time now.
pub fn now() -> Instant {
    #[expect(
        clippy::disallowed_methods,
        reason = "the single place the daemon reads the monotonic clock"
    )]
    Instant::now()
}

/// The wall-clock time now: for the handshake's TAI64N timestamp and the last-handshake time `wg show`
/// prints, never for timers.
pub fn wall() -> SystemTime {
    #[expect(
        clippy::disallowed_methods,
        reason = "the single place the daemon reads the wall clock"
    )]
    SystemTime::now()
}

//! A limit on log lines that strangers can cause (a refused join, a control message that did not
//! open): a few lines per window, then silence, and the next line written says how many were left
//! out. Without it every forged datagram is a line in the journal, and a flood fills the disk.
//!
//! Pure: `now` is a parameter.

use std::time::{Duration, Instant};

/// Lines per window by default.
pub const LINES: u32 = 10;
/// The default window.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LogLimiter {
    lines: u32,
    window: Duration,
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(LINES, WINDOW)
    }
}

impl LogLimiter {
    /// At most `lines` lines per `window`.
    pub fn new(lines: u32, window: Duration) -> Self {
        LogLimiter {
            lines,
            window,
            started: None,
            written: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be written now: `Some(n)` with the number of lines left out since the
    /// last one written (to say so in the line), `None` to leave this one out.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .started
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window);
        if fresh {
            self.started = Some(now);
            self.written = 0;
        }
        if self.written >= self.lines {
            self.suppressed += 1;
            return None;
        }
        self.written += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// " (N similar lines left out)" for a line written after `n` were left out, else "".
pub fn left_out(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar lines left out)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::epoch;

    #[test]
    fn a_few_lines_per_window_then_a_count_of_the_rest() {
        let t0 = epoch();
        let mut l = LogLimiter::new(3, Duration::from_secs(10));
        let first: Vec<_> = (0..1000).map(|_| l.check(t0)).collect();
        assert_eq!(first.iter().filter(|x| x.is_some()).count(), 3);
        assert!(first[..3].iter().all(|x| *x == Some(0)));
        assert_eq!(l.check(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.check(t0 + Duration::from_secs(10)), Some(998));
        assert_eq!(l.check(t0 + Duration::from_secs(10)), Some(0));
        assert_eq!(left_out(998), " (998 similar lines left out)");
        assert_eq!(left_out(0), "");
    }
}

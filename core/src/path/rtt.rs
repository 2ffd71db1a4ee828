//! A path's round-trip time: smoothed RTT and its variation as in RFC 6298, from probe round trips.
//!
//! Each answered probe gives one sample R. The first sets SRTT = R and RTTVAR = R/2; each later one
//! sets RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and then SRTT = 7/8 SRTT + 1/8 R (RFC 6298 section 2,
//! with alpha = 1/8 and beta = 1/4; RTTVAR is updated first, from the old SRTT). The probe timeout is
//! RFC 6298's RTO, SRTT + max(G, 4 RTTVAR), with two differences stated where they are: no 1-second
//! floor, and no acknowledgement delay to subtract (a probe is answered at once, unlike a QUIC ACK).

use std::time::Duration;

/// The probe timeout before any sample (RFC 6298 2.1: "the sender SHOULD set RTO <- 1 second").
pub const INITIAL_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The clock granularity G of RFC 6298 2.2 (the same 1 ms as QUIC's kGranularity, RFC 9002 6.1.2): a
/// path with no variation still waits this long beyond its smoothed RTT.
pub const GRANULARITY: Duration = Duration::from_millis(1);

/// The longest probe timeout (RFC 6298 2.5 allows a maximum of at least 60 s).
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Smoothed RTT, its variation and the extremes seen, from answered probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttEstimator {
    /// SRTT and RTTVAR, from the first sample on.
    smoothed: Option<Smoothed>,
    latest: Option<Duration>,
    min: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Smoothed {
    srtt: Duration,
    rttvar: Duration,
}

impl RttEstimator {
    /// An answered probe took `sample` from sending to its answer.
    pub fn update(&mut self, sample: Duration) {
        self.latest = Some(sample);
        self.min = Some(self.min.map_or(sample, |min| min.min(sample)));
        self.smoothed = Some(match self.smoothed {
            None => Smoothed {
                srtt: sample,
                rttvar: sample / 2,
            },
            Some(Smoothed { srtt, rttvar }) => Smoothed {
                rttvar: (3 * rttvar + srtt.abs_diff(sample)) / 4,
                srtt: (7 * srtt + sample) / 8,
            },
        });
    }

    /// SRTT, once a probe was answered.
    pub fn smoothed(&self) -> Option<Duration> {
        self.smoothed.map(|s| s.srtt)
    }

    /// RTTVAR, once a probe was answered.
    pub fn variation(&self) -> Option<Duration> {
        self.smoothed.map(|s| s.rttvar)
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// The smallest sample: the path's RTT without queueing, as near as the probes saw it.
    pub fn min(&self) -> Option<Duration> {
        self.min
    }

    /// How long to wait for a probe's answer before counting it lost: SRTT + max(G, 4 RTTVAR), at most
    /// [`MAX_PROBE_TIMEOUT`], or [`INITIAL_PROBE_TIMEOUT`] before any sample.
    ///
    /// RFC 6298 2.4 rounds the RTO up to 1 second, for TCP's sake: a spurious retransmission there
    /// costs the congestion window. A lost probe costs one more probe, and a path must be found dead
    /// in well under a second, so, as QUIC does (RFC 9002 6.2.1), there is no floor but G.
    pub fn probe_timeout(&self) -> Duration {
        match self.smoothed {
            None => INITIAL_PROBE_TIMEOUT,
            Some(Smoothed { srtt, rttvar }) => (srtt + (4 * rttvar).max(GRANULARITY)).min(MAX_PROBE_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn before_any_sample_the_timeout_is_one_second_and_nothing_is_known() {
        let rtt = RttEstimator::default();
        assert_eq!(rtt.probe_timeout(), Duration::from_secs(1));
        assert_eq!(rtt.smoothed(), None);
        assert_eq!(rtt.variation(), None);
        assert_eq!(rtt.latest(), None);
        assert_eq!(rtt.min(), None);
    }

    #[test]
    fn the_first_sample_sets_srtt_to_r_and_rttvar_to_half_of_it() {
        // RFC 6298 2.2 with R = 100 ms: SRTT = 100, RTTVAR = 50, RTO = 100 + max(1, 4 * 50) = 300.
        let mut rtt = RttEstimator::default();
        rtt.update(ms(100));
        assert_eq!(rtt.smoothed(), Some(ms(100)));
        assert_eq!(rtt.variation(), Some(ms(50)));
        assert_eq!(rtt.probe_timeout(), ms(300));
    }

    #[test]
    fn later_samples_update_rttvar_from_the_old_srtt_then_srtt() {
        // RFC 6298 2.3, by hand, from SRTT = 100 ms and RTTVAR = 50 ms:
        // R' = 140: RTTVAR = 3/4 * 50 + 1/4 * |100 - 140| = 37.5 + 10 = 47.5
        //           SRTT   = 7/8 * 100 + 1/8 * 140      = 87.5 + 17.5 = 105
        //           RTO    = 105 + 4 * 47.5 = 295
        // R' = 60:  RTTVAR = 3/4 * 47.5 + 1/4 * |105 - 60| = 35.625 + 11.25 = 46.875
        //           SRTT   = 7/8 * 105 + 1/8 * 60         = 91.875 + 7.5   = 99.375
        //           RTO    = 99.375 + 4 * 46.875 = 286.875
        let mut rtt = RttEstimator::default();
        rtt.update(ms(100));
        rtt.update(ms(140));
        assert_eq!(rtt.variation(), Some(us(47_500)));
        assert_eq!(rtt.smoothed(), Some(ms(105)));
        assert_eq!(rtt.probe_timeout(), ms(295));
        rtt.update(ms(60));
        assert_eq!(rtt.variation(), Some(us(46_875)));
        assert_eq!(rtt.smoothed(), Some(us(99_375)));
        assert_eq!(rtt.probe_timeout(), us(286_875));
        assert_eq!(rtt.latest(), Some(ms(60)));
        assert_eq!(rtt.min(), Some(ms(60)));
    }

    #[test]
    fn a_steady_path_converges_on_its_rtt_and_waits_at_least_the_granularity_beyond_it() {
        // With R constant, RTTVAR shrinks by 3/4 each sample: after n samples it is R/2 * (3/4)^(n-1).
        let mut rtt = RttEstimator::default();
        for _ in 0..60 {
            rtt.update(ms(20));
        }
        assert_eq!(rtt.smoothed(), Some(ms(20)));
        assert!(rtt.variation().unwrap() < Duration::from_nanos(1_000));
        assert_eq!(rtt.probe_timeout(), ms(21), "20 ms + G");
        assert_eq!(rtt.min(), Some(ms(20)));
    }

    #[test]
    fn the_timeout_is_capped() {
        let mut rtt = RttEstimator::default();
        rtt.update(Duration::from_secs(40));
        // 40 + 4 * 20 = 120 s, capped at 60.
        assert_eq!(rtt.probe_timeout(), MAX_PROBE_TIMEOUT);
    }
}

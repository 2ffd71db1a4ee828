//! A path's loss: the share of its last [`LOSS_WINDOW`] probes that went unanswered.
//!
//! The window is a count of probes, not a span of time, so that one figure means the same at any
//! probe rate: a path probed every 3 s and one probed every 100 ms during a failover both report the
//! fate of their last 16 probes. A probe counts once its fate is known (answered, or its timeout
//! passed); probes in flight do not count.

/// How many of the latest probe outcomes the estimate covers.
pub const LOSS_WINDOW: u32 = 16;

/// The outcomes of the latest probes, newest in the lowest bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossEstimate {
    /// Bit i set: the i-th latest probe was lost.
    lost: u16,
    /// Outcomes recorded, up to [`LOSS_WINDOW`].
    len: u32,
}

impl LossEstimate {
    /// A probe was answered.
    pub fn on_answered(&mut self) {
        self.push(false);
    }

    /// A probe's timeout passed without an answer.
    pub fn on_lost(&mut self) {
        self.push(true);
    }

    fn push(&mut self, lost: bool) {
        self.lost = (self.lost << 1) | u16::from(lost);
        self.len = (self.len + 1).min(LOSS_WINDOW);
    }

    /// Probe outcomes in the window (fewer than [`LOSS_WINDOW`] on a new path).
    pub fn samples(&self) -> u32 {
        self.len
    }

    /// Probes lost in the window.
    pub fn lost(&self) -> u32 {
        self.lost.count_ones()
    }

    /// Lost probes over probes in the window, from 0.0 to 1.0; `None` before any outcome.
    pub fn fraction(&self) -> Option<f32> {
        // Both are at most 16: exact as f32.
        (self.len > 0).then(|| self.lost() as f32 / self.len as f32)
    }
}

const _: () = assert!(
    LOSS_WINDOW == u16::BITS,
    "one bit of `lost` per probe in the window"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_known_before_the_first_outcome() {
        let loss = LossEstimate::default();
        assert_eq!(loss.fraction(), None);
        assert_eq!(loss.samples(), 0);
    }

    #[test]
    fn counts_lost_over_recorded() {
        let mut loss = LossEstimate::default();
        loss.on_answered();
        loss.on_lost();
        loss.on_answered();
        loss.on_answered();
        assert_eq!((loss.lost(), loss.samples()), (1, 4));
        assert_eq!(loss.fraction(), Some(0.25));
    }

    #[test]
    fn only_the_last_sixteen_probes_count() {
        let mut loss = LossEstimate::default();
        for _ in 0..16 {
            loss.on_lost();
        }
        assert_eq!(loss.fraction(), Some(1.0));
        // Each answer pushes one loss out of the window.
        for answered in 1..=16 {
            loss.on_answered();
            assert_eq!(loss.samples(), 16);
            assert_eq!(loss.lost(), 16 - answered);
        }
        assert_eq!(loss.fraction(), Some(0.0));
        loss.on_lost();
        assert_eq!(loss.fraction(), Some(1.0 / 16.0));
    }
}

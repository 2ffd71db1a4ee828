//! The path layer: the ways to reach one peer and what is known of each.
//!
//! - [`RttEstimator`]: a path's smoothed round-trip time and its variation, from answered probes;
//! - [`LossEstimate`]: the share of a path's latest probes that went unanswered.
//!
//! No IO and no clock: it is told what happened and keeps the books.

mod loss;
mod rtt;

pub use loss::{LOSS_WINDOW, LossEstimate};
pub use rtt::{GRANULARITY, INITIAL_PROBE_TIMEOUT, MAX_PROBE_TIMEOUT, RttEstimator};

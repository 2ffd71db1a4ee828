//! The replay window against a naive model: accept a counter iff it is below REJECT_AFTER_MESSAGES,
//! not accepted before, and less than WINDOW behind the greatest accepted.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use meshd_crypto::constants::REJECT_AFTER_MESSAGES;
use meshd_crypto::replay::{ReplayWindow, WINDOW};
use std::collections::BTreeSet;

#[derive(Arbitrary, Debug)]
enum Step {
    Ahead(u16),
    Behind(u16),
    FarBehind(u16),
    Absolute(u64),
}

fuzz_target!(|steps: Vec<Step>| {
    let mut window = ReplayWindow::new();
    let mut seen = BTreeSet::new();
    for step in steps {
        let max = seen.last().copied().unwrap_or(0u64);
        let c = match step {
            Step::Ahead(d) => max.saturating_add(u64::from(d)),
            Step::Behind(d) => max.saturating_sub(u64::from(d)),
            // Around the window's edge.
            Step::FarBehind(d) => max.saturating_sub(WINDOW - 128 + u64::from(d % 256)),
            Step::Absolute(c) => c,
        };
        let expected = c < REJECT_AFTER_MESSAGES
            && !seen.contains(&c)
            && seen.last().is_none_or(|&m| c >= m || m - c < WINDOW);
        assert_eq!(window.check(c), expected, "check {c} (max {max})");
        assert_eq!(window.accept(c), expected, "accept {c} (max {max})");
        if expected {
            seen.insert(c);
        }
    }
});

//! Logging for both daemons: to standard error, at the level `LOG_LEVEL` names (as wireguard-go reads
//! it): `debug` (or `verbose`), `info` (the default), `warn`, `error`, or `silent`.
//!
//! Colour (ANSI escape codes) only when standard error is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>): a file, a pipe or journald gets plain text.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;

pub fn init() {
    let level = match std::env::var("LOG_LEVEL").as_deref() {
        Ok("debug" | "verbose") => LevelFilter::DEBUG,
        Ok("warn") => LevelFilter::WARN,
        Ok("error") => LevelFilter::ERROR,
        Ok("silent") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    };
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

/// Whether log lines get colour: on a terminal, unless `NO_COLOR` is set to something.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}

//! Logging for both daemons: to standard error, at the level `LOG_LEVEL` names (as wireguard-go reads
//! it): `debug` (or `verbose`), `info` (the default), `warn`, `error`, or `silent`.

use tracing_subscriber::filter::LevelFilter;

pub fn init() {
    let level = match std::env::var("LOG_LEVEL").as_deref() {
        Ok("debug" | "verbose") => LevelFilter::DEBUG,
        Ok("warn") => LevelFilter::WARN,
        Ok("error") => LevelFilter::ERROR,
        Ok("silent") => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

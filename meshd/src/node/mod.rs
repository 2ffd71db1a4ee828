//! The sans-IO mesh core: per-peer state machines composed from `meshd-crypto` and `meshd-routing`,
//! driven by `handle_*` calls with `now` passed in and drained with `poll_*`. No IO, no clock.

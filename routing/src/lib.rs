//! Longest-prefix maps, allowed-IPs and source policy, sans IO.
#![forbid(unsafe_code)]

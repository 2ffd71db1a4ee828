//! WireGuard's cryptography, sans IO.
#![forbid(unsafe_code)]

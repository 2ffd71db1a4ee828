//! WireGuard messages (in progress)

//! Network-namespace harness for the end-to-end tests.

//! The mesh controller's state.
pub mod alloc;

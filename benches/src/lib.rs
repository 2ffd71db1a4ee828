//! Benchmarks live in `benches/`; this library holds nothing but shared setup helpers.

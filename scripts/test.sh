#!/usr/bin/env bash
# The project's whole test suite, as CI runs it: formatting, lints, unit/property/interop tests, the
# layer check of the crate graph, and a short run of every fuzz target.
#
#   scripts/test.sh            everything
#   FUZZ_SECONDS=60 scripts/test.sh    fuzz each target longer (default 10 s)
#   SKIP_FUZZ=1 scripts/test.sh        skip the fuzz stage (it needs cargo-fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*"; }

stage "rustfmt"
cargo fmt --all -- --check

stage "clippy (warnings are errors; clippy.toml bans clock reads and global RNGs)"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "the layers: no sans-IO crate depends on IO (read from cargo metadata)"
cargo test -p meshd-core --locked --test layers

stage "unit, property and interop tests"
cargo test --workspace --locked

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    stage "fuzz targets (${FUZZ_SECONDS:-10} s each)"
    scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi

stage "all tests passed"

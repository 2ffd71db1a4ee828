#!/usr/bin/env bash
# The project's whole test suite, as CI runs it: formatting, lints, unit/property/interop tests, the
# purity check of the sans-IO core, and a short run of every fuzz target.
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

stage "the sans-IO core does no IO"
# packet, crypto and routing forbid unsafe code and are held to clippy.toml; meshd/src/node,
# meshd/src/mesh and meshd/src/ingress have the same contract but live in the daemon crate, so check
# them for the IO and thread APIs clippy allows.
if grep -rnE 'std::net::(UdpSocket|TcpStream|TcpListener)|std::(fs|thread|process)|tokio|Instant::now|SystemTime::now|OsRng|libc::|unsafe' meshd/src/node meshd/src/mesh meshd/src/ingress; then
    echo "meshd/src/node, meshd/src/mesh and meshd/src/ingress must not do IO, spawn threads or read the clock (see DESIGN.md section 2)" >&2
    exit 1
fi

stage "unit, property and interop tests"
cargo test --workspace --locked

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    stage "fuzz targets (${FUZZ_SECONDS:-10} s each)"
    scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi

stage "all tests passed"

#!/usr/bin/env bash
# The project's whole test suite, as CI runs it: formatting, lints, API docs, unit/property/interop tests, the
# layer check of the crate graph, and a short run of every fuzz target. Run it as root (the
# end-to-end tests make namespaces and TUN devices). It first installs what the tests need and this
# machine lacks: the Debian packages of scripts/packages.sh (with apt-get, through sudo when not root)
# and cargo-fuzz.
#
#   scripts/test.sh            everything
#   FUZZ_SECONDS=60 scripts/test.sh    fuzz each target longer (default 10 s)
#   SKIP_FUZZ=1 scripts/test.sh        skip the fuzz stage (and installing cargo-fuzz)
#   MESHD_INSTALL_DRY_RUN=1 scripts/test.sh    print what it would install, and stop
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/packages.sh

stage() { printf '\n==> %s\n' "$*"; }

stage "what the tests need"
install_missing_test_packages
if [ "${SKIP_FUZZ:-0}" != 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
    run_or_print cargo install cargo-fuzz --locked
fi
if [ "${MESHD_INSTALL_DRY_RUN:-0}" = 1 ]; then
    exit 0
fi

stage "rustfmt"
cargo fmt --all -- --check

stage "clippy (warnings are errors; clippy.toml bans clock reads and global RNGs)"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "API docs (broken or private intra-doc links are errors: the crate docs state the contracts)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

stage "the layers: no sans-IO crate depends on IO (read from cargo metadata)"
cargo test -p meshd-core --locked --test layers

stage "unit, property and interop tests"
cargo test --workspace --locked

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    stage "fuzz targets (${FUZZ_SECONDS:-10} s each)"
    scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi

stage "all tests passed"

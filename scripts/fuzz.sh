#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for SECONDS (default 10) from its committed seed corpus.
# New corpus entries go to a scratch directory so the committed seeds stay as they are.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-10}"
# cargo-fuzz needs nightly-only flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: install it with 'cargo install cargo-fuzz --locked'" >&2
    exit 1
fi
cargo fuzz build
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo fuzz list); do
    echo "--- $target"
    mkdir -p "$scratch/$target"
    cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 4
done

#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 10) from its committed seed corpus.
# New corpus entries go to a scratch directory so the committed seeds stay as they are.
#
# With cargo-fuzz installed it drives the build and the runs; without it, the same instrumented build
# (libFuzzer coverage, AddressSanitizer) is made with plain cargo and the binaries are run directly.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-10}"
# The sanitizer needs a nightly-only flag (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable toolchain accept it.
export RUSTC_BOOTSTRAP=1
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# Every [[bin]] of fuzz/Cargo.toml.
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^meshd-fuzz$')

if cargo fuzz --version >/dev/null 2>&1; then
    cargo fuzz build
    for target in $targets; do
        echo "--- $target"
        mkdir -p "$scratch/$target"
        cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
            -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 4
    done
    exit 0
fi

echo "cargo-fuzz not found: building with cargo and the flags cargo-fuzz passes" >&2
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Zsanitizer=address"
# --target keeps the sanitizer flags off build scripts and proc macros, as cargo-fuzz does.
cargo build --release --target "$triple" --bins
for target in $targets; do
    echo "--- $target"
    mkdir -p "$scratch/$target"
    "target/$triple/release/$target" "$scratch/$target" "corpus/$target" \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 4
done

#!/usr/bin/env bash
# Runs the tests that reach gconv's two `unsafe` blocks under Miri (nightly), with
# AVX2 and FMA enabled so the AVX2+FMA micro-kernel is what Miri interprets:
#
# * gconv-core `fast::FastPlan::compute`: the call of the AVX2+FMA kernel in builds
#   that enable the features at compile time;
# * gconv-std `fast::compute`: the call after run-time detection.
#
# Miri is an interpreter (about 10^4 times slower), so it runs the small cases
# (`fast::` tests); the large grids run natively in `cargo test`.
# Installs the nightly toolchain's miri and rust-src components when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^miri'; then
    rustup +nightly component add miri rust-src
fi
cargo +nightly miri setup >/dev/null

# Separate target dir: different flags and toolchain from the normal build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/miri-avx2"
export RUSTFLAGS="-C target-feature=+avx2,+fma"
cargo +nightly miri test -p gconv-core --lib fast::
cargo +nightly miri test -p gconv-std --lib fast::

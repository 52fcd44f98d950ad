#!/usr/bin/env bash
# Runs the tests that reach gconv's `unsafe` blocks under Miri (nightly), with AVX2,
# FMA and AVX-512F enabled so the SIMD micro-kernels are what Miri interprets:
#
# * gconv-core `fast::FastPlan::compute`: the calls of the AVX2+FMA and AVX-512
#   kernels in builds that enable those features at compile time;
# * gconv-std `fast::compute`: the calls after run-time detection;
# * gconv-core `fourier::butterfly_run`: the transforms' unchecked vector loop;
# * gconv-std `fourier::forward`: the calls of the Fourier path's AVX2+FMA and
#   AVX-512 entry points after run-time detection;
# * gconv-core `quant::fast::QFastPlan::compute` and gconv-std `fast::int8_compute`:
#   the calls of the int8 kernels (AVX2 `vpmaddwd`, AVX-VNNI and AVX-512 VNNI
#   `vpdpbusd`), in a second build with the VNNI features enabled. `avx512vl` is
#   enabled there too because Miri takes the AVX-VNNI intrinsic
#   (`_mm256_dpbusd_avx_epi32`, LLVM's `vpdpbusd.256`) for its AVX-512VL twin and
#   refuses it without that feature.
#
# Miri is an interpreter (about 10^4 times slower), so it runs the small cases
# (`fast::` and `fourier::` tests); the large grids run natively in `cargo test`.
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
export RUSTFLAGS="-C target-feature=+avx2,+fma,+avx512f"
cargo +nightly miri test -p gconv-core --lib fast::
cargo +nightly miri test -p gconv-std --lib fast::
cargo +nightly miri test -p gconv-core --lib fourier::
cargo +nightly miri test -p gconv-std --lib fourier::

# The int8 kernels, with the VNNI features (a build of its own: other flags).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR%/miri-avx2}/miri-int8"
export RUSTFLAGS="-C target-feature=+avx2,+fma,+avx512f,+avx512vl,+avx512vnni,+avxvnni"
cargo +nightly miri test -p gconv-core --lib quant::fast::
cargo +nightly miri test -p gconv-std --lib fast::tests::int8

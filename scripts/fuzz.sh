#!/usr/bin/env bash
# Short fuzzing for CI: builds the cargo-fuzz targets of fuzz/ (installing cargo-fuzz
# when it is missing) and runs each for a fixed time over its committed seed corpus,
# with libFuzzer's memory limits, so that a crash, a hang or an unbounded allocation
# on any surface fails the script (fuzz/README.md says what each target feeds).
#
#   scripts/fuzz.sh                 # every target, 20 s each
#   FUZZ_SECONDS=60 scripts/fuzz.sh npy model
#
# New inputs the fuzzer finds go to a temporary directory, not to fuzz/corpus/: the
# committed corpus changes only by hand. A crashing input is written to
# fuzz/artifacts/<target>/ (git-ignored) and the script exits non-zero.
# Needs the nightly toolchain (libFuzzer's instrumentation): `rustup toolchain install
# nightly`.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo "+$toolchain" fuzz build
for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    echo "fuzz: $target for ${seconds}s"
    # -rss_limit_mb / -malloc_limit_mb: a run above 2 GiB of memory, or one allocation
    # above 1 GiB, is a failure; -timeout: one input taking 10 s is a hang.
    log="$work/$target.log"
    if ! cargo "+$toolchain" fuzz run "$target" "$work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target FAILED: the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"

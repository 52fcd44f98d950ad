#!/usr/bin/env bash
# Measures the int8 DSP path's blockings on the emulated Cortex-M4 and fits the cost
# model its planner uses (gconv_core::quant::dsp, the COST_* constants):
#
#   1. builds examples/cortex-m4 with the feature `dsp-blockings` (the firmware then
#      times each of its five int8 layers on a grid of blockings, see src/int8.rs),
#   2. runs it under QEMU with -icount and keeps the `dsp-blocking` lines in
#      examples/cortex-m4/dsp_blockings.log (committed: the data the constants came
#      from),
#   3. runs examples/cortex-m4/fit_dsp_cost.py on them (needs numpy and scipy:
#      tools/.venv from tools/setup-venv.sh, or PYTHON=... with both).
#
# Toolchain as scripts/cortex-m4.sh (run that once first to install it). Not part of
# CI: it takes several minutes and changes nothing by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
FW="$ROOT/examples/cortex-m4"
TARGET=thumbv7em-none-eabihf
OUT="$FW/target/dsp-blockings"
(
    cd "$FW"
    unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
    export CARGO_TARGET_DIR="$OUT"
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build -Zbuild-std=core \
        --release --locked --target "$TARGET" --bin gconv-cortex-m4 --features dsp-blockings
)
LOG="$FW/dsp_blockings.log"
timeout "${QEMU_TIMEOUT:-1800}" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
    -semihosting-config enable=on,target=native -icount shift=6 \
    -kernel "$OUT/$TARGET/release/gconv-cortex-m4" | tee "$OUT/run.log" | grep '^dsp-blocking' >"$LOG.tmp"
mv "$LOG.tmp" "$LOG"
echo "$(wc -l <"$LOG") blockings -> ${LOG#"$ROOT"/}"
PY="${PYTHON:-$ROOT/tools/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
"$PY" "$FW/fit_dsp_cost.py" "$LOG"

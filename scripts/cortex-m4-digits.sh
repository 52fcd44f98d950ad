#!/usr/bin/env bash
# The trained digits models (models/digits-*, f32 and int8) on the emulated Cortex-M4F:
# builds examples/cortex-m4's `digits` binary once per model (`--features <model>`,
# the Rust source of `gconv export` compiled in) and once with no model (the harness
# alone), runs each under QEMU on the 300 rotated test images, and prints one line per
# model:
#
#   cm4 model=<digits-p4cnn|digits-p4m> dtype=<f32|int8> images=300 accuracy=<0.xxx> agree_with_host=<n>/300 instr_per_inference=<n> flash_bytes=<n> ram_bytes=<n> stack_bytes=<n>
#
# flash_bytes / ram_bytes are the model's share, measured from the ELFs with llvm-size:
# (.text + .rodata + .data) and (.data + .bss) of the model's build minus those of the
# harness-only build, minus the test images, labels and host answers in flash (their
# exact size, printed by the firmware). stack_bytes: the painted stack's high-water mark
# over the 300 inferences. Fails when a model disagrees with the host on any image
# (int8: any logit), when the int8 accuracy is more than 1 point below f32, when the
# int8 P4CNN exceeds 16,384 B of RAM + stack or 65,536 B of flash, or when the panic
# gate finds a panic path in gconv-core code. Writes the table into README.md between
# <!-- cortex-m4-digits:begin/end --> when everything passed.
#
# Expects the toolchain of scripts/cortex-m4.sh (run that first; it installs it).
# The panic gate runs on each model's ELF without required paths: what survives there
# depends on how much of the constant model the compiler inlined into the firmware's
# own code. The main firmware (scripts/cortex-m4.sh, src/gate.rs) is where every core
# path, the model runners included, must appear out of line.
#
# Env: QEMU_TIMEOUT (seconds per model, default 300); GCONV_CM4_SELFTEST_FAIL=1 flips one
# host answer per model (this script must then fail); GCONV_CM4_TARGET_DIR as in
# scripts/cortex-m4.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
FW="$ROOT/examples/cortex-m4"
TARGET=thumbv7em-none-eabihf
FW_TARGET="${GCONV_CM4_TARGET_DIR:-$FW/target}" # as scripts/cortex-m4.sh
OUT="$FW_TARGET/digits"
mkdir -p "$OUT"

pick() { local t; for t in "$@"; do if command -v "$t" >/dev/null; then echo "$t"; return; fi; done; }
SIZE=$(pick llvm-size-22 llvm-size)
NM=$(pick llvm-nm-22 llvm-nm)
OBJDUMP=$(pick llvm-objdump-22 llvm-objdump)
CXXFILT=$(pick llvm-cxxfilt-22 llvm-cxxfilt)
[ -n "$SIZE" ] || { echo "cortex-m4-digits: llvm-size not found (run scripts/cortex-m4.sh first)" >&2; exit 1; }

# sizes ELF -> "flash ram" (bytes)
sizes() {
    "$SIZE" -A "$1" | awk '
        $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { flash += $2 }
        $1 == ".data" { flash += $2; ram += $2 }
        $1 == ".bss" || $1 == ".uninit" { ram += $2 }
        END { print flash + 0, ram + 0 }'
}

build() { # feature ("" for the harness) -> $OUT/<name>.elf
    local feature="$1" name="${1:-harness}"
    echo "== cortex-m4-digits: build ${name}"
    (
        cd "$FW"
        unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET
        export CARGO_TARGET_DIR="$FW_TARGET" GCONV_CM4_BUILD=digits
        RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build -Zbuild-std=core \
            --release --locked --target "$TARGET" --bin digits ${feature:+--features "$feature"}
    )
    cp "$FW_TARGET/$TARGET/release/digits" "$OUT/$name.elf"
}

build ""
read -r base_flash base_ram < <(sizes "$OUT/harness.elf")
echo "harness alone: flash $base_flash B, static RAM $base_ram B"

fail=0
panic_fail=0
# shellcheck source=lib/panic-gate.sh
. "$ROOT/scripts/lib/panic-gate.sh"
LINES="$OUT/lines.txt"
: >"$LINES"
for model in p4cnn-f32 p4cnn-int8 p4m-f32 p4m-int8; do
    build "$model"
    elf="$OUT/$model.elf"
    echo "== cortex-m4-digits: run ${model} (QEMU mps2-an386, -icount shift=6)"
    set +e
    line=$(timeout "${QEMU_TIMEOUT:-300}" qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native -icount shift=6 -kernel "$elf" | tee /dev/stderr | grep '^cm4 model=')
    rc=$?
    set -e
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        echo "cortex-m4-digits: ${model}: the firmware failed (status $rc)" >&2
        fail=1
        continue
    fi
    read -r flash ram < <(sizes "$elf")
    test_data=$(echo "$line" | sed -E 's/.* test_data_bytes=([0-9]+).*/\1/')
    out=$(echo "$line" | sed -E 's/ stack_bytes=[0-9]+ buffer_bytes=[0-9]+ test_data_bytes=[0-9]+$//')
    stack=$(echo "$line" | sed -E 's/.* stack_bytes=([0-9]+).*/\1/')
    out="$out flash_bytes=$((flash - base_flash - test_data)) ram_bytes=$((ram - base_ram)) stack_bytes=$stack"
    echo "$out" | tee -a "$LINES"
    echo "== cortex-m4-digits: panic gate (${model})"
    panic_gate "$elf"
done

echo "== cortex-m4-digits: results"
cat "$LINES"
# Checks: every model agreed (the firmware exits 1 otherwise); int8 within 1 point of
# f32; the int8 P4CNN fits the smallest Cortex-M4 parts.
if ! awk '
    { delete kv; for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
      key = kv["model"] SUBSEP kv["dtype"]; acc[key] = kv["accuracy"]; n++
      if (kv["agree_with_host"] != "300/300") { print "  " kv["model"] " " kv["dtype"] ": agree_with_host=" kv["agree_with_host"]; bad = 1 }
      if (kv["model"] == "digits-p4cnn" && kv["dtype"] == "int8") {
          if (kv["ram_bytes"] + kv["stack_bytes"] > 16384) { print "  int8 P4CNN: RAM + stack " kv["ram_bytes"] + kv["stack_bytes"] " > 16384"; bad = 1 }
          if (kv["flash_bytes"] > 65536) { print "  int8 P4CNN: flash " kv["flash_bytes"] " > 65536"; bad = 1 }
      } }
    END {
      if (n != 4) { print "  " n " of 4 models reported"; bad = 1 }
      split("digits-p4cnn digits-p4m", ms, " ")
      for (i in ms) { m = ms[i]; if (acc[m, "f32"] - acc[m, "int8"] > 0.010001) { print "  " m ": int8 accuracy " acc[m, "int8"] " vs f32 " acc[m, "f32"]; bad = 1 } }
      exit bad }' "$LINES"; then
    fail=1
fi
if [ $panic_fail -ne 0 ]; then
    echo "cortex-m4-digits: panic gate FAILED" >&2
    fail=1
fi
if [ $fail -ne 0 ]; then
    echo "cortex-m4-digits: FAILED" >&2
    exit 1
fi

# README table between the markers.
TABLE="$OUT/table.md"
awk -v rustc="$(/usr/bin/rustc --version | cut -d' ' -f1-2)" '
    function c(n,   s) { n = n ""; s = ""; while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) }; return n s }
    { delete kv; for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
      row[++n] = "| " kv["model"] " | " kv["dtype"] " | " sprintf("%.1f%%", 100 * kv["accuracy"]) " | " kv["agree_with_host"] " | " c(kv["instr_per_inference"]) " | " c(kv["flash_bytes"]) " | " c(kv["ram_bytes"]) " | " c(kv["stack_bytes"]) " |" }
    END {
      print "<!-- Generated by scripts/cortex-m4-digits.sh from a passing run; do not edit by hand. -->"
      print "Last run: " rustc ", QEMU mps2-an386 (`-icount shift=6`), 300 rotated test images each."
      print ""
      print "| model | dtype | accuracy | agrees with the host | instructions per inference | flash (B) | RAM (B) | stack (B) |"
      print "|---|---|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= n; i++) print row[i]
    }' "$LINES" >"$TABLE"
cat "$TABLE"
README="$ROOT/README.md"
if awk -v table="$TABLE" '
    $0 == "<!-- cortex-m4-digits:begin -->" { print; while ((getline l < table) > 0) print l; skip = 1; b++; if (e) bad = 1; next }
    $0 == "<!-- cortex-m4-digits:end -->" { skip = 0; e++ }
    !skip { print }
    END { exit (b == 1 && e == 1 && !bad) ? 0 : 3 }' "$README" >"$README.digits.tmp"; then
    if cmp -s "$README.digits.tmp" "$README"; then rm -f "$README.digits.tmp"; echo "README.md: table unchanged"
    else cat "$README.digits.tmp" >"$README"; rm -f "$README.digits.tmp"; echo "README.md: table updated"; fi
else
    rm -f "$README.digits.tmp"
    echo "README.md: markers <!-- cortex-m4-digits:begin/end --> missing or malformed; not updated" >&2
fi
echo "cortex-m4-digits: OK (every model agrees with the host on every image)"

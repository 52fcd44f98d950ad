#!/usr/bin/env bash
# Builds the workspace's tests for aarch64-unknown-linux-gnu (Raspberry Pi, Graviton,
# Apple silicon under Linux) and runs all of them under qemu-aarch64 user mode: every
# test binary of every crate, off x86, so the portable micro-kernels (fast path,
# blocked path, Fourier path, int8) carry the whole suite there. Exits non-zero on any
# build or test failure.
#
# Toolchain, all Debian packages (no rustup): rustc-web/cargo-web (the host compiler,
# as for scripts/cortex-m4.sh), the aarch64 standard library of the same version
# (libstd-rust-web-dev:arm64, a multiarch package), the cross linker
# gcc-aarch64-linux-gnu with libc6-dev-arm64-cross, and qemu-user. Installed here
# with apt-get when missing (adds the arm64 dpkg architecture once).
#
# Target dir: target/aarch64 under the repository (gitignored), so the host's
# builds are not disturbed.
#
# The `gconv` command-line tests start the aarch64 `gconv` binary themselves; the
# host cannot exec it without binfmt_misc, so GCONV_TEST_RUNNER tells them to start
# it through qemu-aarch64 (gconv-std/tests/common/mod.rs).
#
# Env: extra arguments are passed to `cargo test` (e.g. `-p gconv-core`, or
# `-- --test-threads=1` after them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET=aarch64-unknown-linux-gnu
# qemu-aarch64's root for the dynamic loader and libc: the host's own root, where
# libc6:arm64 (a dependency of libstd-rust-web-dev:arm64, same version as the host's
# libc6) puts /lib/ld-linux-aarch64.so.1 and /lib/aarch64-linux-gnu/libc.so.6. Not
# /usr/aarch64-linux-gnu: its loader comes from libc6-arm64-cross (another build,
# 2.36-8cross1 on bookworm), and it finds libc through the host's ld.so.cache, which
# lists the multiarch libc6:arm64; that mixed pair loops forever in pthread_create
# (their private loader state differs), so every test harness hangs on its first
# thread. libc6-arm64-cross is only the link-time sysroot of aarch64-linux-gnu-gcc.
SYSROOT=/

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

echo "== aarch64: toolchain"
updated=0
apt_update() {
    if [ $updated = 0 ]; then
        $SUDO apt-get update -qq
        updated=1
    fi
}
missing=()
for p in rustc-web cargo-web; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt_update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "adding the arm64 dpkg architecture"
    $SUDO dpkg --add-architecture arm64
    updated=0
fi
# The aarch64 std must be exactly the host compiler's version (rustc rejects a std
# built by another compiler).
RUSTC_VERSION="$(version rustc-web)"
missing=()
if [ "$(version libstd-rust-web-dev:arm64)" != "$RUSTC_VERSION" ]; then
    missing+=("libstd-rust-web-dev:arm64=$RUSTC_VERSION")
fi
for p in libc6:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt_update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
/usr/bin/rustc --version
echo "aarch64 std: libstd-rust-web-dev:arm64 $(version libstd-rust-web-dev:arm64)"
aarch64-linux-gnu-gcc --version | head -1
echo "aarch64 loader and libc: libc6:arm64 $(version libc6:arm64)"
qemu-aarch64 --version | head -1

echo "== aarch64: cargo test --workspace --target $TARGET (under qemu-aarch64)"
(
    # Host flags (e.g. -C target-cpu=native) must not reach the cross build.
    unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET RUSTDOCFLAGS
    # The tests' kernel choice must be the target's own, not capped from outside.
    unset GCONV_KERNEL GCONV_INT8_KERNEL
    export CARGO_TARGET_DIR="$ROOT/target/aarch64"
    export RUSTC=/usr/bin/rustc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"
    export GCONV_TEST_RUNNER="qemu-aarch64 -L $SYSROOT"
    # Build scripts' C code (psm, alloca: criterion's dependencies) for the target.
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    start=$(date +%s)
    /usr/bin/cargo test --workspace --locked --target "$TARGET" --no-run
    built=$(date +%s)
    /usr/bin/cargo test --workspace --locked --target "$TARGET" "$@"
    end=$(date +%s)
    echo "aarch64: build $((built - start)) s, tests under qemu $((end - built)) s"
)
echo "aarch64: OK (every test binary passed under qemu-aarch64)"

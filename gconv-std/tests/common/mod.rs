//! What the command-line tests share: how to start the built `gconv` binary.

use std::process::Command;

/// A command that runs the built `gconv` binary.
///
/// When the tests run under an emulator (`scripts/aarch64.sh`: the test binaries and
/// `gconv` are aarch64, run by `qemu-aarch64` on an x86_64 host), a test cannot start
/// `gconv` directly: the host kernel does not know the format unless binfmt_misc has
/// been set up, which needs privileges CI does not have. `GCONV_TEST_RUNNER` names the
/// emulator and its arguments, split on whitespace (e.g.
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu`); the binary is then its last argument,
/// as with Cargo's `target.<triple>.runner`. Unset or empty: `gconv` runs directly.
pub fn gconv_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_gconv");
    let runner = std::env::var("GCONV_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(words).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

/// Whether the tests run under an emulator (`GCONV_TEST_RUNNER` set): timings then
/// measure the emulator, not the code, so speed floors do not apply.
#[allow(
    dead_code,
    reason = "used by some of the test crates that include this module"
)]
pub fn emulated() -> bool {
    std::env::var("GCONV_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

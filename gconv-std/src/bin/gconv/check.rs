//! `gconv check` (to be written).

use std::process::ExitCode;

/// Arguments of `gconv check`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `gconv check`.
pub fn run(_args: Args) -> crate::Outcome {
    Err("gconv check is not implemented yet".into())
}

#[allow(dead_code)]
fn _unused() -> ExitCode {
    ExitCode::SUCCESS
}

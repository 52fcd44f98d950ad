//! `gconv params` (to be written).

use std::process::ExitCode;

/// Arguments of `gconv params`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `gconv params`.
pub fn run(_args: Args) -> crate::Outcome {
    Err("gconv params is not implemented yet".into())
}

#[allow(dead_code)]
fn _unused() -> ExitCode {
    ExitCode::SUCCESS
}

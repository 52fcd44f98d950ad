//! `gconv forward` (to be written).

use std::process::ExitCode;

/// Arguments of `gconv forward`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `gconv forward`.
pub fn run(_args: Args) -> crate::Outcome {
    Err("gconv forward is not implemented yet".into())
}

#[allow(dead_code)]
fn _unused() -> ExitCode {
    ExitCode::SUCCESS
}

//! `gconv bench` (to be written).

use std::process::ExitCode;

/// Arguments of `gconv bench`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `gconv bench`.
pub fn run(_args: Args) -> crate::Outcome {
    Err("gconv bench is not implemented yet".into())
}

#[allow(dead_code)]
fn _unused() -> ExitCode {
    ExitCode::SUCCESS
}

//! The `gconv` command: run, check and measure G-conv layers on `.npy` files.
//!
//! Subcommands (the interface is a contract for scripts: extend, don't rename):
//! `demo`, `forward`, `check`, `params`, `bench`, `peak`, `run`, `quantize`, `export`. Each lives in its own module with
//! its clap `Args` and a `run` function.
//!
//! Exit status: 0 on success; 1 when `check` finds that the equivariance rule and the
//! measurement disagree (or `demo` an error above its bound); 2 for every bad input,
//! with one line on stderr that says what is wrong.

mod args;
mod bench;
mod check;
mod demo;
mod digits;
mod export;
mod forward;
mod forward_int8;
mod params;
mod peak;
mod quantize;
mod rule;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gconv",
    version,
    about = "Group-equivariant convolutions (C4 / D4, GrouPy-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parameter table, equivariance per group element and timing for every layer pair.
    Demo(demo::Args),
    /// Run one layer on .npy files: input, raw weight, optional bias -> output.
    Forward(forward::Args),
    /// Build a random layer (or stack) and measure its equivariance against the rule.
    Check(check::Args),
    /// Parameter and compute accounting: planar CNN vs G-CNN budgets.
    Params(params::Args),
    /// Time a layer's forward pass; prints one machine-readable line.
    Bench(bench::Args),
    /// Measure one core's FMA peak (the reference for bench); prints one line.
    Peak(peak::Args),
    /// Run a whole model (JSON + safetensors, f32 or int8) on a .npy input.
    Run(run::Args),
    /// Post-training quantization: a float model + a calibration batch -> an int8 model.
    Quantize(quantize::Args),
    /// A model file to Rust source for firmware (static weights, checked layer list).
    Export(export::Args),
}

/// What a subcommand returns: its exit status, or a one-line error (exit 2).
pub type Outcome = Result<ExitCode, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Forward(a) => forward::run(a),
        Command::Check(a) => check::run(a),
        Command::Params(a) => params::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Peak(a) => peak::run(a),
        Command::Run(a) => run::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Export(a) => export::run(a),
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("gconv: {message}");
            ExitCode::from(2)
        }
    }
}

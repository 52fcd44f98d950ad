//! `gconv run`: run a whole model (`docs/model-format.md`) on a `.npy` input.
//!
//! ```text
//! gconv run --model m.json --weights m.safetensors --input x.npy --output y.npy [--fold-bn]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use gconv_std::Model;
use gconv_std::npy::{read_npy, write_npy};

/// Arguments of `gconv run`.
#[derive(clap::Args)]
pub struct Args {
    /// Model description (JSON).
    #[arg(long, value_name = "m.json")]
    model: PathBuf,
    /// Weights (safetensors, PyTorch state_dict names).
    #[arg(long, value_name = "m.safetensors")]
    weights: PathBuf,
    /// Input .npy (float32 or float64), `(N, ...)` of the model's input shape.
    #[arg(long, value_name = "x.npy")]
    input: PathBuf,
    /// Output .npy (float32); written only when everything succeeded.
    #[arg(long, value_name = "y.npy")]
    output: PathBuf,
    /// Fold every batch norm into the convolution before it (same result up to
    /// rounding, one pass less).
    #[arg(long)]
    fold_bn: bool,
}

/// Runs `gconv run`.
pub fn run(args: Args) -> crate::Outcome {
    let model = Model::load(&args.model, &args.weights).map_err(|e| e.to_string())?;
    let model = if args.fold_bn {
        model.fold_batch_norm().map_err(|e| e.to_string())?
    } else {
        model
    };
    let x = read_npy(&args.input).map_err(|e| e.to_string())?;
    let y = model
        .forward(&x)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    write_npy(&args.output, &y).map_err(|e| e.to_string())?;
    eprintln!(
        "{} layers: {:?} -> {:?}",
        model.layers().len(),
        x.shape(),
        y.shape()
    );
    Ok(ExitCode::SUCCESS)
}

//! `gconv run`: run a whole model (`docs/model-format.md`) on a `.npy` input.
//!
//! ```text
//! gconv run --model m.json --weights m.safetensors --input x.npy --output y.npy [--fold-bn]
//! ```
//!
//! An int8 model (`"dtype": "int8"`) takes a float input (quantized with the model's
//! input scale and zero point, TFLite `QUANTIZE`) or an int8 input (taken as already
//! quantized), and writes its int8 output, or the dequantized float32 output with
//! `--dequantize`.

use std::path::PathBuf;
use std::process::ExitCode;

use gconv_std::Model;
use gconv_std::npy::{read_npy, read_npy_i8, write_npy, write_npy_i8};
use gconv_std::quant::file::model_dtype;
use gconv_std::quant::{QModel, QTensor};

/// Arguments of `gconv run`.
#[derive(clap::Args)]
pub struct Args {
    /// Model description (JSON).
    #[arg(long, value_name = "m.json")]
    model: PathBuf,
    /// Weights (safetensors, PyTorch state_dict names).
    #[arg(long, value_name = "m.safetensors")]
    weights: PathBuf,
    /// Input .npy, `(N, ...)` of the model's input shape: float32 or float64; for an
    /// int8 model also int8 (already quantized).
    #[arg(long, value_name = "x.npy")]
    input: PathBuf,
    /// Output .npy (float32; int8 for an int8 model unless --dequantize); written only
    /// when everything succeeded.
    #[arg(long, value_name = "y.npy")]
    output: PathBuf,
    /// Fold every batch norm into the convolution before it (same result up to
    /// rounding, one pass less). f32 models only.
    #[arg(long)]
    fold_bn: bool,
    /// int8 models: write the output dequantized to float32.
    #[arg(long)]
    dequantize: bool,
}

/// Runs `gconv run`.
pub fn run(args: Args) -> crate::Outcome {
    let dtype = model_dtype(&args.model).map_err(|e| e.to_string())?;
    if dtype == "int8" {
        return run_int8(&args);
    }
    if args.dequantize {
        return Err("--dequantize is for int8 models".into());
    }
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

/// `gconv run` on an int8 model.
fn run_int8(args: &Args) -> crate::Outcome {
    if args.fold_bn {
        return Err("--fold-bn: an int8 model has its batch norms folded already".into());
    }
    let model = QModel::load(&args.model, &args.weights).map_err(|e| e.to_string())?;
    let input = args.input.display();
    // int8 input as is; otherwise float, quantized by the model.
    let x = match read_npy_i8(&args.input) {
        Ok((shape, data)) => {
            QTensor::new(shape, data, model.input_params()).map_err(|e| format!("{input}: {e}"))?
        }
        Err(_) => {
            let f = read_npy(&args.input)
                .map_err(|e| format!("{e} (an int8 model takes float32, float64 or int8 input)"))?;
            QTensor::quantize(&f, model.input_params()).map_err(|e| format!("{input}: {e}"))?
        }
    };
    let y = model.forward(&x).map_err(|e| format!("{input}: {e}"))?;
    if args.dequantize {
        write_npy(&args.output, &y.dequantize()).map_err(|e| e.to_string())?;
    } else {
        write_npy_i8(&args.output, y.shape(), y.data()).map_err(|e| e.to_string())?;
    }
    let p = y.params();
    eprintln!(
        "{} int8 layers: {:?} -> {:?} (output scale {} zero point {})",
        model.layers().len(),
        x.shape(),
        y.shape(),
        p.scale,
        p.zero_point
    );
    Ok(ExitCode::SUCCESS)
}

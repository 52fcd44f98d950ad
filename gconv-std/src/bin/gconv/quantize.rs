//! `gconv quantize`: post-training quantization of a float model to int8.
//!
//! ```text
//! gconv quantize --model m.json --weights m.safetensors --calibration x.npy \
//!                --out-model q.json --out-weights q.safetensors
//! ```
//!
//! Folds batch norms, fuses ReLUs, measures every activation range on the
//! calibration batch and writes the int8 model (`docs/model-format.md`, "int8
//! models"; the rules in `docs/int8.md`). Prints one line per layer and how far the
//! int8 model's dequantized output is from the float model's on the calibration batch.

use std::path::PathBuf;
use std::process::ExitCode;

use gconv_std::Model;
use gconv_std::npy::read_npy;
use gconv_std::quant::ptq::quantize_model;
use gconv_std::quant::{QLayer, QModel};

/// Arguments of `gconv quantize`.
#[derive(clap::Args)]
pub struct Args {
    /// Float model description (JSON).
    #[arg(long, value_name = "m.json")]
    model: PathBuf,
    /// Float weights (safetensors).
    #[arg(long, value_name = "m.safetensors")]
    weights: PathBuf,
    /// Calibration batch .npy (float32 or float64) of the model's input shape: a few
    /// hundred representative inputs (training data, not the test set).
    #[arg(long, value_name = "x.npy")]
    calibration: PathBuf,
    /// Where to write the int8 model description.
    #[arg(long, value_name = "q.json")]
    out_model: PathBuf,
    /// Where to write the int8 weights.
    #[arg(long, value_name = "q.safetensors")]
    out_weights: PathBuf,
}

/// Runs `gconv quantize`.
pub fn run(args: Args) -> crate::Outcome {
    let model = Model::load(&args.model, &args.weights).map_err(|e| e.to_string())?;
    let calibration = read_npy(&args.calibration).map_err(|e| e.to_string())?;
    let q = quantize_model(&model, &calibration)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    print_summary(&q);
    let float = model
        .forward(&calibration)
        .map_err(|e| format!("{}: {e}", args.calibration.display()))?;
    let int8 = q
        .forward_f32(&calibration)
        .map_err(|e| format!("{}: {e}", args.calibration.display()))?
        .dequantize();
    let err = float.max_abs_diff(&int8).unwrap_or(f32::NAN);
    println!(
        "calibration batch of {}: max |float - dequantized int8| of the output {err:.4} (output scale {})",
        calibration.shape()[0],
        q.layers()
            .iter()
            .rev()
            .find_map(|l| match l {
                QLayer::Conv(c) => Some(c.output_params().scale),
                QLayer::Dense(d) => Some(d.output_params().scale),
                _ => None,
            })
            .unwrap_or(q.input_params().scale)
    );
    q.save(&args.out_model, &args.out_weights)
        .map_err(|e| e.to_string())?;
    println!(
        "wrote {} and {}",
        args.out_model.display(),
        args.out_weights.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_summary(q: &QModel) {
    let p = q.input_params();
    println!("input: scale {:.6} zero point {}", p.scale, p.zero_point);
    for (i, layer) in q.layers().iter().enumerate() {
        match layer {
            QLayer::Conv(c) => {
                let (lo, hi) = c
                    .weight_scale()
                    .iter()
                    .fold((f32::INFINITY, 0.0f32), |(a, b), &s| (a.min(s), b.max(s)));
                println!(
                    "{:>3} conv {} K={} {}: weight scales {lo:.2e}..{hi:.2e} (one per G-channel), output scale {:.6} zero point {}",
                    i + 1,
                    c.pair().name(),
                    c.weight_shape()[3],
                    if c.relu() { "+ReLU" } else { "" },
                    c.output_params().scale,
                    c.output_params().zero_point
                );
            }
            QLayer::Dense(d) => println!(
                "{:>3} dense {:?}{}: weight scale {:.2e}, output scale {:.6} zero point {}",
                i + 1,
                d.features(),
                if d.relu() { " +ReLU" } else { "" },
                d.weight_scale(),
                d.output_params().scale,
                d.output_params().zero_point
            ),
            other => println!("{:>3} {}", i + 1, other.kind()),
        }
    }
}

//! `gconv export`: a model file (f32 or int8) to the Rust source a firmware compiles
//! in (`gconv_std::export::rust_source`): `static` raw weights, the layer list, the
//! model as a compiler-checked `const` and its buffer sizes.
//!
//! ```text
//! gconv export --model m.json --weights m.safetensors --out model.rs [--ram-budget BYTES]
//! ```
//!
//! In the firmware: `mod model { include!("model.rs"); }`, then
//! `model::MODEL.forward(..)` on buffers of `model::SIZES`.

use std::path::PathBuf;
use std::process::ExitCode;

use gconv_std::Model;
use gconv_std::export::{Exportable, rust_source};
use gconv_std::quant::QModel;
use gconv_std::quant::file::model_dtype;

/// Arguments of `gconv export`.
#[derive(clap::Args)]
pub struct Args {
    /// Model description (JSON, f32 or int8).
    #[arg(long, value_name = "m.json")]
    model: PathBuf,
    /// Weights (safetensors).
    #[arg(long, value_name = "m.safetensors")]
    weights: PathBuf,
    /// The Rust source to write.
    #[arg(long, value_name = "model.rs")]
    out: PathBuf,
    /// Refuse the model if its buffers (two activation buffers and the scratch) need
    /// more than this many bytes of RAM.
    #[arg(long, value_name = "BYTES")]
    ram_budget: Option<usize>,
}

/// Runs `gconv export`.
pub fn run(args: Args) -> crate::Outcome {
    let dtype = model_dtype(&args.model).map_err(|e| e.to_string())?;
    let source = args.model.display().to_string();
    let at = |e: gconv_std::Error| format!("{source}: {e}");
    let (text, summary) = if dtype == "int8" {
        let q = QModel::load(&args.model, &args.weights).map_err(|e| e.to_string())?;
        rust_source(Exportable::Int8(&q), &source, args.ram_budget).map_err(at)?
    } else {
        let m = Model::load(&args.model, &args.weights).map_err(|e| e.to_string())?;
        rust_source(Exportable::F32(&m), &source, args.ram_budget).map_err(at)?
    };
    let name = args
        .out
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", args.out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = args
        .out
        .with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &args.out))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: cannot write: {e}", args.out.display())
        })?;
    println!(
        "wrote {} ({dtype}): weights {} bytes in flash; buffers 2 x {} activations + {} scratch = {} bytes of RAM",
        args.out.display(),
        summary.weight_bytes,
        summary.sizes.activations,
        summary.sizes.scratch,
        summary.ram_bytes
    );
    Ok(ExitCode::SUCCESS)
}

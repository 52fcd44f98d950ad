//! `gconv peak`: the FMA peak of one core, measured, as the reference for `bench`.
//!
//! ```text
//! gconv peak [--kernel avx512|avx2_fma|portable]
//! ```
//!
//! Runs the register-resident multiply-add loop of the micro-kernel's instruction set
//! ([`gconv_std::fast::fma_peak_gflops`]; default: the kernel the fast path uses here)
//! and prints one line: `gflops=<float> kernel=<name>`. `bench`'s `gflops` divided by
//! this is the fraction of the peak a layer reaches.

use std::process::ExitCode;

use gconv_std::gconv_core::fast::Kernel;

/// Arguments of `gconv peak`.
#[derive(clap::Args)]
pub struct Args {
    /// Micro-kernel whose instructions to measure (default: the detected one).
    #[arg(long, value_name = "avx512|avx2_fma|portable")]
    kernel: Option<String>,
}

/// Runs `gconv peak`.
pub fn run(args: Args) -> crate::Outcome {
    let kernel = match args.kernel.as_deref().map(str::trim) {
        None => gconv_std::fast::kernel().map_err(|e| e.to_string())?,
        Some(name) => Kernel::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                format!("--kernel: unknown kernel {name:?}: use avx512, avx2_fma or portable")
            })?,
    };
    let gflops = gconv_std::fast::fma_peak_gflops(kernel)
        .map_err(|e| format!("--kernel {}: {e}", kernel.name()))?;
    println!("gflops={gflops:.4} kernel={}", kernel.name());
    Ok(ExitCode::SUCCESS)
}

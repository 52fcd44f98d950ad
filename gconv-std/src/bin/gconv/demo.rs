//! `gconv demo`: the README's main job. For C4 and D4 it prints the parameter table
//! of the worked example, the max equivariance error per group element of a random
//! lift -> gconv stack next to its rounding bound, and each layer's time.

use std::process::ExitCode;
use std::time::Instant;

use gconv_core::group::ELEMENT_NAMES;
use gconv_std::layer::InputDomain;
use gconv_std::params::{
    LayerParams, equal_compute_channels, equal_parameter_channels, worked_example,
};
use gconv_std::{C4, D4, GConv, Group, GroupConv, LiftingConv, Padding, Tensor, transform};

/// Arguments of `gconv demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Input height and width of the random stack.
    #[arg(long, default_value_t = 28)]
    size: usize,
    /// Batch size of the random stack.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Seed for weights and inputs.
    #[arg(long, default_value_t = 2016)]
    seed: u64,
}

/// Runs `gconv demo`.
pub fn run(args: Args) -> crate::Outcome {
    // The largest map of the demo is the D4 stack's output: 7 G-channels x 8 planes.
    let values = [args.batch, 7 * 8, args.size, args.size]
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if values.is_none_or(|v| v > 1 << 28) {
        return Err(format!(
            "--size {} --batch {}: the demo's feature maps would exceed 2^28 values; use smaller sizes",
            args.size, args.batch
        ));
    }
    match demo(args.size, args.batch, args.seed) {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => {
            eprintln!("gconv: an equivariance error exceeded its rounding bound");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the demo; `Ok(false)` when a measured equivariance error exceeds its bound.
fn demo(size: usize, batch: usize, seed: u64) -> Result<bool, gconv_std::Error> {
    println!(
        "gconv demo: Z2 -> G -> G stack with 3 -> 5 -> 7 G-channels, 3x3 kernels, `same` padding"
    );
    println!("input {batch}x3x{size}x{size}, seed {seed}\n");
    let mut ok = true;
    ok &= group_section::<C4>(size, batch, seed)?;
    ok &= group_section::<D4>(size, batch, seed)?;
    ok &= crate::digits::section()?;
    if ok {
        println!(
            "all equivariance errors within the f32 rounding bound, all digit predictions invariant"
        );
    }
    Ok(ok)
}

fn params_row(name: &str, p: &LayerParams) {
    println!(
        "  {name:<8} {:>10} {:>8} -> {:<8} {:>14} {:>14}",
        p.learnable(),
        p.in_planes(),
        p.out_planes(),
        p.expanded_filter_len(),
        p.macs_per_pixel()
    );
}

fn group_section<G: Group>(size: usize, batch: usize, seed: u64) -> Result<bool, gconv_std::Error> {
    let order = G::ORDER;
    println!("== {} (|G| = {order}) ==", G::NAME);
    println!("parameters (weights, no bias; the |G| transformed copies are not parameters):");
    println!(
        "  {:<8} {:>10} {:>20} {:>14} {:>14}",
        "layer", "learnable", "planes in -> out", "expanded bank", "MACs/pixel"
    );
    let [lift, group] = worked_example(order);
    params_row(&format!("Z2->{}", G::NAME), &lift);
    params_row(&format!("{0}->{0}", G::NAME), &group);
    println!(
        "  total learnable: {}",
        lift.learnable() + group.learnable()
    );
    params_row("planar", &LayerParams::planar(5, 7, 3, false));
    println!("  (planar: an ordinary 5 -> 7 conv, for comparison)");
    println!(
        "  converting a planar CNN with N = 64 channels: equal parameters {:.1} G-channels, equal compute {:.1}",
        equal_parameter_channels(64, order),
        equal_compute_channels(64, order)
    );

    let lift_layer = LiftingConv::<G>::new(3, 5, 3, 1, Padding::Same, seed)?;
    let group_layer = GroupConv::<G>::new(5, 7, 3, 1, Padding::Same, seed.wrapping_add(1))?;
    let x = Tensor::from_fn(vec![batch, 3, size, size], |i| {
        // A deterministic pseudo-random image (xorshift), no extra RNG needed here.
        let mut v = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
        v ^= v >> 29;
        ((v % 2001) as f32 - 1000.0) / 1000.0
    });
    let stack = |t: &Tensor| -> Result<Tensor, gconv_std::Error> {
        group_layer.forward(&lift_layer.forward(t)?.map(|v| v.max(0.0)))
    };
    let y = stack(&x)?;
    // Rounding bound: both sides are f32 sums of the same exact values, each within
    // (terms per output, summed over layers) * eps * sum |x w| of it.
    let magnitude = group_layer
        .magnitude_layer()
        .forward(&lift_layer.magnitude_layer().forward(&x.map(f32::abs))?)?;
    let terms = lift.weights() / lift.out_channels + group.weights() / group.out_channels + 4;
    let tol = 2.0 * terms as f32 * f32::EPSILON * magnitude.max_abs();
    println!(
        "equivariance of the stack (rule: {}), max |Phi(g.x) - g.Phi(x)| per element \
         (|y| max {:.3}, rounding bound {tol:.1e}):",
        if lift_layer.is_equivariant_on(size, size) {
            "equivariant"
        } else {
            "broken"
        },
        y.max_abs()
    );
    let mut ok = true;
    for (g, name) in ELEMENT_NAMES.iter().enumerate().take(order) {
        let lhs = stack(&transform::<G>(g, &x)?)?;
        let rhs = transform::<G>(g, &y)?;
        let err = lhs.max_abs_diff(&rhs).unwrap_or(f32::INFINITY);
        ok &= err <= tol;
        println!("  g = {g} ({name:<14}) {err:.2e}");
    }

    println!("time per forward (median of 15, batch {batch}, {size}x{size}):");
    time_layer(&lift_layer, &x)?;
    let h = lift_layer.forward(&x)?;
    time_layer(&group_layer, &h)?;
    println!();
    Ok(ok)
}

fn time_layer<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    x: &Tensor,
) -> Result<(), gconv_std::Error> {
    let geo = layer.geometry(x.shape())?;
    // One output buffer for every run: the steady state of a real loop.
    let mut out = vec![0.0f32; geo.output_len()];
    layer.forward_into(x, &mut out)?; // warm-up
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let y = layer.forward_into(x, &mut out);
            let dt = t.elapsed().as_secs_f64();
            std::hint::black_box(y).map(|_| dt)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "  {:<8} {:>9.3} ms  {:>7.2} GMAC/s  ({} MACs, path {})",
        GConv::<G, D>::name(),
        median * 1e3,
        geo.macs() as f64 / median / 1e9,
        geo.macs(),
        layer.path_name(x.shape())?
    );
    Ok(())
}

//! Helpers shared by the kernel and equivariance tests: random data, the oracle call
//! and the one tolerance rule every float comparison uses.
#![allow(dead_code)]

use gconv_core::{ConvShape, Domain, Group, Padding};
use gconv_std::layer::{GConv, InputDomain};
use gconv_std::reference::{RefConvSpec, RefGroup, RefOutput, reference_conv};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A seeded RNG (tests are reproducible).
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `len` values uniform in [-1, 1).
pub fn random_vec(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The tolerance rule: an f32 sum of `terms` products (plus a bias) differs from the
/// exact sum by at most `(terms + 1) * eps * sum |products|` (the standard bound
/// gamma_n * sum |x_i y_i| for recursive summation, with a factor 1 of slack for the
/// bias addition). `abs_sum` comes from the f64 oracle.
pub fn tolerance(terms: usize, abs_sum: f64, bias: f64) -> f64 {
    (terms as f64 + 2.0) * f32::EPSILON as f64 * (abs_sum + bias.abs())
        + f64::from(f32::MIN_POSITIVE)
}

/// Padding resolved to `[top, bottom, left, right]` (None for `Same` with even K).
pub fn resolve(padding: Padding, k: usize) -> Option<[usize; 4]> {
    padding.resolve(k).ok()
}

/// The oracle for a core `ConvShape`.
pub fn oracle(
    group: RefGroup,
    domain: Domain,
    shape: &ConvShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> RefOutput {
    let spec = RefConvSpec {
        group,
        lifting: domain == Domain::Z2,
        batch: shape.batch,
        in_channels: shape.in_channels,
        out_channels: shape.out_channels,
        height: shape.height,
        width: shape.width,
        kernel: shape.kernel,
        stride: shape.stride,
        pad: resolve(shape.padding, shape.kernel).expect("valid padding"),
    };
    reference_conv(&spec, x, w, bias)
}

/// Asserts `got` matches the oracle element-wise within [`tolerance`]; returns the
/// largest error relative to its tolerance (for reporting).
pub fn assert_matches_oracle(
    what: &str,
    got: &[f32],
    oracle: &RefOutput,
    terms: usize,
    bias: Option<&[f32]>,
) -> f64 {
    assert_eq!(got.len(), oracle.value.len(), "{what}: output length");
    let [_, c_out, nto, oh, ow] = oracle.shape;
    let plane = oh * ow;
    let mut worst: f64 = 0.0;
    for (idx, (&g, (&r, &a))) in got
        .iter()
        .zip(oracle.value.iter().zip(&oracle.abs_sum))
        .enumerate()
    {
        let o = (idx / (nto * plane)) % c_out;
        let b = bias.map_or(0.0, |b| f64::from(b[o]));
        let tol = tolerance(terms, a, b);
        let err = (f64::from(g) - r).abs();
        assert!(
            err <= tol,
            "{what}: output {idx} = {g}, oracle {r}, error {err:e} > tolerance {tol:e}"
        );
        worst = worst.max(err / tol);
    }
    worst
}

/// A seeded layer with a random nonzero bias (the seeded constructor's bias is zero).
pub fn random_layer<G: Group, D: InputDomain>(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: Padding,
    seed: u64,
) -> GConv<G, D> {
    let layer = GConv::<G, D>::new(c_in, c_out, k, stride, padding, seed).unwrap();
    let bias = random_vec(&mut rng(seed + 1000), c_out);
    GConv::from_weights(layer.weight().clone(), Some(bias), stride, padding).unwrap()
}

//! Helpers shared by the kernel and equivariance tests: random data, the oracle call
//! and the one tolerance rule every float comparison uses.
#![allow(dead_code)]

use gconv_core::fourier::FourierPlan;
use gconv_core::group::tables::table_entry;
use gconv_core::{ConvGeometry, ConvShape, Domain, Group, Padding};
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

/// Kernel sizes of the foundation's test grid.
pub const GRID_KERNELS: [usize; 6] = [1, 2, 3, 4, 5, 7];
/// Input sizes of the grid, odd/even and non-square, used in turn.
pub const GRID_SIZES: [(usize, usize); 5] = [(7, 8), (8, 7), (9, 9), (8, 8), (11, 10)];

/// Paddings of the grid: valid, same, symmetric 1, and a lopsided explicit one.
pub fn grid_paddings() -> [Padding; 4] {
    [
        Padding::Valid,
        Padding::Same,
        Padding::symmetric(1),
        Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 0,
            right: 3,
        },
    ]
}

/// The foundation's grid for one pair, in a fixed order: every K of
/// [`GRID_KERNELS`], stride 1..3 and padding of [`grid_paddings`], batch 2, the
/// sizes of [`GRID_SIZES`] in turn and 1..3 random input and output G-channels.
/// Returns `(case number from 1, shape)`; `Same` with even K is included (it is an
/// error the callers check or skip).
pub fn foundation_grid(rng: &mut StdRng) -> Vec<(usize, ConvShape)> {
    let mut shapes = Vec::new();
    for k in GRID_KERNELS {
        for stride in 1..=3 {
            for padding in grid_paddings() {
                let case = shapes.len() + 1;
                let (height, width) = GRID_SIZES[case % GRID_SIZES.len()];
                let shape = ConvShape {
                    batch: 2,
                    in_channels: rng.random_range(1..=3),
                    out_channels: rng.random_range(1..=3),
                    height,
                    width,
                    kernel: k,
                    stride,
                    padding,
                };
                shapes.push((case, shape));
            }
        }
    }
    shapes
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

/// Compares `got` with the oracle element-wise against [`tolerance`]: `Ok` with the
/// largest error relative to its tolerance (for reporting), or `Err` describing the
/// first output past it. The mutation tests use it to show that the bound fails on
/// a planted error; the other tests go through [`assert_matches_oracle`].
pub fn check_matches_oracle(
    got: &[f32],
    oracle: &RefOutput,
    terms: usize,
    bias: Option<&[f32]>,
) -> Result<f64, String> {
    if got.len() != oracle.value.len() {
        return Err(format!(
            "output length {} != oracle {}",
            got.len(),
            oracle.value.len()
        ));
    }
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
        // A NaN fails too.
        if err.is_nan() || err > tol {
            return Err(format!(
                "output {idx} = {g}, oracle {r}, error {err:e} > tolerance {tol:e}"
            ));
        }
        worst = worst.max(err / tol);
    }
    Ok(worst)
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
    check_matches_oracle(got, oracle, terms, bias).unwrap_or_else(|e| panic!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------
// Exact data: small integers.

/// `len` integers uniform in `-max..=max`, as f32. With such inputs, weights and
/// biases every path computes exactly (see `exact.rs`), so its output must equal the
/// oracle's bit for bit.
pub fn small_ints(rng: &mut StdRng, len: usize, max: i32) -> Vec<f32> {
    (0..len)
        .map(|_| rng.random_range(-max..=max) as f32)
        .collect()
}

/// The oracle's output as f32, checked to be exact: every value an integer of
/// magnitude below `2^24` (so that the conversion is exact and every partial sum of
/// an f32 path is representable: the oracle's `sum |x w| + |b|` bounds them all).
/// Panics otherwise: the data is then not the exact kind the caller meant.
pub fn exact_oracle_values(what: &str, oracle: &RefOutput, bias: Option<&[f32]>) -> Vec<f32> {
    let [_, c_out, nto, oh, ow] = oracle.shape;
    let limit = f64::from(1u32 << 24);
    oracle
        .value
        .iter()
        .zip(&oracle.abs_sum)
        .enumerate()
        .map(|(idx, (&v, &a))| {
            let o = (idx / (nto * oh * ow)) % c_out;
            let b = bias.map_or(0.0, |b| f64::from(b[o]).abs());
            assert!(
                v.fract() == 0.0 && a + b < limit,
                "{what}: output {idx}: {v} (sum |x w| + |b| = {}) is not a small integer",
                a + b
            );
            v as f32
        })
        .collect()
}

/// Compares bit for bit; `Err` names the first difference.
pub fn check_bits(got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("length {} != {}", got.len(), want.len()));
    }
    match got
        .iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
    {
        Some(i) => Err(format!(
            "output {i}: {} (bits {:#010x}) != exact {} (bits {:#010x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        )),
        None => Ok(()),
    }
}

/// Asserts bitwise equality with the exact values.
pub fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    check_bits(got, want).unwrap_or_else(|e| panic!("{what}: {e}"));
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

// ---------------------------------------------------------------------------------
// The Fourier path's tolerance (see `fourier_path.rs` for the derivation):
// `2 * (T_F + 3|G| + 2) * eps_f32 * (S_F + |b|)` per output.

/// Orbits of (plane, tap) pairs under `k . (h, p) = entry(k^-1, h, p)`, each as its
/// distinct members, with the stabilizer size. Written from the index table only.
pub fn orbits<G: Group>(nti: usize, k: usize) -> Vec<(Vec<(usize, usize)>, usize)> {
    let taps = k * k;
    let mut seen = vec![false; nti * taps];
    let mut out = Vec::new();
    for h in 0..nti {
        for p in 0..taps {
            if seen[h * taps + p] {
                continue;
            }
            let mut members: Vec<(usize, usize)> = (0..G::ORDER)
                .map(|g| {
                    let (t, u, v) = table_entry(nti, k, G::inverse(g), h, p / k, p % k).unwrap();
                    (t, u * k + v)
                })
                .collect();
            members.sort_unstable();
            members.dedup();
            for &(t, q) in &members {
                seen[t * taps + q] = true;
            }
            let stab = G::ORDER / members.len();
            out.push((members, stab));
        }
    }
    out
}

/// `S_F` of every output (see the module docs), in the output's layout.
pub fn fourier_abs_sums<G: Group>(geo: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f64> {
    let [n, c_in, nti, h, wd] = geo.input_shape();
    let [_, c_out, nto, oh, ow] = geo.output_shape();
    let (k, s) = (geo.kernel(), geo.stride());
    let [top, _, left, _] = geo.padding();
    let orbits = orbits::<G>(nti, k);
    let mut sums = vec![0.0f64; geo.output_len()];
    for b in 0..n {
        for o in 0..c_out {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut total = 0.0;
                    for i in 0..c_in {
                        for (members, stab) in &orbits {
                            let (mut sx, mut sw) = (0.0f64, 0.0f64);
                            for &(t, p) in members {
                                let (u, v) = (p / k, p % k);
                                let (r, c) = (
                                    (y * s + u) as isize - top as isize,
                                    (xo * s + v) as isize - left as isize,
                                );
                                if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < wd {
                                    let idx = (((b * c_in + i) * nti + t) * h + r as usize) * wd
                                        + c as usize;
                                    sx += f64::from(x[idx]).abs();
                                }
                                sw += f64::from(w[((o * c_in + i) * nti + t) * k * k + p]).abs();
                            }
                            total += *stab as f64 * sx * sw;
                        }
                    }
                    for g in 0..nto {
                        sums[(((b * c_out + o) * nto + g) * oh + y) * ow + xo] = total;
                    }
                }
            }
        }
    }
    sums
}

/// Compares the Fourier output with the oracle against the Fourier tolerance: `Ok`
/// with the worst error relative to its tolerance, or `Err` describing the first
/// output past it (for the mutation tests).
pub fn check_fourier_matches<G: Group>(
    plan: &FourierPlan,
    got: &[f32],
    reference: &RefOutput,
    sums: &[f64],
    bias: Option<&[f32]>,
) -> Result<f64, String> {
    let geo = plan.geometry();
    let [_, c_out, nto, oh, ow] = geo.output_shape();
    let d_max = 2; // the largest irrep dimension, for C4 and D4
    let terms = geo.in_channels() * plan.orbits() * d_max;
    let eps = f64::from(f32::EPSILON);
    let mut worst: f64 = 0.0;
    if got.len() != reference.value.len() {
        return Err(format!("length {} != {}", got.len(), reference.value.len()));
    }
    for (idx, (&g, (&r, &sf))) in got.iter().zip(reference.value.iter().zip(sums)).enumerate() {
        let o = (idx / (nto * oh * ow)) % c_out;
        let b = bias.map_or(0.0, |b| f64::from(b[o]).abs());
        let tol =
            2.0 * (terms + 3 * G::ORDER + 2) as f64 * eps * (sf + b) + f64::from(f32::MIN_POSITIVE);
        let err = (f64::from(g) - r).abs();
        // A NaN fails too.
        if err.is_nan() || err > tol {
            return Err(format!(
                "output {idx} = {g}, oracle {r}, error {err:e} > tolerance {tol:e}"
            ));
        }
        worst = worst.max(err / tol);
    }
    Ok(worst)
}

/// Asserts the Fourier output matches the oracle within the Fourier tolerance;
/// returns the worst error relative to its tolerance.
pub fn assert_fourier_matches<G: Group>(
    what: &str,
    plan: &FourierPlan,
    got: &[f32],
    reference: &RefOutput,
    sums: &[f64],
    bias: Option<&[f32]>,
) -> f64 {
    check_fourier_matches::<G>(plan, got, reference, sums, bias)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

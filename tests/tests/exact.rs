//! Exact tests: on small-integer data every path computes exactly in f32, so every
//! output must equal the f64 oracle's (`gconv_std::reference`) bit for bit. No
//! tolerance: a wrong term, a skipped write, a stale accumulator or a misplaced tap
//! shows as a different value.
//!
//! # Why these paths are exact on such data
//!
//! Inputs, weights and biases are integers in `-3..=3`. Then:
//!
//! * **Direct, blocked and fast paths**: each output is the bias plus a sum of
//!   integer products, accumulated in f32 in some order, with or without fused
//!   multiply-adds. Every partial sum is an integer of magnitude at most
//!   `sum |x w| + |b|`, which the oracle computes and [`exact_oracle_values`] checks
//!   to be below `2^24`: every partial sum is representable, so no operation rounds,
//!   whatever the order.
//! * **Fourier path** (read in `gconv-core/src/fourier/`): the transforms are
//!   additions and subtractions only (`spectrum.rs`: the irreps' matrices have
//!   entries 0 and +-1); the transformed weights are
//!   `d/|G| * sum_m rho(m) w[m . q] / |S_q|` (`FourierPlan::pack_weights`), integer
//!   sums times `d/|G|` (1/8 to 1/2) divided by a stabilizer size (1, 2, 4 or 8):
//!   powers of two, so every transformed weight is an integer multiple of `2^-6`.
//!   The GEMMs then multiply them by integers (the transformed input) and the
//!   synthesis adds: every intermediate value is a multiple of `2^-6` of magnitude
//!   at most `|G| * S_F + |b|` (`S_F` as in `fourier_path.rs`, the sum over the
//!   `|G|` orientations of the direct path's `sum |x w|`). [`fourier_fits`] checks
//!   that to be below `2^18`, so every value is `n * 2^-6` with `|n| < 2^24`:
//!   representable, nothing rounds. The lifting kernel computes the same numbers.
//!
//! The cases: the foundation grid (all four pairs, K 1..7 odd and even, strides
//! 1..3, valid/same/symmetric/lopsided padding, batch 2, with and without bias)
//! through every path, and cases the grid does not reach: many input planes
//! (several blocks of planes and groups of tiles on the fast path, checked with
//! `FastPlan::plane_blocks`), the AVX-512 row tiles' output widths, more than one
//! Fourier pixel block, the Fourier lifting kernel's vector widths, K up to the fast
//! path's limit. Paths: the raw-weight and expanded direct kernels, the blocked
//! path, `Plan` with every algorithm (the build's compiled kernel), and the fast and
//! Fourier paths with every micro-kernel this CPU has (`available_kernels`: the
//! AVX2 and AVX-512 kernels after run-time detection).

mod common;

use common::{
    assert_bits, exact_oracle_values, foundation_grid, fourier_abs_sums, oracle, rng, small_ints,
};
use gconv_core::conv::expand::expand_filter_bank;
use gconv_core::conv::{group, lifting};
use gconv_core::fast::{CO_GROUP, FastPlan, Kernel, MAX_KERNEL};
use gconv_core::fourier::{BLOCK_PIXELS, FourierPlan};
use gconv_core::{
    Algorithm, C4, ConvGeometry, ConvShape, D4, Domain, Error, Group, Padding, Plan, blocked,
};
use gconv_std::reference::RefGroup;
use rand::rngs::StdRng;

/// The data's integers are in `-MAX_INT..=MAX_INT`.
const MAX_INT: i32 = 3;

/// Whether the Fourier path's intermediate values on `x`, `w` are exact (see the
/// module docs): `|G| * max S_F + max |b| < 2^18`.
fn fourier_fits<G: Group>(geo: &ConvGeometry, x: &[f32], w: &[f32]) -> bool {
    let max_sf = fourier_abs_sums::<G>(geo, x, w)
        .into_iter()
        .fold(0.0f64, f64::max);
    G::ORDER as f64 * max_sf + f64::from(MAX_INT) < f64::from(1u32 << 18)
}

/// One configuration's integer data.
struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    with_bias: bool,
}

impl Data {
    fn new(geo: &ConvGeometry, rng: &mut StdRng, with_bias: bool) -> Self {
        Data {
            x: small_ints(rng, geo.input_len(), MAX_INT),
            w: small_ints(rng, geo.weight_len(), MAX_INT),
            b: small_ints(rng, geo.bias_len(), MAX_INT),
            with_bias,
        }
    }

    fn bias(&self) -> Option<&[f32]> {
        self.with_bias.then_some(self.b.as_slice())
    }
}

/// Runs one configuration through every path and checks each against the exact
/// values. Returns the number of path runs compared.
fn check_exact<G: Group>(
    group: RefGroup,
    domain: Domain,
    shape: &ConvShape,
    rng: &mut StdRng,
    with_bias: bool,
) -> usize {
    let what = format!("{} {domain:?} {shape:?}", G::NAME);
    let geo = shape
        .geometry::<G>(domain)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let data = Data::new(&geo, rng, with_bias);
    let (x, w, bias) = (&data.x[..], &data.w[..], data.bias());
    let reference = oracle(group, domain, shape, x, w, bias);
    let want = exact_oracle_values(&what, &reference, bias);
    let mut runs = 0;

    // The direct kernels: raw weights (scratch full of junk) and expanded bank.
    let mut out = vec![f32::NAN; geo.output_len()];
    let mut scratch = vec![1e30f32; geo.bank_len() + 5];
    match domain {
        Domain::Z2 => lifting::lifting_conv::<G>(shape, x, w, bias, &mut out, &mut scratch),
        Domain::Group => group::group_conv::<G>(shape, x, w, bias, &mut out, &mut scratch),
    }
    .unwrap();
    assert_bits(&format!("{what} direct raw"), &out, &want);
    let mut bank = vec![f32::NAN; geo.bank_len()];
    let (c_out, c_in, k) = (shape.out_channels, shape.in_channels, shape.kernel);
    expand_filter_bank::<G>(domain, c_out, c_in, k, w, &mut bank).unwrap();
    let mut out = vec![f32::NAN; geo.output_len()];
    match domain {
        Domain::Z2 => lifting::lifting_conv_expanded::<G>(shape, x, &bank, bias, &mut out),
        Domain::Group => group::group_conv_expanded::<G>(shape, x, &bank, bias, &mut out),
    }
    .unwrap();
    assert_bits(&format!("{what} direct expanded"), &out, &want);
    runs += 2;

    // The blocked path from the raw weights.
    let need = blocked::scratch_len::<G>(domain, shape).unwrap();
    let mut out = vec![f32::NAN; geo.output_len()];
    let mut scratch = vec![1e30f32; need + 3];
    blocked::forward::<G>(domain, shape, x, w, bias, &mut out, &mut scratch).unwrap();
    assert_bits(&format!("{what} blocked"), &out, &want);
    runs += 1;

    // `Plan` with every algorithm the layer takes, with the build's kernel.
    let fast_ok = k <= MAX_KERNEL;
    for algorithm in Algorithm::ALL {
        if matches!(algorithm, Algorithm::Fast | Algorithm::Fourier) && !fast_ok {
            continue;
        }
        let plan = Plan::<G>::new(domain, shape, algorithm.into(), Kernel::compiled())
            .unwrap_or_else(|e| panic!("{what} {algorithm:?}: {e}"));
        let mut prepared = vec![f32::NAN; plan.prepared_weights_len()];
        let mut scratch = vec![1e30f32; plan.prepare_scratch_len().max(plan.scratch_len()) + 7];
        plan.prepare_weights(w, &mut prepared, &mut scratch)
            .unwrap();
        scratch.fill(1e30);
        let mut out = vec![f32::NAN; geo.output_len()];
        plan.forward(x, &prepared, bias, &mut out, &mut scratch)
            .unwrap();
        assert_bits(&format!("{what} plan {}", algorithm.name()), &out, &want);
        runs += 1;
    }
    if !fast_ok {
        return runs;
    }

    // The fast path with every kernel this CPU has.
    let fast = FastPlan::new(&geo).unwrap();
    let mut packed = vec![f32::NAN; fast.packed_bank_len()];
    fast.pack_bank(&bank, &mut packed).unwrap();
    for kernel in gconv_std::fast::available_kernels() {
        let mut out = vec![f32::NAN; geo.output_len()];
        gconv_std::fast::forward(&fast, kernel, x, &packed, bias, &mut out).unwrap();
        assert_bits(&format!("{what} fast {}", kernel.name()), &out, &want);
        runs += 1;
    }

    // The Fourier path with every kernel this CPU has.
    assert!(
        fourier_fits::<G>(&geo, x, w),
        "{what}: too large for exact Fourier sums"
    );
    let fourier = FourierPlan::new(&geo).unwrap();
    let mut packed = vec![f32::NAN; fourier.packed_weights_len()];
    fourier.pack_weights(w, &mut packed).unwrap();
    for kernel in gconv_std::fast::available_kernels() {
        let mut out = vec![f32::NAN; geo.output_len()];
        let mut scratch = vec![f32::NAN; fourier.scratch_len() + 17];
        gconv_std::fourier::forward(&fourier, kernel, x, &packed, bias, &mut out, &mut scratch)
            .unwrap();
        assert_bits(&format!("{what} fourier {}", kernel.name()), &out, &want);
        runs += 1;
    }
    runs
}

fn grid<G: Group>(group: RefGroup, domain: Domain, seed: u64) -> usize {
    let mut rng = rng(seed);
    let mut compared = 0;
    for (case, shape) in foundation_grid(&mut rng) {
        match shape.geometry::<G>(domain) {
            Ok(_) => {}
            Err(Error::SameNeedsOddKernel { .. }) => continue,
            Err(e) => panic!("{shape:?}: {e}"),
        }
        check_exact::<G>(group, domain, &shape, &mut rng, case.is_multiple_of(2));
        compared += 1;
    }
    compared
}

#[test]
fn z2_to_c4_is_exact_on_every_path() {
    assert_eq!(grid::<C4>(RefGroup::C4, Domain::Z2, 101), 6 * 3 * 4 - 2 * 3);
}

#[test]
fn c4_to_c4_is_exact_on_every_path() {
    assert_eq!(
        grid::<C4>(RefGroup::C4, Domain::Group, 102),
        6 * 3 * 4 - 2 * 3
    );
}

#[test]
fn z2_to_d4_is_exact_on_every_path() {
    assert_eq!(grid::<D4>(RefGroup::D4, Domain::Z2, 103), 6 * 3 * 4 - 2 * 3);
}

#[test]
fn d4_to_d4_is_exact_on_every_path() {
    assert_eq!(
        grid::<D4>(RefGroup::D4, Domain::Group, 104),
        6 * 3 * 4 - 2 * 3
    );
}

fn shape(
    (in_channels, out_channels): (usize, usize),
    (height, width): (usize, usize),
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> ConvShape {
    ConvShape {
        batch: 2,
        in_channels,
        out_channels,
        height,
        width,
        kernel,
        stride,
        padding,
    }
}

fn check_any(group: RefGroup, domain: Domain, shape: &ConvShape, rng: &mut StdRng) -> usize {
    match group {
        RefGroup::C4 => check_exact::<C4>(group, domain, shape, rng, true),
        RefGroup::D4 => check_exact::<D4>(group, domain, shape, rng, true),
    }
}

fn geometry(group: RefGroup, domain: Domain, shape: &ConvShape) -> ConvGeometry {
    match group {
        RefGroup::C4 => shape.geometry::<C4>(domain),
        RefGroup::D4 => shape.geometry::<D4>(domain),
    }
    .unwrap()
}

/// Many input planes: the fast path walks several blocks of planes (accumulating
/// across them) and, past `CO_GROUP` plane tiles, several groups of tiles; the
/// Fourier GEMMs have long sums. The library's blocking is asked, not copied.
#[test]
fn blocks_of_input_planes_are_exact() {
    let mut rng = rng(111);
    let cases = [
        // D4 16 -> 9: 128 planes in, 18 plane tiles (two groups).
        (
            RefGroup::D4,
            Domain::Group,
            shape((16, 9), (12, 13), 3, 1, Padding::Same),
        ),
        // C4 40 -> 17: 160 planes, 17 tiles, even K, stride 3.
        (
            RefGroup::C4,
            Domain::Group,
            shape((40, 17), (14, 13), 4, 3, Padding::symmetric(1)),
        ),
        // Lifting with many channels.
        (
            RefGroup::C4,
            Domain::Z2,
            shape((70, 5), (10, 12), 5, 1, Padding::Same),
        ),
    ];
    let mut many_groups = false;
    for (group, domain, shape) in cases {
        let geo = geometry(group, domain, &shape);
        let plan = FastPlan::new(&geo).unwrap();
        for kernel in Kernel::ALL {
            assert!(
                plan.plane_blocks(kernel) > 1,
                "{shape:?} {}: one block of planes, the case misses its purpose",
                kernel.name()
            );
        }
        many_groups |= plan.plane_tiles() > CO_GROUP;
        check_any(group, domain, &shape, &mut rng);
    }
    assert!(many_groups);
}

/// Output widths of the AVX-512 row tiles (multiples of 16, and 24, 40, 56), the
/// other kernels' tile widths and around them, a one-block (sweep) case and a
/// several-block one each.
#[test]
fn tile_widths_are_exact() {
    let mut rng = rng(112);
    let mut widths = vec![16, 24, 32, 40, 48, 56, 64, 80];
    for kernel in Kernel::ALL {
        let (_, nr) = kernel.tile();
        widths.extend([nr - 1, nr + 1]);
    }
    widths.sort_unstable();
    widths.dedup();
    let mut case = 0usize;
    for &out_w in &widths {
        for (group, domain, c_in) in [
            (RefGroup::C4, Domain::Z2, 1),
            (RefGroup::D4, Domain::Group, 4),
        ] {
            case += 1;
            let k = [1, 3, 2][case % 3];
            let out_h = 1 + case % 5;
            // Valid padding: the input gives exactly `out_h x out_w` outputs.
            let shape = shape(
                (c_in, 2),
                (out_h + k - 1, out_w + k - 1),
                k,
                1,
                Padding::Valid,
            );
            let geo = geometry(group, domain, &shape);
            assert_eq!((geo.out_height(), geo.out_width()), (out_h, out_w));
            check_any(group, domain, &shape, &mut rng);
        }
    }
}

/// More output pixels than one Fourier pixel block, and the lifting kernel's vector
/// widths (4, 8, 16 pixels: narrower than one, whole ones, an overlapping last one).
#[test]
fn fourier_blocks_and_lifting_vectors_are_exact() {
    let mut rng = rng(113);
    let explicit = Padding::Explicit {
        top: 1,
        bottom: 2,
        left: 0,
        right: 3,
    };
    let cases = [
        (
            RefGroup::C4,
            Domain::Group,
            shape((2, 3), (19, 17), 3, 1, Padding::Same),
        ),
        (
            RefGroup::D4,
            Domain::Group,
            shape((1, 2), (23, 14), 2, 1, explicit),
        ),
        (
            RefGroup::C4,
            Domain::Z2,
            shape((3, 5), (2, 18), 3, 1, Padding::Same),
        ),
        (
            RefGroup::D4,
            Domain::Z2,
            shape((2, 6), (5, 21), 3, 2, Padding::Same),
        ),
        (
            RefGroup::C4,
            Domain::Z2,
            shape((1, 3), (3, 3), 3, 1, Padding::Same),
        ),
        (
            RefGroup::D4,
            Domain::Z2,
            shape((1, 9), (24, 20), 5, 1, Padding::Same),
        ),
    ];
    let mut several_blocks = false;
    for (group, domain, shape) in cases {
        let geo = geometry(group, domain, &shape);
        several_blocks |=
            domain == Domain::Group && geo.out_height() * geo.out_width() > BLOCK_PIXELS;
        check_any(group, domain, &shape, &mut rng);
    }
    assert!(several_blocks);
}

/// Kernels past the grid's largest up to the fast path's limit, lifting and group.
#[test]
fn large_kernels_are_exact() {
    let mut rng = rng(114);
    for (i, k) in (8..=MAX_KERNEL).enumerate() {
        for (group, domain) in [
            (RefGroup::C4, Domain::Z2),
            (RefGroup::C4, Domain::Group),
            (RefGroup::D4, Domain::Z2),
            (RefGroup::D4, Domain::Group),
        ] {
            let padding = if i % 2 == 0 {
                Padding::symmetric(k / 2)
            } else {
                Padding::Valid
            };
            let shape = shape((1, 2), (k + 2, k + 5), k, 1 + i % 2, padding);
            check_any(group, domain, &shape, &mut rng);
        }
    }
}

//! The group-Fourier path (`gconv_core::fourier`) against the independent f64 oracle
//! (`gconv_std::reference`), over the foundation's full grid (all four pairs, K in
//! {1,2,3,4,5,7}, odd/even non-square sizes, stride 1..3, every padding kind, bias on
//! and off, batch 2), with every micro-kernel this CPU has, plus cases the grid does
//! not reach (many channels, several pixel blocks, K up to 11).
//!
//! # Tolerance
//!
//! The Fourier path sums other numbers than the direct path: per output coefficient,
//! `T_F = C_in * Q * d` products of transformed inputs (sums of `|G|` inputs of one
//! orbit) and transformed weights (sums of `|G|` weights of the same orbit), then
//! a synthesis of `|G|` coefficients. Its rounding error is bounded by the sum of the
//! products' magnitudes,
//!
//! ```text
//! S_F = sum_{i, orbits O} |S_O| * (sum_{(h,p) in O} |x_i[h](pixel + p)|) * (sum_{(h,p) in O} |w_o,i[h][p]|)
//! ```
//!
//! (computed here from the index table, independently of gconv-core's orbit code),
//! and the test allows `2 * (T_F + 3|G| + 2) * eps_f32 * (S_F + |b|)` per output:
//! the recursive-summation bound for `T_F` terms, the butterflies' `2 log2|G| <= 3|G|`
//! additions, and a factor 2 for the synthesis weights (at most 1.5). `S_F` is at
//! most `|G|` times the direct path's `sum |x w|`, so this is the direct path's
//! tolerance scaled by `|G|`, not a loose constant: a dropped or misplaced term
//! (error about `|x w|`) fails it.

mod common;

use common::{assert_fourier_matches, foundation_grid, fourier_abs_sums, oracle, random_vec, rng};
use gconv_core::fast::{Kernel, MAX_KERNEL};
use gconv_core::fourier::{FourierPlan, ImagePart};
use gconv_core::{C4, ConvGeometry, ConvShape, D4, Domain, Error, Group, Padding};
use gconv_std::reference::RefGroup;
use rand::rngs::StdRng;

/// Whether two outputs are the same bits, value for value.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The Fourier path's output with `kernel`; output pre-filled with NaN, scratch with
/// junk and longer than needed, packed weights pre-filled with NaN.
fn fourier_forward(
    plan: &FourierPlan,
    kernel: Kernel,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let geo = plan.geometry();
    let mut packed = vec![f32::NAN; plan.packed_weights_len()];
    plan.pack_weights(w, &mut packed).unwrap();
    let mut out = vec![f32::NAN; geo.output_len()];
    let mut scratch = vec![f32::NAN; plan.scratch_len() + 17];
    gconv_std::fourier::forward(plan, kernel, x, &packed, bias, &mut out, &mut scratch).unwrap();
    out
}

/// One configuration through the oracle and the Fourier path with every kernel.
fn check_case<G: Group>(
    group: RefGroup,
    domain: Domain,
    shape: &ConvShape,
    rng: &mut StdRng,
    with_bias: bool,
) -> f64 {
    let what = format!("{} {domain:?} {shape:?}", G::NAME);
    let geo = shape
        .geometry::<G>(domain)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let x = random_vec(rng, geo.input_len());
    let w = random_vec(rng, geo.weight_len());
    let b = random_vec(rng, geo.bias_len());
    let bias = with_bias.then_some(b.as_slice());
    let reference = oracle(group, domain, shape, &x, &w, bias);
    let sums = fourier_abs_sums::<G>(&geo, &x, &w);
    let plan = FourierPlan::new(&geo).unwrap();
    let mut worst: f64 = 0.0;
    for kernel in gconv_std::fast::available_kernels() {
        let out = fourier_forward(&plan, kernel, &x, &w, bias);
        let what = format!("{what} fourier {}", kernel.name());
        worst = worst.max(assert_fourier_matches::<G>(
            &what, &plan, &out, &reference, &sums, bias,
        ));
    }
    worst
}

fn grid<G: Group>(group: RefGroup, domain: Domain, seed: u64) -> usize {
    let mut rng = rng(seed);
    let mut compared = 0;
    let mut worst: f64 = 0.0;
    for (case, shape) in foundation_grid(&mut rng) {
        match shape.geometry::<G>(domain) {
            Ok(_) => {}
            Err(Error::SameNeedsOddKernel { .. }) => continue,
            Err(e) => panic!("{shape:?}: {e}"),
        }
        let w = check_case::<G>(group, domain, &shape, &mut rng, case.is_multiple_of(2));
        worst = worst.max(w);
        compared += 1;
    }
    // For the record (`--nocapture`): how close the grid came to the bound.
    eprintln!(
        "{} {domain:?}: worst Fourier error / tolerance {worst:.3}",
        G::NAME
    );
    compared
}

#[test]
fn z2_to_c4_fourier_matches_reference() {
    assert_eq!(grid::<C4>(RefGroup::C4, Domain::Z2, 21), 6 * 3 * 4 - 2 * 3);
}

#[test]
fn c4_to_c4_fourier_matches_reference() {
    assert_eq!(
        grid::<C4>(RefGroup::C4, Domain::Group, 22),
        6 * 3 * 4 - 2 * 3
    );
}

#[test]
fn z2_to_d4_fourier_matches_reference() {
    assert_eq!(grid::<D4>(RefGroup::D4, Domain::Z2, 23), 6 * 3 * 4 - 2 * 3);
}

#[test]
fn d4_to_d4_fourier_matches_reference() {
    assert_eq!(
        grid::<D4>(RefGroup::D4, Domain::Group, 24),
        6 * 3 * 4 - 2 * 3
    );
}

fn shape(
    c: (usize, usize),
    hw: (usize, usize),
    kernel: usize,
    stride: usize,
    padding: Padding,
    batch: usize,
) -> ConvShape {
    ConvShape {
        batch,
        in_channels: c.0,
        out_channels: c.1,
        height: hw.0,
        width: hw.1,
        kernel,
        stride,
        padding,
    }
}

/// Cases the small grid does not reach: several pixel blocks with a short last one
/// (more than `BLOCK_PIXELS` outputs), many channels (long sums, several plane
/// blocks in the GEMMs, more than one group of output tiles), kernels up to 11,
/// output channel counts that are not a multiple of 4.
#[test]
fn fourier_large_cases_match_reference() {
    let mut rng = rng(25);
    let explicit = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 1,
        right: 3,
    };
    let c4 = [
        (
            Domain::Group,
            shape((12, 5), (23, 19), 3, 1, Padding::Same, 1),
        ),
        (Domain::Group, shape((3, 17), (30, 33), 4, 1, explicit, 2)),
        (
            Domain::Group,
            shape((2, 3), (25, 24), MAX_KERNEL, 1, Padding::Same, 1),
        ),
        (
            Domain::Group,
            shape((6, 2), (40, 37), 6, 2, Padding::Valid, 1),
        ),
        (Domain::Z2, shape((5, 7), (33, 31), 5, 1, Padding::Same, 1)),
        (Domain::Z2, shape((1, 16), (64, 64), 3, 1, Padding::Same, 1)),
    ];
    for (domain, s) in c4 {
        check_case::<C4>(RefGroup::C4, domain, &s, &mut rng, true);
    }
    let d4 = [
        (
            Domain::Group,
            shape((16, 3), (20, 18), 3, 1, Padding::Same, 1),
        ),
        (Domain::Group, shape((2, 9), (19, 22), 8, 1, explicit, 1)),
        (
            Domain::Group,
            shape((1, 1), (24, 26), 9, 3, Padding::Same, 1),
        ),
        (Domain::Z2, shape((3, 5), (30, 29), 7, 1, Padding::Same, 1)),
    ];
    for (domain, s) in d4 {
        check_case::<D4>(RefGroup::D4, domain, &s, &mut rng, true);
    }
}

/// Every buffer of the wrong length is an error naming it, and nothing is written.
#[test]
fn fourier_errors_leave_the_output_untouched() {
    let shape = shape((3, 5), (9, 8), 3, 1, Padding::Same, 2);
    let geo = shape.geometry::<D4>(Domain::Group).unwrap();
    let plan = FourierPlan::new(&geo).unwrap();
    let mut r = rng(26);
    let x = random_vec(&mut r, geo.input_len());
    let w = random_vec(&mut r, geo.weight_len());
    let b = random_vec(&mut r, geo.bias_len());
    let mut packed = vec![0.0; plan.packed_weights_len()];
    plan.pack_weights(&w, &mut packed).unwrap();
    let scratch_len = plan.scratch_len();
    let kernel = Kernel::Portable;
    let run = |x: &[f32], p: &[f32], bias: Option<&[f32]>, out_len: usize, scratch_len: usize| {
        let mut out = vec![7.0f32; out_len];
        let mut scratch = vec![0.0; scratch_len];
        let res = plan.forward(kernel, x, p, bias, &mut out, &mut scratch);
        assert!(out.iter().all(|&v| v == 7.0), "output written on error");
        res
    };
    let len = |e: Error| match e {
        Error::BufferLength { buffer, .. } => buffer,
        other => panic!("unexpected {other}"),
    };
    use gconv_core::Buffer;
    let out_len = geo.output_len();
    assert_eq!(
        len(run(&x[1..], &packed, Some(&b), out_len, scratch_len).unwrap_err()),
        Buffer::Input
    );
    assert_eq!(
        len(run(&x, &packed[1..], Some(&b), out_len, scratch_len).unwrap_err()),
        Buffer::Bank
    );
    assert_eq!(
        len(run(&x, &packed, Some(&b[1..]), out_len, scratch_len).unwrap_err()),
        Buffer::Bias
    );
    assert_eq!(
        len(run(&x, &packed, Some(&b), out_len + 1, scratch_len).unwrap_err()),
        Buffer::Output
    );
    assert_eq!(
        len(run(&x, &packed, Some(&b), out_len, scratch_len - 1).unwrap_err()),
        Buffer::Scratch
    );
    // One image, a range of channel groups: a range past the last group (or reversed)
    // and an output of the wrong length for the range are errors.
    let groups = plan.channel_groups();
    assert_eq!(groups, 2); // 5 channels: groups of 4 and 1
    let image = &x[..geo.input_len() / 2];
    let per_channel = geo.nto() * geo.out_height() * geo.out_width();
    for (range, out_len) in [
        (0..3, 5 * per_channel),
        (1..3, per_channel),
        #[allow(clippy::reversed_empty_ranges)] // a reversed range is one of the errors
        (2..1, 0),
        (0..1, 5 * per_channel),
    ] {
        let mut out = vec![7.0f32; out_len];
        let mut scratch = vec![0.0; scratch_len];
        let part = ImagePart::Channels {
            groups: range.clone(),
            out: &mut out,
        };
        let res = plan.forward_image(kernel, image, &packed, Some(&b), part, &mut scratch);
        assert!(res.is_err(), "{range:?}");
        assert!(
            out.iter().all(|&v| v == 7.0),
            "{range:?}: output written on error"
        );
    }
    // The groups' outputs, side by side, are the whole image's bits.
    let mut whole = vec![0.0f32; 5 * per_channel];
    let mut scratch = vec![0.0; scratch_len];
    let part = ImagePart::Channels {
        groups: 0..2,
        out: &mut whole,
    };
    plan.forward_image(kernel, image, &packed, Some(&b), part, &mut scratch)
        .unwrap();
    let mut split = vec![0.0f32; 5 * per_channel];
    let (first, second) = split.split_at_mut(4 * per_channel);
    for (groups, out) in [(0..1, first), (1..2, second)] {
        let part = ImagePart::Channels { groups, out };
        plan.forward_image(kernel, image, &packed, Some(&b), part, &mut scratch)
            .unwrap();
    }
    assert!(same_bits(&whole, &split));
    // Weights: wrong raw or packed length, nothing written.
    let mut p2 = vec![3.0f32; plan.packed_weights_len()];
    assert_eq!(
        len(plan.pack_weights(&w[1..], &mut p2).unwrap_err()),
        Buffer::Weight
    );
    let mut short = vec![3.0f32; plan.packed_weights_len() - 1];
    assert_eq!(
        len(plan.pack_weights(&w, &mut short).unwrap_err()),
        Buffer::Bank
    );
    assert!(p2.iter().chain(&short).all(|&v| v == 3.0));
    // A kernel larger than the fast path's limit has no Fourier plan either.
    let big = ConvShape {
        kernel: MAX_KERNEL + 2,
        ..shape
    };
    let geo = big.geometry::<C4>(Domain::Group).unwrap();
    assert!(matches!(
        FourierPlan::new(&geo),
        Err(Error::KernelTooLargeForFastPath { .. })
    ));
    // A kernel this CPU lacks is an error through gconv-std, before anything runs.
    for k in Kernel::ALL {
        if !gconv_std::fast::cpu_has(k) {
            let mut out = vec![7.0f32; out_len];
            let mut scratch = vec![0.0; scratch_len];
            let res = gconv_std::fourier::forward(
                &plan,
                k,
                &x,
                &packed,
                Some(&b),
                &mut out,
                &mut scratch,
            );
            assert!(matches!(res, Err(Error::KernelNotCompiled { .. })));
            assert!(out.iter().all(|&v| v == 7.0));
        }
    }
}

/// The batch split over 1, 2 and 3 threads (by images, or by rows of the output
/// when there are fewer images than threads) gives the bits of one thread: for a
/// group layer (GEMM kernels) and for lifting layers (the fused lifting kernel).
#[test]
fn fourier_threads_are_bitwise_one_thread() {
    threads_case::<C4>(Domain::Group, (4, 9), 27);
    threads_case::<C4>(Domain::Z2, (3, 9), 28);
    threads_case::<C4>(Domain::Z2, (1, 6), 29);
    threads_case::<D4>(Domain::Z2, (2, 5), 30);
}

fn threads_case<G: Group>(domain: Domain, channels: (usize, usize), seed: u64) {
    let mut r = rng(seed);
    for batch in [1, 2, 5] {
        let shape = shape(channels, (13, 11), 3, 1, Padding::Same, batch);
        let geo = shape.geometry::<G>(domain).unwrap();
        let plan = FourierPlan::new(&geo).unwrap();
        let x = random_vec(&mut r, geo.input_len());
        let w = random_vec(&mut r, geo.weight_len());
        let b = random_vec(&mut r, geo.bias_len());
        let mut packed = vec![0.0; plan.packed_weights_len()];
        plan.pack_weights(&w, &mut packed).unwrap();
        let kernel = gconv_std::fast::kernel().expect("GCONV_KERNEL");
        let mut one = vec![f32::NAN; geo.output_len()];
        gconv_std::fourier::forward_thread_scratch(&plan, kernel, &x, &packed, Some(&b), &mut one)
            .unwrap();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut par = vec![f32::NAN; geo.output_len()];
            let pieces = pool
                .install(|| {
                    gconv_std::fourier::forward_par(&plan, kernel, &x, &packed, Some(&b), &mut par)
                })
                .unwrap();
            // By images when there are enough, else by rows of the 13x11 output: all
            // threads get work either way.
            let what = format!("{domain:?} {channels:?} batch {batch}, {threads} threads");
            assert_eq!(pieces, threads, "{what}");
            assert!(same_bits(&one, &par), "{what}");
        }
    }
}

/// `ImagePart::Channels` on lifting layers (the fused kernel, which takes 1, 2 or 4
/// channels per pass depending on the kernel): every split into channel groups gives
/// the bits of the whole image, with every kernel this CPU has; 5 and 9 channels
/// leave a last group of one.
#[test]
fn fourier_lifting_channel_groups_split_is_bitwise() {
    let mut r = rng(33);
    for (domain_c4, (c_in, c_out), width) in
        [(true, (1, 5), 13), (true, (3, 9), 40), (false, (2, 5), 7)]
    {
        let shape = shape((c_in, c_out), (6, width), 3, 1, Padding::Same, 1);
        let geo = if domain_c4 {
            shape.geometry::<C4>(Domain::Z2).unwrap()
        } else {
            shape.geometry::<D4>(Domain::Z2).unwrap()
        };
        let plan = FourierPlan::new(&geo).unwrap();
        let x = random_vec(&mut r, geo.input_len());
        let w = random_vec(&mut r, geo.weight_len());
        let b = random_vec(&mut r, geo.bias_len());
        let mut packed = vec![0.0; plan.packed_weights_len()];
        plan.pack_weights(&w, &mut packed).unwrap();
        let per_channel = geo.nto() * geo.out_height() * geo.out_width();
        let groups = plan.channel_groups();
        for kernel in Kernel::ALL
            .into_iter()
            .filter(|&k| gconv_std::fast::cpu_has(k))
        {
            let mut scratch = vec![f32::NAN; plan.scratch_len()];
            let mut whole = vec![f32::NAN; geo.output_len()];
            let part = ImagePart::all(&plan, &mut whole);
            gconv_std::fourier::forward_image(
                &plan,
                kernel,
                &x,
                &packed,
                Some(&b),
                part,
                &mut scratch,
            )
            .unwrap();
            for cut in 0..=groups {
                let mut split = vec![f32::NAN; geo.output_len()];
                let at = (cut * 4).min(c_out) * per_channel;
                let (first, second) = split.split_at_mut(at);
                for (range, out) in [(0..cut, first), (cut..groups, second)] {
                    let part = ImagePart::Channels { groups: range, out };
                    gconv_std::fourier::forward_image(
                        &plan,
                        kernel,
                        &x,
                        &packed,
                        Some(&b),
                        part,
                        &mut scratch,
                    )
                    .unwrap();
                }
                assert!(same_bits(&whole, &split), "{geo:?} {kernel:?} cut {cut}");
            }
        }
    }
}

/// Through the layer API: `ConvPath::Fourier` runs this path, new weights reach its
/// transformed weights, and a kernel it cannot take is an error naming the layer
/// (Auto then runs the direct path).
#[test]
fn layer_fourier_path_uses_new_weights_and_reports_errors() {
    use gconv_std::{ConvPath, D4ToD4, Tensor};
    let mut layer = D4ToD4::new(3, 2, 3, 1, Padding::Same, 28).unwrap();
    layer.set_path(ConvPath::Fourier);
    let shape = vec![2, 3, 8, 9, 10];
    let fourier = format!(
        "fourier_{}",
        gconv_std::fast::kernel().expect("GCONV_KERNEL").name()
    );
    assert_eq!(layer.path_name(&shape).unwrap(), fourier);
    let mut r = rng(29);
    let x = Tensor::new(shape.clone(), random_vec(&mut r, 2 * 3 * 8 * 90)).unwrap();
    for round in 0..2 {
        let w = Tensor::new(
            layer.weight().shape().to_vec(),
            random_vec(&mut r, layer.weight().len()),
        )
        .unwrap();
        let b = random_vec(&mut r, 2);
        layer.set_weights(w, Some(b)).unwrap();
        let y = layer.forward(&x).unwrap();
        let conv = ConvShape {
            batch: 2,
            in_channels: 3,
            out_channels: 2,
            height: 9,
            width: 10,
            kernel: 3,
            stride: 1,
            padding: Padding::Same,
        };
        let geo = conv.geometry::<D4>(Domain::Group).unwrap();
        let reference = oracle(
            RefGroup::D4,
            Domain::Group,
            &conv,
            x.data(),
            layer.weight().data(),
            layer.bias(),
        );
        let sums = fourier_abs_sums::<D4>(&geo, x.data(), layer.weight().data());
        let plan = FourierPlan::new(&geo).unwrap();
        assert_fourier_matches::<D4>(
            &format!("layer round {round}"),
            &plan,
            y.data(),
            &reference,
            &sums,
            layer.bias(),
        );
    }
    let mut big = D4ToD4::new(1, 1, MAX_KERNEL + 2, 1, Padding::Same, 30).unwrap();
    let big_shape = vec![1, 1, 8, 15, 15];
    big.set_path(ConvPath::Fourier);
    let err = big.path_name(&big_shape).unwrap_err().to_string();
    assert!(err.contains("D4->D4"), "{err}");
    big.set_path(ConvPath::Auto);
    // Off x86 the portable kernel's Auto is the blocked path, which takes any K.
    let auto =
        if gconv_core::plan::auto_picks_blocked(gconv_std::fast::kernel().expect("GCONV_KERNEL")) {
            "blocked"
        } else {
            "direct"
        };
    assert_eq!(big.path_name(&big_shape).unwrap(), auto);
}

/// `ImagePart::Rows`: rows of every plane, any split of the rows, give the bits of the
/// whole image; bad rows, plane counts or plane lengths are errors that write nothing.
#[test]
fn fourier_rows_split_is_bitwise_the_whole_image() {
    // Lifting layers (the fused kernel) with every kernel this CPU has; then the
    // group layer below, with the errors.
    for kernel in Kernel::ALL
        .into_iter()
        .filter(|&k| gconv_std::fast::cpu_has(k))
    {
        rows_case::<C4>(Domain::Z2, (3, 6), kernel, 34);
        rows_case::<C4>(Domain::Z2, (1, 5), kernel, 35);
        rows_case::<D4>(Domain::Z2, (2, 3), kernel, 36);
    }
    let (geo, plan, x, packed, b, mut scratch) = rows_case::<D4>(
        Domain::Group,
        (3, 5),
        gconv_std::fast::kernel().expect("GCONV_KERNEL"),
        31,
    );
    let (oh, ow) = (geo.out_height(), geo.out_width());
    let planes = geo.out_channels() * geo.nto();
    // Errors: rows past the end, too few planes, a plane of the wrong length.
    let mut out = vec![7.0f32; geo.output_len()];
    let mut list: Vec<&mut [f32]> = out
        .chunks_exact_mut(oh * ow)
        .map(|p| &mut p[..2 * ow])
        .collect();
    let res = plan.forward_image(
        Kernel::Portable,
        &x,
        &packed,
        Some(&b),
        ImagePart::Rows {
            rows: 10..12,
            planes: &mut list,
        },
        &mut scratch,
    );
    assert!(matches!(res, Err(Error::TileRange { .. })), "{res:?}");
    let res = plan.forward_image(
        Kernel::Portable,
        &x,
        &packed,
        Some(&b),
        ImagePart::Rows {
            rows: 0..2,
            planes: &mut list[..planes - 1],
        },
        &mut scratch,
    );
    assert!(matches!(res, Err(Error::BufferLength { .. })), "{res:?}");
    let res = plan.forward_image(
        Kernel::Portable,
        &x,
        &packed,
        Some(&b),
        ImagePart::Rows {
            rows: 0..3,
            planes: &mut list,
        },
        &mut scratch,
    );
    assert!(matches!(res, Err(Error::BufferLength { .. })), "{res:?}");
    assert!(out.iter().all(|&v| v == 7.0));
}

/// Splits the output rows of one image of a `(C_in, C_out)` layer with a 11x9 output
/// in several ways and checks each gives the whole image's bits; returns the layer's
/// set-up for further checks.
#[allow(clippy::type_complexity)]
fn rows_case<G: Group>(
    domain: Domain,
    channels: (usize, usize),
    kernel: Kernel,
    seed: u64,
) -> (
    ConvGeometry,
    FourierPlan,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
) {
    let mut r = rng(seed);
    let shape = shape(channels, (11, 9), 3, 1, Padding::Same, 1);
    let geo = shape.geometry::<G>(domain).unwrap();
    let plan = FourierPlan::new(&geo).unwrap();
    let x = random_vec(&mut r, geo.input_len());
    let w = random_vec(&mut r, geo.weight_len());
    let b = random_vec(&mut r, geo.bias_len());
    let mut packed = vec![0.0; plan.packed_weights_len()];
    plan.pack_weights(&w, &mut packed).unwrap();
    let mut whole = vec![f32::NAN; geo.output_len()];
    let mut scratch = vec![f32::NAN; plan.scratch_len()];
    gconv_std::fourier::forward(
        &plan,
        kernel,
        &x,
        &packed,
        Some(&b),
        &mut whole,
        &mut scratch,
    )
    .unwrap();
    let (oh, ow) = (geo.out_height(), geo.out_width());
    for split in [
        vec![0, 11],
        vec![0, 1, 11],
        vec![0, 4, 7, 11],
        vec![0, 0, 5, 11],
    ] {
        let mut out = vec![f32::NAN; geo.output_len()];
        for pair in split.windows(2) {
            let rows = pair[0]..pair[1];
            let mut list: Vec<&mut [f32]> = out
                .chunks_exact_mut(oh * ow)
                .map(|p| &mut p[rows.start * ow..rows.end * ow])
                .collect();
            let part = ImagePart::Rows {
                rows,
                planes: &mut list,
            };
            gconv_std::fourier::forward_image(
                &plan,
                kernel,
                &x,
                &packed,
                Some(&b),
                part,
                &mut scratch,
            )
            .unwrap();
        }
        assert!(
            same_bits(&whole, &out),
            "{domain:?} {channels:?} {kernel:?} {split:?}"
        );
    }
    (geo, plan, x, packed, b, scratch)
}

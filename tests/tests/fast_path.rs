//! The fast forward path's contract beyond its numbers on the test grid (those are in
//! `kernels_vs_reference.rs`):
//!
//! * its public functions (`FastPlan::new`, `pack_bank`, `pack_input`, `compute`,
//!   `forward`, and gconv-std's `fast::compute`, `fast::forward`, `fast::forward_par`)
//!   return errors for bad arguments, naming the buffer, and leave the output as it
//!   was (outputs start as a sentinel that is checked afterwards);
//! * `GConv::forward_into_par` in rayon pools of 1, 2 and 3 threads gives the bits of
//!   `forward_into`, for batches of 1, 2 and 5 and all four pairs;
//! * a layer's direct and fast paths agree with each other and with the f64 oracle,
//!   `path_name` tells which path runs, and a kernel too large for the fast path runs
//!   the direct path under `ConvPath::Auto` and is an error under `ConvPath::Fast`.
//!
//! Tolerance (`common::tolerance`): `(terms + 2) * eps_f32 * (sum |x w| + |b|)` per
//! output against the oracle, twice that between the two paths (each is within the
//! bound of the exact value).

mod common;

use std::ops::Range;

use common::{assert_matches_oracle, oracle, random_layer, random_vec, rng, tolerance};
use gconv_core::fast::{FastPlan, Kernel, MAX_KERNEL, MR, pack_bank};
use gconv_core::plan::auto_picks_blocked;
use gconv_core::{Buffer, C4, ConvGeometry, ConvShape, D4, Domain, Error, Padding};
use gconv_std::layer::InputDomain;
use gconv_std::reference::RefGroup;
use gconv_std::{ConvPath, GConv, Group, Tensor};

/// Output sentinel: any write shows.
const SENTINEL: f32 = -12345.5;

fn untouched(buf: &[f32]) -> bool {
    buf.iter().all(|&v| v == SENTINEL)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The D4->D4 shape the error tests run on: 2 -> 3 channels (6 tiles), 7x6, K=3.
fn small_shape() -> ConvShape {
    ConvShape {
        batch: 2,
        in_channels: 2,
        out_channels: 3,
        height: 7,
        width: 6,
        kernel: 3,
        stride: 1,
        padding: Padding::Same,
    }
}

/// Valid operands of one image of `small_shape()`: plan, packed input (from a
/// random image), packed bank (from a random bank), bias.
struct Operands {
    geo: ConvGeometry,
    plan: FastPlan,
    packed_input: Vec<f32>,
    packed_bank: Vec<f32>,
    bias: Vec<f32>,
}

fn operands() -> Operands {
    let geo = small_shape().geometry::<D4>(Domain::Group).unwrap();
    let plan = FastPlan::new(&geo).unwrap();
    let mut rng = rng(21);
    let image = random_vec(&mut rng, plan.image_input_len());
    let bank = random_vec(&mut rng, geo.bank_len());
    let mut packed_input = vec![0.0; plan.packed_input_len()];
    plan.pack_input(&image, &mut packed_input).unwrap();
    let mut packed_bank = vec![0.0; plan.packed_bank_len()];
    pack_bank(geo.bank_shape(), &bank, &mut packed_bank).unwrap();
    Operands {
        geo,
        plan,
        packed_input,
        packed_bank,
        bias: random_vec(&mut rng, geo.bias_len()),
    }
}

/// `compute` of every kernel the CPU has (through gconv-std) and of the portable
/// kernel (through gconv-core), on an output of `out_len` values starting as the
/// sentinel: each must return `expected` and leave the output untouched.
fn expect_compute_error(
    ops: &Operands,
    (input, bank, bias): (&[f32], &[f32], &[f32]),
    out_len: usize,
    tiles: Range<usize>,
    expected: Error,
) {
    let what = format!("tiles {tiles:?}, out {out_len}, expected {expected:?}");
    for kernel in gconv_std::fast::available_kernels() {
        let mut out = vec![SENTINEL; out_len];
        let got = gconv_std::fast::compute(
            &ops.plan,
            kernel,
            input,
            bank,
            Some(bias),
            &mut out,
            tiles.clone(),
        );
        assert_eq!(got, Err(expected), "{what}, {}", kernel.name());
        assert!(untouched(&out), "{what}, {}: output written", kernel.name());
    }
    let mut out = vec![SENTINEL; out_len];
    let got = ops.plan.compute(
        Kernel::Portable,
        input,
        bank,
        Some(bias),
        &mut out,
        tiles.clone(),
    );
    assert_eq!(got, Err(expected), "{what}, core portable");
    assert!(untouched(&out), "{what}, core portable: output written");
    assert!(expected.to_string().len() > 20, "{expected}");
}

#[test]
fn kernel_larger_than_max_is_an_error() {
    assert_eq!(MAX_KERNEL, 11);
    for k in [MAX_KERNEL + 1, 13, 20] {
        let shape = ConvShape {
            kernel: k,
            height: k + 1,
            width: k,
            padding: Padding::Valid,
            ..small_shape()
        };
        for domain in [Domain::Z2, Domain::Group] {
            let expected = Err(Error::KernelTooLargeForFastPath {
                kernel: k,
                max: MAX_KERNEL,
            });
            let c4 = shape.geometry::<C4>(domain).unwrap();
            assert_eq!(FastPlan::new(&c4).map(|_| ()), expected, "C4 {domain:?}");
            let d4 = shape.geometry::<D4>(domain).unwrap();
            assert_eq!(FastPlan::new(&d4).map(|_| ()), expected, "D4 {domain:?}");
        }
    }
    let largest = ConvShape {
        kernel: MAX_KERNEL,
        height: MAX_KERNEL,
        width: MAX_KERNEL + 2,
        padding: Padding::Valid,
        ..small_shape()
    };
    let geo = largest.geometry::<D4>(Domain::Group).unwrap();
    assert!(FastPlan::new(&geo).is_ok());
}

#[test]
fn tile_ranges_outside_the_layer_are_errors() {
    let ops = operands();
    let tiles = ops.plan.plane_tiles();
    assert_eq!(tiles, 3 * 8 / MR);
    let plane = ops.geo.out_height() * ops.geo.out_width();
    let args = (&ops.packed_input[..], &ops.packed_bank[..], &ops.bias[..]);
    let reversed = Range {
        start: tiles - 1,
        end: tiles - 2,
    };
    for range in [
        0..tiles + 1,
        tiles - 1..tiles + 1,
        tiles..tiles + 1,
        tiles + 1..tiles + 1,
        tiles + 5..tiles + 9,
        reversed,
        usize::MAX - 1..usize::MAX,
    ] {
        let expected = Error::TileRange {
            start: range.start,
            end: range.end,
            tiles,
        };
        // An output sized for the whole image and one sized for the range (where that
        // fits in memory): the range is the error either way.
        expect_compute_error(&ops, args, tiles * MR * plane, range.clone(), expected);
        if range.len() <= tiles + 4 {
            let len = range.len() * MR * plane;
            expect_compute_error(&ops, args, len, range, expected);
        }
    }
    // The edges that are valid: an empty range at the end, the last tile.
    for kernel in gconv_std::fast::available_kernels() {
        let mut none: [f32; 0] = [];
        let bias = Some(&ops.bias[..]);
        let (input, bank) = (&ops.packed_input, &ops.packed_bank);
        gconv_std::fast::compute(
            &ops.plan,
            kernel,
            input,
            bank,
            bias,
            &mut none,
            tiles..tiles,
        )
        .unwrap();
        let mut last = vec![SENTINEL; MR * plane];
        let range = tiles - 1..tiles;
        gconv_std::fast::compute(&ops.plan, kernel, input, bank, bias, &mut last, range).unwrap();
        assert!(last.iter().all(|v| v.is_finite() && *v != SENTINEL));
    }
}

#[test]
fn compute_with_wrong_buffer_lengths_is_an_error() {
    let ops = operands();
    let plane = ops.geo.out_height() * ops.geo.out_width();
    let tiles = 1..3;
    let out_len = tiles.len() * MR * plane;
    let (input, bank, bias) = (&ops.packed_input, &ops.packed_bank, &ops.bias);
    let (n_in, n_bank, n_bias) = (input.len(), bank.len(), bias.len());
    let len_err = |buffer, expected, found| Error::BufferLength {
        buffer,
        expected,
        found,
    };
    let longer = |v: &[f32]| [v, &[1.0]].concat();

    // The packed input: shorter than `packed_input_len` is an error.
    let short = &input[..n_in - 1];
    let expected = len_err(Buffer::Scratch, n_in, n_in - 1);
    expect_compute_error(&ops, (short, bank, bias), out_len, tiles.clone(), expected);
    let expected = len_err(Buffer::Scratch, n_in, 0);
    expect_compute_error(&ops, (&[], bank, bias), out_len, tiles.clone(), expected);
    // The packed bank: exactly `packed_bank_len`.
    let expected = len_err(Buffer::Bank, n_bank, n_bank - 1);
    let args = (&input[..], &bank[..n_bank - 1], &bias[..]);
    expect_compute_error(&ops, args, out_len, tiles.clone(), expected);
    let expected = len_err(Buffer::Bank, n_bank, n_bank + 1);
    let args = (&input[..], &longer(bank)[..], &bias[..]);
    expect_compute_error(&ops, args, out_len, tiles.clone(), expected);
    // The bias: exactly C_out.
    let expected = len_err(Buffer::Bias, n_bias, n_bias - 1);
    let args = (&input[..], &bank[..], &bias[..n_bias - 1]);
    expect_compute_error(&ops, args, out_len, tiles.clone(), expected);
    let expected = len_err(Buffer::Bias, n_bias, n_bias + 1);
    let args = (&input[..], &bank[..], &longer(bias)[..]);
    expect_compute_error(&ops, args, out_len, tiles.clone(), expected);
    // The output: exactly the planes of the tiles.
    let args = (&input[..], &bank[..], &bias[..]);
    for found in [out_len - 1, out_len + 1, ops.plan.image_output_len(), 0] {
        let expected = len_err(Buffer::Output, out_len, found);
        expect_compute_error(&ops, args, found, tiles.clone(), expected);
    }

    // A packed input longer than needed is fine, and gives the same bits.
    let mut exact = vec![SENTINEL; out_len];
    let mut long = vec![SENTINEL; out_len];
    let padded = [&input[..], &[1e30; 100]].concat();
    for kernel in gconv_std::fast::available_kernels() {
        let b = Some(&bias[..]);
        gconv_std::fast::compute(&ops.plan, kernel, input, bank, b, &mut exact, tiles.clone())
            .unwrap();
        gconv_std::fast::compute(
            &ops.plan,
            kernel,
            &padded,
            bank,
            b,
            &mut long,
            tiles.clone(),
        )
        .unwrap();
        assert_eq!(bits(&exact), bits(&long), "{}", kernel.name());
    }

    // The AVX2+FMA kernel through the compile-time entry point of a build that does
    // not assume AVX2+FMA, or through gconv-std on a CPU without them.
    let mut out = vec![SENTINEL; out_len];
    let not_compiled = Err(Error::KernelNotCompiled {
        kernel: Kernel::Avx2Fma.name(),
    });
    if !cfg!(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )) {
        let got = ops.plan.compute(
            Kernel::Avx2Fma,
            input,
            bank,
            Some(bias),
            &mut out,
            tiles.clone(),
        );
        assert_eq!(got, not_compiled);
        assert!(untouched(&out));
    }
    if !gconv_std::fast::avx2_fma_detected() {
        let got = gconv_std::fast::compute(
            &ops.plan,
            Kernel::Avx2Fma,
            input,
            bank,
            Some(bias),
            &mut out,
            tiles,
        );
        assert_eq!(got, not_compiled);
        assert!(untouched(&out));
    }
}

#[test]
fn packing_with_wrong_lengths_is_an_error() {
    let ops = operands();
    let shape = ops.geo.bank_shape();
    let n = ops.geo.bank_len();
    let bank = random_vec(&mut rng(22), n);
    let len_err = |buffer, expected, found| {
        Err(Error::BufferLength {
            buffer,
            expected,
            found,
        })
    };
    // pack_bank: the bank and the packed buffer must both be exactly the bank's length
    // (the packed buffer is reported as scratch).
    for (bank_len, packed_len, expected) in [
        (n - 1, n, len_err(Buffer::Bank, n, n - 1)),
        (0, n, len_err(Buffer::Bank, n, 0)),
        (n, n - 1, len_err(Buffer::Scratch, n, n - 1)),
        (n, n + 1, len_err(Buffer::Scratch, n, n + 1)),
    ] {
        let mut packed = vec![SENTINEL; packed_len];
        let got = pack_bank(
            shape,
            &[&bank[..], &[0.5]].concat()[..bank_len],
            &mut packed,
        );
        assert_eq!(got, expected, "bank {bank_len}, packed {packed_len}");
        assert!(untouched(&packed), "bank {bank_len}, packed {packed_len}");
        let got = ops
            .plan
            .pack_bank(&[&bank[..], &[0.5]].concat()[..bank_len], &mut packed);
        assert_eq!(got, expected, "plan: bank {bank_len}, packed {packed_len}");
        assert!(untouched(&packed));
    }
    // A bank shape whose output planes do not split into tiles of MR, and one whose
    // length overflows.
    let mut packed = vec![SENTINEL; 6 * 4 * 9];
    assert_eq!(
        pack_bank([6, 4, 3, 3], &[1.0; 6 * 4 * 9], &mut packed),
        Err(Error::GroupOrderNotTileable { order: 6, tile: MR })
    );
    assert_eq!(
        pack_bank([usize::MAX - 3, 4, 3, 3], &[1.0; 8], &mut packed),
        Err(Error::SizeOverflow)
    );
    assert!(untouched(&packed));

    // pack_input: the image exactly one image, the packed buffer at least
    // `packed_input_len`.
    let plan = &ops.plan;
    let (n_img, n_packed) = (plan.image_input_len(), plan.packed_input_len());
    let image = random_vec(&mut rng(23), n_img + 1);
    for (img_len, packed_len, expected) in [
        (
            n_img - 1,
            n_packed,
            len_err(Buffer::Input, n_img, n_img - 1),
        ),
        (
            n_img + 1,
            n_packed,
            len_err(Buffer::Input, n_img, n_img + 1),
        ),
        (
            n_img,
            n_packed - 1,
            len_err(Buffer::Scratch, n_packed, n_packed - 1),
        ),
    ] {
        let mut packed = vec![SENTINEL; packed_len];
        assert_eq!(plan.pack_input(&image[..img_len], &mut packed), expected);
        assert!(untouched(&packed), "image {img_len}, packed {packed_len}");
    }
}

/// Input, packed bank, bias, output length, expected result.
type ForwardCase<'a> = (&'a [f32], &'a [f32], &'a [f32], usize, Result<(), Error>);

#[test]
fn forward_with_wrong_buffer_lengths_is_an_error() {
    let ops = operands();
    let (plan, geo) = (&ops.plan, &ops.geo);
    let x = random_vec(&mut rng(24), geo.input_len() + 1);
    let (bank, bias) = (&ops.packed_bank, &ops.bias);
    let (n_x, n_y) = (geo.input_len(), geo.output_len());
    let (n_bank, n_bias) = (bank.len(), bias.len());
    let long_bank = [&bank[..], &[0.0]].concat();
    let len_err = |buffer, expected, found| {
        Err(Error::BufferLength {
            buffer,
            expected,
            found,
        })
    };
    let cases: [ForwardCase; 6] = [
        (
            &x[..n_x - 1],
            bank,
            bias,
            n_y,
            len_err(Buffer::Input, n_x, n_x - 1),
        ),
        (&x, bank, bias, n_y, len_err(Buffer::Input, n_x, n_x + 1)),
        (
            &x[..n_x],
            bank,
            bias,
            n_y + 1,
            len_err(Buffer::Output, n_y, n_y + 1),
        ),
        (
            &x[..n_x],
            bank,
            bias,
            n_y - 1,
            len_err(Buffer::Output, n_y, n_y - 1),
        ),
        (
            &x[..n_x],
            &long_bank,
            bias,
            n_y,
            len_err(Buffer::Bank, n_bank, n_bank + 1),
        ),
        (
            &x[..n_x],
            bank,
            &bias[..1],
            n_y,
            len_err(Buffer::Bias, n_bias, 1),
        ),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (i, (x, bank, bias, out_len, expected)) in cases.into_iter().enumerate() {
        for kernel in gconv_std::fast::available_kernels() {
            let what = format!("case {i}, {}", kernel.name());
            let mut out = vec![SENTINEL; out_len];
            let got = gconv_std::fast::forward(plan, kernel, x, bank, Some(bias), &mut out);
            assert_eq!(got, expected, "{what}");
            assert!(untouched(&out), "{what}: output written");
            let got = pool.install(|| {
                gconv_std::fast::forward_par(plan, kernel, x, bank, Some(bias), &mut out)
            });
            assert_eq!(got.map(|_| ()), expected, "{what}, par");
            assert!(untouched(&out), "{what}, par: output written");
        }
        let mut out = vec![SENTINEL; out_len];
        let mut scratch = vec![0.0; plan.packed_input_len()];
        let got = plan.forward(x, bank, Some(bias), &mut out, &mut scratch);
        assert_eq!(got, expected, "case {i}, core");
        assert!(untouched(&out), "case {i}, core: output written");
    }
    // Core forward: scratch shorter than one packed image.
    let mut out = vec![SENTINEL; n_y];
    let mut scratch = vec![0.0; plan.packed_input_len() - 1];
    let got = plan.forward(&x[..n_x], bank, Some(bias), &mut out, &mut scratch);
    let n_packed = plan.packed_input_len();
    assert_eq!(got, len_err(Buffer::Scratch, n_packed, n_packed - 1));
    assert!(untouched(&out));
}

/// `packed[((t*P + c)*K*K + k)*MR + m] = bank[((t*MR + m)*P + c)*K*K + k]`, on a bank
/// of distinct values; the layer's cached packed bank is that of its bank.
#[test]
fn pack_bank_layout_and_the_layers_packed_bank() {
    let shape = [16, 3, 2, 2];
    let [planes_out, p, k, _] = shape;
    let kk = k * k;
    let bank: Vec<f32> = (0..planes_out * p * kk).map(|i| i as f32).collect();
    let mut packed = vec![SENTINEL; bank.len()];
    pack_bank(shape, &bank, &mut packed).unwrap();
    for t in 0..planes_out / MR {
        for c in 0..p {
            for tap in 0..kk {
                for m in 0..MR {
                    assert_eq!(
                        packed[((t * p + c) * kk + tap) * MR + m],
                        bank[((t * MR + m) * p + c) * kk + tap],
                        "t {t} c {c} tap {tap} m {m}"
                    );
                }
            }
        }
    }

    fn check<G: Group, D: InputDomain>(layer: &GConv<G, D>) {
        let bank = layer.bank();
        let mut packed = vec![SENTINEL; bank.len()];
        let shape = [
            layer.out_channels() * G::ORDER,
            layer.in_channels() * GConv::<G, D>::NTI,
            layer.kernel(),
            layer.kernel(),
        ];
        pack_bank(shape, bank, &mut packed).unwrap();
        assert_eq!(
            bits(layer.packed_bank()),
            bits(&packed),
            "{}",
            GConv::<G, D>::name()
        );
    }
    check(&random_layer::<C4, gconv_std::FromZ2>(
        2,
        3,
        3,
        1,
        Padding::Same,
        1,
    ));
    check(&random_layer::<C4, gconv_std::FromGroup>(
        2,
        1,
        4,
        2,
        Padding::Valid,
        2,
    ));
    check(&random_layer::<D4, gconv_std::FromZ2>(
        1,
        2,
        5,
        1,
        Padding::Same,
        3,
    ));
    check(&random_layer::<D4, gconv_std::FromGroup>(
        2,
        2,
        2,
        1,
        Padding::Valid,
        4,
    ));
}

#[test]
fn available_kernels_are_what_the_cpu_runs() {
    let kernels = gconv_std::fast::available_kernels();
    assert!(kernels.contains(&gconv_std::fast::kernel().expect("GCONV_KERNEL")));
    if std::env::var_os("GCONV_KERNEL").is_none() {
        // The best one, unless a kernel was asked for by name.
        assert_eq!(
            kernels.first(),
            Some(&gconv_std::fast::kernel().expect("GCONV_KERNEL"))
        );
    }
    assert!(kernels.contains(&Kernel::Portable));
    assert_eq!(
        kernels.contains(&Kernel::Avx2Fma),
        gconv_std::fast::avx2_fma_detected()
    );
    if !cfg!(target_arch = "x86_64") {
        // Off x86_64 (aarch64 in CI, scripts/aarch64.sh) the tests that loop over the
        // kernels the CPU has run the portable ones, and only them.
        assert_eq!(kernels, [Kernel::Portable]);
        assert_eq!(Kernel::compiled(), Kernel::Portable);
        assert_eq!(
            gconv_std::fast::int8_available_kernels(),
            [gconv_core::quant::fast::QKernel::Portable]
        );
    }
    for kernel in kernels {
        let (mr, nr) = kernel.tile();
        assert_eq!(mr, MR);
        assert!(nr.is_multiple_of(8), "{}", kernel.name());
    }
}

// ---------------------------------------------------------------------------------
// Layers: threads, direct vs fast, path names.
// ---------------------------------------------------------------------------------

fn input_shape<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    batch: usize,
    (h, w): (usize, usize),
) -> Vec<usize> {
    let nti = GConv::<G, D>::NTI;
    if nti == 1 {
        vec![batch, layer.in_channels(), h, w]
    } else {
        vec![batch, layer.in_channels(), nti, h, w]
    }
}

fn random_input(shape: Vec<usize>, seed: u64) -> Tensor {
    let len = shape.iter().product();
    Tensor::new(shape, random_vec(&mut rng(seed), len)).unwrap()
}

/// `forward_into_par` in each pool gives the bits of `forward_into`, for batches of
/// 1, 2 and 5 (fewer images than threads: split by tiles; more: by images).
fn par_matches_serial<G: Group, D: InputDomain>(
    pools: &[rayon::ThreadPool],
    layer: &GConv<G, D>,
    size: (usize, usize),
    seed: u64,
) {
    let mut layer = layer.clone();
    layer.set_path(ConvPath::Fast);
    let layer = &layer;
    assert!(layer.runs_fast_path(&input_shape(layer, 1, size)).unwrap());
    for batch in [1, 2, 5] {
        let x = random_input(input_shape(layer, batch, size), seed + batch as u64);
        let len = layer.geometry(x.shape()).unwrap().output_len();
        let mut serial = vec![f32::NAN; len];
        layer.forward_into(&x, &mut serial).unwrap();
        assert!(serial.iter().all(|v| v.is_finite()));
        for pool in pools {
            let threads = pool.current_num_threads();
            let what = format!("{} batch {batch}, {threads} threads", GConv::<G, D>::name());
            let mut par = vec![f32::NAN; len];
            let pieces = pool
                .install(|| layer.forward_into_par(&x, &mut par))
                .unwrap();
            assert!((1..=threads).contains(&pieces), "{what}: {pieces} pieces");
            if threads > 1 {
                assert!(pieces > 1, "{what}: ran in one piece");
            }
            assert!(bits(&serial) == bits(&par), "{what}: outputs differ");
        }
    }
}

#[test]
fn forward_into_par_is_bitwise_forward_into() {
    let pools: Vec<rayon::ThreadPool> = [1, 2, 3]
        .into_iter()
        .map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        })
        .collect();
    // 5 tiles (an uneven split over 2 and 3 threads).
    let z2_c4 = random_layer::<C4, gconv_std::FromZ2>(3, 5, 3, 1, Padding::Same, 31);
    par_matches_serial(&pools, &z2_c4, (11, 13), 1);
    // 80 input planes on 24x24: several blocks of planes; 3 tiles.
    let c4_c4 = random_layer::<C4, gconv_std::FromGroup>(20, 3, 3, 1, Padding::Same, 32);
    par_matches_serial(&pools, &c4_c4, (24, 24), 2);
    // Even K, stride 2, 6 tiles.
    let z2_d4 = random_layer::<D4, gconv_std::FromZ2>(2, 3, 4, 2, Padding::Valid, 33);
    par_matches_serial(&pools, &z2_d4, (10, 9), 3);
    // 10 tiles, K=5.
    let padding = Padding::symmetric(1);
    let d4_d4 = random_layer::<D4, gconv_std::FromGroup>(3, 5, 5, 1, padding, 34);
    par_matches_serial(&pools, &d4_d4, (9, 12), 4);
    // Back to the small layer on the same threads (their scratch has grown).
    par_matches_serial(&pools, &z2_c4, (7, 6), 5);
}

/// The fast path's name for the detected kernel: `fast_<kernel>`, e.g.
/// `fast_avx2_fma`.
fn is_fast_name(name: &str) -> bool {
    name == format!(
        "fast_{}",
        gconv_std::fast::kernel().expect("GCONV_KERNEL").name()
    )
}

/// Direct and fast path of one layer: both match the oracle and each other; Auto is
/// the path it names (fast or Fourier); the names; `forward_into_par` on the direct path; and new weights
/// reach the packed bank.
fn direct_and_fast_agree<G: Group, D: InputDomain>(
    group: RefGroup,
    mut layer: GConv<G, D>,
    size: (usize, usize),
    seed: u64,
) {
    let name = GConv::<G, D>::name();
    assert_eq!(layer.path(), ConvPath::Auto, "{name}: default path");
    let x = random_input(input_shape(&layer, 2, size), seed);
    let geo = layer.geometry(x.shape()).unwrap();
    let shape = ConvShape {
        batch: 2,
        in_channels: layer.in_channels(),
        out_channels: layer.out_channels(),
        height: size.0,
        width: size.1,
        kernel: layer.kernel(),
        stride: layer.stride(),
        padding: layer.padding(),
    };
    let run = |layer: &GConv<G, D>| {
        let mut out = vec![f32::NAN; geo.output_len()];
        layer.forward_into(&x, &mut out).unwrap();
        assert_eq!(
            bits(layer.forward(&x).unwrap().data()),
            bits(&out),
            "{name}: forward and forward_into differ"
        );
        out
    };
    let x_shape = x.shape().to_vec();

    let auto = run(&layer);
    let auto_name = layer.path_name(&x_shape).unwrap();
    let fourier_name = format!(
        "fourier_{}",
        gconv_std::fast::kernel().expect("GCONV_KERNEL").name()
    );
    // Off x86 the portable kernel's Auto is the blocked path (gconv_core::plan).
    let blocked = auto_picks_blocked(gconv_std::fast::kernel().expect("GCONV_KERNEL"));
    if blocked {
        assert_eq!(auto_name, "blocked", "{name}");
    } else {
        assert!(
            is_fast_name(&auto_name) || auto_name == fourier_name,
            "{name}: {auto_name}"
        );
    }
    assert_eq!(layer.runs_fast_path(&x_shape).unwrap(), !blocked, "{name}");
    layer.set_path(ConvPath::Direct);
    let direct = run(&layer);
    assert_eq!(layer.path_name(&x_shape).unwrap(), "direct", "{name}");
    assert!(!layer.runs_fast_path(&x_shape).unwrap());
    let mut par = vec![f32::NAN; geo.output_len()];
    assert_eq!(layer.forward_into_par(&x, &mut par).unwrap(), 1);
    assert_eq!(bits(&par), bits(&direct), "{name}: direct par");
    layer.set_path(ConvPath::Fast);
    let fast = run(&layer);
    let path = layer.path_name(&x_shape).unwrap();
    assert!(is_fast_name(&path), "{name}: {path}");
    assert!(layer.runs_fast_path(&x_shape).unwrap());
    // Auto runs the path it names, bit for bit.
    let named = if auto_name == fourier_name {
        layer.set_path(ConvPath::Fourier);
        let fourier = run(&layer);
        layer.set_path(ConvPath::Fast);
        fourier
    } else if blocked {
        layer.set_path(ConvPath::Blocked);
        let blocked = run(&layer);
        layer.set_path(ConvPath::Fast);
        blocked
    } else {
        fast.clone()
    };
    assert_eq!(bits(&auto), bits(&named), "{name}: Auto is not {auto_name}");
    let plan = layer.fast_plan(&x_shape).unwrap();
    assert_eq!(plan.geometry(), &geo);

    let terms = geo.terms_per_output();
    let bias = layer.bias();
    let reference = oracle(
        group,
        D::DOMAIN,
        &shape,
        x.data(),
        layer.weight().data(),
        bias,
    );
    assert_matches_oracle(&format!("{name} direct"), &direct, &reference, terms, bias);
    assert_matches_oracle(&format!("{name} fast"), &fast, &reference, terms, bias);
    let [_, c_out, nto, oh, ow] = reference.shape;
    for (i, (d, f)) in direct.iter().zip(&fast).enumerate() {
        let b = bias.map_or(0.0, |b| f64::from(b[(i / (nto * oh * ow)) % c_out]));
        let tol = 2.0 * tolerance(terms, reference.abs_sum[i], b);
        let err = (f64::from(*d) - f64::from(*f)).abs();
        assert!(
            err <= tol,
            "{name} output {i}: direct {d} fast {f}, {err:e} > {tol:e}"
        );
    }

    // New weights: the fast path uses the new packed bank.
    let w = random_vec(&mut rng(seed + 7), layer.weight().len());
    let w = Tensor::new(layer.weight().shape().to_vec(), w).unwrap();
    let b = random_vec(&mut rng(seed + 8), layer.out_channels());
    layer.set_weights(w, Some(b)).unwrap();
    let fast = run(&layer);
    let bias = layer.bias();
    let reference = oracle(
        group,
        D::DOMAIN,
        &shape,
        x.data(),
        layer.weight().data(),
        bias,
    );
    assert_matches_oracle(
        &format!("{name} fast, new weights"),
        &fast,
        &reference,
        terms,
        bias,
    );
}

#[test]
fn direct_and_fast_paths_agree_with_each_other_and_the_reference() {
    let same = Padding::Same;
    direct_and_fast_agree(
        RefGroup::C4,
        random_layer::<C4, gconv_std::FromZ2>(3, 2, 5, 1, same, 41),
        (13, 11),
        1,
    );
    direct_and_fast_agree(
        RefGroup::C4,
        random_layer::<C4, gconv_std::FromGroup>(6, 3, 3, 2, Padding::Valid, 42),
        (15, 12),
        2,
    );
    direct_and_fast_agree(
        RefGroup::D4,
        random_layer::<D4, gconv_std::FromZ2>(2, 3, 4, 1, Padding::symmetric(2), 43),
        (9, 10),
        3,
    );
    direct_and_fast_agree(
        RefGroup::D4,
        random_layer::<D4, gconv_std::FromGroup>(4, 2, 3, 1, same, 44),
        (10, 9),
        4,
    );
    // The largest kernel the fast path takes.
    direct_and_fast_agree(
        RefGroup::D4,
        random_layer::<D4, gconv_std::FromGroup>(1, 2, MAX_KERNEL, 1, same, 45),
        (12, 13),
        5,
    );
}

/// K = 13 > MAX_KERNEL: Auto runs the direct path; Fast is an error, from `forward`,
/// `forward_into` (output untouched), `forward_into_par`, `path_name` and `fast_plan`.
fn too_large_for_fast<G: Group, D: InputDomain>(group: RefGroup, seed: u64) {
    let name = GConv::<G, D>::name();
    let k = 13;
    let mut layer = random_layer::<G, D>(1, 2, k, 1, Padding::Same, seed);
    let x = random_input(input_shape(&layer, 2, (14, 15)), seed);
    let x_shape = x.shape().to_vec();
    let is_too_large = |e: &gconv_std::Error| {
        matches!(
            e,
            gconv_std::Error::Core {
                source: Error::KernelTooLargeForFastPath {
                    kernel: 13,
                    max: MAX_KERNEL
                },
                ..
            }
        )
    };

    assert_eq!(layer.path(), ConvPath::Auto);
    // Off x86 the portable kernel's Auto is the blocked path, which takes any K.
    let auto_name = if auto_picks_blocked(gconv_std::fast::kernel().expect("GCONV_KERNEL")) {
        "blocked"
    } else {
        "direct"
    };
    assert_eq!(layer.path_name(&x_shape).unwrap(), auto_name, "{name}");
    assert!(!layer.runs_fast_path(&x_shape).unwrap());
    let auto = layer.forward(&x).unwrap();
    let geo = layer.geometry(&x_shape).unwrap();
    let shape = ConvShape {
        batch: 2,
        in_channels: 1,
        out_channels: 2,
        height: 14,
        width: 15,
        kernel: k,
        stride: 1,
        padding: Padding::Same,
    };
    let bias = layer.bias();
    let reference = oracle(
        group,
        D::DOMAIN,
        &shape,
        x.data(),
        layer.weight().data(),
        bias,
    );
    let terms = geo.terms_per_output();
    assert_matches_oracle(
        &format!("{name} K=13 auto"),
        auto.data(),
        &reference,
        terms,
        bias,
    );
    let err = layer.fast_plan(&x_shape).unwrap_err();
    assert!(is_too_large(&err), "{name}: {err}");

    layer.set_path(ConvPath::Fast);
    let err = layer.forward(&x).unwrap_err();
    assert!(is_too_large(&err), "{name}: {err}");
    let err = layer.path_name(&x_shape).unwrap_err();
    assert!(is_too_large(&err), "{name}: {err}");
    let err = layer.runs_fast_path(&x_shape).unwrap_err();
    assert!(is_too_large(&err), "{name}: {err}");
    let mut out = vec![SENTINEL; geo.output_len()];
    let err = layer.forward_into(&x, &mut out).unwrap_err();
    assert!(is_too_large(&err), "{name}: {err}");
    assert!(untouched(&out), "{name}: output written");
    let err = layer.forward_into_par(&x, &mut out).unwrap_err();
    assert!(is_too_large(&err), "{name}: {err}");
    assert!(untouched(&out), "{name}: output written");
}

#[test]
fn kernel_too_large_runs_direct_under_auto_and_fails_under_fast() {
    too_large_for_fast::<C4, gconv_std::FromZ2>(RefGroup::C4, 51);
    too_large_for_fast::<C4, gconv_std::FromGroup>(RefGroup::C4, 52);
    too_large_for_fast::<D4, gconv_std::FromZ2>(RefGroup::D4, 53);
    too_large_for_fast::<D4, gconv_std::FromGroup>(RefGroup::D4, 54);
}

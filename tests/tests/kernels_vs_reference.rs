//! gconv-core's forward kernels against the independent f64 oracle
//! (`gconv_std::reference`), over the full grid of the foundation issue: all four
//! pairs, K in {1,2,3,4,5,7}, odd and even non-square H x W, stride 1..3, every
//! padding kind, with and without bias, batch 2, random channel counts.
//!
//! Tolerance (see `common::tolerance`): `(terms + 2) * eps_f32 * (sum |x w| + |b|)`
//! per output, with `sum |x w|` computed by the oracle: the rounding-error bound of an
//! f32 dot product of `terms` products, so it scales with the number of terms.
//!
//! Outputs are pre-filled with NaN and scratch with junk, so a kernel that skips a
//! write or reads stale scratch fails.

mod common;

use common::{assert_matches_oracle, oracle, random_vec, rng};
use gconv_core::conv::expand::expand_filter_bank;
use gconv_core::conv::{group, lifting};
use gconv_core::{Buffer, C4, ConvShape, D4, Dim, Domain, Error, Group, Padding};
use gconv_std::reference::RefGroup;
use rand::RngExt;

const KERNELS: [usize; 6] = [1, 2, 3, 4, 5, 7];
const SIZES: [(usize, usize); 5] = [(7, 8), (8, 7), (9, 9), (8, 8), (11, 10)];

fn paddings() -> [Padding; 4] {
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

type RawKernel =
    fn(&ConvShape, &[f32], &[f32], Option<&[f32]>, &mut [f32], &mut [f32]) -> Result<(), Error>;
type BankKernel = fn(&ConvShape, &[f32], &[f32], Option<&[f32]>, &mut [f32]) -> Result<(), Error>;

fn kernels<G: Group>(domain: Domain) -> (RawKernel, BankKernel) {
    match domain {
        Domain::Z2 => (
            lifting::lifting_conv::<G>,
            lifting::lifting_conv_expanded::<G>,
        ),
        Domain::Group => (group::group_conv::<G>, group::group_conv_expanded::<G>),
    }
}

/// Runs the whole grid for one pair; returns the number of configurations compared.
fn grid<G: Group>(group: RefGroup, domain: Domain, seed: u64) -> usize {
    let mut rng = rng(seed);
    let (raw_kernel, bank_kernel) = kernels::<G>(domain);
    let mut compared = 0;
    let mut case = 0usize;
    for k in KERNELS {
        for stride in 1..=3 {
            for padding in paddings() {
                case += 1;
                let (height, width) = SIZES[case % SIZES.len()];
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
                let what = format!("{} {domain:?} {shape:?}", G::NAME);
                let geo = match shape.geometry::<G>(domain) {
                    Ok(geo) => geo,
                    Err(Error::SameNeedsOddKernel { kernel }) => {
                        assert!(padding == Padding::Same && kernel % 2 == 0, "{what}");
                        continue;
                    }
                    Err(e) => panic!("{what}: unexpected {e}"),
                };
                let x = random_vec(&mut rng, geo.input_len());
                let w = random_vec(&mut rng, geo.weight_len());
                let b = random_vec(&mut rng, geo.bias_len());
                let bias = case.is_multiple_of(2).then_some(b.as_slice());
                let reference = oracle(group, domain, &shape, &x, &w, bias);
                assert_eq!(reference.shape, geo.output_shape(), "{what}: output shape");

                // Raw weights + scratch (scratch full of junk, longer than needed).
                let mut out = vec![f32::NAN; geo.output_len()];
                let mut scratch = vec![1e30f32; geo.bank_len() + 5];
                raw_kernel(&shape, &x, &w, bias, &mut out, &mut scratch).unwrap();
                assert_matches_oracle(&what, &out, &reference, geo.terms_per_output(), bias);

                // Pre-expanded bank.
                let mut bank = vec![f32::NAN; geo.bank_len()];
                expand_filter_bank::<G>(
                    domain,
                    shape.out_channels,
                    shape.in_channels,
                    k,
                    &w,
                    &mut bank,
                )
                .unwrap();
                let mut out2 = vec![f32::NAN; geo.output_len()];
                bank_kernel(&shape, &x, &bank, bias, &mut out2).unwrap();
                assert_eq!(out, out2, "{what}: raw and expanded paths differ");
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn z2_to_c4_matches_reference() {
    assert_eq!(grid::<C4>(RefGroup::C4, Domain::Z2, 1), 6 * 3 * 4 - 2 * 3);
}

#[test]
fn c4_to_c4_matches_reference() {
    assert_eq!(
        grid::<C4>(RefGroup::C4, Domain::Group, 2),
        6 * 3 * 4 - 2 * 3
    );
}

#[test]
fn z2_to_d4_matches_reference() {
    assert_eq!(grid::<D4>(RefGroup::D4, Domain::Z2, 3), 6 * 3 * 4 - 2 * 3);
}

#[test]
fn d4_to_d4_matches_reference() {
    assert_eq!(
        grid::<D4>(RefGroup::D4, Domain::Group, 4),
        6 * 3 * 4 - 2 * 3
    );
}

/// A batch of zero images is valid and produces an empty output.
#[test]
fn empty_batch_is_empty_output() {
    let shape = ConvShape {
        batch: 0,
        in_channels: 2,
        out_channels: 3,
        height: 5,
        width: 5,
        kernel: 3,
        stride: 1,
        padding: Padding::Valid,
    };
    let geo = group::group_conv_geometry::<D4>(&shape).unwrap();
    assert_eq!(geo.output_shape(), [0, 3, 8, 3, 3]);
    let w = vec![0.5; geo.weight_len()];
    let mut scratch = vec![0.0; geo.bank_len()];
    group::group_conv::<D4>(&shape, &[], &w, None, &mut [], &mut scratch).unwrap();
}

fn base_shape() -> ConvShape {
    ConvShape {
        batch: 2,
        in_channels: 2,
        out_channels: 3,
        height: 6,
        width: 5,
        kernel: 3,
        stride: 1,
        padding: Padding::Valid,
    }
}

/// Runs the C4 group kernel on buffers sized for `base_shape()` with one change, and
/// checks the error and that the output was not touched.
fn expect_error(shape: ConvShape, sizes: [isize; 5], expected: Error) {
    let geo = group::group_conv_geometry::<C4>(&base_shape()).unwrap();
    let len = |base: usize, delta: isize| (base as isize + delta) as usize;
    let x = vec![1.0; len(geo.input_len(), sizes[0])];
    let w = vec![1.0; len(geo.weight_len(), sizes[1])];
    let b = vec![1.0; len(geo.bias_len(), sizes[2])];
    let mut out = vec![f32::NAN; len(geo.output_len(), sizes[3])];
    let mut scratch = vec![0.0; len(geo.bank_len(), sizes[4])];
    let got = group::group_conv::<C4>(&shape, &x, &w, Some(&b), &mut out, &mut scratch);
    assert_eq!(got, Err(expected));
    assert!(out.iter().all(|v| v.is_nan()), "output written on error");
    // The error explains itself.
    let message = expected.to_string();
    assert!(message.len() > 20, "{message}");
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let s = base_shape();
    let geo = group::group_conv_geometry::<C4>(&s).unwrap();
    expect_error(
        s,
        [-1, 0, 0, 0, 0],
        Error::BufferLength {
            buffer: Buffer::Input,
            expected: geo.input_len(),
            found: geo.input_len() - 1,
        },
    );
    expect_error(
        s,
        [0, 1, 0, 0, 0],
        Error::BufferLength {
            buffer: Buffer::Weight,
            expected: geo.weight_len(),
            found: geo.weight_len() + 1,
        },
    );
    expect_error(
        s,
        [0, 0, -1, 0, 0],
        Error::BufferLength {
            buffer: Buffer::Bias,
            expected: 3,
            found: 2,
        },
    );
    expect_error(
        s,
        [0, 0, 0, -1, 0],
        Error::BufferLength {
            buffer: Buffer::Output,
            expected: geo.output_len(),
            found: geo.output_len() - 1,
        },
    );
    expect_error(
        s,
        [0, 0, 0, 0, -1],
        Error::BufferLength {
            buffer: Buffer::Scratch,
            expected: geo.bank_len(),
            found: geo.bank_len() - 1,
        },
    );
    expect_error(
        ConvShape { stride: 0, ..s },
        [0; 5],
        Error::ZeroDimension(Dim::Stride),
    );
    expect_error(
        ConvShape { kernel: 0, ..s },
        [0; 5],
        Error::ZeroDimension(Dim::Kernel),
    );
    expect_error(
        ConvShape {
            in_channels: 0,
            ..s
        },
        [0; 5],
        Error::ZeroDimension(Dim::InChannels),
    );
    expect_error(
        ConvShape { width: 0, ..s },
        [0; 5],
        Error::ZeroDimension(Dim::Width),
    );
    expect_error(
        ConvShape { kernel: 7, ..s },
        [0; 5],
        Error::KernelLargerThanInput {
            kernel: 7,
            padded_height: 6,
            padded_width: 5,
        },
    );
    expect_error(
        ConvShape {
            kernel: 4,
            padding: Padding::Same,
            ..s
        },
        [0; 5],
        Error::SameNeedsOddKernel { kernel: 4 },
    );
    expect_error(
        ConvShape {
            height: usize::MAX,
            padding: Padding::symmetric(1),
            ..s
        },
        [0; 5],
        Error::SizeOverflow,
    );
    expect_error(
        ConvShape {
            batch: usize::MAX / 2,
            ..s
        },
        [0; 5],
        Error::SizeOverflow,
    );
}

#[test]
fn same_with_even_kernel_explains_what_to_use() {
    let message = Error::SameNeedsOddKernel { kernel: 4 }.to_string();
    for needle in [
        "odd",
        "equivariance",
        "valid",
        "2 on every side",
        "(top, bottom, left, right)",
    ] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

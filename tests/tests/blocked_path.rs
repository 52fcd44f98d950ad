//! The blocked path (`gconv_core::blocked`, the Cortex-M4F path) in its portable form
//! against the independent f64 oracle (`gconv_std::reference`):
//!
//! * the foundation grid: all four pairs, K in {1,2,3,4,5,7}, odd and even
//!   non-square H x W, stride 1..3, every padding kind, with and without bias;
//! * maps large enough for every tile the driver has: row tiles of 4 to 8 pixels
//!   (interior widths 4..30), column tiles down the edges (8 rows and more), the
//!   1/3/5 unrolled kernels and the any-K loop, `same` and wider padding;
//! * bad arguments: an error before anything is written.
//!
//! Tolerance (see `common::tolerance`): `(terms + 2) * eps_f32 * (sum |x w| + |b|)`
//! per output, the bound of an f32 sum of `terms` products in any order; the
//! blocked path rounds each product before adding it. Outputs are pre-filled with
//! NaN and scratch with junk, so a skipped write or a read of stale scratch fails.
//!
//! On the device the `K = 3` tiles run as Arm `asm!` (`blocked/tile/arm.rs`), the
//! same sums in the same order; the firmware (`scripts/cortex-m4.sh`) checks them
//! against this oracle's values.

mod common;

use common::{assert_matches_oracle, foundation_grid, oracle, random_vec, rng};
use gconv_core::{Buffer, C4, ConvShape, D4, Dim, Domain, Error, Group, Padding, blocked};
use gconv_std::reference::RefGroup;
use rand::RngExt;

/// Runs one shape through the blocked path and the oracle; false when the shape is
/// invalid (`same` with an even kernel).
fn check<G: Group>(group: RefGroup, domain: Domain, shape: &ConvShape, seed: u64) -> bool {
    let what = format!("{} {domain:?} {shape:?}", G::NAME);
    let geo = match shape.geometry::<G>(domain) {
        Ok(geo) => geo,
        Err(Error::SameNeedsOddKernel { .. } | Error::KernelLargerThanInput { .. }) => {
            return false;
        }
        Err(e) => panic!("{what}: unexpected {e}"),
    };
    let mut r = rng(seed);
    let x = random_vec(&mut r, geo.input_len());
    let w = random_vec(&mut r, geo.weight_len());
    let b = random_vec(&mut r, geo.bias_len());
    let bias = seed.is_multiple_of(2).then_some(b.as_slice());
    let reference = oracle(group, domain, shape, &x, &w, bias);

    let need = blocked::scratch_len::<G>(domain, shape).unwrap();
    assert_eq!(
        need,
        blocked::MR * geo.terms_per_output(),
        "{what}: scratch length"
    );
    assert!(need * G::ORDER / blocked::MR * shape.out_channels == geo.bank_len());
    let mut out = vec![f32::NAN; geo.output_len()];
    let mut scratch = vec![1e30f32; need + 3];
    blocked::forward::<G>(domain, shape, &x, &w, bias, &mut out, &mut scratch).unwrap();
    assert_matches_oracle(&what, &out, &reference, geo.terms_per_output(), bias);
    true
}

fn grid<G: Group>(group: RefGroup, domain: Domain, seed: u64) -> usize {
    let mut r = rng(seed);
    let mut compared = 0;
    for (case, shape) in foundation_grid(&mut r) {
        if check::<G>(group, domain, &shape, seed + case as u64) {
            compared += 1;
        }
    }
    compared
}

#[test]
fn foundation_grid_matches_reference() {
    let counts = [
        grid::<C4>(RefGroup::C4, Domain::Z2, 1),
        grid::<C4>(RefGroup::C4, Domain::Group, 2),
        grid::<D4>(RefGroup::D4, Domain::Z2, 3),
        grid::<D4>(RefGroup::D4, Domain::Group, 4),
    ];
    // 6 kernels x 3 strides x 4 paddings, minus `same` with the even kernels 2 and 4
    // at 3 strides.
    assert_eq!(counts, [6 * 3 * 4 - 2 * 3; 4]);
}

/// Every tile of the driver: widths whose interior runs are cut into row tiles of
/// 4..8 pixels (and the portable 1..3-pixel remainders), heights with column tiles
/// of 8 rows and an overlapping last one, all for the kernels the driver unrolls and
/// one it does not.
#[test]
fn large_maps_exercise_every_tile() {
    let mut r = rng(77);
    let (mut compared, mut valid) = (0, 0);
    for k in [1, 3, 5, 7] {
        for (h, w) in [(9, 6), (10, 12), (17, 16), (20, 30), (28, 28), (13, 33)] {
            for padding in [Padding::Same, Padding::Valid, Padding::symmetric(2)] {
                let pad = padding.resolve(k).unwrap()[0];
                valid += usize::from(h.min(w) + 2 * pad >= k);
                let shape = ConvShape {
                    batch: 1,
                    in_channels: r.random_range(1..=3),
                    out_channels: r.random_range(1..=2),
                    height: h,
                    width: w,
                    kernel: k,
                    stride: 1,
                    padding,
                };
                let seed = compared as u64 * 2;
                for (domain, group) in [(Domain::Z2, RefGroup::C4), (Domain::Group, RefGroup::C4)] {
                    compared += usize::from(check::<C4>(group, domain, &shape, seed));
                }
                compared += usize::from(check::<D4>(RefGroup::D4, Domain::Group, &shape, seed));
            }
        }
    }
    // Three layers per valid shape (only 7x7 `valid` on the 9x6 map is not).
    assert_eq!(compared, 3 * valid);
    assert_eq!(valid, 4 * 6 * 3 - 1);
}

/// The shapes the firmware measures (3x3, `same`), on the host.
#[test]
fn firmware_shapes_match_reference() {
    for (c, size) in [(4, 16), (10, 28)] {
        let shape = ConvShape {
            batch: 1,
            in_channels: c,
            out_channels: c,
            height: size,
            width: size,
            kernel: 3,
            stride: 1,
            padding: Padding::Same,
        };
        assert!(check::<C4>(RefGroup::C4, Domain::Group, &shape, 8));
        assert!(check::<D4>(RefGroup::D4, Domain::Group, &shape, 9));
        let lift = ConvShape {
            in_channels: 1,
            ..shape
        };
        assert!(check::<C4>(RefGroup::C4, Domain::Z2, &lift, 10));
        assert!(check::<D4>(RefGroup::D4, Domain::Z2, &lift, 11));
    }
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

/// Runs the D4 blocked path with buffers sized for `base_shape()` plus `sizes`
/// (input, weight, bias, output, scratch) on `shape`; checks the error and that the
/// output was not touched.
fn expect_error(shape: ConvShape, sizes: [isize; 5], expected: Error) {
    let base = base_shape();
    let geo = base.geometry::<D4>(Domain::Group).unwrap();
    let len = |n: usize, delta: isize| (n as isize + delta) as usize;
    let x = vec![1.0; len(geo.input_len(), sizes[0])];
    let w = vec![1.0; len(geo.weight_len(), sizes[1])];
    let b = vec![1.0; len(geo.bias_len(), sizes[2])];
    let mut out = vec![f32::NAN; len(geo.output_len(), sizes[3])];
    let need = blocked::scratch_len::<D4>(Domain::Group, &base).unwrap();
    let mut scratch = vec![0.0; len(need, sizes[4])];
    let got = blocked::forward::<D4>(
        Domain::Group,
        &shape,
        &x,
        &w,
        Some(&b),
        &mut out,
        &mut scratch,
    );
    assert_eq!(got, Err(expected));
    assert!(out.iter().all(|v| v.is_nan()), "output written on error");
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let s = base_shape();
    let geo = s.geometry::<D4>(Domain::Group).unwrap();
    let need = blocked::scratch_len::<D4>(Domain::Group, &s).unwrap();
    let length = |buffer, expected: usize, found: usize| Error::BufferLength {
        buffer,
        expected,
        found,
    };
    let (i, w, o) = (geo.input_len(), geo.weight_len(), geo.output_len());
    expect_error(s, [-1, 0, 0, 0, 0], length(Buffer::Input, i, i - 1));
    expect_error(s, [0, 1, 0, 0, 0], length(Buffer::Weight, w, w + 1));
    expect_error(s, [0, 0, -1, 0, 0], length(Buffer::Bias, 3, 2));
    expect_error(s, [0, 0, 0, 2, 0], length(Buffer::Output, o, o + 2));
    expect_error(s, [0, 0, 0, 0, -1], length(Buffer::Scratch, need, need - 1));
    let zero = ConvShape {
        in_channels: 0,
        ..s
    };
    expect_error(zero, [0; 5], Error::ZeroDimension(Dim::InChannels));
    let zero = ConvShape { stride: 0, ..s };
    expect_error(zero, [0; 5], Error::ZeroDimension(Dim::Stride));
    let big = ConvShape { kernel: 7, ..s };
    expect_error(
        big,
        [0; 5],
        Error::KernelLargerThanInput {
            kernel: 7,
            padded_height: 6,
            padded_width: 5,
        },
    );
    let even = ConvShape {
        kernel: 2,
        padding: Padding::Same,
        ..s
    };
    expect_error(even, [0; 5], Error::SameNeedsOddKernel { kernel: 2 });
    // Scratch may be longer than needed (the firmware shares one buffer).
    let x = vec![0.5; geo.input_len()];
    let wt = vec![0.25; geo.weight_len()];
    let mut out = vec![f32::NAN; geo.output_len()];
    let mut scratch = vec![0.0; need + 100];
    blocked::forward::<D4>(Domain::Group, &s, &x, &wt, None, &mut out, &mut scratch).unwrap();
    // Every output sums 8 planes x 9 taps x 2 channels of 0.5 * 0.25, exactly.
    assert!(out.iter().all(|&v| v == 144.0 * 0.125), "{:?}", &out[..4]);
}

/// An empty batch is an empty output, not an error.
#[test]
fn empty_batch() {
    let s = ConvShape {
        batch: 0,
        ..base_shape()
    };
    let geo = s.geometry::<C4>(Domain::Z2).unwrap();
    let w = vec![1.0; geo.weight_len()];
    let mut scratch = vec![0.0; blocked::scratch_len::<C4>(Domain::Z2, &s).unwrap()];
    blocked::forward::<C4>(Domain::Z2, &s, &[], &w, None, &mut [], &mut scratch).unwrap();
}

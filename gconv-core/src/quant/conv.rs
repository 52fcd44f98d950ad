//! int8 lifting (Z2 -> G) and group (G -> G) convolutions, from raw int8 weights.
//!
//! ```text
//! acc[n][o][t][a][b] = bias[o] + sum_{i, s, p, q, in map} w[o][i][T][U][V] * (x[n][i][s][a*st+p-top][b*st+q-left] - zp_in)
//!                      (T, U, V) = table[t][s][p][q]
//! y[n][o][t][a][b]   = clamp(M[o].apply(acc) + zp_out, lo, 127)
//! ```
//!
//! Layouts as for f32 (`CONVENTIONS.md`): input `(N, C_in, [nti,] H, W)` int8, raw
//! weight `(C_out, C_in, nti, K, K)` int8, bias `(C_out,)` int32, output
//! `(N, C_out, nto, H', W')` int8. Taps that fall in the padding are skipped: they
//! would read the input zero point and add `w * 0`.
//!
//! The kernel expands one output plane's filter at a time from the raw weights (so
//! they can stay in flash) into an int32 scratch, and accumulates one output plane in
//! int32 scratch, tap by tap over the rows each tap reaches (the f32 direct path's
//! driver). Every sum is an exact integer, so the result does not depend on the
//! order of the terms: any other int8 kernel of gconv must agree bit for bit.

use core::num::NonZeroUsize;

use crate::driver::valid_outputs;
use crate::error::{Buffer, Error, check_len};
use crate::group::Group;
use crate::group::tables::entry_in_range;
use crate::quant::{Requant, activation_range};
use crate::shape::{ConvGeometry, ConvShape, Domain, checked_product};

/// The int32 scratch [`forward`] needs: one output plane of accumulators plus one
/// expanded filter, `H' * W' + C_in * nti * K * K`.
///
/// # Errors
/// As [`ConvShape::geometry`].
pub const fn scratch_len<G: Group>(domain: Domain, shape: &ConvShape) -> Result<usize, Error> {
    match shape.geometry::<G>(domain) {
        Ok(geo) => scratch_len_for(&geo),
        Err(e) => Err(e),
    }
}

/// [`scratch_len`] for a validated geometry.
///
/// # Errors
/// [`Error::SizeOverflow`].
pub const fn scratch_len_for(geo: &ConvGeometry) -> Result<usize, Error> {
    match (
        checked_product(&[geo.out_height(), geo.out_width()]),
        checked_product(&[geo.in_channels(), geo.nti(), geo.kernel(), geo.kernel()]),
    ) {
        (Some(plane), Some(filter)) => match plane.checked_add(filter) {
            Some(len) => Ok(len),
            None => Err(Error::SizeOverflow),
        },
        _ => Err(Error::SizeOverflow),
    }
}

/// Runs an int8 convolution from `domain` (Z2 for lifting, the group for a group
/// convolution) to the group `G`, from raw int8 weights.
///
/// `requant.multipliers` holds one multiplier per output G-channel. The weights are
/// not checked for -128 here (see [`crate::quant::check_weights`]): the arithmetic
/// is exact for any int8.
///
/// # Errors
/// As [`ConvShape::geometry`]; [`Error::ZeroPointOutOfRange`];
/// [`Error::BufferLength`] for an input, weight, bias, output or multiplier slice of
/// the wrong length or a scratch shorter than [`scratch_len`]. Nothing is written on
/// error.
#[allow(clippy::too_many_arguments)]
pub fn forward<G: Group>(
    domain: Domain,
    shape: &ConvShape,
    requant: &Requant<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i32],
) -> Result<(), Error> {
    let geo = shape.geometry::<G>(domain)?;
    forward_geometry(&geo, requant, input, weight, bias, output, scratch)
}

/// [`forward`] for a validated geometry (the group is in `geo`).
///
/// # Errors
/// As [`forward`].
pub fn forward_geometry(
    geo: &ConvGeometry,
    requant: &Requant<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i32],
) -> Result<(), Error> {
    check_io_i8(geo, input, weight, bias, output)?;
    requant.validate(geo.out_channels())?;
    let need = scratch_len_for(geo)?;
    let found = scratch.len();
    let scratch = scratch.get_mut(..need).ok_or(Error::BufferLength {
        buffer: Buffer::Scratch,
        expected: need,
        found,
    })?;
    run(geo, requant, input, weight, bias, output, scratch);
    Ok(())
}

/// Checks the lengths of the int8 buffers of a convolution.
pub(crate) fn check_io_i8(
    geo: &ConvGeometry,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &[i8],
) -> Result<(), Error> {
    check_len(Buffer::Input, input.len(), geo.input_len())?;
    check_len(Buffer::Weight, weight.len(), geo.weight_len())?;
    if let Some(b) = bias {
        check_len(Buffer::Bias, b.len(), geo.bias_len())?;
    }
    check_len(Buffer::Output, output.len(), geo.output_len())
}

/// Expands the filter of output plane `t` of one G-channel, `raw_row` of length
/// `C_in * nti * K * K`, into `filter` (same length), widened to i32:
/// `filter[i][s][u][v] = raw_row[i][T][U][V]`, `(T, U, V) = table[t][s][u][v]`.
pub(crate) fn expand_plane_filter(
    raw_row: &[i8],
    nti: usize,
    k: usize,
    t: usize,
    filter: &mut [i32],
) {
    let taps = k * k;
    let Some(filter_len) = NonZeroUsize::new(nti * taps) else {
        debug_assert!(false, "int8 expand: zero-size filter");
        return;
    };
    for (raw, out) in raw_row
        .chunks_exact(filter_len.get())
        .zip(filter.chunks_exact_mut(filter_len.get()))
    {
        let mut outs = out.iter_mut();
        for s in 0..nti {
            for u in 0..k {
                for v in 0..k {
                    let (p, su, sv) = entry_in_range(nti, k, t, s, u, v);
                    match (outs.next(), raw.get(p * taps + su * k + sv)) {
                        (Some(o), Some(&w)) => *o = i32::from(w),
                        _ => debug_assert!(false, "int8 expand: tap ({s}, {u}, {v}) out of range"),
                    }
                }
            }
        }
    }
}

/// The kernel body; every buffer has been validated against `geo`.
fn run(
    geo: &ConvGeometry,
    requant: &Requant<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i32],
) {
    let (h, w, k, stride) = (geo.height(), geo.width(), geo.kernel(), geo.stride());
    let (oh, ow) = (geo.out_height(), geo.out_width());
    let [pad_top, _, pad_left, _] = geo.padding();
    let (nti, nto) = (geo.nti(), geo.nto());
    let planes_in = geo.in_channels() * nti;
    let (
        Some(in_plane),
        Some(out_plane),
        Some(filter_len),
        Some(in_image),
        Some(out_image),
        Some(step),
        Some(taps),
    ) = (
        NonZeroUsize::new(h * w),
        NonZeroUsize::new(oh * ow),
        NonZeroUsize::new(planes_in * k * k),
        NonZeroUsize::new(planes_in * h * w),
        NonZeroUsize::new(geo.out_channels() * nto * oh * ow),
        NonZeroUsize::new(stride),
        NonZeroUsize::new(k * k),
    )
    else {
        debug_assert!(false, "int8 direct path: zero size in a validated geometry");
        return;
    };
    let (acc, filter) = scratch.split_at_mut(out_plane.get());
    let zp_in = requant.input_zero_point;
    let zp_out = requant.output_zero_point;
    let range = activation_range(zp_out, requant.relu);
    let batch = geo.batch();

    for (o, (raw_row, &m)) in weight
        .chunks_exact(filter_len.get())
        .zip(requant.multipliers)
        .enumerate()
    {
        let b = bias.map(|b| b.get(o).copied());
        debug_assert!(b != Some(None), "int8 direct path: bias shorter than C_out");
        let b = b.flatten().unwrap_or(0);
        for t in 0..nto {
            expand_plane_filter(raw_row, nti, k, t, filter);
            let plane = o * nto + t;
            for n in 0..batch {
                let (Some(x_image), Some(y)) = (
                    input.get(n * in_image.get()..(n + 1) * in_image.get()),
                    output
                        .get_mut((n * out_image.get() + plane * out_plane.get())..)
                        .and_then(|y| y.get_mut(..out_plane.get())),
                ) else {
                    debug_assert!(false, "int8 direct path: image {n} outside its buffers");
                    continue;
                };
                acc.fill(b);
                for (x, f) in x_image
                    .chunks_exact(in_plane.get())
                    .zip(filter.chunks_exact(taps.get()))
                {
                    accumulate_plane(x, f, zp_in, geo, acc, (pad_top, pad_left), step);
                }
                for (yv, &a) in y.iter_mut().zip(acc.iter()) {
                    *yv = Requant::output(m, a, zp_out, range);
                }
            }
        }
    }
}

/// `acc[a][b] += sum_{p,q} f[p][q] * (x[a*s+p-top][b*s+q-left] - zp)` over the taps
/// inside the map, for one input plane `x` (`H x W`) and one `K x K` filter `f`.
#[inline]
fn accumulate_plane(
    x: &[i8],
    f: &[i32],
    zp: i32,
    geo: &ConvGeometry,
    acc: &mut [i32],
    (pad_top, pad_left): (usize, usize),
    step: NonZeroUsize,
) {
    let (h, w, k, stride) = (geo.height(), geo.width(), geo.kernel(), geo.stride());
    let (oh, ow) = (geo.out_height(), geo.out_width());
    for p in 0..k {
        let (a_lo, a_hi) = valid_outputs(p, pad_top, step, h, oh);
        for q in 0..k {
            let (b_lo, b_hi) = valid_outputs(q, pad_left, step, w, ow);
            let Some(&wt) = f.get(p * k + q).filter(|&&wt| wt != 0 && b_lo < b_hi) else {
                continue;
            };
            let col0 = b_lo * stride + q - pad_left;
            for a in a_lo..a_hi {
                let row = a * stride + p - pad_top;
                let (Some(x_row), Some(acc_row)) = (
                    x.get(row * w + col0..(row + 1) * w),
                    acc.get_mut(a * ow + b_lo..a * ow + b_hi),
                ) else {
                    debug_assert!(false, "int8 direct path: row {row} outside its plane");
                    continue;
                };
                for (s, &xv) in acc_row.iter_mut().zip(x_row.iter().step_by(stride)) {
                    *s = s.wrapping_add(wt * (i32::from(xv) - zp));
                }
            }
        }
    }
}

//! The int8 layers around the convolutions, as TFLite's reference kernels compute
//! them. Pooling keeps the input's scale and zero point (TFLite requires equal
//! quantization on both sides of its pooling ops), so it needs no requantization:
//!
//! * [`max_pool`]: `MAX_POOL_2D`, padded positions never win;
//! * [`avg_pool`]: `AVERAGE_POOL_2D`: the sum of the window's **in-map** samples
//!   divided by their count (padding is not counted, unlike the f32
//!   [`crate::pool::avg_pool`], which follows PyTorch's `count_include_pad=True`),
//!   rounded half away from zero ([`rounded_average`]);
//! * [`group_pool`]: max or rounded mean over the `|G|` orientation planes (TFLite:
//!   `MAX_POOL_2D` / `AVERAGE_POOL_2D` with a `1 x |G|` window on the map reshaped to
//!   `(N, H*W*C, |G|, 1)`);
//! * [`global_avg_pool`]: the rounded mean of every plane (`AVERAGE_POOL_2D` with the
//!   whole plane as its window);
//! * [`relu`]: `max(x, zp)` in place (TFLite `RELU` with equal input and output
//!   quantization);
//! * [`dense`]: `FULLY_CONNECTED` with per-tensor weights:
//!   `y[n][j] = clamp(M.apply(b[j] + sum_i W[j][i] * (x[n][i] - zp_in)) + zp_out)`.

use crate::error::{Buffer, Dim, Error, QuantTensor, check_len};
use crate::layers::Reduce;
use crate::pool::PoolShape;
use crate::quant::arith::rounded_average;
use crate::quant::{Requant, activation_range, check_zero_point};
use crate::shape::checked_product;

/// int8 max pooling of every plane; padded positions never win.
///
/// # Errors
/// As [`PoolShape::geometry`]; [`Error::BufferLength`]. Nothing is written on error.
pub fn max_pool(shape: &PoolShape, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    pool(shape, input, output, |window| {
        window.fold(i8::MIN, |acc, x| acc.max(x))
    })
}

/// int8 average pooling of every plane: the rounded mean of the window's in-map
/// samples (TFLite `AVERAGE_POOL_2D`; padding is not counted).
///
/// # Errors
/// As [`max_pool`].
pub fn avg_pool(shape: &PoolShape, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
    pool(shape, input, output, |window| {
        let (sum, count) = window.fold((0i32, 0i32), |(s, c), x| (s + i32::from(x), c + 1));
        rounded_average(sum, count).clamp(-128, 127) as i8
    })
}

/// The shared pooling driver: validates, then reduces each window's in-map samples.
fn pool(
    shape: &PoolShape,
    input: &[i8],
    output: &mut [i8],
    reduce: impl Fn(&mut dyn Iterator<Item = i8>) -> i8,
) -> Result<(), Error> {
    let geo = shape.geometry()?;
    check_len(Buffer::Input, input.len(), geo.input_len())?;
    check_len(Buffer::Output, output.len(), geo.output_len())?;
    let (h, w, k, s) = (shape.height, shape.width, shape.window, shape.stride);
    let (top, left) = geo.top_left();
    let (oh, ow) = (geo.out_height(), geo.out_width());
    if oh * ow == 0 || h * w == 0 {
        return Ok(());
    }
    for (x, y) in input
        .chunks_exact(h * w)
        .zip(output.chunks_exact_mut(oh * ow))
    {
        for (a, y_row) in y.chunks_exact_mut(ow).enumerate() {
            let r0 = (a * s).saturating_sub(top);
            let r1 = (a * s + k).saturating_sub(top).min(h);
            for (b, out) in y_row.iter_mut().enumerate() {
                let c0 = (b * s).saturating_sub(left);
                let c1 = (b * s + k).saturating_sub(left).min(w);
                let rows = x.get(r0 * w..r1 * w).unwrap_or(&[]);
                let mut window = rows
                    .chunks_exact(w)
                    .flat_map(|row| row.get(c0..c1).unwrap_or(&[]).iter().copied());
                *out = reduce(&mut window);
            }
        }
    }
    Ok(())
}

/// Pools over the orientation axis of `(items, orientations, plane_len)` into
/// `(items, plane_len)`: max, or the rounded mean of the `orientations` values.
///
/// # Errors
/// [`Error::ZeroDimension`] for zero orientations; [`Error::BufferLength`];
/// [`Error::SizeOverflow`].
pub fn group_pool(
    reduce: Reduce,
    items: usize,
    orientations: usize,
    plane_len: usize,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    if orientations == 0 {
        return Err(Error::ZeroDimension(Dim::InChannels));
    }
    let in_len = checked_product(&[items, orientations, plane_len]).ok_or(Error::SizeOverflow)?;
    let out_len = checked_product(&[items, plane_len]).ok_or(Error::SizeOverflow)?;
    check_len(Buffer::Input, input.len(), in_len)?;
    check_len(Buffer::Output, output.len(), out_len)?;
    if plane_len == 0 {
        return Ok(());
    }
    let count = i32::try_from(orientations).map_err(|_| Error::SizeOverflow)?;
    for (x, y) in input
        .chunks_exact(orientations * plane_len)
        .zip(output.chunks_exact_mut(plane_len))
    {
        for (i, out) in y.iter_mut().enumerate() {
            let values = x.iter().skip(i).step_by(plane_len).copied();
            *out = match reduce {
                Reduce::Max => values.fold(i8::MIN, i8::max),
                Reduce::Mean => {
                    let sum = values.fold(0i32, |s, v| s + i32::from(v));
                    rounded_average(sum, count).clamp(-128, 127) as i8
                }
            };
        }
    }
    Ok(())
}

/// The rounded mean of every plane: `(planes, plane_len) -> (planes,)`.
///
/// # Errors
/// [`Error::ZeroDimension`] for an empty plane; [`Error::BufferLength`];
/// [`Error::SizeOverflow`] for planes of 2^24 samples or more (the int32 sum).
pub fn global_avg_pool(
    planes: usize,
    plane_len: usize,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    if plane_len == 0 {
        return Err(Error::ZeroDimension(Dim::Height));
    }
    if plane_len >= 1 << 24 {
        return Err(Error::SizeOverflow);
    }
    let in_len = checked_product(&[planes, plane_len]).ok_or(Error::SizeOverflow)?;
    check_len(Buffer::Input, input.len(), in_len)?;
    check_len(Buffer::Output, output.len(), planes)?;
    for (x, y) in input.chunks_exact(plane_len).zip(output.iter_mut()) {
        let sum = x.iter().fold(0i32, |s, &v| s + i32::from(v));
        *y = rounded_average(sum, plane_len as i32).clamp(-128, 127) as i8;
    }
    Ok(())
}

/// `x = max(x, zero_point)` in place: real 0 is the zero point.
///
/// # Errors
/// [`Error::ZeroPointOutOfRange`].
pub fn relu(data: &mut [i8], zero_point: i32) -> Result<(), Error> {
    check_zero_point(QuantTensor::Input, zero_point)?;
    let zp = zero_point as i8;
    for v in data {
        *v = (*v).max(zp);
    }
    Ok(())
}

/// A dense (fully connected) int8 layer with one weight scale for the whole weight
/// (`requant.multipliers` has exactly one element):
/// `y[n][j] = clamp(M.apply(b[j] + sum_i W[j][i] * (x[n][i] - zp_in)) + zp_out, lo, 127)`,
/// `W` of shape `(out_features, in_features)`.
///
/// # Errors
/// [`Error::ZeroDimension`] for zero features; [`Error::ZeroPointOutOfRange`];
/// [`Error::BufferLength`]; [`Error::SizeOverflow`].
#[allow(clippy::too_many_arguments)]
pub fn dense(
    batch: usize,
    in_features: usize,
    out_features: usize,
    requant: &Requant<'_>,
    input: &[i8],
    weight: &[i8],
    bias: Option<&[i32]>,
    output: &mut [i8],
) -> Result<(), Error> {
    if in_features == 0 {
        return Err(Error::ZeroDimension(Dim::InChannels));
    }
    if out_features == 0 {
        return Err(Error::ZeroDimension(Dim::OutChannels));
    }
    requant.validate(1)?;
    let len = |a: usize, b: usize| checked_product(&[a, b]).ok_or(Error::SizeOverflow);
    check_len(Buffer::Input, input.len(), len(batch, in_features)?)?;
    check_len(
        Buffer::Weight,
        weight.len(),
        len(out_features, in_features)?,
    )?;
    if let Some(b) = bias {
        check_len(Buffer::Bias, b.len(), out_features)?;
    }
    check_len(Buffer::Output, output.len(), len(batch, out_features)?)?;
    let Some(&m) = requant.multipliers.first() else {
        return Ok(());
    };
    let (zp_in, zp_out) = (requant.input_zero_point, requant.output_zero_point);
    let range = activation_range(zp_out, requant.relu);
    for (x, y) in input
        .chunks_exact(in_features)
        .zip(output.chunks_exact_mut(out_features))
    {
        for (j, (out, row)) in y
            .iter_mut()
            .zip(weight.chunks_exact(in_features))
            .enumerate()
        {
            let b = bias.and_then(|b| b.get(j)).copied().unwrap_or(0);
            let acc = row.iter().zip(x).fold(b, |acc, (&wv, &xv)| {
                acc.wrapping_add(i32::from(wv) * (i32::from(xv) - zp_in))
            });
            *out = Requant::output(m, acc, zp_out, range);
        }
    }
    Ok(())
}

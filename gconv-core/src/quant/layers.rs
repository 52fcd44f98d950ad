//! The int8 layers around the convolutions, as TFLite's reference kernels compute
//! them. Pooling keeps the input's scale and zero point (TFLite requires equal
//! quantization on both sides of its pooling ops), so it needs no requantization:
//!
//! * [`max_pool`]: `MAX_POOL_2D`, padded positions never win;
//! * [`avg_pool`]: the rounded mean of the window's `k*k` values with padded
//!   positions at the zero point (real 0), as the f32 [`crate::pool::avg_pool`]
//!   (PyTorch's `count_include_pad=True`); TFLite: `PAD` with the zero point, then
//!   `AVERAGE_POOL_2D` `VALID`. [`avg_pool_in_map`] is TFLite's `SAME` variant, which
//!   divides by the number of in-map samples. Both round half away from zero
//!   ([`rounded_average`]);
//! * [`group_pool`]: max or rounded mean over the `|G|` orientation planes (TFLite:
//!   `MAX_POOL_2D` / `AVERAGE_POOL_2D` with a `1 x |G|` window on the map reshaped to
//!   `(N, H*W*C, |G|, 1)`);
//! * [`global_avg_pool`]: the rounded mean of every plane (`AVERAGE_POOL_2D` with the
//!   whole plane as its window);
//! * [`relu`]: `max(x, zp)` in place (TFLite `RELU` with equal input and output
//!   quantization);
//! * [`dense`]: `FULLY_CONNECTED` with per-tensor weights:
//!   `y[n][j] = clamp(scale(b[j] + sum_i W[j][i] * (x[n][i] - zp_in)) + zp_out)`, with
//!   LiteRT's double-precision requantization or TFLite Micro's fixed-point one
//!   ([`DenseScale`]).

use core::num::NonZeroUsize;

use crate::error::{Buffer, Dim, Error, QuantTensor, check_len};
use crate::layers::Reduce;
use crate::pool::PoolShape;
use crate::quant::arith::rounded_average;
use crate::quant::{Multiplier, activation_range, check_zero_point};
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

/// int8 average pooling of every plane, padding counted as real zeros like the f32
/// [`crate::pool::avg_pool`]: a padded position holds the zero point, and every window
/// divides the sum of its `k*k` raw values by `k*k`, rounded half away from zero (TFLite:
/// `PAD` with the zero point, then `AVERAGE_POOL_2D` with `VALID` padding).
///
/// # Errors
/// As [`max_pool`]; [`Error::ZeroPointOutOfRange`].
pub fn avg_pool(
    shape: &PoolShape,
    zero_point: i32,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), Error> {
    check_zero_point(QuantTensor::Input, zero_point)?;
    let window = shape.window.saturating_mul(shape.window);
    let count = i32::try_from(window).map_err(|_| Error::SizeOverflow)?;
    pool(shape, input, output, |samples| {
        let (sum, n) = samples.fold((0i32, 0i32), |(s, c), x| (s + i32::from(x), c + 1));
        let sum = sum + (count - n) * zero_point;
        rounded_average(sum, count).clamp(-128, 127) as i8
    })
}

/// int8 average pooling of every plane over the **in-map** samples of each window
/// only (TFLite `AVERAGE_POOL_2D` with `SAME` padding, which does not count padded
/// positions): the rounded mean of those samples.
///
/// # Errors
/// As [`max_pool`].
pub fn avg_pool_in_map(shape: &PoolShape, input: &[i8], output: &mut [i8]) -> Result<(), Error> {
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
    // Chunk sizes as `NonZeroUsize` (no panic path), each factor tested on its own and
    // the products from `checked_mul` (as in `crate::pool`); a validated geometry has
    // no zero size and its products fit (with no planes there is nothing to write).
    let (Some(h_nz), Some(row_len), Some(oh_nz), Some(out_row)) = (
        NonZeroUsize::new(h),
        NonZeroUsize::new(w),
        NonZeroUsize::new(oh),
        NonZeroUsize::new(ow),
    ) else {
        return Ok(());
    };
    let (Some(in_plane), Some(out_plane)) = (h_nz.checked_mul(row_len), oh_nz.checked_mul(out_row))
    else {
        return Ok(());
    };
    for (x, y) in input
        .chunks_exact(in_plane.get())
        .zip(output.chunks_exact_mut(out_plane.get()))
    {
        for (a, y_row) in y.chunks_exact_mut(out_row.get()).enumerate() {
            let r0 = (a * s).saturating_sub(top);
            let r1 = (a * s + k).saturating_sub(top).min(h);
            for (b, out) in y_row.iter_mut().enumerate() {
                let c0 = (b * s).saturating_sub(left);
                let c1 = (b * s + k).saturating_sub(left).min(w);
                // The window clipped to the map: rows r0..r1, columns c0..c1.
                let mut window = x
                    .chunks_exact(row_len.get())
                    .take(r1)
                    .skip(r0)
                    .flat_map(|row| row.iter().take(c1).skip(c0).copied());
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
    // Chunk and step sizes as `NonZeroUsize` (no panic path), the item's from
    // `checked_mul` (see `crate::pool`): a zero plane has nothing to write, and the
    // product fits since `in_len` did (items = 0 aside: no input either).
    let (Some(plane), Some(o)) = (
        NonZeroUsize::new(plane_len),
        NonZeroUsize::new(orientations),
    ) else {
        return Ok(());
    };
    let Some(item) = plane.checked_mul(o) else {
        return Ok(());
    };
    let count = i32::try_from(orientations).map_err(|_| Error::SizeOverflow)?;
    for (x, y) in input
        .chunks_exact(item.get())
        .zip(output.chunks_exact_mut(plane.get()))
    {
        for (i, out) in y.iter_mut().enumerate() {
            let values = x.iter().skip(i).step_by(plane.get()).copied();
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

/// How a dense layer turns its int32 accumulator into the output scale. The two
/// TFLite runtimes differ here (and only here): since LiteRT 1.3 (April 2025) its
/// reference `FULLY_CONNECTED` requantizes in double precision, while TFLite Micro and
/// CMSIS-NN keep the fixed-point multiplier of the convolutions. They disagree on a
/// few outputs that fall near a rounding tie (the goldens in `tools/golden/int8-layers`
/// show it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DenseScale {
    /// LiteRT's reference kernel: `y = round(acc * real)` in f64, half away from zero,
    /// with `real = f64(input_scale) * f64(weight_scale) / f64(output_scale)`
    /// ([`DenseScale::litert`]). The default of gconv's int8 models.
    Real(f64),
    /// TFLite Micro / CMSIS-NN: `y = M.apply(acc)`, the fixed-point multiplier of
    /// `f64(f32(input_scale * weight_scale)) / f64(output_scale)`
    /// ([`DenseScale::micro`]; the product rounded to f32 first, as TFLite's
    /// `GetQuantizedConvolutionMultipler` does).
    Fixed(Multiplier),
}

impl DenseScale {
    /// LiteRT's reference requantization for these float32 scales.
    ///
    /// # Errors
    /// [`Error::InvalidScale`]; [`Error::EffectiveScaleOutOfRange`] for an effective
    /// scale of `2^30` or more.
    pub fn litert(input_scale: f32, weight_scale: f32, output_scale: f32) -> Result<Self, Error> {
        // Same validation as the fixed-point form.
        Multiplier::for_product(input_scale, weight_scale, output_scale)?;
        Ok(DenseScale::Real(
            f64::from(input_scale) * f64::from(weight_scale) / f64::from(output_scale),
        ))
    }

    /// TFLite Micro's fixed-point requantization for these float32 scales.
    ///
    /// # Errors
    /// As [`DenseScale::litert`].
    pub fn micro(input_scale: f32, weight_scale: f32, output_scale: f32) -> Result<Self, Error> {
        Multiplier::for_product(input_scale, weight_scale, output_scale)?;
        let product = input_scale * weight_scale;
        if !(product.is_finite() && product > 0.0) {
            return Err(Error::EffectiveScaleOutOfRange);
        }
        Ok(DenseScale::Fixed(Multiplier::from_real(
            f64::from(product) / f64::from(output_scale),
        )?))
    }

    /// The accumulator in output units, before the zero point.
    #[inline]
    fn apply(self, acc: i32) -> i32 {
        match self {
            // `as` saturates, where C's cast would be undefined.
            DenseScale::Real(real) => libm::round(f64::from(acc) * real) as i32,
            DenseScale::Fixed(m) => m.apply(acc),
        }
    }
}

/// The quantization of a dense layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseQuant {
    /// The input zero point, in `[-128, 127]`.
    pub input_zero_point: i32,
    /// The output zero point, in `[-128, 127]`.
    pub output_zero_point: i32,
    /// The requantization.
    pub scale: DenseScale,
    /// Fused ReLU.
    pub relu: bool,
}

/// A dense (fully connected) int8 layer with one weight scale for the whole weight:
/// `y[n][j] = clamp(scale(b[j] + sum_i W[j][i] * (x[n][i] - zp_in)) + zp_out, lo, 127)`,
/// `W` of shape `(out_features, in_features)`, `scale` as [`DenseScale`].
///
/// # Errors
/// [`Error::ZeroDimension`] for zero features; [`Error::ZeroPointOutOfRange`];
/// [`Error::EffectiveScaleOutOfRange`] for a `Real` scale that is not finite and
/// positive; [`Error::BufferLength`]; [`Error::SizeOverflow`].
#[allow(clippy::too_many_arguments)]
pub fn dense(
    batch: usize,
    in_features: usize,
    out_features: usize,
    quant: &DenseQuant,
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
    check_zero_point(QuantTensor::Input, quant.input_zero_point)?;
    check_zero_point(QuantTensor::Output, quant.output_zero_point)?;
    if let DenseScale::Real(r) = quant.scale
        && !(r.is_finite() && r > 0.0)
    {
        return Err(Error::EffectiveScaleOutOfRange);
    }
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
    let (zp_in, zp_out) = (quant.input_zero_point, quant.output_zero_point);
    let (lo, hi) = activation_range(zp_out, quant.relu);
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
            *out = quant.scale.apply(acc).saturating_add(zp_out).clamp(lo, hi) as i8;
        }
    }
    Ok(())
}

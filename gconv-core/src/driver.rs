//! The planar cross-correlation every gconv layer reduces to, with the padded edges
//! handled here so the inner loops run over plain contiguous rows.
//!
//! ```text
//! Y[n][c][a][b] = bias[c / nto] + sum_{c', p, q} Xpad[n][c'][a*s + p][b*s + q] * bank[c][c'][p][q]
//! ```
//!
//! `X` is the input viewed as `(N, C_in*nti, H, W)`, `bank` the expanded OIHW filter
//! bank `(C_out*nto, C_in*nti, K, K)`, `Y` the output `(N, C_out*nto, H', W')`.
//! Padding is never materialised: for each filter tap `(p, q)` the driver computes
//! the range of output rows and columns whose input sample is inside the map and
//! runs an `axpy` over exactly that range.

use core::num::NonZeroUsize;

use crate::shape::ConvGeometry;
use crate::simd::{axpy, axpy_strided};

/// Range of output indices `i` in `0..out` whose input index `i*stride + tap - pad`
/// lies in `0..size`. Empty ranges come back as `(x, x)`.
#[inline]
pub(crate) fn valid_outputs(
    tap: usize,
    pad: usize,
    stride: NonZeroUsize,
    size: usize,
    out: usize,
) -> (usize, usize) {
    // i*stride + tap >= pad  <=>  i >= ceil((pad - tap) / stride)
    let lo = if pad > tap {
        let gap = pad - tap;
        gap / stride + usize::from(gap % stride != 0)
    } else {
        0
    };
    // i*stride + tap - pad <= size - 1  <=>  i <= (size - 1 + pad - tap) / stride
    let hi = if size + pad > tap {
        ((size - 1 + pad - tap) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Runs the cross-correlation. The caller has validated every buffer length against
/// `geo` (`input.len() == geo.input_len()`, `bank.len() == geo.bank_len()`, bias
/// `geo.bias_len()` if present, `output.len() == geo.output_len()`).
///
/// Written with checked accesses and nonzero chunk sizes, so that no panic path is
/// compiled (the firmware's panic gate checks): an access outside a buffer, which the
/// validation rules out, skips its term (with a debug assertion).
pub(crate) fn correlate(
    geo: &ConvGeometry,
    input: &[f32],
    bank: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (h, w, k, stride) = (geo.height(), geo.width(), geo.kernel(), geo.stride());
    let (oh, ow) = (geo.out_height(), geo.out_width());
    let [pad_top, _, pad_left, _] = geo.padding();
    let planes_in = geo.in_channels() * geo.nti();
    let planes_out = geo.out_channels() * geo.nto();
    // All nonzero for a validated geometry.
    let (Some(in_plane), Some(out_plane), Some(taps), Some(nto), Some(in_image), Some(out_image)) = (
        NonZeroUsize::new(h * w),
        NonZeroUsize::new(oh * ow),
        NonZeroUsize::new(k * k),
        NonZeroUsize::new(geo.nto()),
        NonZeroUsize::new(planes_in * h * w),
        NonZeroUsize::new(planes_out * oh * ow),
    ) else {
        debug_assert!(false, "zero size in a validated geometry");
        return;
    };
    let (Some(filters_len), Some(step)) = (
        NonZeroUsize::new(planes_in * taps.get()),
        NonZeroUsize::new(stride),
    ) else {
        debug_assert!(false, "zero size in a validated geometry");
        return;
    };

    // Tap ranges depend only on the tap index: compute them once per call.
    let row_range = |p: usize| valid_outputs(p, pad_top, step, h, oh);
    let col_range = |q: usize| valid_outputs(q, pad_left, step, w, ow);

    for (x_image, y_image) in input
        .chunks_exact(in_image.get())
        .zip(output.chunks_exact_mut(out_image.get()))
    {
        let filter_rows = bank.chunks_exact(filters_len.get());
        for (c, (y, filters)) in y_image
            .chunks_exact_mut(out_plane.get())
            .zip(filter_rows)
            .enumerate()
        {
            let b = bias.map(|b| b.get(c / nto).copied());
            debug_assert!(b != Some(None), "direct path: bias shorter than C_out");
            let b = b.flatten().unwrap_or(0.0);
            y.fill(b);
            for (x, filter) in x_image
                .chunks_exact(in_plane.get())
                .zip(filters.chunks_exact(taps.get()))
            {
                for p in 0..k {
                    let (a_lo, a_hi) = row_range(p);
                    for q in 0..k {
                        let (b_lo, b_hi) = col_range(q);
                        let weight = filter.get(p * k + q);
                        debug_assert!(weight.is_some(), "direct path: tap outside its filter");
                        let Some(&weight) = weight.filter(|_| b_lo < b_hi) else {
                            continue;
                        };
                        let col0 = b_lo * stride + q - pad_left;
                        for a in a_lo..a_hi {
                            let row = a * stride + p - pad_top;
                            let x_row = x.get(row * w + col0..(row + 1) * w);
                            let y_row = y.get_mut(a * ow + b_lo..a * ow + b_hi);
                            debug_assert!(
                                x_row.is_some() && y_row.is_some(),
                                "row outside its plane"
                            );
                            let (Some(x_row), Some(y_row)) = (x_row, y_row) else {
                                continue;
                            };
                            if stride == 1 {
                                axpy(y_row, x_row, weight);
                            } else {
                                axpy_strided(y_row, x_row, stride, weight);
                            }
                        }
                    }
                }
            }
        }
    }
}

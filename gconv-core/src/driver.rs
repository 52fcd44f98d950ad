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

use crate::shape::ConvGeometry;
use crate::simd::{axpy, axpy_strided};

/// Range of output indices `i` in `0..out` whose input index `i*stride + tap - pad`
/// lies in `0..size`. Empty ranges come back as `(x, x)`.
#[inline]
fn valid_outputs(tap: usize, pad: usize, stride: usize, size: usize, out: usize) -> (usize, usize) {
    // i*stride + tap >= pad  <=>  i >= ceil((pad - tap) / stride)
    let lo = if pad > tap {
        (pad - tap).div_ceil(stride)
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
/// `geo.bias_len()` if present, `output.len() == geo.output_len()`), so no index
/// below is out of bounds.
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
    let (in_plane, out_plane, taps) = (h * w, oh * ow, k * k);

    // Tap ranges depend only on the tap index: compute them once per call.
    let row_range = |p: usize| valid_outputs(p, pad_top, stride, h, oh);
    let col_range = |q: usize| valid_outputs(q, pad_left, stride, w, ow);

    for (x_image, y_image) in input
        .chunks_exact(planes_in * in_plane)
        .zip(output.chunks_exact_mut(planes_out * out_plane))
    {
        for (c, y) in y_image.chunks_exact_mut(out_plane).enumerate() {
            let b = bias.map_or(0.0, |b| b[c / geo.nto()]);
            y.fill(b);
            let filters = &bank[c * planes_in * taps..(c + 1) * planes_in * taps];
            for (x, filter) in x_image
                .chunks_exact(in_plane)
                .zip(filters.chunks_exact(taps))
            {
                for p in 0..k {
                    let (a_lo, a_hi) = row_range(p);
                    for q in 0..k {
                        let (b_lo, b_hi) = col_range(q);
                        if b_lo == b_hi {
                            continue;
                        }
                        let weight = filter[p * k + q];
                        let col0 = b_lo * stride + q - pad_left;
                        for a in a_lo..a_hi {
                            let row = a * stride + p - pad_top;
                            let x_row = &x[row * w + col0..(row + 1) * w];
                            let y_row = &mut y[a * ow + b_lo..a * ow + b_hi];
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

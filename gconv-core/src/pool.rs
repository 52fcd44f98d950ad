//! Spatial pooling of Z2 or group feature maps, plane by plane.
//!
//! ```text
//! max:  y[p][a][b] = max_{0<=i,j<k} xpad[p][a*s + i][b*s + j]       (padding never wins)
//! avg:  y[p][a][b] = (1/k^2) sum_{0<=i,j<k} xpad[p][a*s + i][b*s + j]   (padding counts as 0)
//! ```
//!
//! for every plane `p` of the input viewed as `(planes, H, W)`: a Z2 map
//! `(N, C, H, W)` has `N*C` planes, a group map `(N, C, |G|, H, W)` has `N*C*|G|`.
//! Pooling acts on each plane alike, so it commutes with the permutation of
//! orientation planes; it is exactly equivariant when the window grid is centred,
//! see [`crate::equivariance::pool_is_equivariant`]. Average pooling divides by
//! `k^2` including padded positions (PyTorch's default `count_include_pad=True`).

use core::num::NonZeroUsize;

use crate::error::{Buffer, Error, check_len};
use crate::shape::{Padding, checked_product, window_geometry};

/// The arguments of a pooling call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolShape {
    /// Number of planes (`N*C` or `N*C*|G|`); 0 allowed.
    pub planes: usize,
    /// Plane height.
    pub height: usize,
    /// Plane width.
    pub width: usize,
    /// Window size `k` (square).
    pub window: usize,
    /// Stride (>= 1).
    pub stride: usize,
    /// Padding, each side at most `k / 2`.
    pub padding: Padding,
}

/// A validated pooling geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    shape: PoolShape,
    pad: [usize; 4],
    out_height: usize,
    out_width: usize,
}

impl PoolShape {
    /// Validates the shape.
    ///
    /// # Errors
    /// [`Error::ZeroDimension`]; [`Error::SameNeedsOddKernel`] for `Same` with an even
    /// window; [`Error::PoolPaddingTooLarge`]; [`Error::KernelLargerThanInput`];
    /// [`Error::SizeOverflow`].
    pub const fn geometry(&self) -> Result<PoolGeometry, Error> {
        let window = match window_geometry(
            self.height,
            self.width,
            self.window,
            self.stride,
            self.padding,
            self.window / 2,
        ) {
            Ok(w) => w,
            Err(e) => return Err(e),
        };
        let (pad, out_height, out_width) = (window.pad, window.out_height, window.out_width);
        if checked_product(&[self.planes, self.height, self.width]).is_none()
            || checked_product(&[self.planes, out_height, out_width]).is_none()
        {
            return Err(Error::SizeOverflow);
        }
        Ok(PoolGeometry {
            shape: *self,
            pad,
            out_height,
            out_width,
        })
    }
}

impl PoolGeometry {
    /// Output height `(H + top + bottom - k) / stride + 1`.
    pub const fn out_height(&self) -> usize {
        self.out_height
    }
    /// Output width `(W + left + right - k) / stride + 1`.
    pub const fn out_width(&self) -> usize {
        self.out_width
    }
    /// Padding above and to the left, `(top, left)`.
    pub const fn top_left(&self) -> (usize, usize) {
        (self.pad[0], self.pad[2])
    }
    /// Input length, `planes * H * W`.
    pub const fn input_len(&self) -> usize {
        self.shape.planes * self.shape.height * self.shape.width
    }
    /// Output length, `planes * H' * W'`.
    pub const fn output_len(&self) -> usize {
        self.shape.planes * self.out_height * self.out_width
    }
}

/// Max pooling of every plane; padded positions never win (a window always holds at
/// least one input sample, since padding is at most `k / 2`). NaN inputs propagate.
///
/// # Errors
/// As [`PoolShape::geometry`]; [`Error::BufferLength`] for an input or output of the
/// wrong length. Nothing is written on error.
pub fn max_pool(shape: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
    pool(
        shape,
        input,
        output,
        f32::NEG_INFINITY,
        |acc, x| if x > acc || x.is_nan() { x } else { acc },
        |acc, _| acc,
    )
}

/// Average pooling of every plane, dividing by `k^2` (padding counts as zeros).
///
/// # Errors
/// As [`max_pool`].
pub fn avg_pool(shape: &PoolShape, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
    pool(
        shape,
        input,
        output,
        0.0,
        |acc, x| acc + x,
        |acc, k2| acc / k2 as f32,
    )
}

/// The shared driver: validates, then folds each window's in-map samples with
/// `step` starting from `init`, and finishes with `finish(acc, k*k)`.
fn pool(
    shape: &PoolShape,
    input: &[f32],
    output: &mut [f32],
    init: f32,
    step: impl Fn(f32, f32) -> f32,
    finish: impl Fn(f32, usize) -> f32,
) -> Result<(), Error> {
    let geo = shape.geometry()?;
    check_len(Buffer::Input, input.len(), geo.input_len())?;
    check_len(Buffer::Output, output.len(), geo.output_len())?;
    let (h, w, k, s) = (shape.height, shape.width, shape.window, shape.stride);
    let [top, _, left, _] = geo.pad;
    let (oh, ow) = (geo.out_height, geo.out_width);
    // Planes, rows and output rows as `NonZeroUsize` chunk sizes (no panic path). Each
    // factor is tested on its own and the products come from `checked_mul`: from a
    // test of `h * w` alone the compiler drops the test of `w` as implied, and then
    // cannot prove `w != 0` where it needs it. A validated geometry has no zero size;
    // the products fit since the buffers' lengths were checked (with no planes there
    // is nothing to write either way).
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
            // Rows of the window inside the map: a*s + i - top in r0..r1 (within 0..h).
            let r0 = (a * s).saturating_sub(top);
            let r1 = (a * s + k).saturating_sub(top).min(h);
            for (b, out) in y_row.iter_mut().enumerate() {
                let c0 = (b * s).saturating_sub(left);
                let c1 = (b * s + k).saturating_sub(left).min(w);
                let mut acc = init;
                // The window clipped to the map, as iterators: rows r0..r1, columns
                // c0..c1.
                for row in x.chunks_exact(row_len.get()).take(r1).skip(r0) {
                    for &v in row.iter().take(c1).skip(c0) {
                        acc = step(acc, v);
                    }
                }
                *out = finish(acc, k * k);
            }
        }
    }
    Ok(())
}

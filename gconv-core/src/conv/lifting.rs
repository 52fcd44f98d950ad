//! Lifting convolution Z2 -> G: a plain image to a function on the group.
//!
//! ```text
//! y[n][o][t][a][b] = bias[o] + sum_{i, s, p, q} xpad[n][i][s][a*stride + p][b*stride + q]
//!                                              * tw[o][t][i][s][p][q]
//! ```
//!
//! where `tw` is the raw weight expanded by the index table (filter rotated/flipped
//! by `t`, input planes permuted by `t^-1 s`): see [`crate::conv::expand`]. This is
//! the definition `[f * psi](g) = sum_h sum_i f_i(h) psi_i(g^-1 h)` evaluated on the
//! output grid.
//!
//! Layouts: input `(N, C_in, H, W)` (nti = 1), raw weight `(C_out, C_in, nti, K, K)`,
//! bias `(C_out,)`, output `(N, C_out, |G|, H', W')`.

use super::{forward_expanded, forward_raw};
use crate::error::Error;
use crate::group::Group;
use crate::shape::{ConvGeometry, ConvShape, Domain};

/// Validates `shape` for a lifting convolution to `G` and returns its geometry:
/// output shape, buffer lengths, MACs.
///
/// # Errors
/// See [`ConvShape::geometry`].
pub const fn lifting_conv_geometry<G: Group>(shape: &ConvShape) -> Result<ConvGeometry, Error> {
    shape.geometry::<G>(Domain::Z2)
}

/// Scratch length (f32) that [`lifting_conv`] needs: the expanded bank,
/// `C_out*|G| * C_in*nti * K*K`.
///
/// # Errors
/// See [`ConvShape::geometry`].
pub const fn lifting_conv_scratch_len<G: Group>(shape: &ConvShape) -> Result<usize, Error> {
    match lifting_conv_geometry::<G>(shape) {
        Ok(geo) => Ok(geo.bank_len()),
        Err(e) => Err(e),
    }
}

/// Lifting convolution from raw weights. The bank is expanded into `scratch`
/// (contents ignored on entry, garbage on exit), then correlated with the input.
/// Every element of `output` is written.
///
/// # Errors
/// Any error of [`ConvShape::geometry`]; [`Error::BufferLength`] when `input`,
/// `weight`, `bias` or `output` does not have exactly its length or `scratch` is
/// shorter than [`lifting_conv_scratch_len`]. Nothing is written on error.
pub fn lifting_conv<G: Group>(
    shape: &ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), Error> {
    forward_raw::<G>(Domain::Z2, shape, input, weight, bias, output, scratch)
}

/// Lifting convolution with a bank expanded beforehand by
/// [`expand_filter_bank`](crate::conv::expand::expand_filter_bank) (shape
/// `(C_out*|G|, C_in*nti, K, K)`): no scratch needed. Every element of `output` is
/// written.
///
/// # Errors
/// Any error of [`ConvShape::geometry`]; [`Error::BufferLength`] when a buffer does
/// not have exactly its length. Nothing is written on error.
pub fn lifting_conv_expanded<G: Group>(
    shape: &ConvShape,
    input: &[f32],
    bank: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    forward_expanded::<G>(Domain::Z2, shape, input, bank, bias, output)
}

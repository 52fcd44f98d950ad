//! Lifting (Z2 -> G) and group (G -> G) convolutions, one file per kernel family.
//!
//! Every kernel takes its arguments in one order: shape, input, weights, bias,
//! output, scratch. Each validates everything once at entry and returns an
//! [`Error`] before writing anything; the body that follows cannot fail.
//!
//! Layouts (C order, see `CONVENTIONS.md`):
//! * input `(N, C_in, H, W)` for Z2, `(N, C_in, nti, H, W)` for group input;
//! * raw weight `(C_out, C_in, nti, K, K)`; expanded bank `(C_out*nto, C_in*nti, K, K)`;
//! * bias `(C_out,)`, one value per output G-channel added to all its `nto` planes;
//! * output `(N, C_out, nto, H', W')`.
//!
//! Scratch contract (for the kernels taking raw weights): at least
//! `*_scratch_len` f32; its contents are ignored on entry and are garbage on exit.

pub mod expand;
pub mod group;
pub mod lifting;

use crate::driver::correlate;
use crate::error::{Buffer, Error, check_len};
use crate::group::Group;
use crate::shape::{ConvGeometry, ConvShape, Domain};

/// Checks the buffers every forward pass shares: input, bias, output.
pub(crate) fn check_io(
    geo: &ConvGeometry,
    input: &[f32],
    bias: Option<&[f32]>,
    output: &[f32],
) -> Result<(), Error> {
    check_len(Buffer::Input, input.len(), geo.input_len())?;
    if let Some(b) = bias {
        check_len(Buffer::Bias, b.len(), geo.bias_len())?;
    }
    check_len(Buffer::Output, output.len(), geo.output_len())
}

/// Forward pass with raw weights: expand into `scratch`, then correlate.
fn forward_raw<G: Group>(
    domain: Domain,
    shape: &ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), Error> {
    let geo = shape.geometry::<G>(domain)?;
    check_io(&geo, input, bias, output)?;
    if scratch.len() < geo.bank_len() {
        return Err(Error::BufferLength {
            buffer: Buffer::Scratch,
            expected: geo.bank_len(),
            found: scratch.len(),
        });
    }
    let bank = &mut scratch[..geo.bank_len()];
    expand::expand_for(&geo, weight, bank)?;
    correlate(&geo, input, bank, bias, output);
    Ok(())
}

/// Forward pass with an already expanded bank.
fn forward_expanded<G: Group>(
    domain: Domain,
    shape: &ConvShape,
    input: &[f32],
    bank: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    let geo = shape.geometry::<G>(domain)?;
    check_io(&geo, input, bias, output)?;
    check_len(Buffer::Bank, bank.len(), geo.bank_len())?;
    correlate(&geo, input, bank, bias, output);
    Ok(())
}

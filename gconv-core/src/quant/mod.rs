//! int8 G-CNN layers with the arithmetic of the TFLite int8 specification, bit-exact
//! with TFLite's reference kernels (and so with TFLite Micro and CMSIS-NN), and
//! **exactly** equivariant: integer sums do not depend on their order, so rotating or
//! flipping the input transforms the output bit for bit. See `docs/int8.md` for the
//! whole specification; in short:
//!
//! * weights int8 in `[-127, 127]`, zero point 0, one f32 scale per **output
//!   G-channel**, shared by its `|G|` planes (the same as TFLite's per-channel scale on
//!   the expanded bank, since its planes hold the same values);
//! * activations int8 with one f32 scale and zero point per tensor; a padded tap
//!   reads the input zero point, so it contributes nothing;
//! * bias int32 at scale `input_scale * weight_scale[c]`;
//! * `acc = bias[c] + sum w * (x - zp_in)` in int32 (wrapping, like the hardware
//!   TFLite runs on; exact while `|acc| < 2^31`, e.g. always for fewer than 65,793
//!   terms and `|bias| < 2^24`), then
//!   `y = clamp(M[c].apply(acc) + zp_out, lo, 127)` with `lo = -128`, or
//!   `max(zp_out, -128)` for a fused ReLU, and `M[c]` the fixed-point form of
//!   `input_scale * weight_scale[c] / output_scale` ([`Multiplier::for_product`]).
//!
//! Modules: [`arith`] (multiplier, rounding), [`conv`] (the four convolutions, the
//! plain kernel every other one must equal bit for bit), [`fast`] (the host's int8
//! micro-kernels: AVX2 `vpmaddwd`, AVX-512 VNNI and AVX-VNNI `vpdpbusd`, portable),
//! [`layers`] (pooling, group pooling, global average pooling, dense, ReLU).

pub mod arith;
pub mod conv;
pub mod dsp;
pub mod fast;
pub mod layers;

pub use arith::Multiplier;

use crate::error::{Error, QuantTensor};

/// The quantization of an activation tensor: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    /// The scale, finite and positive.
    pub scale: f32,
    /// The zero point, in `[-128, 127]`.
    pub zero_point: i32,
}

impl QuantParams {
    /// Checks that the scale is finite and positive and the zero point an int8.
    ///
    /// # Errors
    /// [`Error::InvalidScale`] or [`Error::ZeroPointOutOfRange`], naming `tensor`.
    pub fn validate(&self, tensor: QuantTensor) -> Result<(), Error> {
        arith::check_scale(tensor, self.scale)?;
        check_zero_point(tensor, self.zero_point)
    }

    /// TFLite's `QUANTIZE`: `clamp(round(x / scale) + zero_point, -128, 127)`, the
    /// division in f32 and ties rounded away from zero. NaN maps to the zero point.
    pub fn quantize(&self, x: f32) -> i8 {
        let q = libm::roundf(x / self.scale);
        // `as` saturates (and maps NaN to 0) before the clamp.
        let q = (q as i32).saturating_add(self.zero_point);
        q.clamp(-128, 127) as i8
    }

    /// `scale * (q - zero_point)`.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (i32::from(q) - self.zero_point) as f32
    }
}

/// `Ok` for a zero point in `[-128, 127]`.
///
/// # Errors
/// [`Error::ZeroPointOutOfRange`].
pub fn check_zero_point(tensor: QuantTensor, zero_point: i32) -> Result<(), Error> {
    if (-128..=127).contains(&zero_point) {
        Ok(())
    } else {
        Err(Error::ZeroPointOutOfRange { tensor, zero_point })
    }
}

/// `Ok` when no weight is -128 (TFLite's symmetric int8 weights are in `[-127, 127]`).
/// Layers check their weights once, when they are built; the kernels compute
/// correctly with -128 too, but such a model is not a TFLite model.
///
/// # Errors
/// [`Error::WeightOutOfRange`] with the position of the first -128.
pub fn check_weights(weights: &[i8]) -> Result<(), Error> {
    match weights.iter().position(|&w| w == i8::MIN) {
        Some(index) => Err(Error::WeightOutOfRange { index }),
        None => Ok(()),
    }
}

/// The output clamp of a layer: `[-128, 127]`, or `[max(zp_out, -128), 127]` with a
/// fused ReLU (TFLite's `CalculateActivationRangeQuantized`: real 0 is `zp_out`).
pub const fn activation_range(output_zero_point: i32, relu: bool) -> (i32, i32) {
    if relu {
        let lo = if output_zero_point > -128 {
            output_zero_point
        } else {
            -128
        };
        (if lo > 127 { 127 } else { lo }, 127)
    } else {
        (-128, 127)
    }
}

/// The requantization of a convolution or dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requant<'a> {
    /// The input zero point, in `[-128, 127]`.
    pub input_zero_point: i32,
    /// The output zero point, in `[-128, 127]`.
    pub output_zero_point: i32,
    /// One multiplier per output G-channel (convolutions) or one for the whole
    /// layer (dense): [`Multiplier::for_product`] of the scales.
    pub multipliers: &'a [Multiplier],
    /// Fused ReLU: clamp at the output zero point (real 0) from below.
    pub relu: bool,
}

impl Requant<'_> {
    /// Checks the zero points and that there are `channels` multipliers.
    pub(crate) fn validate(&self, channels: usize) -> Result<(), Error> {
        check_zero_point(QuantTensor::Input, self.input_zero_point)?;
        check_zero_point(QuantTensor::Output, self.output_zero_point)?;
        crate::error::check_len(
            crate::error::Buffer::Scales,
            self.multipliers.len(),
            channels,
        )
    }

    /// `clamp(m.apply(acc) + zp_out, range)`.
    #[inline]
    pub(crate) fn output(m: Multiplier, acc: i32, zero_point: i32, range: (i32, i32)) -> i8 {
        m.apply(acc)
            .saturating_add(zero_point)
            .clamp(range.0, range.1) as i8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_away_and_clamps() {
        let p = QuantParams {
            scale: 0.5,
            zero_point: -3,
        };
        assert_eq!(p.quantize(0.25), -3 + 1);
        assert_eq!(p.quantize(-0.25), -3 - 1);
        assert_eq!(p.quantize(0.2), -3);
        assert_eq!(p.quantize(1000.0), 127);
        assert_eq!(p.quantize(-1000.0), -128);
        assert_eq!(p.quantize(f32::NAN), -3);
        assert_eq!(p.dequantize(-1), 1.0);
        assert!(p.validate(QuantTensor::Input).is_ok());
        let bad = QuantParams {
            scale: 0.5,
            zero_point: 128,
        };
        assert_eq!(
            bad.validate(QuantTensor::Output),
            Err(Error::ZeroPointOutOfRange {
                tensor: QuantTensor::Output,
                zero_point: 128
            })
        );
    }

    #[test]
    fn weights_and_ranges() {
        assert_eq!(check_weights(&[0, 127, -127]), Ok(()));
        assert_eq!(
            check_weights(&[0, 1, -128, -128]),
            Err(Error::WeightOutOfRange { index: 2 })
        );
        assert_eq!(activation_range(5, true), (5, 127));
        assert_eq!(activation_range(-128, true), (-128, 127));
        assert_eq!(activation_range(5, false), (-128, 127));
    }
}

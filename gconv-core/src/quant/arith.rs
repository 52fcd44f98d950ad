//! The fixed-point arithmetic of the TFLite int8 specification, written from its
//! definition (gemmlowp's rounding, TFLite's `QuantizeMultiplier`), so that gconv's
//! int8 layers are bit-exact with TFLite's reference kernels, TFLite Micro and
//! CMSIS-NN (all use the same default "double rounding").
//!
//! A real multiplier `M > 0` is stored as a 32-bit significand `m` in `[2^30, 2^31)`
//! and an exponent `shift` with `M ~= m * 2^(shift - 31)`. An int32 `x` is scaled by
//!
//! ```text
//! apply(x) = rounding_divide_by_pot(srdhm(x * 2^max(shift, 0), m), max(-shift, 0))
//! srdhm(a, b)                  = floor((a * b + 2^30) / 2^31), saturated (only MIN*MIN)
//! rounding_divide_by_pot(x, e) = x / 2^e rounded half away from zero
//! ```
//!
//! The first rounding takes ties up (toward +infinity: gemmlowp adds `2^30`, or
//! `1 - 2^30` before a truncating division for negative products, which is the same),
//! the second takes them away from zero, and the result is rounded twice ("double
//! rounding"), exactly as gemmlowp and TFLite do it by default.

use crate::error::{Error, QuantTensor};

/// A real multiplier in TFLite's fixed-point form: `M ~= multiplier * 2^(shift - 31)`,
/// `multiplier` in `[2^30, 2^31)` (or 0 for `M < 2^-32`), `shift` in `-31..=30`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Multiplier {
    multiplier: i32,
    shift: i32,
}

/// The largest left shift an int32 accumulator can take before `x * 2^shift`
/// overflows for every `x` but 0 and 1; TFLite leaves larger ones undefined, gconv
/// refuses them (an effective scale of `2^30` or more is never a sensible layer).
const MAX_LEFT_SHIFT: i32 = 30;

impl Multiplier {
    /// The identity, `M = 1`: `apply(x) == x` for `|x| < 2^30` (the left shift by one
    /// wraps beyond).
    pub const ONE: Multiplier = Multiplier {
        multiplier: 1 << 30,
        shift: 1,
    };

    /// TFLite's `QuantizeMultiplier`: `(q, e) = frexp(real)` with `q` in `[0.5, 1)`,
    /// `multiplier = round_half_away(q * 2^31)` (carried into the exponent when it
    /// rounds up to `2^31`), `shift = e`; a multiplier below `2^-32` (shift < -31)
    /// becomes `0` (every output is then the output zero point), like TFLite.
    ///
    /// # Errors
    /// [`Error::EffectiveScaleOutOfRange`] when `real` is not finite, is negative or
    /// zero, or is `2^30` or more.
    pub fn from_real(real: f64) -> Result<Multiplier, Error> {
        if !(real.is_finite() && real > 0.0) {
            return Err(Error::EffectiveScaleOutOfRange);
        }
        let (q, mut shift) = libm::frexp(real);
        let mut q_fixed = libm::round(q * (1u64 << 31) as f64) as i64;
        if q_fixed == 1i64 << 31 {
            q_fixed /= 2;
            shift += 1;
        }
        if shift < -31 {
            shift = 0;
            q_fixed = 0;
        }
        if shift > MAX_LEFT_SHIFT {
            return Err(Error::EffectiveScaleOutOfRange);
        }
        Ok(Multiplier {
            multiplier: q_fixed as i32,
            shift,
        })
    }

    /// The multiplier of a convolution or dense output channel: the float32 scales
    /// widened to `f64`, then `input_scale * weight_scale / output_scale` in `f64`
    /// (TFLite's `PopulateConvolutionQuantizationParams` and
    /// `GetQuantizedConvolutionMultipler`), then [`Multiplier::from_real`].
    ///
    /// # Errors
    /// [`Error::InvalidScale`] for a scale that is not finite and positive;
    /// [`Error::EffectiveScaleOutOfRange`].
    pub fn for_product(
        input_scale: f32,
        weight_scale: f32,
        output_scale: f32,
    ) -> Result<Multiplier, Error> {
        check_scale(QuantTensor::Input, input_scale)?;
        check_scale(QuantTensor::Weight, weight_scale)?;
        check_scale(QuantTensor::Output, output_scale)?;
        Multiplier::from_real(
            f64::from(input_scale) * f64::from(weight_scale) / f64::from(output_scale),
        )
    }

    /// A multiplier from its two parts, as [`Multiplier::from_real`] produces them (for
    /// generated code: `gconv export` writes the parts of each layer's multipliers).
    ///
    /// # Errors
    /// [`Error::EffectiveScaleOutOfRange`] unless `multiplier` is in `[2^30, 2^31)`
    /// with `shift` in `-31..=30`, or both are 0.
    pub const fn from_parts(multiplier: i32, shift: i32) -> Result<Multiplier, Error> {
        let zero = multiplier == 0 && shift == 0;
        let normal = multiplier >= 1 << 30 && shift >= -31 && shift <= MAX_LEFT_SHIFT;
        if zero || normal {
            Ok(Multiplier { multiplier, shift })
        } else {
            Err(Error::EffectiveScaleOutOfRange)
        }
    }

    /// The significand, in `[2^30, 2^31)` or 0.
    pub const fn multiplier(self) -> i32 {
        self.multiplier
    }

    /// The exponent: `M ~= multiplier * 2^(shift - 31)`.
    pub const fn shift(self) -> i32 {
        self.shift
    }

    /// TFLite's `MultiplyByQuantizedMultiplier(x, multiplier, shift)`: `x * M` rounded
    /// as in the module docs. The left shift wraps like two's-complement hardware (a
    /// Multiplier from [`Multiplier::from_real`] has `shift <= 30`).
    #[inline]
    pub const fn apply(self, x: i32) -> i32 {
        let (left, right) = if self.shift > 0 {
            (self.shift as u32, 0)
        } else {
            (0, self.shift.unsigned_abs())
        };
        let scaled = x.wrapping_mul(1i32.wrapping_shl(left));
        rounding_divide_by_pot(
            saturating_rounding_doubling_high_mul(scaled, self.multiplier),
            right,
        )
    }
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `floor((a * b + 2^30) / 2^31)`
/// (`a * b / 2^31` with ties rounded up), the high half of the doubled product, saturated to `i32::MAX` for the one
/// overflowing input `a == b == i32::MIN`.
#[inline]
pub const fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // `/` truncates toward zero, as in C; |ab| <= 2^62, so nothing overflows.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded half away from zero,
/// for `exponent <= 31` (larger exponents are taken as 31).
#[inline]
pub const fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    let exponent = if exponent > 31 { 31 } else { exponent };
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> exponent) + (remainder > threshold) as i32
}

/// TFLite's rounding of an average in its reference pooling kernels:
/// `sum / count` rounded half away from zero, `count >= 1`.
#[inline]
pub const fn rounded_average(sum: i32, count: i32) -> i32 {
    let count = if count < 1 { 1 } else { count };
    let half = count / 2;
    if sum > 0 {
        sum.saturating_add(half) / count
    } else {
        sum.saturating_sub(half) / count
    }
}

/// `Ok` for a scale that is finite and positive.
pub(crate) fn check_scale(tensor: QuantTensor, scale: f32) -> Result<(), Error> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidScale(tensor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A power of two is stored as `2^30 * 2^(shift - 31)`, and scaling by it is exact
    /// whenever the product is an integer.
    #[test]
    fn powers_of_two_are_exact_shifts() {
        for e in -20..=10 {
            let m = Multiplier::from_real(libm::ldexp(1.0, e)).unwrap();
            assert_eq!(m.multiplier(), 1 << 30, "2^{e}");
            assert_eq!(m.shift(), e + 1, "2^{e}");
            for x in [-3i32 << 20, -1 << 20, -40, 0, 8, 1 << 20, 5 << 20] {
                let exact = x as f64 * libm::ldexp(1.0, e);
                // The left shift (by `shift` when positive) must not wrap.
                let shifted = i64::from(x) << m.shift().max(0);
                if exact == libm::round(exact) && i32::try_from(shifted).is_ok() {
                    assert_eq!(m.apply(x), exact as i32, "x = {x}, M = 2^{e}");
                }
            }
        }
        assert_eq!(Multiplier::from_real(1.0).unwrap(), Multiplier::ONE);
        for x in [-(1 << 30), -7, 0, 7, (1 << 30) - 1] {
            assert_eq!(Multiplier::ONE.apply(x), x);
        }
    }

    #[test]
    fn parts_round_trip() {
        for r in [1e-12, 0.75, 1.0, 3.3e-5, 1e8] {
            let m = Multiplier::from_real(r).unwrap();
            assert_eq!(Multiplier::from_parts(m.multiplier(), m.shift()), Ok(m));
        }
        for (m, s) in [(1 << 29, 0), (1 << 30, 31), (1 << 30, -32), (0, 1), (-5, 0)] {
            assert_eq!(
                Multiplier::from_parts(m, s),
                Err(Error::EffectiveScaleOutOfRange)
            );
        }
    }

    #[test]
    fn significand_rounds_and_carries() {
        // Just below 1: q * 2^31 rounds up to 2^31, carried into the exponent.
        let m = Multiplier::from_real(1.0 - 1e-12).unwrap();
        assert_eq!((m.multiplier(), m.shift()), (1 << 30, 1));
        // 0.75 = 0.75 * 2^0: significand 0.75 * 2^31.
        let m = Multiplier::from_real(0.75).unwrap();
        assert_eq!((m.multiplier(), m.shift()), (3 << 29, 0));
        // Tiny multipliers become zero.
        let m = Multiplier::from_real(1e-12).unwrap();
        assert_eq!((m.multiplier(), m.shift()), (0, 0));
        assert_eq!(m.apply(i32::MAX), 0);
    }

    #[test]
    fn bad_scales_are_refused() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY, 2f64.powi(30)] {
            assert_eq!(
                Multiplier::from_real(r),
                Err(Error::EffectiveScaleOutOfRange),
                "{r}"
            );
        }
        assert!(Multiplier::from_real(2f64.powi(30) * 0.99).is_ok());
        assert_eq!(
            Multiplier::for_product(0.0, 1.0, 1.0),
            Err(Error::InvalidScale(QuantTensor::Input))
        );
        assert_eq!(
            Multiplier::for_product(1.0, f32::NAN, 1.0),
            Err(Error::InvalidScale(QuantTensor::Weight))
        );
        assert_eq!(
            Multiplier::for_product(1.0, 1.0, -1.0),
            Err(Error::InvalidScale(QuantTensor::Output))
        );
    }

    #[test]
    fn rounding_primitives_round_half_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(6, 2), 2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        // a*b/2^31 = -0.5 and -1.5 exactly: ties go up, to 0 and -1.
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1 << 30), 0);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, (1 << 30) + 1), -2);
        assert_eq!(saturating_rounding_doubling_high_mul(1, 1 << 30), 1);
        assert_eq!(rounded_average(5, 2), 3);
        assert_eq!(rounded_average(-5, 2), -3);
        assert_eq!(rounded_average(4, 3), 1);
        assert_eq!(rounded_average(-4, 3), -1);
        assert_eq!(rounded_average(0, 4), 0);
    }

    /// Against a 128-bit evaluation of the same two roundings, for random
    /// multipliers and inputs.
    #[test]
    fn apply_matches_a_wide_evaluation() {
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        for _ in 0..20_000 {
            let real = libm::ldexp(
                0.5 + (next() >> 11) as f64 / (1u64 << 54) as f64,
                (next() % 40) as i32 - 35,
            );
            let m = Multiplier::from_real(real).unwrap();
            let x = (next() >> 32) as i32 >> (next() % 20);
            let left = m.shift().max(0);
            let right = (-m.shift()).max(0);
            let a = i128::from(x) << left;
            if i32::try_from(a).is_err() {
                continue; // the left shift wraps, as in TFLite: not a rounding question
            }
            let prod = a * i128::from(m.multiplier());
            // First rounding: prod / 2^31, ties up (`>>` floors).
            let high = (prod + (1i128 << 30)) >> 31;
            // Second rounding: high / 2^right, half away from zero.
            let want = if right == 0 {
                high
            } else {
                let d = 1i128 << right;
                if high >= 0 {
                    (high + d / 2) / d
                } else {
                    -((-high + d / 2) / d)
                }
            };
            assert_eq!(i128::from(m.apply(x)), want, "x = {x}, m = {m:?}");
        }
    }
}

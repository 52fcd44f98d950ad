//! # gconv-core
//!
//! Group-equivariant convolutions (G-CNNs, Cohen & Welling 2016) for the rotation
//! group C4 (`p4`) and the dihedral group D4 (`p4m`), in `#![no_std]` Rust with no
//! allocation: the caller provides output and scratch buffers, errors are values.
//!
//! Conventions (element order, layouts, index tables) are GrouPy's, so weights
//! trained with GrouPy or its PyTorch port run unchanged. See `CONVENTIONS.md`.
//!
//! * [`group`]: the groups, their `const` tables and the `const fn` index tables.
//! * [`conv`]: lifting (Z2 -> G) and group (G -> G) convolutions, filter expansion.
//! * [`blocked`]: the register-blocked path for targets without x86 SIMD (Cortex-M4F):
//!   from raw weights, with one block of packed filters as scratch.
//! * [`fast`]: the register-tiled fast path (packed operands, portable and AVX2+FMA
//!   micro-kernels) for the same four convolutions.
//! * [`fourier`]: the group-Fourier path, 2.7x (C4) to 5.3x (D4) fewer
//!   multiplications for group convolutions, on the fast path's micro-kernels.
//! * [`plan`]: one API for every path: [`Plan::new`] validates a layer's shape and
//!   chooses the algorithm (direct, blocked, fast or Fourier; `Auto` by a cost
//!   model), then sizes the buffers, prepares the weights and runs the forward pass.
//! * [`quant`]: int8 layers with the arithmetic of the TFLite int8 specification,
//!   bit-exact with LiteRT and exactly equivariant, and the host's int8 micro-kernels.
//! * [`model`]: a sequential model runner for firmware (f32 and int8), checked and
//!   sized by a `const fn`, on two activation buffers and one scratch.
//! * [`shape`]: padding, shapes, output and buffer sizes.
//! * [`pool`]: spatial max and average pooling of Z2 and group maps.
//! * [`layers`]: group pooling, per-channel affine (batch norm), ReLU, global average
//!   pooling, dense.
//! * [`equivariance`]: the rule that says whether a layer is exactly equivariant.
//!
//! ```
//! use gconv_core::{C4, ConvShape, Padding, conv::lifting};
//!
//! // One 5x5 gray image to 2 G-channels on C4, 3x3 filters, symmetric `Same` padding.
//! let shape = ConvShape { batch: 1, in_channels: 1, out_channels: 2, height: 5, width: 5,
//!                         kernel: 3, stride: 1, padding: Padding::Same };
//! let geo = lifting::lifting_conv_geometry::<C4>(&shape)?;
//! let input = [1.0f32; 25];
//! let weight = [0.5f32; 2 * 9]; // (C_out, C_in, 1, 3, 3)
//! let mut output = [0.0f32; 2 * 4 * 25]; // (1, 2, 4, 5, 5)
//! let mut scratch = [0.0f32; 2 * 4 * 9];
//! assert_eq!(geo.output_len(), output.len());
//! lifting::lifting_conv::<C4>(&shape, &input, &weight, None, &mut output, &mut scratch)?;
//! assert_eq!(output[2 * 5 + 2], 4.5); // centre pixel: 9 taps of 0.5
//! # Ok::<(), gconv_core::Error>(())
//! ```
#![no_std]
// `unsafe` only in `fast::FastPlan::compute`, `fourier::FourierPlan::forward_image` and
// `quant::fast::QFastPlan::compute` (the calls of the AVX2+FMA and AVX-512 kernels and
// of the int8 AVX2, AVX-VNNI and AVX-512 VNNI kernels, safe `#[target_feature]`
// functions, in builds that enable those features at compile time),
// `fourier::butterfly_run` (the transforms' vector loop, bounds checked once per run)
// and the lifting kernel's stores (`fourier::lifting`, through row pointers taken
// from slices cut from the output by checked `get_mut`, none null). Tested under Miri
// (`scripts/miri.sh`). On Arm builds with an FPU, also in `blocked::tile::arm` (the
// `asm!` tiles of the blocked path, read and write ranges checked once per strip or
// column before the loop): Miri cannot run Arm assembly, so their portable twins are
// what the host tests and Miri run, and the firmware (`scripts/cortex-m4.sh`) checks
// the assembly's outputs against the f64 reference on the emulated Cortex-M4F.
#![deny(unsafe_code)]

pub mod blocked;
pub mod conv;
mod driver;
pub mod equivariance;
pub mod error;
pub mod fast;
pub mod fourier;
pub mod group;
pub mod layers;
pub mod model;
pub mod plan;
pub mod pool;
pub mod quant;
pub mod shape;
mod simd;

pub use error::{Buffer, Dim, Error, QuantTensor};
pub use group::{C4, D4, Group};
pub use plan::{Algorithm, AlgorithmChoice, Plan};
pub use shape::{ConvGeometry, ConvShape, Domain, Padding};

/// Data for the unit tests of the fast and Fourier paths.
#[cfg(test)]
mod test_data {
    /// Small deterministic pseudo-random values in [-1, 1).
    pub(crate) fn fill(buf: &mut [f32], mut seed: u32) {
        for v in buf {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *v = (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
        }
    }

    /// Small deterministic pseudo-random integers in `-3..=3`: on such data every
    /// path is exact in f32 (see `tests/tests/exact.rs`), so results compare bit for
    /// bit.
    pub(crate) fn fill_ints(buf: &mut [f32], mut seed: u32) {
        for v in buf {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *v = ((seed >> 16) % 7) as f32 - 3.0;
        }
    }

    /// The data kinds a test runs: exact (integers) and random; under Miri (about
    /// 10^4 times slower) the exact kind only, which reaches the same `unsafe` code
    /// and checks it without a tolerance; the random kind's rounding bound runs
    /// natively.
    pub(crate) const fn data_kinds() -> &'static [bool] {
        if cfg!(miri) { &[true] } else { &[true, false] }
    }

    /// Whether `a` and `b` hold the same bits, value for value.
    pub(crate) fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }
}

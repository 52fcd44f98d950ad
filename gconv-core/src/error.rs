//! The error type of every fallible gconv-core function: a small `Copy` enum, so it
//! can be returned from allocation-free code and matched on a microcontroller.

use core::fmt;

/// Which caller buffer an [`Error::BufferLength`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// The input feature map.
    Input,
    /// The raw (learnable) weight `(C_out, C_in, nti, K, K)`.
    Weight,
    /// The expanded OIHW filter bank `(C_out*nto, C_in*nti, K, K)`.
    Bank,
    /// The bias `(C_out,)`.
    Bias,
    /// The output feature map.
    Output,
    /// The scratch buffer.
    Scratch,
    /// The per-channel quantization multipliers or scales.
    Scales,
}

/// Which layer dimension an [`Error::ZeroDimension`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Input G-channels `C_in`.
    InChannels,
    /// Output G-channels `C_out`.
    OutChannels,
    /// Input height `H`.
    Height,
    /// Input width `W`.
    Width,
    /// Kernel size `K`.
    Kernel,
    /// Stride.
    Stride,
}

/// Which quantized tensor an int8 error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantTensor {
    /// The layer's input activations.
    Input,
    /// The weights.
    Weight,
    /// The layer's output activations.
    Output,
}

/// Everything that can be wrong with the arguments of a gconv-core call.
///
/// Kernels validate all arguments once at entry and return one of these before
/// touching the output; they never panic on bad arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A dimension that must be at least 1 is zero (a zero batch is allowed and
    /// produces an empty output).
    ZeroDimension(Dim),
    /// `Padding::Same` was asked for with an even kernel. There is no symmetric
    /// padding that keeps the size for even `K`, and the asymmetric `(K/2-1, K/2)`
    /// padding other frameworks use shifts the output grid by half a pixel, which
    /// breaks rotation equivariance.
    SameNeedsOddKernel {
        /// The even kernel size that was given.
        kernel: usize,
    },
    /// The kernel does not fit in the padded input, so the output would be empty.
    KernelLargerThanInput {
        /// Kernel size `K`.
        kernel: usize,
        /// `H + pad_top + pad_bottom`.
        padded_height: usize,
        /// `W + pad_left + pad_right`.
        padded_width: usize,
    },
    /// A buffer's length is not what the shape requires (`expected` is exact for
    /// every buffer except scratch, where it is the minimum).
    BufferLength {
        /// The buffer concerned.
        buffer: Buffer,
        /// Length the shape requires.
        expected: usize,
        /// Length that was given.
        found: usize,
    },
    /// A size computed from the shape does not fit in `usize`.
    SizeOverflow,
    /// Pooling padding larger than half the window: some windows would see only
    /// padding.
    PoolPaddingTooLarge {
        /// The largest padding given.
        padding: usize,
        /// The pooling window.
        window: usize,
    },
    /// The fast path keeps its tap offsets in a fixed array: kernels larger than
    /// `max` run on the direct path ([`crate::conv`]).
    KernelTooLargeForFastPath {
        /// The kernel size given.
        kernel: usize,
        /// The largest kernel the fast path takes.
        max: usize,
    },
    /// The fast path tiles output planes `MR` at a time within one G-channel, so it
    /// takes groups of order `MR` or `2*MR` (C4 and D4).
    GroupOrderNotTileable {
        /// The group's order.
        order: usize,
        /// The tile height `MR`.
        tile: usize,
    },
    /// A range of output tiles that is reversed or reaches past the last tile.
    TileRange {
        /// First tile asked for.
        start: usize,
        /// One past the last tile asked for.
        end: usize,
        /// Number of tiles the layer has.
        tiles: usize,
    },
    /// A micro-kernel that needs CPU features this build does not assume was asked
    /// for through the compile-time entry point; detect the features at run time and
    /// use the kernel's own entry point instead.
    KernelNotCompiled {
        /// The kernel's name.
        kernel: &'static str,
    },
    /// A quantization scale that is not finite and positive.
    InvalidScale(QuantTensor),
    /// An int8 zero point outside `[-128, 127]` (weights: not 0).
    ZeroPointOutOfRange {
        /// The tensor concerned.
        tensor: QuantTensor,
        /// The zero point given.
        zero_point: i32,
    },
    /// An int8 weight of -128: the TFLite specification keeps symmetric weights in
    /// `[-127, 127]`.
    WeightOutOfRange {
        /// Position of the first such weight in the raw weight buffer.
        index: usize,
    },
    /// An effective scale `input_scale * weight_scale / output_scale` (or a pooling
    /// rescale) that is not finite and positive or is `2^30` or more, which TFLite's
    /// fixed-point multiplier cannot represent.
    EffectiveScaleOutOfRange,
    /// A model layer does not take the feature it is given (channels, Z2 or group
    /// map, map or vector, number of features).
    LayerInput,
    /// A model layer breaks the equivariance rule on its input (see
    /// [`crate::equivariance`]) and the model was not built to accept that.
    BreaksEquivariance,
    /// The int8 DSP path ([`crate::quant::dsp`]) runs stride-1 convolutions only (a
    /// stride of 2 or more runs on the plain int8 kernel, [`crate::quant::conv`]).
    DspStride {
        /// The stride given.
        stride: usize,
    },
    /// The int8 DSP path cannot block the layer into the scratch budget given: even
    /// one output plane's filter and a band of `K` input rows of a 2-pixel-wide strip
    /// need `needed` words.
    ScratchBudget {
        /// The smallest scratch, in 32-bit words, the layer can run in.
        needed: usize,
        /// The budget given, in 32-bit words.
        budget: usize,
    },
}

impl fmt::Display for QuantTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuantTensor::Input => "input",
            QuantTensor::Weight => "weight",
            QuantTensor::Output => "output",
        })
    }
}

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Buffer::Input => "input",
            Buffer::Weight => "weight",
            Buffer::Bank => "expanded filter bank",
            Buffer::Bias => "bias",
            Buffer::Output => "output",
            Buffer::Scratch => "scratch",
            Buffer::Scales => "quantization multiplier",
        })
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dim::InChannels => "input channels",
            Dim::OutChannels => "output channels",
            Dim::Height => "height",
            Dim::Width => "width",
            Dim::Kernel => "kernel size",
            Dim::Stride => "stride",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ZeroDimension(dim) => write!(f, "{dim} must be at least 1, got 0"),
            Error::SameNeedsOddKernel { kernel } => write!(
                f,
                "padding `same` needs an odd kernel, got K = {kernel}: no symmetric padding \
                 keeps the size for even K, and the asymmetric ({}, {}) padding other \
                 frameworks use shifts the output by half a pixel and breaks rotation \
                 equivariance; use `valid`, symmetric padding {} on every side (output one \
                 pixel larger, exactly equivariant) or explicit (top, bottom, left, right)",
                (kernel / 2).saturating_sub(1),
                kernel / 2,
                kernel / 2
            ),
            Error::KernelLargerThanInput {
                kernel,
                padded_height,
                padded_width,
            } => write!(
                f,
                "kernel {kernel}x{kernel} is larger than the padded input \
                 {padded_height}x{padded_width}"
            ),
            Error::BufferLength {
                buffer: Buffer::Scratch,
                expected,
                found,
            } => write!(
                f,
                "scratch buffer too small: needs at least {expected} values, got {found}"
            ),
            Error::BufferLength {
                buffer,
                expected,
                found,
            } => write!(
                f,
                "{buffer} buffer has {found} values but the shape needs exactly {expected}"
            ),
            Error::PoolPaddingTooLarge { padding, window } => write!(
                f,
                "pooling padding {padding} is more than half the {window}x{window} window \
                 (at most {}): some windows would see only padding",
                window / 2
            ),
            Error::KernelTooLargeForFastPath { kernel, max } => write!(
                f,
                "the fast path takes kernels up to {max}x{max}, got {kernel}x{kernel}: \
                 use the direct path"
            ),
            Error::GroupOrderNotTileable { order, tile } => write!(
                f,
                "the fast path takes groups of order {tile} or {}, got order {order}: \
                 use the direct path",
                2 * tile
            ),
            Error::TileRange { start, end, tiles } => write!(
                f,
                "output tiles {start}..{end} are not a range inside 0..{tiles}"
            ),
            Error::KernelNotCompiled { kernel } => write!(
                f,
                "the {kernel} micro-kernel is not compiled into this build: detect the \
                 CPU features at run time and call its own entry point"
            ),
            Error::InvalidScale(tensor) => {
                write!(f, "the {tensor} scale must be finite and positive")
            }
            Error::ZeroPointOutOfRange { tensor, zero_point } => write!(
                f,
                "the {tensor} zero point {zero_point} is outside the int8 range [-128, 127] \
                 (weights are symmetric: zero point 0)"
            ),
            Error::WeightOutOfRange { index } => write!(
                f,
                "int8 weight {index} is -128: TFLite's int8 weights are symmetric, in \
                 [-127, 127]"
            ),
            Error::EffectiveScaleOutOfRange => f.write_str(
                "the effective scale input_scale * weight_scale / output_scale must be \
                 finite, positive and below 2^30",
            ),
            Error::LayerInput => f.write_str(
                "the layer does not take the feature it is given (channels, Z2 or group map, \
                 map or vector, or number of features differ)",
            ),
            Error::BreaksEquivariance => f.write_str(
                "the layer breaks the equivariance rule on its input (CONVENTIONS.md, \"When a \
                 layer is exactly equivariant\"); build the model accepting non-equivariant \
                 layers to run it anyway",
            ),
            Error::DspStride { stride } => write!(
                f,
                "the int8 DSP path runs stride-1 convolutions, got stride {stride}: use the \
                 plain int8 kernel (quant::conv)"
            ),
            Error::ScratchBudget { needed, budget } => write!(
                f,
                "the layer needs at least {needed} words of scratch on the int8 DSP path, \
                 the budget is {budget}"
            ),
            Error::SizeOverflow => {
                f.write_str("a buffer size computed from the shape overflows usize")
            }
        }
    }
}

impl core::error::Error for Error {}

/// `Ok` when a buffer has exactly the `expected` length, else [`Error::BufferLength`].
pub(crate) fn check_len(buffer: Buffer, found: usize, expected: usize) -> Result<(), Error> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::BufferLength {
            buffer,
            expected,
            found,
        })
    }
}

/// The first `need` values of a caller's scratch buffer, or the
/// [`Error::BufferLength`] that says it is shorter.
pub(crate) fn scratch_prefix(scratch: &mut [f32], need: usize) -> Result<&mut [f32], Error> {
    let found = scratch.len();
    scratch.get_mut(..need).ok_or(Error::BufferLength {
        buffer: Buffer::Scratch,
        expected: need,
        found,
    })
}

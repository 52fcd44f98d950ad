//! Layer shapes: padding, the validated geometry of a convolution, output sizes and
//! buffer sizes.

use crate::error::{Dim, Error};
use crate::group::Group;

/// Zero padding of the input's spatial borders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding: `H' = (H - K) / stride + 1`.
    Valid,
    /// Symmetric `(K-1)/2` on every side; odd `K` only (even `K` is
    /// [`Error::SameNeedsOddKernel`]). At stride 1 the output has the input's size.
    Same,
    /// Explicit padding per side. Asymmetric padding is allowed but may break
    /// equivariance: see [`crate::equivariance`].
    Explicit {
        /// Rows of zeros above.
        top: usize,
        /// Rows of zeros below.
        bottom: usize,
        /// Columns of zeros on the left.
        left: usize,
        /// Columns of zeros on the right.
        right: usize,
    },
}

impl Padding {
    /// `p` zeros on every side.
    pub const fn symmetric(p: usize) -> Self {
        Padding::Explicit {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// The padding as `[top, bottom, left, right]` for kernel size `k`.
    ///
    /// # Errors
    /// [`Error::ZeroDimension`] for `k = 0`; [`Error::SameNeedsOddKernel`] for `Same`
    /// with even `k`.
    pub const fn resolve(self, k: usize) -> Result<[usize; 4], Error> {
        if k == 0 {
            return Err(Error::ZeroDimension(Dim::Kernel));
        }
        match self {
            Padding::Valid => Ok([0; 4]),
            Padding::Same => {
                if k.is_multiple_of(2) {
                    Err(Error::SameNeedsOddKernel { kernel: k })
                } else {
                    let p = (k - 1) / 2;
                    Ok([p; 4])
                }
            }
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => Ok([top, bottom, left, right]),
        }
    }
}

/// Where the input of a convolution lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Plain images on the pixel grid (Z2): one orientation plane, `nti = 1`. A
    /// convolution from Z2 is a *lifting* convolution.
    Z2,
    /// Functions on the group: `nti = |G|` orientation planes per G-channel. A
    /// convolution from the group is a *group* convolution.
    Group,
}

impl Domain {
    /// Number of input orientation planes per G-channel, `nti`, for group `G`.
    pub const fn planes<G: Group>(self) -> usize {
        match self {
            Domain::Z2 => 1,
            Domain::Group => G::ORDER,
        }
    }
}

/// The arguments of a lifting or group convolution, before validation.
///
/// Channel counts are G-channels; the number of orientation planes per channel comes
/// from the group and the [`Domain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Batch size `N` (0 allowed: empty output).
    pub batch: usize,
    /// Input G-channels `C_in`.
    pub in_channels: usize,
    /// Output G-channels `C_out`.
    pub out_channels: usize,
    /// Input height `H` (rows).
    pub height: usize,
    /// Input width `W` (columns).
    pub width: usize,
    /// Kernel size `K` (square `K x K` filters), odd or even.
    pub kernel: usize,
    /// Stride, the same along both axes (>= 1).
    pub stride: usize,
    /// Zero padding.
    pub padding: Padding,
}

impl ConvShape {
    /// Validates the shape for a convolution from `domain` to group `G` and derives its
    /// geometry (output size, buffer lengths).
    ///
    /// # Errors
    /// [`Error::ZeroDimension`] for a zero channel count, size, kernel or stride;
    /// [`Error::SameNeedsOddKernel`]; [`Error::KernelLargerThanInput`];
    /// [`Error::SizeOverflow`] if a buffer length overflows `usize`.
    pub const fn geometry<G: Group>(&self, domain: Domain) -> Result<ConvGeometry, Error> {
        if self.in_channels == 0 {
            return Err(Error::ZeroDimension(Dim::InChannels));
        }
        if self.out_channels == 0 {
            return Err(Error::ZeroDimension(Dim::OutChannels));
        }
        let window = match window_geometry(
            self.height,
            self.width,
            self.kernel,
            self.stride,
            self.padding,
            usize::MAX,
        ) {
            Ok(w) => w,
            Err(e) => return Err(e),
        };
        let geo = ConvGeometry {
            batch: self.batch,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            nti: domain.planes::<G>(),
            nto: G::ORDER,
            height: self.height,
            width: self.width,
            kernel: self.kernel,
            stride: self.stride,
            pad: window.pad,
            out_height: window.out_height,
            out_width: window.out_width,
        };
        if geo.checked_lengths().is_none() {
            return Err(Error::SizeOverflow);
        }
        Ok(geo)
    }
}

/// The spatial part of a `k x k` window operation (convolution or pooling), validated.
pub(crate) struct Window {
    /// Resolved padding `[top, bottom, left, right]`.
    pub pad: [usize; 4],
    /// `(H + top + bottom - k) / stride + 1`.
    pub out_height: usize,
    /// `(W + left + right - k) / stride + 1`.
    pub out_width: usize,
}

/// Validates a `k x k` window with `stride` and `padding` sliding over a
/// `height x width` map, with every side's padding at most `max_pad`.
///
/// # Errors
/// [`Error::ZeroDimension`] for a zero size, window or stride;
/// [`Error::SameNeedsOddKernel`]; [`Error::PoolPaddingTooLarge`] above `max_pad`;
/// [`Error::SizeOverflow`]; [`Error::KernelLargerThanInput`].
pub(crate) const fn window_geometry(
    height: usize,
    width: usize,
    k: usize,
    stride: usize,
    padding: Padding,
    max_pad: usize,
) -> Result<Window, Error> {
    let zero = if height == 0 {
        Some(Dim::Height)
    } else if width == 0 {
        Some(Dim::Width)
    } else if k == 0 {
        Some(Dim::Kernel)
    } else if stride == 0 {
        Some(Dim::Stride)
    } else {
        None
    };
    if let Some(dim) = zero {
        return Err(Error::ZeroDimension(dim));
    }
    let pad = match padding.resolve(k) {
        Ok(p) => p,
        Err(e) => return Err(e),
    };
    let mut i = 0;
    while i < 4 {
        if pad[i] > max_pad {
            return Err(Error::PoolPaddingTooLarge {
                padding: pad[i],
                window: k,
            });
        }
        i += 1;
    }
    let (Some(ph), Some(pw)) = (
        checked_sum3(height, pad[0], pad[1]),
        checked_sum3(width, pad[2], pad[3]),
    ) else {
        return Err(Error::SizeOverflow);
    };
    if ph < k || pw < k {
        return Err(Error::KernelLargerThanInput {
            kernel: k,
            padded_height: ph,
            padded_width: pw,
        });
    }
    Ok(Window {
        pad,
        out_height: (ph - k) / stride + 1,
        out_width: (pw - k) / stride + 1,
    })
}

const fn checked_sum3(a: usize, b: usize, c: usize) -> Option<usize> {
    match a.checked_add(b) {
        Some(ab) => ab.checked_add(c),
        None => None,
    }
}

/// Product of `factors`, or `None` on overflow.
pub(crate) const fn checked_product(factors: &[usize]) -> Option<usize> {
    let mut acc: usize = 1;
    let mut i = 0;
    while i < factors.len() {
        acc = match acc.checked_mul(factors[i]) {
            Some(v) => v,
            None => return None,
        };
        i += 1;
    }
    Some(acc)
}

/// A validated convolution geometry: every size below is known to fit in `usize`.
///
/// Only [`ConvShape::geometry`] creates it, so the length queries cannot overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    nti: usize,
    nto: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
    pad: [usize; 4],
    out_height: usize,
    out_width: usize,
}

impl ConvGeometry {
    const fn checked_lengths(&self) -> Option<()> {
        let planes_in = [
            self.batch,
            self.in_channels,
            self.nti,
            self.height,
            self.width,
        ];
        let planes_out = [
            self.batch,
            self.out_channels,
            self.nto,
            self.out_height,
            self.out_width,
        ];
        let bank = [
            self.out_channels,
            self.nto,
            self.in_channels,
            self.nti,
            self.kernel,
            self.kernel,
        ];
        match (
            checked_product(&planes_in),
            checked_product(&planes_out),
            checked_product(&bank),
        ) {
            // The MAC count multiplies the output by the terms per output.
            (Some(_), Some(out), Some(_)) => {
                match checked_product(&[out, self.in_channels, self.nti, self.kernel, self.kernel])
                {
                    Some(_) => Some(()),
                    None => None,
                }
            }
            _ => None,
        }
    }

    /// Batch size `N`.
    pub const fn batch(&self) -> usize {
        self.batch
    }
    /// Input G-channels `C_in`.
    pub const fn in_channels(&self) -> usize {
        self.in_channels
    }
    /// Output G-channels `C_out`.
    pub const fn out_channels(&self) -> usize {
        self.out_channels
    }
    /// Input orientation planes per G-channel (1 for Z2, |G| for a group input).
    pub const fn nti(&self) -> usize {
        self.nti
    }
    /// Output orientation planes per G-channel, |G|.
    pub const fn nto(&self) -> usize {
        self.nto
    }
    /// Input height `H`.
    pub const fn height(&self) -> usize {
        self.height
    }
    /// Input width `W`.
    pub const fn width(&self) -> usize {
        self.width
    }
    /// Kernel size `K`.
    pub const fn kernel(&self) -> usize {
        self.kernel
    }
    /// Stride.
    pub const fn stride(&self) -> usize {
        self.stride
    }
    /// Resolved padding `[top, bottom, left, right]`.
    pub const fn padding(&self) -> [usize; 4] {
        self.pad
    }
    /// Output height `H' = (H + top + bottom - K) / stride + 1`.
    pub const fn out_height(&self) -> usize {
        self.out_height
    }
    /// Output width `W' = (W + left + right - K) / stride + 1`.
    pub const fn out_width(&self) -> usize {
        self.out_width
    }
    /// Input shape: `(N, C_in, H, W)` for Z2 input (`nti = 1`, reported as
    /// `[N, C_in, 1, H, W]`), `(N, C_in, nti, H, W)` for group input.
    pub const fn input_shape(&self) -> [usize; 5] {
        [
            self.batch,
            self.in_channels,
            self.nti,
            self.height,
            self.width,
        ]
    }
    /// Output shape `(N, C_out, nto, H', W')`.
    pub const fn output_shape(&self) -> [usize; 5] {
        [
            self.batch,
            self.out_channels,
            self.nto,
            self.out_height,
            self.out_width,
        ]
    }
    /// Raw weight shape `(C_out, C_in, nti, K, K)`.
    pub const fn weight_shape(&self) -> [usize; 5] {
        [
            self.out_channels,
            self.in_channels,
            self.nti,
            self.kernel,
            self.kernel,
        ]
    }
    /// Expanded OIHW bank shape `(C_out*nto, C_in*nti, K, K)`.
    pub const fn bank_shape(&self) -> [usize; 4] {
        [
            self.out_channels * self.nto,
            self.in_channels * self.nti,
            self.kernel,
            self.kernel,
        ]
    }
    /// Length of the input buffer in f32.
    pub const fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.nti * self.height * self.width
    }
    /// Length of the output buffer in f32.
    pub const fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.nto * self.out_height * self.out_width
    }
    /// Length of the raw weight in f32 (the learnable parameters without bias).
    pub const fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.nti * self.kernel * self.kernel
    }
    /// Length of the expanded bank in f32: `nto` times [`weight_len`](Self::weight_len).
    pub const fn bank_len(&self) -> usize {
        self.weight_len() * self.nto
    }
    /// Length of the bias in f32: one per output G-channel.
    pub const fn bias_len(&self) -> usize {
        self.out_channels
    }
    /// Terms summed per output value: `C_in * nti * K * K`.
    pub const fn terms_per_output(&self) -> usize {
        self.in_channels * self.nti * self.kernel * self.kernel
    }
    /// Multiply-accumulates of one forward pass (padding zeros included):
    /// `output_len * C_in * nti * K * K`.
    pub const fn macs(&self) -> usize {
        self.output_len() * self.terms_per_output()
    }
}

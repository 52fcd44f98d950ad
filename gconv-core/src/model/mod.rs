//! A `no_std` sequential G-CNN runner for firmware: a model is a `'static` list of
//! layers whose weights are raw slices (in flash), checked once by a `const fn`
//! (shapes chain, the equivariance rule holds) that also computes the sizes of the
//! three buffers it runs on: two ping-pong activation buffers and one scratch. A
//! build script or `gconv export` writes the layer list as Rust source; the firmware
//! declares the buffers with those sizes and calls `forward`, one image at a time.
//!
//! * [`float`]: f32 models (convolutions on the blocked path, ReLU, pooling, group
//!   pooling, global average pooling, dense; batch norm folded into the convolutions);
//! * [`int8`]: int8 models with the arithmetic of [`crate::quant`] (TFLite's), bit for
//!   bit the host's answer.
//!
//! Layouts are those of the layers (`CONVENTIONS.md`), one image: a Z2 map
//! `(C, H, W)`, a group map `(C, |G|, H, W)`, a vector `(len,)`; dense layers take their
//! input flattened in that order.

pub mod float;
pub mod int8;

use core::fmt;

use crate::equivariance::{layer_is_equivariant, pool_is_equivariant};
use crate::error::Error;
use crate::group::Group;
use crate::pool::PoolShape;
use crate::shape::{ConvShape, Domain, Padding, checked_product};

/// The shape of a feature map of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `(C, H, W)` on Z2 or `(C, |G|, H, W)` on the model's group.
    Map {
        /// Z2 or the group.
        domain: Domain,
        /// G-channels.
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// A flat vector of this length (after global pooling or a dense layer).
    Vector(usize),
}

impl Feature {
    /// The number of values, or `None` on overflow.
    pub const fn values<G: Group>(&self) -> Option<usize> {
        match *self {
            Feature::Map {
                domain,
                channels,
                height,
                width,
            } => checked_product(&[channels, domain.planes::<G>(), height, width]),
            Feature::Vector(n) => Some(n),
        }
    }
}

/// Spatial pooling: max or average (padding counts as real zeros, as in
/// [`crate::pool`] and [`crate::quant::layers::avg_pool`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// `true`: max pooling; `false`: average pooling.
    pub max: bool,
    /// Window `k` (square).
    pub window: usize,
    /// Stride.
    pub stride: usize,
    /// Padding, each side at most `k / 2`.
    pub padding: Padding,
}

/// The hyper-parameters of a convolution layer (the weights are the dtype's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvSpec {
    /// Z2 (lifting) or the group (group convolution).
    pub domain: Domain,
    /// Input G-channels.
    pub in_channels: usize,
    /// Output G-channels.
    pub out_channels: usize,
    /// Kernel size `K`.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub padding: Padding,
}

impl ConvSpec {
    /// The core shape for one image of `height x width`.
    pub const fn shape(&self, height: usize, width: usize) -> ConvShape {
        ConvShape {
            batch: 1,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            height,
            width,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        }
    }
}

/// The buffer sizes a model runs on, in elements of its dtype (f32 or int8; the
/// int8 scratch is int32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sizes {
    /// Length of each of the two activation buffers: the largest input or layer
    /// output.
    pub activations: usize,
    /// Length of the scratch buffer: the largest any layer needs.
    pub scratch: usize,
    /// Length of the model's input.
    pub input: usize,
    /// Length of the model's output.
    pub output: usize,
}

/// An error of a model's layer: which layer (1-based) and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerError {
    /// The layer, counted from 1 (0: the model's input or buffers).
    pub layer: usize,
    /// What is wrong.
    pub error: Error,
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.layer == 0 {
            write!(f, "model: {}", self.error)
        } else {
            write!(f, "layer {}: {}", self.layer, self.error)
        }
    }
}

impl core::error::Error for LayerError {}

/// What a layer does to the shape, whatever its dtype.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Conv(ConvSpec),
    /// Pointwise (ReLU).
    Pointwise,
    Pool(PoolSpec),
    GroupPool,
    GlobalAvgPool,
    Dense {
        in_features: usize,
        out_features: usize,
    },
}

/// Which scratch a convolution needs: the f32 blocked path's or the int8 kernel's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    Int8,
}

/// One layer's output shape and scratch need, with the equivariance rule checked
/// unless `accept_non_equivariant`.
pub(crate) const fn infer<G: Group>(
    kind: Kind,
    input: Feature,
    dtype: Dtype,
    accept_non_equivariant: bool,
) -> Result<(Feature, usize), Error> {
    let (domain, channels, height, width) = match input {
        Feature::Map {
            domain,
            channels,
            height,
            width,
        } => (domain, channels, height, width),
        Feature::Vector(n) => {
            return match kind {
                Kind::Pointwise => Ok((input, 0)),
                Kind::Dense {
                    in_features,
                    out_features,
                } => {
                    if in_features == n && out_features > 0 {
                        Ok((Feature::Vector(out_features), 0))
                    } else {
                        Err(Error::LayerInput)
                    }
                }
                _ => Err(Error::LayerInput),
            };
        }
    };
    match kind {
        Kind::Conv(spec) => {
            if spec.in_channels != channels || !same_domain(spec.domain, domain) {
                return Err(Error::LayerInput);
            }
            let shape = spec.shape(height, width);
            let geo = match shape.geometry::<G>(spec.domain) {
                Ok(g) => g,
                Err(e) => return Err(e),
            };
            if !accept_non_equivariant
                && !layer_is_equivariant(height, width, spec.kernel, spec.stride, spec.padding)
            {
                return Err(Error::BreaksEquivariance);
            }
            let scratch = match dtype {
                Dtype::F32 => {
                    // The blocked path tiles 2 planes of a G-channel.
                    if G::ORDER % crate::blocked::MR != 0 {
                        return Err(Error::GroupOrderNotTileable {
                            order: G::ORDER,
                            tile: crate::blocked::MR,
                        });
                    }
                    crate::blocked::scratch_len_for(&geo)
                }
                Dtype::Int8 => match crate::quant::conv::scratch_len_for(&geo) {
                    Ok(n) => n,
                    Err(e) => return Err(e),
                },
            };
            let out = Feature::Map {
                domain: Domain::Group,
                channels: spec.out_channels,
                height: geo.out_height(),
                width: geo.out_width(),
            };
            Ok((out, scratch))
        }
        Kind::Pointwise => Ok((input, 0)),
        Kind::Pool(spec) => {
            let shape = PoolShape {
                planes: 1,
                height,
                width,
                window: spec.window,
                stride: spec.stride,
                padding: spec.padding,
            };
            let geo = match shape.geometry() {
                Ok(g) => g,
                Err(e) => return Err(e),
            };
            if !accept_non_equivariant
                && !pool_is_equivariant(height, width, spec.window, spec.stride, spec.padding)
            {
                return Err(Error::BreaksEquivariance);
            }
            let out = Feature::Map {
                domain,
                channels,
                height: geo.out_height(),
                width: geo.out_width(),
            };
            Ok((out, 0))
        }
        Kind::GroupPool => match domain {
            Domain::Z2 => Err(Error::LayerInput),
            Domain::Group => Ok((
                Feature::Map {
                    domain: Domain::Z2,
                    channels,
                    height,
                    width,
                },
                0,
            )),
        },
        Kind::GlobalAvgPool => match checked_product(&[channels, domain.planes::<G>()]) {
            Some(n) => Ok((Feature::Vector(n), 0)),
            None => Err(Error::SizeOverflow),
        },
        Kind::Dense {
            in_features,
            out_features,
        } => match input.values::<G>() {
            Some(n) if n == in_features && out_features > 0 => {
                Ok((Feature::Vector(out_features), 0))
            }
            Some(_) => Err(Error::LayerInput),
            None => Err(Error::SizeOverflow),
        },
    }
}

const fn same_domain(a: Domain, b: Domain) -> bool {
    matches!(
        (a, b),
        (Domain::Z2, Domain::Z2) | (Domain::Group, Domain::Group)
    )
}

/// The larger of two sizes (const).
pub(crate) const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// `Err(LayerError)` unless `len >= need`.
pub(crate) fn check_buffer(
    buffer: crate::error::Buffer,
    len: usize,
    need: usize,
) -> Result<(), LayerError> {
    if len >= need {
        Ok(())
    } else {
        Err(LayerError {
            layer: 0,
            error: Error::BufferLength {
                buffer,
                expected: need,
                found: len,
            },
        })
    }
}

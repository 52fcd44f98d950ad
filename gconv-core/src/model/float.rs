//! f32 models: convolutions on the blocked path (raw weights from flash, one block of
//! packed filters in scratch), ReLU, pooling, group pooling, global average pooling,
//! dense. Batch norm is folded into the convolution before it when the model is
//! exported (`gconv export`), on the host, so the device keeps no second copy of the
//! weights.
//!
//! ```
//! use gconv_core::model::float::{Conv, Layer, Model};
//! use gconv_core::model::{ConvSpec, Feature};
//! use gconv_core::{C4, Domain, Padding};
//! use gconv_core::layers::Reduce;
//!
//! static W1: [f32; 2 * 9] = [0.1; 18];                  // (C_out, C_in, 1, 3, 3)
//! static FC: [f32; 3 * 2] = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
//! static LAYERS: [Layer<'static>; 5] = [
//!     Layer::Conv(Conv {
//!         spec: ConvSpec { domain: Domain::Z2, in_channels: 1, out_channels: 2, kernel: 3,
//!                          stride: 1, padding: Padding::Same },
//!         weight: &W1, bias: None, relu: true,
//!     }),
//!     Layer::GroupPool(Reduce::Max),
//!     Layer::GlobalAvgPool,
//!     Layer::Dense { in_features: 2, out_features: 3, weight: &FC, bias: None, relu: false },
//!     Layer::Relu,
//! ];
//! const INPUT: Feature = Feature::Map { domain: Domain::Z2, channels: 1, height: 5, width: 5 };
//! const MODEL: Model<'static, C4> = match Model::new(INPUT, &LAYERS, false) {
//!     Ok(m) => m,
//!     Err(_) => panic!("invalid model"),
//! };
//! const SIZES: gconv_core::model::Sizes = MODEL.sizes();   // known at compile time
//!
//! let (mut a, mut b) = ([0.0f32; SIZES.activations], [0.0f32; SIZES.activations]);
//! let mut scratch = [0.0f32; SIZES.scratch];
//! let logits = MODEL.forward(&[1.0; 25], &mut a, &mut b, &mut scratch)?;
//! assert_eq!(logits.len(), 3);
//! # Ok::<(), gconv_core::model::LayerError>(())
//! ```

use core::marker::PhantomData;

use crate::error::{Buffer, Error};
use crate::group::Group;
use crate::layers::{Reduce, dense, global_avg_pool, group_pool, relu};
use crate::model::{
    ConvSpec, Dtype, Feature, Kind, LayerError, PoolSpec, Sizes, check_buffer, infer, max,
};
use crate::pool::{PoolShape, avg_pool, max_pool};
use crate::shape::Domain;

/// An f32 convolution: raw weights `(C_out, C_in, nti, K, K)` (GrouPy layout), bias
/// `(C_out,)`, optional fused ReLU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv<'a> {
    /// Shape parameters.
    pub spec: ConvSpec,
    /// Raw weights.
    pub weight: &'a [f32],
    /// One bias per output G-channel.
    pub bias: Option<&'a [f32]>,
    /// ReLU after the convolution.
    pub relu: bool,
}

/// One layer of an f32 [`Model`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer<'a> {
    /// Lifting or group convolution.
    Conv(Conv<'a>),
    /// `max(x, 0)`.
    Relu,
    /// Spatial max or average pooling.
    Pool(PoolSpec),
    /// Max or mean over the orientation planes.
    GroupPool(Reduce),
    /// Mean of every plane.
    GlobalAvgPool,
    /// `y = W x + b`, `W` of shape `(out_features, in_features)`.
    Dense {
        /// Input length.
        in_features: usize,
        /// Output length.
        out_features: usize,
        /// `(out_features, in_features)`.
        weight: &'a [f32],
        /// `(out_features,)`.
        bias: Option<&'a [f32]>,
        /// ReLU after the layer.
        relu: bool,
    },
}

impl Layer<'_> {
    const fn kind(&self) -> Kind {
        match *self {
            Layer::Conv(c) => Kind::Conv(c.spec),
            Layer::Relu => Kind::Pointwise,
            Layer::Pool(p) => Kind::Pool(p),
            Layer::GroupPool(_) => Kind::GroupPool,
            Layer::GlobalAvgPool => Kind::GlobalAvgPool,
            Layer::Dense {
                in_features,
                out_features,
                ..
            } => Kind::Dense {
                in_features,
                out_features,
            },
        }
    }

    /// Checks the weight lengths against the layer's own sizes.
    const fn check_weights<G: Group>(&self) -> Result<(), Error> {
        match *self {
            Layer::Conv(c) => {
                let s = c.spec;
                let need = crate::shape::checked_product(&[
                    s.out_channels,
                    s.in_channels,
                    s.domain.planes::<G>(),
                    s.kernel,
                    s.kernel,
                ]);
                match need {
                    Some(n) if n == c.weight.len() => {}
                    Some(n) => return Err(len_error(Buffer::Weight, n, c.weight.len())),
                    None => return Err(Error::SizeOverflow),
                }
                match c.bias {
                    Some(b) if b.len() != s.out_channels => {
                        Err(len_error(Buffer::Bias, s.out_channels, b.len()))
                    }
                    _ => Ok(()),
                }
            }
            Layer::Dense {
                in_features,
                out_features,
                weight,
                bias,
                ..
            } => {
                match crate::shape::checked_product(&[in_features, out_features]) {
                    Some(n) if n == weight.len() => {}
                    Some(n) => return Err(len_error(Buffer::Weight, n, weight.len())),
                    None => return Err(Error::SizeOverflow),
                }
                match bias {
                    Some(b) if b.len() != out_features => {
                        Err(len_error(Buffer::Bias, out_features, b.len()))
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

pub(crate) const fn len_error(buffer: Buffer, expected: usize, found: usize) -> Error {
    Error::BufferLength {
        buffer,
        expected,
        found,
    }
}

/// An f32 sequential G-CNN on group `G`, validated when built.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a, G: Group> {
    input: Feature,
    layers: &'a [Layer<'a>],
    sizes: Sizes,
    _group: PhantomData<G>,
}

impl<'a, G: Group> Model<'a, G> {
    /// Checks the model and computes its buffer sizes: every layer's weights have the
    /// lengths its sizes say, each layer takes the previous one's output, and (unless
    /// `accept_non_equivariant`) every convolution and pooling layer is exactly
    /// equivariant on its input by the rule of `CONVENTIONS.md`. A `const fn`: a model
    /// in a `const` is checked by the compiler.
    ///
    /// # Errors
    /// [`LayerError`] naming the first bad layer (1-based): [`Error::LayerInput`],
    /// [`Error::BreaksEquivariance`], [`Error::BufferLength`] for weights, and the
    /// shape errors of the layers.
    pub const fn new(
        input: Feature,
        layers: &'a [Layer<'a>],
        accept_non_equivariant: bool,
    ) -> Result<Self, LayerError> {
        let input_len = match input.values::<G>() {
            Some(n) => n,
            None => {
                return Err(LayerError {
                    layer: 0,
                    error: Error::SizeOverflow,
                });
            }
        };
        let mut sizes = Sizes {
            activations: input_len,
            scratch: 0,
            input: input_len,
            output: input_len,
        };
        let mut feature = input;
        let mut i = 0;
        while i < layers.len() {
            let layer = &layers[i];
            if let Err(error) = layer.check_weights::<G>() {
                return Err(LayerError {
                    layer: i + 1,
                    error,
                });
            }
            let (next, scratch) =
                match infer::<G>(layer.kind(), feature, Dtype::F32, accept_non_equivariant) {
                    Ok(r) => r,
                    Err(error) => {
                        return Err(LayerError {
                            layer: i + 1,
                            error,
                        });
                    }
                };
            let len = match next.values::<G>() {
                Some(n) => n,
                None => {
                    return Err(LayerError {
                        layer: i + 1,
                        error: Error::SizeOverflow,
                    });
                }
            };
            sizes.activations = max(sizes.activations, len);
            sizes.scratch = max(sizes.scratch, scratch);
            sizes.output = len;
            feature = next;
            i += 1;
        }
        Ok(Model {
            input,
            layers,
            sizes,
            _group: PhantomData,
        })
    }

    /// The buffer sizes (f32 elements).
    pub const fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// The input feature shape.
    pub const fn input(&self) -> Feature {
        self.input
    }

    /// The layers.
    pub const fn layers(&self) -> &'a [Layer<'a>] {
        self.layers
    }

    /// Runs the model on one image `input` (length [`Sizes::input`]) and returns the
    /// output, a prefix of `a` or `b`. `a` and `b` need [`Sizes::activations`] values
    /// each, `scratch` [`Sizes::scratch`]; their contents are ignored on entry.
    ///
    /// # Errors
    /// [`LayerError`] with layer 0 for buffers of the wrong length (nothing is run);
    /// a layer's error otherwise (not expected for a model built by [`Model::new`]).
    pub fn forward<'b>(
        &self,
        input: &[f32],
        a: &'b mut [f32],
        b: &'b mut [f32],
        scratch: &mut [f32],
    ) -> Result<&'b [f32], LayerError> {
        let s = self.sizes;
        if input.len() != s.input {
            return Err(LayerError {
                layer: 0,
                error: len_error(Buffer::Input, s.input, input.len()),
            });
        }
        check_buffer(Buffer::Output, a.len(), s.activations)?;
        check_buffer(Buffer::Output, b.len(), s.activations)?;
        check_buffer(Buffer::Scratch, scratch.len(), s.scratch)?;
        let (mut cur, mut next) = (a, b);
        for (d, &v) in cur.iter_mut().zip(input) {
            *d = v;
        }
        let mut feature = self.input;
        let mut len = s.input;
        for (i, layer) in self.layers.iter().enumerate() {
            let at = |error| LayerError {
                layer: i + 1,
                error,
            };
            let (out, _) = infer::<G>(layer.kind(), feature, Dtype::F32, true).map_err(at)?;
            let out_len = out.values::<G>().ok_or(at(Error::SizeOverflow))?;
            let (Some(x), Some(y)) = (cur.get_mut(..len), next.get_mut(..out_len)) else {
                return Err(at(Error::SizeOverflow));
            };
            let in_place = run::<G>(layer, feature, x, y, scratch).map_err(at)?;
            if !in_place {
                core::mem::swap(&mut cur, &mut next);
            }
            feature = out;
            len = out_len;
        }
        Ok(cur.get(..len).unwrap_or(&[]))
    }
}

/// Runs one layer on `x` (its input, `feature`); returns `true` when it worked in
/// place on `x`, `false` when it wrote `y`.
fn run<G: Group>(
    layer: &Layer<'_>,
    feature: Feature,
    x: &mut [f32],
    y: &mut [f32],
    scratch: &mut [f32],
) -> Result<bool, Error> {
    let (domain, channels, height, width) = match feature {
        Feature::Map {
            domain,
            channels,
            height,
            width,
        } => (domain, channels, height, width),
        Feature::Vector(n) => (Domain::Z2, n, 1, 1),
    };
    let planes = channels * domain.planes::<G>();
    match *layer {
        Layer::Conv(c) => {
            let shape = c.spec.shape(height, width);
            crate::blocked::forward::<G>(c.spec.domain, &shape, x, c.weight, c.bias, y, scratch)?;
            if c.relu {
                relu(y);
            }
            Ok(false)
        }
        Layer::Relu => {
            relu(x);
            Ok(true)
        }
        Layer::Pool(p) => {
            let shape = PoolShape {
                planes,
                height,
                width,
                window: p.window,
                stride: p.stride,
                padding: p.padding,
            };
            if p.max {
                max_pool(&shape, x, y)?;
            } else {
                avg_pool(&shape, x, y)?;
            }
            Ok(false)
        }
        Layer::GroupPool(reduce) => {
            group_pool(reduce, channels, G::ORDER, height * width, x, y)?;
            Ok(false)
        }
        Layer::GlobalAvgPool => {
            global_avg_pool(planes, height * width, x, y)?;
            Ok(false)
        }
        Layer::Dense {
            in_features,
            out_features,
            weight,
            bias,
            relu: with_relu,
        } => {
            dense(1, in_features, out_features, x, weight, bias, y)?;
            if with_relu {
                relu(y);
            }
            Ok(false)
        }
    }
}

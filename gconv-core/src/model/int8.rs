//! int8 models with the arithmetic of [`crate::quant`] (TFLite's int8 specification):
//! every output bit for bit the host's. The quantization chain is part of the model:
//! the input's scale and zero point, and each convolution and dense layer's output
//! zero point and precomputed multipliers (no floating point runs on the device but
//! the input's `QUANTIZE` and LiteRT's double-precision dense requantization).

use core::marker::PhantomData;

use crate::error::{Buffer, Error, QuantTensor};
use crate::group::Group;
use crate::layers::Reduce;
use crate::model::float::len_error;
use crate::model::{
    ConvSpec, Dtype, Feature, Kind, LayerError, PoolSpec, Sizes, check_buffer, infer, max,
};
use crate::pool::PoolShape;
use crate::quant::layers::{
    DenseQuant, DenseScale, avg_pool, dense, global_avg_pool, group_pool, max_pool, relu,
};
use crate::quant::{Multiplier, QuantParams, Requant, check_zero_point};
use crate::shape::Domain;

/// An int8 convolution: raw int8 weights `(C_out, C_in, nti, K, K)`, int32 bias
/// `(C_out,)`, one multiplier per output G-channel
/// ([`Multiplier::for_product`] of the input, weight and output scales), the output
/// zero point and an optional fused ReLU. The input zero point is the previous
/// layer's output zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QConv<'a> {
    /// Shape parameters.
    pub spec: ConvSpec,
    /// Raw int8 weights.
    pub weight: &'a [i8],
    /// int32 bias per output G-channel.
    pub bias: Option<&'a [i32]>,
    /// One per output G-channel.
    pub multipliers: &'a [Multiplier],
    /// The output zero point.
    pub output_zero_point: i32,
    /// Fused ReLU.
    pub relu: bool,
}

/// An int8 dense layer (per-tensor weights).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QDense<'a> {
    /// Input length.
    pub in_features: usize,
    /// Output length.
    pub out_features: usize,
    /// `(out_features, in_features)` int8.
    pub weight: &'a [i8],
    /// `(out_features,)` int32.
    pub bias: Option<&'a [i32]>,
    /// The requantization.
    pub scale: DenseScale,
    /// The output zero point.
    pub output_zero_point: i32,
    /// Fused ReLU.
    pub relu: bool,
}

/// One layer of an int8 [`QModel`]. Layers other than convolutions and dense keep
/// their input's scale and zero point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QLayer<'a> {
    /// Lifting or group convolution.
    Conv(QConv<'a>),
    /// `max(x, zero_point)`.
    Relu,
    /// Spatial max or average pooling.
    Pool(PoolSpec),
    /// Max or rounded mean over the orientation planes.
    GroupPool(Reduce),
    /// Rounded mean of every plane.
    GlobalAvgPool,
    /// Fully connected.
    Dense(QDense<'a>),
}

impl QLayer<'_> {
    const fn kind(&self) -> Kind {
        match *self {
            QLayer::Conv(c) => Kind::Conv(c.spec),
            QLayer::Relu => Kind::Pointwise,
            QLayer::Pool(p) => Kind::Pool(p),
            QLayer::GroupPool(_) => Kind::GroupPool,
            QLayer::GlobalAvgPool => Kind::GlobalAvgPool,
            QLayer::Dense(d) => Kind::Dense {
                in_features: d.in_features,
                out_features: d.out_features,
            },
        }
    }

    /// Checks weight, bias and multiplier lengths and the output zero point; returns
    /// the layer's output zero point (`zero_point` when it keeps its input's).
    const fn check<G: Group>(&self, zero_point: i32) -> Result<i32, Error> {
        match *self {
            QLayer::Conv(c) => {
                let s = c.spec;
                match crate::shape::checked_product(&[
                    s.out_channels,
                    s.in_channels,
                    s.domain.planes::<G>(),
                    s.kernel,
                    s.kernel,
                ]) {
                    Some(n) if n == c.weight.len() => {}
                    Some(n) => return Err(len_error(Buffer::Weight, n, c.weight.len())),
                    None => return Err(Error::SizeOverflow),
                }
                if let Some(b) = c.bias
                    && b.len() != s.out_channels
                {
                    return Err(len_error(Buffer::Bias, s.out_channels, b.len()));
                }
                if c.multipliers.len() != s.out_channels {
                    return Err(len_error(
                        Buffer::Scales,
                        s.out_channels,
                        c.multipliers.len(),
                    ));
                }
                match check_zero_point_const(c.output_zero_point) {
                    Ok(()) => Ok(c.output_zero_point),
                    Err(e) => Err(e),
                }
            }
            QLayer::Dense(d) => {
                match crate::shape::checked_product(&[d.in_features, d.out_features]) {
                    Some(n) if n == d.weight.len() => {}
                    Some(n) => return Err(len_error(Buffer::Weight, n, d.weight.len())),
                    None => return Err(Error::SizeOverflow),
                }
                if let Some(b) = d.bias
                    && b.len() != d.out_features
                {
                    return Err(len_error(Buffer::Bias, d.out_features, b.len()));
                }
                if let DenseScale::Real(r) = d.scale
                    && !(r.is_finite() && r > 0.0)
                {
                    return Err(Error::EffectiveScaleOutOfRange);
                }
                match check_zero_point_const(d.output_zero_point) {
                    Ok(()) => Ok(d.output_zero_point),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(zero_point),
        }
    }
}

const fn check_zero_point_const(zero_point: i32) -> Result<(), Error> {
    if zero_point >= -128 && zero_point <= 127 {
        Ok(())
    } else {
        Err(Error::ZeroPointOutOfRange {
            tensor: QuantTensor::Output,
            zero_point,
        })
    }
}

/// An int8 sequential G-CNN on group `G`, validated when built.
#[derive(Clone, Copy, Debug)]
pub struct QModel<'a, G: Group> {
    input: Feature,
    input_params: QuantParams,
    layers: &'a [QLayer<'a>],
    sizes: Sizes,
    _group: PhantomData<G>,
}

impl<'a, G: Group> QModel<'a, G> {
    /// Checks the model and computes its buffer sizes, as
    /// [`Model::new`](crate::model::float::Model::new), plus the quantization: the
    /// input's scale is finite and positive, every zero point an int8, one multiplier
    /// per output G-channel.
    ///
    /// # Errors
    /// [`LayerError`] naming the first bad layer (0: the input's quantization).
    pub const fn new(
        input: Feature,
        input_params: QuantParams,
        layers: &'a [QLayer<'a>],
        accept_non_equivariant: bool,
    ) -> Result<Self, LayerError> {
        if !(input_params.scale.is_finite() && input_params.scale > 0.0) {
            return Err(LayerError {
                layer: 0,
                error: Error::InvalidScale(QuantTensor::Input),
            });
        }
        if let Err(error) = check_zero_point_const(input_params.zero_point) {
            return Err(LayerError { layer: 0, error });
        }
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
        let mut zero_point = input_params.zero_point;
        let mut i = 0;
        while i < layers.len() {
            let layer = &layers[i];
            zero_point = match layer.check::<G>(zero_point) {
                Ok(z) => z,
                Err(error) => {
                    return Err(LayerError {
                        layer: i + 1,
                        error,
                    });
                }
            };
            let (next, scratch) =
                match infer::<G>(layer.kind(), feature, Dtype::Int8, accept_non_equivariant) {
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
        Ok(QModel {
            input,
            input_params,
            layers,
            sizes,
            _group: PhantomData,
        })
    }

    /// The buffer sizes: activations in int8, scratch in int32.
    pub const fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// The input feature shape.
    pub const fn input(&self) -> Feature {
        self.input
    }

    /// The input quantization.
    pub const fn input_params(&self) -> QuantParams {
        self.input_params
    }

    /// The layers.
    pub const fn layers(&self) -> &'a [QLayer<'a>] {
        self.layers
    }

    /// Quantizes a float image with the model's input parameters (TFLite `QUANTIZE`)
    /// and runs it: see [`QModel::forward`].
    ///
    /// # Errors
    /// As [`QModel::forward`].
    pub fn forward_f32<'b>(
        &self,
        input: &[f32],
        a: &'b mut [i8],
        b: &'b mut [i8],
        scratch: &mut [i32],
    ) -> Result<&'b [i8], LayerError> {
        let s = self.sizes;
        if input.len() != s.input {
            return Err(LayerError {
                layer: 0,
                error: len_error(Buffer::Input, s.input, input.len()),
            });
        }
        check_buffer(Buffer::Output, a.len(), s.activations)?;
        for (q, &x) in a.iter_mut().zip(input) {
            *q = self.input_params.quantize(x);
        }
        self.run(a, b, scratch)
    }

    /// Runs the model on one int8 image (length [`Sizes::input`], quantized with
    /// [`QModel::input_params`]) and returns the int8 output, a prefix of `a` or `b`.
    /// `a` and `b` need [`Sizes::activations`] values each, `scratch`
    /// [`Sizes::scratch`] int32.
    ///
    /// # Errors
    /// [`LayerError`] with layer 0 for buffers of the wrong length (nothing is run).
    pub fn forward<'b>(
        &self,
        input: &[i8],
        a: &'b mut [i8],
        b: &'b mut [i8],
        scratch: &mut [i32],
    ) -> Result<&'b [i8], LayerError> {
        let s = self.sizes;
        if input.len() != s.input {
            return Err(LayerError {
                layer: 0,
                error: len_error(Buffer::Input, s.input, input.len()),
            });
        }
        check_buffer(Buffer::Output, a.len(), s.activations)?;
        for (d, &v) in a.iter_mut().zip(input) {
            *d = v;
        }
        self.run(a, b, scratch)
    }

    /// The layers, on the input already in `a`.
    fn run<'b>(
        &self,
        a: &'b mut [i8],
        b: &'b mut [i8],
        scratch: &mut [i32],
    ) -> Result<&'b [i8], LayerError> {
        let s = self.sizes;
        check_buffer(Buffer::Output, a.len(), s.activations)?;
        check_buffer(Buffer::Output, b.len(), s.activations)?;
        check_buffer(Buffer::Scratch, scratch.len(), s.scratch)?;
        let (mut cur, mut next) = (a, b);
        let mut feature = self.input;
        let mut len = s.input;
        let mut zero_point = self.input_params.zero_point;
        for (i, layer) in self.layers.iter().enumerate() {
            let at = |error| LayerError {
                layer: i + 1,
                error,
            };
            let (out, _) = infer::<G>(layer.kind(), feature, Dtype::Int8, true).map_err(at)?;
            let out_len = out.values::<G>().ok_or(at(Error::SizeOverflow))?;
            let (Some(x), Some(y)) = (cur.get_mut(..len), next.get_mut(..out_len)) else {
                return Err(at(Error::SizeOverflow));
            };
            let in_place = run_layer::<G>(layer, feature, zero_point, x, y, scratch).map_err(at)?;
            if !in_place {
                core::mem::swap(&mut cur, &mut next);
            }
            zero_point = layer.check::<G>(zero_point).map_err(at)?;
            feature = out;
            len = out_len;
        }
        Ok(cur.get(..len).unwrap_or(&[]))
    }
}

/// Runs one layer on `x` (its input, `feature`, zero point `zero_point`); returns
/// `true` when it worked in place on `x`, `false` when it wrote `y`.
fn run_layer<G: Group>(
    layer: &QLayer<'_>,
    feature: Feature,
    zero_point: i32,
    x: &mut [i8],
    y: &mut [i8],
    scratch: &mut [i32],
) -> Result<bool, Error> {
    check_zero_point(QuantTensor::Input, zero_point)?;
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
        QLayer::Conv(c) => {
            let geo = c.spec.shape(height, width).geometry::<G>(c.spec.domain)?;
            let requant = Requant {
                input_zero_point: zero_point,
                output_zero_point: c.output_zero_point,
                multipliers: c.multipliers,
                relu: c.relu,
            };
            crate::quant::conv::forward_geometry(&geo, &requant, x, c.weight, c.bias, y, scratch)?;
            Ok(false)
        }
        QLayer::Relu => {
            relu(x, zero_point)?;
            Ok(true)
        }
        QLayer::Pool(p) => {
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
                avg_pool(&shape, zero_point, x, y)?;
            }
            Ok(false)
        }
        QLayer::GroupPool(reduce) => {
            group_pool(reduce, channels, G::ORDER, height * width, x, y)?;
            Ok(false)
        }
        QLayer::GlobalAvgPool => {
            global_avg_pool(planes, height * width, x, y)?;
            Ok(false)
        }
        QLayer::Dense(d) => {
            let quant = DenseQuant {
                input_zero_point: zero_point,
                output_zero_point: d.output_zero_point,
                scale: d.scale,
                relu: d.relu,
            };
            dense(
                1,
                d.in_features,
                d.out_features,
                &quant,
                x,
                d.weight,
                d.bias,
                y,
            )?;
            Ok(false)
        }
    }
}

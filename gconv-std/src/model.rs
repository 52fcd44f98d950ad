//! Whole G-CNNs: a sequential [`Model`] of convolutions, batch normalisation, ReLU,
//! spatial and group pooling, global average pooling and dense layers, with shape
//! inference and the equivariance rule applied when the model is built, and loading
//! from the model files described in `docs/model-format.md` (JSON layer list +
//! safetensors weights with PyTorch `state_dict` names).

use std::path::Path;

use gconv_core::layers::{Reduce, channel_affine, dense, global_avg_pool, group_pool, relu};

use crate::any::{AnyConv, Space};
use crate::error::Error;
use crate::pool::Pool2d;
use crate::tensor::Tensor;

/// Batch normalisation in inference form with statistics per G-channel:
/// `y = gamma * (x - mean) / sqrt(var + eps) + beta`, the same for all `|G|` planes of
/// a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// `gamma / sqrt(var + eps)` per channel.
    scale: Vec<f32>,
    /// `beta - mean * scale` per channel.
    shift: Vec<f32>,
}

impl BatchNorm {
    /// From PyTorch's parameters (`weight` = gamma, `bias` = beta, running statistics).
    ///
    /// # Errors
    /// [`Error::Shape`] when the four vectors differ in length; [`Error::Usage`] for a
    /// negative variance or `eps <= 0`.
    pub fn new(
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        eps: f64,
    ) -> Result<Self, Error> {
        let c = gamma.len();
        for (name, v) in [("beta", beta), ("running_mean", mean), ("running_var", var)] {
            if v.len() != c {
                return Err(Error::Shape {
                    tensor: name,
                    expected: format!("({c},)"),
                    found: vec![v.len()],
                });
            }
        }
        if eps <= 0.0 || var.iter().any(|&v| v < 0.0 || v.is_nan()) {
            return Err(Error::Usage(
                "batch norm needs eps > 0 and running_var >= 0".into(),
            ));
        }
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(&g, &v)| (f64::from(g) / (f64::from(v) + eps).sqrt()) as f32)
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((&b, &m), &s)| b - m * s)
            .collect();
        Ok(BatchNorm { scale, shift })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.scale.len()
    }
}

/// A fully connected layer (PyTorch `Linear`): weight `(out_features, in_features)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// `(out_features, in_features)`.
    weight: Tensor,
    /// `(out_features,)`.
    bias: Option<Vec<f32>>,
}

impl Dense {
    /// The weight `(out_features, in_features)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `(out_features,)`.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// From a weight `(out_features, in_features)` and an optional bias.
    ///
    /// # Errors
    /// [`Error::Shape`] for a weight that is not rank 2 with nonzero sizes or a bias
    /// of the wrong length.
    pub fn new(weight: Tensor, bias: Option<Vec<f32>>) -> Result<Self, Error> {
        match *weight.shape() {
            [o, i] if o > 0 && i > 0 => {
                if let Some(b) = &bias
                    && b.len() != o
                {
                    return Err(Error::Shape {
                        tensor: "dense bias",
                        expected: format!("({o},)"),
                        found: vec![b.len()],
                    });
                }
                Ok(Dense { weight, bias })
            }
            _ => Err(Error::Shape {
                tensor: "dense weight",
                expected: "(out_features, in_features)".into(),
                found: weight.shape().to_vec(),
            }),
        }
    }
}

/// One layer of a [`Model`]. (Not `PartialEq`: function pointers of
/// [`Layer::Pointwise`] have no meaningful equality.)
#[derive(Clone, Debug)]
pub enum Layer {
    /// A lifting or group convolution.
    Conv(AnyConv),
    /// Batch normalisation per G-channel.
    BatchNorm(BatchNorm),
    /// `max(x, 0)`.
    Relu,
    /// Any other pointwise activation, e.g. `Layer::Pointwise(f32::tanh)`: applied to
    /// every value, it commutes with the group action and keeps the layer equivariant.
    Pointwise(fn(f32) -> f32),
    /// Spatial max or average pooling.
    Pool(Pool2d),
    /// Max or mean over the orientation axis: group map -> invariant Z2 map.
    GroupPool(Reduce),
    /// Mean of every plane: `(N, C, H, W) -> (N, C)`, `(N, C, G, H, W) -> (N, C, G)`.
    GlobalAvgPool,
    /// Fully connected, on the input flattened after the batch axis.
    Dense(Dense),
}

/// The shape of a feature map without the batch axis, and the space it lives on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `(C, H, W)` on Z2 or `(C, |G|, H, W)` on a group.
    Map {
        /// Z2, C4 or D4.
        space: Space,
        /// G-channels.
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// Anything after global pooling or a dense layer: dims after the batch axis.
    Vector(Vec<usize>),
}

impl Feature {
    /// The tensor shape for a batch of `n`.
    pub fn shape(&self, n: usize) -> Vec<usize> {
        match self {
            Feature::Map {
                space: Space::Z2,
                channels,
                height,
                width,
            } => vec![n, *channels, *height, *width],
            Feature::Map {
                space,
                channels,
                height,
                width,
            } => vec![n, *channels, space.planes(), *height, *width],
            Feature::Vector(dims) => std::iter::once(n).chain(dims.iter().copied()).collect(),
        }
    }
}

/// A sequential G-CNN whose shapes were checked when it was built.
#[derive(Clone, Debug)]
pub struct Model {
    input: Feature,
    layers: Vec<Layer>,
    /// The feature shape after each layer.
    shapes: Vec<Feature>,
    /// Built accepting layers that break equivariance.
    accept_non_equivariant: bool,
}

impl Model {
    /// Builds a model for inputs of shape `input` (batch free): infers every layer's
    /// output shape and checks the equivariance rule of every conv and pooling layer
    /// at its input size.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the layer (1-based) when shapes do not chain or, unless
    /// `accept_non_equivariant`, when a layer breaks equivariance; the errors of the
    /// layer's own shape checks otherwise.
    pub fn new(
        input: Feature,
        layers: Vec<Layer>,
        accept_non_equivariant: bool,
    ) -> Result<Self, Error> {
        let mut shapes = Vec::with_capacity(layers.len());
        let mut current = input.clone();
        for (i, layer) in layers.iter().enumerate() {
            let at = |e: String| Error::Usage(format!("layer {}: {e}", i + 1));
            let (next, equivariant) = infer(layer, &current).map_err(|e| at(e.to_string()))?;
            if !equivariant && !accept_non_equivariant {
                return Err(at(format!(
                    "breaks equivariance on its {} input (see CONVENTIONS.md, \"When a layer is exactly \
                     equivariant\"); set \"accept_non_equivariant\": true to load it anyway",
                    describe(&current)
                )));
            }
            shapes.push(next.clone());
            current = next;
        }
        Ok(Model {
            input,
            layers,
            shapes,
            accept_non_equivariant,
        })
    }

    /// The input feature shape (batch free).
    pub fn input(&self) -> &Feature {
        &self.input
    }

    /// The output feature shape (batch free).
    pub fn output(&self) -> &Feature {
        self.shapes.last().unwrap_or(&self.input)
    }

    /// Whether the model was built accepting layers that break equivariance.
    pub fn accepts_non_equivariant(&self) -> bool {
        self.accept_non_equivariant
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Runs the model on a batch `(N, ...)` of the input shape.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` is not `input().shape(N)` for some `N`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        let mut trace = self.forward_trace(x)?;
        Ok(trace.pop().unwrap_or_else(|| x.clone()))
    }

    /// Runs the model like [`Model::forward`] and returns the output of every layer,
    /// in order (what post-training quantization calibrates on).
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn forward_trace(&self, x: &Tensor) -> Result<Vec<Tensor>, Error> {
        let n = x.shape().first().copied().unwrap_or(0);
        let expected = self.input.shape(n);
        if x.shape() != expected.as_slice() {
            return Err(Error::Shape {
                tensor: "model input",
                expected: format!("{:?} with any N", self.input.shape(0)).replace("[0", "[N"),
                found: x.shape().to_vec(),
            });
        }
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        let mut shape = &self.input;
        for (layer, next) in self.layers.iter().zip(&self.shapes) {
            let y = outputs.last().unwrap_or(x).clone();
            outputs.push(apply(layer, shape, next, y)?);
            shape = next;
        }
        Ok(outputs)
    }

    /// The same model with every batch norm that directly follows a convolution folded
    /// into that convolution: `w'[o] = scale[o] * w[o]`, `b'[o] = scale[o] * b[o] +
    /// shift[o]`. Per-G-channel scales keep the folded layer equivariant.
    ///
    /// # Errors
    /// Only if a folded layer cannot be rebuilt (not expected for a built model).
    pub fn fold_batch_norm(&self) -> Result<Model, Error> {
        let mut layers: Vec<Layer> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            if let (Layer::BatchNorm(bn), Some(Layer::Conv(conv))) = (layer, layers.last()) {
                let folded = fold(conv, bn)?;
                *layers.last_mut().expect("just matched") = Layer::Conv(folded);
                continue;
            }
            layers.push(layer.clone());
        }
        Model::new(self.input.clone(), layers, self.accept_non_equivariant)
    }

    /// Loads a model from its JSON description and safetensors weights
    /// (`docs/model-format.md`). Either the whole model loads or an error comes back.
    ///
    /// # Errors
    /// [`Error::File`] for unreadable, corrupt or truncated files, unknown fields or
    /// layer kinds, missing or unused tensors, wrong shapes or dtypes; the errors of
    /// [`Model::new`] for shapes that do not chain or broken equivariance.
    pub fn load(json: impl AsRef<Path>, weights: impl AsRef<Path>) -> Result<Model, Error> {
        crate::model_file::load(json.as_ref(), weights.as_ref())
    }

    /// [`Model::load`] of files already in memory: the description's bytes (UTF-8
    /// JSON) and the safetensors bytes. Errors name them `<model json>` and
    /// `<model weights>`.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn from_bytes(json: &[u8], weights: &[u8]) -> Result<Model, Error> {
        crate::model_file::load_bytes(json, weights)
    }
}

fn describe(f: &Feature) -> String {
    match f {
        Feature::Map {
            space,
            channels,
            height,
            width,
        } => {
            format!("{space} map with {channels} channels of {height}x{width}")
        }
        Feature::Vector(d) => format!("vector {d:?}"),
    }
}

/// Output shape of `layer` on `input`, and whether the rule calls it equivariant.
fn infer(layer: &Layer, input: &Feature) -> Result<(Feature, bool), Error> {
    let map = |what: &str| -> Result<(Space, usize, usize, usize), Error> {
        match *input {
            Feature::Map {
                space,
                channels,
                height,
                width,
            } => Ok((space, channels, height, width)),
            Feature::Vector(ref d) => Err(Error::Usage(format!(
                "{what} needs a feature map, got a vector {d:?}"
            ))),
        }
    };
    match layer {
        Layer::Conv(conv) => {
            let (space, channels, h, w) = map("a convolution")?;
            if space != conv.pair().from() || channels != conv.in_channels() {
                return Err(Error::Usage(format!(
                    "a {} conv with {} input channels cannot take a {}",
                    conv.pair().name(),
                    conv.in_channels(),
                    describe(input)
                )));
            }
            let geo = conv.geometry(&input.shape(1))?;
            let out = Feature::Map {
                space: conv.pair().to(),
                channels: conv.out_channels(),
                height: geo.out_height(),
                width: geo.out_width(),
            };
            Ok((out, conv.is_equivariant_on(h, w)))
        }
        Layer::BatchNorm(bn) => {
            let (_, channels, _, _) = map("batch norm")?;
            if bn.channels() != channels {
                return Err(Error::Usage(format!(
                    "batch norm has {} channels, the input {channels}",
                    bn.channels()
                )));
            }
            Ok((input.clone(), true))
        }
        Layer::Relu | Layer::Pointwise(_) => Ok((input.clone(), true)),
        Layer::Pool(pool) => {
            let (space, channels, h, w) = map("pooling")?;
            let shape = pool.output_shape(&input.shape(1))?;
            let rank = shape.len();
            let out = Feature::Map {
                space,
                channels,
                height: shape[rank - 2],
                width: shape[rank - 1],
            };
            Ok((out, pool.is_equivariant_on(h, w)))
        }
        Layer::GroupPool(_) => {
            let (space, channels, height, width) = map("group pooling")?;
            if space == Space::Z2 {
                return Err(Error::Usage(
                    "group pooling needs a C4 or D4 map, got a Z2 map".into(),
                ));
            }
            Ok((
                Feature::Map {
                    space: Space::Z2,
                    channels,
                    height,
                    width,
                },
                true,
            ))
        }
        Layer::GlobalAvgPool => {
            let (space, channels, _, _) = map("global average pooling")?;
            let dims = if space == Space::Z2 {
                vec![channels]
            } else {
                vec![channels, space.planes()]
            };
            Ok((Feature::Vector(dims), true))
        }
        Layer::Dense(d) => {
            let features: usize = input.shape(1).iter().product();
            let [out_features, in_features] = [d.weight.shape()[0], d.weight.shape()[1]];
            if features != in_features {
                return Err(Error::Usage(format!(
                    "dense layer takes {in_features} features, its input {} has {features}",
                    describe(input)
                )));
            }
            Ok((Feature::Vector(vec![out_features]), true))
        }
    }
}

fn core(layer: &str) -> impl Fn(gconv_core::Error) -> Error + '_ {
    move |source| Error::Core {
        layer: layer.to_string(),
        source,
    }
}

/// Runs one layer whose input and output shapes were inferred at build time.
fn apply(layer: &Layer, input: &Feature, output: &Feature, x: Tensor) -> Result<Tensor, Error> {
    let n = x.shape()[0];
    let out_shape = output.shape(n);
    match layer {
        Layer::Conv(conv) => conv.forward(&x),
        Layer::Pool(pool) => pool.forward(&x),
        Layer::Relu => {
            let mut y = x;
            relu(y.data_mut());
            Ok(y)
        }
        Layer::Pointwise(f) => Ok(x.map(f)),
        Layer::BatchNorm(bn) => {
            let mut y = x;
            let per_channel = input.shape(1)[2..].iter().product();
            channel_affine(
                bn.channels(),
                per_channel,
                &bn.scale,
                &bn.shift,
                y.data_mut(),
            )
            .map_err(core("batch norm"))?;
            Ok(y)
        }
        Layer::GroupPool(reduce) => {
            let s = x.shape();
            let mut y = Tensor::zeros(out_shape);
            group_pool(
                *reduce,
                s[0] * s[1],
                s[2],
                s[3] * s[4],
                x.data(),
                y.data_mut(),
            )
            .map_err(core("group pooling"))?;
            Ok(y)
        }
        Layer::GlobalAvgPool => {
            let s = x.shape();
            let plane_len = s[s.len() - 2] * s[s.len() - 1];
            let mut y = Tensor::zeros(out_shape);
            global_avg_pool(y.len(), plane_len, x.data(), y.data_mut())
                .map_err(core("global average pooling"))?;
            Ok(y)
        }
        Layer::Dense(d) => {
            let (o, i) = (d.weight.shape()[0], d.weight.shape()[1]);
            let mut y = Tensor::zeros(out_shape);
            dense(
                n,
                i,
                o,
                x.data(),
                d.weight.data(),
                d.bias.as_deref(),
                y.data_mut(),
            )
            .map_err(core("dense"))?;
            Ok(y)
        }
    }
}

/// Folds `bn` into `conv`: per output G-channel scale of the weights and the bias.
fn fold(conv: &AnyConv, bn: &BatchNorm) -> Result<AnyConv, Error> {
    let w = conv.weight();
    let per_out = w.len() / conv.out_channels();
    let weight = Tensor::from_fn(w.shape().to_vec(), |i| w.data()[i] * bn.scale[i / per_out]);
    let bias = (0..conv.out_channels())
        .map(|o| conv.bias().map_or(0.0, |b| b[o]) * bn.scale[o] + bn.shift[o])
        .collect();
    AnyConv::from_weights(
        conv.pair(),
        weight,
        Some(bias),
        conv.stride(),
        conv.padding(),
    )
}

//! int8 G-CNNs: quantized tensors, layers and models with the arithmetic of the
//! TFLite int8 specification (`docs/int8.md`), bit-exact with TFLite's reference
//! kernels and exactly equivariant. The kernels are gconv-core's
//! [`gconv_core::quant`]; this module owns the weights and parameters, chains the
//! quantization of one layer's output into the next layer's input, and loads, saves
//! ([`file`](mod@file)) and produces ([`ptq`], post-training quantization) int8 models.

pub mod file;
pub mod ptq;

use gconv_core::layers::Reduce;
use gconv_core::quant::fast::QFastPlan;
use gconv_core::quant::layers::{DenseQuant, DenseScale};
use gconv_core::quant::{self as core_quant, Multiplier, QuantParams, Requant};
use gconv_core::{C4, ConvShape, D4, Domain, Padding, QuantTensor};

use crate::any::{Pair, Space};
use crate::error::Error;
use crate::model::Feature;
use crate::pool::{Pool2d, PoolKind};
use crate::tensor::Tensor;

fn core(layer: &str) -> impl Fn(gconv_core::Error) -> Error + '_ {
    move |source| Error::Core {
        layer: layer.to_string(),
        source,
    }
}

/// An int8 tensor with its quantization: `real = scale * (q - zero_point)`.
#[derive(Clone, Debug, PartialEq)]
pub struct QTensor {
    shape: Vec<usize>,
    data: Vec<i8>,
    params: QuantParams,
}

impl QTensor {
    /// From a shape, values (C order) and parameters.
    ///
    /// # Errors
    /// [`Error::DataLength`]; [`Error::Core`] for a scale that is not finite and
    /// positive or a zero point outside `[-128, 127]`.
    pub fn new(shape: Vec<usize>, data: Vec<i8>, params: QuantParams) -> Result<Self, Error> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::DataLength {
                shape,
                expected,
                found: data.len(),
            });
        }
        params
            .validate(QuantTensor::Input)
            .map_err(core("int8 tensor"))?;
        Ok(QTensor {
            shape,
            data,
            params,
        })
    }

    /// Quantizes a float tensor (TFLite `QUANTIZE`, [`QuantParams::quantize`]).
    ///
    /// # Errors
    /// As [`QTensor::new`].
    pub fn quantize(x: &Tensor, params: QuantParams) -> Result<Self, Error> {
        let data = x.data().iter().map(|&v| params.quantize(v)).collect();
        QTensor::new(x.shape().to_vec(), data, params)
    }

    /// The real values `scale * (q - zero_point)`.
    pub fn dequantize(&self) -> Tensor {
        let data = self
            .data
            .iter()
            .map(|&q| self.params.dequantize(q))
            .collect();
        Tensor::new(self.shape.clone(), data).expect("same length")
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The int8 values, C order.
    pub fn data(&self) -> &[i8] {
        &self.data
    }

    /// The quantization parameters.
    pub fn params(&self) -> QuantParams {
        self.params
    }

    /// The same values viewed as f32 (exact: every int8 is an f32), e.g. to apply
    /// [`crate::transform()`] and convert back with [`QTensor::from_exact_f32`].
    pub fn to_f32_values(&self) -> Tensor {
        Tensor::new(
            self.shape.clone(),
            self.data.iter().map(|&q| f32::from(q)).collect(),
        )
        .expect("same length")
    }

    /// The inverse of [`QTensor::to_f32_values`].
    ///
    /// # Errors
    /// [`Error::Usage`] when a value is not an integer in `[-128, 127]`.
    pub fn from_exact_f32(values: &Tensor, params: QuantParams) -> Result<Self, Error> {
        let data = values
            .data()
            .iter()
            .map(|&v| {
                if v.fract() == 0.0 && (-128.0..=127.0).contains(&v) {
                    Ok(v as i8)
                } else {
                    Err(Error::Usage(format!("{v} is not an int8 value")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        QTensor::new(values.shape().to_vec(), data, params)
    }
}

/// An int8 lifting or group convolution (any of the four pairs) with its input and
/// output quantization: raw int8 weights `(C_out, C_in, nti, K, K)`, one f32 weight
/// scale per output G-channel, an optional int32 bias `(C_out,)` at scale
/// `input_scale * weight_scale[o]`, and an optional fused ReLU.
#[derive(Clone, Debug, PartialEq)]
pub struct QConv {
    pair: Pair,
    shape: [usize; 5],
    weight: Vec<i8>,
    weight_scale: Vec<f32>,
    bias: Option<Vec<i32>>,
    stride: usize,
    padding: Padding,
    relu: bool,
    input: QuantParams,
    output: QuantParams,
    multipliers: Vec<Multiplier>,
}

/// The arguments of [`QConv::new`] besides the weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QConvConfig {
    /// The layer pair.
    pub pair: Pair,
    /// Stride (>= 1).
    pub stride: usize,
    /// Zero padding (reads the input zero point).
    pub padding: Padding,
    /// Fused ReLU.
    pub relu: bool,
    /// Quantization of the input.
    pub input: QuantParams,
    /// Quantization of the output.
    pub output: QuantParams,
}

impl QConv {
    /// Builds the layer and its per-channel multipliers
    /// ([`Multiplier::for_product`]).
    ///
    /// # Errors
    /// [`Error::Shape`] for a weight that is not `(C_out, C_in, nti, K, K)` with square
    /// nonzero kernels and the pair's `nti`, or scales or bias not `(C_out,)`;
    /// [`Error::Core`] for a weight of -128, a scale that is not finite and positive,
    /// a zero point outside `[-128, 127]` or an effective scale out of range.
    pub fn new(
        config: QConvConfig,
        weight_shape: &[usize],
        weight: Vec<i8>,
        weight_scale: Vec<f32>,
        bias: Option<Vec<i32>>,
    ) -> Result<Self, Error> {
        let nti = config.pair.from().planes();
        let shape: [usize; 5] = match *weight_shape {
            [o, i, t, k, k2] if o > 0 && i > 0 && k > 0 && k == k2 && t == nti => [o, i, t, k, k],
            _ => {
                return Err(Error::Shape {
                    tensor: "int8 conv weight",
                    expected: format!("(C_out, C_in, {nti}, K, K)"),
                    found: weight_shape.to_vec(),
                });
            }
        };
        if weight.len() != shape.iter().product::<usize>() {
            return Err(Error::DataLength {
                shape: shape.to_vec(),
                expected: shape.iter().product(),
                found: weight.len(),
            });
        }
        let c_out = shape[0];
        for (name, len) in [
            ("int8 conv weight_scale", Some(weight_scale.len())),
            ("int8 conv bias", bias.as_ref().map(Vec::len)),
        ] {
            if let Some(len) = len.filter(|&l| l != c_out) {
                return Err(Error::Shape {
                    tensor: name,
                    expected: format!("({c_out},)"),
                    found: vec![len],
                });
            }
        }
        let err = core("int8 conv");
        core_quant::check_weights(&weight).map_err(&err)?;
        config.input.validate(QuantTensor::Input).map_err(&err)?;
        config.output.validate(QuantTensor::Output).map_err(&err)?;
        let multipliers = weight_scale
            .iter()
            .map(|&ws| Multiplier::for_product(config.input.scale, ws, config.output.scale))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        if config.stride == 0 {
            return Err(err(gconv_core::Error::ZeroDimension(
                gconv_core::Dim::Stride,
            )));
        }
        config.padding.resolve(shape[3]).map_err(&err)?;
        Ok(QConv {
            pair: config.pair,
            shape,
            weight,
            weight_scale,
            bias,
            stride: config.stride,
            padding: config.padding,
            relu: config.relu,
            input: config.input,
            output: config.output,
            multipliers,
        })
    }

    /// The layer pair.
    pub fn pair(&self) -> Pair {
        self.pair
    }
    /// `(C_out, C_in, nti, K, K)`.
    pub fn weight_shape(&self) -> [usize; 5] {
        self.shape
    }
    /// The raw int8 weights.
    pub fn weight(&self) -> &[i8] {
        &self.weight
    }
    /// One scale per output G-channel.
    pub fn weight_scale(&self) -> &[f32] {
        &self.weight_scale
    }
    /// The int32 bias.
    pub fn bias(&self) -> Option<&[i32]> {
        self.bias.as_deref()
    }
    /// Stride.
    pub fn stride(&self) -> usize {
        self.stride
    }
    /// Padding.
    pub fn padding(&self) -> Padding {
        self.padding
    }
    /// Fused ReLU.
    pub fn relu(&self) -> bool {
        self.relu
    }
    /// Input quantization.
    pub fn input_params(&self) -> QuantParams {
        self.input
    }
    /// Output quantization.
    pub fn output_params(&self) -> QuantParams {
        self.output
    }
    /// The per-channel multipliers.
    pub fn multipliers(&self) -> &[Multiplier] {
        &self.multipliers
    }

    /// The core shape for an input `(N, C_in, [nti,] H, W)`.
    ///
    /// # Errors
    /// [`Error::Shape`] for an input of the wrong rank, channels or planes.
    pub fn conv_shape(&self, input_shape: &[usize]) -> Result<ConvShape, Error> {
        let [_, c_in, nti, k, _] = self.shape;
        let (n, h, w) = match (self.pair.from(), input_shape) {
            (Space::Z2, &[n, c, h, w]) if c == c_in => (n, h, w),
            (Space::C4 | Space::D4, &[n, c, t, h, w]) if c == c_in && t == nti => (n, h, w),
            _ => {
                return Err(Error::Shape {
                    tensor: "int8 conv input",
                    expected: if nti == 1 {
                        format!("(N, {c_in}, H, W)")
                    } else {
                        format!("(N, {c_in}, {nti}, H, W)")
                    },
                    found: input_shape.to_vec(),
                });
            }
        };
        Ok(ConvShape {
            batch: n,
            in_channels: c_in,
            out_channels: self.shape[0],
            height: h,
            width: w,
            kernel: k,
            stride: self.stride,
            padding: self.padding,
        })
    }

    /// Output shape `(N, C_out, nto, H', W')` for an input shape.
    ///
    /// # Errors
    /// As [`QConv::conv_shape`]; [`Error::Core`] when the kernel does not fit.
    pub fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>, Error> {
        let geo = self.geometry(input_shape)?;
        Ok(geo.output_shape().to_vec())
    }

    fn geometry(&self, input_shape: &[usize]) -> Result<gconv_core::ConvGeometry, Error> {
        let shape = self.conv_shape(input_shape)?;
        let domain = if self.pair.from() == Space::Z2 {
            Domain::Z2
        } else {
            Domain::Group
        };
        match self.pair.to() {
            Space::D4 => shape.geometry::<D4>(domain),
            _ => shape.geometry::<C4>(domain),
        }
        .map_err(core("int8 conv"))
    }

    /// Runs the layer on an int8 input quantized with [`QConv::input_params`].
    ///
    /// # Errors
    /// As [`QConv::conv_shape`]; [`Error::Usage`] when the input's quantization is
    /// not the layer's.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor, Error> {
        if x.params() != self.input {
            return Err(Error::Usage(format!(
                "int8 conv: input quantized with {:?}, the layer expects {:?}",
                x.params(),
                self.input
            )));
        }
        let geo = self.geometry(x.shape())?;
        let out_shape = geo.output_shape().to_vec();
        let mut out = vec![0i8; geo.output_len()];
        let requant = Requant {
            input_zero_point: self.input.zero_point,
            output_zero_point: self.output.zero_point,
            multipliers: &self.multipliers,
            relu: self.relu,
        };
        // The host's int8 micro-kernels where they take the layer (K <= 11), else the
        // plain kernel; both give the same bits (integer sums).
        match QFastPlan::from_geometry(&geo, crate::fast::int8_kernel()?) {
            Ok(plan) => self.forward_fast(&plan, &requant, x.data(), &mut out)?,
            Err(_) => {
                let scratch_len =
                    core_quant::conv::scratch_len_for(&geo).map_err(core("int8 conv"))?;
                let mut scratch = vec![0i32; scratch_len];
                core_quant::conv::forward_geometry(
                    &geo,
                    &requant,
                    x.data(),
                    &self.weight,
                    self.bias.as_deref(),
                    &mut out,
                    &mut scratch,
                )
                .map_err(core("int8 conv"))?;
            }
        }
        QTensor::new(out_shape, out, self.output)
    }

    /// The fast path: weights prepared once per call, images split over the rayon
    /// pool's threads (each with its own packed-input scratch), or, with fewer images
    /// than threads, each image's output planes; one thread without the `rayon`
    /// feature. Every split gives the same bits (integer sums).
    fn forward_fast(
        &self,
        plan: &QFastPlan,
        requant: &Requant<'_>,
        input: &[i8],
        out: &mut [i8],
    ) -> Result<(), Error> {
        let err = core("int8 conv");
        let mut prepared = vec![0i32; plan.prepared_weights_len()];
        plan.prepare_weights(&self.weight, &mut prepared)
            .map_err(&err)?;
        let run = |x: &[i8], y: &mut [i8]| {
            let mut scratch = vec![0i32; plan.scratch_len()];
            crate::fast::int8_forward_images(
                plan,
                requant,
                x,
                &prepared,
                self.bias.as_deref(),
                y,
                &mut scratch,
            )
        };
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            let (in_len, out_len) = (
                plan.image_input_len().max(1),
                plan.image_output_len().max(1),
            );
            let images = out.len() / out_len;
            let threads = rayon::current_num_threads().max(1);
            if images >= threads || threads == 1 {
                let per_thread = images.div_ceil(threads).max(1);
                return input
                    .par_chunks(per_thread * in_len)
                    .zip(out.par_chunks_mut(per_thread * out_len))
                    .try_for_each(|(x, y)| run(x, y))
                    .map_err(&err);
            }
            // Fewer images than threads: pack each image once, then split its output
            // planes (in tiles of one G-channel's planes) over the threads.
            let tiles = plan.plane_tiles().max(1);
            let per = tiles.div_ceil(threads).max(1);
            let tile_len = out_len / tiles;
            let mut packed = vec![0i32; plan.scratch_len()];
            for (x, y) in input
                .chunks_exact(in_len)
                .zip(out.chunks_exact_mut(out_len))
            {
                plan.pack_input(requant.input_zero_point, x, &mut packed)
                    .map_err(&err)?;
                y.par_chunks_mut(per * tile_len)
                    .enumerate()
                    .try_for_each(|(i, part)| {
                        let first = i * per;
                        let range = first..(first + per).min(tiles);
                        crate::fast::int8_compute(
                            plan,
                            requant,
                            &packed,
                            &prepared,
                            self.bias.as_deref(),
                            part,
                            range,
                        )
                    })
                    .map_err(&err)?;
            }
            Ok(())
        }
        #[cfg(not(feature = "rayon"))]
        {
            run(input, out).map_err(&err)
        }
    }

    /// Is this layer exactly equivariant on a `height x width` input (the rule of
    /// `CONVENTIONS.md`, the same as for f32)?
    pub fn is_equivariant_on(&self, height: usize, width: usize) -> bool {
        gconv_core::equivariance::layer_is_equivariant(
            height,
            width,
            self.shape[3],
            self.stride,
            self.padding,
        )
    }
}

/// A dense int8 layer (TFLite `FULLY_CONNECTED`, per-tensor weight scale): weight
/// `(out_features, in_features)` int8, bias `(out_features,)` int32, requantized as
/// LiteRT's reference kernel does ([`DenseScale::Real`]; TFLite Micro differs on rare
/// ties, see [`DenseScale`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QDense {
    out_features: usize,
    in_features: usize,
    weight: Vec<i8>,
    weight_scale: f32,
    bias: Option<Vec<i32>>,
    relu: bool,
    input: QuantParams,
    output: QuantParams,
    scale: DenseScale,
}

impl QDense {
    /// Builds the layer.
    ///
    /// # Errors
    /// [`Error::Shape`] / [`Error::DataLength`] for inconsistent sizes; [`Error::Core`]
    /// as for [`QConv::new`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        out_features: usize,
        in_features: usize,
        weight: Vec<i8>,
        weight_scale: f32,
        bias: Option<Vec<i32>>,
        relu: bool,
        input: QuantParams,
        output: QuantParams,
    ) -> Result<Self, Error> {
        if out_features == 0 || in_features == 0 || weight.len() != out_features * in_features {
            return Err(Error::DataLength {
                shape: vec![out_features, in_features],
                expected: out_features * in_features,
                found: weight.len(),
            });
        }
        if let Some(b) = bias.as_ref().filter(|b| b.len() != out_features) {
            return Err(Error::Shape {
                tensor: "int8 dense bias",
                expected: format!("({out_features},)"),
                found: vec![b.len()],
            });
        }
        let err = core("int8 dense");
        core_quant::check_weights(&weight).map_err(&err)?;
        input.validate(QuantTensor::Input).map_err(&err)?;
        output.validate(QuantTensor::Output).map_err(&err)?;
        let scale = DenseScale::litert(input.scale, weight_scale, output.scale).map_err(&err)?;
        Ok(QDense {
            out_features,
            in_features,
            weight,
            weight_scale,
            bias,
            relu,
            input,
            output,
            scale,
        })
    }

    /// `(out_features, in_features)`.
    pub fn features(&self) -> (usize, usize) {
        (self.out_features, self.in_features)
    }
    /// The int8 weight.
    pub fn weight(&self) -> &[i8] {
        &self.weight
    }
    /// The per-tensor weight scale.
    pub fn weight_scale(&self) -> f32 {
        self.weight_scale
    }
    /// The int32 bias.
    pub fn bias(&self) -> Option<&[i32]> {
        self.bias.as_deref()
    }
    /// Fused ReLU.
    pub fn relu(&self) -> bool {
        self.relu
    }
    /// Output quantization.
    pub fn output_params(&self) -> QuantParams {
        self.output
    }
    /// The requantization (LiteRT's reference form).
    pub fn scale(&self) -> DenseScale {
        self.scale
    }

    /// Runs the layer on `(N, ...)` flattened to `(N, in_features)`.
    ///
    /// # Errors
    /// [`Error::Shape`]; [`Error::Usage`] when the input's quantization is not the
    /// layer's.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor, Error> {
        let n = x.shape().first().copied().unwrap_or(0);
        if x.shape()[1..].iter().product::<usize>() != self.in_features {
            return Err(Error::Shape {
                tensor: "int8 dense input",
                expected: format!("(N, ...) with {} features", self.in_features),
                found: x.shape().to_vec(),
            });
        }
        if x.params() != self.input {
            return Err(Error::Usage(format!(
                "int8 dense: input quantized with {:?}, the layer expects {:?}",
                x.params(),
                self.input
            )));
        }
        let mut out = vec![0i8; n * self.out_features];
        let quant = DenseQuant {
            input_zero_point: self.input.zero_point,
            output_zero_point: self.output.zero_point,
            scale: self.scale,
            relu: self.relu,
        };
        core_quant::layers::dense(
            n,
            self.in_features,
            self.out_features,
            &quant,
            x.data(),
            &self.weight,
            self.bias.as_deref(),
            &mut out,
        )
        .map_err(core("int8 dense"))?;
        QTensor::new(vec![n, self.out_features], out, self.output)
    }
}

/// One layer of a [`QModel`]. Every layer but [`QLayer::Conv`] and [`QLayer::Dense`]
/// keeps its input's quantization.
#[derive(Clone, Debug, PartialEq)]
pub enum QLayer {
    /// A lifting or group convolution (with its fused ReLU, if any).
    Conv(QConv),
    /// `max(x, zero_point)`.
    Relu,
    /// Spatial max pooling, or average pooling with padding counted as real zeros
    /// like the f32 layer ([`gconv_core::quant::layers::avg_pool`]).
    Pool(Pool2d),
    /// Max or rounded mean over the orientation axis.
    GroupPool(Reduce),
    /// Rounded mean of every plane.
    GlobalAvgPool,
    /// Fully connected.
    Dense(QDense),
}

impl QLayer {
    /// The layer kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            QLayer::Conv(_) => "conv",
            QLayer::Relu => "relu",
            QLayer::Pool(p) if p.kind == PoolKind::Max => "max_pool",
            QLayer::Pool(_) => "avg_pool",
            QLayer::GroupPool(_) => "group_pool",
            QLayer::GlobalAvgPool => "global_avg_pool",
            QLayer::Dense(_) => "dense",
        }
    }
}

/// A sequential int8 G-CNN whose shapes, quantization chain and equivariance were
/// checked when it was built.
#[derive(Clone, Debug, PartialEq)]
pub struct QModel {
    input: Feature,
    input_params: QuantParams,
    accept_non_equivariant: bool,
    layers: Vec<QLayer>,
    shapes: Vec<Feature>,
}

impl QModel {
    /// Builds a model for inputs of shape `input` quantized with `input_params`:
    /// infers every layer's output shape, checks that each conv and dense layer
    /// expects the quantization the layer before produces, and checks the
    /// equivariance rule of every conv and pooling layer at its input size.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the layer (1-based) when shapes or quantization do not
    /// chain or (unless `accept_non_equivariant`) the rule fails.
    pub fn new(
        input: Feature,
        input_params: QuantParams,
        layers: Vec<QLayer>,
        accept_non_equivariant: bool,
    ) -> Result<Self, Error> {
        input_params
            .validate(QuantTensor::Input)
            .map_err(core("int8 model input"))?;
        let mut shapes = Vec::with_capacity(layers.len());
        let mut current = input.clone();
        let mut params = input_params;
        for (i, layer) in layers.iter().enumerate() {
            let at = |e: String| Error::Usage(format!("layer {} ({}): {e}", i + 1, layer.kind()));
            let (next, equivariant, next_params) =
                infer(layer, &current, params).map_err(|e| at(e.to_string()))?;
            if !equivariant && !accept_non_equivariant {
                return Err(at(
                    "breaks equivariance on its input (see CONVENTIONS.md, \"When a layer is \
                     exactly equivariant\"); set \"accept_non_equivariant\": true to load it anyway"
                        .into(),
                ));
            }
            shapes.push(next.clone());
            current = next;
            params = next_params;
        }
        Ok(QModel {
            input,
            input_params,
            accept_non_equivariant,
            layers,
            shapes,
        })
    }

    /// The input feature shape (batch free).
    pub fn input(&self) -> &Feature {
        &self.input
    }
    /// The input quantization.
    pub fn input_params(&self) -> QuantParams {
        self.input_params
    }
    /// Whether the model was built accepting layers that break equivariance.
    pub fn accepts_non_equivariant(&self) -> bool {
        self.accept_non_equivariant
    }
    /// The output feature shape (batch free).
    pub fn output(&self) -> &Feature {
        self.shapes.last().unwrap_or(&self.input)
    }
    /// The layers.
    pub fn layers(&self) -> &[QLayer] {
        &self.layers
    }

    /// Quantizes a float input batch with the model's input parameters and runs it.
    ///
    /// # Errors
    /// As [`QModel::forward`].
    pub fn forward_f32(&self, x: &Tensor) -> Result<QTensor, Error> {
        self.forward(&QTensor::quantize(x, self.input_params)?)
    }

    /// Runs the model on an int8 batch `(N, ...)` of the input shape, quantized with
    /// [`QModel::input_params`].
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` is not `input().shape(N)`; [`Error::Usage`] when its
    /// quantization is not the model's.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor, Error> {
        let n = x.shape().first().copied().unwrap_or(0);
        if x.shape() != self.input.shape(n).as_slice() {
            return Err(Error::Shape {
                tensor: "int8 model input",
                expected: format!("{:?} with any N", self.input.shape(0)).replace("[0", "[N"),
                found: x.shape().to_vec(),
            });
        }
        if x.params() != self.input_params {
            return Err(Error::Usage(format!(
                "int8 model input quantized with {:?}, the model expects {:?}",
                x.params(),
                self.input_params
            )));
        }
        let mut y = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            y = apply(layer, y)
                .map_err(|e| Error::Usage(format!("layer {} ({}): {e}", i + 1, layer.kind())))?;
        }
        Ok(y)
    }
}

/// Output shape of `layer` on `input`, whether the rule calls it equivariant, and
/// the output quantization.
fn infer(
    layer: &QLayer,
    input: &Feature,
    params: QuantParams,
) -> Result<(Feature, bool, QuantParams), Error> {
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
    let chain = |expects: QuantParams| {
        if expects == params {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "expects its input quantized with {expects:?}, the layer before produces {params:?}"
            )))
        }
    };
    match layer {
        QLayer::Conv(conv) => {
            let (space, _, h, w) = map("a convolution")?;
            if space != conv.pair().from() {
                return Err(Error::Usage(format!(
                    "a {} conv cannot take a {space} map",
                    conv.pair().name()
                )));
            }
            chain(conv.input_params())?;
            let out = conv.output_shape(&input.shape(1))?;
            let feature = Feature::Map {
                space: conv.pair().to(),
                channels: out[1],
                height: out[3],
                width: out[4],
            };
            Ok((feature, conv.is_equivariant_on(h, w), conv.output_params()))
        }
        QLayer::Relu => Ok((input.clone(), true, params)),
        QLayer::Pool(pool) => {
            let (space, channels, h, w) = map("pooling")?;
            let shape = pool.output_shape(&input.shape(1))?;
            let rank = shape.len();
            let out = Feature::Map {
                space,
                channels,
                height: shape[rank - 2],
                width: shape[rank - 1],
            };
            Ok((out, pool.is_equivariant_on(h, w), params))
        }
        QLayer::GroupPool(_) => {
            let (space, channels, height, width) = map("group pooling")?;
            if space == Space::Z2 {
                return Err(Error::Usage(
                    "group pooling needs a C4 or D4 map, got a Z2 map".into(),
                ));
            }
            let out = Feature::Map {
                space: Space::Z2,
                channels,
                height,
                width,
            };
            Ok((out, true, params))
        }
        QLayer::GlobalAvgPool => {
            let (space, channels, _, _) = map("global average pooling")?;
            let dims = if space == Space::Z2 {
                vec![channels]
            } else {
                vec![channels, space.planes()]
            };
            Ok((Feature::Vector(dims), true, params))
        }
        QLayer::Dense(d) => {
            let features: usize = input.shape(1).iter().product();
            let (out_features, in_features) = d.features();
            if features != in_features {
                return Err(Error::Usage(format!(
                    "takes {in_features} features, its input has {features}"
                )));
            }
            chain(d.input)?;
            Ok((Feature::Vector(vec![out_features]), true, d.output_params()))
        }
    }
}

/// Runs one layer.
fn apply(layer: &QLayer, x: QTensor) -> Result<QTensor, Error> {
    let params = x.params();
    let s = x.shape().to_vec();
    match layer {
        QLayer::Conv(conv) => conv.forward(&x),
        QLayer::Dense(d) => d.forward(&x),
        QLayer::Relu => {
            let mut data = x.data;
            core_quant::layers::relu(&mut data, params.zero_point).map_err(core("relu"))?;
            QTensor::new(s, data, params)
        }
        QLayer::Pool(pool) => {
            let out_shape = pool.output_shape(&s)?;
            let rank = s.len();
            let shape = gconv_core::pool::PoolShape {
                planes: s[..rank - 2].iter().product(),
                height: s[rank - 2],
                width: s[rank - 1],
                window: pool.window,
                stride: pool.stride,
                padding: pool.padding,
            };
            let mut out = vec![0i8; out_shape.iter().product()];
            match pool.kind {
                PoolKind::Max => core_quant::layers::max_pool(&shape, x.data(), &mut out),
                PoolKind::Avg => {
                    core_quant::layers::avg_pool(&shape, params.zero_point, x.data(), &mut out)
                }
            }
            .map_err(core("pooling"))?;
            QTensor::new(out_shape, out, params)
        }
        QLayer::GroupPool(reduce) => {
            let mut out = vec![0i8; s[0] * s[1] * s[3] * s[4]];
            core_quant::layers::group_pool(
                *reduce,
                s[0] * s[1],
                s[2],
                s[3] * s[4],
                x.data(),
                &mut out,
            )
            .map_err(core("group pooling"))?;
            QTensor::new(vec![s[0], s[1], s[3], s[4]], out, params)
        }
        QLayer::GlobalAvgPool => {
            let rank = s.len();
            let plane = s[rank - 2] * s[rank - 1];
            let out_shape = s[..rank - 2].to_vec();
            let mut out = vec![0i8; out_shape.iter().product()];
            core_quant::layers::global_avg_pool(out.len(), plane, x.data(), &mut out)
                .map_err(core("global average pooling"))?;
            QTensor::new(out_shape, out, params)
        }
    }
}

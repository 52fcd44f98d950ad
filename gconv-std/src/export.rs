//! From a model file to firmware: the layer lists of gconv-core's `no_std` runner
//! ([`gconv_core::model`]) built from a std [`Model`] or [`QModel`], and the Rust
//! source `gconv export` writes for a firmware build (`static` raw weights, |G| times
//! smaller than the expanded banks, the layer list, and the model as a `const` that
//! the compiler checks and sizes the buffers of).
//!
//! Why generated Rust source and not a blob parsed on the device: the compiler checks
//! the model (the runner's `const fn` constructor: shapes chain, the equivariance
//! rule, weight lengths) and computes the buffer sizes at compile time, so a bad model
//! cannot reach the device and the buffers are plain arrays; the weights are `static`
//! arrays in flash, read in place; the device has no parser, no alignment rules and no
//! version checks to get wrong; and only the layer kinds a model uses are linked.

use std::fmt::Write as _;

use gconv_core::layers::Reduce;
use gconv_core::model::float::{Conv, Layer as CoreLayer, Model as CoreModel};
use gconv_core::model::int8::{
    QConv as CoreQConv, QDense as CoreQDense, QLayer, QModel as CoreQModel,
};
use gconv_core::model::{ConvSpec, Feature as CoreFeature, LayerError, PoolSpec, Sizes};
use gconv_core::quant::layers::DenseScale;
use gconv_core::{C4, D4, Domain, Padding};

use crate::any::Space;
use crate::error::Error;
use crate::model::{Feature, Layer, Model};
use crate::pool::PoolKind;
use crate::quant::{QLayer as StdQLayer, QModel};

/// The group of a model: the target of its convolutions (all the same).
fn group_of(targets: impl Iterator<Item = Space>) -> Result<Space, Error> {
    let mut group = None;
    for (i, t) in targets.enumerate() {
        match group {
            None => group = Some(t),
            Some(g) if g != t => {
                return Err(Error::Usage(format!(
                    "layer {}: a {t} convolution in a {g} model: one group per model",
                    i + 1
                )));
            }
            _ => {}
        }
    }
    group.ok_or_else(|| Error::Usage("the model has no convolution: nothing to export".into()))
}

fn core_feature(f: &Feature) -> Result<CoreFeature, Error> {
    match *f {
        Feature::Map {
            space,
            channels,
            height,
            width,
        } => Ok(CoreFeature::Map {
            domain: if space == Space::Z2 {
                Domain::Z2
            } else {
                Domain::Group
            },
            channels,
            height,
            width,
        }),
        Feature::Vector(_) => Err(Error::Usage("the model input must be a feature map".into())),
    }
}

fn pool_spec(p: &crate::pool::Pool2d) -> PoolSpec {
    PoolSpec {
        max: p.kind == PoolKind::Max,
        window: p.window,
        stride: p.stride,
        padding: p.padding,
    }
}

fn domain_of(space: Space) -> Domain {
    if space == Space::Z2 {
        Domain::Z2
    } else {
        Domain::Group
    }
}

/// An f32 model as the core runner's layer list, borrowing the weights of `model`,
/// which must have its batch norms folded ([`Model::fold_batch_norm`]). A ReLU that
/// follows a convolution or dense layer is fused into it.
#[derive(Debug)]
pub struct CoreF32<'a> {
    /// C4 or D4.
    pub group: Space,
    /// The input shape.
    pub input: CoreFeature,
    /// The layers.
    pub layers: Vec<CoreLayer<'a>>,
    /// Whether the model accepts layers that break equivariance.
    pub accept_non_equivariant: bool,
}

/// See [`CoreF32`].
///
/// # Errors
/// [`Error::Usage`] naming the layer for a batch norm left (one that does not follow
/// a convolution) or a pointwise activation other than ReLU; for a model without
/// convolutions or with two groups.
pub fn core_f32(model: &Model) -> Result<CoreF32<'_>, Error> {
    let group = group_of(model.layers().iter().filter_map(|l| match l {
        Layer::Conv(c) => Some(c.pair().to()),
        _ => None,
    }))?;
    let mut layers: Vec<CoreLayer<'_>> = Vec::new();
    for (i, layer) in model.layers().iter().enumerate() {
        let at = |what: &str| Error::Usage(format!("layer {}: {what}", i + 1));
        let core = match layer {
            Layer::Conv(c) => CoreLayer::Conv(Conv {
                spec: ConvSpec {
                    domain: domain_of(c.pair().from()),
                    in_channels: c.in_channels(),
                    out_channels: c.out_channels(),
                    kernel: c.kernel(),
                    stride: c.stride(),
                    padding: c.padding(),
                },
                weight: c.weight().data(),
                bias: c.bias(),
                relu: false,
            }),
            Layer::Relu => match layers.last_mut() {
                Some(CoreLayer::Conv(c)) if !c.relu => {
                    c.relu = true;
                    continue;
                }
                Some(CoreLayer::Dense { relu, .. }) if !*relu => {
                    *relu = true;
                    continue;
                }
                _ => CoreLayer::Relu,
            },
            Layer::BatchNorm(_) => {
                return Err(at(
                    "batch norm that does not follow a convolution: the runner folds batch norm into the convolution before it",
                ));
            }
            Layer::Pointwise(_) => {
                return Err(at(
                    "pointwise activations other than ReLU are not supported by the runner",
                ));
            }
            Layer::Pool(p) => CoreLayer::Pool(pool_spec(p)),
            Layer::GroupPool(r) => CoreLayer::GroupPool(*r),
            Layer::GlobalAvgPool => CoreLayer::GlobalAvgPool,
            Layer::Dense(d) => CoreLayer::Dense {
                in_features: d.weight().shape()[1],
                out_features: d.weight().shape()[0],
                weight: d.weight().data(),
                bias: d.bias(),
                relu: false,
            },
        };
        layers.push(core);
    }
    Ok(CoreF32 {
        group,
        input: core_feature(model.input())?,
        layers,
        accept_non_equivariant: model.accepts_non_equivariant(),
    })
}

/// An int8 model as the core runner's layer list, borrowing `model`'s weights and
/// multipliers.
#[derive(Debug)]
pub struct CoreInt8<'a> {
    /// C4 or D4.
    pub group: Space,
    /// The input shape.
    pub input: CoreFeature,
    /// The input quantization.
    pub input_params: gconv_core::quant::QuantParams,
    /// The layers.
    pub layers: Vec<QLayer<'a>>,
    /// Whether the model accepts layers that break equivariance.
    pub accept_non_equivariant: bool,
}

/// See [`CoreInt8`].
///
/// # Errors
/// As [`core_f32`].
pub fn core_int8(model: &QModel) -> Result<CoreInt8<'_>, Error> {
    let group = group_of(model.layers().iter().filter_map(|l| match l {
        StdQLayer::Conv(c) => Some(c.pair().to()),
        _ => None,
    }))?;
    let layers = model
        .layers()
        .iter()
        .map(|layer| match layer {
            StdQLayer::Conv(c) => {
                let [o, i, _, k, _] = c.weight_shape();
                QLayer::Conv(CoreQConv {
                    spec: ConvSpec {
                        domain: domain_of(c.pair().from()),
                        in_channels: i,
                        out_channels: o,
                        kernel: k,
                        stride: c.stride(),
                        padding: c.padding(),
                    },
                    weight: c.weight(),
                    bias: c.bias(),
                    multipliers: c.multipliers(),
                    output_zero_point: c.output_params().zero_point,
                    relu: c.relu(),
                })
            }
            StdQLayer::Relu => QLayer::Relu,
            StdQLayer::Pool(p) => QLayer::Pool(pool_spec(p)),
            StdQLayer::GroupPool(r) => QLayer::GroupPool(*r),
            StdQLayer::GlobalAvgPool => QLayer::GlobalAvgPool,
            StdQLayer::Dense(d) => {
                let (out_features, in_features) = d.features();
                QLayer::Dense(CoreQDense {
                    in_features,
                    out_features,
                    weight: d.weight(),
                    bias: d.bias(),
                    scale: d.scale(),
                    output_zero_point: d.output_params().zero_point,
                    relu: d.relu(),
                })
            }
        })
        .collect();
    Ok(CoreInt8 {
        group,
        input: core_feature(model.input())?,
        input_params: model.input_params(),
        layers,
        accept_non_equivariant: model.accepts_non_equivariant(),
    })
}

impl CoreF32<'_> {
    /// The core model's buffer sizes, after building it (the same checks as the
    /// generated `const`).
    ///
    /// # Errors
    /// The core model's [`LayerError`], as [`Error::Usage`].
    pub fn sizes(&self) -> Result<Sizes, Error> {
        let sizes = match self.group {
            Space::D4 => {
                CoreModel::<D4>::new(self.input, &self.layers, self.accept_non_equivariant)
                    .map(|m| m.sizes())
            }
            _ => CoreModel::<C4>::new(self.input, &self.layers, self.accept_non_equivariant)
                .map(|m| m.sizes()),
        };
        sizes.map_err(layer_error)
    }
}

impl CoreInt8<'_> {
    /// As [`CoreF32::sizes`].
    ///
    /// # Errors
    /// As [`CoreF32::sizes`].
    pub fn sizes(&self) -> Result<Sizes, Error> {
        let sizes = match self.group {
            Space::D4 => CoreQModel::<D4>::new(
                self.input,
                self.input_params,
                &self.layers,
                self.accept_non_equivariant,
            )
            .map(|m| m.sizes()),
            _ => CoreQModel::<C4>::new(
                self.input,
                self.input_params,
                &self.layers,
                self.accept_non_equivariant,
            )
            .map(|m| m.sizes()),
        };
        sizes.map_err(layer_error)
    }
}

fn layer_error(e: LayerError) -> Error {
    Error::Usage(e.to_string())
}

/// What [`rust_source`] writes besides the source: the sizes, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// The buffer sizes.
    pub sizes: Sizes,
    /// Bytes of the buffers: two activation buffers and the scratch.
    pub ram_bytes: usize,
    /// Bytes of the weights, biases and multipliers written as `static`s.
    pub weight_bytes: usize,
}

/// A model to export.
#[derive(Clone, Copy, Debug)]
pub enum Exportable<'a> {
    /// An f32 model (batch norms are folded on export).
    F32(&'a Model),
    /// An int8 model.
    Int8(&'a QModel),
}

/// Writes the Rust source of `model` for the core runner: one module's worth of items
/// (`include!` it inside a `mod`): `static` weights, `LAYERS`, `INPUT`, `MODEL` (a
/// `const` the compiler checks) and `SIZES`, plus `GROUP_ORDER`. `ram_budget` (bytes),
/// when given, must hold the two activation buffers and the scratch.
///
/// # Errors
/// [`Error::Usage`], one line naming the layer, for a layer the runner does not have,
/// a model that breaks the equivariance rule (unless it accepts it) or does not chain,
/// or one whose buffers exceed `ram_budget`.
pub fn rust_source(
    model: Exportable<'_>,
    source: &str,
    ram_budget: Option<usize>,
) -> Result<(String, ExportSummary), Error> {
    let mut out = String::new();
    let w = &mut out;
    let summary = match model {
        Exportable::F32(m) => {
            let folded = m.fold_batch_norm()?;
            let core = core_f32(&folded)?;
            let sizes = core.sizes()?;
            let ram = 4 * (2 * sizes.activations + sizes.scratch);
            header(w, source, "f32", core.group, &sizes, ram);
            let weight_bytes = write_f32_layers(w, &core);
            writeln!(
                w,
                "pub const MODEL: Model<'static, Group> = match Model::new(INPUT, &LAYERS, {}) {{\n    Ok(m) => m,\n    Err(_) => panic!(\"invalid model: run `gconv export` again\"),\n}};",
                core.accept_non_equivariant
            )
            .unwrap();
            ExportSummary {
                sizes,
                ram_bytes: ram,
                weight_bytes,
            }
        }
        Exportable::Int8(q) => {
            let core = core_int8(q)?;
            let sizes = core.sizes()?;
            let ram = 2 * sizes.activations + 4 * sizes.scratch;
            header(w, source, "int8", core.group, &sizes, ram);
            let weight_bytes = write_int8_layers(w, &core);
            let p = core.input_params;
            writeln!(
                w,
                "pub const INPUT_PARAMS: QuantParams = QuantParams {{ scale: {:?}f32, zero_point: {} }};",
                p.scale, p.zero_point
            )
            .unwrap();
            writeln!(
                w,
                "pub const MODEL: QModel<'static, Group> = match QModel::new(INPUT, INPUT_PARAMS, &LAYERS, {}) {{\n    Ok(m) => m,\n    Err(_) => panic!(\"invalid model: run `gconv export` again\"),\n}};",
                core.accept_non_equivariant
            )
            .unwrap();
            ExportSummary {
                sizes,
                ram_bytes: ram,
                weight_bytes,
            }
        }
    };
    writeln!(
        w,
        "/// The buffer sizes, computed by the compiler.\npub const SIZES: Sizes = MODEL.sizes();"
    )
    .unwrap();
    if let Some(budget) = ram_budget
        && summary.ram_bytes > budget
    {
        return Err(Error::Usage(format!(
            "the model needs {} bytes of buffers (2 x {} activations + {} scratch), more than the budget of {budget} bytes",
            summary.ram_bytes, summary.sizes.activations, summary.sizes.scratch
        )));
    }
    Ok((out, summary))
}

fn header(w: &mut String, source: &str, dtype: &str, group: Space, sizes: &Sizes, ram: usize) {
    let (group_ty, order) = if group == Space::D4 {
        ("D4", 8)
    } else {
        ("C4", 4)
    };
    let float = dtype == "f32";
    writeln!(
        w,
        "// @generated by `gconv export` from {source} ({dtype}, group {group_ty}). Do not edit.\n\
         // Buffers: 2 x {} activations + {} scratch ({ram} bytes).\n\
         #[allow(unused_imports, clippy::all)]\n\
         use gconv_core::model::{{ConvSpec, Feature, PoolSpec, Sizes}};\n\
         #[allow(unused_imports)]\n\
         use gconv_core::{{Domain, Padding, {group_ty} as Group, layers::Reduce}};",
        sizes.activations, sizes.scratch
    )
    .unwrap();
    if float {
        writeln!(
            w,
            "#[allow(unused_imports)]\nuse gconv_core::model::float::{{Conv, Layer, Model}};"
        )
        .unwrap();
    } else {
        writeln!(
            w,
            "#[allow(unused_imports)]\nuse gconv_core::model::int8::{{QConv, QDense, QLayer, QModel}};\n\
             #[allow(unused_imports)]\nuse gconv_core::quant::{{Multiplier, QuantParams, layers::DenseScale}};\n\n\
             const fn m(multiplier: i32, shift: i32) -> Multiplier {{\n    match Multiplier::from_parts(multiplier, shift) {{\n        Ok(m) => m,\n        Err(_) => panic!(\"invalid multiplier\"),\n    }}\n}}"
        )
        .unwrap();
    }
    writeln!(w, "/// Orientation planes per G-channel of the model's group.\npub const GROUP_ORDER: usize = {order};").unwrap();
}

fn feature_text(f: &CoreFeature) -> String {
    match *f {
        CoreFeature::Map {
            domain,
            channels,
            height,
            width,
        } => format!(
            "Feature::Map {{ domain: Domain::{domain:?}, channels: {channels}, height: {height}, width: {width} }}"
        ),
        CoreFeature::Vector(n) => format!("Feature::Vector({n})"),
    }
}

fn padding_text(p: Padding) -> String {
    match p {
        Padding::Valid => "Padding::Valid".into(),
        Padding::Same => "Padding::Same".into(),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => format!(
            "Padding::Explicit {{ top: {top}, bottom: {bottom}, left: {left}, right: {right} }}"
        ),
    }
}

fn spec_text(s: &ConvSpec) -> String {
    format!(
        "ConvSpec {{ domain: Domain::{:?}, in_channels: {}, out_channels: {}, kernel: {}, stride: {}, padding: {} }}",
        s.domain,
        s.in_channels,
        s.out_channels,
        s.kernel,
        s.stride,
        padding_text(s.padding)
    )
}

fn pool_text(p: &PoolSpec) -> String {
    format!(
        "PoolSpec {{ max: {}, window: {}, stride: {}, padding: {} }}",
        p.max,
        p.window,
        p.stride,
        padding_text(p.padding)
    )
}

fn reduce_text(r: Reduce) -> &'static str {
    match r {
        Reduce::Max => "Reduce::Max",
        Reduce::Mean => "Reduce::Mean",
    }
}

/// Writes `pub static NAME: [ty; n] = [...];` with `fmt` per value; returns the bytes.
fn array<T: Copy>(
    w: &mut String,
    name: &str,
    ty: &str,
    data: &[T],
    fmt: impl Fn(T) -> String,
) -> usize {
    writeln!(w, "pub static {name}: [{ty}; {}] = [", data.len()).unwrap();
    for chunk in data.chunks(12) {
        let items: Vec<String> = chunk.iter().map(|&v| fmt(v)).collect();
        writeln!(w, "    {},", items.join(", ")).unwrap();
    }
    writeln!(w, "];").unwrap();
    std::mem::size_of_val(data)
}

fn write_f32_layers(w: &mut String, core: &CoreF32<'_>) -> usize {
    let f = |v: f32| format!("{v:?}");
    let mut bytes = 0;
    let mut items = Vec::new();
    for (i, layer) in core.layers.iter().enumerate() {
        let n = i + 1;
        items.push(match layer {
            CoreLayer::Conv(c) => {
                bytes += array(w, &format!("L{n}_WEIGHT"), "f32", c.weight, f);
                let bias = match c.bias {
                    Some(b) => {
                        bytes += array(w, &format!("L{n}_BIAS"), "f32", b, f);
                        format!("Some(&L{n}_BIAS)")
                    }
                    None => "None".into(),
                };
                format!(
                    "Layer::Conv(Conv {{ spec: {}, weight: &L{n}_WEIGHT, bias: {bias}, relu: {} }})",
                    spec_text(&c.spec),
                    c.relu
                )
            }
            CoreLayer::Relu => "Layer::Relu".into(),
            CoreLayer::Pool(p) => format!("Layer::Pool({})", pool_text(p)),
            CoreLayer::GroupPool(r) => format!("Layer::GroupPool({})", reduce_text(*r)),
            CoreLayer::GlobalAvgPool => "Layer::GlobalAvgPool".into(),
            CoreLayer::Dense {
                in_features,
                out_features,
                weight,
                bias,
                relu,
            } => {
                bytes += array(w, &format!("L{n}_WEIGHT"), "f32", weight, f);
                let bias = match bias {
                    Some(b) => {
                        bytes += array(w, &format!("L{n}_BIAS"), "f32", b, f);
                        format!("Some(&L{n}_BIAS)")
                    }
                    None => "None".into(),
                };
                format!(
                    "Layer::Dense {{ in_features: {in_features}, out_features: {out_features}, weight: &L{n}_WEIGHT, bias: {bias}, relu: {relu} }}"
                )
            }
        });
    }
    writeln!(
        w,
        "pub const INPUT: Feature = {};",
        feature_text(&core.input)
    )
    .unwrap();
    writeln!(
        w,
        "pub static LAYERS: [Layer<'static>; {}] = [",
        items.len()
    )
    .unwrap();
    for item in items {
        writeln!(w, "    {item},").unwrap();
    }
    writeln!(w, "];").unwrap();
    bytes
}

fn write_int8_layers(w: &mut String, core: &CoreInt8<'_>) -> usize {
    let mut bytes = 0;
    let mut items = Vec::new();
    for (i, layer) in core.layers.iter().enumerate() {
        let n = i + 1;
        let bias = |w: &mut String, bytes: &mut usize, b: Option<&[i32]>| match b {
            Some(b) => {
                *bytes += array(w, &format!("L{n}_BIAS"), "i32", b, |v| v.to_string());
                format!("Some(&L{n}_BIAS)")
            }
            None => "None".into(),
        };
        items.push(match layer {
            QLayer::Conv(c) => {
                bytes += array(w, &format!("L{n}_WEIGHT"), "i8", c.weight, |v| v.to_string());
                let b = bias(w, &mut bytes, c.bias);
                bytes += array(w, &format!("L{n}_MULTIPLIERS"), "Multiplier", c.multipliers, |m| {
                    format!("m({}, {})", m.multiplier(), m.shift())
                });
                format!(
                    "QLayer::Conv(QConv {{ spec: {}, weight: &L{n}_WEIGHT, bias: {b}, multipliers: &L{n}_MULTIPLIERS, output_zero_point: {}, relu: {} }})",
                    spec_text(&c.spec),
                    c.output_zero_point,
                    c.relu
                )
            }
            QLayer::Relu => "QLayer::Relu".into(),
            QLayer::Pool(p) => format!("QLayer::Pool({})", pool_text(p)),
            QLayer::GroupPool(r) => format!("QLayer::GroupPool({})", reduce_text(*r)),
            QLayer::GlobalAvgPool => "QLayer::GlobalAvgPool".into(),
            QLayer::Dense(d) => {
                bytes += array(w, &format!("L{n}_WEIGHT"), "i8", d.weight, |v| v.to_string());
                let b = bias(w, &mut bytes, d.bias);
                let scale = match d.scale {
                    DenseScale::Real(r) => format!("DenseScale::Real({r:?})"),
                    DenseScale::Fixed(m) => format!("DenseScale::Fixed(m({}, {}))", m.multiplier(), m.shift()),
                };
                format!(
                    "QLayer::Dense(QDense {{ in_features: {}, out_features: {}, weight: &L{n}_WEIGHT, bias: {b}, scale: {scale}, output_zero_point: {}, relu: {} }})",
                    d.in_features, d.out_features, d.output_zero_point, d.relu
                )
            }
        });
    }
    writeln!(
        w,
        "pub const INPUT: Feature = {};",
        feature_text(&core.input)
    )
    .unwrap();
    writeln!(
        w,
        "pub static LAYERS: [QLayer<'static>; {}] = [",
        items.len()
    )
    .unwrap();
    for item in items {
        writeln!(w, "    {item},").unwrap();
    }
    writeln!(w, "];").unwrap();
    bytes
}

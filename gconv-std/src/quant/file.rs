//! int8 model files: `model.json` with `"dtype": "int8"` and the quantization
//! parameters, and `model.safetensors` with I8 weights, F32 weight scales and I32
//! biases (`docs/model-format.md`, "int8 models"). Loading either succeeds completely
//! or returns an error; saving writes both files through temporary files.

use std::collections::BTreeMap;
use std::path::Path;

use gconv_core::layers::Reduce;
use gconv_core::quant::QuantParams;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::any::{Pair, Space, parse_padding};
use crate::error::Error;
use crate::model::Feature;
use crate::model_file::{
    JSON_NAME, WEIGHTS_NAME, json_text, named_error, parse_safetensors, read_json,
};
use crate::pool::{Pool2d, PoolKind};
use crate::quant::{QConv, QConvConfig, QDense, QLayer, QModel};

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// `model.json` of an int8 model.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QModelFile {
    format: String,
    version: u32,
    dtype: String,
    input: QInputFile,
    #[serde(default)]
    accept_non_equivariant: bool,
    layers: Vec<QLayerFile>,
}

/// The `input` entry, with the input quantization. Scales are written as the f64
/// value of the f32 (exact), so they read back bit for bit.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QInputFile {
    space: String,
    channels: usize,
    height: usize,
    width: usize,
    scale: f64,
    zero_point: i32,
}

fn default_true() -> bool {
    true
}

/// One entry of `layers`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum QLayerFile {
    Conv {
        name: String,
        from: String,
        to: String,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        #[serde(default)]
        stride: Option<usize>,
        #[serde(default)]
        padding: Option<String>,
        #[serde(default = "default_true")]
        bias: bool,
        #[serde(default)]
        relu: bool,
        output_scale: f64,
        output_zero_point: i32,
    },
    Relu,
    MaxPool {
        window: usize,
        #[serde(default)]
        stride: Option<usize>,
        #[serde(default)]
        padding: Option<String>,
    },
    AvgPool {
        window: usize,
        #[serde(default)]
        stride: Option<usize>,
        #[serde(default)]
        padding: Option<String>,
    },
    GroupPool {
        mode: String,
    },
    GlobalAvgPool,
    Dense {
        name: String,
        in_features: usize,
        out_features: usize,
        #[serde(default = "default_true")]
        bias: bool,
        #[serde(default)]
        relu: bool,
        output_scale: f64,
        output_zero_point: i32,
    },
}

/// A tensor read from safetensors: shape and little-endian bytes, with its dtype.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Tensors by name, each taken at most once; what is left at the end is unused.
struct Tensors(BTreeMap<String, RawTensor>);

impl Tensors {
    fn take(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<Vec<u8>, String> {
        let t = self
            .0
            .remove(name)
            .ok_or_else(|| format!("missing tensor {name:?} ({dtype:?}, shape {shape:?})"))?;
        if t.dtype != dtype {
            return Err(format!(
                "tensor {name:?} has dtype {:?}, expected {dtype:?}",
                t.dtype
            ));
        }
        if t.shape != shape {
            return Err(format!(
                "tensor {name:?} has shape {:?}, expected {shape:?}",
                t.shape
            ));
        }
        Ok(t.bytes)
    }
    fn i8(&mut self, name: &str, shape: &[usize]) -> Result<Vec<i8>, String> {
        Ok(self
            .take(name, Dtype::I8, shape)?
            .into_iter()
            .map(|b| b as i8)
            .collect())
    }
    fn i32(&mut self, name: &str, shape: &[usize]) -> Result<Vec<i32>, String> {
        Ok(self
            .take(name, Dtype::I32, shape)?
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
    fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        Ok(self
            .take(name, Dtype::F32, shape)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// The `dtype` a `model.json` declares: `"f32"` when absent, else its value.
///
/// # Errors
/// [`Error::File`] for an unreadable file, one longer than
/// [`MAX_MODEL_JSON_LEN`](crate::model_file::MAX_MODEL_JSON_LEN), or invalid JSON.
pub fn model_dtype(json: &Path) -> Result<String, Error> {
    dtype_of(&json.display().to_string(), &read_json(json)?)
}

/// [`model_dtype`] of a description already in memory.
///
/// # Errors
/// As [`model_dtype`], naming the description `<model json>`.
pub fn model_dtype_bytes(json: &[u8]) -> Result<String, Error> {
    dtype_of(JSON_NAME, json_text(JSON_NAME, json)?)
}

fn dtype_of(name: &str, text: &str) -> Result<String, Error> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| named_error(name, format!("not valid JSON: {e}")))?;
    Ok(value
        .get("dtype")
        .and_then(|d| d.as_str())
        .unwrap_or("f32")
        .to_string())
}

/// f32 from a JSON number that must be an f32 value (finite and exactly an f32).
fn scale_of(what: &str, v: f64) -> Result<f32, String> {
    let s = v as f32;
    if f64::from(s) == v && s.is_finite() && s > 0.0 {
        Ok(s)
    } else {
        Err(format!("{what} {v} is not a finite positive float32 value"))
    }
}

impl QModel {
    /// Loads an int8 model (`docs/model-format.md`, "int8 models").
    ///
    /// # Errors
    /// [`Error::File`] for unreadable, corrupt or truncated files, unknown fields,
    /// layer kinds or dtypes, missing, unused or mis-shaped tensors, weights of -128,
    /// invalid scales or zero points, and for models whose shapes do not chain or
    /// that break the equivariance rule (unless accepted).
    pub fn load(json: impl AsRef<Path>, weights: impl AsRef<Path>) -> Result<QModel, Error> {
        let (json, weights) = (json.as_ref(), weights.as_ref());
        let text = read_json(json)?;
        load_from(
            (&json.display().to_string(), &text),
            (&weights.display().to_string(), || {
                std::fs::read(weights).map_err(|e| file_error(weights, format!("cannot read: {e}")))
            }),
        )
    }

    /// [`QModel::load`] of files already in memory: the description's bytes (UTF-8
    /// JSON) and the safetensors bytes. Errors name them `<model json>` and
    /// `<model weights>`.
    ///
    /// # Errors
    /// As [`QModel::load`].
    pub fn from_bytes(json: &[u8], weights: &[u8]) -> Result<QModel, Error> {
        load_from(
            (JSON_NAME, json_text(JSON_NAME, json)?),
            (WEIGHTS_NAME, || Ok(weights)),
        )
    }

    /// Writes the model as `json` + `weights` (the format [`QModel::load`] reads).
    /// Conv layers are named `conv1`, `conv2`, ..., dense layers `fc1`, `fc2`, ....
    ///
    /// # Errors
    /// [`Error::File`] when a file cannot be written.
    pub fn save(&self, json: impl AsRef<Path>, weights: impl AsRef<Path>) -> Result<(), Error> {
        let (json, weights) = (json.as_ref(), weights.as_ref());
        let Feature::Map {
            space,
            channels,
            height,
            width,
        } = *self.input()
        else {
            return Err(file_error(json, "the model input must be a feature map"));
        };
        let mut layers = Vec::new();
        let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let (mut convs, mut denses) = (0, 0);
        let le = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let lef = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        for layer in self.layers() {
            layers.push(match layer {
                QLayer::Conv(c) => {
                    convs += 1;
                    let name = format!("conv{convs}");
                    let [o, i, _, k, _] = c.weight_shape();
                    blobs.push((
                        format!("{name}.weight"),
                        Dtype::I8,
                        c.weight_shape().to_vec(),
                        c.weight().iter().map(|&v| v as u8).collect(),
                    ));
                    blobs.push((
                        format!("{name}.weight_scale"),
                        Dtype::F32,
                        vec![o],
                        lef(c.weight_scale()),
                    ));
                    if let Some(b) = c.bias() {
                        blobs.push((format!("{name}.bias"), Dtype::I32, vec![o], le(b)));
                    }
                    QLayerFile::Conv {
                        name,
                        from: space_name(c.pair().from()).into(),
                        to: space_name(c.pair().to()).into(),
                        in_channels: i,
                        out_channels: o,
                        kernel: k,
                        stride: Some(c.stride()),
                        padding: Some(padding_text(c.padding())),
                        bias: c.bias().is_some(),
                        relu: c.relu(),
                        output_scale: f64::from(c.output_params().scale),
                        output_zero_point: c.output_params().zero_point,
                    }
                }
                QLayer::Dense(d) => {
                    denses += 1;
                    let name = format!("fc{denses}");
                    let (o, i) = d.features();
                    blobs.push((
                        format!("{name}.weight"),
                        Dtype::I8,
                        vec![o, i],
                        d.weight().iter().map(|&v| v as u8).collect(),
                    ));
                    blobs.push((
                        format!("{name}.weight_scale"),
                        Dtype::F32,
                        vec![1],
                        lef(&[d.weight_scale()]),
                    ));
                    if let Some(b) = d.bias() {
                        blobs.push((format!("{name}.bias"), Dtype::I32, vec![o], le(b)));
                    }
                    QLayerFile::Dense {
                        name,
                        in_features: i,
                        out_features: o,
                        bias: d.bias().is_some(),
                        relu: d.relu(),
                        output_scale: f64::from(d.output_params().scale),
                        output_zero_point: d.output_params().zero_point,
                    }
                }
                QLayer::Relu => QLayerFile::Relu,
                QLayer::Pool(p) => {
                    let (window, stride, padding) =
                        (p.window, Some(p.stride), Some(padding_text(p.padding)));
                    match p.kind {
                        PoolKind::Max => QLayerFile::MaxPool {
                            window,
                            stride,
                            padding,
                        },
                        PoolKind::Avg => QLayerFile::AvgPool {
                            window,
                            stride,
                            padding,
                        },
                    }
                }
                QLayer::GroupPool(r) => QLayerFile::GroupPool {
                    mode: match r {
                        Reduce::Max => "max",
                        Reduce::Mean => "mean",
                    }
                    .into(),
                },
                QLayer::GlobalAvgPool => QLayerFile::GlobalAvgPool,
            });
        }
        let file = QModelFile {
            format: "gconv-model".into(),
            version: 1,
            dtype: "int8".into(),
            input: QInputFile {
                space: space_name(space).into(),
                channels,
                height,
                width,
                scale: f64::from(self.input_params().scale),
                zero_point: self.input_params().zero_point,
            },
            accept_non_equivariant: self.accepts_non_equivariant(),
            layers,
        };
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| file_error(json, format!("cannot serialise: {e}")))?;
        let views = blobs
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(weights, format!("cannot serialise: {e}")))?;
        let st = safetensors::serialize(views, &None)
            .map_err(|e| file_error(weights, format!("cannot serialise: {e}")))?;
        write_file(weights, &st)?;
        write_file(json, format!("{text}\n").as_bytes())
    }
}

/// Builds an int8 model from its description and safetensors bytes (read only once the
/// description has parsed), each with the name its errors give.
fn load_from<B: AsRef<[u8]>>(
    (json, text): (&str, &str),
    (weights, read_weights): (&str, impl FnOnce() -> Result<B, Error>),
) -> Result<QModel, Error> {
    let file: QModelFile = serde_json::from_str(text).map_err(|e| {
        named_error(
            json,
            format!("not a valid gconv int8 model description: {e}"),
        )
    })?;
    let bytes = read_weights()?;
    let st = parse_safetensors(weights, bytes.as_ref())?;
    let mut tensors = Tensors(
        st.tensors()
            .into_iter()
            .map(|(name, view)| {
                let raw = RawTensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                };
                (name, raw)
            })
            .collect(),
    );
    let model = build(file, &mut tensors).map_err(|e| named_error(json, e))?;
    if let Some(name) = tensors.0.keys().next() {
        return Err(named_error(
            weights,
            format!(
                "tensor {name:?} is not used by the model ({} unused in all): the description and the weights do not match",
                tensors.0.len()
            ),
        ));
    }
    Ok(model)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path
        .file_name()
        .ok_or_else(|| file_error(path, "not a file path"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            file_error(path, format!("cannot write: {e}"))
        })
}

fn space_name(s: Space) -> &'static str {
    match s {
        Space::Z2 => "z2",
        Space::C4 => "c4",
        Space::D4 => "d4",
    }
}

fn padding_text(p: gconv_core::Padding) -> String {
    match p {
        gconv_core::Padding::Valid => "valid".into(),
        gconv_core::Padding::Same => "same".into(),
        gconv_core::Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => format!("{top},{bottom},{left},{right}"),
    }
}

fn padding_of(text: Option<String>) -> Result<gconv_core::Padding, String> {
    text.map_or(Ok(gconv_core::Padding::Valid), |t| {
        parse_padding(&t).map_err(|e| e.to_string())
    })
}

fn params(what: &str, scale: f64, zero_point: i32) -> Result<QuantParams, String> {
    let p = QuantParams {
        scale: scale_of(what, scale)?,
        zero_point,
    };
    p.validate(gconv_core::QuantTensor::Output)
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(p)
}

fn build(file: QModelFile, tensors: &mut Tensors) -> Result<QModel, String> {
    if file.format != "gconv-model" || file.version != 1 || file.dtype != "int8" {
        return Err(format!(
            "format {:?} version {} dtype {:?}: expected \"gconv-model\" version 1 dtype \"int8\"",
            file.format, file.version, file.dtype
        ));
    }
    let space: Space = file
        .input
        .space
        .parse()
        .map_err(|e: Error| format!("input: {e}"))?;
    let input = Feature::Map {
        space,
        channels: file.input.channels,
        height: file.input.height,
        width: file.input.width,
    };
    let input_params = params("input scale", file.input.scale, file.input.zero_point)?;
    let mut current = input_params;
    let mut layers = Vec::with_capacity(file.layers.len());
    for (i, entry) in file.layers.into_iter().enumerate() {
        let layer =
            build_layer(entry, tensors, current).map_err(|e| format!("layer {}: {e}", i + 1))?;
        match &layer {
            QLayer::Conv(c) => current = c.output_params(),
            QLayer::Dense(d) => current = d.output_params(),
            _ => {}
        }
        layers.push(layer);
    }
    QModel::new(input, input_params, layers, file.accept_non_equivariant).map_err(|e| e.to_string())
}

fn build_layer(
    entry: QLayerFile,
    tensors: &mut Tensors,
    input: QuantParams,
) -> Result<QLayer, String> {
    let pool = |kind, window, stride: Option<usize>, padding| -> Result<QLayer, String> {
        Ok(QLayer::Pool(Pool2d {
            kind,
            window,
            stride: stride.unwrap_or(window),
            padding: padding_of(padding)?,
        }))
    };
    Ok(match entry {
        QLayerFile::Conv {
            name,
            from,
            to,
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            bias,
            relu,
            output_scale,
            output_zero_point,
        } => {
            let parse = |s: &str| s.parse::<Space>().map_err(|e| e.to_string());
            let pair = Pair::new(parse(&from)?, parse(&to)?).map_err(|e| e.to_string())?;
            let shape = [
                out_channels,
                in_channels,
                pair.from().planes(),
                kernel,
                kernel,
            ];
            let w = tensors.i8(&format!("{name}.weight"), &shape)?;
            let ws = tensors.f32(&format!("{name}.weight_scale"), &[out_channels])?;
            let b = if bias {
                Some(tensors.i32(&format!("{name}.bias"), &[out_channels])?)
            } else {
                None
            };
            let config = QConvConfig {
                pair,
                stride: stride.unwrap_or(1),
                padding: padding_of(padding)?,
                relu,
                input,
                output: params(
                    &format!("{name} output scale"),
                    output_scale,
                    output_zero_point,
                )?,
            };
            QLayer::Conv(QConv::new(config, &shape, w, ws, b).map_err(|e| format!("{name}: {e}"))?)
        }
        QLayerFile::Relu => QLayer::Relu,
        QLayerFile::MaxPool {
            window,
            stride,
            padding,
        } => pool(PoolKind::Max, window, stride, padding)?,
        QLayerFile::AvgPool {
            window,
            stride,
            padding,
        } => pool(PoolKind::Avg, window, stride, padding)?,
        QLayerFile::GroupPool { mode } => QLayer::GroupPool(match mode.as_str() {
            "max" => Reduce::Max,
            "mean" => Reduce::Mean,
            other => {
                return Err(format!(
                    "group_pool mode {other:?}: expected \"max\" or \"mean\""
                ));
            }
        }),
        QLayerFile::GlobalAvgPool => QLayer::GlobalAvgPool,
        QLayerFile::Dense {
            name,
            in_features,
            out_features,
            bias,
            relu,
            output_scale,
            output_zero_point,
        } => {
            let w = tensors.i8(&format!("{name}.weight"), &[out_features, in_features])?;
            let ws = tensors.f32(&format!("{name}.weight_scale"), &[1])?;
            let b = if bias {
                Some(tensors.i32(&format!("{name}.bias"), &[out_features])?)
            } else {
                None
            };
            let output = params(
                &format!("{name} output scale"),
                output_scale,
                output_zero_point,
            )?;
            let weight_scale = scale_of(&format!("{name}.weight_scale"), f64::from(ws[0]))?;
            QLayer::Dense(
                QDense::new(
                    out_features,
                    in_features,
                    w,
                    weight_scale,
                    b,
                    relu,
                    input,
                    output,
                )
                .map_err(|e| format!("{name}: {e}"))?,
            )
        }
    })
}

//! Loading [`Model`]s from `model.json` + `model.safetensors` (`docs/model-format.md`).
//! All reading and validation happens before a model exists: a failure returns an
//! error and nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use gconv_core::layers::Reduce;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::any::{AnyConv, Pair, Space, parse_padding};
use crate::error::Error;
use crate::model::{BatchNorm, Dense, Feature, Layer, Model};
use crate::pool::{Pool2d, PoolKind};
use crate::tensor::Tensor;

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads every tensor of a safetensors file as f32.
///
/// # Errors
/// [`Error::File`] for an unreadable, truncated or corrupt file or a tensor whose
/// dtype is not F32.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        file_error(
            path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(file_error(
                path,
                format!("tensor {name:?} has dtype {:?}, expected F32", view.dtype()),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let tensor = Tensor::new(view.shape().to_vec(), data)
            .map_err(|e| file_error(path, format!("tensor {name:?}: {e}")))?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// See [`Model::load`].
pub(crate) fn load(json: &Path, weights: &Path) -> Result<Model, Error> {
    let text =
        std::fs::read_to_string(json).map_err(|e| file_error(json, format!("cannot read: {e}")))?;
    // An int8 model fails the f32 schema on its first quantization field; say what
    // it is instead.
    let dtype = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("dtype").and_then(|d| d.as_str()).map(str::to_string));
    if dtype.as_deref() == Some("int8") {
        return Err(file_error(
            json,
            "this is an int8 model: load it with gconv_std::quant::QModel::load (`gconv run` detects it)",
        ));
    }
    let file: ModelFile = serde_json::from_str(&text)
        .map_err(|e| file_error(json, format!("not a valid gconv model description: {e}")))?;
    let mut tensors = read_safetensors(weights)?;
    // PyTorch's BatchNorm bookkeeping (an int64 counter) is not a weight.
    tensors.retain(|name, _| !name.ends_with(".num_batches_tracked"));
    let mut weights_left = Weights { tensors };
    let model = build(file, &mut weights_left).map_err(|e| file_error(json, e))?;
    if let Some(name) = weights_left.tensors.keys().next() {
        return Err(file_error(
            weights,
            format!(
                "tensor {name:?} is not used by the model ({} unused in all): the description and the weights do not match",
                weights_left.tensors.len()
            ),
        ));
    }
    Ok(model)
}

/// `model.json`, as in `docs/model-format.md`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    format: String,
    version: u32,
    /// `"f32"` (the default); int8 models are `crate::quant::QModel`'s.
    #[serde(default)]
    dtype: Option<String>,
    input: InputFile,
    #[serde(default)]
    accept_non_equivariant: bool,
    layers: Vec<LayerFile>,
}

/// The `input` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFile {
    space: String,
    channels: usize,
    height: usize,
    width: usize,
}

fn default_true() -> bool {
    true
}

fn default_eps() -> f64 {
    1e-5
}

/// One entry of `layers`.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum LayerFile {
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
    },
    BatchNorm {
        name: String,
        channels: usize,
        #[serde(default = "default_eps")]
        eps: f64,
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
    },
}

/// Tensors by name, each taken at most once; what is left at the end is unused.
struct Weights {
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Takes tensor `name`, which must have `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, String> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| format!("missing tensor {name:?} of shape {shape:?}"))?;
        if t.shape() != shape {
            return Err(format!(
                "tensor {name:?} has shape {:?}, expected {shape:?}",
                t.shape()
            ));
        }
        Ok(t)
    }
}

/// Builds the layers of `file` from `weights`.
fn build(file: ModelFile, weights: &mut Weights) -> Result<Model, String> {
    match file.dtype.as_deref() {
        None | Some("f32") => {}
        Some("int8") => {
            return Err(
                "this is an int8 model: load it with gconv_std::quant::QModel::load \
                        (`gconv run` detects it)"
                    .into(),
            );
        }
        Some(other) => return Err(format!("dtype {other:?}: expected \"f32\" or \"int8\"")),
    }
    if file.format != "gconv-model" || file.version != 1 {
        return Err(format!(
            "format {:?} version {}: expected \"gconv-model\" version 1",
            file.format, file.version
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
    let mut layers = Vec::with_capacity(file.layers.len());
    for (i, entry) in file.layers.into_iter().enumerate() {
        let layer = build_layer(entry, weights).map_err(|e| format!("layer {}: {e}", i + 1))?;
        layers.push(layer);
    }
    Model::new(input, layers, file.accept_non_equivariant).map_err(|e| e.to_string())
}

fn padding_of(text: Option<String>) -> Result<gconv_core::Padding, String> {
    text.map_or(Ok(gconv_core::Padding::Valid), |t| {
        parse_padding(&t).map_err(|e| e.to_string())
    })
}

fn pool_layer(
    kind: PoolKind,
    window: usize,
    stride: Option<usize>,
    padding: Option<String>,
) -> Result<Layer, String> {
    Ok(Layer::Pool(Pool2d {
        kind,
        window,
        stride: stride.unwrap_or(window),
        padding: padding_of(padding)?,
    }))
}

fn build_layer(entry: LayerFile, weights: &mut Weights) -> Result<Layer, String> {
    Ok(match entry {
        LayerFile::Conv {
            name,
            from,
            to,
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            bias,
        } => {
            let parse = |s: &str| s.parse::<Space>().map_err(|e| e.to_string());
            let pair = Pair::new(parse(&from)?, parse(&to)?).map_err(|e| e.to_string())?;
            let w = weights.take(
                &format!("{name}.weight"),
                &[
                    out_channels,
                    in_channels,
                    pair.from().planes(),
                    kernel,
                    kernel,
                ],
            )?;
            let b = if bias {
                Some(
                    weights
                        .take(&format!("{name}.bias"), &[out_channels])?
                        .into_parts()
                        .1,
                )
            } else {
                None
            };
            let conv = AnyConv::from_weights(pair, w, b, stride.unwrap_or(1), padding_of(padding)?)
                .map_err(|e| format!("{name}: {e}"))?;
            Layer::Conv(conv)
        }
        LayerFile::BatchNorm {
            name,
            channels,
            eps,
        } => {
            let mut get = |p: &str| {
                weights
                    .take(&format!("{name}.{p}"), &[channels])
                    .map(|t| t.into_parts().1)
            };
            let (g, b, m, v) = (
                get("weight")?,
                get("bias")?,
                get("running_mean")?,
                get("running_var")?,
            );
            Layer::BatchNorm(
                BatchNorm::new(&g, &b, &m, &v, eps).map_err(|e| format!("{name}: {e}"))?,
            )
        }
        LayerFile::Relu => Layer::Relu,
        LayerFile::MaxPool {
            window,
            stride,
            padding,
        } => pool_layer(PoolKind::Max, window, stride, padding)?,
        LayerFile::AvgPool {
            window,
            stride,
            padding,
        } => pool_layer(PoolKind::Avg, window, stride, padding)?,
        LayerFile::GroupPool { mode } => Layer::GroupPool(match mode.as_str() {
            "max" => Reduce::Max,
            "mean" => Reduce::Mean,
            other => {
                return Err(format!(
                    "group_pool mode {other:?}: expected \"max\" or \"mean\""
                ));
            }
        }),
        LayerFile::GlobalAvgPool => Layer::GlobalAvgPool,
        LayerFile::Dense {
            name,
            in_features,
            out_features,
            bias,
        } => {
            let w = weights.take(&format!("{name}.weight"), &[out_features, in_features])?;
            let b = if bias {
                Some(
                    weights
                        .take(&format!("{name}.bias"), &[out_features])?
                        .into_parts()
                        .1,
                )
            } else {
                None
            };
            Layer::Dense(Dense::new(w, b).map_err(|e| e.to_string())?)
        }
    })
}

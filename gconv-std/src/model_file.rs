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

/// The longest model description (`model.json`) accepted, in bytes. A real one is a
/// few kilobytes; the limit is checked against the file's length before it is read.
pub const MAX_MODEL_JSON_LEN: u64 = 16 * 1024 * 1024;

/// The longest safetensors header (the JSON after the 8-byte length) accepted, in
/// bytes, checked before the header is parsed. A model with a thousand tensors has a
/// header of about 100 kB.
pub const MAX_SAFETENSORS_HEADER_LEN: u64 = 16 * 1024 * 1024;

/// The name errors give a model description passed as bytes.
pub(crate) const JSON_NAME: &str = "<model json>";

/// The name errors give safetensors weights passed as bytes.
pub(crate) const WEIGHTS_NAME: &str = "<model weights>";

fn file_error(path: &Path, message: impl Into<String>) -> Error {
    named_error(&path.display().to_string(), message)
}

pub(crate) fn named_error(name: &str, message: impl Into<String>) -> Error {
    Error::File {
        path: name.to_string(),
        message: message.into(),
    }
}

/// The error for a description longer than [`MAX_MODEL_JSON_LEN`].
fn json_too_long(name: &str, len: u64) -> Error {
    named_error(
        name,
        format!(
            "the model description is {len} bytes, more than the limit of \
             {MAX_MODEL_JSON_LEN} (is this a model.json?)"
        ),
    )
}

/// Reads a model description, refusing one longer than [`MAX_MODEL_JSON_LEN`] before
/// reading it.
pub(crate) fn read_json(path: &Path) -> Result<String, Error> {
    let cannot = |e: std::io::Error| file_error(path, format!("cannot read: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    if len > MAX_MODEL_JSON_LEN {
        return Err(json_too_long(&path.display().to_string(), len));
    }
    let mut text = String::new();
    // `take`: a file that grows while it is read still stops at the limit.
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_MODEL_JSON_LEN + 1),
        &mut text,
    )
    .map_err(cannot)?;
    if text.len() as u64 > MAX_MODEL_JSON_LEN {
        return Err(json_too_long(
            &path.display().to_string(),
            text.len() as u64,
        ));
    }
    Ok(text)
}

/// A model description passed as bytes, as text: at most [`MAX_MODEL_JSON_LEN`] bytes
/// of UTF-8.
pub(crate) fn json_text<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, Error> {
    if bytes.len() as u64 > MAX_MODEL_JSON_LEN {
        return Err(json_too_long(name, bytes.len() as u64));
    }
    std::str::from_utf8(bytes)
        .map_err(|e| named_error(name, format!("cannot read: not UTF-8: {e}")))
}

/// Parses a safetensors file in memory, checking its header length against
/// [`MAX_SAFETENSORS_HEADER_LEN`] and the file's length first.
///
/// # Errors
/// [`Error::File`] naming `name` for a header that claims more than the limit or than
/// the file holds, and for an invalid file.
pub(crate) fn parse_safetensors<'a>(name: &str, bytes: &'a [u8]) -> Result<SafeTensors<'a>, Error> {
    let invalid = |why: String| {
        named_error(
            name,
            format!("not a valid safetensors file (truncated or corrupt?): {why}"),
        )
    };
    let Some(&head) = bytes.first_chunk::<8>() else {
        return Err(invalid(format!(
            "{} bytes, fewer than the 8 of the header length",
            bytes.len()
        )));
    };
    let header_len = u64::from_le_bytes(head);
    let available = bytes.len() as u64 - 8;
    if header_len > MAX_SAFETENSORS_HEADER_LEN {
        return Err(invalid(format!(
            "the header claims {header_len} bytes, more than the limit of \
             {MAX_SAFETENSORS_HEADER_LEN}"
        )));
    }
    if header_len > available {
        return Err(invalid(format!(
            "the header claims {header_len} bytes but only {available} follow its length"
        )));
    }
    SafeTensors::deserialize(bytes).map_err(|e| invalid(e.to_string()))
}

/// Reads every tensor of a safetensors file as f32.
///
/// # Errors
/// [`Error::File`] for an unreadable, truncated or corrupt file, a header longer than
/// [`MAX_SAFETENSORS_HEADER_LEN`] or a tensor whose dtype is not F32.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    read_safetensors_bytes(&path.display().to_string(), &bytes)
}

/// [`read_safetensors`] of a file already in memory; errors name it `name`.
///
/// # Errors
/// As [`read_safetensors`].
pub fn read_safetensors_bytes(name: &str, bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, Error> {
    let st = parse_safetensors(name, bytes)?;
    let mut out = BTreeMap::new();
    for (tensor_name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(named_error(
                name,
                format!(
                    "tensor {tensor_name:?} has dtype {:?}, expected F32",
                    view.dtype()
                ),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let tensor = Tensor::new(view.shape().to_vec(), data)
            .map_err(|e| named_error(name, format!("tensor {tensor_name:?}: {e}")))?;
        out.insert(tensor_name, tensor);
    }
    Ok(out)
}

/// See [`Model::load`].
pub(crate) fn load(json: &Path, weights: &Path) -> Result<Model, Error> {
    let text = read_json(json)?;
    load_from(
        (&json.display().to_string(), &text),
        (&weights.display().to_string(), || {
            std::fs::read(weights).map_err(|e| file_error(weights, format!("cannot read: {e}")))
        }),
    )
}

/// See [`Model::from_bytes`].
pub(crate) fn load_bytes(json: &[u8], weights: &[u8]) -> Result<Model, Error> {
    load_from(
        (JSON_NAME, json_text(JSON_NAME, json)?),
        (WEIGHTS_NAME, || Ok(weights)),
    )
}

/// Builds a model from its description and safetensors bytes (read only once the
/// description has parsed), each with the name its errors give.
fn load_from<B: AsRef<[u8]>>(
    (json, text): (&str, &str),
    (weights, read_weights): (&str, impl FnOnce() -> Result<B, Error>),
) -> Result<Model, Error> {
    // An int8 model fails the f32 schema on its first quantization field; say what
    // it is instead.
    let dtype = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("dtype").and_then(|d| d.as_str()).map(str::to_string));
    if dtype.as_deref() == Some("int8") {
        return Err(named_error(
            json,
            "this is an int8 model: load it with gconv_std::quant::QModel::load (`gconv run` detects it)",
        ));
    }
    let file: ModelFile = serde_json::from_str(text)
        .map_err(|e| named_error(json, format!("not a valid gconv model description: {e}")))?;
    let mut tensors = read_safetensors_bytes(weights, read_weights()?.as_ref())?;
    // PyTorch's BatchNorm bookkeeping (an int64 counter) is not a weight.
    tensors.retain(|name, _| !name.ends_with(".num_batches_tracked"));
    let mut weights_left = Weights { tensors };
    let model = build(file, &mut weights_left).map_err(|e| named_error(json, e))?;
    if let Some(name) = weights_left.tensors.keys().next() {
        return Err(named_error(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QModel;
    use crate::quant::file::{model_dtype, model_dtype_bytes};

    /// A safetensors file of F32 tensors filled with `0.25`.
    fn safetensors(tensors: &[(&str, &[usize])]) -> Vec<u8> {
        let blobs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let bytes = std::iter::repeat_n(0.25f32.to_le_bytes(), n)
                    .flatten()
                    .collect();
                (name.to_string(), shape.to_vec(), bytes)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = blobs
            .iter()
            .map(|(name, shape, bytes)| {
                let view =
                    safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap();
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize(views, &None).unwrap()
    }

    /// One Z2 -> C4 conv (1 -> 1 channel, K = 3, no bias) on an `h x w` input.
    fn one_conv(h: &str, w: &str, padding: &str) -> String {
        format!(
            r#"{{"format": "gconv-model", "version": 1,
                "input": {{"space": "z2", "channels": 1, "height": {h}, "width": {w}}},
                "layers": [{{"kind": "conv", "name": "c", "from": "z2", "to": "c4",
                  "in_channels": 1, "out_channels": 1, "kernel": 3, "padding": "{padding}",
                  "bias": false}}]}}"#
        )
    }

    fn message<T>(r: Result<T, Error>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bytes_load_like_files() {
        let weights = safetensors(&[("c.weight", &[1, 1, 1, 3, 3])]);
        let json = one_conv("5", "5", "same");
        let model = Model::from_bytes(json.as_bytes(), &weights).unwrap();
        assert_eq!(model.output().shape(1), vec![1, 1, 4, 5, 5]);
        let e = message(Model::from_bytes(
            json.as_bytes(),
            &weights[..weights.len() - 1],
        ));
        assert!(
            e.starts_with("<model weights>: not a valid safetensors"),
            "{e}"
        );
        let e = message(Model::from_bytes(b"{", &weights));
        assert!(
            e.starts_with("<model json>: not a valid gconv model"),
            "{e}"
        );
        assert_eq!(model_dtype_bytes(json.as_bytes()).unwrap(), "f32");
    }

    #[test]
    fn a_model_description_over_the_limit_is_refused_before_it_is_read() {
        let huge = vec![b' '; MAX_MODEL_JSON_LEN as usize + 1];
        let limit = "more than the limit of 16777216";
        for e in [
            message(Model::from_bytes(&huge, &[])),
            message(QModel::from_bytes(&huge, &[])),
            message(model_dtype_bytes(&huge)),
        ] {
            assert!(e.starts_with("<model json>: ") && e.contains(limit), "{e}");
        }
        // On disk: a sparse file of 16 MiB + 1 is refused from its length.
        let dir = std::env::temp_dir().join(format!("gconv-model-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("huge.json");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_MODEL_JSON_LEN + 1).unwrap();
        for e in [
            message(Model::load(&path, dir.join("none"))),
            message(QModel::load(&path, dir.join("none"))),
            message(model_dtype(&path)),
        ] {
            assert!(e.contains("huge.json") && e.contains(limit), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        // serde_json stops at 128 levels; 100,000 would overflow any stack.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = message(model_dtype_bytes(deep.as_bytes()));
        assert!(e.contains("recursion limit exceeded"), "{e}");
        for e in [
            message(Model::from_bytes(deep.as_bytes(), &[])),
            message(QModel::from_bytes(deep.as_bytes(), &[])),
        ] {
            assert!(e.contains("not a valid gconv"), "{e}");
        }
        let nested_layer = format!(
            r#"{{"format": "gconv-model", "version": 1, "layers": [{}]}}"#,
            "{\"kind\": ".repeat(200)
        );
        assert!(Model::from_bytes(nested_layer.as_bytes(), &[]).is_err());
    }

    #[test]
    fn a_safetensors_header_that_claims_terabytes_is_refused() {
        let json = one_conv("5", "5", "same");
        let mut weights = (1u64 << 40).to_le_bytes().to_vec();
        weights.extend(b"{}");
        let e = message(Model::from_bytes(json.as_bytes(), &weights));
        assert!(
            e.contains("the header claims 1099511627776 bytes, more than the limit of 16777216"),
            "{e}"
        );
        let e = message(QModel::from_bytes(b"{}", &weights));
        assert!(
            e.contains("<model json>"),
            "the description is checked first: {e}"
        );
        let e = message(read_safetensors_bytes("w", &weights));
        assert!(e.contains("more than the limit"), "{e}");
        // Within the limit, but more than the file holds.
        let mut weights = 1000u64.to_le_bytes().to_vec();
        weights.extend(b"{\"a\": 1}");
        let e = message(read_safetensors_bytes("w", &weights));
        assert!(
            e.contains("the header claims 1000 bytes but only 8 follow its length"),
            "{e}"
        );
        let e = message(read_safetensors_bytes("w", &[1, 2, 3]));
        assert!(e.contains("3 bytes, fewer than the 8"), "{e}");
    }

    #[test]
    fn a_safetensors_tensor_that_claims_more_than_the_file_is_refused() {
        for shape in ["[1000000, 1000000]", "[4294967296, 4294967296, 4294967296]"] {
            let header =
                format!(r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,4]}}}}"#);
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend(header.as_bytes());
            bytes.extend([0; 4]);
            let e = message(read_safetensors_bytes("w", &bytes));
            assert!(e.contains("not a valid safetensors file"), "{e}");
        }
    }

    #[test]
    fn huge_sizes_in_the_description_are_errors() {
        let weights = safetensors(&[("c.weight", &[1, 1, 1, 3, 3])]);
        let max = usize::MAX.to_string();
        for (h, w, padding) in [
            (max.as_str(), "5", "same"),
            (max.as_str(), max.as_str(), "18446744073709551615"),
            ("0", "0", "valid"),
        ] {
            let json = one_conv(h, w, padding);
            assert!(
                Model::from_bytes(json.as_bytes(), &weights).is_err(),
                "{h} {w} {padding}"
            );
        }
        // A buffer size that overflows is an error too; a huge one that fits is a model
        // (nothing is allocated for it).
        let json = one_conv(&max, &max, "valid");
        let e = message(Model::from_bytes(json.as_bytes(), &weights));
        assert!(e.contains("overflows"), "{e}");
        let json = one_conv("1048576", "1048576", "valid");
        let model = Model::from_bytes(json.as_bytes(), &weights).unwrap();
        assert_eq!(model.output().shape(1)[4], 1_048_574);
    }
}

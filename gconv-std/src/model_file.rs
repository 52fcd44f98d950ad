//! Loading [`Model`]s from `model.json` + `model.safetensors` (`docs/model-format.md`).
//! All reading and validation happens before a model exists: a failure returns an
//! error and nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::Error;
use crate::model::{Model, ModelFile, Weights, build};
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

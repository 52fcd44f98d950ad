//! The model loaders, f32 (`Model`) and int8 (`QModel`), on a description and weights
//! cut from one input: `[u32 LE n][n bytes of model.json][model.safetensors]`. A model
//! that loads must run on a zero input of its shape (when that input is small).
#![no_main]

use gconv_std::quant::QModel;
use gconv_std::quant::file::model_dtype_bytes;
use gconv_std::{Model, Tensor};
use libfuzzer_sys::fuzz_target;

/// The largest input (values per batch item) a loaded model is run on.
const MAX_RUN_INPUT: usize = 4096;

/// Splits `[u32 LE n][n bytes][rest]`; `n` is clamped to what is there.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return (data, &[]);
    };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    rest.split_at(n)
}

/// A zero input of `shape` when it is small enough to run.
fn small_zeros(shape: Vec<usize>) -> Option<Tensor> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    (n <= MAX_RUN_INPUT).then(|| Tensor::zeros(shape))
}

fuzz_target!(|data: &[u8]| {
    let (json, weights) = split(data);
    let _ = model_dtype_bytes(json);
    match Model::from_bytes(json, weights) {
        Ok(model) => {
            if let Some(x) = small_zeros(model.input().shape(1)) {
                model
                    .forward(&x)
                    .expect("a loaded model runs on its input shape");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match QModel::from_bytes(json, weights) {
        Ok(model) => {
            if let Some(x) = small_zeros(model.input().shape(1)) {
                model
                    .forward_f32(&x)
                    .expect("a loaded int8 model runs on its input shape");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

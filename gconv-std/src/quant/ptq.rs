//! Post-training quantization: a float [`Model`] and a calibration batch to an int8
//! [`QModel`].
//!
//! 1. Batch norms that follow a convolution are folded into it
//!    ([`Model::fold_batch_norm`]); a ReLU that follows a convolution or dense layer is
//!    fused into it.
//! 2. The float model runs on the calibration batch; every tensor's range `[lo, hi]`
//!    (widened to contain 0) gives its asymmetric quantization
//!    `scale = (hi - lo) / 255`, `zero_point = round(-128 - lo / scale)` (the input's
//!    from the batch itself, a conv's or dense layer's from its output after the fused
//!    ReLU). Pooling, ReLU, group pooling and global average pooling keep their
//!    input's quantization, as TFLite requires.
//! 3. Weights: symmetric, one scale per output **G-channel** (`max |w[o]| / 127`, shared
//!    by the `|G|` planes, which keeps the model exactly equivariant), dense layers one
//!    scale per tensor; `w_q = round(w / scale)` in `[-127, 127]`. Biases:
//!    `round(b / (input_scale * weight_scale))` in int32.
//!
//! Refused, with the layer named: a batch norm that does not follow a convolution and
//! a pointwise activation other than ReLU.

use gconv_core::quant::QuantParams;

use crate::error::Error;
use crate::model::{Layer, Model};
use crate::quant::{QConv, QConvConfig, QDense, QLayer, QModel};
use crate::tensor::Tensor;

/// The asymmetric int8 quantization of values in `[lo, hi]` (widened to contain 0):
/// `scale = (hi - lo) / 255`, `zero_point = round(-128 - lo / scale)`. A range that
/// is a single point gets scale 1.
pub fn params_for_range(lo: f32, hi: f32) -> QuantParams {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo && (hi - lo).is_finite() {
        (hi - lo) / 255.0
    } else {
        1.0
    };
    let zero_point = (-128.0 - f64::from(lo) / f64::from(scale))
        .round()
        .clamp(-128.0, 127.0) as i32;
    QuantParams { scale, zero_point }
}

/// [`params_for_range`] of a tensor's values.
fn params_of(t: &Tensor) -> QuantParams {
    let (lo, hi) = t
        .data()
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    params_for_range(lo, hi)
}

/// Symmetric per-group quantization of `w`: `groups` equal runs, each with scale
/// `max |w| / 127` (1 for an all-zero run) and values `round(w / scale)`.
fn quantize_weights(w: &[f32], groups: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / groups.max(1);
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(groups);
    for run in w.chunks(per.max(1)) {
        let max = run.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(run.iter().map(|&v| {
            (f64::from(v) / f64::from(scale))
                .round()
                .clamp(-127.0, 127.0) as i8
        }));
        scales.push(scale);
    }
    (q, scales)
}

/// `round(b / (input_scale * weight_scale))` as int32.
fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> Result<Vec<i32>, Error> {
    b.iter()
        .zip(weight_scales.iter().cycle())
        .map(|(&v, &ws)| {
            let q = (f64::from(v) / (f64::from(input_scale) * f64::from(ws))).round();
            if q.abs() < 2f64.powi(31) {
                Ok(q as i32)
            } else {
                Err(Error::Usage(format!(
                    "bias {v} does not fit int32 at scale {}",
                    f64::from(input_scale) * f64::from(ws)
                )))
            }
        })
        .collect()
}

/// Quantizes `model` with activation ranges measured on `calibration` (a batch of
/// the model's input shape).
///
/// # Errors
/// [`Error::Usage`] naming the layer (1-based, in the model as given) for a layer
/// int8 cannot express (see the module docs); the errors of running the model.
pub fn quantize_model(model: &Model, calibration: &Tensor) -> Result<QModel, Error> {
    // Map folded layers back to the numbering the user wrote.
    let mut original_index = Vec::new();
    for (i, layer) in model.layers().iter().enumerate() {
        let folded_away = matches!(layer, Layer::BatchNorm(_))
            && i > 0
            && matches!(model.layers()[i - 1], Layer::Conv(_));
        if !folded_away {
            original_index.push(i + 1);
        }
    }
    let folded = model.fold_batch_norm()?;
    let trace = folded.forward_trace(calibration)?;
    let input_params = params_of(calibration);
    let layers = folded.layers();
    let mut out = Vec::with_capacity(layers.len());
    let mut params = input_params;
    let mut i = 0;
    while i < layers.len() {
        let at = |e: String| {
            Error::Usage(format!(
                "layer {}: {e}",
                original_index.get(i).copied().unwrap_or(i + 1)
            ))
        };
        let fuse_relu = matches!(layers.get(i + 1), Some(Layer::Relu));
        // The output after the fused ReLU, if any.
        let y = &trace[if fuse_relu { i + 1 } else { i }];
        let layer = match &layers[i] {
            Layer::Conv(conv) => {
                let out_params = params_of(y);
                let (w, scales) = quantize_weights(conv.weight().data(), conv.out_channels());
                let bias = conv
                    .bias()
                    .map(|b| quantize_bias(b, params.scale, &scales))
                    .transpose()
                    .map_err(|e| at(e.to_string()))?;
                let config = QConvConfig {
                    pair: conv.pair(),
                    stride: conv.stride(),
                    padding: conv.padding(),
                    relu: fuse_relu,
                    input: params,
                    output: out_params,
                };
                let q = QConv::new(config, conv.weight().shape(), w, scales, bias)
                    .map_err(|e| at(e.to_string()))?;
                params = out_params;
                i += usize::from(fuse_relu);
                QLayer::Conv(q)
            }
            Layer::Dense(d) => {
                let out_params = params_of(y);
                let (o, n_in) = (d.weight().shape()[0], d.weight().shape()[1]);
                let (w, scales) = quantize_weights(d.weight().data(), 1);
                let bias = d
                    .bias()
                    .map(|b| quantize_bias(b, params.scale, &scales))
                    .transpose()
                    .map_err(|e| at(e.to_string()))?;
                let q = QDense::new(o, n_in, w, scales[0], bias, fuse_relu, params, out_params)
                    .map_err(|e| at(e.to_string()))?;
                params = out_params;
                i += usize::from(fuse_relu);
                QLayer::Dense(q)
            }
            Layer::Relu => QLayer::Relu,
            Layer::Pool(pool) => QLayer::Pool(*pool),
            Layer::GroupPool(reduce) => QLayer::GroupPool(*reduce),
            Layer::GlobalAvgPool => QLayer::GlobalAvgPool,
            Layer::BatchNorm(_) => {
                return Err(at(
                    "batch norm that does not follow a convolution cannot be folded, and int8 \
                     has no batch norm layer"
                        .into(),
                ));
            }
            Layer::Pointwise(_) => {
                return Err(at(
                    "pointwise activations other than ReLU have no int8 form".into(),
                ));
            }
        };
        out.push(layer);
        i += 1;
    }
    QModel::new(
        model.input().clone(),
        input_params,
        out,
        model.accepts_non_equivariant(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_give_int8_params() {
        let p = params_for_range(-1.0, 3.0);
        assert_eq!(p.scale, 4.0 / 255.0);
        assert_eq!(p.zero_point, -64);
        assert_eq!(p.quantize(0.0), -64);
        assert_eq!(p.quantize(-1.0), -128);
        assert_eq!(p.quantize(3.0), 127);
        // Non-negative data (after a ReLU): zero at -128.
        assert_eq!(params_for_range(0.5, 2.0).zero_point, -128);
        assert_eq!(params_for_range(0.0, 0.0).scale, 1.0);
    }

    #[test]
    fn weights_per_group_and_bias() {
        let (q, s) = quantize_weights(&[1.0, -0.5, 0.0, 0.0, 2.0, -2.0], 3);
        assert_eq!(q, vec![127, -64, 0, 0, 127, -127]);
        assert_eq!(s, vec![1.0 / 127.0, 1.0, 2.0 / 127.0]);
        assert_eq!(
            quantize_bias(&[1.0, -1.0], 0.5, &[0.25, 0.5]).unwrap(),
            vec![8, -4]
        );
        assert!(quantize_bias(&[1e12], 1e-3, &[1e-3]).is_err());
    }
}

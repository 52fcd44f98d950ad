//! Bit-exact against TFLite itself: the goldens in `tools/golden/int8-*` were computed by
//! LiteRT's reference kernels on the equivalent planar graphs (`tools/int8/`, see its
//! README); every gconv int8 output must equal them, bit for bit.
//!
//! * `int8-conv`: 240 convolutions, 4 pairs x K 1..5 x stride 1, 2 x valid / same /
//!   asymmetric padding x odd (7x7) and even non-square (6x8) sizes, fused ReLU and
//!   bias on and off;
//! * `int8-layers`: max / average pooling (TFLite's rounding and padding count), group
//!   max / mean pooling, global average pooling, dense, ReLU;
//! * whole int8 model files: three random ones through every layer kind, and the
//!   quantized digits models on their 300 rotated test images.

use std::path::{Path, PathBuf};

use gconv_core::Padding;
use gconv_core::layers::Reduce;
use gconv_core::pool::PoolShape;
use gconv_core::quant::layers::{DenseQuant, DenseScale};
use gconv_core::quant::{QuantParams, layers};
use gconv_std::npy::{read_npy, read_npy_i8};
use gconv_std::quant::{QConv, QConvConfig, QModel, QTensor};
use gconv_std::{Pair, Space};
use serde_json::Value;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/golden")
        .join(name)
}

/// One golden set: the case list and the flat arrays it indexes.
struct Golden {
    cases: Vec<Value>,
    inputs: Vec<i8>,
    weights: Vec<i8>,
    weight_scales: Vec<f32>,
    biases: Vec<i32>,
    outputs: Vec<i8>,
}

fn read<T: npyz::Deserialize>(path: &Path) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap()
}

fn load(name: &str) -> Golden {
    let dir = golden(name);
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    Golden {
        cases,
        inputs: read(&dir.join("inputs.npy")),
        weights: read(&dir.join("weights.npy")),
        weight_scales: read(&dir.join("weight_scales.npy")),
        biases: read(&dir.join("biases.npy")),
        outputs: read(&dir.join("outputs.npy")),
    }
}

fn u(case: &Value, key: &str) -> usize {
    case[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {case}")) as usize
}

fn i(case: &Value, key: &str) -> i32 {
    case[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} in {case}")) as i32
}

/// A scale, which must be exactly a float32.
fn f(case: &Value, key: &str) -> f32 {
    let v = case[key].as_f64().unwrap();
    assert_eq!(f64::from(v as f32), v, "{key} is not a float32 value");
    v as f32
}

fn slice<'a, T>(all: &'a [T], case: &Value, name: &str) -> &'a [T] {
    let (o, l) = (
        u(case, &format!("{name}_offset")),
        u(case, &format!("{name}_len")),
    );
    &all[o..o + l]
}

fn space(text: &str) -> Space {
    text.parse().unwrap()
}

#[test]
fn convolutions_equal_tflite_bit_for_bit() {
    let g = load("int8-conv");
    assert_eq!(g.cases.len(), 240);
    let mut seen = std::collections::BTreeSet::new();
    for case in &g.cases {
        let pair = Pair::new(
            space(case["from"].as_str().unwrap()),
            space(case["to"].as_str().unwrap()),
        )
        .unwrap();
        let p: Vec<usize> = case["padding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let padding = Padding::Explicit {
            top: p[0],
            bottom: p[1],
            left: p[2],
            right: p[3],
        };
        let (k, c_in, c_out) = (
            u(case, "kernel"),
            u(case, "in_channels"),
            u(case, "out_channels"),
        );
        let nti = pair.from().planes();
        let input = QuantParams {
            scale: f(case, "input_scale"),
            zero_point: i(case, "input_zero_point"),
        };
        let config = QConvConfig {
            pair,
            stride: u(case, "stride"),
            padding,
            relu: case["relu"].as_bool().unwrap(),
            input,
            output: QuantParams {
                scale: f(case, "output_scale"),
                zero_point: i(case, "output_zero_point"),
            },
        };
        let bias = case["has_bias"]
            .as_bool()
            .unwrap()
            .then(|| slice(&g.biases, case, "biases").to_vec());
        let layer = QConv::new(
            config,
            &[c_out, c_in, nti, k, k],
            slice(&g.weights, case, "weights").to_vec(),
            slice(&g.weight_scales, case, "weight_scales").to_vec(),
            bias,
        )
        .unwrap();
        let (n, h, w) = (u(case, "batch"), u(case, "height"), u(case, "width"));
        let shape = if nti == 1 {
            vec![n, c_in, h, w]
        } else {
            vec![n, c_in, nti, h, w]
        };
        let x = QTensor::new(shape, slice(&g.inputs, case, "inputs").to_vec(), input).unwrap();
        let y = layer.forward(&x).unwrap();
        let want = slice(&g.outputs, case, "outputs");
        let differing = y.data().iter().zip(want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "case {}: {} K={k} stride {} padding {p:?} {h}x{w}: {differing} of {} outputs differ from TFLite",
            case["id"],
            pair.name(),
            config.stride,
            want.len()
        );
        assert_eq!(y.data().len(), want.len());
        seen.insert((
            pair.name(),
            k,
            config.stride,
            case["padding_name"].to_string(),
            h,
            w,
        ));
    }
    assert_eq!(seen.len(), 240, "every configuration once");
}

fn pool_shape(case: &Value, planes: usize) -> PoolShape {
    let p: Vec<usize> = case["padding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    PoolShape {
        planes,
        height: u(case, "height"),
        width: u(case, "width"),
        window: u(case, "window"),
        stride: u(case, "stride"),
        padding: Padding::Explicit {
            top: p[0],
            bottom: p[1],
            left: p[2],
            right: p[3],
        },
    }
}

#[test]
fn other_layers_equal_tflite_bit_for_bit() {
    let g = load("int8-layers");
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut micro_differences = 0;
    let mut same_avg = 0;
    for case in &g.cases {
        let kind = case["kind"].as_str().unwrap();
        let x = slice(&g.inputs, case, "inputs");
        let want = slice(&g.outputs, case, "outputs");
        let mut y = vec![0i8; want.len()];
        let shape: Vec<usize> = case["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        // Pooling keeps the input's quantization.
        if kind != "dense" {
            assert_eq!(case["input_scale"], case["output_scale"]);
            assert_eq!(case["input_zero_point"], case["output_zero_point"]);
        }
        match kind {
            "max_pool" | "avg_pool" => {
                let planes = shape[..shape.len() - 2].iter().product();
                let ps = pool_shape(case, planes);
                let zp = i(case, "input_zero_point");
                if kind == "max_pool" {
                    layers::max_pool(&ps, x, &mut y).unwrap();
                } else if case["count_excludes_padding"].as_bool() == Some(true)
                    && case["tflite_padding"].as_str() == Some("SAME")
                {
                    layers::avg_pool_in_map(&ps, x, &mut y).unwrap();
                    same_avg += 1;
                } else {
                    // VALID windows: both variants agree.
                    layers::avg_pool(&ps, zp, x, &mut y).unwrap();
                    let mut in_map = vec![0i8; y.len()];
                    layers::avg_pool_in_map(&ps, x, &mut in_map).unwrap();
                    assert_eq!(in_map, y);
                }
            }
            "group_pool" => {
                let reduce = match case["mode"].as_str().unwrap() {
                    "max" => Reduce::Max,
                    _ => Reduce::Mean,
                };
                let (n, c, gg) = (u(case, "batch"), u(case, "channels"), u(case, "G"));
                let plane = u(case, "height") * u(case, "width");
                layers::group_pool(reduce, n * c, gg, plane, x, &mut y).unwrap();
            }
            "global_avg_pool" => {
                let plane = u(case, "height") * u(case, "width");
                layers::global_avg_pool(want.len(), plane, x, &mut y).unwrap();
            }
            "relu" => {
                y.copy_from_slice(x);
                layers::relu(&mut y, i(case, "input_zero_point")).unwrap();
            }
            "dense" => {
                let (zp_in, zp_out) = (i(case, "input_zero_point"), i(case, "output_zero_point"));
                let scales = (
                    f(case, "input_scale"),
                    f(case, "weight_scale"),
                    f(case, "output_scale"),
                );
                let relu = case["relu"].as_bool().unwrap();
                let bias = case["has_bias"]
                    .as_bool()
                    .unwrap()
                    .then(|| slice(&g.biases, case, "biases"));
                let run = |scale: DenseScale, y: &mut [i8]| {
                    let quant = DenseQuant {
                        input_zero_point: zp_in,
                        output_zero_point: zp_out,
                        scale,
                        relu,
                    };
                    layers::dense(
                        u(case, "batch"),
                        u(case, "in_features"),
                        u(case, "out_features"),
                        &quant,
                        x,
                        slice(&g.weights, case, "weights"),
                        bias,
                        y,
                    )
                    .unwrap();
                };
                // TFLite Micro's fixed-point form differs from LiteRT's reference on
                // exactly the outputs the generator's own emulation of it found.
                let mut fixed = vec![0i8; want.len()];
                run(
                    DenseScale::micro(scales.0, scales.1, scales.2).unwrap(),
                    &mut fixed,
                );
                let fixed_differing = fixed.iter().zip(want).filter(|(a, b)| a != b).count();
                assert_eq!(
                    fixed_differing,
                    u(case, "fixed_point_outputs_differing"),
                    "case {}",
                    case["id"]
                );
                micro_differences += fixed_differing;
                run(
                    DenseScale::litert(scales.0, scales.1, scales.2).unwrap(),
                    &mut y,
                );
            }
            other => panic!("unknown kind {other}"),
        }
        let differing = y.iter().zip(want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "case {} ({kind}): {differing} of {} outputs differ from TFLite\n{case}",
            case["id"],
            want.len()
        );
        *kinds.entry(kind.to_string()).or_default() += 1;
    }
    for kind in [
        "max_pool",
        "avg_pool",
        "group_pool",
        "global_avg_pool",
        "dense",
        "relu",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) >= 2,
            "{kind}: {kinds:?}"
        );
    }
    assert!(same_avg >= 1, "no TFLite SAME average pooling case");
    // The goldens include ties where the two runtimes part.
    assert!(
        micro_differences > 0,
        "no dense case separates LiteRT from TFLite Micro"
    );
}

/// A whole int8 model file run by gconv against LiteRT on the same images
/// (`tools/int8/tflite_model.py`: float input, `QUANTIZE`, the layers, int8 logits).
fn model_equals_tflite(model_dir: &Path, images: &Path, logits: &Path) {
    let model = QModel::load(
        model_dir.join("model.json"),
        model_dir.join("model.safetensors"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", model_dir.display()));
    let x = read_npy(images).unwrap();
    let y = model.forward_f32(&x).unwrap();
    let (shape, want) = read_npy_i8(logits).unwrap();
    assert_eq!(y.shape(), shape.as_slice(), "{}", model_dir.display());
    let differing = y.data().iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(
        differing,
        0,
        "{}: {differing} of {} logits differ from TFLite",
        model_dir.display(),
        want.len()
    );
}

#[test]
fn whole_models_equal_tflite_bit_for_bit() {
    // Random models through every layer kind and path of the converter.
    for name in [
        "int8-model-selftest",
        "int8-model-coverage-a",
        "int8-model-coverage-b",
    ] {
        let dir = golden(name);
        model_equals_tflite(&dir, &dir.join("images.npy"), &dir.join("logits.npy"));
    }
    // The quantized digits models on their rotated test sets.
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    for (name, set) in [("p4cnn", "c4"), ("p4m", "d4")] {
        model_equals_tflite(
            &models.join(format!("digits-{name}-int8")),
            &models.join(format!("digits/test_rotated_{set}.npy")),
            &golden(&format!("int8-digits-{name}")).join("logits.npy"),
        );
    }
}

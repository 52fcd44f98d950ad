//! Whole models: shape inference, invariance of a P4CNN/P4M-style classifier over
//! every group element, batch-norm folding, and loading with every rejection of
//! `docs/model-format.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gconv_core::layers::Reduce;
use gconv_std::model::{BatchNorm, Dense};
use gconv_std::{AnyConv, Feature, Layer, Model, Padding, Pair, Pool2d, Space, Tensor};
use safetensors::{Dtype, tensor::TensorView};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 - 1001.0) / 1001.0)
        .collect()
}

fn bn(c: usize, seed: usize) -> BatchNorm {
    let v = values(4 * c, seed);
    let var: Vec<f32> = v[3 * c..].iter().map(|x| x.abs() + 0.5).collect();
    BatchNorm::new(&v[..c], &v[c..2 * c], &v[2 * c..3 * c], &var, 1e-5).unwrap()
}

/// Z2 -> G conv, BN, ReLU, 2x2 max pool, G -> G conv, ReLU, group max pool, global
/// average pool, dense: invariant logits when every layer satisfies the rule.
fn classifier(lift: Pair, group: Pair, size: usize) -> Model {
    let c1 = AnyConv::new(lift, 1, 4, 3, 1, Padding::Same, 1).unwrap();
    let c2 = AnyConv::new(group, 4, 5, 3, 1, Padding::Same, 2).unwrap();
    let dense = Dense::new(
        Tensor::new(vec![10, 5], values(50, 3)).unwrap(),
        Some(values(10, 4)),
    )
    .unwrap();
    let input = Feature::Map {
        space: Space::Z2,
        channels: 1,
        height: size,
        width: size,
    };
    let layers = vec![
        Layer::Conv(c1),
        Layer::BatchNorm(bn(4, 5)),
        Layer::Relu,
        Layer::Pool(Pool2d::max(2)),
        Layer::Conv(c2),
        Layer::Pointwise(f32::tanh),
        Layer::GroupPool(Reduce::Max),
        Layer::GlobalAvgPool,
        Layer::Dense(dense),
    ];
    Model::new(input, layers, false).unwrap()
}

#[test]
fn classifiers_are_invariant_for_every_element() {
    for (lift, group) in [(Pair::Z2C4, Pair::C4C4), (Pair::Z2D4, Pair::D4D4)] {
        let model = classifier(lift, group, 8);
        assert_eq!(model.output(), &Feature::Vector(vec![10]));
        let x = Tensor::new(vec![3, 1, 8, 8], values(192, 9)).unwrap();
        let y = model.forward(&x).unwrap();
        assert_eq!(y.shape(), &[3, 10]);
        for g in 0..group.group_order() {
            let yg = model.forward(&group.transform(g, &x).unwrap()).unwrap();
            let err = yg.max_abs_diff(&y).unwrap();
            assert!(
                err < 1e-4 * y.max_abs().max(1.0),
                "{} g={g}: {err}",
                group.name()
            );
        }
    }
}

#[test]
fn rule_failures_are_load_errors_unless_accepted() {
    // A 9x9 input makes the 2x2/2 pooling break equivariance.
    let c1 = AnyConv::new(Pair::Z2C4, 1, 2, 3, 1, Padding::Same, 1).unwrap();
    let input = Feature::Map {
        space: Space::Z2,
        channels: 1,
        height: 9,
        width: 9,
    };
    let layers = vec![Layer::Conv(c1), Layer::Pool(Pool2d::max(2))];
    let err = Model::new(input.clone(), layers.clone(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer 2") && err.contains("equivariance"),
        "{err}"
    );
    assert!(Model::new(input, layers, true).is_ok());
}

#[test]
fn shapes_that_do_not_chain_are_errors_at_build() {
    let c1 = AnyConv::new(Pair::Z2C4, 1, 2, 3, 1, Padding::Same, 1).unwrap();
    let d4 = AnyConv::new(Pair::D4D4, 2, 2, 3, 1, Padding::Same, 1).unwrap();
    let input = Feature::Map {
        space: Space::Z2,
        channels: 1,
        height: 8,
        width: 8,
    };
    let cases: Vec<(Vec<Layer>, &str)> = vec![
        (vec![Layer::Conv(c1.clone()), Layer::Conv(d4)], "layer 2"),
        (
            vec![Layer::Conv(c1.clone()), Layer::BatchNorm(bn(3, 1))],
            "batch norm",
        ),
        (vec![Layer::GroupPool(Reduce::Max)], "group pooling"),
        (
            vec![
                Layer::Conv(c1.clone()),
                Layer::GlobalAvgPool,
                Layer::Pool(Pool2d::max(2)),
            ],
            "needs a feature map",
        ),
        (
            vec![
                Layer::Conv(c1),
                Layer::GlobalAvgPool,
                Layer::Dense(Dense::new(Tensor::zeros(vec![3, 5]), None).unwrap()),
            ],
            "takes 5 features",
        ),
    ];
    for (layers, needle) in cases {
        let err = Model::new(input.clone(), layers, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    }
    let model = classifier(Pair::Z2C4, Pair::C4C4, 8);
    assert!(model.forward(&Tensor::zeros(vec![1, 2, 8, 8])).is_err());
    assert!(model.forward(&Tensor::zeros(vec![1, 1, 9, 9])).is_err());
}

#[test]
fn folded_batch_norm_gives_the_same_outputs_and_stays_equivariant() {
    for (lift, group) in [(Pair::Z2C4, Pair::C4C4), (Pair::Z2D4, Pair::D4D4)] {
        let model = classifier(lift, group, 8);
        let folded = model.fold_batch_norm().unwrap();
        assert_eq!(folded.layers().len(), model.layers().len() - 1);
        let x = Tensor::new(vec![2, 1, 8, 8], values(128, 2)).unwrap();
        let (y, yf) = (model.forward(&x).unwrap(), folded.forward(&x).unwrap());
        assert!(yf.max_abs_diff(&y).unwrap() < 1e-5 * y.max_abs().max(1.0));
        // The folded conv alone is equivariant (per-G-channel scale).
        let Layer::Conv(conv) = &folded.layers()[0] else {
            panic!("conv first")
        };
        let y1 = conv.forward(&x).unwrap();
        for g in 0..group.group_order() {
            let lhs = conv.forward(&group.transform(g, &x).unwrap()).unwrap();
            let err = lhs.max_abs_diff(&group.transform(g, &y1).unwrap()).unwrap();
            assert!(err < 1e-5, "{} g={g}: {err}", group.name());
        }
    }
}

// ---- files ------------------------------------------------------------------------

/// Tensors by name: shape and values.
type Named = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gconv-model-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const JSON: &str = r#"{
  "format": "gconv-model", "version": 1,
  "input": { "space": "z2", "channels": 1, "height": 8, "width": 8 },
  "layers": [
    { "kind": "conv", "name": "conv1", "from": "z2", "to": "c4", "in_channels": 1, "out_channels": 2,
      "kernel": 3, "padding": "same", "bias": true },
    { "kind": "batch_norm", "name": "bn1", "channels": 2 },
    { "kind": "relu" },
    { "kind": "max_pool", "window": 2 },
    { "kind": "group_pool", "mode": "mean" },
    { "kind": "global_avg_pool" },
    { "kind": "dense", "name": "fc", "in_features": 2, "out_features": 3 }
  ]
}"#;

fn tensors() -> Named {
    let mut t = BTreeMap::new();
    t.insert("conv1.weight".into(), (vec![2, 1, 1, 3, 3], values(18, 1)));
    t.insert("conv1.bias".into(), (vec![2], values(2, 2)));
    t.insert("bn1.weight".into(), (vec![2], values(2, 3)));
    t.insert("bn1.bias".into(), (vec![2], values(2, 4)));
    t.insert("bn1.running_mean".into(), (vec![2], values(2, 5)));
    t.insert("bn1.running_var".into(), (vec![2], vec![0.5, 2.0]));
    t.insert("fc.weight".into(), (vec![3, 2], values(6, 6)));
    t.insert("fc.bias".into(), (vec![3], values(3, 7)));
    t
}

fn write_safetensors(path: &Path, tensors: &Named, dtype: Dtype) {
    let bytes: BTreeMap<&String, Vec<u8>> = tensors
        .iter()
        .map(|(k, (_, v))| {
            let b = match dtype {
                Dtype::F64 => v.iter().flat_map(|x| f64::from(*x).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            (k, b)
        })
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, (s, _))| {
            (
                k.clone(),
                TensorView::new(dtype, s.clone(), &bytes[k]).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

fn load_with(name: &str, json: &str, tensors: &Named) -> Result<Model, String> {
    let dir = tmp(name);
    std::fs::write(dir.join("m.json"), json).unwrap();
    write_safetensors(&dir.join("m.safetensors"), tensors, Dtype::F32);
    Model::load(dir.join("m.json"), dir.join("m.safetensors")).map_err(|e| e.to_string())
}

#[test]
fn a_model_file_loads_and_runs() {
    let model = load_with("ok", JSON, &tensors()).unwrap();
    assert_eq!(model.layers().len(), 7);
    let x = Tensor::new(vec![2, 1, 8, 8], values(128, 8)).unwrap();
    let y = model.forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 3]);
    for g in 0..4 {
        let yg = model
            .forward(&Pair::Z2C4.transform(g, &x).unwrap())
            .unwrap();
        assert!(yg.max_abs_diff(&y).unwrap() < 1e-5);
    }
    // PyTorch's BatchNorm counter is ignored.
    let mut t = tensors();
    t.insert("bn1.num_batches_tracked".into(), (vec![], vec![3.0]));
    assert!(load_with("nbt", JSON, &t).is_ok());
}

#[test]
fn every_bad_model_file_is_rejected_with_a_reason() {
    let mut missing = tensors();
    missing.remove("bn1.running_var");
    let mut extra = tensors();
    extra.insert("conv2.weight".into(), (vec![1], vec![0.0]));
    let mut shape = tensors();
    shape.insert("fc.weight".into(), (vec![2, 3], values(6, 6)));
    let mut wide = tensors();
    wide.insert("fc.weight".into(), (vec![3, 4], values(12, 6)));
    let cases: Vec<(&str, String, Named, &str)> = vec![
        (
            "missing",
            JSON.into(),
            missing,
            "missing tensor \"bn1.running_var\"",
        ),
        ("extra", JSON.into(), extra, "\"conv2.weight\" is not used"),
        (
            "shape",
            JSON.into(),
            shape,
            "\"fc.weight\" has shape [2, 3], expected [3, 2]",
        ),
        (
            "kind",
            JSON.replace("\"relu\"", "\"gelu\""),
            tensors(),
            "unknown variant `gelu`",
        ),
        (
            "field",
            JSON.replace("\"mode\"", "\"mood\""),
            tensors(),
            "mood",
        ),
        (
            "version",
            JSON.replace("\"version\": 1", "\"version\": 2"),
            tensors(),
            "version 2",
        ),
        (
            "rule",
            JSON.replace("\"height\": 8", "\"height\": 9"),
            tensors(),
            "equivariance",
        ),
        (
            "chain",
            JSON.replace("\"in_features\": 2", "\"in_features\": 4"),
            wide,
            "takes 4 features",
        ),
        (
            "syntax",
            JSON.replace('}', ""),
            tensors(),
            "not a valid gconv model description",
        ),
    ];
    for (name, json, t, needle) in cases {
        let err = load_with(name, &json, &t).unwrap_err();
        assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
    }
    // accept_non_equivariant lets the 9x9 model load.
    let accepted = JSON
        .replace("\"height\": 8", "\"height\": 9")
        .replace("\"layers\"", "\"accept_non_equivariant\": true, \"layers\"");
    assert!(load_with("accepted", &accepted, &tensors()).is_ok());

    // Wrong dtype, truncated and corrupt files.
    let dir = tmp("files");
    std::fs::write(dir.join("m.json"), JSON).unwrap();
    write_safetensors(&dir.join("f64.safetensors"), &tensors(), Dtype::F64);
    let err = Model::load(dir.join("m.json"), dir.join("f64.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("F64") && err.contains("F32"), "{err}");
    write_safetensors(&dir.join("ok.safetensors"), &tensors(), Dtype::F32);
    let bytes = std::fs::read(dir.join("ok.safetensors")).unwrap();
    std::fs::write(dir.join("cut.safetensors"), &bytes[..bytes.len() - 7]).unwrap();
    let err = Model::load(dir.join("m.json"), dir.join("cut.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cut.safetensors") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(dir.join("junk.safetensors"), b"junk junk junk").unwrap();
    assert!(Model::load(dir.join("m.json"), dir.join("junk.safetensors")).is_err());
    assert!(Model::load(dir.join("nope.json"), dir.join("ok.safetensors")).is_err());
}

//! The committed digits models, quantized to int8 by post-training quantization:
//! accuracy on the rotated test set within 1 point of float, and logits bitwise
//! invariant under every group element for every test image.

use std::path::{Path, PathBuf};

use gconv_std::npy::read_npy;
use gconv_std::quant::QModel;
use gconv_std::quant::ptq::quantize_model;
use gconv_std::{Model, Pair, Tensor};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn argmax_rows(values: &[f32], classes: usize) -> Vec<usize> {
    values
        .chunks_exact(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0
        })
        .collect()
}

fn accuracy(pred: &[usize], labels: &[usize]) -> f64 {
    pred.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

/// The float model and the committed int8 model, after checking that the committed
/// int8 model is exactly what post-training quantization of the float model on the
/// committed calibration batch gives (`gconv quantize`), and that it saves and loads
/// back unchanged.
fn quantized(name: &str) -> (Model, QModel) {
    let dir = models().join(name);
    let model = Model::load(dir.join("model.json"), dir.join("model.safetensors")).unwrap();
    let calibration = read_npy(models().join("digits/calibration.npy")).unwrap();
    let fresh = quantize_model(&model, &calibration).unwrap();
    let qdir = models().join(format!("{name}-int8"));
    let committed = QModel::load(qdir.join("model.json"), qdir.join("model.safetensors")).unwrap();
    assert_eq!(
        fresh, committed,
        "{name}-int8 is not the PTQ of {name}: regenerate it"
    );
    let tmp = std::env::temp_dir().join(format!("gconv-int8-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    committed
        .save(tmp.join("m.json"), tmp.join("m.safetensors"))
        .unwrap();
    let reloaded = QModel::load(tmp.join("m.json"), tmp.join("m.safetensors")).unwrap();
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(
        reloaded, committed,
        "{name}-int8: save + load changed the model"
    );
    (model, committed)
}

fn check_model(name: &str, pair: Pair, test_set: &str) {
    let (model, q) = quantized(name);
    let labels: Vec<usize> = read_npy(models().join("digits/test_labels.npy"))
        .unwrap()
        .data()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let x: Tensor = read_npy(models().join("digits").join(test_set)).unwrap();
    let float_acc = accuracy(&argmax_rows(model.forward(&x).unwrap().data(), 10), &labels);
    let logits = q.forward_f32(&x).unwrap();
    let q_pred = argmax_rows(logits.to_f32_values().data(), 10);
    let q_acc = accuracy(&q_pred, &labels);
    println!("{name}: float {float_acc:.4}, int8 {q_acc:.4}");
    assert!(
        (float_acc - q_acc).abs() <= 0.01 + 1e-9,
        "{name}: int8 accuracy {q_acc} vs float {float_acc}"
    );
    // Bitwise invariance: the logits of g.x equal those of x, for every g.
    for g in 0..pair.group_order() {
        let gx = pair.transform(g, &x).unwrap();
        let logits_g = q.forward_f32(&gx).unwrap();
        let differing = logits
            .data()
            .chunks_exact(10)
            .zip(logits_g.data().chunks_exact(10))
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: g = {g}: {differing} of 300 images change logits"
        );
    }
}

#[test]
fn p4cnn_int8_accuracy_and_bitwise_invariance() {
    check_model("digits-p4cnn", Pair::C4C4, "test_rotated_c4.npy");
}

#[test]
fn p4m_int8_accuracy_and_bitwise_invariance() {
    check_model("digits-p4m", Pair::D4D4, "test_rotated_d4.npy");
}

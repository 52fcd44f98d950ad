//! The rotated-digits section of `gconv demo`: the P4CNN and P4M models trained by
//! `tools/train_digits.py` on upright 8x8 digits (scikit-learn's bundled set), run in
//! Rust on the test set rotated by random multiples of 90° (and flipped, for P4M).
//! Prints the accuracy next to the one PyTorch measured, and checks that the predicted
//! class of every test image is the same for all of its rotations (and flips).

use std::path::{Path, PathBuf};

use gconv_std::npy::read_npy;
use gconv_std::quant::QModel;
use gconv_std::{Model, Pair, Tensor};

/// Where the committed models and test sets live.
fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Class index of the largest logit in each row of `(N, classes)`.
fn predictions(logits: &Tensor) -> Vec<usize> {
    let classes = logits.shape()[1];
    logits
        .data()
        .chunks_exact(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}

/// Runs the section; `Ok(false)` when a prediction changes under the group.
pub fn section() -> Result<bool, gconv_std::Error> {
    let dir = models_dir();
    if !dir.join("digits").exists() {
        println!(
            "(rotated digits: {} not found, section skipped)",
            dir.display()
        );
        return Ok(true);
    }
    println!("== rotated digits: trained on upright 8x8 digits, tested rotated ==");
    let labels: Vec<usize> = read_npy(dir.join("digits/test_labels.npy"))?
        .data()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let mut invariant = true;
    for (name, group, test_set) in [
        ("digits-p4cnn", Pair::C4C4, "test_rotated_c4.npy"),
        ("digits-p4m", Pair::D4D4, "test_rotated_d4.npy"),
    ] {
        let model = Model::load(
            dir.join(name).join("model.json"),
            dir.join(name).join("model.safetensors"),
        )?;
        let rotated = read_npy(dir.join("digits").join(test_set))?;
        let predicted = predictions(&model.forward(&rotated)?);
        let correct = predicted
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        // Invariance: every element of the group applied to the upright test set.
        let upright = read_npy(dir.join("digits/test_upright.npy"))?;
        let base = predictions(&model.forward(&upright)?);
        let mut same = vec![true; base.len()];
        for g in 1..group.group_order() {
            let p = predictions(&model.forward(&group.transform(g, &upright)?)?);
            same.iter_mut()
                .zip(p.iter().zip(&base))
                .for_each(|(s, (a, b))| *s &= a == b);
        }
        let stable = same.iter().filter(|&&s| s).count();
        invariant &= stable == same.len();
        println!(
            "  {name:<13} accuracy on the rotated test set {:.1}% ({correct}/{}); class identical under all {} elements for {stable}/{} images",
            100.0 * correct as f64 / labels.len() as f64,
            labels.len(),
            group.group_order(),
            same.len()
        );
    }
    invariant &= int8_section(&dir, &labels)?;
    print_pytorch_accuracies(&dir.join("digits/accuracy.json"));
    Ok(invariant)
}

/// The int8 models (`gconv quantize` of the float ones, committed next to them): the
/// accuracy on the rotated test set and the exact invariance of the int8 logits.
fn int8_section(dir: &Path, labels: &[usize]) -> Result<bool, gconv_std::Error> {
    println!("  int8 (TFLite arithmetic, post-training quantized by `gconv quantize`):");
    let mut invariant = true;
    for (name, group, test_set) in [
        ("digits-p4cnn-int8", Pair::C4C4, "test_rotated_c4.npy"),
        ("digits-p4m-int8", Pair::D4D4, "test_rotated_d4.npy"),
    ] {
        let model = QModel::load(
            dir.join(name).join("model.json"),
            dir.join(name).join("model.safetensors"),
        )?;
        let rotated = read_npy(dir.join("digits").join(test_set))?;
        let logits = model.forward_f32(&rotated)?;
        let predicted = predictions(&logits.to_f32_values());
        let correct = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
        let mut same = vec![true; labels.len()];
        for g in 1..group.group_order() {
            let moved = model.forward_f32(&group.transform(g, &rotated)?)?;
            for (s, (a, b)) in same.iter_mut().zip(
                moved
                    .data()
                    .chunks_exact(10)
                    .zip(logits.data().chunks_exact(10)),
            ) {
                *s &= a == b;
            }
        }
        let exact = same.iter().filter(|&&s| s).count();
        invariant &= exact == same.len();
        println!(
            "  {name:<18} accuracy on the rotated test set {:.1}% ({correct}/{}); int8 logits bitwise identical under all {} elements for {exact}/{} images",
            100.0 * correct as f64 / labels.len() as f64,
            labels.len(),
            group.group_order(),
            same.len()
        );
    }
    Ok(invariant)
}

/// The accuracies `tools/train_digits.py` measured in PyTorch, including the planar CNN
/// with the equal-parameter budget trained the same way.
fn print_pytorch_accuracies(path: &Path) {
    let Some(table) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return;
    };
    let Some(models) = table.as_object() else {
        return;
    };
    println!("  measured in PyTorch by tools/train_digits.py:");
    println!(
        "    {:<12} {:>8} {:>9} {:>9}",
        "model", "params", "upright", "rotated"
    );
    for (name, entry) in models {
        let get = |k: &str| {
            entry
                .get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        println!(
            "    {name:<12} {:>8} {:>8.1}% {:>8.1}%",
            get("params"),
            100.0 * get("upright_acc"),
            100.0 * get("rotated_acc")
        );
    }
}

//! Models exported from plain PyTorch by `tools/make_goldens.py` (gather-based
//! expansion as in CONVENTIONS.md, `F.conv2d`, `BatchNorm3d`, ...) must give PyTorch's
//! outputs when loaded and run by gconv. The goldens are committed, so this runs
//! without Python.
//!
//! Tolerance: `|y - y_torch| <= 1e-5 * (1 + max |y_torch|)` per value. Both sides are
//! f32 with different summation orders; the models have at most a few hundred terms
//! per output and a few layers, so the rounding differences stay near 1e-6 relative.

use std::path::{Path, PathBuf};

use gconv_std::Model;
use gconv_std::npy::read_npy;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/golden")
}

#[test]
fn every_golden_model_matches_pytorch() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tools/golden is committed")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.json").exists())
        // The int8 goldens (TFLite's) are tests/tests/int8_golden.rs's.
        .filter(|p| gconv_std::quant::file::model_dtype(&p.join("model.json")).unwrap() == "f32")
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 3,
        "expected the p4cnn, p4m and feature goldens, found {cases:?}"
    );
    for dir in cases {
        let model = Model::load(dir.join("model.json"), dir.join("model.safetensors"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let x = read_npy(dir.join("input.npy")).unwrap();
        let want = read_npy(dir.join("output.npy")).unwrap();
        for (label, m) in [
            ("as loaded", model.clone()),
            ("BN folded", model.fold_batch_norm().unwrap()),
        ] {
            let y = m.forward(&x).unwrap();
            assert_eq!(y.shape(), want.shape(), "{}", dir.display());
            let tol = 1e-5 * (1.0 + want.max_abs());
            let err = y.max_abs_diff(&want).unwrap();
            eprintln!(
                "{} ({label}): max error {err:e}, tolerance {tol:e}",
                dir.display()
            );
            assert!(
                err <= tol,
                "{} ({label}): max error {err:e} > {tol:e}",
                dir.display()
            );
        }
    }
}

//! `gconv run` through the built binary: a committed PyTorch golden model gives
//! PyTorch's output (tolerance as in `pytorch_goldens.rs`), with and without folding
//! batch norm; bad model files and inputs exit 2 with one line and write nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use gconv_std::npy::read_npy;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/golden")
        .join(name)
}

fn run(model: &Path, weights: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    common::gconv_command()
        .arg("run")
        .arg("--model")
        .arg(model)
        .arg("--weights")
        .arg(weights)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .expect("run gconv")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gconv-cli-run-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn golden_models_give_pytorchs_outputs() {
    let dir = tmp("ok");
    for name in ["p4cnn", "p4m", "p4cnn-features"] {
        for extra in [&[][..], &["--fold-bn"][..]] {
            let g = golden(name);
            let out_path = dir.join(format!("{name}.npy"));
            let out = run(
                &g.join("model.json"),
                &g.join("model.safetensors"),
                &g.join("input.npy"),
                &out_path,
                extra,
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (y, want) = (
                read_npy(&out_path).unwrap(),
                read_npy(g.join("output.npy")).unwrap(),
            );
            let err = y.max_abs_diff(&want).expect("same shape");
            assert!(
                err <= 1e-5 * (1.0 + want.max_abs()),
                "{name} {extra:?}: {err}"
            );
        }
    }
}

#[test]
fn bad_inputs_exit_2_with_one_line_and_no_output() {
    let g = golden("p4cnn");
    let dir = tmp("bad");
    let json = dir.join("m.json");
    std::fs::write(
        &json,
        std::fs::read_to_string(g.join("model.json"))
            .unwrap()
            .replace("\"relu\"", "\"gelu\""),
    )
    .unwrap();
    let wrong_input = dir.join("x.npy");
    gconv_std::npy::write_npy(&wrong_input, &gconv_std::Tensor::zeros(vec![1, 3, 12, 12])).unwrap();
    let cases: [(PathBuf, PathBuf, PathBuf, &str); 4] = [
        (
            json,
            g.join("model.safetensors"),
            g.join("input.npy"),
            "gelu",
        ),
        (
            g.join("model.json"),
            g.join("input.npy"),
            g.join("input.npy"),
            "safetensors",
        ),
        (
            g.join("model.json"),
            g.join("model.safetensors"),
            wrong_input,
            "x.npy",
        ),
        (
            g.join("model.json"),
            g.join("model.safetensors"),
            dir.join("missing.npy"),
            "missing.npy",
        ),
    ];
    for (m, w, x, needle) in cases {
        let y = dir.join("y.npy");
        let out = run(&m, &w, &x, &y, &[]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        assert!(!y.exists(), "output written on error");
    }
}

//! The int8 command line end to end: `gconv forward --dtype int8` against the
//! independent oracle (exactly), its bad inputs (one line, exit 2, no output written),
//! `gconv quantize` + `gconv run` on the digits model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use gconv_std::npy::{read_npy_i8, write_npy};
use gconv_std::reference::{RefConvSpec, RefGroup, reference_conv_i8};
use gconv_std::{Tensor, npy};
use npyz::WriterBuilder;

fn tmp(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gconv-cli-int8-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gconv(dir: &Path, args: &[&str]) -> Output {
    common::gconv_command()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the gconv binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn write_i8(path: &Path, shape: &[usize], data: &[i8]) {
    npy::write_npy_i8(path, shape, data).unwrap();
}

fn write_i32(path: &Path, data: &[i32]) {
    npyz::to_file_1d(path, data.iter().copied()).unwrap();
}

fn write_f32(path: &Path, shape: &[usize], data: &[f32]) {
    write_npy(path, &Tensor::new(shape.to_vec(), data.to_vec()).unwrap()).unwrap();
}

fn write_f64(path: &Path, data: &[f64]) {
    let shape = [data.len() as u64];
    let mut w = npyz::WriteOptions::<f64>::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Deterministic int8 values in [lo, hi].
fn ints(len: usize, seed: u64, lo: i32, hi: i32) -> Vec<i8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (lo + (s % (hi - lo + 1) as u64) as i32) as i8
        })
        .collect()
}

/// The standard valid case in `dir`: C4 -> C4, 2 -> 3 channels, 3x3, 7x7, batch 2.
fn write_case(dir: &Path) -> (Vec<i8>, Vec<i8>, Vec<f32>, Vec<i32>) {
    let x = ints(2 * 2 * 4 * 7 * 7, 1, -128, 127);
    let w = ints(3 * 2 * 4 * 9, 2, -127, 127);
    let ws = vec![0.004f32, 0.007, 0.01];
    let b = vec![300, -4000, 25];
    write_i8(&dir.join("x.npy"), &[2, 2, 4, 7, 7], &x);
    write_i8(&dir.join("w.npy"), &[3, 2, 4, 3, 3], &w);
    write_f32(&dir.join("ws.npy"), &[3], &ws);
    write_i32(&dir.join("b.npy"), &b);
    (x, w, ws, b)
}

const ARGS: [&str; 24] = [
    "forward",
    "--from",
    "c4",
    "--to",
    "c4",
    "--dtype",
    "int8",
    "--input",
    "x.npy",
    "--input-scale",
    "0.05",
    "--input-zero-point",
    "-3",
    "--weight",
    "w.npy",
    "--weight-scale",
    "ws.npy",
    "--bias",
    "b.npy",
    "--output-scale",
    "0.9",
    "--output-zero-point",
    "4",
    "--relu",
];

fn with(extra: &[&str], replace: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
    for (flag, value) in replace {
        let i = args.iter().position(|a| a == flag).unwrap();
        args[i + 1] = value.to_string();
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn forward_int8_matches_the_oracle_exactly() {
    let dir = tmp("ok");
    let (x, w, ws, b) = write_case(&dir);
    let args = with(
        &["--stride", "1", "--padding", "1", "--output", "y.npy"],
        &[],
    );
    let out = gconv(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (shape, y) = read_npy_i8(dir.join("y.npy")).unwrap();
    assert_eq!(shape, vec![2, 3, 4, 7, 7]);
    let spec = RefConvSpec {
        group: RefGroup::C4,
        lifting: false,
        batch: 2,
        in_channels: 2,
        out_channels: 3,
        height: 7,
        width: 7,
        kernel: 3,
        stride: 1,
        pad: [1; 4],
    };
    let want = reference_conv_i8(&spec, &x, (0.05, -3), &w, &ws, Some(&b), (0.9, 4), true);
    assert_eq!(y, want);
    assert!(
        y.iter().any(|&v| v > 4) && y.iter().all(|&v| v >= 4),
        "relu clamps at zp_out"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs a bad invocation: exit 2, one line on stderr containing every `needle`, no
/// output file.
fn refused(dir: &Path, args: &[String], needles: &[&str]) {
    let _ = std::fs::remove_file(dir.join("y.npy"));
    let out = gconv(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
    assert!(!dir.join("y.npy").exists(), "an output was written");
}

#[test]
fn forward_int8_refuses_bad_input() {
    let dir = tmp("bad");
    write_case(&dir);
    let out = ["--output", "y.npy"];
    // A weight of -128.
    let mut w = ints(3 * 2 * 4 * 9, 2, -127, 127);
    w[5] = -128;
    write_i8(&dir.join("w128.npy"), &[3, 2, 4, 3, 3], &w);
    refused(
        &dir,
        &with(&out, &[("--weight", "w128.npy")]),
        &["w128.npy", "-128", "[-127, 127]"],
    );
    // Float weights, int8 expected: the dtype is named.
    write_f32(&dir.join("wf.npy"), &[3, 2, 4, 3, 3], &vec![0.5; 216]);
    refused(
        &dir,
        &with(&out, &[("--weight", "wf.npy")]),
        &["wf.npy", "<f4", "int8"],
    );
    // Input of the wrong shape.
    write_i8(
        &dir.join("x5.npy"),
        &[2, 5, 4, 7, 7],
        &ints(2 * 5 * 4 * 49, 3, -128, 127),
    );
    refused(
        &dir,
        &with(&out, &[("--input", "x5.npy")]),
        &["x5.npy", "(N, 2, 4, H, W)", "(2, 5, 4, 7, 7)"],
    );
    // Scales: not finite and positive; weight scales of the wrong shape, dtype or value.
    for bad in ["0", "-0.5", "nan", "inf", "abc"] {
        refused(
            &dir,
            &with(&out, &[("--input-scale", bad)]),
            &["--input-scale", "finite, positive"],
        );
        refused(
            &dir,
            &with(&out, &[("--output-scale", bad)]),
            &["--output-scale", "finite, positive"],
        );
    }
    write_f32(&dir.join("ws2.npy"), &[2], &[0.1, 0.1]);
    refused(
        &dir,
        &with(&out, &[("--weight-scale", "ws2.npy")]),
        &["ws2.npy", "(3,)", "(2,)"],
    );
    write_f32(&dir.join("wsneg.npy"), &[3], &[0.1, -0.1, 0.1]);
    refused(
        &dir,
        &with(&out, &[("--weight-scale", "wsneg.npy")]),
        &["wsneg.npy", "finite and positive"],
    );
    write_f64(&dir.join("ws64.npy"), &[0.1, 0.1, 0.1]);
    refused(
        &dir,
        &with(&out, &[("--weight-scale", "ws64.npy")]),
        &["ws64.npy", "float32"],
    );
    // Zero points outside [-128, 127].
    for bad in ["128", "-129", "1.5"] {
        refused(
            &dir,
            &with(&out, &[("--input-zero-point", bad)]),
            &["--input-zero-point", "[-128, 127]"],
        );
        refused(
            &dir,
            &with(&out, &[("--output-zero-point", bad)]),
            &["--output-zero-point", "[-128, 127]"],
        );
    }
    // Bias: int32 (C_out,).
    write_f32(&dir.join("bf.npy"), &[3], &[1.0, 2.0, 3.0]);
    refused(
        &dir,
        &with(&out, &[("--bias", "bf.npy")]),
        &["bf.npy", "int32"],
    );
    write_i32(&dir.join("b2.npy"), &[1, 2]);
    refused(
        &dir,
        &with(&out, &[("--bias", "b2.npy")]),
        &["b2.npy", "(3,)"],
    );
    // int8 flags without --dtype int8; a missing int8 flag.
    refused(
        &dir,
        &with(&out, &[("--dtype", "f32")]),
        &["int8 flag", "--dtype int8"],
    );
    let mut missing = with(&out, &[]);
    let i = missing.iter().position(|a| a == "--output-scale").unwrap();
    missing.drain(i..i + 2);
    refused(&dir, &missing, &["--output-scale"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn quantize_then_run_gives_the_committed_model_and_its_logits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tmp("quantize");
    let m = root.join("models/digits-p4cnn");
    let out = gconv(
        &dir,
        &[
            "quantize",
            "--model",
            m.join("model.json").to_str().unwrap(),
            "--weights",
            m.join("model.safetensors").to_str().unwrap(),
            "--calibration",
            root.join("models/digits/calibration.npy").to_str().unwrap(),
            "--out-model",
            "q.json",
            "--out-weights",
            "q.safetensors",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let committed = root.join("models/digits-p4cnn-int8");
    assert_eq!(
        std::fs::read(dir.join("q.safetensors")).unwrap(),
        std::fs::read(committed.join("model.safetensors")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("q.json")).unwrap(),
        std::fs::read_to_string(committed.join("model.json")).unwrap()
    );
    let images = root.join("models/digits/test_rotated_c4.npy");
    let out = gconv(
        &dir,
        &[
            "run",
            "--model",
            "q.json",
            "--weights",
            "q.safetensors",
            "--input",
            images.to_str().unwrap(),
            "--output",
            "logits.npy",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (shape, logits) = read_npy_i8(dir.join("logits.npy")).unwrap();
    assert_eq!(shape, vec![300, 10]);
    let model =
        gconv_std::quant::QModel::load(dir.join("q.json"), dir.join("q.safetensors")).unwrap();
    let x = gconv_std::npy::read_npy(&images).unwrap();
    assert_eq!(logits, model.forward_f32(&x).unwrap().data());
    // A float model file is refused by name when given where the int8 flags are wrong.
    let out = gconv(
        &dir,
        &[
            "run",
            "--model",
            "q.json",
            "--weights",
            "q.safetensors",
            "--input",
            images.to_str().unwrap(),
            "--output",
            "l.npy",
            "--fold-bn",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("folded already"));
    std::fs::remove_dir_all(dir).unwrap();
}

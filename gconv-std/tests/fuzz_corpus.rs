//! The seed corpora of the fuzz targets (`fuzz/corpus/<target>/`, see
//! `fuzz/README.md`): small valid inputs, generated here so they can be remade and
//! checked. `committed_seeds_are_the_generated_ones` fails when a committed seed differs
//! from what this file generates (or is missing; int8 models need only load, their
//! bytes may depend on the CPU); regenerate them with
//!
//! ```text
//! GCONV_WRITE_FUZZ_CORPUS=1 cargo test -p gconv-std --test fuzz_corpus
//! ```
//!
//! Every seed is valid: the models load (f32 and int8), the `.npy` files read, the
//! escnn banks import. Framings (the fuzz targets cut one input into several files):
//! `model`: `[u32 LE n][n bytes of model.json][model.safetensors]`; `import`:
//! `[selector][tolerance][u32 LE n][n bytes of bank.npy][bias.npy]`; `npy` and `cli` take
//! the bytes as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gconv_std::import::{BankOrder, conv_from_bank};
use gconv_std::npy::{read_npy_bytes, read_npy_i8_bytes, read_npy_i32_bytes};
use gconv_std::quant::QModel;
use gconv_std::quant::ptq::quantize_model;
use gconv_std::{Model, Padding, Pair, Tensor};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Named seed files.
type Seeds = Vec<(String, Vec<u8>)>;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// A `.npy` file: `version` 1, 2 or 3, header padded to a multiple of 64 bytes as
/// numpy writes it.
fn npy(version: u8, descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let order = if fortran { "True" } else { "False" };
    let mut text = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {dims}, }}");
    let before = if version == 1 { 10 } else { 12 };
    while !(before + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend(u16::try_from(text.len()).unwrap().to_le_bytes());
    } else {
        out.extend(u32::try_from(text.len()).unwrap().to_le_bytes());
    }
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Deterministic small values.
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 + seed * 11) % 17) as f32 / 8.0 - 1.0)
        .collect()
}

fn npy_seeds() -> Seeds {
    let f4 = le_f32(&values(6, 1));
    let f8: Vec<u8> = values(6, 2)
        .iter()
        .flat_map(|&v| f64::from(v).to_le_bytes())
        .collect();
    let be_f4: Vec<u8> = values(8, 3).iter().flat_map(|v| v.to_be_bytes()).collect();
    let i4_be: Vec<u8> = [7i32, -3, 1 << 20, -1]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    vec![
        ("f4_c_2x3.npy".into(), npy(1, "<f4", false, &[2, 3], &f4)),
        (
            "f8_fortran_2x3.npy".into(),
            npy(1, "<f8", true, &[2, 3], &f8),
        ),
        (
            "f4_be_fortran_2x2x2.npy".into(),
            npy(1, ">f4", true, &[2, 2, 2], &be_f4),
        ),
        (
            "f4_v2_scalar.npy".into(),
            npy(2, "<f4", false, &[], &f4[..4]),
        ),
        ("f4_v3_empty.npy".into(), npy(3, "<f4", false, &[0, 4], &[])),
        (
            "i1_5.npy".into(),
            npy(1, "|i1", false, &[5], &[1, 0xff, 127, 0x80, 0]),
        ),
        (
            "i4_be_2x2.npy".into(),
            npy(1, ">i4", false, &[2, 2], &i4_be),
        ),
    ]
}

/// A safetensors file of F32 tensors.
fn safetensors_f32(tensors: &[(&str, Vec<usize>)]) -> Vec<u8> {
    let blobs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            let mut v = values(n, i);
            if name.ends_with("running_var") {
                v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
            }
            (name.to_string(), shape.clone(), le_f32(&v))
        })
        .collect();
    let views: BTreeMap<String, TensorView<'_>> = blobs
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

/// `[u32 LE n][json][weights]`.
fn frame(json: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(json.len()).unwrap().to_le_bytes().to_vec();
    out.extend(json);
    out.extend(weights);
    out
}

/// Two small f32 models (C4 with batch norm and max pooling, D4 with average pooling
/// and no biases): `(name, json, weights, input side)`.
fn f32_models() -> Vec<(&'static str, String, Vec<u8>, usize)> {
    let c4 = r#"{"format": "gconv-model", "version": 1,
 "input": {"space": "z2", "channels": 1, "height": 8, "width": 8},
 "layers": [
  {"kind": "conv", "name": "conv1", "from": "z2", "to": "c4", "in_channels": 1, "out_channels": 2, "kernel": 3, "padding": "same"},
  {"kind": "batch_norm", "name": "bn1", "channels": 2, "eps": 1e-05},
  {"kind": "relu"},
  {"kind": "max_pool", "window": 2},
  {"kind": "conv", "name": "conv2", "from": "c4", "to": "c4", "in_channels": 2, "out_channels": 2, "kernel": 3, "stride": 1, "padding": "1"},
  {"kind": "group_pool", "mode": "max"},
  {"kind": "global_avg_pool"},
  {"kind": "dense", "name": "fc", "in_features": 2, "out_features": 3}
 ]}
"#;
    let c4_weights = safetensors_f32(&[
        ("conv1.weight", vec![2, 1, 1, 3, 3]),
        ("conv1.bias", vec![2]),
        ("bn1.weight", vec![2]),
        ("bn1.bias", vec![2]),
        ("bn1.running_mean", vec![2]),
        ("bn1.running_var", vec![2]),
        ("conv2.weight", vec![2, 2, 4, 3, 3]),
        ("conv2.bias", vec![2]),
        ("fc.weight", vec![3, 2]),
        ("fc.bias", vec![3]),
    ]);
    let d4 = r#"{"format": "gconv-model", "version": 1, "dtype": "f32",
 "input": {"space": "z2", "channels": 1, "height": 6, "width": 6},
 "accept_non_equivariant": false,
 "layers": [
  {"kind": "conv", "name": "conv1", "from": "z2", "to": "d4", "in_channels": 1, "out_channels": 2, "kernel": 3, "padding": "valid", "bias": false},
  {"kind": "relu"},
  {"kind": "avg_pool", "window": 2, "stride": 2, "padding": "valid"},
  {"kind": "conv", "name": "conv2", "from": "d4", "to": "d4", "in_channels": 2, "out_channels": 1, "kernel": 1},
  {"kind": "group_pool", "mode": "mean"},
  {"kind": "global_avg_pool"},
  {"kind": "dense", "name": "fc", "in_features": 1, "out_features": 2, "bias": false}
 ]}
"#;
    let d4_weights = safetensors_f32(&[
        ("conv1.weight", vec![2, 1, 1, 3, 3]),
        ("conv2.weight", vec![1, 2, 8, 1, 1]),
        ("conv2.bias", vec![1]),
        ("fc.weight", vec![2, 1]),
    ]);
    vec![
        ("c4", c4.to_string(), c4_weights, 8),
        ("d4", d4.to_string(), d4_weights, 6),
    ]
}

fn model_seeds() -> Seeds {
    let dir = std::env::temp_dir().join(format!("gconv-fuzz-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = Vec::new();
    for (name, json, weights, side) in f32_models() {
        let model = Model::from_bytes(json.as_bytes(), &weights).unwrap();
        out.push((format!("f32_{name}.bin"), frame(json.as_bytes(), &weights)));
        // The int8 model: quantized on a small calibration batch, saved, read back.
        let calibration = Tensor::new(vec![2, 1, side, side], values(2 * side * side, 5)).unwrap();
        let q = quantize_model(&model, &calibration).unwrap();
        let (qj, qw) = (dir.join("q.json"), dir.join("q.safetensors"));
        q.save(&qj, &qw).unwrap();
        let (qjson, qweights) = (std::fs::read(&qj).unwrap(), std::fs::read(&qw).unwrap());
        QModel::from_bytes(&qjson, &qweights).unwrap();
        out.push((format!("int8_{name}.bin"), frame(&qjson, &qweights)));
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// `[selector][tolerance][u32 LE n][bank.npy][bias.npy]` (selector bits as in
/// `fuzz/fuzz_targets/import.rs`).
fn import_frame(selector: u8, tolerance: u8, bank: &[u8], bias: &[u8]) -> Vec<u8> {
    let mut out = vec![selector, tolerance];
    out.extend(u32::try_from(bank.len()).unwrap().to_le_bytes());
    out.extend(bank);
    out.extend(bias);
    out
}

fn import_seeds() -> Seeds {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/escnn/golden");
    let mut out = Vec::new();
    // escnn order (bit 2), padding 1 (bits 3-4 = 2), a bias (bit 6), tolerance 1e-5.
    for (case, pair_bits) in [("c4_lift_k3", 0u8), ("c4_group_k3", 1), ("d4_lift_k3", 2)] {
        let bank = std::fs::read(golden.join(case).join("weight.npy")).unwrap();
        let bias = std::fs::read(golden.join(case).join("bias.npy")).unwrap();
        out.push((
            format!("{case}.bin"),
            import_frame(pair_bits | 4 | (2 << 3) | 0x40, 2, &bank, &bias),
        ));
    }
    // A D4->D4 bank of one 1x1 filter whose 64 planes are equal: G-structured in
    // either order, exactly (tolerance 0), no bias, stride 2, valid.
    let bank = npy(1, "<f4", false, &[8, 8, 1, 1], &le_f32(&[0.5; 64]));
    out.push((
        "d4_group_k1_exact.bin".into(),
        import_frame(3 | 0x20, 0, &bank, &[]),
    ));
    out
}

fn cli_seeds() -> Seeds {
    [
        ("valid", "valid"),
        ("same", "SAME"),
        ("symmetric", " 2 "),
        ("explicit", "1,2,0,3"),
        ("space_c4", "c4"),
        ("space_p4m", "p4m"),
        ("path", "fourier"),
        ("stride_padding", "3\nsame"),
    ]
    .into_iter()
    .map(|(name, text)| (format!("{name}.txt"), text.as_bytes().to_vec()))
    .collect()
}

/// Every seed, by target.
fn seeds() -> Vec<(&'static str, Seeds)> {
    vec![
        ("npy", npy_seeds()),
        ("model", model_seeds()),
        ("import", import_seeds()),
        ("cli", cli_seeds()),
    ]
}

#[test]
fn generated_seeds_are_valid() {
    for (name, bytes) in npy_seeds() {
        let ok = read_npy_bytes(&name, &bytes).is_ok()
            || read_npy_i8_bytes(&name, &bytes).is_ok()
            || read_npy_i32_bytes(&name, &bytes).is_ok();
        assert!(ok, "{name}");
    }
    let f32 = read_npy_bytes("f", &npy_seeds()[1].1).unwrap();
    assert_eq!(f32.shape(), &[2, 3]);
    // Fortran order [[a, c, e], [b, d, f]] of values(6, 2) read back in C order.
    let v = values(6, 2);
    assert_eq!(f32.data(), &[v[0], v[2], v[4], v[1], v[3], v[5]]);
    for (name, bytes) in import_seeds() {
        let n = u32::from_le_bytes(bytes[2..6].try_into().unwrap()) as usize;
        let (bank, bias) = bytes[6..].split_at(n);
        let bank = read_npy_bytes("bank", bank).unwrap();
        let bias = (!bias.is_empty()).then(|| read_npy_bytes("bias", bias).unwrap());
        let pair = [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4][usize::from(bytes[0] & 3)];
        let order = if bytes[0] & 4 != 0 {
            BankOrder::Escnn
        } else {
            BankOrder::GrouPy
        };
        let tolerance = [0.0, 1e-6, 1e-5][usize::from(bytes[1])];
        let padding = if bytes[0] & (2 << 3) != 0 {
            Padding::symmetric(1)
        } else {
            Padding::Valid
        };
        let stride = 1 + usize::from((bytes[0] >> 5) & 1);
        conv_from_bank(
            pair,
            &bank,
            bias.as_ref().map(Tensor::data),
            order,
            tolerance,
            stride,
            padding,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let write = std::env::var_os("GCONV_WRITE_FUZZ_CORPUS").is_some();
    let mut total = 0;
    for (target, files) in seeds() {
        let dir = corpus_dir().join(target);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, bytes) in files {
            let path = dir.join(&name);
            total += bytes.len();
            if write {
                std::fs::write(&path, &bytes).unwrap();
            } else {
                let committed = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (regenerate: see this file's docs)", path.display())
                });
                if name.starts_with("int8_") {
                    // Quantization sums floats in whatever order the CPU's fastest
                    // path takes, so the bytes may differ by machine: the committed
                    // model must load.
                    let n = u32::from_le_bytes(committed[..4].try_into().unwrap()) as usize;
                    let (json, weights) = committed[4..].split_at(n);
                    QModel::from_bytes(json, weights).unwrap();
                } else {
                    assert!(
                        committed == bytes,
                        "{} differs from the generated seed",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(
        total < 1 << 20,
        "the seed corpus must stay under 1 MB, is {total} bytes"
    );
}

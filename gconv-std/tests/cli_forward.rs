//! `gconv forward` end to end: the built binary runs on `.npy` files written here and
//! its output is compared with the library (exactly) and with the f64 reference
//! (within the rounding bound); every bad input is one line on stderr, exit status 2,
//! and no output file.

mod common;

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Output;

use gconv_std::npy::{read_npy, write_npy};
use gconv_std::reference::{RefConvSpec, RefGroup, reference_conv};
use gconv_std::{AnyConv, ConvPath, Padding, Pair, Space, Tensor};
use npyz::{Order, WriteOptions, WriterBuilder};

/// A fresh, empty directory for one test (named after the test and the process), removed
/// when the test passes and kept for a look when it fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gconv-cli-forward-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs `gconv forward ARGS` in `dir` (so relative paths are given as-is).
fn forward(dir: &Path, args: &[&str]) -> Output {
    common::gconv_command()
        .current_dir(dir)
        .arg("forward")
        .args(args)
        .output()
        .expect("the gconv binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// Deterministic pseudo-random values in [-1, 1) (splitmix64 of seed and index).
fn values(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_fn(shape.to_vec(), |i| {
        let mut z = (i as u64 ^ (seed << 32)).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

/// `--from` and `--to` of a pair.
fn pair_args(pair: Pair) -> (&'static str, &'static str) {
    match pair {
        Pair::Z2C4 => ("z2", "c4"),
        Pair::C4C4 => ("c4", "c4"),
        Pair::Z2D4 => ("z2", "d4"),
        Pair::D4D4 => ("d4", "d4"),
    }
}

/// Input shape `(N, C, H, W)` or `(N, C, nti, H, W)` for the pair's input space.
fn input_shape(pair: Pair, n: usize, c: usize, h: usize, w: usize) -> Vec<usize> {
    match pair.from() {
        Space::Z2 => vec![n, c, h, w],
        from => vec![n, c, from.planes(), h, w],
    }
}

/// Writes `t` (C-order values) as a `.npy` of f64 or i32 values in the given order.
fn write_as<T: npyz::AutoSerialize>(
    path: &Path,
    t: &Tensor,
    order: Order,
    convert: impl Fn(f32) -> T,
) {
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let data: Vec<T> = match order {
        Order::C => t.data().iter().map(|&v| convert(v)).collect(),
        Order::Fortran => fortran_values(t).into_iter().map(convert).collect(),
    };
    let mut file = File::create(path).unwrap();
    let mut w = WriteOptions::<T>::new()
        .default_dtype()
        .shape(&shape)
        .order(order)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    w.extend(data).unwrap();
    w.finish().unwrap();
}

/// The values of `t` in Fortran order (axis 0 fastest).
fn fortran_values(t: &Tensor) -> Vec<f32> {
    let shape = t.shape();
    let mut c_strides = vec![1usize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        c_strides[axis] = c_strides[axis + 1] * shape[axis + 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(t.len());
    for _ in 0..t.len() {
        let offset: usize = index.iter().zip(&c_strides).map(|(i, s)| i * s).sum();
        out.push(t.data()[offset]);
        for axis in 0..shape.len() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// One `gconv forward` configuration of the round-trip test.
struct Case {
    kernel: usize,
    stride: usize,
    /// `--padding` as typed.
    padding_arg: &'static str,
    /// The same padding, built independently of the CLI's parser.
    padding: Padding,
    bias: bool,
    height: usize,
    width: usize,
}

const CASES: [Case; 7] = [
    Case {
        kernel: 3,
        stride: 1,
        padding_arg: "valid",
        padding: Padding::Valid,
        bias: true,
        height: 7,
        width: 7,
    },
    Case {
        kernel: 3,
        stride: 1,
        padding_arg: "same",
        padding: Padding::Same,
        bias: false,
        height: 6,
        width: 6,
    },
    Case {
        kernel: 2,
        stride: 1,
        padding_arg: "1",
        padding: Padding::symmetric(1),
        bias: true,
        height: 6,
        width: 6,
    },
    Case {
        kernel: 4,
        stride: 2,
        padding_arg: "valid",
        padding: Padding::Valid,
        bias: true,
        height: 8,
        width: 8,
    },
    Case {
        kernel: 3,
        stride: 2,
        padding_arg: "1,2,0,1",
        padding: Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 0,
            right: 1,
        },
        bias: false,
        height: 7,
        width: 6,
    },
    Case {
        kernel: 5,
        stride: 2,
        padding_arg: "2",
        padding: Padding::symmetric(2),
        bias: true,
        height: 9,
        width: 9,
    },
    Case {
        kernel: 4,
        stride: 1,
        padding_arg: "2,1,2,1",
        padding: Padding::Explicit {
            top: 2,
            bottom: 1,
            left: 2,
            right: 1,
        },
        bias: false,
        height: 5,
        width: 6,
    },
];

const PAIRS: [Pair; 4] = [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4];

/// Checks `y` against the f64 oracle within `(terms + 2) * eps_f32 * sum |x w|`
/// (plus `|b|`, the one extra term the bias adds).
fn assert_matches_reference(
    pair: Pair,
    case: &Case,
    x: &Tensor,
    w: &Tensor,
    b: Option<&[f32]>,
    y: &Tensor,
) {
    let [n, c_out, c_in] = [x.shape()[0], w.shape()[0], w.shape()[1]];
    let spec = RefConvSpec {
        group: match pair.to() {
            Space::D4 => RefGroup::D4,
            _ => RefGroup::C4,
        },
        lifting: pair.from() == Space::Z2,
        batch: n,
        in_channels: c_in,
        out_channels: c_out,
        height: case.height,
        width: case.width,
        kernel: case.kernel,
        stride: case.stride,
        pad: case.padding.resolve(case.kernel).unwrap(),
    };
    let reference = reference_conv(&spec, x.data(), w.data(), b);
    assert_eq!(y.shape(), &reference.shape[..]);
    let terms = (c_in * pair.from().planes() * case.kernel * case.kernel) as f64;
    let per_channel = reference.shape[2] * reference.shape[3] * reference.shape[4];
    for (i, ((&got, &want), &abs_sum)) in y
        .data()
        .iter()
        .zip(&reference.value)
        .zip(&reference.abs_sum)
        .enumerate()
    {
        let bias = b.map_or(0.0, |b| f64::from(b[(i / per_channel) % c_out].abs()));
        let tol = (terms + 2.0) * f64::from(f32::EPSILON) * (abs_sum + bias);
        assert!(
            (f64::from(got) - want).abs() <= tol,
            "{} K={} stride {} padding {}: y[{i}] = {got}, reference {want}, tolerance {tol}",
            pair.name(),
            case.kernel,
            case.stride,
            case.padding_arg
        );
    }
}

#[test]
fn round_trip_matches_the_library_and_the_reference_for_every_pair() {
    let dir = TempDir::new("round-trip");
    let (n, c_in, c_out) = (2, 2, 3);
    for (p, &pair) in PAIRS.iter().enumerate() {
        for (c, case) in CASES.iter().enumerate() {
            let seed = (p * 100 + c) as u64;
            let x = values(&input_shape(pair, n, c_in, case.height, case.width), seed);
            let nti = pair.from().planes();
            let w = values(&[c_out, c_in, nti, case.kernel, case.kernel], seed + 1);
            let b = case.bias.then(|| values(&[c_out], seed + 2));
            let (xp, wp, bp, yp) = (
                format!("x{p}{c}.npy"),
                format!("w{p}{c}.npy"),
                format!("b{p}{c}.npy"),
                format!("y{p}{c}.npy"),
            );
            write_npy(dir.join(&xp), &x).unwrap();
            write_npy(dir.join(&wp), &w).unwrap();
            let (from, to) = pair_args(pair);
            let stride = case.stride.to_string();
            let mut args = vec![
                "--from",
                from,
                "--to",
                to,
                "--input",
                &xp,
                "--weight",
                &wp,
                "--stride",
                &stride,
                "--padding",
                case.padding_arg,
                "--output",
                &yp,
            ];
            if let Some(b) = &b {
                write_npy(dir.join(&bp), b).unwrap();
                args.extend(["--bias", bp.as_str()]);
            }
            let out = forward(&dir, &args);
            let what = format!("{} case {c}: {}", pair.name(), text(&out.stderr));
            assert!(out.status.success(), "{what}");
            assert!(out.stdout.is_empty(), "{what}");
            let y = read_npy(dir.join(&yp)).unwrap();

            // Shape from the conventions' formula, independently of the library.
            let [top, bottom, left, right] = case.padding.resolve(case.kernel).unwrap();
            let h_out = (case.height + top + bottom - case.kernel) / case.stride + 1;
            let w_out = (case.width + left + right - case.kernel) / case.stride + 1;
            let nto = pair.to().planes();
            assert_eq!(y.shape(), &[n, c_out, nto, h_out, w_out], "{what}");

            let bias = b.as_ref().map(|b| b.data().to_vec());
            let layer =
                AnyConv::from_weights(pair, w.clone(), bias.clone(), case.stride, case.padding)
                    .unwrap();
            assert_eq!(y, layer.forward(&x).unwrap(), "{what}");
            assert_matches_reference(pair, case, &x, &w, bias.as_deref(), &y);
        }
    }
}

#[test]
fn float64_and_fortran_order_files_equal_the_f32_cast() {
    let dir = TempDir::new("f64");
    for (p, &pair) in PAIRS.iter().enumerate() {
        let seed = 7 + p as u64;
        let nti = pair.from().planes();
        // Values with more precision than f32 holds, so the cast matters.
        let x64 = values(&input_shape(pair, 1, 2, 6, 5), seed);
        let w64 = values(&[3, 2, nti, 3, 3], seed + 1);
        let b64 = values(&[3], seed + 2);
        let fine = |v: f32| f64::from(v) * 1.1 + 1.0 / 3000.0;
        write_as(&dir.join("x.npy"), &x64, Order::C, fine);
        write_as(&dir.join("w.npy"), &w64, Order::C, fine);
        write_as(&dir.join("b.npy"), &b64, Order::C, fine);
        // The same values in Fortran order: float32 input, float64 weight.
        write_as(&dir.join("xf.npy"), &x64, Order::Fortran, |v| v);
        write_as(&dir.join("wf.npy"), &w64, Order::Fortran, fine);

        let (from, to) = pair_args(pair);
        let common = [
            "--from",
            from,
            "--to",
            to,
            "--bias",
            "b.npy",
            "--padding",
            "1",
        ];
        let out = forward(
            &dir,
            &[
                &common[..],
                &["--input", "x.npy", "--weight", "w.npy", "--output", "y.npy"],
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = forward(
            &dir,
            &[
                &common[..],
                &[
                    "--input", "xf.npy", "--weight", "wf.npy", "--output", "yf.npy",
                ],
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));

        let cast = |t: &Tensor| t.map(|v| fine(v) as f32);
        let layer = AnyConv::from_weights(
            pair,
            cast(&w64),
            Some(cast(&b64).data().to_vec()),
            1,
            Padding::symmetric(1),
        )
        .unwrap();
        let expected = layer.forward(&cast(&x64)).unwrap();
        assert_eq!(read_npy(dir.join("y.npy")).unwrap(), expected, "{pair:?}");
        // Fortran order is read back to the same array numpy shows.
        let expected_f = AnyConv::from_weights(
            pair,
            cast(&w64),
            Some(cast(&b64).data().to_vec()),
            1,
            Padding::symmetric(1),
        )
        .unwrap()
        .forward(&x64)
        .unwrap();
        assert_eq!(
            read_npy(dir.join("yf.npy")).unwrap(),
            expected_f,
            "{pair:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Bad inputs.

/// A directory with a valid C4->C4 problem: x (2, 3, 4, 9, 9), w (5, 3, 4, 3, 3),
/// b (5,), w4 (5, 3, 4, 4, 4).
fn fixture(test: &str) -> TempDir {
    let dir = TempDir::new(test);
    write_npy(dir.join("x.npy"), &values(&[2, 3, 4, 9, 9], 1)).unwrap();
    write_npy(dir.join("w.npy"), &values(&[5, 3, 4, 3, 3], 2)).unwrap();
    write_npy(dir.join("w4.npy"), &values(&[5, 3, 4, 4, 4], 3)).unwrap();
    write_npy(dir.join("b.npy"), &values(&[5], 4)).unwrap();
    dir
}

/// The C4->C4 fixture command with `overrides` replacing or adding options.
fn c4_args<'a>(overrides: &[(&'a str, &'a str)]) -> Vec<&'a str> {
    let mut options: Vec<(&str, &str)> = vec![
        ("--from", "c4"),
        ("--to", "c4"),
        ("--input", "x.npy"),
        ("--weight", "w.npy"),
        ("--output", "y.npy"),
    ];
    for &(key, value) in overrides {
        match options.iter_mut().find(|(k, _)| *k == key) {
            Some(option) => option.1 = value,
            None => options.push((key, value)),
        }
    }
    options.into_iter().flat_map(|(k, v)| [k, v]).collect()
}

/// Runs a command that must fail: exit status 2, nothing on stdout, exactly one line
/// on stderr, and no `y.npy` afterwards. Returns the line.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = forward(dir, args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    let line = stderr.strip_suffix('\n').unwrap_or(&stderr);
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "{args:?}: not one line: {stderr:?}"
    );
    assert!(line.starts_with("gconv: "), "{line}");
    assert!(!line.contains("panicked"), "{line}");
    assert!(!dir.join("y.npy").exists(), "{args:?}: output written");
    line.to_string()
}

fn assert_contains(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "{part:?} missing from: {line}");
    }
}

#[test]
fn missing_input_file() {
    let dir = fixture("missing");
    let line = fails(&dir, &c4_args(&[("--input", "nope/missing.npy")]));
    assert_contains(&line, &["nope/missing.npy", "cannot open"]);
}

#[test]
fn file_that_is_not_npy() {
    let dir = fixture("not-npy");
    std::fs::write(dir.join("x.txt"), "hello, not an array\n").unwrap();
    let line = fails(&dir, &c4_args(&[("--input", "x.txt")]));
    assert_contains(&line, &["x.txt", "not a valid .npy"]);
}

#[test]
fn int32_dtype_is_refused() {
    let dir = fixture("int32");
    write_as(
        &dir.join("wi.npy"),
        &values(&[5, 3, 4, 3, 3], 5),
        Order::C,
        |v| (v * 10.0) as i32,
    );
    let line = fails(&dir, &c4_args(&[("--weight", "wi.npy")]));
    assert_contains(&line, &["wi.npy", "<i4", "float32 or float64"]);
}

#[test]
fn input_of_the_wrong_rank() {
    let dir = fixture("rank");
    write_npy(dir.join("x4.npy"), &values(&[2, 3, 9, 9], 5)).unwrap();
    let line = fails(&dir, &c4_args(&[("--input", "x4.npy")]));
    assert_contains(
        &line,
        &[
            "x4.npy",
            "expected shape (N, 3, 4, H, W)",
            "found (2, 3, 9, 9)",
        ],
    );
    // And a Z2 input given a group map.
    write_npy(dir.join("w1.npy"), &values(&[5, 3, 1, 3, 3], 6)).unwrap();
    let line = fails(&dir, &c4_args(&[("--from", "z2"), ("--weight", "w1.npy")]));
    assert_contains(
        &line,
        &[
            "x.npy",
            "expected shape (N, 3, H, W)",
            "found (2, 3, 4, 9, 9)",
            "Z2->C4",
        ],
    );
}

#[test]
fn weight_of_the_wrong_rank_planes_or_kernel() {
    let dir = fixture("weight");
    for (name, shape, expected) in [
        ("w4d.npy", vec![5, 3, 3, 3], "(C_out, C_in, 4, K, K)"),
        ("w8.npy", vec![5, 3, 8, 3, 3], "(C_out, C_in, 4, K, K)"),
        ("wrect.npy", vec![5, 3, 4, 3, 2], "(C_out, C_in, 4, K, K)"),
    ] {
        write_npy(dir.join(name), &values(&shape, 7)).unwrap();
        let line = fails(&dir, &c4_args(&[("--weight", name)]));
        let found = format!(
            "found ({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_contains(&line, &[name, expected, &found]);
    }
    let line = fails(&dir, &c4_args(&[("--weight", "wrect.npy")]));
    assert_contains(&line, &["square"]);
    // A lifting layer's weight has one plane.
    let line = fails(&dir, &c4_args(&[("--from", "z2")]));
    assert_contains(
        &line,
        &["w.npy", "(C_out, C_in, 1, K, K)", "found (5, 3, 4, 3, 3)"],
    );
}

#[test]
fn channel_mismatch_between_input_and_weight() {
    let dir = fixture("channels");
    write_npy(dir.join("x2.npy"), &values(&[2, 2, 4, 9, 9], 5)).unwrap();
    let line = fails(&dir, &c4_args(&[("--input", "x2.npy")]));
    assert_contains(
        &line,
        &[
            "x2.npy",
            "expected shape (N, 3, 4, H, W)",
            "w.npy (5, 3, 4, 3, 3)",
            "found (2, 2, 4, 9, 9)",
        ],
    );
}

#[test]
fn group_mismatch_names_both_files_and_shapes() {
    let dir = fixture("group");
    write_npy(dir.join("x8.npy"), &values(&[2, 3, 8, 9, 9], 5)).unwrap();
    let line = fails(&dir, &c4_args(&[("--input", "x8.npy")]));
    assert!(
        line.starts_with(
            "gconv: x8.npy: expected shape (N, 3, 4, H, W) for a C4->C4 layer with weight \
             w.npy (5, 3, 4, 3, 3), found (2, 3, 8, 9, 9)"
        ),
        "{line}"
    );
}

#[test]
fn bias_of_the_wrong_length_or_rank() {
    let dir = fixture("bias");
    write_npy(dir.join("b4.npy"), &values(&[4], 5)).unwrap();
    let line = fails(&dir, &c4_args(&[("--bias", "b4.npy")]));
    assert_contains(&line, &["b4.npy", "expected shape (5,)", "found (4,)"]);
    write_npy(dir.join("b15.npy"), &values(&[1, 5], 5)).unwrap();
    let line = fails(&dir, &c4_args(&[("--bias", "b15.npy")]));
    assert_contains(&line, &["b15.npy", "expected shape (5,)", "found (1, 5)"]);
}

#[test]
fn kernel_larger_than_the_padded_input() {
    let dir = fixture("kernel");
    write_npy(dir.join("x3.npy"), &values(&[1, 3, 4, 3, 3], 5)).unwrap();
    write_npy(dir.join("w5.npy"), &values(&[5, 3, 4, 5, 5], 6)).unwrap();
    let line = fails(
        &dir,
        &c4_args(&[("--input", "x3.npy"), ("--weight", "w5.npy")]),
    );
    assert_contains(
        &line,
        &[
            "x3.npy",
            "H >= 5 and W >= 5",
            "found (1, 3, 4, 3, 3)",
            "larger",
        ],
    );
    // Padding 1 on every side makes 3x3 fit a 5x5 kernel: it runs.
    let ok = forward(
        &dir,
        &c4_args(&[
            ("--input", "x3.npy"),
            ("--weight", "w5.npy"),
            ("--padding", "1"),
        ]),
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(
        read_npy(dir.join("y.npy")).unwrap().shape(),
        &[1, 5, 4, 1, 1]
    );
}

#[test]
fn zero_stride() {
    let dir = fixture("stride");
    let line = fails(&dir, &c4_args(&[("--stride", "0")]));
    assert_contains(&line, &["--stride 0", "at least 1"]);
    for bad in ["two", "-1", ""] {
        let line = fails(&dir, &c4_args(&[("--stride", bad)]));
        assert_contains(&line, &[&format!("--stride {bad}")]);
    }
}

#[test]
fn same_padding_with_an_even_kernel_explains_and_offers_alternatives() {
    let dir = fixture("same-even");
    let line = fails(
        &dir,
        &c4_args(&[("--weight", "w4.npy"), ("--padding", "same")]),
    );
    assert_contains(
        &line,
        &[
            "w4.npy",
            "4x4",
            "equivariance",
            "--padding valid",
            "symmetric",
            "--padding 2",
            "T,B,L,R",
        ],
    );
    // The symmetric alternative it offers runs without a warning.
    let ok = forward(
        &dir,
        &c4_args(&[("--weight", "w4.npy"), ("--padding", "2")]),
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(
        !text(&ok.stderr).contains("warning"),
        "{}",
        text(&ok.stderr)
    );
}

#[test]
fn unsupported_pair_and_unknown_space() {
    let dir = fixture("pair");
    let line = fails(&dir, &c4_args(&[("--to", "d4")]));
    assert_contains(&line, &["--from c4 --to d4", "there is no C4 -> D4"]);
    let line = fails(&dir, &c4_args(&[("--to", "z2")]));
    assert_contains(&line, &["there is no"]);
    let line = fails(&dir, &c4_args(&[("--from", "x4")]));
    assert_contains(&line, &["--from x4", "z2, c4 or d4"]);
}

#[test]
fn malformed_padding() {
    let dir = fixture("padding");
    for bad in ["1,2", "a", "-1", "-1,0,0,0", "1,2,3,4,5", ""] {
        let line = fails(&dir, &c4_args(&[("--padding", bad)]));
        assert_contains(&line, &["--padding", "T,B,L,R"]);
    }
}

#[test]
fn output_in_a_missing_directory() {
    let dir = fixture("out-dir");
    let line = fails(&dir, &c4_args(&[("--output", "no/such/dir/y.npy")]));
    assert_contains(&line, &["no/such/dir/y.npy", "does not exist"]);
}

#[test]
fn a_failed_run_leaves_an_existing_output_unchanged() {
    let dir = fixture("keep");
    let before = b"an earlier result".to_vec();
    std::fs::write(dir.join("keep.npy"), &before).unwrap();
    write_npy(dir.join("x8.npy"), &values(&[2, 3, 8, 9, 9], 5)).unwrap();
    for overrides in [
        vec![("--input", "x8.npy")],
        vec![("--bias", "missing.npy")],
        vec![("--weight", "w4.npy"), ("--padding", "same")],
    ] {
        let mut overrides = overrides;
        overrides.push(("--output", "keep.npy"));
        let out = forward(&dir, &c4_args(&overrides));
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(dir.join("keep.npy")).unwrap(), before);
    }
    // Nothing else (no temporary file) was left beside it.
    let mut names: Vec<String> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["b.npy", "keep.npy", "w.npy", "w4.npy", "x.npy", "x8.npy"]
    );
}

// ---------------------------------------------------------------------------------
// Equivariance warnings.

/// Runs a command that must succeed; returns its stderr.
fn succeeds(dir: &Path, args: &[&str]) -> String {
    let out = forward(dir, args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    assert!(dir.join("y.npy").exists());
    stderr
}

#[test]
fn asymmetric_padding_runs_with_an_equivariance_warning() {
    let dir = fixture("asym");
    // TensorFlow's "same" for K = 4 on a 9x9 input: (1, 2) on each axis.
    let stderr = succeeds(
        &dir,
        &c4_args(&[("--weight", "w4.npy"), ("--padding", "1,2,1,2")]),
    );
    assert_contains(
        &stderr,
        &["warning", "equivariant", "asymmetric", "0.5 pixel", "H = 9"],
    );
    let y = read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.shape(), &[2, 5, 4, 9, 9]);
}

#[test]
fn stride_of_the_wrong_parity_warns() {
    let dir = fixture("parity");
    // Odd K at stride 2 needs an odd size: 8x8 is off-centre.
    write_npy(dir.join("x88.npy"), &values(&[1, 3, 4, 8, 8], 5)).unwrap();
    let stderr = succeeds(&dir, &c4_args(&[("--input", "x88.npy"), ("--stride", "2")]));
    assert_contains(
        &stderr,
        &[
            "warning",
            "equivariant",
            "stride 2",
            "H + padding - K = 8 + 0 - 3 must be a multiple of 2",
        ],
    );
    // 9x9 at stride 2 is centred: no warning.
    let stderr = succeeds(&dir, &c4_args(&[("--stride", "2")]));
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn different_first_row_and_column_padding_warns() {
    let dir = fixture("top-left");
    let stderr = succeeds(&dir, &c4_args(&[("--padding", "1,1,0,0")]));
    assert_contains(
        &stderr,
        &["warning", "equivariant", "above (1)", "left (0)"],
    );
}

#[test]
fn equivariant_configurations_do_not_warn() {
    let dir = fixture("no-warning");
    for overrides in [
        vec![],
        vec![("--padding", "same")],
        vec![("--padding", "1")],
        vec![("--weight", "w4.npy")],
        vec![("--weight", "w4.npy"), ("--padding", "2")],
    ] {
        let stderr = succeeds(&dir, &c4_args(&overrides));
        assert!(!stderr.contains("warning"), "{overrides:?}: {stderr}");
        // Just the one summary line.
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("C4->C4: (2, 3, 4, 9, 9) -> (2, 5, 4, "),
            "{stderr}"
        );
    }
}

/// `--path` runs the chosen path: each output equals the library layer on that path
/// bit for bit and matches the reference; a path that cannot take the layer and an
/// unknown path are one-line errors that write nothing.
#[test]
fn path_option_runs_that_path() {
    let dir = fixture("path");
    let x = read_npy(dir.join("x.npy")).unwrap();
    let w = read_npy(dir.join("w.npy")).unwrap();
    let b = read_npy(dir.join("b.npy")).unwrap();
    let case = &Case {
        height: 9,
        width: 9,
        kernel: 3,
        stride: 1,
        padding: Padding::Valid,
        padding_arg: "valid",
        bias: true,
    };
    for path in ["auto", "direct", "blocked", "fast", "fourier"] {
        let args = c4_args(&[("--bias", "b.npy"), ("--path", path)]);
        let out = forward(&dir, &args);
        assert!(out.status.success(), "{path}: {}", text(&out.stderr));
        let y = read_npy(dir.join("y.npy")).unwrap();
        std::fs::remove_file(dir.join("y.npy")).unwrap();
        let mut layer = AnyConv::from_weights(
            Pair::C4C4,
            w.clone(),
            Some(b.data().to_vec()),
            1,
            Padding::Valid,
        )
        .unwrap();
        layer.set_path(ConvPath::parse(path).unwrap());
        assert_eq!(y, layer.forward(&x).unwrap(), "{path}");
        assert_matches_reference(Pair::C4C4, case, &x, &w, Some(b.data()), &y);
    }
    let line = fails(&dir, &c4_args(&[("--path", "winograd")]));
    assert_contains(&line, &["--path", "winograd", "blocked"]);
    write_npy(dir.join("w13.npy"), &values(&[5, 3, 4, 13, 13], 5)).unwrap();
    write_npy(dir.join("x13.npy"), &values(&[1, 3, 4, 13, 13], 6)).unwrap();
    let args = c4_args(&[
        ("--weight", "w13.npy"),
        ("--input", "x13.npy"),
        ("--path", "fast"),
    ]);
    assert_contains(
        &fails(&dir, &args),
        &["--path", "fast path takes kernels up to 11x11"],
    );
}

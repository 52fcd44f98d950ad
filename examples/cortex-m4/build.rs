//! Host side of the firmware example: generates the raw weights (seeded), the input
//! and the expected outputs with gconv-std, and writes them to `OUT_DIR/data.rs` as
//! `static` arrays that the firmware includes (so they live in flash).
//!
//! The expected output is the host's `gconv_std::Model::forward` of the very same
//! weights and input: the firmware must reproduce it on the target.

use std::fmt::Write as _;
use std::path::PathBuf;

use gconv_std::gconv_core::layers::Reduce;
use gconv_std::model::Dense;
use gconv_std::reference::{RefConvSpec, RefGroup, reference_conv};
use gconv_std::{AnyConv, ConvPath, Feature, Layer, Model, Padding, Pair, Space, Tensor};

/// Input size, channels and classes of the example network (must match src/main.rs).
const H: usize = 8;
const W: usize = 8;
const C_HIDDEN: usize = 4;
const CLASSES: usize = 10;
const K: usize = 3;

/// A small deterministic generator (SplitMix64) for the non-conv parameters.
struct SplitMix(u64);
impl SplitMix {
    fn next_f32(&mut self, bound: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
        (2.0 * unit - 1.0) * bound
    }
    fn vec(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32(bound)).collect()
    }
}

fn array(out: &mut String, name: &str, data: &[f32]) {
    writeln!(out, "pub static {name}: [f32; {}] = [", data.len()).unwrap();
    for chunk in data.chunks(8) {
        out.push_str("   ");
        for v in chunk {
            // `{:?}` prints the shortest representation that round-trips exactly.
            write!(out, " {v:?}f32,").unwrap();
        }
        out.push('\n');
    }
    out.push_str("];\n");
}

/// One model: lift 1 -> C_HIDDEN, ReLU, group conv C_HIDDEN -> C_HIDDEN, ReLU,
/// group max pooling, global average pooling, dense C_HIDDEN -> CLASSES.
fn model(out: &mut String, module: &str, lift: Pair, group: Pair, seed: u64, input: &Tensor) {
    let mut rng = SplitMix(seed ^ 0xC0FF_EE00);
    // Seeded He-uniform raw weights from gconv-std; small nonzero biases so the bias
    // path is exercised too.
    let l1 = AnyConv::new(lift, 1, C_HIDDEN, K, 1, Padding::Same, seed).unwrap();
    let l1 = AnyConv::from_weights(
        lift,
        l1.weight().clone(),
        Some(rng.vec(C_HIDDEN, 0.1)),
        1,
        Padding::Same,
    )
    .unwrap();
    let l2 = AnyConv::new(group, C_HIDDEN, C_HIDDEN, K, 1, Padding::Same, seed + 1).unwrap();
    let l2 = AnyConv::from_weights(
        group,
        l2.weight().clone(),
        Some(rng.vec(C_HIDDEN, 0.1)),
        1,
        Padding::Same,
    )
    .unwrap();
    // The firmware runs gconv-core's blocked path; the host runs the same path (its
    // portable form, which sums in the order of the device's Arm tiles, each product
    // rounded before it is added, as `VMLA` does) so that the two can be compared
    // bit for bit, not only within the rounding tolerance.
    let (mut l1, mut l2) = (l1, l2);
    l1.set_path(ConvPath::Blocked);
    l2.set_path(ConvPath::Blocked);
    let bound = (6.0 / C_HIDDEN as f32).sqrt();
    let dw = Tensor::new(vec![CLASSES, C_HIDDEN], rng.vec(CLASSES * C_HIDDEN, bound)).unwrap();
    let db = rng.vec(CLASSES, 0.1);
    let dense = Dense::new(dw.clone(), Some(db.clone())).unwrap();

    let net = Model::new(
        Feature::Map {
            space: Space::Z2,
            channels: 1,
            height: H,
            width: W,
        },
        vec![
            Layer::Conv(l1.clone()),
            Layer::Relu,
            Layer::Conv(l2.clone()),
            Layer::Relu,
            Layer::GroupPool(Reduce::Max),
            Layer::GlobalAvgPool,
            Layer::Dense(dense),
        ],
        false,
    )
    .unwrap();
    let y = net.forward(input).unwrap();
    assert_eq!(y.shape(), &[1, CLASSES]);

    writeln!(
        out,
        "/// {} model: raw weights, biases and the host's expected output.",
        module.to_uppercase()
    )
    .unwrap();
    writeln!(out, "pub mod {module} {{").unwrap();
    array(out, "LIFT_W", l1.weight().data());
    array(out, "LIFT_B", l1.bias().unwrap());
    array(out, "GCONV_W", l2.weight().data());
    array(out, "GCONV_B", l2.bias().unwrap());
    array(out, "DENSE_W", dw.data());
    array(out, "DENSE_B", &db);
    let mut expected = y.data().to_vec();
    if std::env::var_os("GCONV_CM4_SELFTEST_FAIL").is_some_and(|v| v == "1") {
        // Self-test of the failure path: one ulp off, the smallest error there is;
        // the firmware requires equal bits, so it must fail.
        expected[0] = f32::from_bits(expected[0].to_bits() ^ 1);
    }
    array(out, "EXPECTED", &expected);
    out.push_str("}\n");
}

/// The measured layers: `(name, group, lifting, C_in, C_out, size, K)`, `same`
/// padding, stride 1, batch 1. The first five are the Cortex-M4 issue's (3x3); the
/// two 5x5 layers check the blocked path's `K = 5` Arm tiles. The firmware reads them
/// from the generated `data::shapes` (src/shapes.rs).
const SHAPES: [(&str, RefGroup, bool, usize, usize, usize, usize); 7] = [
    ("a", RefGroup::C4, false, 10, 10, 28, 3),
    ("e", RefGroup::C4, false, 4, 4, 16, 3),
    ("d4", RefGroup::D4, false, 4, 4, 16, 3),
    ("lift-c4", RefGroup::C4, true, 1, 10, 28, 3),
    ("lift-d4", RefGroup::D4, true, 1, 10, 28, 3),
    ("d4-k5", RefGroup::D4, false, 4, 4, 16, 5),
    ("lift-c4-k5", RefGroup::C4, true, 1, 10, 28, 5),
];

/// Writes `data` as little-endian f32 to `OUT_DIR/<file>` (embedded with
/// `include_bytes!`: large inputs and expected outputs would make slow source).
fn blob(file: &str, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(file);
    std::fs::write(path, bytes).unwrap();
}

/// The measured layers: seeded raw weights and biases as `static` arrays (flash), the
/// input, and the expected output with its per-output tolerance from the **f64
/// reference** (`gconv_std::reference`, written from the definition; not the kernel
/// the device runs), as little-endian f32 blobs.
fn shapes(out: &mut String) {
    out.push_str("/// The measured layers (same padding, stride 1, batch 1).\npub mod shapes {\n");
    shape_list(out, &SHAPES, 0x5EED_0000);
}

/// The panic gate's convolutions (`src/gate.rs`): one small layer per group pair, run
/// on every algorithm and every path's own entry points, checked like [`SHAPES`].
const GATE_SHAPES: [(&str, RefGroup, bool, usize, usize, usize, usize); 4] = [
    ("gate-lift-c4", RefGroup::C4, true, 2, 3, 7, 3),
    ("gate-c4", RefGroup::C4, false, 2, 3, 7, 3),
    ("gate-lift-d4", RefGroup::D4, true, 2, 3, 7, 3),
    ("gate-d4", RefGroup::D4, false, 2, 3, 7, 3),
];

/// The panic gate's data: its convolutions (as [`shapes`]) and its layers' inputs,
/// parameters and expected outputs, computed on the host by the same gconv-core
/// functions (the layers' arithmetic is exact per element, so the device must match
/// bit for bit).
fn gate(out: &mut String) {
    use gconv_std::gconv_core::{layers, pool};
    out.push_str("/// The panic gate's convolutions and layers (src/gate.rs).\npub mod gate {\n");
    shape_list(out, &GATE_SHAPES, 0x6A7E_0000);
    let mut rng = SplitMix(0x6A7E_1000);
    // A D4 group map: 2 G-channels x 8 orientations x 6x6.
    let (channels, order, hw) = (2usize, 8usize, 36usize);
    let x = rng.vec(channels * order * hw, 1.0);
    let mut relu = x.clone();
    layers::relu(&mut relu);
    let scale = rng.vec(channels, 2.0);
    let shift = rng.vec(channels, 0.5);
    let mut affine = x.clone();
    layers::channel_affine(channels, order * hw, &scale, &shift, &mut affine).unwrap();
    let mut gmax = vec![0.0f32; channels * hw];
    layers::group_pool(layers::Reduce::Max, channels, order, hw, &x, &mut gmax).unwrap();
    let mut gmean = vec![0.0f32; channels * hw];
    layers::group_pool(layers::Reduce::Mean, channels, order, hw, &x, &mut gmean).unwrap();
    let planes = channels * order;
    let mut gap = vec![0.0f32; planes];
    layers::global_avg_pool(planes, hw, &x, &mut gap).unwrap();
    let dw = rng.vec(10 * planes, 0.5);
    let db = rng.vec(10, 0.1);
    let mut dense = vec![0.0f32; 10];
    layers::dense(1, planes, 10, &gap, &dw, Some(&db[..]), &mut dense).unwrap();
    let ps = pool::PoolShape {
        planes,
        height: 6,
        width: 6,
        window: 3,
        stride: 2,
        padding: Padding::Same,
    };
    let n = ps.geometry().unwrap().output_len();
    let (mut maxp, mut avgp) = (vec![0.0f32; n], vec![0.0f32; n]);
    pool::max_pool(&ps, &x, &mut maxp).unwrap();
    pool::avg_pool(&ps, &x, &mut avgp).unwrap();
    if std::env::var_os("GCONV_CM4_SELFTEST_FAIL").is_some_and(|v| v == "1") {
        dense[3] += 1.0;
    }
    for (name, data) in [
        ("X", &x),
        ("RELU", &relu),
        ("SCALE", &scale),
        ("SHIFT", &shift),
        ("AFFINE", &affine),
        ("GROUP_MAX", &gmax),
        ("GROUP_MEAN", &gmean),
        ("GAP", &gap),
        ("DENSE_W", &dw),
        ("DENSE_B", &db),
        ("DENSE", &dense),
        ("MAX_POOL", &maxp),
        ("AVG_POOL", &avgp),
    ] {
        array_indented(out, name, data);
    }
    out.push_str("}\n");
}

/// `list`'s layers as `Shape`s (seeded from `seed`) and `ALL`, closing the module.
fn shape_list(
    out: &mut String,
    list_in: &[(&str, RefGroup, bool, usize, usize, usize, usize)],
    seed: u64,
) {
    out.push_str("    use super::Shape;\n");
    let mut list = format!("    pub static ALL: [Shape; {}] = [\n", list_in.len());
    let selftest = std::env::var_os("GCONV_CM4_SELFTEST_FAIL").is_some_and(|v| v == "1");
    for (n, &(name, group, lifting, c_in, c_out, size, k)) in list_in.iter().enumerate() {
        let mut rng = SplitMix(seed + n as u64);
        let nti = if lifting { 1 } else { group.order() };
        let planes_in = c_in * nti;
        let fan_in = planes_in * k * k;
        let x = rng.vec(planes_in * size * size, 1.0);
        let w = rng.vec(c_out * fan_in, (6.0 / fan_in as f32).sqrt());
        let b = rng.vec(c_out, 0.1);
        let spec = RefConvSpec {
            group,
            lifting,
            batch: 1,
            in_channels: c_in,
            out_channels: c_out,
            height: size,
            width: size,
            kernel: k,
            stride: 1,
            pad: [(k - 1) / 2; 4],
        };
        let r = reference_conv(&spec, &x, &w, Some(&b));
        let plane = group.order() * size * size;
        let mut expected: Vec<f32> = r.value.iter().map(|&v| v as f32).collect();
        // The f32 rounding bound of a sum of `fan_in` products plus the bias,
        // `(T + 2) * eps * (sum |x w| + |b|)`, plus the rounding of the f64 value to
        // f32 (half an ulp). An indexing or layout error is O(|y|), far above it.
        let tol: Vec<f32> = r
            .abs_sum
            .iter()
            .zip(&r.value)
            .enumerate()
            .map(|(i, (&s, &v))| {
                let bias = f64::from(b[i / plane].abs());
                ((fan_in as f64 + 2.0) * f64::from(f32::EPSILON) * (s + bias)
                    + 0.5 * f64::from(f32::EPSILON) * v.abs()) as f32
            })
            .collect();
        if selftest {
            // Self-test of the failure path: one output off by 1% of max|y|.
            let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let mid = expected.len() / 2;
            expected[mid] += 0.01 * scale;
        }
        let id = name.replace('-', "_");
        blob(&format!("{id}_x.bin"), &x);
        blob(&format!("{id}_y.bin"), &expected);
        blob(&format!("{id}_tol.bin"), &tol);
        let upper = id.to_uppercase();
        array_indented(out, &format!("{upper}_W"), &w);
        array_indented(out, &format!("{upper}_B"), &b);
        writeln!(
            list,
            "        Shape {{ name: {name:?}, order: {order}, lifting: {lifting}, in_channels: {c_in}, \
             out_channels: {c_out}, size: {size}, kernel: {k}, weight: &{upper}_W, bias: &{upper}_B, \
             input: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{id}_x.bin\")), \
             expected: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{id}_y.bin\")), \
             tolerance: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{id}_tol.bin\")) }},",
            order = group.order(),
        )
        .unwrap();
    }
    list.push_str("    ];\n");
    out.push_str(&list);
}

/// The int8 measured layers: the first five of `SHAPES` (the Cortex-M4 issue's) with
/// seeded int8 inputs (zero point -5), raw int8 weights in `[-127, 127]`, int32
/// biases and one multiplier per output G-channel; the expected output is the
/// host's plain int8 kernel (`gconv_core::quant::conv`, bit-exact with TFLite's
/// reference kernels): the device's DSP path must equal it bit for bit.
fn int8_shapes(out: &mut String, selftest: bool) {
    use gconv_std::gconv_core::quant::{Multiplier, Requant, conv};
    use gconv_std::gconv_core::{C4, ConvShape, D4, Domain};
    out.push_str(
        "/// The int8 measured layers (same padding, stride 1, batch 1).\npub mod qshapes {\n",
    );
    out.push_str("    use super::QShape;\n");
    let mut list = String::from("    pub static ALL: [QShape; 5] = [\n");
    for (n, &(name, group, lifting, c_in, c_out, size, k)) in SHAPES.iter().take(5).enumerate() {
        let mut rng = SplitMix(0x1A78_0000 + n as u64);
        let mut int = |lo: i32, hi: i32| -> i32 {
            let u = (rng.next_f32(1.0) + 1.0) / 2.0; // [0, 1)
            (lo + (u * (hi - lo + 1) as f32) as i32).min(hi)
        };
        let shape = ConvShape {
            batch: 1,
            in_channels: c_in,
            out_channels: c_out,
            height: size,
            width: size,
            kernel: k,
            stride: 1,
            padding: Padding::Same,
        };
        let domain = if lifting { Domain::Z2 } else { Domain::Group };
        let geo = if group.order() == 8 {
            shape.geometry::<D4>(domain)
        } else {
            shape.geometry::<C4>(domain)
        }
        .unwrap();
        let x: Vec<i8> = (0..geo.input_len()).map(|_| int(-128, 127) as i8).collect();
        let w: Vec<i8> = (0..geo.weight_len())
            .map(|_| int(-127, 127) as i8)
            .collect();
        let b: Vec<i32> = (0..c_out).map(|_| int(-20_000, 20_000)).collect();
        // Effective scales that spread the outputs over the int8 range: the
        // accumulator's spread is about sqrt(terms) * 74 * 73.
        let terms = geo.terms_per_output() as f64;
        let ms: Vec<Multiplier> = (0..c_out)
            .map(|o| {
                Multiplier::from_real(50.0 / (terms.sqrt() * 74.0 * 73.0) * (1.0 + 0.07 * o as f64))
                    .unwrap()
            })
            .collect();
        let (zp_in, zp_out, relu) = (-5, 3, lifting);
        let requant = Requant {
            input_zero_point: zp_in,
            output_zero_point: zp_out,
            multipliers: &ms,
            relu,
        };
        let mut y = vec![0i8; geo.output_len()];
        let mut scratch = vec![0i32; conv::scratch_len_for(&geo).unwrap()];
        conv::forward_geometry(&geo, &requant, &x, &w, Some(&b), &mut y, &mut scratch).unwrap();
        if selftest {
            let mid = y.len() / 2;
            y[mid] = y[mid].wrapping_add(1);
        }
        let id = format!("q_{}", name.replace('-', "_"));
        let bytes = |v: &[i8]| -> Vec<u8> { v.iter().map(|&q| q as u8).collect() };
        let dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
        std::fs::write(dir.join(format!("{id}_x.bin")), bytes(&x)).unwrap();
        std::fs::write(dir.join(format!("{id}_y.bin")), bytes(&y)).unwrap();
        let upper = id.to_uppercase();
        let text: Vec<String> = w.iter().map(i8::to_string).collect();
        writeln!(
            out,
            "    pub static {upper}_W: [i8; {}] = [{}];",
            w.len(),
            text.join(", ")
        )
        .unwrap();
        let text: Vec<String> = b.iter().map(i32::to_string).collect();
        writeln!(
            out,
            "    pub static {upper}_B: [i32; {}] = [{}];",
            b.len(),
            text.join(", ")
        )
        .unwrap();
        let text: Vec<String> = ms
            .iter()
            .map(|m| format!("({}, {})", m.multiplier(), m.shift()))
            .collect();
        writeln!(
            out,
            "    pub static {upper}_M: [(i32, i32); {}] = [{}];",
            ms.len(),
            text.join(", ")
        )
        .unwrap();
        writeln!(
            list,
            "        QShape {{ name: {name:?}, order: {order}, lifting: {lifting}, in_channels: {c_in}, \
             out_channels: {c_out}, size: {size}, kernel: {k}, zp_in: {zp_in}, zp_out: {zp_out}, relu: {relu}, \
             weight: &{upper}_W, bias: &{upper}_B, multipliers: &{upper}_M, \
             input: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{id}_x.bin\")), \
             expected: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{id}_y.bin\")) }},",
            order = group.order(),
        )
        .unwrap();
    }
    list.push_str("    ];\n");
    out.push_str(&list);
    out.push_str("}\n");
}

fn array_indented(out: &mut String, name: &str, data: &[f32]) {
    let mut text = String::new();
    array(&mut text, name, data);
    for line in text.lines() {
        writeln!(out, "    {line}").unwrap();
    }
}

/// The digits models for `src/bin/digits.rs`: each model's Rust source written by
/// `gconv export`'s library function (`gconv_std::export::rust_source`), the rotated
/// test sets and labels, and the host's answers: the class of every image from the f32
/// models and the int8 logits of the int8 models (the device must match them bit for bit).
fn digits(out_dir: &std::path::Path, selftest: bool) {
    use gconv_std::export::{Exportable, rust_source};
    use gconv_std::npy::read_npy;
    use gconv_std::quant::QModel;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    println!("cargo:rerun-if-changed={}", root.display());
    let labels = read_npy(root.join("digits/test_labels.npy")).unwrap();
    let mut data = String::from("// Generated by build.rs. Do not edit.\n");
    let labels: Vec<String> = labels
        .data()
        .iter()
        .map(|&v| (v as u8).to_string())
        .collect();
    writeln!(
        data,
        "pub static LABELS: [u8; {}] = [{}];",
        labels.len(),
        labels.join(", ")
    )
    .unwrap();
    for (name, set) in [("p4cnn", "c4"), ("p4m", "d4")] {
        let images = read_npy(root.join(format!("digits/test_rotated_{set}.npy"))).unwrap();
        let mut text = String::from("// Generated by build.rs. Do not edit.\n");
        array(&mut text, "IMAGES", images.data());
        std::fs::write(out_dir.join(format!("digits_images_{set}.rs")), text).unwrap();
        if set == "c4" {
            // The first image alone, for the panic gate's run of the int8 runner.
            let per_image: usize = images.shape()[1..].iter().product();
            let mut text = String::from("// Generated by build.rs. Do not edit.\n");
            array(&mut text, "GATE_IMAGE", &images.data()[..per_image]);
            std::fs::write(out_dir.join("gate_image.rs"), text).unwrap();
        }

        let dir = root.join(format!("digits-{name}"));
        let model = Model::load(dir.join("model.json"), dir.join("model.safetensors")).unwrap();
        let (src, _) = rust_source(
            Exportable::F32(&model),
            &format!("models/digits-{name}"),
            None,
        )
        .unwrap_or_else(|e| panic!("digits-{name}: {e}"));
        std::fs::write(out_dir.join(format!("digits_{name}_f32.rs")), src).unwrap();
        let logits = model.forward(&images).unwrap();
        let mut classes: Vec<u8> = logits
            .data()
            .chunks_exact(CLASSES)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    )
                    .0 as u8
            })
            .collect();
        if selftest {
            classes[7] = (classes[7] + 1) % CLASSES as u8;
        }
        let text: Vec<String> = classes.iter().map(u8::to_string).collect();
        writeln!(
            data,
            "pub static HOST_CLASSES_{}_F32: [u8; {}] = [{}];",
            name.to_uppercase(),
            text.len(),
            text.join(", ")
        )
        .unwrap();

        let qdir = root.join(format!("digits-{name}-int8"));
        let q = QModel::load(qdir.join("model.json"), qdir.join("model.safetensors")).unwrap();
        let (src, _) = rust_source(
            Exportable::Int8(&q),
            &format!("models/digits-{name}-int8"),
            None,
        )
        .unwrap_or_else(|e| panic!("digits-{name}-int8: {e}"));
        std::fs::write(out_dir.join(format!("digits_{name}_int8.rs")), src).unwrap();
        let mut logits = q.forward_f32(&images).unwrap().data().to_vec();
        if selftest {
            logits[123] = logits[123].wrapping_add(1);
        }
        let text: Vec<String> = logits.iter().map(i8::to_string).collect();
        writeln!(
            data,
            "pub static HOST_LOGITS_{}_INT8: [i8; {}] = [{}];",
            name.to_uppercase(),
            text.len(),
            text.join(", ")
        )
        .unwrap();
    }
    std::fs::write(out_dir.join("digits_data.rs"), data).unwrap();
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GCONV_CM4_SELFTEST_FAIL");
    println!("cargo:rerun-if-env-changed=GCONV_CM4_BUILD");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let selftest = std::env::var_os("GCONV_CM4_SELFTEST_FAIL").is_some_and(|v| v == "1");
    digits(&out_dir, selftest);
    // `GCONV_CM4_BUILD=digits` (scripts/cortex-m4-digits.sh, building only `--bin
    // digits`): skip the data of the main binary, whose f64 references take a while.
    if std::env::var_os("GCONV_CM4_BUILD").is_some_and(|v| v == "digits") {
        return;
    }
    let mut rng = SplitMix(2024);
    let input = Tensor::new(vec![1, 1, H, W], rng.vec(H * W, 1.0)).unwrap();
    let mut out =
        String::from("// Generated by build.rs from gconv-std on the host. Do not edit.\n");
    array(&mut out, "INPUT", input.data());
    model(&mut out, "c4", Pair::Z2C4, Pair::C4C4, 7, &input);
    model(&mut out, "d4", Pair::Z2D4, Pair::D4D4, 11, &input);
    shapes(&mut out);
    out.push_str("}\n");
    gate(&mut out);
    int8_shapes(&mut out, selftest);
    std::fs::write(out_dir.join("data.rs"), out).unwrap();
}

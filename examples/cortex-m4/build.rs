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
    // The firmware runs gconv-core's direct path; the host runs the same path (not the
    // default fast path, which sums in another order with FMA) so that the two can be
    // compared bit for bit, not only within the rounding tolerance.
    let (mut l1, mut l2) = (l1, l2);
    l1.set_path(ConvPath::Direct);
    l2.set_path(ConvPath::Direct);
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
        // Self-test of the failure path: 1% of max|y|, 100x the firmware's tolerance.
        let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        expected[0] += 0.01 * scale;
    }
    array(out, "EXPECTED", &expected);
    out.push_str("}\n");
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GCONV_CM4_SELFTEST_FAIL");
    let mut rng = SplitMix(2024);
    let input = Tensor::new(vec![1, 1, H, W], rng.vec(H * W, 1.0)).unwrap();
    let mut out =
        String::from("// Generated by build.rs from gconv-std on the host. Do not edit.\n");
    array(&mut out, "INPUT", input.data());
    model(&mut out, "c4", Pair::Z2C4, Pair::C4C4, 7, &input);
    model(&mut out, "d4", Pair::Z2D4, Pair::D4D4, 11, &input);
    let path = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("data.rs");
    std::fs::write(path, out).unwrap();
}

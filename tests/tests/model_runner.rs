//! gconv-core's `no_std` model runner against gconv-std on the committed digits
//! models: int8 logits bit for bit, f32 classes for every test image (and logits
//! within a rounding bound); and the generated Rust source (`gconv export`, compiled
//! into this test by `build.rs`) runs the same.

use std::path::{Path, PathBuf};

use gconv_core::model::float::Model as CoreModel;
use gconv_core::model::int8::QModel as CoreQModel;
use gconv_core::{C4, D4, Group};
use gconv_std::export::{Exportable, core_f32, core_int8, rust_source};
use gconv_std::model::{Feature, Layer};
use gconv_std::npy::read_npy;
use gconv_std::quant::QModel;
use gconv_std::{AnyConv, Model, Padding, Pair, Tensor};

#[allow(dead_code)]
mod generated {
    pub mod p4cnn_int8 {
        include!(concat!(env!("OUT_DIR"), "/digits_p4cnn_int8.rs"));
    }
    pub mod p4m_int8 {
        include!(concat!(env!("OUT_DIR"), "/digits_p4m_int8.rs"));
    }
    pub mod p4cnn_f32 {
        include!(concat!(env!("OUT_DIR"), "/digits_p4cnn_f32.rs"));
    }
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn load(name: &str) -> (Model, QModel) {
    let d = models().join(format!("digits-{name}"));
    let q = models().join(format!("digits-{name}-int8"));
    (
        Model::load(d.join("model.json"), d.join("model.safetensors")).unwrap(),
        QModel::load(q.join("model.json"), q.join("model.safetensors")).unwrap(),
    )
}

fn images(set: &str) -> Tensor {
    read_npy(models().join(format!("digits/test_rotated_{set}.npy"))).unwrap()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// int8: the core runner's logits equal gconv-std's for every image.
fn int8_equal<G: Group>(q: &QModel, x: &Tensor) {
    let core = core_int8(q).unwrap();
    let model = CoreQModel::<G>::new(core.input, core.input_params, &core.layers, false).unwrap();
    let s = model.sizes();
    let (mut a, mut b, mut scratch) = (
        vec![0i8; s.activations],
        vec![0i8; s.activations],
        vec![0i32; s.scratch],
    );
    let host = q.forward_f32(x).unwrap();
    let per = x.len() / x.shape()[0];
    for (n, (image, want)) in x
        .data()
        .chunks_exact(per)
        .zip(host.data().chunks_exact(10))
        .enumerate()
    {
        let y = model
            .forward_f32(image, &mut a, &mut b, &mut scratch)
            .unwrap();
        assert_eq!(y, want, "image {n}");
    }
}

/// f32: the same class for every image, logits within a relative 1e-4.
fn f32_agrees<G: Group>(m: &Model, x: &Tensor) {
    let folded = m.fold_batch_norm().unwrap();
    let core = core_f32(&folded).unwrap();
    let model = CoreModel::<G>::new(core.input, &core.layers, false).unwrap();
    let s = model.sizes();
    let (mut a, mut b, mut scratch) = (
        vec![0f32; s.activations],
        vec![0f32; s.activations],
        vec![0f32; s.scratch],
    );
    let host = m.forward(x).unwrap();
    let per = x.len() / x.shape()[0];
    for (n, (image, want)) in x
        .data()
        .chunks_exact(per)
        .zip(host.data().chunks_exact(10))
        .enumerate()
    {
        let y = model.forward(image, &mut a, &mut b, &mut scratch).unwrap();
        assert_eq!(argmax(y), argmax(want), "image {n}");
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (u, v) in y.iter().zip(want) {
            assert!(
                (u - v).abs() <= 1e-4 * scale,
                "image {n}: {y:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn runner_equals_gconv_std_on_the_digits_models() {
    let (m, q) = load("p4cnn");
    int8_equal::<C4>(&q, &images("c4"));
    f32_agrees::<C4>(&m, &images("c4"));
    let (m, q) = load("p4m");
    int8_equal::<D4>(&q, &images("d4"));
    f32_agrees::<D4>(&m, &images("d4"));
}

/// One image through a core int8 model: input, the two buffers, scratch -> logits.
type RunImage<'a> = dyn Fn(&[f32], &mut [i8], &mut [i8], &mut [i32]) -> Vec<i8> + 'a;

/// The random int8 model files of the TFLite goldens, through every layer kind
/// (a C4 input, stride 2, padded max and average pooling, a standalone ReLU, group
/// mean pooling, dense on a group map and dense + ReLU): the runner equals gconv-std
/// bit for bit, and so LiteRT.
#[test]
fn runner_equals_gconv_std_on_every_layer_kind() {
    let goldens = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/golden");
    for name in [
        "int8-model-selftest",
        "int8-model-coverage-a",
        "int8-model-coverage-b",
    ] {
        let dir = goldens.join(name);
        let q = QModel::load(dir.join("model.json"), dir.join("model.safetensors")).unwrap();
        let x = read_npy(dir.join("images.npy")).unwrap();
        let core = core_int8(&q).unwrap();
        let group = core.group;
        let accept = core.accept_non_equivariant;
        let host = q.forward_f32(&x).unwrap();
        let per_in = x.len() / x.shape()[0];
        let per_out = host.data().len() / x.shape()[0];
        let check = |sizes: gconv_core::model::Sizes, run: &RunImage<'_>| {
            let (mut a, mut b, mut s) = (
                vec![0i8; sizes.activations],
                vec![0i8; sizes.activations],
                vec![0i32; sizes.scratch],
            );
            for (n, image) in x.data().chunks_exact(per_in).enumerate() {
                let y = run(image, &mut a, &mut b, &mut s);
                assert_eq!(
                    y,
                    &host.data()[n * per_out..(n + 1) * per_out],
                    "{name} image {n}"
                );
            }
        };
        if group == gconv_std::Space::D4 {
            let m =
                CoreQModel::<D4>::new(core.input, core.input_params, &core.layers, accept).unwrap();
            check(m.sizes(), &|i, a, b, s| {
                m.forward_f32(i, a, b, s).unwrap().to_vec()
            });
        } else {
            let m =
                CoreQModel::<C4>::new(core.input, core.input_params, &core.layers, accept).unwrap();
            check(m.sizes(), &|i, a, b, s| {
                m.forward_f32(i, a, b, s).unwrap().to_vec()
            });
        }
    }
}

#[test]
fn generated_source_runs_the_same() {
    let (m, q) = load("p4cnn");
    let x = images("c4");
    let host_q = q.forward_f32(&x).unwrap();
    let host_f = m.forward(&x).unwrap();
    use generated::p4cnn_f32 as gf;
    use generated::p4cnn_int8 as gi;
    let (mut a, mut b, mut s) = (
        [0i8; gi::SIZES.activations],
        [0i8; gi::SIZES.activations],
        [0i32; gi::SIZES.scratch],
    );
    let (mut fa, mut fb, mut fs) = (
        vec![0f32; gf::SIZES.activations],
        vec![0f32; gf::SIZES.activations],
        vec![0f32; gf::SIZES.scratch],
    );
    for (n, image) in x.data().chunks_exact(64).enumerate() {
        let y = gi::MODEL
            .forward_f32(image, &mut a, &mut b, &mut s)
            .unwrap();
        assert_eq!(y, &host_q.data()[n * 10..n * 10 + 10], "image {n}");
        let y = gf::MODEL.forward(image, &mut fa, &mut fb, &mut fs).unwrap();
        assert_eq!(
            argmax(y),
            argmax(&host_f.data()[n * 10..n * 10 + 10]),
            "image {n}"
        );
    }
    // The D4 model: compiled, sized and run on one image.
    let (_, q) = load("p4m");
    use generated::p4m_int8 as g8;
    assert_eq!(g8::GROUP_ORDER, 8);
    let (mut a, mut b, mut s) = (
        [0i8; g8::SIZES.activations],
        [0i8; g8::SIZES.activations],
        [0i32; g8::SIZES.scratch],
    );
    let xd = images("d4");
    let y = g8::MODEL
        .forward_f32(&xd.data()[..64], &mut a, &mut b, &mut s)
        .unwrap();
    assert_eq!(y, &q.forward_f32(&xd).unwrap().data()[..10]);
}

#[test]
fn export_refuses_what_the_runner_cannot_run() {
    let (m, q) = load("p4cnn");
    // A budget below the buffers.
    let e = rust_source(Exportable::Int8(&q), "m.json", Some(1000))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bytes of buffers") && e.contains("budget of 1000"),
        "{e}"
    );
    let (_, summary) = rust_source(Exportable::Int8(&q), "m.json", None).unwrap();
    assert!(rust_source(Exportable::Int8(&q), "m.json", Some(summary.ram_bytes)).is_ok());
    assert!(rust_source(Exportable::F32(&m), "m.json", None).is_ok());
    // A pointwise activation other than ReLU; a batch norm that follows no conv.
    let input = Feature::Map {
        space: gconv_std::Space::Z2,
        channels: 1,
        height: 8,
        width: 8,
    };
    let conv = Layer::Conv(AnyConv::new(Pair::Z2C4, 1, 2, 3, 1, Padding::Same, 1).unwrap());
    let tanh = Model::new(
        input.clone(),
        vec![conv.clone(), Layer::Pointwise(f32::tanh)],
        false,
    )
    .unwrap();
    let e = rust_source(Exportable::F32(&tanh), "m.json", None)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("layer 2:") && e.contains("pointwise"), "{e}");
    let bn =
        gconv_std::model::BatchNorm::new(&[1.0; 2], &[0.0; 2], &[0.0; 2], &[1.0; 2], 1e-5).unwrap();
    let relu_bn = Model::new(
        input.clone(),
        vec![conv.clone(), Layer::Relu, Layer::BatchNorm(bn)],
        false,
    )
    .unwrap();
    let e = rust_source(Exportable::F32(&relu_bn), "m.json", None)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("layer 3:") && e.contains("batch norm"), "{e}");
    // No convolution at all.
    let plain = Model::new(input, vec![Layer::Relu], false).unwrap();
    let e = rust_source(Exportable::F32(&plain), "m.json", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no convolution"), "{e}");
}

#[test]
fn the_runner_checks_the_rule_and_the_chain_when_built() {
    use gconv_core::model::float::{Conv, Layer as L};
    use gconv_core::model::{ConvSpec, Feature as F, LayerError, PoolSpec};
    use gconv_core::{Domain, Error};
    static W: [f32; 2 * 9] = [0.1; 18];
    let conv = L::Conv(Conv {
        spec: ConvSpec {
            domain: Domain::Z2,
            in_channels: 1,
            out_channels: 2,
            kernel: 3,
            stride: 1,
            padding: Padding::Same,
        },
        weight: &W,
        bias: None,
        relu: false,
    });
    let pool = L::Pool(PoolSpec {
        max: true,
        window: 2,
        stride: 2,
        padding: Padding::Valid,
    });
    let map = |h| F::Map {
        domain: Domain::Z2,
        channels: 1,
        height: h,
        width: h,
    };
    // 2x2 pooling on a 9x9 map is not centred: refused, unless accepted.
    let layers = [conv, pool];
    assert_eq!(
        CoreModel::<C4>::new(map(9), &layers, false).unwrap_err(),
        LayerError {
            layer: 2,
            error: Error::BreaksEquivariance
        }
    );
    assert!(CoreModel::<C4>::new(map(9), &layers, true).is_ok());
    assert!(CoreModel::<C4>::new(map(8), &layers, false).is_ok());
    // A group conv cannot take a Z2 map; a conv with weights of the wrong length.
    let layers = [conv, conv];
    assert_eq!(
        CoreModel::<C4>::new(map(8), &layers, false)
            .unwrap_err()
            .error,
        Error::LayerInput
    );
    let short = L::Conv(Conv {
        weight: &W[..9],
        ..match conv {
            L::Conv(c) => c,
            _ => unreachable!(),
        }
    });
    let e = CoreModel::<C4>::new(map(8), &[short], false).unwrap_err();
    assert_eq!(e.layer, 1);
    assert!(matches!(e.error, Error::BufferLength { .. }));
    // Buffers of the wrong size are refused before anything runs.
    let model = CoreModel::<C4>::new(map(8), &layers[..1], false).unwrap();
    let s = model.sizes();
    let (mut a, mut b, mut scratch) = (
        vec![0f32; s.activations - 1],
        vec![0f32; s.activations],
        vec![0f32; s.scratch],
    );
    assert_eq!(
        model
            .forward(&[0.0; 64], &mut a, &mut b, &mut scratch)
            .unwrap_err()
            .layer,
        0
    );
}

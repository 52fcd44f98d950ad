//! int8 convolutions: the core kernel against the independent oracle
//! (`reference_conv_i8`), bit for bit, on a grid; and exact equivariance: for every
//! group element and every configuration the equivariance rule accepts,
//! `Phi(g.x) == g.Phi(x)` bit for bit, single layers and stacks; where the rule says
//! broken, some element breaks it.

mod common;

use gconv_core::Padding;
use gconv_core::equivariance::layer_is_equivariant;
use gconv_core::layers::Reduce;
use gconv_core::quant::QuantParams;
use gconv_std::model::Feature;
use gconv_std::model::{Dense, Layer, Model};
use gconv_std::quant::ptq::quantize_model;
use gconv_std::quant::{QConv, QConvConfig, QModel, QTensor};
use gconv_std::reference::{RefConvSpec, RefGroup, reference_conv_i8};
use gconv_std::{AnyConv, Pair, Pool2d, Space, Tensor};
use rand::RngExt;
use rand::rngs::StdRng;

const PAIRS: [Pair; 4] = [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4];

fn ints(rng: &mut StdRng, len: usize, lo: i32, hi: i32) -> Vec<i8> {
    (0..len).map(|_| rng.random_range(lo..=hi) as i8).collect()
}

/// A random int8 layer whose outputs spread over the int8 range (output scale from
/// the typical size of the accumulator).
fn random_layer(
    rng: &mut StdRng,
    pair: Pair,
    (c_in, c_out, k): (usize, usize, usize),
    stride: usize,
    padding: Padding,
    relu: bool,
    input: QuantParams,
) -> QConv {
    let nti = pair.from().planes();
    let shape = [c_out, c_in, nti, k, k];
    let mut w = ints(rng, shape.iter().product(), -127, 127);
    // The extremes occur.
    w[0] = 127;
    if w.len() > 1 {
        w[1] = -127;
    }
    let ws: Vec<f32> = (0..c_out)
        .map(|_| rng.random_range(0.002f32..0.02))
        .collect();
    let terms = (c_in * nti * k * k) as f32;
    let output = QuantParams {
        scale: input.scale * 0.01 * 127.0 * 80.0 * terms.sqrt() / 127.0,
        zero_point: rng.random_range(-20..=20),
    };
    let bias: Option<Vec<i32>> = rng.random_bool(0.8).then(|| {
        (0..c_out)
            .map(|_| rng.random_range(-20_000..=20_000))
            .collect()
    });
    let config = QConvConfig {
        pair,
        stride,
        padding,
        relu,
        input,
        output,
    };
    QConv::new(config, &shape, w, ws, bias).unwrap()
}

fn ref_group(pair: Pair) -> RefGroup {
    if pair.to() == Space::D4 {
        RefGroup::D4
    } else {
        RefGroup::C4
    }
}

fn input_shape(pair: Pair, n: usize, c: usize, h: usize, w: usize) -> Vec<usize> {
    if pair.from() == Space::Z2 {
        vec![n, c, h, w]
    } else {
        vec![n, c, pair.from().planes(), h, w]
    }
}

#[test]
fn kernel_matches_the_reference_bit_for_bit() {
    let mut rng = common::rng(41);
    let (mut cases, mut degenerate) = (0, 0);
    for pair in PAIRS {
        for k in 1..=5 {
            for stride in [1, 2, 3] {
                for (h, w) in [(7, 7), (6, 8), (9, 5)] {
                    let paddings = [
                        Padding::Valid,
                        Padding::symmetric(k / 2),
                        Padding::Explicit {
                            top: 1,
                            bottom: 0,
                            left: 0,
                            right: 2,
                        },
                    ];
                    for padding in paddings {
                        let pad = padding.resolve(k).unwrap();
                        if h + pad[0] + pad[1] < k || w + pad[2] + pad[3] < k {
                            continue;
                        }
                        let zp_in = [-128, 127, 0, -7][cases % 4];
                        let input = QuantParams {
                            scale: rng.random_range(0.01f32..0.1),
                            zero_point: zp_in,
                        };
                        let relu = cases % 3 == 0;
                        let layer =
                            random_layer(&mut rng, pair, (2, 3, k), stride, padding, relu, input);
                        let xs = input_shape(pair, 2, 2, h, w);
                        let x = ints(&mut rng, xs.iter().product(), -128, 127);
                        let y = layer
                            .forward(&QTensor::new(xs, x.clone(), input).unwrap())
                            .unwrap();
                        let spec = RefConvSpec {
                            group: ref_group(pair),
                            lifting: pair.from() == Space::Z2,
                            batch: 2,
                            in_channels: 2,
                            out_channels: 3,
                            height: h,
                            width: w,
                            kernel: k,
                            stride,
                            pad,
                        };
                        let want = reference_conv_i8(
                            &spec,
                            &x,
                            (input.scale, input.zero_point),
                            layer.weight(),
                            layer.weight_scale(),
                            layer.bias(),
                            (
                                layer.output_params().scale,
                                layer.output_params().zero_point,
                            ),
                            relu,
                        );
                        assert_eq!(
                            y.data(),
                            want.as_slice(),
                            "{} K={k} stride {stride} {h}x{w} {padding:?}",
                            pair.name()
                        );
                        // Count the degenerate cases: outputs all clamped or nearly.
                        let distinct = want.iter().collect::<std::collections::BTreeSet<_>>();
                        degenerate += usize::from(distinct.len() <= want.len().min(40) / 4);
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases >= 150, "{cases} cases");
    assert!(
        degenerate * 20 < cases,
        "{degenerate} of {cases} cases have nearly constant outputs"
    );
}

/// `g.x` for an int8 tensor (the action permutes values, so it is exact).
fn act(pair: Pair, g: usize, x: &QTensor) -> QTensor {
    let moved = pair.transform(g, &x.to_f32_values()).unwrap();
    QTensor::from_exact_f32(&moved, x.params()).unwrap()
}

/// The number of group elements under which `f` is not exactly equivariant; `f`
/// maps to a group map of `pair.to()` (`out_pair` acts on the output).
fn broken_elements(pair: Pair, x: &QTensor, f: impl Fn(&QTensor) -> QTensor) -> usize {
    let y = f(x);
    (0..pair.group_order())
        .filter(|&g| f(&act(pair, g, x)) != act(pair, g, &y))
        .count()
}

#[test]
fn single_layers_are_exactly_equivariant_where_the_rule_says_so() {
    let mut rng = common::rng(7);
    let (mut exact, mut broken) = (0, 0);
    for pair in PAIRS {
        for k in 1..=5 {
            for stride in [1, 2] {
                for size in [7, 8, 9] {
                    let mut paddings = vec![
                        Padding::Valid,
                        Padding::symmetric(k / 2),
                        Padding::Explicit {
                            top: 0,
                            bottom: 1,
                            left: 0,
                            right: 1,
                        },
                    ];
                    if k % 2 == 1 {
                        paddings.push(Padding::Same);
                    }
                    for padding in paddings {
                        let input = QuantParams {
                            scale: 0.05,
                            zero_point: rng.random_range(-100..=100),
                        };
                        let layer =
                            random_layer(&mut rng, pair, (2, 2, k), stride, padding, true, input);
                        let xs = input_shape(pair, 1, 2, size, size);
                        let x = QTensor::new(
                            xs.clone(),
                            ints(&mut rng, xs.iter().product(), -128, 127),
                            input,
                        )
                        .unwrap();
                        let bad = broken_elements(pair, &x, |x| layer.forward(x).unwrap());
                        let what =
                            format!("{} K={k} s={stride} {size}x{size} {padding:?}", pair.name());
                        if layer_is_equivariant(size, size, k, stride, padding) {
                            assert_eq!(
                                bad, 0,
                                "{what}: rule says equivariant, {bad} elements differ"
                            );
                            exact += 1;
                        } else {
                            assert!(
                                bad > 0,
                                "{what}: rule says broken, but every element agrees"
                            );
                            broken += 1;
                        }
                    }
                }
            }
        }
    }
    println!("{exact} configurations exactly equivariant, {broken} broken as the rule says");
    assert!(exact > 100 && broken > 50, "{exact} exact, {broken} broken");
}

/// A whole int8 G-CNN: a random float stack (lift, group conv + ReLU, 2x2 max pool,
/// even-K group conv, 3x3 average pool, group mean pooling, global average pooling,
/// dense) quantized by PTQ on the batch `x` it will run on.
fn random_stack(group: Space, x: &Tensor, accept: bool) -> QModel {
    let lift = if group == Space::C4 {
        Pair::Z2C4
    } else {
        Pair::Z2D4
    };
    let gconv = if group == Space::C4 {
        Pair::C4C4
    } else {
        Pair::D4D4
    };
    let size = x.shape()[2];
    let layers = vec![
        Layer::Conv(AnyConv::new(lift, 1, 3, 3, 1, Padding::Same, 1).unwrap()),
        Layer::Relu,
        Layer::Conv(AnyConv::new(gconv, 3, 3, 3, 1, Padding::Same, 2).unwrap()),
        Layer::Relu,
        Layer::Pool(Pool2d::max(2)),
        Layer::Conv(AnyConv::new(gconv, 3, 4, 2, 1, Padding::symmetric(1), 3).unwrap()),
        Layer::Pool(Pool2d {
            kind: gconv_std::PoolKind::Avg,
            window: 3,
            stride: 1,
            padding: Padding::Valid,
        }),
        Layer::GroupPool(Reduce::Mean),
        Layer::GlobalAvgPool,
        Layer::Dense(
            Dense::new(
                Tensor::from_fn(vec![5, 4], |i| (i as f32 * 0.37).sin()),
                Some(vec![0.1; 5]),
            )
            .unwrap(),
        ),
    ];
    let input = Feature::Map {
        space: Space::Z2,
        channels: 1,
        height: size,
        width: size,
    };
    let float = Model::new(input, layers, accept).unwrap();
    quantize_model(&float, x).unwrap()
}

#[test]
fn stacks_are_exactly_invariant_where_the_rule_says_so() {
    let mut rng = common::rng(99);
    for group in [Space::C4, Space::D4] {
        let pair = if group == Space::C4 {
            Pair::C4C4
        } else {
            Pair::D4D4
        };
        // 2x2 pooling stride 2 is centred on even sizes only: 10 (-> 5) is exact, 9 is not.
        for (size, equivariant) in [(10, true), (12, true), (9, false), (11, false)] {
            let xf = Tensor::from_fn(vec![4, 1, size, size], |_| rng.random_range(0.0f32..1.0));
            let model = random_stack(group, &xf, !equivariant);
            let x = QTensor::quantize(&xf, model.input_params()).unwrap();
            let y = model.forward(&x).unwrap();
            let distinct = y
                .data()
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            assert!(
                distinct > 8,
                "{group} {size}: saturated logits {:?}",
                y.data()
            );
            let differing = (0..pair.group_order())
                .filter(|&g| model.forward(&act(pair, g, &x)).unwrap() != y)
                .count();
            if equivariant {
                assert_eq!(differing, 0, "{group} {size}x{size}: logits change");
            } else {
                assert!(differing > 0, "{group} {size}x{size}: expected a break");
                // And the rule refuses to build it without the flag.
                let refused = QModel::new(
                    model.input().clone(),
                    model.input_params(),
                    model.layers().to_vec(),
                    false,
                );
                assert!(refused.is_err(), "{group} {size}: rule did not refuse");
            }
        }
    }
}

/// `QConv::forward` splits images over threads, or one image's output planes when
/// there are fewer images than threads: every split equals the oracle bit for bit.
#[test]
fn every_thread_split_matches_the_reference() {
    let mut rng = common::rng(5);
    for pair in [Pair::C4C4, Pair::Z2D4, Pair::D4D4] {
        let input = QuantParams {
            scale: 0.03,
            zero_point: -5,
        };
        let layer = random_layer(&mut rng, pair, (3, 5, 3), 1, Padding::Same, true, input);
        for batch in [1, 3] {
            let xs = input_shape(pair, batch, 3, 9, 8);
            let x = ints(&mut rng, xs.iter().product(), -128, 127);
            let spec = RefConvSpec {
                group: ref_group(pair),
                lifting: pair.from() == Space::Z2,
                batch,
                in_channels: 3,
                out_channels: 5,
                height: 9,
                width: 8,
                kernel: 3,
                stride: 1,
                pad: [1; 4],
            };
            let want = reference_conv_i8(
                &spec,
                &x,
                (input.scale, input.zero_point),
                layer.weight(),
                layer.weight_scale(),
                layer.bias(),
                (
                    layer.output_params().scale,
                    layer.output_params().zero_point,
                ),
                true,
            );
            for threads in [1, 2, 3, 4] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let y = pool.install(|| {
                    layer
                        .forward(&QTensor::new(xs.clone(), x.clone(), input).unwrap())
                        .unwrap()
                });
                assert_eq!(
                    y.data(),
                    want.as_slice(),
                    "{} batch {batch} threads {threads}",
                    pair.name()
                );
            }
        }
    }
}

//! Equivariance over every group element, with the rule of `CONVENTIONS.md`
//! (`gconv_core::equivariance`) predicting the measurement both ways:
//!
//! * where the rule says "equivariant", `max |Phi(g.x) - g.Phi(x)|` is within the
//!   rounding tolerance for **every** g in the group;
//! * where it says "broken" (even K with asymmetric padding, stride 2 with the wrong
//!   parity, 2x2/2 pooling of an odd map, ...), the largest error over the group is
//!   large: more than 1000 times the tolerance (or the shapes no longer match).
//!
//! Tolerance: both sides are f32 sums of the same exact value, so they differ by at
//! most twice the per-output bound `(terms + 2) * eps * sum |x w|`, with
//! `sum |x w|` from a forward pass on `|x|` with `|w|`, `|b|` (for stacks the
//! per-layer factors add up, since ReLU is 1-Lipschitz).
//!
//! Every layer check runs through both packed paths, the fast path and the
//! group-Fourier path. The Fourier path's bound (see `fourier_path.rs`) is
//! `(T_F + 3|G| + 2) * eps * S_F` with `T_F <= 2 * C_in * K*K` products per
//! coefficient and `S_F <= |G| * max sum |x w|` (the orbit sums add the direct sums
//! of all `|G|` output planes), so its tolerance is that, doubled.

mod common;

use common::{random_layer, random_vec, rng};
use gconv_core::equivariance::{layer_is_equivariant, pool_is_equivariant};
use gconv_std::layer::InputDomain;
use gconv_std::reference::reference_max_pool;
use gconv_std::{
    C4, ConvPath, D4, GConv, Group, GroupConv, LiftingConv, Padding, Tensor, transform,
};

/// Per-element error `|Phi(g.x) - g.Phi(x)|`; `None` when the shapes differ or the
/// layer refuses the transformed input (a broken layer, too).
fn errors_per_element<G: Group>(
    phi: impl Fn(&Tensor) -> Option<Tensor>,
    x: &Tensor,
) -> Vec<Option<f32>> {
    let y = phi(x).expect("forward on the original input");
    (0..G::ORDER)
        .map(|g| {
            let lhs = phi(&transform::<G>(g, x).unwrap())?;
            let rhs = transform::<G>(g, &y).unwrap();
            lhs.max_abs_diff(&rhs)
        })
        .collect()
}

fn abs_tensor(t: &Tensor) -> Tensor {
    t.map(f32::abs)
}

fn abs_layer<G: Group, D: InputDomain>(layer: &GConv<G, D>) -> GConv<G, D> {
    GConv::from_weights(
        abs_tensor(layer.weight()),
        layer.bias().map(|b| b.iter().map(|v| v.abs()).collect()),
        layer.stride(),
        layer.padding(),
    )
    .unwrap()
}

/// Checks one layer against the rule; returns `true` when the rule said equivariant.
fn check_layer<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    height: usize,
    width: usize,
    seed: u64,
) -> bool {
    let mut on_path = layer.clone();
    on_path.set_path(ConvPath::Fast);
    let rule = check_layer_on_path(&on_path, height, width, seed);
    on_path.set_path(ConvPath::Fourier);
    assert_eq!(check_layer_on_path(&on_path, height, width, seed), rule);
    rule
}

/// [`check_layer`] on the layer's own path.
fn check_layer_on_path<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    height: usize,
    width: usize,
    seed: u64,
) -> bool {
    let nti = GConv::<G, D>::NTI;
    let shape = if nti == 1 {
        vec![2, layer.in_channels(), height, width]
    } else {
        vec![2, layer.in_channels(), nti, height, width]
    };
    let x = Tensor::new(
        shape.clone(),
        random_vec(&mut rng(seed), shape.iter().product()),
    )
    .unwrap();
    let what = format!(
        "{} {:?} K={} stride={} {:?} on {height}x{width}",
        GConv::<G, D>::name(),
        layer.path(),
        layer.kernel(),
        layer.stride(),
        layer.padding()
    );
    let Ok(y_abs) = abs_layer(layer).forward(&abs_tensor(&x)) else {
        panic!("{what}: forward failed")
    };
    let terms = layer.in_channels() * nti * layer.kernel() * layer.kernel();
    let direct_tol = 2.0 * (terms as f32 + 2.0) * f32::EPSILON * y_abs.max_abs();
    let tol = if layer.path() == ConvPath::Fourier {
        let t_f = 2 * layer.in_channels() * layer.kernel() * layer.kernel();
        let order = G::ORDER as f32;
        2.0 * (t_f as f32 + 3.0 * order + 2.0) * f32::EPSILON * order * y_abs.max_abs()
    } else {
        direct_tol
    };
    let errors = errors_per_element::<G>(|t| layer.forward(t).ok(), &x);
    let rule = layer.is_equivariant_on(height, width);
    if rule {
        for (g, e) in errors.iter().enumerate() {
            let e = e.unwrap_or_else(|| {
                panic!("{what}: rule says equivariant, element {g} changes the shape")
            });
            assert!(
                e <= tol,
                "{what}: rule says equivariant, element {g} error {e:e} > {tol:e}"
            );
        }
    } else {
        let worst = errors
            .iter()
            .map(|e| e.unwrap_or(f32::INFINITY))
            .fold(0.0f32, f32::max);
        // "Large" is measured against the direct-sum bound for both paths: a broken
        // layer's error is O(|y|), whatever the path's rounding.
        assert!(
            worst > 1000.0 * direct_tol,
            "{what}: rule says broken, but max error {worst:e} (tol {direct_tol:e})"
        );
        assert_eq!(errors[0], Some(0.0), "{what}: identity must be exact");
    }
    rule
}

fn paddings(k: usize) -> Vec<Padding> {
    let mut p = vec![
        Padding::Valid,
        Padding::symmetric(k / 2),
        // TensorFlow's "same" for even K, and a lopsided one for any K.
        Padding::Explicit {
            top: k.saturating_sub(1) / 2,
            bottom: k / 2,
            left: k.saturating_sub(1) / 2,
            right: k / 2,
        },
        Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 1,
            right: 0,
        },
        Padding::Explicit {
            top: 1,
            bottom: 1,
            left: 0,
            right: 0,
        },
    ];
    if k % 2 == 1 {
        p.push(Padding::Same);
    }
    p
}

/// Every K in 1..=5, odd/even/non-square maps, stride 1 and 2, all paddings; counts
/// how often each verdict occurred so the grid provably exercises both.
fn grid<G: Group, D: InputDomain>() -> (usize, usize) {
    let (mut equivariant, mut broken) = (0, 0);
    let mut seed = 0;
    for k in 1..=5 {
        for (height, width) in [(7, 7), (8, 8), (9, 6), (6, 8)] {
            for stride in 1..=2 {
                for padding in paddings(k) {
                    seed += 1;
                    let layer = random_layer::<G, D>(2, 2, k, stride, padding, seed);
                    if check_layer(&layer, height, width, seed) {
                        equivariant += 1;
                    } else {
                        broken += 1;
                    }
                }
            }
        }
    }
    assert!(equivariant > 40 && broken > 40, "{equivariant} / {broken}");
    (equivariant, broken)
}

#[test]
fn z2_to_c4_rule_predicts_equivariance() {
    grid::<C4, gconv_std::FromZ2>();
}

#[test]
fn c4_to_c4_rule_predicts_equivariance() {
    grid::<C4, gconv_std::FromGroup>();
}

#[test]
fn z2_to_d4_rule_predicts_equivariance() {
    grid::<D4, gconv_std::FromZ2>();
}

#[test]
fn d4_to_d4_rule_predicts_equivariance() {
    grid::<D4, gconv_std::FromGroup>();
}

/// The named cases of CONVENTIONS.md, each asserted to land on the right side.
#[test]
fn named_cases() {
    let k4_tf_same = Padding::Explicit {
        top: 1,
        bottom: 2,
        left: 1,
        right: 2,
    };
    let cases: [(usize, usize, Padding, usize, bool); 7] = [
        (4, 1, Padding::Valid, 8, true),        // VALID stride 1, even K
        (3, 1, Padding::Same, 8, true),         // symmetric SAME, odd K
        (4, 1, k4_tf_same, 8, false),           // even K, TF "same"
        (4, 1, Padding::symmetric(2), 8, true), // even K, symmetric K/2
        (3, 2, Padding::Valid, 9, true),        // stride 2: odd K, odd H
        (3, 2, Padding::Valid, 8, false),       // stride 2: odd K, even H
        (2, 2, Padding::Valid, 9, false),       // stride 2: even K, odd H
    ];
    for (i, (k, stride, padding, size, expected)) in cases.into_iter().enumerate() {
        let layer =
            random_layer::<D4, gconv_std::FromGroup>(1, 2, k, stride, padding, 77 + i as u64);
        assert_eq!(
            check_layer(&layer, size, size, 99 + i as u64),
            expected,
            "case {i}"
        );
    }
}

/// Spatial max pooling of group maps: the rule with the window as K, measured exactly
/// (max is exact, tolerance 0).
#[test]
fn pooling_rule_predicts_equivariance() {
    let cases = [
        (2, 2, 8, [0; 4], true),
        (2, 2, 7, [0; 4], false), // 2x2/2 of an odd map
        (3, 2, 7, [0; 4], true),
        (3, 2, 8, [0; 4], false), // 3x3/2 of an even map
        (3, 1, 6, [1; 4], true),
        (2, 1, 6, [0, 1, 0, 1], false),
    ];
    for (window, stride, size, pad, expected) in cases {
        let padding = Padding::Explicit {
            top: pad[0],
            bottom: pad[1],
            left: pad[2],
            right: pad[3],
        };
        assert_eq!(
            pool_is_equivariant(size, size, window, stride, padding),
            expected
        );
        let shape = vec![2, 3, D4::ORDER, size, size];
        let x = Tensor::new(
            shape.clone(),
            random_vec(&mut rng(size as u64), shape.iter().product()),
        )
        .unwrap();
        let pool = |t: &Tensor| {
            let s = t.shape();
            let (y, oh, ow) = reference_max_pool(
                s[0] * s[1] * s[2],
                s[3],
                s[4],
                t.data(),
                window,
                stride,
                pad,
            );
            Some(Tensor::new(vec![s[0], s[1], s[2], oh, ow], y).unwrap())
        };
        let errors = errors_per_element::<D4>(pool, &x);
        let worst = errors
            .iter()
            .map(|e| e.unwrap_or(f32::INFINITY))
            .fold(0.0f32, f32::max);
        if expected {
            assert_eq!(worst, 0.0, "{window}x{window}/{stride} on {size}");
        } else {
            assert!(worst > 0.1, "{window}x{window}/{stride} on {size}: {worst}");
        }
    }
}

/// A lift -> gconv [-> gconv] stack with ReLU between layers.
struct Stack<G: Group> {
    lift: LiftingConv<G>,
    rest: Vec<GroupConv<G>>,
}

impl<G: Group> Stack<G> {
    fn forward(&self, x: &Tensor, relu: bool) -> Option<Tensor> {
        let act = |t: Tensor| if relu { t.map(|v| v.max(0.0)) } else { t };
        let mut y = act(self.lift.forward(x).ok()?);
        for layer in &self.rest {
            y = act(layer.forward(&y).ok()?);
        }
        Some(y)
    }

    fn abs(&self) -> Self {
        Stack {
            lift: abs_layer(&self.lift),
            rest: self.rest.iter().map(abs_layer).collect(),
        }
    }

    fn terms(&self) -> usize {
        let lift = self.lift.in_channels() * self.lift.kernel().pow(2) + 2;
        lift + self
            .rest
            .iter()
            .map(|l| l.in_channels() * G::ORDER * l.kernel().pow(2) + 2)
            .sum::<usize>()
    }

    /// Max error over the group, the tolerance, and the output's magnitude.
    fn measure(&self, height: usize, width: usize, seed: u64) -> (f32, f32, f32) {
        let x = Tensor::new(
            vec![2, 1, height, width],
            random_vec(&mut rng(seed), 2 * height * width),
        )
        .unwrap();
        let y_abs = self.abs().forward(&abs_tensor(&x), false).unwrap();
        let tol = 2.0 * self.terms() as f32 * f32::EPSILON * y_abs.max_abs();
        let errors = errors_per_element::<G>(|t| self.forward(t, true), &x);
        let y_max = self.forward(&x, true).unwrap().max_abs();
        (
            errors
                .iter()
                .map(|e| e.unwrap_or(f32::INFINITY))
                .fold(0.0f32, f32::max),
            tol,
            y_max,
        )
    }
}

type LayerSpec = (usize, usize, usize, Padding); // (C_out, K, stride, padding)

fn stack<G: Group>(specs: &[LayerSpec], seed: u64) -> Stack<G> {
    let (c, k, s, p) = specs[0];
    let lift = random_layer::<G, gconv_std::FromZ2>(1, c, k, s, p, seed);
    let mut c_in = c;
    let rest = specs[1..]
        .iter()
        .enumerate()
        .map(|(i, &(c, k, s, p))| {
            let l = random_layer::<G, gconv_std::FromGroup>(c_in, c, k, s, p, seed + 1 + i as u64);
            c_in = c;
            l
        })
        .collect();
    Stack { lift, rest }
}

fn stacks_end_to_end<G: Group>() {
    let same3 = (3, 3, 1, Padding::Same);
    let good: [(&[LayerSpec], usize, usize); 5] = [
        (&[same3, same3], 9, 9),
        (&[same3, same3, same3], 8, 8),
        (
            &[
                (2, 2, 1, Padding::Valid),
                (3, 4, 1, Padding::symmetric(2)),
                (2, 3, 1, Padding::Valid),
            ],
            8,
            11,
        ),
        (
            &[
                (2, 3, 2, Padding::Valid),
                (2, 2, 1, Padding::Valid),
                (2, 3, 1, Padding::Same),
            ],
            9,
            9,
        ),
        (
            &[(2, 5, 1, Padding::symmetric(2)), (3, 2, 2, Padding::Valid)],
            8,
            8,
        ),
    ];
    for (i, (specs, h, w)) in good.into_iter().enumerate() {
        let (err, tol, _) = stack::<G>(specs, 10 * i as u64).measure(h, w, i as u64);
        assert!(err <= tol, "{} stack {i}: error {err:e} > {tol:e}", G::NAME);
    }
    // One broken layer anywhere breaks the stack: errors of the order of the output
    // itself (the abs-pass tolerance of a deep stack is loose, so compare with |y|).
    let tf_same = Padding::Explicit {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    let bad: [&[LayerSpec]; 2] = [
        &[same3, (3, 2, 1, tf_same), same3],
        &[same3, (3, 3, 2, Padding::Valid)],
    ];
    for (i, specs) in bad.into_iter().enumerate() {
        let (err, tol, y_max) = stack::<G>(specs, 500 + i as u64).measure(8, 8, 7);
        assert!(
            err > 0.05 * y_max && err > 10.0 * tol,
            "{} broken stack {i}: error only {err:e} (|y| {y_max:e}, tol {tol:e})",
            G::NAME
        );
    }
}

#[test]
fn c4_stacks_are_equivariant_end_to_end() {
    stacks_end_to_end::<C4>();
}

#[test]
fn d4_stacks_are_equivariant_end_to_end() {
    stacks_end_to_end::<D4>();
}

/// Sanity of the rule at the layer API: agrees with the core function.
#[test]
fn layer_rule_is_the_core_rule() {
    let layer = random_layer::<C4, gconv_std::FromGroup>(1, 1, 2, 2, Padding::Valid, 5);
    for size in 4..12 {
        assert_eq!(
            layer.is_equivariant_on(size, size),
            layer_is_equivariant(size, size, 2, 2, Padding::Valid)
        );
    }
}

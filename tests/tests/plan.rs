//! The core plan API (`gconv_core::plan`) against the independent f64 oracle
//! (`gconv_std::reference`), and gconv-std's per-shape plan cache.
//!
//! * Every [`Algorithm`], all four pairs, over the foundation's grid (K in
//!   {1,2,3,4,5,7}, stride 1..3, valid / same / symmetric / lopsided padding, odd and
//!   even non-square sizes, bias on and off, batch 2): [`Plan::prepare_weights`] then
//!   [`Plan::forward`] match the oracle. Tolerance: `(terms + 2) * eps * (sum |x w| +
//!   |b|)` (`common::tolerance`) for the direct, blocked and fast paths, each an f32
//!   sum of `terms` products; the Fourier path's own bound for it
//!   (`common::assert_fourier_matches`). Outputs and prepared weights start as NaN,
//!   scratch as junk and longer than asked.
//! * Every entry point validates first: a wrong length of any buffer is
//!   `Error::BufferLength` naming it, with the output (or the prepared weights) left
//!   untouched; zero sizes and kernels larger than the padded input are errors of
//!   `Plan::new` for every choice.
//! * `Auto` picks what the rule says, and runs bit for bit what it picked.
//! * The gconv-std layer caches one plan per input shape: the same plan (same `Arc`)
//!   for the same shape, a new one after `set_path`, `set_weights` or a new shape, and
//!   the cached runs equal runs of a fresh layer bit for bit.

mod common;

use std::sync::Arc;

use common::{
    assert_fourier_matches, assert_matches_oracle, foundation_grid, fourier_abs_sums, oracle,
    random_layer, random_vec, rng,
};
use gconv_core::fast::{FastPlan, Kernel, MAX_KERNEL};
use gconv_core::fourier::FourierPlan;
use gconv_core::plan::{Algorithm, AlgorithmChoice, Plan, auto_picks_blocked, fourier_pays};
use gconv_core::{Buffer, C4, ConvShape, D4, Dim, Domain, Error, Group, Padding};
use gconv_std::layer::{FromGroup, FromZ2, GConv, InputDomain};
use gconv_std::reference::RefGroup;
use gconv_std::{ConvPath, Tensor};

/// The micro-kernel the plans run in these tests: the best one compiled into the
/// build (`Plan::forward` calls only compiled kernels).
const ISA: Kernel = Kernel::compiled();

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// `prepare_weights` then `forward`, with NaN in the prepared weights and the output
/// and junk in both scratch buffers (longer than asked).
fn run<G: Group>(plan: &Plan<G>, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let mut prepared = vec![f32::NAN; plan.prepared_weights_len()];
    let mut prep_scratch = vec![1e30f32; plan.prepare_scratch_len() + 3];
    plan.prepare_weights(w, &mut prepared, &mut prep_scratch)
        .unwrap();
    assert!(
        prepared.iter().all(|v| !v.is_nan()),
        "prepare_weights skipped a value"
    );
    let mut out = vec![f32::NAN; plan.geometry().output_len()];
    let mut scratch = vec![-7e29f32; plan.scratch_len() + 5];
    plan.forward(x, &prepared, bias, &mut out, &mut scratch)
        .unwrap();
    out
}

/// The grid for one pair and every algorithm; returns the number of comparisons.
fn grid<G: Group>(group: RefGroup, domain: Domain, seed: u64) -> usize {
    let mut rng = rng(seed);
    let mut compared = 0;
    for (case, shape) in foundation_grid(&mut rng) {
        let what = format!("{} {domain:?} {shape:?}", G::NAME);
        let geo = match shape.geometry::<G>(domain) {
            Ok(geo) => geo,
            Err(Error::SameNeedsOddKernel { kernel }) => {
                assert!(shape.padding == Padding::Same && kernel % 2 == 0, "{what}");
                for algorithm in Algorithm::ALL {
                    let err = Plan::<G>::new(domain, &shape, algorithm.into(), ISA).unwrap_err();
                    assert_eq!(err, Error::SameNeedsOddKernel { kernel }, "{what}");
                }
                continue;
            }
            Err(e) => panic!("{what}: {e}"),
        };
        let x = random_vec(&mut rng, geo.input_len());
        let w = random_vec(&mut rng, geo.weight_len());
        let b = random_vec(&mut rng, geo.bias_len());
        let bias = case.is_multiple_of(2).then_some(b.as_slice());
        let reference = oracle(group, domain, &shape, &x, &w, bias);
        for algorithm in Algorithm::ALL {
            let what = format!("{what} {}", algorithm.name());
            let plan = Plan::<G>::new(domain, &shape, algorithm.into(), ISA).unwrap();
            assert_eq!(plan.algorithm(), algorithm, "{what}");
            assert_eq!(plan.geometry(), &geo, "{what}");
            let out = run(&plan, &x, &w, bias);
            match algorithm {
                Algorithm::Fourier => {
                    let fourier = plan.fourier_plan().unwrap();
                    let sums = fourier_abs_sums::<G>(&geo, &x, &w);
                    assert_fourier_matches::<G>(&what, fourier, &out, &reference, &sums, bias);
                }
                _ => {
                    let terms = geo.terms_per_output();
                    assert_matches_oracle(&what, &out, &reference, terms, bias);
                }
            }
            if algorithm == Algorithm::Blocked {
                // The raw weights are the blocked path's prepared weights: firmware
                // passes them straight from flash.
                let mut direct = vec![f32::NAN; geo.output_len()];
                let mut scratch = vec![0.0; plan.scratch_len()];
                plan.forward(&x, &w, bias, &mut direct, &mut scratch)
                    .unwrap();
                assert!(same_bits(&direct, &out), "{what}: raw weights");
            }
            compared += 1;
        }
    }
    compared
}

#[test]
fn z2_to_c4_every_algorithm_matches_reference() {
    assert!(grid::<C4>(RefGroup::C4, Domain::Z2, 301) > 200);
}

#[test]
fn c4_to_c4_every_algorithm_matches_reference() {
    assert!(grid::<C4>(RefGroup::C4, Domain::Group, 302) > 200);
}

#[test]
fn z2_to_d4_every_algorithm_matches_reference() {
    assert!(grid::<D4>(RefGroup::D4, Domain::Z2, 303) > 200);
}

#[test]
fn d4_to_d4_every_algorithm_matches_reference() {
    assert!(grid::<D4>(RefGroup::D4, Domain::Group, 304) > 200);
}

fn small_shape() -> ConvShape {
    ConvShape {
        batch: 2,
        in_channels: 2,
        out_channels: 3,
        height: 7,
        width: 6,
        kernel: 3,
        stride: 2,
        padding: Padding::symmetric(1),
    }
}

/// Asserts `result` is `BufferLength` for `buffer` and `untouched` still all NaN.
fn assert_length_error(what: &str, result: Result<(), Error>, buffer: Buffer, untouched: &[f32]) {
    match result {
        Err(Error::BufferLength { buffer: b, .. }) if b == buffer => {}
        other => panic!("{what}: expected a {buffer:?} length error, got {other:?}"),
    }
    assert!(
        untouched.iter().all(|v| v.is_nan()),
        "{what}: written on error"
    );
}

fn bad_lengths_for<G: Group>(domain: Domain) {
    let shape = small_shape();
    for algorithm in Algorithm::ALL {
        let plan = Plan::<G>::new(domain, &shape, algorithm.into(), ISA).unwrap();
        let geo = *plan.geometry();
        let what = format!("{} {domain:?} {}", G::NAME, algorithm.name());
        let mut r = rng(7);
        let x = random_vec(&mut r, geo.input_len());
        let w = random_vec(&mut r, geo.weight_len());
        let b = random_vec(&mut r, geo.bias_len());

        // prepare_weights: raw, prepared, scratch.
        let n = plan.prepared_weights_len();
        let s = plan.prepare_scratch_len();
        let mut prepared = vec![f32::NAN; n];
        let mut scratch = vec![0.0; s];
        let res = plan.prepare_weights(&w[1..], &mut prepared, &mut scratch);
        assert_length_error(&what, res, Buffer::Weight, &prepared);
        let mut longer = vec![f32::NAN; n + 1];
        let res = plan.prepare_weights(&w, &mut longer, &mut scratch);
        assert_length_error(&what, res, Buffer::Bank, &longer);
        if s > 0 {
            let res = plan.prepare_weights(&w, &mut prepared, &mut scratch[1..]);
            assert_length_error(&what, res, Buffer::Scratch, &prepared);
        }
        let mut scratch = vec![0.0; s];
        plan.prepare_weights(&w, &mut prepared, &mut scratch)
            .unwrap();

        // forward: input, prepared, bias, output, scratch; too short and too long.
        let prepared_buffer = match algorithm {
            Algorithm::Blocked => Buffer::Weight,
            _ => Buffer::Bank,
        };
        let out_len = geo.output_len();
        let need = plan.scratch_len();
        let mut scratch = vec![0.0; need];
        for delta in [-1isize, 1] {
            let resize = |v: &[f32]| -> Vec<f32> {
                let len = v.len().checked_add_signed(delta).unwrap();
                (0..len).map(|i| v.get(i).copied().unwrap_or(0.5)).collect()
            };
            let mut out = vec![f32::NAN; out_len];
            let res = plan.forward(&resize(&x), &prepared, Some(&b), &mut out, &mut scratch);
            assert_length_error(&what, res, Buffer::Input, &out);
            let res = plan.forward(&x, &resize(&prepared), Some(&b), &mut out, &mut scratch);
            assert_length_error(&what, res, prepared_buffer, &out);
            let res = plan.forward(&x, &prepared, Some(&resize(&b)), &mut out, &mut scratch);
            assert_length_error(&what, res, Buffer::Bias, &out);
            let mut wrong_out = vec![f32::NAN; out_len.checked_add_signed(delta).unwrap()];
            let res = plan.forward(&x, &prepared, Some(&b), &mut wrong_out, &mut scratch);
            assert_length_error(&what, res, Buffer::Output, &wrong_out);
        }
        if need > 0 {
            let mut out = vec![f32::NAN; out_len];
            let res = plan.forward(&x, &prepared, None, &mut out, &mut scratch[..need - 1]);
            assert_length_error(&what, res, Buffer::Scratch, &out);
        }
        // And the same call with the right lengths writes every output.
        let mut out = vec![f32::NAN; out_len];
        plan.forward(&x, &prepared, Some(&b), &mut out, &mut scratch)
            .unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{what}");
    }
}

#[test]
fn bad_buffer_lengths_are_errors_that_write_nothing() {
    bad_lengths_for::<C4>(Domain::Z2);
    bad_lengths_for::<C4>(Domain::Group);
    bad_lengths_for::<D4>(Domain::Z2);
    bad_lengths_for::<D4>(Domain::Group);
}

#[test]
fn bad_shapes_are_errors_of_new_for_every_choice() {
    let choices = [
        AlgorithmChoice::Auto,
        AlgorithmChoice::Direct,
        AlgorithmChoice::Blocked,
        AlgorithmChoice::Fast,
        AlgorithmChoice::Fourier,
    ];
    let base = small_shape();
    let cases = [
        (
            ConvShape {
                in_channels: 0,
                ..base
            },
            Error::ZeroDimension(Dim::InChannels),
        ),
        (
            ConvShape {
                out_channels: 0,
                ..base
            },
            Error::ZeroDimension(Dim::OutChannels),
        ),
        (
            ConvShape { height: 0, ..base },
            Error::ZeroDimension(Dim::Height),
        ),
        (
            ConvShape { kernel: 0, ..base },
            Error::ZeroDimension(Dim::Kernel),
        ),
        (
            ConvShape { stride: 0, ..base },
            Error::ZeroDimension(Dim::Stride),
        ),
        (
            ConvShape { kernel: 10, ..base },
            Error::KernelLargerThanInput {
                kernel: 10,
                padded_height: 9,
                padded_width: 8,
            },
        ),
    ];
    for (shape, want) in cases {
        for choice in choices {
            for domain in [Domain::Z2, Domain::Group] {
                let got = Plan::<D4>::new(domain, &shape, choice, ISA).unwrap_err();
                assert_eq!(got, want, "{choice:?} {domain:?} {shape:?}");
                let got = Plan::<C4>::new(domain, &shape, choice, ISA).unwrap_err();
                assert_eq!(got, want, "{choice:?} {domain:?} {shape:?}");
            }
        }
    }
    // Kernels over the fast path's limit: an error for Fast and Fourier only.
    let big = ConvShape {
        kernel: MAX_KERNEL + 2,
        height: 20,
        width: 20,
        ..base
    };
    for choice in choices {
        let res = Plan::<C4>::new(Domain::Group, &big, choice, Kernel::Avx2Fma);
        match choice {
            AlgorithmChoice::Fast | AlgorithmChoice::Fourier => assert_eq!(
                res.unwrap_err(),
                Error::KernelTooLargeForFastPath {
                    kernel: MAX_KERNEL + 2,
                    max: MAX_KERNEL
                }
            ),
            AlgorithmChoice::Auto => {
                assert_eq!(res.unwrap().algorithm(), Algorithm::Direct)
            }
            _ => assert!(res.is_ok(), "{choice:?}"),
        }
    }
}

/// A kernel this build cannot call is an error of `forward` (the fast and Fourier
/// algorithms), before anything is written; the direct and blocked ones do not use it.
#[test]
fn uncompiled_isa_is_an_error_of_forward() {
    let Some(isa) = Kernel::ALL.into_iter().find(|k| !k.is_compiled()) else {
        return; // every kernel is compiled into this build
    };
    let shape = small_shape();
    for algorithm in Algorithm::ALL {
        let plan = Plan::<C4>::new(Domain::Group, &shape, algorithm.into(), isa).unwrap();
        assert_eq!(plan.isa(), isa);
        let geo = plan.geometry();
        let x = vec![0.5; geo.input_len()];
        let w = vec![0.25; geo.weight_len()];
        let mut prepared = vec![0.0; plan.prepared_weights_len()];
        let mut prep_scratch = vec![0.0; plan.prepare_scratch_len()];
        plan.prepare_weights(&w, &mut prepared, &mut prep_scratch)
            .unwrap();
        let mut out = vec![f32::NAN; geo.output_len()];
        let mut scratch = vec![0.0; plan.scratch_len()];
        let res = plan.forward(&x, &prepared, None, &mut out, &mut scratch);
        match algorithm {
            Algorithm::Fast | Algorithm::Fourier => {
                assert_eq!(res, Err(Error::KernelNotCompiled { kernel: isa.name() }));
                assert!(out.iter().all(|v| v.is_nan()), "{algorithm:?}");
            }
            _ => res.unwrap(),
        }
    }
}

/// What the rule of `gconv_core::plan` says Auto runs, worked out here from its
/// parts.
fn expected_auto(geo: &gconv_core::ConvGeometry, isa: Kernel) -> Algorithm {
    if isa == Kernel::Portable && !cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
        return Algorithm::Blocked;
    }
    match (FourierPlan::new(geo), FastPlan::new(geo)) {
        (Ok(fourier), Ok(fast)) if fourier_pays(&fast, &fourier) => Algorithm::Fourier,
        (_, Ok(_)) => Algorithm::Fast,
        _ => Algorithm::Direct,
    }
}

fn auto_case<G: Group>(domain: Domain, shape: ConvShape, seed: u64) -> Algorithm {
    let geo = shape.geometry::<G>(domain).unwrap();
    let what = format!("{} {domain:?} {shape:?}", G::NAME);
    for isa in Kernel::ALL {
        let plan = Plan::<G>::new(domain, &shape, AlgorithmChoice::Auto, isa).unwrap();
        assert_eq!(plan.algorithm(), expected_auto(&geo, isa), "{what} {isa:?}");
        assert_eq!(
            auto_picks_blocked(isa),
            plan.algorithm() == Algorithm::Blocked,
            "{what} {isa:?}"
        );
    }
    // Auto runs what it picked, bit for bit.
    let auto = Plan::<G>::new(domain, &shape, AlgorithmChoice::Auto, ISA).unwrap();
    let named = Plan::<G>::new(domain, &shape, auto.algorithm().into(), ISA).unwrap();
    let mut r = rng(seed);
    let x = random_vec(&mut r, geo.input_len());
    let w = random_vec(&mut r, geo.weight_len());
    let b = random_vec(&mut r, geo.bias_len());
    let (a, n) = (run(&auto, &x, &w, Some(&b)), run(&named, &x, &w, Some(&b)));
    assert!(
        same_bits(&a, &n),
        "{what}: Auto is not {:?}",
        auto.algorithm()
    );
    auto.algorithm()
}

#[test]
fn auto_picks_what_the_rule_says() {
    let shape = |c_in, c_out, k, size, batch| ConvShape {
        batch,
        in_channels: c_in,
        out_channels: c_out,
        height: size,
        width: size,
        kernel: k,
        stride: 1,
        padding: Padding::Valid,
    };
    // Small group layers (fast), large ones (Fourier by the cost model), lifting
    // layers, and a kernel over the fast path's limit (direct).
    let picked = [
        auto_case::<C4>(Domain::Group, shape(2, 2, 3, 8, 1), 1),
        auto_case::<C4>(Domain::Group, shape(16, 16, 3, 24, 2), 2),
        auto_case::<D4>(Domain::Group, shape(8, 8, 3, 20, 2), 3),
        auto_case::<C4>(Domain::Z2, shape(3, 16, 5, 40, 1), 4),
        auto_case::<D4>(Domain::Z2, shape(1, 4, 3, 9, 1), 5),
        auto_case::<C4>(Domain::Z2, shape(1, 1, 13, 15, 1), 6),
    ];
    // The cases reach every algorithm the rule can pick on this target.
    let x86 = cfg!(any(target_arch = "x86", target_arch = "x86_64"));
    let blocked = !x86 && ISA == Kernel::Portable;
    if blocked {
        assert!(
            picked.iter().all(|&a| a == Algorithm::Blocked),
            "{picked:?}"
        );
    } else {
        for a in [Algorithm::Fast, Algorithm::Fourier, Algorithm::Direct] {
            assert!(picked.contains(&a), "{a:?} never picked: {picked:?}");
        }
    }
}

// ---------------------------------------------------------------------------------
// gconv-std: one plan per input shape, cached.

fn input<G: Group, D: InputDomain>(
    layer: &GConv<G, D>,
    n: usize,
    size: usize,
    seed: u64,
) -> Tensor {
    let c = layer.in_channels();
    let shape = match D::DOMAIN {
        Domain::Z2 => vec![n, c, size, size],
        Domain::Group => vec![n, c, G::ORDER, size, size],
    };
    let mut r = rng(seed);
    let len = shape.iter().product();
    Tensor::new(shape, random_vec(&mut r, len)).unwrap()
}

/// The output of a fresh copy of `layer` (empty cache) on `x`.
fn uncached<G: Group, D: InputDomain>(layer: &GConv<G, D>, x: &Tensor) -> Vec<f32> {
    let mut fresh = GConv::<G, D>::from_weights(
        layer.weight().clone(),
        layer.bias().map(<[f32]>::to_vec),
        layer.stride(),
        layer.padding(),
    )
    .unwrap();
    fresh.set_path(layer.path());
    fresh.forward(x).unwrap().data().to_vec()
}

fn cache_case<G: Group, D: InputDomain>(seed: u64)
where
    GConv<G, D>: PartialEq,
{
    let name = GConv::<G, D>::name();
    let mut layer = random_layer::<G, D>(3, 4, 3, 1, Padding::Same, seed);
    let (xa, xb) = (
        input(&layer, 2, 9, seed + 1),
        input(&layer, 1, 12, seed + 2),
    );
    let (sa, sb) = (xa.shape().to_vec(), xb.shape().to_vec());

    // Same shape: the same plan, and the cached run is the uncached one.
    let first = layer.forward(&xa).unwrap();
    let plan = layer.plan(&sa).unwrap();
    assert!(
        Arc::ptr_eq(&plan, &layer.plan(&sa).unwrap()),
        "{name}: not cached"
    );
    let second = layer.forward(&xa).unwrap();
    assert!(same_bits(first.data(), second.data()), "{name}");
    assert!(same_bits(first.data(), &uncached(&layer, &xa)), "{name}");
    assert_eq!(plan.geometry(), &layer.geometry(&sa).unwrap());

    // A clone starts without the cache; equality ignores it.
    let clone = layer.clone();
    assert_eq!(clone, layer);
    assert!(
        !Arc::ptr_eq(&plan, &clone.plan(&sa).unwrap()),
        "{name}: clone"
    );

    // A new input shape: a new plan, right results, and back again.
    let out_b = layer.forward(&xb).unwrap();
    let plan_b = layer.plan(&sb).unwrap();
    assert!(!Arc::ptr_eq(&plan, &plan_b), "{name}: shape");
    assert_eq!(plan_b.geometry().input_shape()[0], 1);
    assert!(same_bits(out_b.data(), &uncached(&layer, &xb)), "{name}");
    assert!(
        same_bits(layer.forward(&xa).unwrap().data(), first.data()),
        "{name}"
    );

    // set_path: a new plan, for the new path.
    for path in [
        ConvPath::Direct,
        ConvPath::Blocked,
        ConvPath::Fast,
        ConvPath::Fourier,
    ] {
        let before = layer.plan(&sa).unwrap();
        layer.set_path(path);
        let after = layer.plan(&sa).unwrap();
        assert!(!Arc::ptr_eq(&before, &after), "{name} {path:?}: set_path");
        let want = match path {
            ConvPath::Direct => Algorithm::Direct,
            ConvPath::Blocked => Algorithm::Blocked,
            ConvPath::Fast => Algorithm::Fast,
            _ => Algorithm::Fourier,
        };
        assert_eq!(after.algorithm(), want, "{name} {path:?}");
        assert_eq!(layer.algorithm(&sa).unwrap(), want, "{name} {path:?}");
        let out = layer.forward(&xa).unwrap();
        assert!(
            same_bits(out.data(), &uncached(&layer, &xa)),
            "{name} {path:?}"
        );
    }
    assert_eq!(
        layer.path_name(&sa).unwrap().split('_').next(),
        Some("fourier")
    );
    layer.set_path(ConvPath::Blocked);
    assert_eq!(layer.path_name(&sa).unwrap(), "blocked");

    // set_weights: a new plan, and the new weights reach the output.
    let before_plan = layer.plan(&sa).unwrap();
    let before = layer.forward(&xa).unwrap();
    let doubled = layer.weight().map(|v| 2.0 * v);
    layer.set_weights(doubled, Some(vec![0.0; 4])).unwrap();
    assert!(
        !Arc::ptr_eq(&before_plan, &layer.plan(&sa).unwrap()),
        "{name}: set_weights"
    );
    let after = layer.forward(&xa).unwrap();
    assert!(
        !same_bits(after.data(), before.data()),
        "{name}: old weights ran"
    );
    assert!(same_bits(after.data(), &uncached(&layer, &xa)), "{name}");
}

#[test]
fn layer_caches_one_plan_per_input_shape() {
    cache_case::<C4, FromZ2>(11);
    cache_case::<C4, FromGroup>(12);
    cache_case::<D4, FromZ2>(13);
    cache_case::<D4, FromGroup>(14);
}

/// The threaded split of the blocked path is bitwise the single-threaded run.
#[test]
fn blocked_path_threads_are_bitwise_one_thread() {
    use gconv_std::{AnyConv, Pair, parallel::forward_into_threads};
    for pair in [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4] {
        let mut layer = AnyConv::new(pair, 2, 3, 3, 1, Padding::Same, 21).unwrap();
        layer.set_path(ConvPath::Blocked);
        let mut shape = vec![3, 2, pair.from().planes(), 10, 11];
        if pair.from() == gconv_std::Space::Z2 {
            shape.remove(2);
        }
        let len = shape.iter().product();
        let x = Tensor::new(shape, random_vec(&mut rng(22), len)).unwrap();
        let one = layer.forward(&x).unwrap();
        for threads in [2, 4, 7] {
            let mut out = vec![f32::NAN; one.len()];
            let used = forward_into_threads(&layer, &x, &mut out, threads).unwrap();
            assert!(used > 1, "{pair:?} {threads}");
            assert!(same_bits(&out, one.data()), "{pair:?} {threads} threads");
        }
    }
}

//! The oracle comparisons can fail: errors planted in the prepared weights of the
//! fast and Fourier paths must fail the derived rounding bounds (random data,
//! `common::check_matches_oracle` and `common::check_fourier_matches`) and the
//! exact tests' bitwise comparison (small-integer data, as in `exact.rs`).
//!
//! * One packed weight scaled by `1 + 1e-4`. The bound of an output is
//!   `(T + 2) eps (sum |x w| + |b|)` (fast path) or `2 (T_F + 3|G| + 2) eps
//!   (S_F + |b|)` (Fourier): it catches the change `1e-4 |w x|` where one term is a
//!   large enough share of the sum, i.e. on layers with few terms; those are the
//!   layers checked here. On a layer with many terms the same error stays inside
//!   the bound (shown below for a C4 16 -> 16 3x3 layer), and only the exact tests
//!   see it.
//! * One packed weight of the fast path set to zero (a dropped term).
//! * One orbit dropped from the Fourier path: its columns of the packed GEMM weights
//!   zeroed, through the layout `FourierPlan::pack_weights` documents (blocks in
//!   order, C4's irreps of dimension 1, 1, 2 and D4's 1, 1, 1, 1, 2; each block
//!   `(M_rho/4, d*C_in*Q, 1, 4)` with column `(i*Q + q)*d + c`), for every orbit in
//!   turn; for the lifting kernel (whose packing is internal) the raw weights of one
//!   orbit are zeroed before packing, which gives the same packed numbers as
//!   zeroing that orbit's transformed weights (each orbit's transformed weights
//!   depend on its own raw weights only).

mod common;

use common::{
    check_bits, check_fourier_matches, check_matches_oracle, exact_oracle_values, fourier_abs_sums,
    oracle, orbits, random_vec, rng, small_ints,
};
use gconv_core::conv::expand::expand_filter_bank;
use gconv_core::fast::{FastPlan, MR};
use gconv_core::fourier::FourierPlan;
use gconv_core::{C4, ConvGeometry, ConvShape, D4, Domain, Group, Padding};
use gconv_std::reference::{RefGroup, RefOutput};

/// The relative error planted in one weight (the README's claim for the Fourier
/// check).
const REL: f32 = 1e-4;

fn shape(c: (usize, usize), hw: (usize, usize), kernel: usize, padding: Padding) -> ConvShape {
    ConvShape {
        batch: 2,
        in_channels: c.0,
        out_channels: c.1,
        height: hw.0,
        width: hw.1,
        kernel,
        stride: 1,
        padding,
    }
}

/// Index of the largest-magnitude value.
fn argmax_abs(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()))
        .unwrap()
}

/// The fast path's output with every kernel the CPU has, from a packed bank.
fn fast_outputs(
    plan: &FastPlan,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
) -> Vec<(&'static str, Vec<f32>)> {
    gconv_std::fast::available_kernels()
        .into_iter()
        .map(|kernel| {
            let mut out = vec![f32::NAN; plan.geometry().output_len()];
            gconv_std::fast::forward(plan, kernel, x, packed, bias, &mut out).unwrap();
            (kernel.name(), out)
        })
        .collect()
}

/// The Fourier path's output with every kernel the CPU has, from packed weights.
fn fourier_outputs(
    plan: &FourierPlan,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
) -> Vec<(&'static str, Vec<f32>)> {
    gconv_std::fast::available_kernels()
        .into_iter()
        .map(|kernel| {
            let mut out = vec![f32::NAN; plan.geometry().output_len()];
            let mut scratch = vec![f32::NAN; plan.scratch_len()];
            gconv_std::fourier::forward(plan, kernel, x, packed, bias, &mut out, &mut scratch)
                .unwrap();
            (kernel.name(), out)
        })
        .collect()
}

/// A layer's data, oracle and fast-path packed bank.
struct Case {
    what: String,
    geo: ConvGeometry,
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    reference: RefOutput,
    packed_bank: Vec<f32>,
}

impl Case {
    fn new<G: Group>(
        group: RefGroup,
        domain: Domain,
        shape: &ConvShape,
        seed: u64,
        exact: bool,
    ) -> Self {
        let what = format!("{} {domain:?} {shape:?}", G::NAME);
        let geo = shape.geometry::<G>(domain).unwrap();
        let mut r = rng(seed);
        let mut data = |len| {
            if exact {
                small_ints(&mut r, len, 3)
            } else {
                random_vec(&mut r, len)
            }
        };
        let (x, w, b) = (
            data(geo.input_len()),
            data(geo.weight_len()),
            data(geo.bias_len()),
        );
        let reference = oracle(group, domain, shape, &x, &w, Some(&b));
        let mut bank = vec![0.0; geo.bank_len()];
        let (c_out, c_in) = (shape.out_channels, shape.in_channels);
        expand_filter_bank::<G>(domain, c_out, c_in, shape.kernel, &w, &mut bank).unwrap();
        let plan = FastPlan::new(&geo).unwrap();
        let mut packed_bank = vec![0.0; plan.packed_bank_len()];
        plan.pack_bank(&bank, &mut packed_bank).unwrap();
        Case {
            what,
            geo,
            x,
            w,
            b,
            reference,
            packed_bank,
        }
    }

    fn fast_check(&self, packed: &[f32]) -> Vec<(&'static str, Result<f64, String>)> {
        let plan = FastPlan::new(&self.geo).unwrap();
        let terms = self.geo.terms_per_output();
        fast_outputs(&plan, &self.x, packed, Some(&self.b))
            .into_iter()
            .map(|(name, out)| {
                let check = check_matches_oracle(&out, &self.reference, terms, Some(&self.b));
                (name, check)
            })
            .collect()
    }

    fn fourier_check<G: Group>(&self, packed: &[f32]) -> Vec<(&'static str, Result<f64, String>)> {
        let plan = FourierPlan::new(&self.geo).unwrap();
        let sums = fourier_abs_sums::<G>(&self.geo, &self.x, &self.w);
        fourier_outputs(&plan, &self.x, packed, Some(&self.b))
            .into_iter()
            .map(|(name, out)| {
                let check =
                    check_fourier_matches::<G>(&plan, &out, &self.reference, &sums, Some(&self.b));
                (name, check)
            })
            .collect()
    }

    fn fourier_packed(&self, w: &[f32]) -> Vec<f32> {
        let plan = FourierPlan::new(&self.geo).unwrap();
        let mut packed = vec![0.0; plan.packed_weights_len()];
        plan.pack_weights(w, &mut packed).unwrap();
        packed
    }
}

/// Asserts every kernel passes (`pass`) or fails the check.
fn expect(what: &str, checks: &[(&'static str, Result<f64, String>)], pass: bool) {
    for (kernel, check) in checks {
        match (check, pass) {
            (Ok(_), true) | (Err(_), false) => {}
            (Ok(worst), false) => {
                panic!("{what} {kernel}: the planted error passed (worst {worst:.3} of the bound)")
            }
            (Err(e), true) => panic!("{what} {kernel}: the clean run failed: {e}"),
        }
    }
}

/// Layers with few terms per output (1x1, and a C4 3x3 lifting layer with one input
/// channel), where one weight's `1e-4` is past both bounds; with more terms, or
/// D4's looser Fourier bound (`3|G| = 24` extra terms), it is not (a D4 2x2 lifting
/// layer with two input channels stays at 46% of the Fourier bound).
fn small_layers() -> [(RefGroup, Domain, ConvShape); 4] {
    [
        (
            RefGroup::C4,
            Domain::Group,
            shape((1, 2), (6, 7), 1, Padding::Valid),
        ),
        (
            RefGroup::C4,
            Domain::Z2,
            shape((1, 2), (6, 7), 3, Padding::Same),
        ),
        (
            RefGroup::D4,
            Domain::Group,
            shape((1, 1), (5, 6), 1, Padding::Valid),
        ),
        (
            RefGroup::D4,
            Domain::Z2,
            shape((1, 2), (5, 6), 1, Padding::Valid),
        ),
    ]
}

fn case(group: RefGroup, domain: Domain, shape: &ConvShape, seed: u64, exact: bool) -> Case {
    match group {
        RefGroup::C4 => Case::new::<C4>(group, domain, shape, seed, exact),
        RefGroup::D4 => Case::new::<D4>(group, domain, shape, seed, exact),
    }
}

fn fourier_check(
    group: RefGroup,
    c: &Case,
    packed: &[f32],
) -> Vec<(&'static str, Result<f64, String>)> {
    match group {
        RefGroup::C4 => c.fourier_check::<C4>(packed),
        RefGroup::D4 => c.fourier_check::<D4>(packed),
    }
}

/// The fast path's bound fails when one packed weight (the largest) is scaled by
/// `1 + 1e-4` or set to zero.
#[test]
fn fast_bound_fails_on_a_perturbed_packed_weight() {
    for (seed, (group, domain, shape)) in small_layers().into_iter().enumerate() {
        let c = case(group, domain, &shape, 200 + seed as u64, false);
        expect(&c.what, &c.fast_check(&c.packed_bank), true);
        let j = argmax_abs(&c.packed_bank);
        let mut packed = c.packed_bank.clone();
        packed[j] *= 1.0 + REL;
        expect(
            &format!("{} fast x(1+1e-4)", c.what),
            &c.fast_check(&packed),
            false,
        );
        packed[j] = 0.0;
        expect(
            &format!("{} fast dropped", c.what),
            &c.fast_check(&packed),
            false,
        );
    }
}

/// The Fourier path's bound fails when one packed weight (the largest) is scaled by
/// `1 + 1e-4`.
#[test]
fn fourier_bound_fails_on_a_perturbed_packed_weight() {
    for (seed, (group, domain, shape)) in small_layers().into_iter().enumerate() {
        let c = case(group, domain, &shape, 210 + seed as u64, false);
        let packed = c.fourier_packed(&c.w);
        expect(&c.what, &fourier_check(group, &c, &packed), true);
        let mut bad = packed.clone();
        let j = argmax_abs(&packed);
        bad[j] *= 1.0 + REL;
        expect(
            &format!("{} fourier x(1+1e-4)", c.what),
            &fourier_check(group, &c, &bad),
            false,
        );
    }
}

/// Irrep dimensions of the Fourier path's blocks, in order (`spectrum.rs`, as
/// `FourierPlan::pack_weights` documents the packing).
fn irrep_dims(order: usize) -> &'static [usize] {
    match order {
        4 => &[1, 1, 2],
        _ => &[1, 1, 1, 1, 2],
    }
}

/// Zeroes orbit `q`'s columns of every block of packed GEMM weights.
fn drop_orbit(geo: &ConvGeometry, orbits: usize, packed: &mut [f32], q: usize) {
    let (c_out, c_in) = (geo.out_channels(), geo.in_channels());
    let mut at = 0;
    for &d in irrep_dims(geo.nto()) {
        let rows = (d * c_out).div_ceil(MR) * MR;
        let cols = d * c_in * orbits;
        for r in 0..rows {
            for i in 0..c_in {
                for c in 0..d {
                    let col = (i * orbits + q) * d + c;
                    packed[at + (r / MR) * cols * MR + col * MR + r % MR] = 0.0;
                }
            }
        }
        at += rows * cols;
    }
    // The documented layout covers the whole buffer.
    assert_eq!(at, packed.len(), "packed Fourier weights layout");
}

/// Dropping any one orbit from the Fourier path fails its bound (random data) and
/// the bitwise check (integer data): group layers through the packed GEMM weights,
/// lifting layers through the raw weights of the orbit.
#[test]
fn fourier_checks_fail_without_one_orbit() {
    let layers = [
        (
            RefGroup::C4,
            Domain::Group,
            shape((3, 2), (7, 6), 3, Padding::Same),
        ),
        (
            RefGroup::D4,
            Domain::Group,
            shape((2, 3), (6, 7), 2, Padding::Valid),
        ),
        (
            RefGroup::C4,
            Domain::Z2,
            shape((2, 3), (7, 9), 3, Padding::Same),
        ),
        (
            RefGroup::D4,
            Domain::Z2,
            shape((3, 2), (6, 9), 5, Padding::Same),
        ),
    ];
    for (seed, (group, domain, shape)) in layers.into_iter().enumerate() {
        for exact in [false, true] {
            let c = case(group, domain, &shape, 220 + seed as u64, exact);
            let plan = FourierPlan::new(&c.geo).unwrap();
            let packed = c.fourier_packed(&c.w);
            let want = exact.then(|| exact_oracle_values(&c.what, &c.reference, Some(&c.b)));
            let check = |packed: &[f32]| -> Vec<(&'static str, Result<f64, String>)> {
                match &want {
                    None => fourier_check(group, &c, packed),
                    Some(want) => fourier_outputs(&plan, &c.x, packed, Some(&c.b))
                        .into_iter()
                        .map(|(name, out)| (name, check_bits(&out, want).map(|()| 0.0)))
                        .collect(),
                }
            };
            expect(&c.what, &check(&packed), true);
            if domain == Domain::Group {
                for q in 0..plan.orbits() {
                    let mut bad = packed.clone();
                    drop_orbit(&c.geo, plan.orbits(), &mut bad, q);
                    let what = format!("{} exact={exact} orbit {q} dropped", c.what);
                    expect(&what, &check(&bad), false);
                }
            } else {
                let k = shape.kernel;
                let per = match group {
                    RefGroup::C4 => orbits::<C4>(1, k),
                    RefGroup::D4 => orbits::<D4>(1, k),
                };
                assert_eq!(per.len(), plan.orbits());
                for (q, (members, _)) in per.iter().enumerate() {
                    let mut w = c.w.clone();
                    for o in 0..shape.out_channels {
                        for i in 0..shape.in_channels {
                            for &(_, p) in members {
                                w[(o * shape.in_channels + i) * k * k + p] = 0.0;
                            }
                        }
                    }
                    let what = format!("{} exact={exact} orbit {q} dropped", c.what);
                    expect(&what, &check(&c.fourier_packed(&w)), false);
                }
            }
        }
    }
}

/// On a layer with many terms (C4 16 -> 16 3x3: 576 per output, 288 per Fourier
/// coefficient) one weight's `1e-4` stays inside both bounds: the bounds are not
/// what catches it there. The exact data's bitwise comparison does.
#[test]
fn many_terms_hide_one_weights_small_error_from_the_bounds_not_from_exact_data() {
    let shape = shape((16, 16), (8, 8), 3, Padding::Same);
    let (group, domain) = (RefGroup::C4, Domain::Group);
    let c = case(group, domain, &shape, 230, false);
    let mut packed = c.packed_bank.clone();
    let j = argmax_abs(&packed);
    packed[j] *= 1.0 + REL;
    expect(
        &format!("{} fast x(1+1e-4)", c.what),
        &c.fast_check(&packed),
        true,
    );
    let fourier = c.fourier_packed(&c.w);
    let mut bad = fourier.clone();
    let j = argmax_abs(&fourier);
    bad[j] *= 1.0 + REL;
    expect(
        &format!("{} fourier x(1+1e-4)", c.what),
        &fourier_check(group, &c, &bad),
        true,
    );

    // Integer data: one weight of 3 becomes 3.0003 (nearest f32), which no output can
    // absorb.
    let c = case(group, domain, &shape, 231, true);
    let want = exact_oracle_values(&c.what, &c.reference, Some(&c.b));
    let plan = FastPlan::new(&c.geo).unwrap();
    let mut packed = c.packed_bank.clone();
    let j = argmax_abs(&packed);
    packed[j] *= 1.0 + REL;
    for (kernel, out) in fast_outputs(&plan, &c.x, &packed, Some(&c.b)) {
        assert!(
            check_bits(&out, &want).is_err(),
            "{} fast {kernel}: planted error not seen",
            c.what
        );
    }
    let plan = FourierPlan::new(&c.geo).unwrap();
    let mut bad = c.fourier_packed(&c.w);
    let j = argmax_abs(&bad);
    bad[j] *= 1.0 + REL;
    for (kernel, out) in fourier_outputs(&plan, &c.x, &bad, Some(&c.b)) {
        assert!(
            check_bits(&out, &want).is_err(),
            "{} fourier {kernel}: planted error not seen",
            c.what
        );
    }
}

//! Unit tests of the int8 DSP path: bit-for-bit equality with the plain int8 kernel
//! (`quant::conv::forward`) on small layers, blockings forced by small budgets, and
//! the errors. The large grid is in `tests/tests/int8_dsp.rs`.

use super::*;
use crate::quant::{Multiplier, conv};
use crate::shape::{ConvShape, Domain, Padding};
use crate::{C4, D4, Group};

const CAP: usize = if cfg!(miri) { 1024 } else { 8 * 1024 };

fn fill_i8(buf: &mut [i8], mut seed: u32) {
    for v in buf {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *v = (seed >> 24) as u8 as i8;
    }
}

struct Case {
    x: [i8; CAP],
    w: [i8; CAP],
    plain: [i8; CAP],
    dsp: [i8; CAP],
    scratch: [i32; CAP],
}

/// Runs the DSP path with `budget` words and the plain kernel; asserts bitwise
/// equality and returns the blocking used.
fn compare<G: Group>(
    case: &mut Case,
    domain: Domain,
    shape: ConvShape,
    budget: usize,
    zp: (i32, i32),
    relu: bool,
) -> DspBlocking {
    let geo = shape.geometry::<G>(domain).unwrap();
    let x = &mut case.x[..geo.input_len()];
    let w = &mut case.w[..geo.weight_len()];
    fill_i8(x, 3 + shape.width as u32);
    fill_i8(w, 5 + shape.in_channels as u32);
    for v in w.iter_mut() {
        *v = (*v).max(-127);
    }
    let bias_values = [900, -41_000, 7];
    let bias = &bias_values[..geo.bias_len()];
    let ms = [
        Multiplier::from_real(0.0123).unwrap(),
        Multiplier::from_real(0.00071).unwrap(),
        Multiplier::from_real(1.7).unwrap(),
    ];
    let requant = Requant {
        input_zero_point: zp.0,
        output_zero_point: zp.1,
        multipliers: &ms[..shape.out_channels],
        relu,
    };
    let plain = &mut case.plain[..geo.output_len()];
    let need = conv::scratch_len_for(&geo).unwrap();
    conv::forward_geometry(
        &geo,
        &requant,
        x,
        w,
        Some(bias),
        plain,
        &mut case.scratch[..need],
    )
    .unwrap();
    let plan = DspPlan::new(&geo, budget).unwrap();
    assert!(
        plan.scratch_len() <= budget,
        "{plan:?} over budget {budget}"
    );
    let dsp = &mut case.dsp[..geo.output_len()];
    dsp.fill(0x55);
    let scratch = &mut case.scratch[..plan.scratch_len()];
    scratch.fill(0x5a5a_5a5a);
    plan.forward(&requant, x, w, Some(bias), dsp, scratch)
        .unwrap();
    assert!(
        plain == dsp,
        "{shape:?} {domain:?} order {} budget {budget} {:?}: first difference at {:?}",
        G::ORDER,
        plan.blocking(),
        plain
            .iter()
            .zip(dsp.iter())
            .enumerate()
            .find(|(_, (a, b))| a != b)
    );
    plan.blocking()
}

fn shape(
    c_in: usize,
    c_out: usize,
    (h, w): (usize, usize),
    k: usize,
    padding: Padding,
) -> ConvShape {
    ConvShape {
        batch: if cfg!(miri) { 1 } else { 2 },
        in_channels: c_in,
        out_channels: c_out,
        height: h,
        width: w,
        kernel: k,
        stride: 1,
        padding,
    }
}

#[test]
fn equals_plain_kernel_small() {
    let mut case = Case {
        x: [0; CAP],
        w: [0; CAP],
        plain: [0; CAP],
        dsp: [0; CAP],
        scratch: [0; CAP],
    };
    let size = if cfg!(miri) { (4, 5) } else { (7, 8) };
    // Lifting with one (odd) input channel, group layers with 2 and 3, K = 3 (the
    // Arm kernels' size), K = 2 (even, valid) and K = 1.
    compare::<C4>(
        &mut case,
        Domain::Z2,
        shape(1, 3, size, 3, Padding::Same),
        4096,
        (-3, 5),
        false,
    );
    compare::<D4>(
        &mut case,
        Domain::Z2,
        shape(3, 2, size, 3, Padding::Same),
        4096,
        (127, -128),
        true,
    );
    compare::<C4>(
        &mut case,
        Domain::Group,
        shape(2, 2, size, 3, Padding::Same),
        4096,
        (-128, 127),
        true,
    );
    compare::<D4>(
        &mut case,
        Domain::Group,
        shape(3, 1, size, 2, Padding::Valid),
        4096,
        (9, 0),
        false,
    );
    compare::<C4>(
        &mut case,
        Domain::Group,
        shape(1, 2, size, 1, Padding::Valid),
        4096,
        (0, -1),
        false,
    );
    // Asymmetric explicit padding.
    let pad = Padding::Explicit {
        top: 2,
        bottom: 0,
        left: 0,
        right: 1,
    };
    compare::<C4>(
        &mut case,
        Domain::Group,
        shape(2, 1, size, 3, pad),
        4096,
        (4, 4),
        false,
    );
}

#[test]
fn small_budgets_force_passes_strips_and_bands() {
    let mut case = Case {
        x: [0; CAP],
        w: [0; CAP],
        plain: [0; CAP],
        dsp: [0; CAP],
        scratch: [0; CAP],
    };
    let s = shape(
        3,
        2,
        if cfg!(miri) { (5, 7) } else { (9, 13) },
        3,
        Padding::Same,
    );
    let geo = s.geometry::<C4>(Domain::Group).unwrap();
    // One filter (K*K*P2 words and its weight sum) and a K-row band of a 2-pixel strip.
    let filter = 9 * 2 * 4 + 1;
    // The smallest budget: one filter, a band of K rows of a 2-pixel strip.
    let smallest = filter + 3 * 8 * 4;
    assert_eq!(
        DspPlan::new(&geo, smallest - 1).unwrap_err(),
        Error::ScratchBudget {
            needed: smallest,
            budget: smallest - 1
        }
    );
    let b = compare::<C4>(&mut case, Domain::Group, s, smallest, (1, 2), false);
    assert_eq!(b.planes_per_pass, 1);
    assert!(b.strip_width <= 2 && b.band_rows == 1, "{b:?}");
    let b = compare::<C4>(&mut case, Domain::Group, s, smallest + 200, (1, 2), true);
    assert!(
        b.planes_per_pass < 8 || b.strip_width < s.width || b.band_rows < s.height,
        "{b:?}"
    );
    let b = compare::<C4>(&mut case, Domain::Group, s, 8 * 1024, (1, 2), true);
    assert_eq!(b.planes_per_pass, 8, "{b:?}");
}

#[test]
fn errors() {
    let s = ConvShape {
        stride: 2,
        ..shape(2, 2, (6, 6), 3, Padding::Same)
    };
    let geo = s.geometry::<C4>(Domain::Group).unwrap();
    assert_eq!(
        DspPlan::new(&geo, 4096).unwrap_err(),
        Error::DspStride { stride: 2 }
    );
    let s = shape(2, 1, (6, 6), 3, Padding::Same);
    let geo = s.geometry::<C4>(Domain::Group).unwrap();
    let plan = DspPlan::new(&geo, 4096).unwrap();
    let x = [0i8; 2 * 2 * 4 * 36];
    let w = [1i8; 4 * 2 * 9];
    let ms = [Multiplier::ONE];
    let requant = Requant {
        input_zero_point: 0,
        output_zero_point: 0,
        multipliers: &ms,
        relu: false,
    };
    let mut y = [7i8; 2 * 4 * 36];
    let mut scratch = [0i32; 4096];
    let short = plan.scratch_len() - 1;
    assert_eq!(
        plan.forward(&requant, &x, &w, None, &mut y, &mut scratch[..short]),
        Err(Error::BufferLength {
            buffer: Buffer::Scratch,
            expected: short + 1,
            found: short
        })
    );
    assert!(
        plan.forward(&requant, &x[1..], &w, None, &mut y, &mut scratch)
            .is_err()
    );
    let bad = Requant {
        input_zero_point: 128,
        ..requant
    };
    assert!(
        plan.forward(&bad, &x, &w, None, &mut y, &mut scratch)
            .is_err()
    );
    assert!(y.iter().all(|&v| v == 7), "written on error");
    assert!(
        plan.forward(&requant, &x, &w, None, &mut y, &mut scratch)
            .is_ok()
    );
}

/// The per-plane requantization equals `Requant::output` of `Multiplier::apply` on
/// accumulators across the int32 range, for shifts left and right.
#[test]
fn plane_requant_equals_multiplier_apply() {
    let reals = [
        1.7,
        0.5,
        0.25,
        0.499_999,
        0.0123,
        0.00071,
        3.0e-9,
        4.7e-10,
        1.0,
        0.999_999_9,
        1000.0,
    ];
    let mut seed = 1u32;
    for real in reals {
        let m = Multiplier::from_real(real).unwrap();
        for (zp, relu) in [(3, false), (-128, true), (127, true), (-7, false)] {
            let range = crate::quant::activation_range(zp, relu);
            let q = PlaneRequant::new(0, m, zp, range);
            let n = if cfg!(miri) { 200 } else { 20_000 };
            for i in 0..n {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let acc = match i % 4 {
                    0 => seed as i32,
                    1 => (seed as i32) >> 12,
                    2 => (seed as i32) >> 20,
                    _ => [i32::MIN, i32::MAX, 0, -1, 1, 1 << 30, -(1 << 30)][i % 7],
                };
                let want = Requant::output(m, acc, zp, range);
                assert_eq!(
                    q.output(acc),
                    want,
                    "real {real} acc {acc} zp {zp} relu {relu}"
                );
                let mut y = [0i8; 1];
                q.row(&[acc], &mut y);
                assert_eq!(y[0], want, "row: real {real} acc {acc} zp {zp} relu {relu}");
            }
        }
    }
}

/// The folded requantization on every exponent `shift` in `-31..=30` with random
/// significands and accumulators of every magnitude.
#[test]
fn plane_requant_every_shift() {
    let mut seed = 7u32;
    let mut next = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        seed
    };
    let per_shift = if cfg!(miri) { 20 } else { 3_000 };
    for shift in -31..=30 {
        for i in 0..per_shift {
            let m = Multiplier::from_parts((1 << 30) | (next() >> 2) as i32, shift).unwrap();
            let acc = (next() as i32) >> (i % 32);
            let (zp, relu) = ((next() % 256) as i32 - 128, i % 3 == 0);
            let range = crate::quant::activation_range(zp, relu);
            let q = PlaneRequant::new(0, m, zp, range);
            let want = Requant::output(m, acc, zp, range);
            let mut y = [0i8; 1];
            q.row(&[acc], &mut y);
            assert_eq!(y[0], want, "shift {shift} m {} acc {acc}", m.multiplier());
        }
    }
}

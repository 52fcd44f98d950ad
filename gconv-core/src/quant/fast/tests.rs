//! Unit tests of the int8 fast path: bit-for-bit equality with the direct int8 kernel
//! (`quant::conv::forward`) for every kernel this build can call, and the errors. The
//! large grid for every kernel the CPU has is in `tests/tests/int8_fast.rs`.

use super::*;
use crate::quant::conv;
use crate::shape::Padding;
use crate::{C4, D4};

/// Room for every buffer of the largest test layer (the small Miri cases need less, and
/// Miri pays for every byte it initialises).
const CAP: usize = if cfg!(miri) { 2 * 1024 } else { 16 * 1024 };

/// Deterministic int8 values: uniform, or the extremes `{-128, -127, 127}` when
/// `extreme` (weights get `+-127` only, as TFLite's symmetric weights).
fn fill_i8(buf: &mut [i8], mut seed: u32, extreme: bool) {
    for v in buf {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let r = (seed >> 24) as u8 as i8;
        *v = if extreme {
            [-128, -127, 127, 127][usize::from(r as u8 & 3)]
        } else {
            r
        };
    }
}

/// One layer's operands and both outputs.
struct Case {
    x: [i8; CAP],
    w: [i8; CAP],
    direct: [i8; CAP],
    fast: [i8; CAP],
    prepared: [i32; CAP],
    scratch: [i32; 4 * CAP],
}

impl Case {
    fn new() -> Self {
        Case {
            x: [0; CAP],
            w: [0; CAP],
            direct: [0; CAP],
            fast: [0; CAP],
            prepared: [0; CAP],
            scratch: [0; 4 * CAP],
        }
    }
}

/// The requantization the tests use: zero points `zp`, per-channel multipliers from
/// a few scales (one above 1, so the left shift runs too).
fn multipliers() -> [Multiplier; 3] {
    [
        Multiplier::from_real(0.0123).unwrap(),
        Multiplier::from_real(0.00071).unwrap(),
        Multiplier::from_real(1.7).unwrap(),
    ]
}

/// Runs `kernel` and the direct kernel on a seeded layer and asserts bitwise equality.
#[allow(clippy::too_many_arguments)]
fn compare<G: Group>(
    case: &mut Case,
    domain: Domain,
    shape: ConvShape,
    kernel: QKernel,
    zp: (i32, i32),
    relu: bool,
    with_bias: bool,
    extreme: bool,
) {
    let geo = shape.geometry::<G>(domain).unwrap();
    let plan = QFastPlan::from_geometry(&geo, kernel).unwrap();
    let x = &mut case.x[..geo.input_len()];
    let w = &mut case.w[..geo.weight_len()];
    fill_i8(x, 11 + shape.kernel as u32, extreme);
    fill_i8(w, 7 + shape.height as u32, false);
    if extreme {
        for v in w.iter_mut() {
            *v = if *v >= 0 { 127 } else { -127 };
        }
    }
    let bias_values = [1000, -77_777, 3];
    let bias = with_bias.then_some(&bias_values[..geo.bias_len()]);
    let ms = multipliers();
    let requant = Requant {
        input_zero_point: zp.0,
        output_zero_point: zp.1,
        multipliers: &ms[..shape.out_channels],
        relu,
    };
    let direct = &mut case.direct[..geo.output_len()];
    let scratch_len = conv::scratch_len_for(&geo).unwrap();
    conv::forward_geometry(
        &geo,
        &requant,
        x,
        w,
        bias,
        direct,
        &mut case.scratch[..scratch_len],
    )
    .unwrap();
    let prepared = &mut case.prepared[..plan.prepared_weights_len()];
    plan.prepare_weights(w, prepared).unwrap();
    let fast = &mut case.fast[..geo.output_len()];
    fast.fill(0x55);
    // Junk scratch: the packing must write every unit it reads.
    let scratch = &mut case.scratch[..plan.scratch_len()];
    scratch.fill(0x5a5a_5a5a);
    plan.forward(&requant, x, prepared, bias, fast, scratch)
        .unwrap();
    assert!(
        direct == fast,
        "{kernel:?} {shape:?} nti {} nto {} zp {zp:?} relu {relu} bias {with_bias}: fast differs \
         from direct at {:?}",
        geo.nti(),
        geo.nto(),
        direct
            .iter()
            .zip(fast.iter())
            .enumerate()
            .find(|(_, (a, b))| a != b)
    );
}

fn shape(
    c_in: usize,
    c_out: usize,
    (h, w): (usize, usize),
    k: usize,
    stride: usize,
    padding: Padding,
) -> ConvShape {
    ConvShape {
        batch: 2,
        in_channels: c_in,
        out_channels: c_out,
        height: h,
        width: w,
        kernel: k,
        stride,
        padding,
    }
}

/// One small case per pair and kernel this build can call: what Miri runs (with
/// `-C target-feature=+avx2` it takes the `unsafe` call of the AVX2 kernel).
#[test]
fn compiled_kernels_match_direct_small() {
    let mut case = Case::new();
    // Under Miri (about 10^4 times slower) one image of a few pixels per pair.
    let (group_size, lift_size, batch) = if cfg!(miri) {
        ((3, 4), (3, 3), 1)
    } else {
        ((5, 7), (6, 5), 2)
    };
    for kernel in QKernel::ALL {
        if !kernel.is_compiled() {
            continue;
        }
        let s = ConvShape {
            batch,
            ..shape(2, 2, group_size, 3, 2, Padding::symmetric(1))
        };
        let lift = ConvShape {
            batch,
            ..shape(3, 2, lift_size, 3, 1, Padding::Same)
        };
        compare::<C4>(
            &mut case,
            Domain::Group,
            s,
            kernel,
            (-3, 5),
            false,
            true,
            false,
        );
        compare::<D4>(
            &mut case,
            Domain::Group,
            s,
            kernel,
            (127, -128),
            true,
            false,
            true,
        );
        compare::<C4>(
            &mut case,
            Domain::Z2,
            lift,
            kernel,
            (-128, 127),
            true,
            true,
            true,
        );
        compare::<D4>(
            &mut case,
            Domain::Z2,
            lift,
            kernel,
            (10, 0),
            false,
            true,
            false,
        );
    }
}

/// The blocked branch of the driver (more unit groups than one block holds, the last
/// block partial) with an odd number of plane tiles, so that a kernel taking plane
/// tiles in pairs also runs a tile alone, for every compiled kernel.
#[test]
#[cfg_attr(
    miri,
    ignore = "large for Miri; the grid's small cases cover the kernels"
)]
fn blocked_groups_and_odd_plane_tiles() {
    let mut case = Case::new();
    let s = shape(40, 3, (6, 6), 3, 1, Padding::Same);
    for kernel in QKernel::ALL.into_iter().filter(|k| k.is_compiled()) {
        for (extreme, zp) in [(false, (-5, 3)), (true, (127, -128))] {
            compare::<C4>(&mut case, Domain::Group, s, kernel, zp, true, true, extreme);
        }
    }
}

/// The portable kernel on a grid of kernel sizes, strides, paddings and sizes, for the
/// four pairs (and every compiled kernel on the C4 pairs).
#[test]
#[cfg_attr(miri, ignore = "the grid takes hours under Miri; see the small case")]
fn kernels_match_direct_on_a_grid() {
    let mut case = Case::new();
    let paddings = [
        Padding::Valid,
        Padding::symmetric(1),
        Padding::Explicit {
            top: 2,
            bottom: 0,
            left: 1,
            right: 3,
        },
    ];
    let mut n = 0u32;
    for k in [1, 2, 3, 4, 5, 7] {
        for stride in 1..=2 {
            for padding in paddings {
                for size in [(7, 8), (9, 9), (8, 11)] {
                    n += 1;
                    let zp = [(0, 0), (-128, 127), (127, -128), (-5, 3)][n as usize % 4];
                    let (relu, bias, extreme) = (
                        n.is_multiple_of(2),
                        !n.is_multiple_of(3),
                        n.is_multiple_of(5),
                    );
                    let g = shape(2, 3, size, k, stride, padding);
                    let z = shape(1 + n as usize % 3, 3, size, k, stride, padding);
                    for kernel in QKernel::ALL.into_iter().filter(|k| k.is_compiled()) {
                        compare::<C4>(&mut case, Domain::Group, g, kernel, zp, relu, bias, extreme);
                        compare::<C4>(&mut case, Domain::Z2, z, kernel, zp, relu, bias, extreme);
                        if kernel == QKernel::Portable {
                            compare::<D4>(
                                &mut case,
                                Domain::Group,
                                g,
                                kernel,
                                zp,
                                relu,
                                bias,
                                extreme,
                            );
                            compare::<D4>(
                                &mut case,
                                Domain::Z2,
                                z,
                                kernel,
                                zp,
                                relu,
                                bias,
                                extreme,
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "no kernel call: the checks return before the kernels")]
fn bad_arguments_are_errors_and_write_nothing() {
    let s = shape(2, 2, (5, 6), 3, 1, Padding::Same);
    let geo = s.geometry::<C4>(Domain::Group).unwrap();
    let plan = QFastPlan::from_geometry(&geo, QKernel::Portable).unwrap();
    let mut case = Case::new();
    let ms = multipliers();
    let requant = Requant {
        input_zero_point: 0,
        output_zero_point: 0,
        multipliers: &ms[..2],
        relu: false,
    };
    let x = &case.x[..geo.input_len()];
    let prepared = &mut case.prepared[..plan.prepared_weights_len()];
    assert_eq!(
        plan.prepare_weights(&case.w[..3], prepared),
        Err(Error::BufferLength {
            buffer: Buffer::Weight,
            expected: geo.weight_len(),
            found: 3
        })
    );
    plan.prepare_weights(&case.w[..geo.weight_len()], prepared)
        .unwrap();
    let prepared = &*prepared;
    let out = &mut case.fast[..geo.output_len()];
    out.fill(99);
    let scratch = &mut case.scratch[..plan.scratch_len()];
    let short = plan.scratch_len() - 1;
    assert_eq!(
        plan.forward(
            &requant,
            x,
            prepared,
            None,
            out,
            &mut case.direct.map(i32::from)[..short]
        ),
        Err(Error::BufferLength {
            buffer: Buffer::Scratch,
            expected: plan.scratch_len(),
            found: short
        })
    );
    let bad_zp = Requant {
        input_zero_point: 128,
        ..requant
    };
    assert!(matches!(
        plan.forward(&bad_zp, x, prepared, None, out, scratch),
        Err(Error::ZeroPointOutOfRange { .. })
    ));
    let one_multiplier = Requant {
        multipliers: &ms[..1],
        ..requant
    };
    assert!(matches!(
        plan.forward(&one_multiplier, x, prepared, None, out, scratch),
        Err(Error::BufferLength {
            buffer: Buffer::Scales,
            ..
        })
    ));
    assert!(matches!(
        plan.forward(&requant, x, &prepared[1..], None, out, scratch),
        Err(Error::BufferLength {
            buffer: Buffer::Bank,
            ..
        })
    ));
    assert!(matches!(
        plan.forward(&requant, x, prepared, Some(&[1]), out, scratch),
        Err(Error::BufferLength {
            buffer: Buffer::Bias,
            ..
        })
    ));
    assert!(matches!(
        plan.forward(&requant, &x[1..], prepared, None, out, scratch),
        Err(Error::BufferLength {
            buffer: Buffer::Input,
            ..
        })
    ));
    assert!(out.iter().all(|&v| v == 99), "an error wrote the output");
    let tiles = plan.plane_tiles();
    assert_eq!(
        plan.compute(&requant, scratch, prepared, None, out, 1..tiles + 1),
        Err(Error::TileRange {
            start: 1,
            end: tiles + 1,
            tiles
        })
    );
    assert!(out.iter().all(|&v| v == 99), "an error wrote the output");
    let big = shape(1, 1, (20, 20), MAX_KERNEL + 1, 1, Padding::Valid);
    assert_eq!(
        QFastPlan::new::<C4>(Domain::Z2, &big, QKernel::Portable).err(),
        Some(Error::KernelTooLargeForFastPath {
            kernel: MAX_KERNEL + 1,
            max: MAX_KERNEL
        })
    );
}

/// Tiles computed in two ranges give the bits of one call over all of them.
#[test]
#[cfg_attr(miri, ignore = "the portable kernel only: no `unsafe` call")]
fn tile_ranges_compose() {
    let s = shape(2, 3, (7, 9), 3, 1, Padding::Same);
    let geo = s.geometry::<D4>(Domain::Group).unwrap();
    let plan = QFastPlan::from_geometry(&geo, QKernel::Portable).unwrap();
    let mut case = Case::new();
    fill_i8(&mut case.x, 3, false);
    fill_i8(&mut case.w, 4, false);
    let ms = multipliers();
    let requant = Requant {
        input_zero_point: -7,
        output_zero_point: 9,
        multipliers: &ms,
        relu: true,
    };
    let image = &case.x[..plan.image_input_len()];
    let prepared = &mut case.prepared[..plan.prepared_weights_len()];
    plan.prepare_weights(&case.w[..geo.weight_len()], prepared)
        .unwrap();
    let packed = &mut case.scratch[..plan.scratch_len()];
    plan.pack_input(-7, image, packed).unwrap();
    let out_len = plan.image_output_len();
    let whole = &mut case.direct[..out_len];
    plan.compute(
        &requant,
        packed,
        prepared,
        None,
        whole,
        0..plan.plane_tiles(),
    )
    .unwrap();
    let split = &mut case.fast[..out_len];
    let cut = 5 * MR * geo.out_height() * geo.out_width();
    let (a, b) = split.split_at_mut(cut);
    plan.compute(&requant, packed, prepared, None, a, 0..5)
        .unwrap();
    plan.compute(&requant, packed, prepared, None, b, 5..plan.plane_tiles())
        .unwrap();
    assert_eq!(&case.direct[..out_len], &case.fast[..out_len]);
}

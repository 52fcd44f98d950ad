//! The int8 DSP path (`gconv_core::quant::dsp`, the microcontroller path: `SMLAD` on
//! pairs of input planes) against the plain int8 kernel (`quant::conv::forward`), bit
//! for bit, on the host (its portable block kernel; the firmware checks the Arm
//! `asm!` blocks against the host's output):
//!
//! * all four pairs, K 1..=5, `valid`, `same` (odd K) and asymmetric explicit
//!   padding, odd, even and non-square sizes, odd and even input channel counts,
//!   batch 1 and 2, with and without bias, ReLU on and off, extreme zero points;
//! * scratch budgets from the smallest the layer accepts to roomy, so that passes
//!   of one filter, strips of 1 to all columns and bands of 1 to all rows all run
//!   (the test asserts that each of these blockings occurs);
//! * junk in the scratch and a sentinel in the output before every call.
//!
//! Every sum is an exact integer, so any difference is a bug: there is no tolerance.

use gconv_core::quant::dsp::DspPlan;
use gconv_core::quant::{Multiplier, Requant, conv};
use gconv_core::{C4, ConvGeometry, ConvShape, D4, Domain, Error, Padding};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn geometry(order: usize, domain: Domain, shape: &ConvShape) -> Result<ConvGeometry, Error> {
    if order == 8 {
        shape.geometry::<D4>(domain)
    } else {
        shape.geometry::<C4>(domain)
    }
}

#[test]
fn dsp_path_equals_plain_kernel_on_the_grid() {
    let mut rng = StdRng::seed_from_u64(15);
    let (mut single_plane, mut narrow, mut single_row, mut whole) = (false, false, false, false);
    let mut cases = 0;
    for (order, domain) in [
        (4, Domain::Z2),
        (4, Domain::Group),
        (8, Domain::Z2),
        (8, Domain::Group),
    ] {
        for k in 1..=5usize {
            for (h, w) in [(5, 7), (8, 6), (9, 9)] {
                if k > h.min(w) {
                    continue;
                }
                let paddings = [
                    Padding::Valid,
                    if k % 2 == 1 {
                        Padding::Same
                    } else {
                        Padding::Valid
                    },
                    Padding::Explicit {
                        top: k - 1,
                        bottom: 0,
                        left: k / 2,
                        right: k - 1 - k / 2,
                    },
                ];
                for padding in paddings {
                    // One input channel on every other lifting case: the paired-rows words.
                    let c_in = if domain == Domain::Z2 && (k + h) % 2 == 0 {
                        1
                    } else {
                        rng.random_range(1..=3usize)
                    };
                    let c_out = rng.random_range(1..=2usize);
                    let shape = ConvShape {
                        batch: rng.random_range(1..=2usize),
                        in_channels: c_in,
                        out_channels: c_out,
                        height: h,
                        width: w,
                        kernel: k,
                        stride: 1,
                        padding,
                    };
                    let geo = geometry(order, domain, &shape).unwrap();
                    let x: Vec<i8> = (0..geo.input_len())
                        .map(|_| rng.random_range(-128..=127i8))
                        .collect();
                    let wt: Vec<i8> = (0..geo.weight_len())
                        .map(|_| rng.random_range(-127..=127i8))
                        .collect();
                    let bias: Vec<i32> = (0..c_out)
                        .map(|_| rng.random_range(-100_000..=100_000))
                        .collect();
                    let ms: Vec<Multiplier> = (0..c_out)
                        .map(|o| {
                            Multiplier::from_real([6e-5, 1.3e-3, 0.02, 1.7][(o + k) % 4]).unwrap()
                        })
                        .collect();
                    let zp = [(-128, 127), (127, -128), (-3, 5)][cases % 3];
                    let requant = Requant {
                        input_zero_point: zp.0,
                        output_zero_point: zp.1,
                        multipliers: &ms,
                        relu: cases % 2 == 0,
                    };
                    let bias = (cases % 4 != 1).then_some(&bias[..]);
                    let mut plain = vec![0x55i8; geo.output_len()];
                    let mut scratch = vec![0x5a5a_5a5a; conv::scratch_len_for(&geo).unwrap()];
                    conv::forward_geometry(&geo, &requant, &x, &wt, bias, &mut plain, &mut scratch)
                        .unwrap();
                    // The smallest budget the layer accepts, and larger ones.
                    let smallest = match DspPlan::new(&geo, 0) {
                        Err(Error::ScratchBudget { needed, .. }) => needed,
                        other => panic!("budget 0 accepted: {other:?}"),
                    };
                    for budget in [smallest, smallest + 37, 2 * smallest + 100, 1 << 16] {
                        let plan = DspPlan::new(&geo, budget).unwrap();
                        assert!(plan.scratch_len() <= budget);
                        let b = plan.blocking();
                        single_plane |= b.planes_per_pass == 1;
                        narrow |= b.strip_width < geo.out_width();
                        single_row |= b.band_rows == 1;
                        whole |=
                            b.strip_width == geo.out_width() && b.band_rows == geo.out_height();
                        let mut out = vec![0x55i8; geo.output_len()];
                        let mut scratch = vec![0x5a5a_5a5a; plan.scratch_len()];
                        plan.forward(&requant, &x, &wt, bias, &mut out, &mut scratch)
                            .unwrap();
                        assert!(
                            out == plain,
                            "order {order} {domain:?} {shape:?} budget {budget} {b:?}: first difference at {:?}",
                            out.iter().zip(&plain).position(|(a, b)| a != b)
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(
        single_plane && narrow && single_row && whole,
        "a blocking kind never ran"
    );
    assert!(cases > 500, "{cases} cases");
}

#[test]
fn dsp_path_errors() {
    let shape = ConvShape {
        batch: 1,
        in_channels: 2,
        out_channels: 1,
        height: 6,
        width: 6,
        kernel: 3,
        stride: 2,
        padding: Padding::Same,
    };
    let geo = shape.geometry::<C4>(Domain::Group).unwrap();
    assert_eq!(
        DspPlan::new(&geo, 4096).unwrap_err(),
        Error::DspStride { stride: 2 }
    );
    let msg = Error::DspStride { stride: 2 }.to_string();
    assert!(msg.contains("stride 2"), "{msg}");
}

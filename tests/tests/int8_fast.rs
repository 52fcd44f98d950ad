//! The int8 fast path (`gconv_core::quant::fast`) against the direct int8 kernel
//! (`gconv_core::quant::conv::forward`), bit for bit, for every kernel this CPU has
//! (`portable` always; `avx2_madd`, `avx_vnni`, `avx512_vnni` where the CPU has them,
//! through gconv-std's run-time dispatch):
//!
//! * all four pairs, K 1..=5 and 7, stride 1 and 2, `valid`, `same` (odd K) and
//!   asymmetric explicit padding, odd, even and non-square sizes, batch 1 and 3, with
//!   and without bias, ReLU on and off;
//! * extreme zero points (-128 and 127 on either side), extreme inputs (-128, 127) and
//!   weights (+-127), and large channel counts (the accumulator near the int32 range);
//! * scratch filled with junk and outputs with a sentinel before every call;
//! * tile ranges computed separately compose to the whole image;
//! * errors: bad lengths, zero points, tile ranges, kernels too large, a kernel the
//!   CPU lacks; nothing is written on error.
//!
//! Every sum is an exact integer, so any difference is a bug: there is no tolerance.

use gconv_core::quant::fast::{MAX_KERNEL, MR, QFastPlan, QKernel};
use gconv_core::quant::{Multiplier, Requant, conv};
use gconv_core::{Buffer, C4, ConvGeometry, ConvShape, D4, Domain, Error, Padding};
use gconv_std::fast::{int8_available_kernels, int8_compute, int8_cpu_has, int8_forward_images};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const SENTINEL: i8 = 0x55;
const JUNK: i32 = 0x5a5a_5a5a;

/// The pairs as (name, output group order 4 or 8, domain).
const PAIRS: [(&str, usize, Domain); 4] = [
    ("Z2->C4", 4, Domain::Z2),
    ("C4->C4", 4, Domain::Group),
    ("Z2->D4", 8, Domain::Z2),
    ("D4->D4", 8, Domain::Group),
];

fn geometry(order: usize, domain: Domain, shape: &ConvShape) -> Result<ConvGeometry, Error> {
    if order == 8 {
        shape.geometry::<D4>(domain)
    } else {
        shape.geometry::<C4>(domain)
    }
}

/// What varies besides the shape.
#[derive(Clone, Copy, Debug)]
struct Quant {
    zp_in: i32,
    zp_out: i32,
    relu: bool,
    bias: bool,
    /// Inputs only -128 / 127 and weights only +-127.
    extreme: bool,
}

/// A seeded layer: input, raw weights, bias, one multiplier per output channel.
struct Layer {
    x: Vec<i8>,
    w: Vec<i8>,
    bias: Vec<i32>,
    multipliers: Vec<Multiplier>,
}

impl Layer {
    fn new(geo: &ConvGeometry, q: Quant, rng: &mut StdRng) -> Self {
        let x = (0..geo.input_len())
            .map(|_| {
                if q.extreme {
                    if rng.random_bool(0.5) { -128 } else { 127 }
                } else {
                    rng.random_range(-128..=127i8)
                }
            })
            .collect();
        let w = (0..geo.weight_len())
            .map(|_| {
                if q.extreme {
                    if rng.random_bool(0.5) { -127 } else { 127 }
                } else {
                    rng.random_range(-127..=127i8)
                }
            })
            .collect();
        let bias = (0..geo.out_channels())
            .map(|_| rng.random_range(-100_000..=100_000))
            .collect();
        // Effective scales from about 2^-14 (many outputs in range) to above 1 (the
        // left shift, most outputs clamped).
        let multipliers = (0..geo.out_channels())
            .map(|o| {
                let real = [6e-5, 1.3e-3, 0.02, 1.7][o % 4] * rng.random_range(0.5..2.0);
                Multiplier::from_real(real).unwrap()
            })
            .collect();
        Layer {
            x,
            w,
            bias,
            multipliers,
        }
    }

    fn requant(&self, q: Quant) -> Requant<'_> {
        Requant {
            input_zero_point: q.zp_in,
            output_zero_point: q.zp_out,
            multipliers: &self.multipliers,
            relu: q.relu,
        }
    }

    fn bias(&self, q: Quant) -> Option<&[i32]> {
        q.bias.then_some(&self.bias[..])
    }

    fn direct(&self, geo: &ConvGeometry, q: Quant) -> Vec<i8> {
        let mut out = vec![SENTINEL; geo.output_len()];
        let mut scratch = vec![JUNK; conv::scratch_len_for(geo).unwrap()];
        conv::forward_geometry(
            geo,
            &self.requant(q),
            &self.x,
            &self.w,
            self.bias(q),
            &mut out,
            &mut scratch,
        )
        .unwrap();
        out
    }

    fn fast(&self, geo: &ConvGeometry, q: Quant, kernel: QKernel) -> Vec<i8> {
        let plan = QFastPlan::from_geometry(geo, kernel).unwrap();
        let mut prepared = vec![JUNK; plan.prepared_weights_len()];
        plan.prepare_weights(&self.w, &mut prepared).unwrap();
        let mut out = vec![SENTINEL; geo.output_len()];
        let mut scratch = vec![JUNK; plan.scratch_len()];
        int8_forward_images(
            &plan,
            &self.requant(q),
            &self.x,
            &prepared,
            self.bias(q),
            &mut out,
            &mut scratch,
        )
        .unwrap();
        out
    }
}

/// Asserts that every available kernel gives the direct kernel's bits.
fn check(name: &str, order: usize, domain: Domain, shape: &ConvShape, q: Quant, rng: &mut StdRng) {
    let geo = geometry(order, domain, shape).unwrap();
    let layer = Layer::new(&geo, q, rng);
    let want = layer.direct(&geo, q);
    for kernel in int8_available_kernels() {
        let got = layer.fast(&geo, q, kernel);
        if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
            panic!(
                "{name} {} {shape:?} {q:?}: output {i} is {}, the direct kernel says {} \
                 ({} outputs differ)",
                kernel.name(),
                got[i],
                want[i],
                got.iter().zip(&want).filter(|(a, b)| a != b).count()
            );
        }
    }
}

fn paddings() -> [Padding; 3] {
    [
        Padding::Valid,
        Padding::Same,
        Padding::Explicit {
            top: 0,
            bottom: 2,
            left: 1,
            right: 0,
        },
    ]
}

/// The grid: every pair, K, stride, padding, with sizes, batch, bias, ReLU and the
/// zero points cycling so that each takes every value several times.
#[test]
fn every_kernel_matches_the_direct_kernel_on_the_grid() {
    let mut rng = StdRng::seed_from_u64(2024);
    let sizes = [(7, 7), (8, 8), (9, 6), (6, 11)];
    let zps = [
        (0, 0),
        (-128, 127),
        (127, -128),
        (-128, -128),
        (127, 127),
        (-3, 5),
    ];
    let mut n = 0usize;
    let mut ran = 0;
    for (name, order, domain) in PAIRS {
        for k in [1, 2, 3, 4, 5, 7] {
            for stride in [1, 2] {
                for padding in paddings() {
                    n += 1;
                    let (height, width) = sizes[n % sizes.len()];
                    let shape = ConvShape {
                        batch: [1, 3][n % 2],
                        in_channels: 1 + n % 3,
                        out_channels: 1 + (n / 3) % 3,
                        height,
                        width,
                        kernel: k,
                        stride,
                        padding,
                    };
                    if geometry(order, domain, &shape).is_err() {
                        continue; // `same` with even K, or K larger than the input
                    }
                    let (zp_in, zp_out) = zps[n % zps.len()];
                    let q = Quant {
                        zp_in,
                        zp_out,
                        relu: n % 4 < 2,
                        bias: n % 3 != 1,
                        extreme: n.is_multiple_of(5),
                    };
                    check(name, order, domain, &shape, q, &mut rng);
                    ran += 1;
                }
            }
        }
    }
    assert!(ran >= 100, "only {ran} grid cases ran");
}

/// Extreme values on every kernel: zero points at both ends, inputs only -128/127,
/// weights only +-127, for the four pairs, odd and even K.
#[test]
fn extreme_zero_points_and_values() {
    let mut rng = StdRng::seed_from_u64(7);
    for (name, order, domain) in PAIRS {
        for (k, padding) in [
            (3, Padding::Same),
            (4, Padding::symmetric(2)),
            (5, Padding::Valid),
        ] {
            for (zp_in, zp_out) in [(-128, 127), (127, -128), (-128, -128), (127, 127)] {
                for relu in [false, true] {
                    let shape = ConvShape {
                        batch: 1,
                        in_channels: 3,
                        out_channels: 2,
                        height: 9,
                        width: 8,
                        kernel: k,
                        stride: 1,
                        padding,
                    };
                    let q = Quant {
                        zp_in,
                        zp_out,
                        relu,
                        bias: true,
                        extreme: true,
                    };
                    check(name, order, domain, &shape, q, &mut rng);
                }
            }
        }
    }
}

/// Many input channels (the blocked branch of the driver, partial blocks) and an
/// accumulator that reaches about 2^29: D4->D4 40 -> 3 channels, K 5, extreme values.
#[test]
fn many_channels_and_large_accumulators() {
    let mut rng = StdRng::seed_from_u64(11);
    for (extreme, k, stride) in [(true, 5, 1), (false, 3, 2), (false, 3, 1)] {
        let shape = ConvShape {
            batch: 1,
            in_channels: 40,
            out_channels: 3,
            height: 13,
            width: 12,
            kernel: k,
            stride,
            padding: Padding::Same,
        };
        let q = Quant {
            zp_in: -128,
            zp_out: 0,
            relu: false,
            bias: true,
            extreme,
        };
        check("D4->D4", 8, Domain::Group, &shape, q, &mut rng);
        check("C4->C4", 4, Domain::Group, &shape, q, &mut rng);
    }
    // Wide rows: several flat tiles per row and a ragged last tile.
    let shape = ConvShape {
        batch: 2,
        in_channels: 5,
        out_channels: 4,
        height: 5,
        width: 70,
        kernel: 3,
        stride: 1,
        padding: Padding::Same,
    };
    let q = Quant {
        zp_in: 9,
        zp_out: -4,
        relu: true,
        bias: false,
        extreme: false,
    };
    check("Z2->C4", 4, Domain::Z2, &shape, q, &mut rng);
    check("C4->C4", 4, Domain::Group, &shape, q, &mut rng);
}

/// Kernels up to `MAX_KERNEL` run; larger ones are an error that names the direct
/// path's limit.
#[test]
fn largest_kernel_and_beyond() {
    let mut rng = StdRng::seed_from_u64(13);
    let shape = ConvShape {
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        height: 12,
        width: 13,
        kernel: MAX_KERNEL,
        stride: 1,
        padding: Padding::Same,
    };
    let q = Quant {
        zp_in: 1,
        zp_out: 2,
        relu: false,
        bias: true,
        extreme: false,
    };
    check("Z2->D4", 8, Domain::Z2, &shape, q, &mut rng);
    let bigger = ConvShape {
        kernel: MAX_KERNEL + 2,
        ..shape
    };
    for kernel in QKernel::ALL {
        let err = QFastPlan::new::<C4>(Domain::Z2, &bigger, kernel).unwrap_err();
        assert_eq!(
            err,
            Error::KernelTooLargeForFastPath {
                kernel: MAX_KERNEL + 2,
                max: MAX_KERNEL
            }
        );
        assert!(err.to_string().contains("direct path"), "{err}");
    }
}

/// The tile ranges of one packed image, computed piece by piece (as threads would),
/// give the bits of one call, for every kernel.
#[test]
fn tile_ranges_compose() {
    let mut rng = StdRng::seed_from_u64(17);
    let shape = ConvShape {
        batch: 1,
        in_channels: 3,
        out_channels: 5,
        height: 10,
        width: 9,
        kernel: 3,
        stride: 1,
        padding: Padding::Same,
    };
    let geo = shape.geometry::<D4>(Domain::Group).unwrap();
    let q = Quant {
        zp_in: -20,
        zp_out: 3,
        relu: true,
        bias: true,
        extreme: false,
    };
    let layer = Layer::new(&geo, q, &mut rng);
    let want = layer.direct(&geo, q);
    for kernel in int8_available_kernels() {
        let plan = QFastPlan::from_geometry(&geo, kernel).unwrap();
        let mut prepared = vec![0; plan.prepared_weights_len()];
        plan.prepare_weights(&layer.w, &mut prepared).unwrap();
        let mut packed = vec![JUNK; plan.scratch_len()];
        plan.pack_input(q.zp_in, &layer.x, &mut packed).unwrap();
        let tiles = plan.plane_tiles();
        let tile_len = MR * geo.out_height() * geo.out_width();
        let mut out = vec![SENTINEL; geo.output_len()];
        for (cut, part) in out.chunks_mut(3 * tile_len).enumerate() {
            let range = 3 * cut..(3 * cut + part.len() / tile_len).min(tiles);
            int8_compute(
                &plan,
                &layer.requant(q),
                &packed,
                &prepared,
                layer.bias(q),
                part,
                range,
            )
            .unwrap();
        }
        assert_eq!(out, want, "{}", kernel.name());
    }
}

#[test]
fn bad_arguments_are_errors_and_write_nothing() {
    let shape = ConvShape {
        batch: 2,
        in_channels: 2,
        out_channels: 2,
        height: 6,
        width: 5,
        kernel: 3,
        stride: 1,
        padding: Padding::Same,
    };
    let geo = shape.geometry::<C4>(Domain::Group).unwrap();
    let mut rng = StdRng::seed_from_u64(19);
    let q = Quant {
        zp_in: 0,
        zp_out: 0,
        relu: false,
        bias: true,
        extreme: false,
    };
    let layer = Layer::new(&geo, q, &mut rng);
    let requant = layer.requant(q);
    for kernel in QKernel::ALL {
        let plan = QFastPlan::from_geometry(&geo, kernel).unwrap();
        let mut prepared = vec![0; plan.prepared_weights_len()];
        plan.prepare_weights(&layer.w, &mut prepared).unwrap();
        let mut out = vec![SENTINEL; geo.output_len()];
        let mut scratch = vec![0; plan.scratch_len()];
        let run = |requant: &Requant<'_>,
                   x: &[i8],
                   prepared: &[i32],
                   bias: Option<&[i32]>,
                   out: &mut [i8],
                   scratch: &mut [i32]| {
            int8_forward_images(&plan, requant, x, prepared, bias, out, scratch)
        };
        if !int8_cpu_has(kernel) {
            let err = run(&requant, &layer.x, &prepared, None, &mut out, &mut scratch);
            assert_eq!(
                err,
                Err(Error::KernelNotCompiled {
                    kernel: kernel.name()
                })
            );
            continue;
        }
        let x = &layer.x;
        let errors = [
            run(&requant, &x[1..], &prepared, None, &mut out, &mut scratch),
            run(&requant, x, &prepared[1..], None, &mut out, &mut scratch),
            run(
                &requant,
                x,
                &prepared,
                Some(&[1, 2, 3]),
                &mut out,
                &mut scratch,
            ),
            run(
                &requant,
                x,
                &prepared,
                None,
                &mut out.clone()[1..],
                &mut scratch,
            ),
            run(
                &requant,
                x,
                &prepared,
                None,
                &mut out,
                &mut scratch.clone()[1..],
            ),
            run(
                &Requant {
                    input_zero_point: -129,
                    ..requant
                },
                x,
                &prepared,
                None,
                &mut out,
                &mut scratch,
            ),
            run(
                &Requant {
                    output_zero_point: 128,
                    ..requant
                },
                x,
                &prepared,
                None,
                &mut out,
                &mut scratch,
            ),
            run(
                &Requant {
                    multipliers: &layer.multipliers[..1],
                    ..requant
                },
                x,
                &prepared,
                None,
                &mut out,
                &mut scratch,
            ),
        ];
        let buffers: Vec<Option<Buffer>> = errors
            .iter()
            .map(|e| match e {
                Err(Error::BufferLength { buffer, .. }) => Some(*buffer),
                Err(Error::ZeroPointOutOfRange { .. }) => None,
                other => panic!("{}: expected an error, got {other:?}", kernel.name()),
            })
            .collect();
        assert_eq!(
            buffers,
            [
                Some(Buffer::Input),
                Some(Buffer::Bank),
                Some(Buffer::Bias),
                Some(Buffer::Output),
                Some(Buffer::Scratch),
                None,
                None,
                Some(Buffer::Scales)
            ],
            "{}",
            kernel.name()
        );
        assert!(
            out.iter().all(|&v| v == SENTINEL),
            "{}: an error wrote",
            kernel.name()
        );
        let tiles = plan.plane_tiles();
        assert_eq!(
            int8_compute(
                &plan,
                &requant,
                &scratch,
                &prepared,
                None,
                &mut out,
                0..tiles + 1
            ),
            Err(Error::TileRange {
                start: 0,
                end: tiles + 1,
                tiles
            })
        );
        assert!(
            out.iter().all(|&v| v == SENTINEL),
            "{}: an error wrote",
            kernel.name()
        );
        // A plan's kernel is the only one its entry points take.
        #[cfg(target_arch = "x86_64")]
        if kernel != QKernel::Avx2Madd && int8_cpu_has(QKernel::Avx2Madd) {
            // SAFETY: the CPU has AVX2 (checked just above).
            #[allow(unsafe_code)]
            let err = unsafe {
                plan.compute_avx2_madd(&requant, &scratch, &prepared, None, &mut out, 0..tiles)
            };
            assert_eq!(
                err,
                Err(Error::KernelNotCompiled {
                    kernel: "avx2_madd"
                })
            );
        }
    }
}

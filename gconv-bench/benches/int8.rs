//! int8 against f32: the int8 fast path (`gconv_core::quant::fast`) and the f32 fast
//! path (`gconv_core::fast`) on the same layers, one thread, timed in the same run,
//! interleaved, and the ratio printed. A custom harness (no criterion): the ratio is
//! the point, and interleaving f32 and int8 runs keeps a machine whose load changes
//! from favouring either.
//!
//! ```text
//! cargo bench -p gconv-bench --bench int8 [-- FILTER]
//! ```
//!
//! Shapes (the speed targets): a) C4->C4 10->10 k3 28x28 batch 32, c) D4->D4 16->16
//! k3 32x32 batch 32, d) C4->C4 64->64 k3 56x56 batch 1; `same` padding, stride 1,
//! with a bias. For every instruction-set level the CPU has, the matching kernels run
//! side by side: f32 `avx512` with int8 `avx512_vnni` (and `avx_vnni`), f32
//! `avx2_fma` with int8 `avx2_madd` (the plain AVX2 kernel: "AVX2 forced"), and the
//! portable kernels where there is no SIMD. `FILTER` keeps the rows whose shape or
//! kernel names contain it.
//!
//! Per row: the median ms of each (rounds of one f32 forward pass then one int8 forward
//! pass, about 2 s per row), the ratio f32 / int8 (the target is >= 2), and GMAC/s of
//! each (the geometry's multiply-adds, padding included).
//!
//! Checked before timing: the int8 fast output of the first image is bitwise equal to
//! the direct int8 kernel's, the f32 fast output of the first image is within the f32
//! rounding bound of the direct f32 path; after timing, the first image of the timed
//! batch is bitwise the checked one (int8 and f32).

use std::hint::black_box;
use std::time::{Duration, Instant};

use gconv_core::fast::{FastPlan, Kernel};
use gconv_core::quant::fast::{QFastPlan, QKernel};
use gconv_core::quant::{Multiplier, Requant, conv};
use gconv_core::{ConvGeometry, ConvShape, Domain};
use gconv_std::fast::{cpu_has, int8_cpu_has, int8_forward_images};
use gconv_std::{AnyConv, C4, ConvPath, D4, Padding, Pair, Tensor};

/// One benchmarked layer.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    pair: Pair,
    c_in: usize,
    c_out: usize,
    k: usize,
    size: usize,
    batch: usize,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "a_c4-c4_10-10_k3_28x28_b32",
        pair: Pair::C4C4,
        c_in: 10,
        c_out: 10,
        k: 3,
        size: 28,
        batch: 32,
    },
    Shape {
        name: "c_d4-d4_16-16_k3_32x32_b32",
        pair: Pair::D4D4,
        c_in: 16,
        c_out: 16,
        k: 3,
        size: 32,
        batch: 32,
    },
    Shape {
        name: "d_c4-c4_64-64_k3_56x56_b1",
        pair: Pair::C4C4,
        c_in: 64,
        c_out: 64,
        k: 3,
        size: 56,
        batch: 1,
    },
];

/// The f32 and int8 kernels compared at each instruction-set level.
const PAIRINGS: [(Kernel, QKernel); 4] = [
    (Kernel::Avx512, QKernel::Avx512Vnni),
    (Kernel::Avx512, QKernel::AvxVnni),
    (Kernel::Avx2Fma, QKernel::Avx2Madd),
    (Kernel::Portable, QKernel::Portable),
];

/// Time per row (both kernels).
const ROW_TIME: Duration = Duration::from_secs(2);

impl Shape {
    fn conv_shape(&self, batch: usize) -> ConvShape {
        ConvShape {
            batch,
            in_channels: self.c_in,
            out_channels: self.c_out,
            height: self.size,
            width: self.size,
            kernel: self.k,
            stride: 1,
            padding: Padding::Same,
        }
    }

    fn geometry(&self, batch: usize) -> ConvGeometry {
        let domain = match self.pair {
            Pair::Z2C4 | Pair::Z2D4 => Domain::Z2,
            Pair::C4C4 | Pair::D4D4 => Domain::Group,
        };
        let shape = self.conv_shape(batch);
        match self.pair {
            Pair::Z2D4 | Pair::D4D4 => shape.geometry::<D4>(domain),
            Pair::Z2C4 | Pair::C4C4 => shape.geometry::<C4>(domain),
        }
        .expect("bench geometry")
    }

    fn input_shape(&self, batch: usize) -> Vec<usize> {
        let planes = self.pair.from().planes();
        let mut shape = vec![batch, self.c_in, planes, self.size, self.size];
        if planes == 1 {
            shape.remove(2);
        }
        shape
    }
}

/// Deterministic pseudo-random values: f32 in [-1, 1), or int8.
fn lcg(len: usize, seed: u32) -> impl Iterator<Item = u32> {
    let mut s = seed;
    (0..len).map(move |_| {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        s >> 8
    })
}

/// The f32 side: the seeded layer with a bias, its fast plan and packed bank.
struct F32Side {
    layer: AnyConv,
    plan: FastPlan,
    plan_one: FastPlan,
    x: Tensor,
}

impl F32Side {
    fn new(s: &Shape) -> Self {
        let seeded = AnyConv::new(s.pair, s.c_in, s.c_out, s.k, 1, Padding::Same, 7).unwrap();
        let bias = (0..s.c_out).map(|o| 0.125 * o as f32 - 0.5).collect();
        let layer = AnyConv::from_weights(
            s.pair,
            seeded.weight().clone(),
            Some(bias),
            1,
            Padding::Same,
        )
        .unwrap();
        let shape = s.input_shape(s.batch);
        let plan = layer.fast_plan(&shape).unwrap();
        let plan_one = layer.fast_plan(&s.input_shape(1)).unwrap();
        let len = plan.geometry().input_len();
        let data = lcg(len, 1)
            .map(|v| v as f32 / (1u32 << 23) as f32 - 1.0)
            .collect();
        F32Side {
            layer,
            plan,
            plan_one,
            x: Tensor::new(shape, data).unwrap(),
        }
    }

    fn packed_bank(&self) -> &[f32] {
        match &self.layer {
            AnyConv::Z2C4(l) => l.packed_bank(),
            AnyConv::C4C4(l) => l.packed_bank(),
            AnyConv::Z2D4(l) => l.packed_bank(),
            AnyConv::D4D4(l) => l.packed_bank(),
        }
    }

    fn forward(&self, plan: &FastPlan, kernel: Kernel, x: &[f32], out: &mut [f32]) {
        let bias = self.layer.bias();
        gconv_std::fast::forward(plan, kernel, x, self.packed_bank(), bias, out)
            .expect("f32 fast forward");
    }

    /// The first image with `kernel`, checked against the direct path within
    /// `2 (terms + 2) eps (sum |x w| + |b|)` (both are within the bound of the exact
    /// value; `sum |x w|` from the magnitude layer).
    fn checked_first_image(&self, s: &Shape, kernel: Kernel) -> Vec<f32> {
        let geo = self.plan_one.geometry();
        let x = &self.x.data()[..geo.input_len()];
        let mut fast = vec![f32::NAN; geo.output_len()];
        self.forward(&self.plan_one, kernel, x, &mut fast);
        let image = Tensor::new(s.input_shape(1), x.to_vec()).unwrap();
        let mut direct = self.layer.clone();
        direct.set_path(ConvPath::Direct);
        let want = direct.forward(&image).unwrap();
        let mag = self
            .layer
            .magnitude_layer()
            .forward(&image.map(f32::abs))
            .unwrap();
        let eps = 2.0 * f64::from(f32::EPSILON) * (geo.terms_per_output() as f64 + 2.0);
        for (i, ((&f, &d), &m)) in fast.iter().zip(want.data()).zip(mag.data()).enumerate() {
            assert!(
                f64::from(f - d).abs() <= eps * f64::from(m) * 1.01 + 1e-30,
                "{}: f32 {} output {i}: fast {f}, direct {d}",
                s.name,
                kernel.name()
            );
        }
        fast
    }
}

/// The int8 side: seeded raw weights, bias, multipliers and input.
struct Int8Side {
    geo: ConvGeometry,
    geo_one: ConvGeometry,
    weight: Vec<i8>,
    bias: Vec<i32>,
    multipliers: Vec<Multiplier>,
    x: Vec<i8>,
}

impl Int8Side {
    fn new(s: &Shape) -> Self {
        let geo = s.geometry(s.batch);
        let terms = geo.terms_per_output() as f32;
        Int8Side {
            geo,
            geo_one: s.geometry(1),
            weight: lcg(geo.weight_len(), 3)
                .map(|v| ((v % 255) as i32 - 127) as i8)
                .collect(),
            bias: lcg(geo.out_channels(), 4)
                .map(|v| (v % 10_001) as i32 - 5000)
                .collect(),
            multipliers: (0..geo.out_channels())
                .map(|o| {
                    let w_scale = (1.0 + 0.1 * (o % 7) as f32) / (127.0 * terms.sqrt());
                    Multiplier::for_product(1.0 / 64.0, w_scale, 1.0 / 16.0).unwrap()
                })
                .collect(),
            x: lcg(geo.input_len(), 5).map(|v| v as u8 as i8).collect(),
        }
    }

    fn requant(&self) -> Requant<'_> {
        Requant {
            input_zero_point: -3,
            output_zero_point: 5,
            multipliers: &self.multipliers,
            relu: true,
        }
    }

    /// The plan of `kernel` for the batch and its prepared weights.
    fn plan(&self, geo: &ConvGeometry, kernel: QKernel) -> (QFastPlan, Vec<i32>) {
        let plan = QFastPlan::from_geometry(geo, kernel).unwrap();
        let mut prepared = vec![0; plan.prepared_weights_len()];
        plan.prepare_weights(&self.weight, &mut prepared).unwrap();
        (plan, prepared)
    }

    fn forward(
        &self,
        plan: &QFastPlan,
        prepared: &[i32],
        x: &[i8],
        out: &mut [i8],
        scratch: &mut [i32],
    ) {
        int8_forward_images(
            plan,
            &self.requant(),
            x,
            prepared,
            Some(&self.bias),
            out,
            scratch,
        )
        .expect("int8 fast forward");
    }

    /// The first image with `kernel`, checked bitwise against the direct int8 kernel.
    fn checked_first_image(&self, s: &Shape, kernel: QKernel) -> Vec<i8> {
        let geo = &self.geo_one;
        let x = &self.x[..geo.input_len()];
        let mut direct = vec![0i8; geo.output_len()];
        let mut scratch = vec![0i32; conv::scratch_len_for(geo).unwrap()];
        conv::forward_geometry(
            geo,
            &self.requant(),
            x,
            &self.weight,
            Some(&self.bias),
            &mut direct,
            &mut scratch,
        )
        .unwrap();
        let (plan, prepared) = self.plan(geo, kernel);
        let mut fast = vec![0x55i8; geo.output_len()];
        let mut scratch = vec![-1i32; plan.scratch_len()];
        self.forward(&plan, &prepared, x, &mut fast, &mut scratch);
        assert!(
            fast == direct,
            "{}: int8 {} differs from the direct kernel",
            s.name,
            kernel.name()
        );
        fast
    }
}

/// Median of `times` (sorted in place).
fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let mut pairings: Vec<(Kernel, QKernel)> = PAIRINGS
        .into_iter()
        .filter(|&(f, q)| cpu_has(f) && int8_cpu_has(q))
        .collect();
    // The portable kernels only where there is no SIMD pairing.
    if pairings.len() > 1 {
        pairings.retain(|&(f, _)| f != Kernel::Portable);
    }
    eprintln!(
        "int8 vs f32 fast path, one thread; CPU kernels: f32 {:?}, int8 {:?}",
        gconv_std::fast::available_kernels()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>(),
        gconv_std::fast::int8_available_kernels()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
    );
    println!(
        "{:<28} {:>9} {:>12} {:>10} {:>12} {:>9} {:>11} {:>11}",
        "shape", "f32", "int8", "f32 ms", "int8 ms", "f32/int8", "f32 GMAC/s", "int8 GMAC/s"
    );
    for s in SHAPES {
        let rows: Vec<_> = pairings
            .iter()
            .copied()
            .filter(|(f, q)| {
                filter.is_empty()
                    || s.name.contains(&filter)
                    || f.name().contains(&filter)
                    || q.name().contains(&filter)
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let f32_side = F32Side::new(&s);
        let int8_side = Int8Side::new(&s);
        let geo = int8_side.geo;
        let mut y_f32 = vec![0.0f32; geo.output_len()];
        let mut y_i8 = vec![0i8; geo.output_len()];
        for (fk, qk) in rows {
            let want_f32 = f32_side.checked_first_image(&s, fk);
            let want_i8 = int8_side.checked_first_image(&s, qk);
            let (plan, prepared) = int8_side.plan(&geo, qk);
            let mut scratch = vec![0i32; plan.scratch_len()];
            let run_f32 =
                |y: &mut [f32]| f32_side.forward(&f32_side.plan, fk, f32_side.x.data(), y);
            let mut run_i8 =
                |y: &mut [i8]| int8_side.forward(&plan, &prepared, &int8_side.x, y, &mut scratch);
            // Warm-up, and the rounds that fit in the row's time.
            let t = Instant::now();
            run_f32(&mut y_f32);
            run_i8(&mut y_i8);
            let rounds = (ROW_TIME.as_secs_f64() / t.elapsed().as_secs_f64().max(1e-6))
                .clamp(5.0, 2000.0) as usize;
            let (mut t_f32, mut t_i8) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let t = Instant::now();
                run_f32(black_box(&mut y_f32));
                t_f32.push(t.elapsed().as_secs_f64());
                let t = Instant::now();
                run_i8(black_box(&mut y_i8));
                t_i8.push(t.elapsed().as_secs_f64());
            }
            assert_eq!(
                &y_i8[..want_i8.len()],
                &want_i8[..],
                "{}: timed int8 run",
                s.name
            );
            assert!(
                y_f32[..want_f32.len()]
                    .iter()
                    .zip(&want_f32)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: timed f32 run",
                s.name
            );
            let (ms_f32, ms_i8) = (median(&mut t_f32) * 1e3, median(&mut t_i8) * 1e3);
            let gmacs = |ms: f64| geo.macs() as f64 / ms / 1e6;
            println!(
                "{:<28} {:>9} {:>12} {:>10.3} {:>12.3} {:>9.2} {:>11.1} {:>11.1}",
                s.name,
                fk.name(),
                qk.name(),
                ms_f32,
                ms_i8,
                ms_f32 / ms_i8,
                gmacs(ms_f32),
                gmacs(ms_i8)
            );
        }
    }
}

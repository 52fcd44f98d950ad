//! Forward-pass throughput (MACs/s) of the four layer pairs on the shapes the speed
//! issues track, the group-Fourier path, the fast path and the direct path side by
//! side, plus the work done once per weight change (bank expansion and packing, the
//! Fourier path's weight transform) and the per-image input packing on their own.
//!
//! Groups (one per shape family; `cargo bench -p gconv-bench -- '^a_'` runs one):
//!
//! * `a_c4-c4_10`: C4->C4 10->10, k3, 28x28, batch 1 and 32;
//! * `b_lifting`: Z2->C4 3->16 and 1->16, k3 and k5, 32x32 and 224x224, batch 1, and
//!   Z2->D4 3->16 k3 32x32 (so that every pair is covered);
//! * `c_d4-d4_16`: D4->D4 16->16, k3, 32x32, batch 1 and 32;
//! * `d_c4-c4_64`: C4->C4 64->64, k3, 56x56, batch 1, on one and on two threads;
//! * `e_c4-c4_4`: C4->C4 4->4, k3, 16x16, batch 1;
//! * `expand`: `expand_filter_bank`, `pack_bank` and the Fourier path's
//!   `pack_weights` for the shapes of a, c and d;
//! * `pack_input`: `FastPlan::pack_input` (one image) for the shapes of a, c and d.
//!
//! Forward ids are `<group>/<path>/<shape>`, `<path>` being what the layer runs
//! (`fourier_avx512`, `fast_avx2_fma`, `fast_portable`, `direct`, ...). Throughput
//! counts the direct path's multiply-adds for every path, so the Fourier path's
//! figure is effective MACs/s (it runs 6/16 to 12/64 of them). All layers use `Padding::Same`,
//! stride 1 and a non-zero bias; the output buffer is allocated once.
//!
//! Every benchmarked forward pass is checked before it is timed (lazily, on its first
//! run, so that a filtered-out shape costs nothing): the fast output against an f64
//! sum over the expanded bank on a sample of outputs, against the f64 oracle
//! (`gconv_std::reference`) on the first image when that is cheap, and, where the
//! direct path is benchmarked, against the direct output everywhere; the Fourier
//! output against the fast output everywhere, within the Fourier path's bound (see
//! `gconv_core::fourier`). An unchecked result is never timed.

use std::cell::OnceCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    measurement::WallTime,
};
use gconv_core::conv::expand::expand_filter_bank;
use gconv_core::fast::{FastPlan, pack_bank};
use gconv_core::{ConvGeometry, Domain};
use gconv_std::reference::{RefConvSpec, RefGroup, reference_conv};
use gconv_std::{AnyConv, C4, ConvPath, D4, Padding, Pair, Tensor, forward_into_threads};

/// One benchmarked layer and input.
#[derive(Clone, Copy, Debug)]
struct Spec {
    pair: Pair,
    c_in: usize,
    c_out: usize,
    k: usize,
    size: usize,
    batch: usize,
    /// 1: `forward_into` on the calling thread; more: `forward_into_threads`.
    threads: usize,
    /// Whether the direct path is benchmarked too (see [`families`]).
    direct: bool,
}

const fn spec(pair: Pair, c_in: usize, c_out: usize, k: usize, size: usize) -> Spec {
    Spec {
        pair,
        c_in,
        c_out,
        k,
        size,
        batch: 1,
        threads: 1,
        direct: true,
    }
}

impl Spec {
    const fn batch(self, batch: usize) -> Self {
        Spec { batch, ..self }
    }
    const fn threads(self, threads: usize) -> Self {
        Spec { threads, ..self }
    }
    const fn no_direct(self) -> Self {
        Spec {
            direct: false,
            ..self
        }
    }

    /// `c4-c4_10-10_k3_28x28`: pair, channels, kernel and input size.
    fn layer_name(&self) -> String {
        let pair = self.pair.name().to_ascii_lowercase().replace("->", "-");
        format!(
            "{pair}_{}-{}_k{}_{s}x{s}",
            self.c_in,
            self.c_out,
            self.k,
            s = self.size
        )
    }

    /// [`layer_name`](Self::layer_name) plus batch and threads.
    fn name(&self) -> String {
        format!("{}_b{}_t{}", self.layer_name(), self.batch, self.threads)
    }

    fn input_shape(&self) -> Vec<usize> {
        let planes = self.pair.from().planes();
        let mut shape = vec![self.batch, self.c_in, planes, self.size, self.size];
        if planes == 1 {
            shape.remove(2);
        }
        shape
    }

    /// The seeded layer with a non-zero bias, on its default (fast) path.
    fn layer(&self) -> AnyConv {
        let seeded = AnyConv::new(
            self.pair,
            self.c_in,
            self.c_out,
            self.k,
            1,
            Padding::Same,
            7,
        )
        .unwrap();
        let bias = (0..self.c_out).map(|o| 0.125 * o as f32 - 0.5).collect();
        AnyConv::from_weights(
            self.pair,
            seeded.weight().clone(),
            Some(bias),
            1,
            Padding::Same,
        )
        .unwrap()
    }
}

/// The shape families: (group name, shapes, big). A big family gets 10 flat samples
/// over 2 s, a small one 20 samples over 1 s.
///
/// The direct path is benchmarked wherever one iteration takes at most about 50 ms
/// (the slowest kept, b z2-c4 3->16 k5 224x224 and c b1, take about 30 ms). It is
/// skipped (`no_direct`) for a b32, c b32 and d: 0.36, 4.8 and 1.8 GMAC per pass,
/// about 60 ms, 1 s and 0.4 s per iteration at the direct path's 4 to 8 GMAC/s, to
/// keep the whole `cargo bench -p gconv-bench` within a few minutes. Their fast
/// output is still checked (sampled f64 sums, and the oracle on a b32's first image).
fn families() -> Vec<(&'static str, Vec<Spec>, bool)> {
    let a = spec(Pair::C4C4, 10, 10, 3, 28);
    let c = spec(Pair::D4D4, 16, 16, 3, 32);
    let d = spec(Pair::C4C4, 64, 64, 3, 56).no_direct();
    let mut lifting = Vec::new();
    for size in [32, 224] {
        for k in [3, 5] {
            for c_in in [3, 1] {
                lifting.push(spec(Pair::Z2C4, c_in, 16, k, size));
            }
        }
    }
    lifting.push(spec(Pair::Z2D4, 3, 16, 3, 32));
    vec![
        ("a_c4-c4_10", vec![a, a.batch(32).no_direct()], false),
        ("b_lifting", lifting, true),
        ("c_d4-d4_16", vec![c, c.batch(32).no_direct()], true),
        ("d_c4-c4_64", vec![d, d.threads(2)], true),
        ("e_c4-c4_4", vec![spec(Pair::C4C4, 4, 4, 3, 16)], false),
    ]
}

/// The shapes of the `expand` and `pack_input` groups: a, c and d at batch 1.
fn weight_side() -> Vec<(&'static str, Spec)> {
    families()
        .into_iter()
        .filter(|(family, _, _)| ["a_", "c_", "d_"].iter().any(|p| family.starts_with(p)))
        .map(|(family, specs, _)| (&family[..2], specs[0]))
        .collect()
}

/// Deterministic pseudo-random values in [-1, 1).
fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// The layer's expanded bank and packed bank.
fn banks(layer: &AnyConv) -> (&[f32], &[f32]) {
    match layer {
        AnyConv::Z2C4(l) => (l.bank(), l.packed_bank()),
        AnyConv::C4C4(l) => (l.bank(), l.packed_bank()),
        AnyConv::Z2D4(l) => (l.bank(), l.packed_bank()),
        AnyConv::D4D4(l) => (l.bank(), l.packed_bank()),
    }
}

/// The layer's cached Fourier weights.
fn fourier_weights(layer: &AnyConv) -> &[f32] {
    match layer {
        AnyConv::Z2C4(l) => l.fourier_weights(),
        AnyConv::C4C4(l) => l.fourier_weights(),
        AnyConv::Z2D4(l) => l.fourier_weights(),
        AnyConv::D4D4(l) => l.fourier_weights(),
    }
}

fn domain(pair: Pair) -> Domain {
    match pair {
        Pair::Z2C4 | Pair::Z2D4 => Domain::Z2,
        Pair::C4C4 | Pair::D4D4 => Domain::Group,
    }
}

fn expand(s: &Spec, w: &[f32], bank: &mut [f32]) {
    let d = domain(s.pair);
    match s.pair {
        Pair::Z2C4 | Pair::C4C4 => expand_filter_bank::<C4>(d, s.c_out, s.c_in, s.k, w, bank),
        Pair::Z2D4 | Pair::D4D4 => expand_filter_bank::<D4>(d, s.c_out, s.c_in, s.k, w, bank),
    }
    .expect("bench expand");
}

/// A layer, its input and everything its forward benchmarks need.
struct Case {
    spec: Spec,
    fast: AnyConv,
    fourier: AnyConv,
    direct: AnyConv,
    x: Tensor,
    geo: ConvGeometry,
    checked: OnceCell<()>,
}

impl Case {
    fn new(spec: Spec) -> Self {
        let mut fast = spec.layer();
        fast.set_path(ConvPath::Fast);
        let mut direct = fast.clone();
        direct.set_path(ConvPath::Direct);
        let mut fourier = fast.clone();
        fourier.set_path(ConvPath::Fourier);
        let shape = spec.input_shape();
        let geo = fast.geometry(&shape).unwrap();
        let x = Tensor::new(shape, data(geo.input_len(), 1)).unwrap();
        Case {
            spec,
            fast,
            fourier,
            direct,
            x,
            geo,
            checked: OnceCell::new(),
        }
    }

    /// The benchmarked forward pass of `layer`.
    fn run(&self, layer: &AnyConv, out: &mut [f32]) {
        if self.spec.threads > 1 {
            forward_into_threads(layer, &self.x, out, self.spec.threads).expect("bench forward");
        } else {
            layer.forward_into(&self.x, out).expect("bench forward");
        }
    }

    /// Checks every path's output once (see the module docs); panics on a wrong one.
    fn check(&self) {
        self.checked.get_or_init(|| {
            let name = self.spec.name();
            let mut fast = vec![f32::NAN; self.geo.output_len()];
            self.run(&self.fast, &mut fast);
            self.check_sampled(&fast, &name);
            self.check_reference(&fast, &name);
            if self.spec.direct {
                self.check_direct(&fast, &name);
            }
            self.check_fourier(&fast, &name);
        });
    }

    /// Fourier output against the (checked) fast output everywhere: within the
    /// Fourier path's bound `2 (T_F + 3|G| + 2) eps |G| sum |x w|` (`T_F <= 2 C_in
    /// K*K`) plus the fast path's own, `sum |x w|` from the magnitude layer.
    fn check_fourier(&self, fast: &[f32], name: &str) {
        let mut fourier = vec![f32::NAN; fast.len()];
        self.run(&self.fourier, &mut fourier);
        let mag = self
            .fast
            .magnitude_layer()
            .forward(&self.x.map(f32::abs))
            .unwrap();
        let g = &self.geo;
        let order = g.nto() as f64;
        let t_f = (2 * g.in_channels() * g.kernel() * g.kernel()) as f64;
        let eps = f64::from(f32::EPSILON) * 2.0 * (t_f + 3.0 * order + 2.0) * order + self.eps();
        for (i, ((&f, &q), &m)) in fast.iter().zip(&fourier).zip(mag.data()).enumerate() {
            assert!(
                f64::from(f - q).abs() <= eps * f64::from(m) + 1e-30,
                "{name}: output {i}: fast {f}, fourier {q}"
            );
        }
    }

    /// `(terms + 2) * eps`: the relative f32 rounding bound of one output.
    fn eps(&self) -> f64 {
        f64::from(f32::EPSILON) * (self.geo.terms_per_output() as f64 + 2.0)
    }

    /// Fast output against an f64 planar cross-correlation with the expanded bank
    /// (what both paths compute, see `gconv_core::fast`) on about 300 outputs spread
    /// over images, planes and positions, the four corners of the first and last
    /// plane included.
    fn check_sampled(&self, y: &[f32], name: &str) {
        let g = &self.geo;
        let (bank, _) = banks(&self.fast);
        let bias = self.fast.bias().unwrap();
        let x = self.x.data();
        let (p_in, p_out) = (g.in_channels() * g.nti(), g.out_channels() * g.nto());
        let (h, w, k, s) = (g.height(), g.width(), g.kernel(), g.stride());
        let (oh, ow) = (g.out_height(), g.out_width());
        let [top, _, left, _] = g.padding();
        let plane = oh * ow;
        let mut samples: Vec<usize> = (0..256).map(|i| i * (y.len() - 1) / 255).collect();
        for p in [0, y.len() / plane - 1] {
            for (r, c) in [(0, 0), (0, ow - 1), (oh - 1, 0), (oh - 1, ow - 1)] {
                samples.push(p * plane + r * ow + c);
            }
        }
        for i in samples {
            let (n, p, r, c) = (i / plane / p_out, i / plane % p_out, i % plane / ow, i % ow);
            let (mut v, mut a) = (f64::from(bias[p / g.nto()]), bias[p / g.nto()].abs() as f64);
            for ci in 0..p_in {
                for (dy, dx) in (0..k).flat_map(|dy| (0..k).map(move |dx| (dy, dx))) {
                    let (iy, ix) = (
                        (r * s + dy).wrapping_sub(top),
                        (c * s + dx).wrapping_sub(left),
                    );
                    if iy < h && ix < w {
                        let t = f64::from(bank[((p * p_in + ci) * k + dy) * k + dx])
                            * f64::from(x[((n * p_in + ci) * h + iy) * w + ix]);
                        v += t;
                        a += t.abs();
                    }
                }
            }
            let err = (f64::from(y[i]) - v).abs();
            assert!(
                err <= self.eps() * a + 1e-30,
                "{name}: fast output {i} is {}, expected {v}",
                y[i]
            );
        }
    }

    /// Fast output of the first image against the f64 oracle, from the raw weights,
    /// when that image costs at most 40 M multiply-adds (the oracle is slow).
    fn check_reference(&self, y: &[f32], name: &str) {
        let g = &self.geo;
        if g.macs() / g.batch() > 40_000_000 {
            return;
        }
        let s = &self.spec;
        let spec = RefConvSpec {
            group: match s.pair.to().planes() {
                8 => RefGroup::D4,
                _ => RefGroup::C4,
            },
            lifting: domain(s.pair) == Domain::Z2,
            batch: 1,
            in_channels: s.c_in,
            out_channels: s.c_out,
            height: s.size,
            width: s.size,
            kernel: s.k,
            stride: 1,
            pad: g.padding(),
        };
        let image = &self.x.data()[..g.input_len() / g.batch()];
        let bias = self.fast.bias();
        let r = reference_conv(&spec, image, self.fast.weight().data(), bias);
        let bias = bias.unwrap();
        let per_channel = g.nto() * g.out_height() * g.out_width();
        for (i, (&y, (&v, &a))) in y.iter().zip(r.value.iter().zip(&r.abs_sum)).enumerate() {
            let a = a + f64::from(bias[i / per_channel].abs());
            assert!(
                (f64::from(y) - v).abs() <= self.eps() * a + 1e-30,
                "{name}: fast output {i} is {y}, the oracle says {v}"
            );
        }
    }

    /// Direct output against the (checked) fast output everywhere: both are f32 sums
    /// of the same terms, each within `(terms + 2) * eps * sum |x w|`, that sum
    /// computed by the magnitude layer on `|x|`.
    fn check_direct(&self, fast: &[f32], name: &str) {
        let mut direct = vec![f32::NAN; fast.len()];
        self.run(&self.direct, &mut direct);
        let mag = self
            .fast
            .magnitude_layer()
            .forward(&self.x.map(f32::abs))
            .unwrap();
        let eps = 2.0 * self.eps() * 1.01;
        for (i, ((&f, &d), &m)) in fast.iter().zip(&direct).zip(mag.data()).enumerate() {
            assert!(
                f64::from(f - d).abs() <= eps * f64::from(m) + 1e-30,
                "{name}: output {i}: fast {f}, direct {d}"
            );
        }
    }
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>, big: bool) {
    g.warm_up_time(Duration::from_millis(500));
    if big {
        g.sample_size(10)
            .measurement_time(Duration::from_secs(2))
            .sampling_mode(SamplingMode::Flat);
    } else {
        g.sample_size(20).measurement_time(Duration::from_secs(1));
    }
}

/// Fast and (where benchmarked) direct forward passes of one family.
fn bench_family(crit: &mut Criterion, family: &str, specs: &[Spec], big: bool) {
    let mut g = crit.benchmark_group(family);
    configure(&mut g, big);
    for &spec in specs {
        let case = Case::new(spec);
        let name = spec.name();
        g.throughput(Throughput::Elements(case.geo.macs() as u64));
        let mut out = vec![0.0; case.geo.output_len()];
        let shape = case.x.shape().to_vec();
        let mut layers = vec![&case.fourier, &case.fast];
        if spec.direct {
            layers.push(&case.direct);
        }
        for layer in layers {
            let path = layer.path_name(&shape).unwrap();
            g.bench_function(BenchmarkId::new(path, &name), |b| {
                case.check();
                b.iter(|| case.run(black_box(layer), black_box(&mut out)))
            });
        }
    }
    g.finish();
}

fn forward(crit: &mut Criterion) {
    for (family, specs, big) in families() {
        bench_family(crit, family, &specs, big);
    }
}

/// Weight-side work, once per weight change: expanding the raw weights into the bank,
/// and packing the bank for the fast path. Throughput: bank elements.
fn weights(crit: &mut Criterion) {
    let mut g = crit.benchmark_group("expand");
    configure(&mut g, false);
    for (family, spec) in weight_side() {
        let layer = spec.layer();
        let (want_bank, want_packed) = banks(&layer);
        let w = layer.weight().data();
        let geo = layer.geometry(&spec.input_shape()).unwrap();
        let id = format!("{family}{}", spec.layer_name());
        g.throughput(Throughput::Elements(geo.bank_len() as u64));

        let mut bank = vec![f32::NAN; geo.bank_len()];
        expand(&spec, w, &mut bank);
        assert_eq!(bank, want_bank, "{id}: bank");
        g.bench_function(BenchmarkId::new("expand_filter_bank", &id), |b| {
            b.iter(|| expand(&spec, black_box(w), black_box(&mut bank)))
        });

        let mut packed = vec![f32::NAN; geo.bank_len()];
        pack_bank(geo.bank_shape(), &bank, &mut packed).unwrap();
        assert_eq!(packed, want_packed, "{id}: packed bank");
        g.bench_function(BenchmarkId::new("pack_bank", &id), |b| {
            b.iter(|| pack_bank(geo.bank_shape(), black_box(&bank), black_box(&mut packed)))
        });

        // The Fourier path's weight transform (from the raw weights).
        let plan = layer.fourier_plan(&spec.input_shape()).unwrap();
        let mut fourier = vec![f32::NAN; plan.packed_weights_len()];
        plan.pack_weights(w, &mut fourier).unwrap();
        assert_eq!(fourier, fourier_weights(&layer), "{id}: Fourier weights");
        g.bench_function(BenchmarkId::new("fourier_pack_weights", &id), |b| {
            b.iter(|| plan.pack_weights(black_box(w), black_box(&mut fourier)))
        });
    }
    g.finish();

    // Input-side work of the fast path, once per image. Throughput: input elements.
    let mut g = crit.benchmark_group("pack_input");
    configure(&mut g, false);
    for (family, spec) in weight_side() {
        let layer = spec.layer();
        let plan: FastPlan = layer.fast_plan(&spec.input_shape()).unwrap();
        let image = data(plan.image_input_len(), 1);
        let mut packed = vec![f32::NAN; plan.packed_input_len()];
        plan.pack_input(&image, &mut packed).unwrap();
        assert!(
            packed.iter().all(|v| v.is_finite()),
            "pack_input wrote it all"
        );
        g.throughput(Throughput::Elements(plan.image_input_len() as u64));
        let id = format!("{family}{}", spec.layer_name());
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| plan.pack_input(black_box(&image), black_box(&mut packed)))
        });
    }
    g.finish();
}

/// Printed once to stderr before the benchmarks: the micro-kernel the fast path
/// detected, and for every shape the scratch each path keeps.
fn print_header() {
    let kernel = gconv_std::fast::kernel().expect("GCONV_KERNEL");
    eprintln!(
        "gconv-bench: fast-path kernel `{}` (AVX2+FMA detected: {}); scratch per shape \
         (fast: one packed input image per thread that packs, Fourier: one padded image \
         and one pixel block's operands per thread, direct: none)",
        kernel.name(),
        gconv_std::fast::avx2_fma_detected()
    );
    for (family, specs, _) in families() {
        for spec in specs {
            let layer = spec.layer();
            let shape = spec.input_shape();
            let plan = layer.fast_plan(&shape).unwrap();
            let geo = plan.geometry();
            let fourier = layer.fourier_plan(&shape).unwrap();
            eprintln!(
                "  {:<42} {:>7.1} MMAC  fast: {:>8} B  fourier: {:>8} B  direct: 0 B  \
                 (auto: {})",
                format!("{family}/{}", spec.name()),
                geo.macs() as f64 * 1e-6,
                gconv_std::fast::scratch_bytes(&plan),
                gconv_std::fourier::scratch_bytes(&fourier),
                layer.path_name(&shape).unwrap(),
            );
        }
    }
}

criterion_group!(forward_benches, forward);
criterion_group!(weight_benches, weights);

// `criterion_main!` with a header first.
fn main() {
    print_header();
    forward_benches();
    weight_benches();
    Criterion::default().configure_from_args().final_summary();
}

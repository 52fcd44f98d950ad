//! `gconv bench`: time one layer's forward pass; one machine-readable line on stdout.
//!
//! ```text
//! gconv bench --from z2|c4|d4 --to c4|d4 --cin C --cout C -k K --size H [--batch B]
//!             [--threads T] [--iters N] [--stride S] [--padding valid|same|P|T,B,L,R]
//!             [--path auto|direct|blocked|fast|fourier] [--seed S] [--dtype f32|int8]
//! ```
//!
//! The layer (seeded He-initialised weights), the seeded random input and the output
//! buffer are made once (the output starting on a 64-byte boundary, as PyTorch's CPU
//! allocator places its tensors: with rows of whole vectors, a misaligned output
//! splits every vector store over two cache lines, 5-8% on the 224x224 lifting
//! layers); the forward pass then runs into that buffer, first as a
//! warm-up (at least 2 runs and at least 100 ms, at most 1000 runs), then `N` timed
//! runs. The result line on stdout, a stable format for scripts:
//!
//! ```text
//! median_ms=<float> min_ms=<float> gflops=<float> threads=<int> path=<name> expand_ms=<float> scratch_bytes=<int>
//! ```
//!
//! `median_ms` and `min_ms` are per forward pass (6 decimals, nanoseconds);
//! `gflops = 2 * MACs / median` with the MACs of the layer's geometry (padding zeros
//! included), 4 decimals; `threads` is the number of threads that had work (at most
//! `T`; see [`gconv_std::parallel`]); `path` is what ran: `direct` (the
//! expanded-bank direct correlation), `blocked` (the register-blocked path from the
//! raw weights, written for targets without x86 SIMD), `fast_<kernel>` (the register-tiled fast
//! path with micro-kernel `avx512`, `avx2_fma` or `portable`, detected at run time)
//! or `fourier_<kernel>` (the group-Fourier path on that kernel).
//! `expand_ms` is the weight-side work done once per weight change, not per call:
//! expanding the filter bank, packing it for the fast path and transforming the
//! weights for the Fourier path (best of 3). `scratch_bytes` is the scratch the path
//! keeps while running: one packed input image per thread for the fast path, one
//! padded image and one pixel block's operands per thread for the Fourier path, one
//! block of packed filters per thread for the blocked path, 0 for the direct path. Everything else goes to stderr.
//!
//! `--dtype int8` times the int8 convolution instead ([`gconv_core::quant`], TFLite
//! arithmetic): seeded int8 weights in `[-127, 127]` with one scale per output
//! G-channel, a seeded int8 input with zero point -3, an int32 bias, requantized to an
//! int8 output with zero point 5 and a fused ReLU. `--path auto` and `fast` run the
//! int8 fast path ([`gconv_core::quant::fast::QFastPlan`]; `auto` takes the direct
//! path for kernels larger than its `MAX_KERNEL`), `direct` the direct int8 kernel.
//! The line has the same keys plus `dtype=int8`: `gflops` counts every int8
//! multiply-add of the geometry as 2 operations (so it is GOP/s, comparable with the
//! f32 figure), `path` is `fast_<int8 kernel>` (`avx512_vnni`, `avx_vnni`,
//! `avx2_madd` or `portable`, detected at run time: `GCONV_INT8_KERNEL` picks one,
//! `GCONV_KERNEL=avx2_fma` caps the choice at `avx2_madd`, see
//! [`gconv_std::fast::int8_kernel`]) or `direct`, `expand_ms` the weight preparation
//! (expansion, packing, weight sums; best of 3) and `scratch_bytes` one packed input
//! image per thread (int32 units). Threads split the batch by images when it has at
//! least as many images as threads, else each image's output-plane tiles, on scoped
//! threads started per call (their start-up is part of the time).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use gconv_std::gconv_core::quant::{self, Multiplier, Requant, conv, fast::QFastPlan};
use gconv_std::gconv_core::{ConvGeometry, ConvShape, Domain};
use gconv_std::parallel::forward_into_threads;
use gconv_std::{AnyConv, C4, ConvPath, D4, Pair, Space, Tensor};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::args::{StridePadding, parse_positive, parse_space};

/// Warm-up: at least this many runs ...
const WARMUP_MIN_RUNS: usize = 2;
/// ... and at least this long, ...
const WARMUP_MIN_TIME: Duration = Duration::from_millis(100);
/// ... but never more than this many runs.
const WARMUP_MAX_RUNS: usize = 1000;

/// Arguments of `gconv bench`.
///
/// Values are taken as text and converted in `run`, so that a bad value gives a
/// one-line error (clap's own value errors span several lines).
#[derive(clap::Args)]
pub struct Args {
    /// Input space: z2 (plain images), c4 (p4) or d4 (p4m).
    #[arg(long, value_name = "z2|c4|d4")]
    from: String,
    /// Output group: c4 (p4) or d4 (p4m).
    #[arg(long, value_name = "c4|d4")]
    to: String,
    /// Input G-channels.
    #[arg(long, value_name = "C", allow_hyphen_values = true)]
    cin: String,
    /// Output G-channels.
    #[arg(long, value_name = "C", allow_hyphen_values = true)]
    cout: String,
    /// Kernel size K (K x K filters).
    #[arg(short = 'k', value_name = "K", allow_hyphen_values = true)]
    kernel: String,
    /// Input height and width.
    #[arg(long, value_name = "H", allow_hyphen_values = true)]
    size: String,
    /// Batch size.
    #[arg(
        long,
        value_name = "B",
        default_value = "1",
        allow_hyphen_values = true
    )]
    batch: String,
    /// Threads to split the forward pass over (by images, then by output G-channels).
    #[arg(
        long,
        value_name = "T",
        default_value = "1",
        allow_hyphen_values = true
    )]
    threads: String,
    /// Timed runs (0 is taken as 1).
    #[arg(
        long,
        value_name = "N",
        default_value = "20",
        allow_hyphen_values = true
    )]
    iters: String,
    /// Stride and padding.
    #[command(flatten)]
    conv: StridePadding,
    /// Forward path: auto (the core plan's choice: blocked with the portable kernel off
    /// x86, else the Fourier path where its cost model says it is faster, else fast
    /// wherever it applies), direct, blocked, fast or fourier.
    #[arg(
        long,
        value_name = "auto|direct|blocked|fast|fourier",
        default_value = "auto"
    )]
    path: String,
    /// Seed of the random weights and input.
    #[arg(
        long,
        value_name = "S",
        default_value = "2016",
        allow_hyphen_values = true
    )]
    seed: String,
    /// Data type: f32, or int8 (TFLite int8 arithmetic; see the module docs).
    #[arg(long, value_name = "f32|int8", default_value = "f32")]
    dtype: String,
}

/// Runs `gconv bench`.
pub fn run(args: Args) -> crate::Outcome {
    let number = |flag: &str, value: &str| -> Result<usize, String> {
        parse_positive(value).map_err(|e| format!("{flag}: {e}"))
    };
    let from = parse_space(&args.from).map_err(|e| format!("--from: {e}"))?;
    let to = parse_space(&args.to).map_err(|e| format!("--to: {e}"))?;
    let pair = Pair::new(from, to).map_err(|e| e.to_string())?;
    let (cin, cout) = (number("--cin", &args.cin)?, number("--cout", &args.cout)?);
    let kernel = number("-k", &args.kernel)?;
    let size = number("--size", &args.size)?;
    let batch = number("--batch", &args.batch)?;
    let threads = number("--threads", &args.threads)?;
    let (stride, padding) = args.conv.parse()?;
    let iters = match args.iters.trim().parse::<usize>() {
        Ok(n) => n.max(1),
        Err(_) => return Err(format!("--iters: {:?} is not an integer", args.iters)),
    };
    let seed = args
        .seed
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("--seed: {:?} is not an integer", args.seed))?;

    let int8 = match args.dtype.trim() {
        "f32" => false,
        "int8" => true,
        other => return Err(format!("--dtype: {other:?} is not f32 or int8")),
    };

    // Validate the whole geometry (kernel fits, sizes fit in memory addresses) and
    // make sure the weights can be allocated before the layer is built.
    let conv_shape = ConvShape {
        batch,
        in_channels: cin,
        out_channels: cout,
        height: size,
        width: size,
        kernel,
        stride,
        padding,
    };
    let domain = match pair.from() {
        Space::Z2 => Domain::Z2,
        _ => Domain::Group,
    };
    let planned = match pair.to() {
        Space::D4 => conv_shape.geometry::<D4>(domain),
        _ => conv_shape.geometry::<C4>(domain),
    }
    .map_err(|e| format!("{} conv: {e}", pair.name()))?;
    if int8 {
        let bench = Int8Bench {
            pair,
            geometry: planned,
            threads,
            iters,
            seed,
            path: args.path.trim().to_string(),
            padding: args.conv.padding.trim().to_string(),
        };
        return bench.run();
    }
    drop(allocate(
        planned.weight_len().saturating_add(planned.bank_len()),
        "weights and expanded filter bank",
    )?);
    let path = ConvPath::parse(args.path.trim()).map_err(|e| format!("--path: {e}"))?;
    let mut layer =
        AnyConv::new(pair, cin, cout, kernel, stride, padding, seed).map_err(|e| e.to_string())?;
    layer.set_path(path);
    let mut shape = vec![batch, cin, pair.from().planes(), size, size];
    if pair.from() == Space::Z2 {
        shape.remove(2);
    }
    let path_name = layer.path_name(&shape).map_err(|e| e.to_string())?;
    let expand_ms = time_weight_change(&layer, pair)?;
    let geometry = layer.geometry(&shape).map_err(|e| e.to_string())?;
    let input_len = geometry.input_len();
    let output_len = geometry.output_len();
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
    let mut input = allocate(input_len, "input")?;
    input.fill_with(|| rng.random_range(-1.0..1.0));
    let x = Tensor::new(shape, input).map_err(|e| e.to_string())?;
    let mut out_buffer = Aligned64::new(output_len, "output")?;
    let out = out_buffer.as_mut_slice();

    eprintln!(
        "gconv bench: {} conv, input {:?} -> output {:?}, K = {kernel}, stride {stride}, \
         padding {}, {} MACs per forward, path {path_name}",
        pair.name(),
        x.shape(),
        geometry.output_shape(),
        args.conv.padding.trim(),
        geometry.macs()
    );

    // Warm-up; the first run also tells how many threads run.
    let start = Instant::now();
    let mut used = 0;
    let mut warmup = 0;
    while warmup < WARMUP_MIN_RUNS
        || (start.elapsed() < WARMUP_MIN_TIME && warmup < WARMUP_MAX_RUNS)
    {
        used = forward_into_threads(&layer, &x, out, threads).map_err(|e| e.to_string())?;
        black_box(&mut *out);
        warmup += 1;
    }
    eprintln!(
        "warm-up: {warmup} runs in {:.1} ms; timing {iters} runs on {used} thread{}{}",
        start.elapsed().as_secs_f64() * 1e3,
        if used == 1 { "" } else { "s" },
        if used < threads {
            format!(" ({threads} asked for; the work splits into only {used} pieces)")
        } else {
            String::new()
        }
    );

    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        forward_into_threads(&layer, black_box(&x), out, threads).map_err(|e| e.to_string())?;
        black_box(&mut *out);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = median_of_sorted(&times);
    let min = times[0];
    // Strictly positive even if the clock did not tick (FLOPs / 1 ns at most).
    let gflops = 2.0 * geometry.macs() as f64 / median.max(1e-9) / 1e9;
    let scratch_bytes = if path_name == "direct" {
        0
    } else if path_name == "blocked" {
        // One block of packed filters per thread that had work.
        let per_thread = gconv_std::gconv_core::blocked::scratch_len_for(&geometry);
        used.max(1) * per_thread * size_of::<f32>()
    } else if path_name.starts_with("fourier") {
        // One padded image and one pixel block's operands per thread, whether the
        // threads share out images or channel groups (see `gconv_std::fourier`).
        let plan = layer.fourier_plan(x.shape()).map_err(|e| e.to_string())?;
        used.max(1) * gconv_std::fourier::scratch_bytes(&plan)
    } else {
        // One packed image per thread when whole images are shared out, else one
        // packed image shared by the threads (see `gconv_std::fast`).
        let plan = layer.fast_plan(x.shape()).map_err(|e| e.to_string())?;
        let buffers = if batch >= used { used } else { 1 };
        buffers * gconv_std::fast::scratch_bytes(&plan)
    };
    println!(
        "median_ms={:.6} min_ms={:.6} gflops={gflops:.4} threads={used} path={path_name} \
         expand_ms={expand_ms:.6} scratch_bytes={scratch_bytes}",
        median * 1e3,
        min * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

/// Best of 3 times (ms) of rebuilding the layer from its weights: expanding the
/// filter bank and packing it, the work a weight change costs.
fn time_weight_change(layer: &AnyConv, pair: Pair) -> Result<f64, String> {
    let (weight, bias) = (layer.weight().clone(), layer.bias().map(<[f32]>::to_vec));
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let (w, b) = (weight.clone(), bias.clone());
        let t = Instant::now();
        let rebuilt = AnyConv::from_weights(pair, w, b, layer.stride(), layer.padding())
            .map_err(|e| e.to_string())?;
        best = best.min(t.elapsed().as_secs_f64());
        black_box(rebuilt);
    }
    Ok(best * 1e3)
}

/// A zeroed buffer of `len` f32, or a one-line error when it cannot be allocated
/// (instead of the abort of a failed `vec!`).
fn allocate(len: usize, what: &str) -> Result<Vec<f32>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| format!("the {what} ({len} values) is too large to allocate"))?;
    v.resize(len, 0.0);
    Ok(v)
}

/// A zeroed f32 buffer whose slice starts on a 64-byte boundary (a cache line, and
/// one AVX-512 vector), like the tensors of PyTorch's CPU allocator.
struct Aligned64 {
    store: Vec<f32>,
    offset: usize,
    len: usize,
}

impl Aligned64 {
    fn new(len: usize, what: &str) -> Result<Self, String> {
        const LANES: usize = 64 / size_of::<f32>();
        let store = allocate(len.saturating_add(LANES - 1), what)?;
        // `Vec<f32>` is 4-byte aligned: at most 15 f32 to the next 64-byte boundary.
        let offset = (store.as_ptr() as usize).wrapping_neg() % 64 / size_of::<f32>();
        Ok(Aligned64 { store, offset, len })
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.store[self.offset..self.offset + self.len]
    }
}

/// The median of a sorted, non-empty slice (mean of the two middle values for an
/// even length).
fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `gconv bench --dtype int8`: one int8 layer, timed as the f32 one (see the module
/// docs).
struct Int8Bench {
    pair: Pair,
    geometry: ConvGeometry,
    threads: usize,
    iters: usize,
    seed: u64,
    path: String,
    padding: String,
}

/// The int8 layer's operands, seeded.
struct Int8Layer {
    weight: Vec<i8>,
    bias: Vec<i32>,
    multipliers: Vec<Multiplier>,
    input: Vec<i8>,
}

/// Input and output zero points of the benchmarked int8 layer.
const INT8_ZERO_POINTS: (i32, i32) = (-3, 5);

impl Int8Bench {
    fn layer(&self) -> Result<Int8Layer, String> {
        let g = &self.geometry;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let weight: Vec<i8> = (0..g.weight_len())
            .map(|_| rng.random_range(-127..=127))
            .collect();
        let bias = (0..g.out_channels())
            .map(|_| rng.random_range(-5000..=5000))
            .collect();
        // Scales so that the outputs spread over the int8 range: input 1/64, weights
        // about 1/(127 sqrt(terms)) per channel, output 1/16.
        let terms = g.terms_per_output() as f32;
        let multipliers = (0..g.out_channels())
            .map(|o| {
                let w_scale = (1.0 + 0.1 * (o % 7) as f32) / (127.0 * terms.sqrt());
                Multiplier::for_product(1.0 / 64.0, w_scale, 1.0 / 16.0)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_add(1));
        let mut input = Vec::new();
        input.try_reserve_exact(g.input_len()).map_err(|_| {
            format!(
                "the input ({} values) is too large to allocate",
                g.input_len()
            )
        })?;
        input.extend((0..g.input_len()).map(|_| rng.random_range(-128..=127i8)));
        Ok(Int8Layer {
            weight,
            bias,
            multipliers,
            input,
        })
    }

    fn run(&self) -> crate::Outcome {
        let g = self.geometry;
        let layer = self.layer()?;
        let requant = Requant {
            input_zero_point: INT8_ZERO_POINTS.0,
            output_zero_point: INT8_ZERO_POINTS.1,
            multipliers: &layer.multipliers,
            relu: true,
        };
        let fast = match self.path.as_str() {
            "auto" => g.kernel() <= quant::fast::MAX_KERNEL,
            "fast" => true,
            "direct" => false,
            other => return Err(format!("--path {other}: int8 takes auto, fast or direct")),
        };
        let mut out_buffer = vec![0i8; g.output_len().saturating_add(63)];
        // Start the output on a 64-byte boundary, as for f32.
        let offset = (out_buffer.as_ptr() as usize).wrapping_neg() % 64;
        let output = &mut out_buffer[offset..offset + g.output_len()];
        let (path_name, expand_ms, scratch_units, timing) = if fast {
            let kernel = gconv_std::fast::int8_kernel().map_err(|e| e.to_string())?;
            let plan = QFastPlan::from_geometry(&g, kernel)
                .map_err(|e| format!("{} int8 conv: {e}", self.pair.name()))?;
            let mut prepared = vec![0i32; plan.prepared_weights_len()];
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t = Instant::now();
                plan.prepare_weights(&layer.weight, &mut prepared)
                    .map_err(|e| e.to_string())?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            let pieces = int8_pieces(&plan, self.threads);
            let mut scratch = vec![vec![0i32; plan.scratch_len()]; pieces];
            let timing = self.time(output, |out| {
                int8_fast_threads(
                    &plan,
                    &requant,
                    &layer.input,
                    &prepared,
                    &layer.bias,
                    out,
                    &mut scratch,
                )
            })?;
            let name = format!("fast_{}", kernel.name());
            // One packed image per thread when whole images are shared out, else one
            // packed image shared by the threads.
            let buffers = if g.batch() >= timing.used {
                timing.used
            } else {
                1
            };
            (name, best * 1e3, plan.scratch_len() * buffers, timing)
        } else {
            let len = conv::scratch_len_for(&g).map_err(|e| e.to_string())?;
            let mut scratch = vec![0i32; len];
            let timing = self.time(output, |out| {
                conv::forward_geometry(
                    &g,
                    &requant,
                    &layer.input,
                    &layer.weight,
                    Some(&layer.bias),
                    out,
                    &mut scratch,
                )
                .map(|()| 1)
                .map_err(|e| e.to_string())
            })?;
            ("direct".to_string(), 0.0, len, timing)
        };
        let gflops = 2.0 * g.macs() as f64 / timing.median.max(1e-9) / 1e9;
        println!(
            "median_ms={:.6} min_ms={:.6} gflops={gflops:.4} threads={} path={path_name} \
             expand_ms={expand_ms:.6} scratch_bytes={} dtype=int8",
            timing.median * 1e3,
            timing.min * 1e3,
            timing.used,
            scratch_units * size_of::<i32>()
        );
        Ok(ExitCode::SUCCESS)
    }

    /// Warm-up and timed runs of `forward` (which returns the threads that had work),
    /// as for f32.
    fn time(
        &self,
        out: &mut [i8],
        mut forward: impl FnMut(&mut [i8]) -> Result<usize, String>,
    ) -> Result<Timing, String> {
        eprintln!(
            "gconv bench: {} int8 conv, input {:?} -> output {:?}, K = {}, stride {}, \
             padding {}, {} MACs per forward",
            self.pair.name(),
            self.geometry.input_shape(),
            self.geometry.output_shape(),
            self.geometry.kernel(),
            self.geometry.stride(),
            self.padding,
            self.geometry.macs()
        );
        let start = Instant::now();
        let (mut used, mut warmup) = (1, 0);
        while warmup < WARMUP_MIN_RUNS
            || (start.elapsed() < WARMUP_MIN_TIME && warmup < WARMUP_MAX_RUNS)
        {
            used = forward(out)?;
            black_box(&mut *out);
            warmup += 1;
        }
        eprintln!(
            "warm-up: {warmup} runs in {:.1} ms; timing {} runs on {used} thread{}",
            start.elapsed().as_secs_f64() * 1e3,
            self.iters,
            if used == 1 { "" } else { "s" },
        );
        let mut times = Vec::with_capacity(self.iters);
        for _ in 0..self.iters {
            let t = Instant::now();
            forward(black_box(&mut *out))?;
            black_box(&mut *out);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(Timing {
            median: median_of_sorted(&times),
            min: times[0],
            used,
        })
    }
}

/// Median and minimum seconds per forward pass, and the threads that had work.
struct Timing {
    median: f64,
    min: f64,
    used: usize,
}

/// How many pieces `threads` threads split an int8 forward pass into: whole images
/// when the batch has at least `threads` of them, else ranges of output-plane tiles
/// of each image.
fn int8_pieces(plan: &QFastPlan, threads: usize) -> usize {
    let threads = threads.max(1);
    let batch = plan.geometry().batch();
    if batch >= threads {
        batch.div_ceil(batch.div_ceil(threads)).max(1)
    } else {
        let tiles = plan.plane_tiles().max(1);
        tiles.div_ceil(tiles.div_ceil(threads))
    }
}

/// One int8 fast forward pass split into `scratch.len()` pieces (see
/// [`int8_pieces`]), piece 0 on the calling thread, the others on scoped threads,
/// each with its own scratch (in the tile split, the image is packed once into
/// `scratch[0]` and shared). Returns the number of pieces. The output is bitwise
/// the same for every split: each tile is computed by the same code from the same
/// packed input.
fn int8_fast_threads(
    plan: &QFastPlan,
    requant: &Requant<'_>,
    input: &[i8],
    prepared: &[i32],
    bias: &[i32],
    output: &mut [i8],
    scratch: &mut [Vec<i32>],
) -> Result<usize, String> {
    use gconv_std::fast::{int8_compute, int8_forward_images};
    let pieces = scratch.len().max(1);
    let batch = plan.geometry().batch();
    let (in_len, out_len) = (plan.image_input_len(), plan.image_output_len());
    let bias = Some(bias);
    let err = |e: gconv_std::gconv_core::Error| e.to_string();
    if pieces == 1 || batch >= pieces {
        let per = batch.div_ceil(pieces).max(1);
        std::thread::scope(|s| {
            let mut work = input
                .chunks(per * in_len)
                .zip(output.chunks_mut(per * out_len))
                .zip(scratch.iter_mut());
            let first = work.next();
            let handles: Vec<_> = work
                .map(|((x, y), sc)| {
                    s.spawn(move || int8_forward_images(plan, requant, x, prepared, bias, y, sc))
                })
                .collect();
            if let Some(((x, y), sc)) = first {
                int8_forward_images(plan, requant, x, prepared, bias, y, sc).map_err(err)?;
            }
            for h in handles {
                h.join()
                    .map_err(|_| "a thread panicked".to_string())?
                    .map_err(err)?;
            }
            Ok(pieces.min(batch.max(1)))
        })
    } else {
        let tiles = plan.plane_tiles();
        let per = tiles.div_ceil(pieces).max(1);
        let tile_len = out_len / tiles.max(1);
        let (packed, _) = scratch.split_first_mut().ok_or("no scratch")?;
        for (image, out) in input
            .chunks_exact(in_len)
            .zip(output.chunks_exact_mut(out_len))
        {
            plan.pack_input(requant.input_zero_point, image, packed)
                .map_err(err)?;
            let packed = &*packed;
            std::thread::scope(|s| {
                let mut parts = out.chunks_mut(per * tile_len).enumerate();
                let first = parts.next();
                let range = |i: usize, part: &[i8]| i * per..i * per + part.len() / tile_len;
                let handles: Vec<_> = parts
                    .map(|(i, part)| {
                        let r = range(i, part);
                        s.spawn(move || {
                            int8_compute(plan, requant, packed, prepared, bias, part, r)
                        })
                    })
                    .collect();
                if let Some((i, part)) = first {
                    let r = range(i, part);
                    int8_compute(plan, requant, packed, prepared, bias, part, r).map_err(err)?;
                }
                for h in handles {
                    h.join()
                        .map_err(|_| "a thread panicked".to_string())?
                        .map_err(err)?;
                }
                Ok::<(), String>(())
            })?;
        }
        Ok(tiles.div_ceil(per))
    }
}

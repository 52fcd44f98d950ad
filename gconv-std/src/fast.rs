//! The fast path on the host: run-time choice of the micro-kernel, per-thread scratch
//! reused across calls, and the multi-threaded split.
//!
//! [`gconv_core::fast`] computes with whichever micro-kernel it is given; this module
//! picks the best one the CPU has, once ([`kernel`]), and owns the only `unsafe` of
//! gconv-std: the calls of the AVX-512 and AVX2+FMA kernels (and of their FMA-peak
//! loops, [`fma_peak_gflops`]) after the CPU was seen to have their features.
//!
//! The same for the int8 fast path ([`gconv_core::quant::fast`]): [`int8_kernel`]
//! detects the best int8 kernel once (`avx512_vnni`, `avx_vnni`, `avx2_madd`,
//! `portable`), [`int8_compute`] calls a plan's kernel after detection and
//! [`int8_forward_images`] runs whole images with a caller's scratch.
//!
//! # Memory
//! The packed input (the only scratch, [`FastPlan::packed_input_len`] f32 per image) is
//! kept per thread in a buffer that grows to the largest layer seen and is reused, so
//! a steady-state loop allocates nothing. [`scratch_bytes`] tells its size for a layer;
//! [`release_scratch`] frees the calling thread's buffer.
//!
//! # Threads
//! [`forward_par`] (feature `rayon`, on by default) splits the work over the current
//! rayon pool: by images when the batch has at least as many images as the pool has
//! threads, else image by image over contiguous ranges of output-plane tiles. Every
//! tile is computed by the same code from the same packed input in the same order,
//! so the result is bitwise identical to [`forward`] on one thread.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;

use gconv_core::Error;
use gconv_core::fast::{FastPlan, Kernel};
use gconv_core::quant::Requant;
use gconv_core::quant::fast::{QFastPlan, QKernel};

/// The best micro-kernel this CPU runs, detected once and cached: `Avx512` on x86_64
/// CPUs with AVX-512F, `Avx2Fma` on those with AVX2 and FMA, else
/// [`Kernel::compiled`] (`Portable` unless the build targets a newer CPU).
///
/// The environment variable `GCONV_KERNEL` (`avx512`, `avx2_fma` or `portable`),
/// read once, caps the choice, e.g. to compare kernels on one machine; a kernel the
/// CPU lacks is never chosen.
pub fn kernel() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        let wanted = std::env::var("GCONV_KERNEL").ok();
        let available = available_kernels();
        wanted
            .and_then(|name| available.iter().copied().find(|k| k.name() == name))
            .or_else(|| available.first().copied())
            .unwrap_or(Kernel::Portable)
    })
}

/// Whether the CPU has AVX2 and FMA (false off x86_64).
pub fn avx2_fma_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX-512F, AVX2 and FMA, what the AVX-512 kernel uses (false
/// off x86_64).
pub fn avx512_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && avx2_fma_detected()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU can run `kernel`.
pub fn cpu_has(kernel: Kernel) -> bool {
    match kernel {
        Kernel::Avx512 => avx512_detected(),
        Kernel::Avx2Fma => avx2_fma_detected(),
        _ => true,
    }
}

/// The kernels this CPU can run, best first.
pub fn available_kernels() -> Vec<Kernel> {
    Kernel::ALL.into_iter().filter(|&k| cpu_has(k)).collect()
}

/// [`FastPlan::compute`] with any kernel the CPU has (see [`available_kernels`]).
///
/// # Errors
/// Those of [`FastPlan::compute`]; [`Error::KernelNotCompiled`] when `kernel` needs
/// CPU features this CPU lacks.
pub fn compute(
    plan: &FastPlan,
    kernel: Kernel,
    packed_input: &[f32],
    packed_bank: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    tiles: Range<usize>,
) -> Result<(), Error> {
    if !cpu_has(kernel) {
        return Err(Error::KernelNotCompiled {
            kernel: kernel.name(),
        });
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => {
            // SAFETY: `compute_avx512` is safe Rust compiled with `avx512f`, `avx2`
            // and `fma` enabled; its one requirement is that the CPU has them, which
            // `cpu_has` has just confirmed (std caches the CPUID result).
            unsafe { plan.compute_avx512(packed_input, packed_bank, bias, out, tiles) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => {
            // SAFETY: `compute_avx2_fma` is safe Rust compiled with `avx2` and `fma`
            // enabled; its one requirement is that the CPU has both features, which
            // `cpu_has` has just confirmed (std caches the CPUID result).
            unsafe { plan.compute_avx2_fma(packed_input, packed_bank, bias, out, tiles) }
        }
        _ => plan.compute(kernel, packed_input, packed_bank, bias, out, tiles),
    }
}

/// The FMA peak of one core with `kernel`'s instructions, in GFLOP/s: the best of
/// five timings of [`gconv_core::fast::peak`]'s register-resident loop (about 20 ms
/// each). The reference the fast path's throughput is reported against.
///
/// # Errors
/// [`Error::KernelNotCompiled`] when the CPU lacks `kernel`'s features.
pub fn fma_peak_gflops(kernel: Kernel) -> Result<f64, Error> {
    let lanes = match kernel {
        Kernel::Avx512 => 16,
        _ => 8,
    };
    // Calibrate to ~20 ms, then keep the best of five.
    let mut rounds = 1 << 16;
    loop {
        let t = std::time::Instant::now();
        std::hint::black_box(peak_rounds(kernel, rounds)?);
        if t.elapsed().as_secs_f64() > 0.02 || rounds > 1 << 30 {
            break;
        }
        rounds *= 2;
    }
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        std::hint::black_box(peak_rounds(kernel, rounds)?);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let flops = rounds * gconv_core::fast::peak::flops_per_round(lanes);
    Ok(flops as f64 / best / 1e9)
}

/// `rounds` rounds of `kernel`'s peak loop ([`gconv_core::fast::peak`]); its result.
///
/// # Errors
/// [`Error::KernelNotCompiled`] when the CPU lacks `kernel`'s features.
pub fn peak_rounds(kernel: Kernel, rounds: usize) -> Result<f32, Error> {
    use gconv_core::fast::peak;
    if !cpu_has(kernel) {
        return Err(Error::KernelNotCompiled {
            kernel: kernel.name(),
        });
    }
    Ok(match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `peak::avx512` is safe Rust compiled with `avx512f`, `avx2` and
        // `fma`; `cpu_has` confirmed the CPU has them.
        Kernel::Avx512 => unsafe { peak::avx512(rounds) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `peak::avx2_fma` is safe Rust compiled with `avx2` and `fma`;
        // `cpu_has` confirmed the CPU has them.
        Kernel::Avx2Fma => unsafe { peak::avx2_fma(rounds) },
        _ => peak::portable(rounds),
    })
}

thread_local! {
    /// This thread's packed-input buffer, grown to the largest plan seen.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch, at least `len` f32 long (grown if needed,
/// never shrunk), starting on a 64-byte boundary so that whole-vector reads of the
/// packed planes do not straddle cache lines.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    const ALIGN_F32: usize = 64 / size_of::<f32>();
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len + ALIGN_F32 {
                buf.resize(len + ALIGN_F32, 0.0);
            }
            let offset = (buf.as_ptr() as usize).wrapping_neg() % 64 / size_of::<f32>();
            f(&mut buf[offset..offset + len])
        }
        // Only reachable if `f` re-entered the fast path on this thread: use a
        // buffer of its own rather than fail.
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// Frees the calling thread's packed-input buffer (the next fast-path call on this
/// thread allocates it again). The buffer grows to the largest layer a thread has run
/// and is otherwise kept for the thread's lifetime, so that loops allocate nothing;
/// call this after a one-off large layer to give the memory back. Returns the bytes
/// freed.
pub fn release_scratch() -> usize {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let bytes = buf.capacity() * size_of::<f32>();
            *buf = Vec::new();
            bytes
        }
        Err(_) => 0,
    })
}

/// Bytes of scratch the fast path keeps per thread for `plan`: one packed image.
pub fn scratch_bytes(plan: &FastPlan) -> usize {
    plan.packed_input_len() * size_of::<f32>()
}

/// Whole forward pass on the calling thread: `input` `(N, C_in, nti, H, W)` to
/// `output` `(N, C_out, nto, H', W')` with the packed bank, image by image.
///
/// # Errors
/// [`Error::BufferLength`] for a buffer of the wrong length; those of [`compute`].
/// Nothing is written on error.
pub fn forward(
    plan: &FastPlan,
    kernel: Kernel,
    input: &[f32],
    packed_bank: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    plan.check_batch(input, output)?;
    plan.check_operands(packed_bank, bias)?;
    forward_images(plan, kernel, input, packed_bank, bias, output)
}

/// [`forward`] split over the current rayon pool (see the [module docs](self)).
/// Returns the number of pieces of work run in parallel (at most the pool's thread
/// count). The output is bitwise identical to [`forward`].
///
/// # Errors
/// As [`forward`]; a check that fails is reported before anything is written.
#[cfg(feature = "rayon")]
pub fn forward_par(
    plan: &FastPlan,
    kernel: Kernel,
    input: &[f32],
    packed_bank: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<usize, Error> {
    use rayon::prelude::*;

    plan.check_batch(input, output)?;
    let threads = rayon::current_num_threads().max(1);
    let geo = plan.geometry();
    let (in_len, out_len) = (plan.image_input_len(), plan.image_output_len());
    plan.check_operands(packed_bank, bias)?;
    if in_len == 0 || out_len == 0 || geo.batch() == 0 {
        return Ok(1);
    }
    if threads == 1 {
        forward(plan, kernel, input, packed_bank, bias, output)?;
        return Ok(1);
    }
    if geo.batch() >= threads {
        // Whole images per task; each worker packs into its own scratch.
        let per = geo.batch().div_ceil(threads);
        input
            .par_chunks(per * in_len)
            .zip(output.par_chunks_mut(per * out_len))
            .try_for_each(|(x, y)| forward_images(plan, kernel, x, packed_bank, bias, y))?;
        return Ok(geo.batch().div_ceil(per));
    }
    // Fewer images than threads: pack each image once, share the tiles out.
    let tiles = plan.plane_tiles();
    let per = tiles.div_ceil(threads);
    let plane_tile_len = out_len / tiles.max(1);
    let (hw, plane_len) = (geo.height() * geo.width(), plan.packed_plane_len());
    let body = plan.image_input_len() / hw.max(1) * plane_len;
    with_scratch(plan.packed_input_len(), |packed| {
        for (image, out) in input
            .chunks_exact(in_len)
            .zip(output.chunks_exact_mut(out_len))
        {
            // Pack the planes in parallel too: one image's packing is a few percent
            // of its compute, which one thread alone would add to the critical path.
            let (planes, tail) = packed.split_at_mut(body);
            image
                .par_chunks(hw)
                .zip(planes.par_chunks_mut(plane_len))
                .try_for_each(|(plane, dst)| plan.pack_plane(plane, dst))?;
            tail.fill(0.0);
            let packed = &*packed;
            out.par_chunks_mut(per * plane_tile_len)
                .enumerate()
                .try_for_each(|(i, part)| {
                    let t0 = i * per;
                    let range = t0..(t0 + part.len() / plane_tile_len);
                    compute(plan, kernel, packed, packed_bank, bias, part, range)
                })?;
        }
        Ok::<(), Error>(())
    })?;
    Ok(tiles.div_ceil(per))
}

/// [`forward`] on a run of whole images (`input` and `output` hold the same number),
/// buffers checked by the caller.
fn forward_images(
    plan: &FastPlan,
    kernel: Kernel,
    input: &[f32],
    packed_bank: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    let (in_len, out_len) = (plan.image_input_len(), plan.image_output_len());
    if in_len == 0 || out_len == 0 {
        return Ok(());
    }
    with_scratch(plan.packed_input_len(), |packed| {
        for (image, out) in input
            .chunks_exact(in_len)
            .zip(output.chunks_exact_mut(out_len))
        {
            plan.pack_input(image, packed)?;
            compute(
                plan,
                kernel,
                packed,
                packed_bank,
                bias,
                out,
                0..plan.plane_tiles(),
            )?;
        }
        Ok(())
    })
}

/// The best int8 micro-kernel this CPU runs ([`gconv_core::quant::fast`]), detected
/// once and cached: `avx512_vnni` on CPUs with AVX-512F and AVX-512 VNNI, then
/// `avx_vnni` (AVX-VNNI), `avx2_madd` (AVX2), else `portable`.
///
/// Environment, read once: `GCONV_INT8_KERNEL` (`avx512_vnni`, `avx_vnni`,
/// `avx2_madd` or `portable`) picks that kernel; otherwise `GCONV_KERNEL=avx2_fma`
/// (the switch that forces the f32 path to AVX2) caps the int8 choice at `avx2_madd`,
/// the plain AVX2 kernel, and `GCONV_KERNEL=portable` at `portable`. A kernel the CPU
/// lacks is never chosen.
pub fn int8_kernel() -> QKernel {
    static KERNEL: OnceLock<QKernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        let available = int8_available_kernels();
        let named = |name: &str| available.iter().copied().find(|k| k.name() == name);
        if let Some(k) = std::env::var("GCONV_INT8_KERNEL")
            .ok()
            .and_then(|name| named(name.trim()))
        {
            return k;
        }
        let cap = match std::env::var("GCONV_KERNEL").ok().as_deref().map(str::trim) {
            Some("avx2_fma") => Some(QKernel::Avx2Madd),
            Some("portable") => Some(QKernel::Portable),
            _ => None,
        };
        let allowed = |k: &QKernel| match cap {
            Some(QKernel::Avx2Madd) => matches!(k, QKernel::Avx2Madd | QKernel::Portable),
            Some(QKernel::Portable) => *k == QKernel::Portable,
            _ => true,
        };
        available
            .iter()
            .copied()
            .find(allowed)
            .unwrap_or(QKernel::Portable)
    })
}

/// Whether this CPU can run the int8 `kernel`.
pub fn int8_cpu_has(kernel: QKernel) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match kernel {
            QKernel::Avx512Vnni => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
            }
            QKernel::AvxVnni => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni")
            }
            QKernel::Avx2Madd => is_x86_feature_detected!("avx2"),
            QKernel::Portable => true,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        kernel == QKernel::Portable || kernel.is_compiled()
    }
}

/// The int8 kernels this CPU can run, best first.
pub fn int8_available_kernels() -> Vec<QKernel> {
    QKernel::ALL
        .into_iter()
        .filter(|&k| int8_cpu_has(k))
        .collect()
}

/// [`QFastPlan::compute`] with the plan's kernel, which may be any kernel the CPU has
/// (see [`int8_available_kernels`]).
///
/// # Errors
/// Those of [`QFastPlan::compute`]; [`Error::KernelNotCompiled`] when the plan's
/// kernel needs CPU features this CPU lacks.
pub fn int8_compute(
    plan: &QFastPlan,
    requant: &Requant<'_>,
    packed: &[i32],
    prepared: &[i32],
    bias: Option<&[i32]>,
    out: &mut [i8],
    tiles: Range<usize>,
) -> Result<(), Error> {
    let kernel = plan.kernel();
    if !int8_cpu_has(kernel) {
        return Err(Error::KernelNotCompiled {
            kernel: kernel.name(),
        });
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        QKernel::Avx512Vnni => {
            // SAFETY: `compute_avx512_vnni` is safe Rust compiled with `avx512f` and
            // `avx512vnni`; its one requirement is that the CPU has them, which
            // `int8_cpu_has` has just confirmed (std caches the CPUID result).
            unsafe { plan.compute_avx512_vnni(requant, packed, prepared, bias, out, tiles) }
        }
        #[cfg(target_arch = "x86_64")]
        QKernel::AvxVnni => {
            // SAFETY: `compute_avx_vnni` is safe Rust compiled with `avx2` and
            // `avxvnni`; `int8_cpu_has` has just confirmed the CPU has both.
            unsafe { plan.compute_avx_vnni(requant, packed, prepared, bias, out, tiles) }
        }
        #[cfg(target_arch = "x86_64")]
        QKernel::Avx2Madd => {
            // SAFETY: `compute_avx2_madd` is safe Rust compiled with `avx2`;
            // `int8_cpu_has` has just confirmed the CPU has it.
            unsafe { plan.compute_avx2_madd(requant, packed, prepared, bias, out, tiles) }
        }
        _ => plan.compute(requant, packed, prepared, bias, out, tiles),
    }
}

/// The int8 forward pass of `images` whole images on the calling thread, with the
/// plan's kernel (any kernel the CPU has): `input` `(n, C_in, nti, H, W)` and
/// `output` `(n, C_out, nto, H', W')` for the same `n` (a slice of the plan's batch,
/// or all of it), `scratch` at least [`QFastPlan::scratch_len`] units.
///
/// # Errors
/// [`Error::BufferLength`] when `input` and `output` do not hold the same whole
/// number of images, or for the operands and scratch as [`QFastPlan::forward`];
/// those of [`int8_compute`]. Nothing is written to `output` on error.
pub fn int8_forward_images(
    plan: &QFastPlan,
    requant: &Requant<'_>,
    input: &[i8],
    prepared: &[i32],
    bias: Option<&[i32]>,
    output: &mut [i8],
    scratch: &mut [i32],
) -> Result<(), Error> {
    use gconv_core::Buffer;
    let (in_len, out_len) = (
        plan.image_input_len().max(1),
        plan.image_output_len().max(1),
    );
    let images = input.len() / in_len;
    let exact = |buffer, found: usize, per: usize| {
        if found == images * per {
            Ok(())
        } else {
            Err(Error::BufferLength {
                buffer,
                expected: images * per,
                found,
            })
        }
    };
    exact(Buffer::Input, input.len(), in_len)?;
    exact(Buffer::Output, output.len(), out_len)?;
    plan.check_operands(requant, prepared, bias)?;
    if !int8_cpu_has(plan.kernel()) {
        return Err(Error::KernelNotCompiled {
            kernel: plan.kernel().name(),
        });
    }
    let found = scratch.len();
    let packed = scratch
        .get_mut(..plan.scratch_len())
        .ok_or(Error::BufferLength {
            buffer: Buffer::Scratch,
            expected: plan.scratch_len(),
            found,
        })?;
    for (image, out) in input
        .chunks_exact(in_len)
        .zip(output.chunks_exact_mut(out_len))
    {
        plan.pack_input(requant.input_zero_point, image, packed)?;
        int8_compute(
            plan,
            requant,
            packed,
            prepared,
            bias,
            out,
            0..plan.plane_tiles(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AnyConv, ConvPath, Pair, Tensor};
    use gconv_core::Padding;

    /// Small enough for Miri: C4->C4 2->2 (8 planes in, 8 out), K 3, 6x7 input.
    fn layer_and_input(pair: Pair, stride: usize) -> (AnyConv, Tensor) {
        let seeded = AnyConv::new(pair, 2, 2, 3, stride, Padding::Same, 5).unwrap();
        let bias = Some(vec![0.5, -0.75]);
        let layer =
            AnyConv::from_weights(pair, seeded.weight().clone(), bias, stride, Padding::Same)
                .unwrap();
        let mut shape = vec![2, 2, pair.from().planes(), 6, 7];
        if pair.from().planes() == 1 {
            shape.remove(2);
        }
        let x = Tensor::from_fn(shape, |i| ((i * 37) % 11) as f32 / 5.0 - 1.0);
        (layer, x)
    }

    /// Every kernel the CPU has (the AVX2 one through the `unsafe` call) agrees with
    /// the direct path within the rounding of `C_in*nti*K*K` terms.
    #[test]
    fn every_available_kernel_matches_the_direct_path() {
        for pair in [Pair::C4C4, Pair::Z2D4] {
            for stride in [1, 2] {
                let (mut layer, x) = layer_and_input(pair, stride);
                layer.set_path(ConvPath::Direct);
                let direct = layer.forward(&x).unwrap();
                let plan = layer.fast_plan(x.shape()).unwrap();
                let mut packed = vec![0.0; plan.packed_bank_len()];
                gconv_core::fast::pack_bank(
                    plan.geometry().bank_shape(),
                    layer_bank(&layer),
                    &mut packed,
                )
                .unwrap();
                let terms = plan.geometry().terms_per_output() as f32;
                for kernel in available_kernels() {
                    let mut out = vec![f32::NAN; direct.len()];
                    forward(&plan, kernel, x.data(), &packed, layer.bias(), &mut out).unwrap();
                    for (a, b) in out.iter().zip(direct.data()) {
                        let tol = (terms + 2.0) * f32::EPSILON * 8.0 * (1.0 + b.abs());
                        assert!((a - b).abs() <= tol, "{pair:?} {kernel:?}: {a} vs {b}");
                    }
                }
            }
        }
    }

    fn layer_bank(layer: &AnyConv) -> &[f32] {
        match layer {
            AnyConv::Z2C4(l) => l.bank(),
            AnyConv::C4C4(l) => l.bank(),
            AnyConv::Z2D4(l) => l.bank(),
            AnyConv::D4D4(l) => l.bank(),
        }
    }

    #[test]
    fn a_kernel_the_cpu_lacks_is_an_error() {
        let (layer, x) = layer_and_input(Pair::C4C4, 1);
        let plan = layer.fast_plan(x.shape()).unwrap();
        let mut out = vec![7.0; plan.geometry().output_len()];
        let packed = vec![0.0; plan.packed_bank_len()];
        for kernel in Kernel::ALL {
            let result = forward(&plan, kernel, x.data(), &packed, None, &mut out);
            if cpu_has(kernel) {
                assert!(result.is_ok());
                out.fill(7.0);
            } else {
                let name = kernel.name();
                assert_eq!(result, Err(Error::KernelNotCompiled { kernel: name }));
                assert!(out.iter().all(|v| *v == 7.0));
            }
        }
    }

    /// The peak loops of every kernel compute the same recurrence (this reaches the
    /// `unsafe` calls of `peak_rounds`; Miri runs it).
    #[test]
    fn peak_loops_agree_across_kernels() {
        let portable = peak_rounds(Kernel::Portable, 20).unwrap();
        for kernel in available_kernels() {
            let lanes = if kernel == Kernel::Avx512 { 2.0 } else { 1.0 };
            let got = peak_rounds(kernel, 20).unwrap();
            let expected = portable * lanes;
            assert!(
                (got - expected).abs() <= 1e-3 * expected,
                "{kernel:?}: {got} vs {expected}"
            );
        }
        for kernel in Kernel::ALL.into_iter().filter(|&k| !cpu_has(k)) {
            let name = kernel.name();
            let err = Err(Error::KernelNotCompiled { kernel: name });
            assert_eq!(peak_rounds(kernel, 1), err);
        }
    }

    /// Every int8 kernel the CPU has (through the `unsafe` calls of `int8_compute`)
    /// gives the bits of the direct int8 kernel, lifting and group pairs, stride 1
    /// and 2. Small enough for Miri.
    #[test]
    fn int8_every_available_kernel_matches_the_direct_kernel() {
        use gconv_core::quant::{Multiplier, conv};
        use gconv_core::{C4, ConvShape, D4, Domain};
        let ms = [
            Multiplier::from_real(0.01).unwrap(),
            Multiplier::from_real(0.3).unwrap(),
        ];
        let requant = Requant {
            input_zero_point: -9,
            output_zero_point: 4,
            multipliers: &ms,
            relu: true,
        };
        // Under Miri (about 10^4 times slower) one small image.
        let (batch, height, width) = if cfg!(miri) { (1, 4, 5) } else { (2, 6, 7) };
        for (lifting, stride) in [(true, 1), (false, 2)] {
            let shape = ConvShape {
                batch,
                in_channels: 2,
                out_channels: 2,
                height,
                width,
                kernel: 3,
                stride,
                padding: Padding::Same,
            };
            let domain = if lifting { Domain::Z2 } else { Domain::Group };
            for geo in [
                shape.geometry::<C4>(domain).unwrap(),
                shape.geometry::<D4>(domain).unwrap(),
            ] {
                let x: Vec<i8> = (0..geo.input_len())
                    .map(|i| (i * 37 % 251) as u8 as i8)
                    .collect();
                let w: Vec<i8> = (0..geo.weight_len())
                    .map(|i| (i * 11 % 255) as i8)
                    .collect();
                let bias = [100, -2000];
                let mut direct = vec![0i8; geo.output_len()];
                let mut scratch = vec![0i32; conv::scratch_len_for(&geo).unwrap()];
                conv::forward_geometry(
                    &geo,
                    &requant,
                    &x,
                    &w,
                    Some(&bias),
                    &mut direct,
                    &mut scratch,
                )
                .unwrap();
                for kernel in int8_available_kernels() {
                    let plan = QFastPlan::from_geometry(&geo, kernel).unwrap();
                    let mut prepared = vec![0; plan.prepared_weights_len()];
                    plan.prepare_weights(&w, &mut prepared).unwrap();
                    let mut out = vec![0x55i8; geo.output_len()];
                    let mut scratch = vec![-1i32; plan.scratch_len()];
                    int8_forward_images(
                        &plan,
                        &requant,
                        &x,
                        &prepared,
                        Some(&bias),
                        &mut out,
                        &mut scratch,
                    )
                    .unwrap();
                    assert_eq!(out, direct, "{kernel:?} {geo:?}");
                }
            }
        }
        for kernel in QKernel::ALL.into_iter().filter(|&k| !int8_cpu_has(k)) {
            let geo = ConvShape {
                batch: 1,
                in_channels: 1,
                out_channels: 2,
                height: 4,
                width: 4,
                kernel: 3,
                stride: 1,
                padding: Padding::Same,
            }
            .geometry::<C4>(Domain::Z2)
            .unwrap();
            let plan = QFastPlan::from_geometry(&geo, kernel).unwrap();
            let prepared = vec![0; plan.prepared_weights_len()];
            let mut out = vec![0i8; geo.output_len()];
            let mut scratch = vec![0i32; plan.scratch_len()];
            let x = vec![0i8; geo.input_len()];
            let err =
                int8_forward_images(&plan, &requant, &x, &prepared, None, &mut out, &mut scratch);
            assert_eq!(
                err,
                Err(Error::KernelNotCompiled {
                    kernel: kernel.name()
                })
            );
        }
    }

    #[test]
    fn scratch_is_reused_not_reallocated() {
        let (mut layer, x) = layer_and_input(Pair::C4C4, 1);
        // The fast path's scratch: `Auto` takes the blocked path off x86, whose
        // scratch is smaller than a packed image.
        layer.set_path(ConvPath::Fast);
        let plan = layer.fast_plan(x.shape()).unwrap();
        let mut out = vec![0.0; plan.geometry().output_len()];
        layer.forward_into(&x, &mut out).unwrap();
        let first = SCRATCH.with(|s| s.borrow().as_ptr());
        for _ in 0..3 {
            layer.forward_into(&x, &mut out).unwrap();
        }
        assert_eq!(SCRATCH.with(|s| s.borrow().as_ptr()), first);
        assert!(SCRATCH.with(|s| s.borrow().len()) >= plan.packed_input_len());
        assert!(release_scratch() >= scratch_bytes(&plan));
        assert_eq!(SCRATCH.with(|s| s.borrow().capacity()), 0);
        assert_eq!(release_scratch(), 0);
        // The next call allocates again and gives the same result.
        let mut again = vec![0.0; out.len()];
        layer.forward_into(&x, &mut again).unwrap();
        assert_eq!(again, out);
    }
}

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

/// The environment variable that names the f32 micro-kernel (`avx512`, `avx2_fma` or
/// `portable`), read once by [`kernel`]; it also caps [`int8_kernel`].
pub const KERNEL_ENV: &str = "GCONV_KERNEL";

/// The environment variable that names the int8 micro-kernel (`avx512_vnni`,
/// `avx_vnni`, `avx2_madd` or `portable`), read once by [`int8_kernel`].
pub const INT8_KERNEL_ENV: &str = "GCONV_INT8_KERNEL";

/// A kernel-naming environment variable ([`KERNEL_ENV`], [`INT8_KERNEL_ENV`]) whose
/// value gconv cannot honour. It is an error rather than a silent fallback, so that a
/// typo in a benchmark's environment cannot measure another kernel than the one named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelEnvError {
    /// The value names no kernel.
    #[error("{var}={value:?} names no kernel: use one of {expected} (or unset it)")]
    Unknown {
        /// The variable.
        var: &'static str,
        /// Its value (lossily decoded when it is not UTF-8).
        value: String,
        /// The accepted names, comma-separated.
        expected: String,
    },
    /// The value names a kernel this CPU cannot run.
    #[error("{var}={value}: this CPU cannot run that kernel; it runs {available}")]
    Unavailable {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// The kernels this CPU runs, best first, comma-separated.
        available: String,
    },
}

/// The value of the environment variable `var` as [`select_kernel`] and
/// [`select_int8_kernel`] take it: `None` when unset; a value that is not UTF-8 is
/// kept (lossily decoded) so that it is reported, not ignored.
fn env_value(var: &str) -> Option<String> {
    std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
}

fn names<K: Copy>(kernels: &[K], name: impl Fn(K) -> &'static str) -> String {
    kernels
        .iter()
        .map(|&k| name(k))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kernel named by `value` among `all` (compared after trimming), checked against
/// the `available` ones; `Ok(None)` when `value` is unset or blank.
fn named_kernel<K: Copy + PartialEq>(
    var: &'static str,
    value: Option<&str>,
    all: &[K],
    available: &[K],
    name: impl Fn(K) -> &'static str + Copy,
) -> Result<Option<K>, KernelEnvError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let Some(kernel) = all.iter().copied().find(|&k| name(k) == value) else {
        return Err(KernelEnvError::Unknown {
            var,
            value: value.to_owned(),
            expected: names(all, name),
        });
    };
    if !available.contains(&kernel) {
        return Err(KernelEnvError::Unavailable {
            var,
            value: value.to_owned(),
            available: names(available, name),
        });
    }
    Ok(Some(kernel))
}

/// The f32 micro-kernel for a [`KERNEL_ENV`] value and the kernels a CPU runs (best
/// first): the named kernel, or the best available one when the value is unset or
/// blank ([`Kernel::Portable`] if `available` is empty). What [`kernel`] computes,
/// as a pure function.
///
/// # Errors
/// [`KernelEnvError::Unknown`] when the value names no kernel,
/// [`KernelEnvError::Unavailable`] when it names one not in `available`.
pub fn select_kernel(value: Option<&str>, available: &[Kernel]) -> Result<Kernel, KernelEnvError> {
    let named = named_kernel(KERNEL_ENV, value, &Kernel::ALL, available, Kernel::name)?;
    Ok(named
        .or_else(|| available.first().copied())
        .unwrap_or(Kernel::Portable))
}

/// The micro-kernel the f32 fast and Fourier paths use, chosen once and cached: the
/// one [`KERNEL_ENV`] (`GCONV_KERNEL`) names, else the best this CPU runs: `Avx512`
/// on x86_64 CPUs with AVX-512F, `Avx2Fma` on those with AVX2 and FMA, else
/// [`Kernel::compiled`] (`Portable` unless the build targets a newer CPU). See
/// [`select_kernel`].
///
/// # Errors
/// [`KernelEnvError`] when `GCONV_KERNEL` is set to a name that is not a kernel or to
/// a kernel this CPU cannot run (every call returns the same error).
pub fn kernel() -> Result<Kernel, KernelEnvError> {
    static KERNEL: OnceLock<Result<Kernel, KernelEnvError>> = OnceLock::new();
    KERNEL
        .get_or_init(|| select_kernel(env_value(KERNEL_ENV).as_deref(), &available_kernels()))
        .clone()
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

/// The int8 micro-kernel for the values of [`INT8_KERNEL_ENV`] and [`KERNEL_ENV`] and
/// the int8 and f32 kernels a CPU runs (best first). What [`int8_kernel`] computes, as
/// a pure function:
/// - `int8_value` set: the int8 kernel it names;
/// - else `f32_value` set (it must name an f32 kernel the CPU runs): a cap, so that
///   one switch moves both paths: `avx2_fma` caps int8 at `avx2_madd` (the plain AVX2
///   kernel), `portable` at `portable`, `avx512` caps nothing;
/// - the best available int8 kernel under that cap (`Portable` if none is).
///
/// # Errors
/// [`KernelEnvError::Unknown`] or [`KernelEnvError::Unavailable`] for the variable
/// whose value names no kernel or one the CPU cannot run.
pub fn select_int8_kernel(
    int8_value: Option<&str>,
    f32_value: Option<&str>,
    int8_available: &[QKernel],
    f32_available: &[Kernel],
) -> Result<QKernel, KernelEnvError> {
    let named = named_kernel(
        INT8_KERNEL_ENV,
        int8_value,
        &QKernel::ALL,
        int8_available,
        QKernel::name,
    )?;
    // The f32 switch is checked even when the int8 one overrides it: a typo in it is
    // an error for the f32 path, and must not depend on the other variable.
    let cap = named_kernel(
        KERNEL_ENV,
        f32_value,
        &Kernel::ALL,
        f32_available,
        Kernel::name,
    )?;
    if let Some(k) = named {
        return Ok(k);
    }
    let allowed = |k: &QKernel| match cap {
        Some(Kernel::Avx2Fma) => matches!(k, QKernel::Avx2Madd | QKernel::Portable),
        Some(Kernel::Portable) => *k == QKernel::Portable,
        Some(Kernel::Avx512) | None => true,
    };
    Ok(int8_available
        .iter()
        .copied()
        .find(allowed)
        .unwrap_or(QKernel::Portable))
}

/// The int8 micro-kernel ([`gconv_core::quant::fast`]) the host uses, chosen once and
/// cached: the best this CPU runs (`avx512_vnni` on CPUs with AVX-512F and AVX-512
/// VNNI, then `avx_vnni` (AVX-VNNI), `avx2_madd` (AVX2), else `portable`), unless
/// `GCONV_INT8_KERNEL` names one or `GCONV_KERNEL` caps it (see
/// [`select_int8_kernel`]).
///
/// # Errors
/// [`KernelEnvError`] when either variable names no kernel or a kernel this CPU
/// cannot run.
pub fn int8_kernel() -> Result<QKernel, KernelEnvError> {
    static KERNEL: OnceLock<Result<QKernel, KernelEnvError>> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            select_int8_kernel(
                env_value(INT8_KERNEL_ENV).as_deref(),
                env_value(KERNEL_ENV).as_deref(),
                &int8_available_kernels(),
                &available_kernels(),
            )
        })
        .clone()
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

    #[test]
    fn kernel_env_unset_or_blank_takes_the_best_available() {
        let avx2 = [Kernel::Avx2Fma, Kernel::Portable];
        for value in [None, Some(""), Some("  ")] {
            assert_eq!(select_kernel(value, &avx2), Ok(Kernel::Avx2Fma));
            assert_eq!(select_kernel(value, &Kernel::ALL), Ok(Kernel::Avx512));
            assert_eq!(select_kernel(value, &[]), Ok(Kernel::Portable));
        }
    }

    #[test]
    fn kernel_env_names_a_kernel_the_cpu_runs() {
        for kernel in Kernel::ALL {
            let padded = format!(" {} ", kernel.name());
            assert_eq!(select_kernel(Some(&padded), &Kernel::ALL), Ok(kernel));
        }
    }

    #[test]
    fn kernel_env_typo_is_an_error_naming_the_choices() {
        for typo in ["avx2", "AVX512", "avx2-fma", "portabel", "fast"] {
            let err = select_kernel(Some(typo), &Kernel::ALL).unwrap_err();
            assert!(
                matches!(err, KernelEnvError::Unknown { .. }),
                "{typo}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("GCONV_KERNEL"), "{text}");
            assert!(text.contains("avx512, avx2_fma, portable"), "{text}");
        }
    }

    #[test]
    fn kernel_env_naming_a_missing_kernel_is_an_error() {
        let err = select_kernel(Some("avx512"), &[Kernel::Avx2Fma, Kernel::Portable]);
        assert_eq!(
            err,
            Err(KernelEnvError::Unavailable {
                var: KERNEL_ENV,
                value: "avx512".into(),
                available: "avx2_fma, portable".into(),
            })
        );
    }

    #[test]
    fn int8_kernel_env_picks_caps_and_rejects() {
        let all = QKernel::ALL;
        let f32_all = Kernel::ALL;
        // Unset: the best int8 kernel.
        assert_eq!(
            select_int8_kernel(None, None, &all, &f32_all),
            Ok(QKernel::Avx512Vnni)
        );
        // The f32 switch caps the int8 choice.
        let capped = |f32_value| select_int8_kernel(None, Some(f32_value), &all, &f32_all);
        assert_eq!(capped("avx512"), Ok(QKernel::Avx512Vnni));
        assert_eq!(capped("avx2_fma"), Ok(QKernel::Avx2Madd));
        assert_eq!(capped("portable"), Ok(QKernel::Portable));
        // The int8 variable names its kernel, over the cap.
        assert_eq!(
            select_int8_kernel(Some("avx_vnni"), Some("portable"), &all, &f32_all),
            Ok(QKernel::AvxVnni)
        );
        // Typos in either variable, and kernels the CPU lacks, are errors.
        let int8_typo = select_int8_kernel(Some("vnni"), None, &all, &f32_all).unwrap_err();
        assert!(
            int8_typo.to_string().contains("GCONV_INT8_KERNEL"),
            "{int8_typo}"
        );
        let f32_typo = select_int8_kernel(Some("portable"), Some("avx"), &all, &f32_all);
        assert!(matches!(
            f32_typo,
            Err(KernelEnvError::Unknown {
                var: KERNEL_ENV,
                ..
            })
        ));
        let no_vnni = [QKernel::Avx2Madd, QKernel::Portable];
        assert!(matches!(
            select_int8_kernel(Some("avx512_vnni"), None, &no_vnni, &f32_all),
            Err(KernelEnvError::Unavailable {
                var: INT8_KERNEL_ENV,
                ..
            })
        ));
        // Without the f32 kernel it caps at, the cap is an error too.
        assert!(matches!(
            select_int8_kernel(None, Some("avx2_fma"), &no_vnni, &[Kernel::Portable]),
            Err(KernelEnvError::Unavailable {
                var: KERNEL_ENV,
                ..
            })
        ));
    }

    /// Small enough for Miri: C4->C4 2->2 (8 planes in, 8 out), K 3, 6x7 input.
    /// Seeded weights and an input in [-1, 1); or, with `exact`, integers in -3..=3
    /// (and a dyadic bias), on which every path computes exactly.
    fn layer_and_input(pair: Pair, stride: usize, exact: bool) -> (AnyConv, Tensor) {
        let seeded = AnyConv::new(pair, 2, 2, 3, stride, Padding::Same, 5).unwrap();
        let bias = Some(vec![0.5, -0.75]);
        let weight = if exact {
            let w = seeded.weight();
            Tensor::from_fn(w.shape().to_vec(), |i| ((i * 29) % 7) as f32 - 3.0)
        } else {
            seeded.weight().clone()
        };
        let layer = AnyConv::from_weights(pair, weight, bias, stride, Padding::Same).unwrap();
        let mut shape = vec![2, 2, pair.from().planes(), 6, 7];
        if pair.from().planes() == 1 {
            shape.remove(2);
        }
        let x = if exact {
            Tensor::from_fn(shape, |i| ((i * 37) % 7) as f32 - 3.0)
        } else {
            Tensor::from_fn(shape, |i| ((i * 37) % 11) as f32 / 5.0 - 1.0)
        };
        (layer, x)
    }

    /// Every kernel the CPU has (the AVX2 and AVX-512 ones through the `unsafe`
    /// call) agrees with the direct path: bit for bit on integer data (both exact),
    /// and on random data within twice the rounding bound of one path,
    /// `2 (T + 2) eps (S + |b|)` (`T = C_in*nti*K*K` terms, `S = sum |x w|`; the
    /// direct path on absolute values computes `S + |b|` within a factor
    /// `1 + (T + 2) eps`, which the bound allows for).
    #[test]
    fn every_available_kernel_matches_the_direct_path() {
        // Under Miri (about 10^4 times slower) the exact data only: the same
        // `unsafe` calls, checked without a tolerance; the bound runs natively.
        let kinds: &[bool] = if cfg!(miri) { &[true] } else { &[true, false] };
        for &exact in kinds {
            for pair in [Pair::C4C4, Pair::Z2D4] {
                for stride in [1, 2] {
                    check_kernels(pair, stride, exact);
                }
            }
        }
    }

    fn check_kernels(pair: Pair, stride: usize, exact: bool) {
        let (mut layer, x) = layer_and_input(pair, stride, exact);
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
        // `S + |b|` per output, for the random data's bound.
        let abs = |v: f32| v.abs();
        let bias_abs = layer.bias().map(|b| b.iter().map(|v| v.abs()).collect());
        let mut abs_layer = AnyConv::from_weights(
            pair,
            layer.weight().map(abs),
            bias_abs,
            stride,
            Padding::Same,
        )
        .unwrap();
        abs_layer.set_path(ConvPath::Direct);
        let sums = abs_layer.forward(&x.map(abs)).unwrap();
        let terms = plan.geometry().terms_per_output() as f32 + 2.0;
        let eps = f32::EPSILON;
        for kernel in available_kernels() {
            let mut out = vec![f32::NAN; direct.len()];
            forward(&plan, kernel, x.data(), &packed, layer.bias(), &mut out).unwrap();
            if exact {
                assert!(
                    out.iter()
                        .zip(direct.data())
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{pair:?} {kernel:?} stride {stride}: not exact"
                );
                continue;
            }
            for ((a, b), s) in out.iter().zip(direct.data()).zip(sums.data()) {
                let tol = 2.0 * terms * eps * (1.0 + terms * eps) * s;
                assert!(
                    (a - b).abs() <= tol,
                    "{pair:?} {kernel:?}: {a} vs {b}, tolerance {tol:e}"
                );
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
        let (layer, x) = layer_and_input(Pair::C4C4, 1, false);
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
        let (mut layer, x) = layer_and_input(Pair::C4C4, 1, false);
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

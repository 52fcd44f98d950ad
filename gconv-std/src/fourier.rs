//! The group-Fourier path on the host: run-time choice of the micro-kernel for its
//! GEMMs, per-thread scratch, and a split of the batch over threads.
//!
//! [`gconv_core::fourier`] holds the method (see its docs); this module only picks the
//! kernel the CPU has ([`crate::fast::kernel`]) and owns the `unsafe` calls of the
//! core's `#[target_feature]` entry points after detection.
#![allow(unsafe_code)]

use std::ops::Range;

use gconv_core::Error;
use gconv_core::fast::Kernel;
use gconv_core::fourier::{FourierPlan, ImagePart};

use crate::fast::{cpu_has, with_scratch};

/// [`FourierPlan::forward`] with any kernel this CPU has, with caller scratch
/// (at least [`FourierPlan::scratch_len`] f32).
///
/// # Errors
/// Those of [`FourierPlan::forward`]; [`Error::KernelNotCompiled`] when the CPU lacks
/// `kernel`'s features. Nothing is written to `output` on error.
pub fn forward(
    plan: &FourierPlan,
    kernel: Kernel,
    input: &[f32],
    packed_weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), Error> {
    if !cpu_has(kernel) {
        return Err(Error::KernelNotCompiled {
            kernel: kernel.name(),
        });
    }
    if !matches!(kernel, Kernel::Avx512 | Kernel::Avx2Fma) {
        return plan.forward(kernel, input, packed_weights, bias, output, scratch);
    }
    // The run-time-detected kernels go image by image: check the whole batch first
    // so that an error leaves `output` untouched.
    check_lengths(plan, input, packed_weights, bias, output)?;
    let geo = plan.geometry();
    if geo.batch() == 0 {
        return Ok(());
    }
    let (in_len, out_len) = (
        geo.input_len() / geo.batch(),
        geo.output_len() / geo.batch(),
    );
    for (image, out) in input
        .chunks_exact(in_len)
        .zip(output.chunks_exact_mut(out_len))
    {
        let part = ImagePart::all(plan, out);
        forward_image(plan, kernel, image, packed_weights, bias, part, scratch)?;
    }
    Ok(())
}

/// [`FourierPlan::forward_image`] (one image, the part of its output `part` names)
/// with any kernel this CPU has.
///
/// # Errors
/// Those of [`FourierPlan::forward_image`]; [`Error::KernelNotCompiled`] when the CPU
/// lacks `kernel`'s features. Nothing is written on error.
pub fn forward_image(
    plan: &FourierPlan,
    kernel: Kernel,
    image: &[f32],
    packed_weights: &[f32],
    bias: Option<&[f32]>,
    part: ImagePart<'_, '_>,
    scratch: &mut [f32],
) -> Result<(), Error> {
    if !cpu_has(kernel) {
        return Err(Error::KernelNotCompiled {
            kernel: kernel.name(),
        });
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => {
            // SAFETY: `forward_image_avx512` is safe Rust compiled with `avx512f`,
            // `avx2` and `fma`; its one requirement is that the CPU has them, which
            // `cpu_has` has just confirmed.
            unsafe { plan.forward_image_avx512(image, packed_weights, bias, part, scratch) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => {
            // SAFETY: `forward_image_avx2_fma` is safe Rust compiled with `avx2` and
            // `fma`; its one requirement is that the CPU has both, which `cpu_has` has
            // just confirmed.
            unsafe { plan.forward_image_avx2_fma(image, packed_weights, bias, part, scratch) }
        }
        _ => plan.forward_image(kernel, image, packed_weights, bias, part, scratch),
    }
}

/// [`forward`] on the calling thread with its reused scratch buffer (shared with the
/// fast path; see [`crate::fast::release_scratch`]).
///
/// # Errors
/// As [`forward`].
pub fn forward_thread_scratch(
    plan: &FourierPlan,
    kernel: Kernel,
    input: &[f32],
    packed_weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    with_scratch(plan.scratch_len(), |scratch| {
        forward(plan, kernel, input, packed_weights, bias, output, scratch)
    })
}

/// Bytes of scratch the Fourier path keeps per thread for `plan`.
pub fn scratch_bytes(plan: &FourierPlan) -> usize {
    plan.scratch_len() * size_of::<f32>()
}

/// [`forward_thread_scratch`] split over the current rayon pool: by images when the
/// batch has at least as many images as the pool has threads, else image by image
/// over contiguous ranges of output rows (each thread transforms only its rows' input
/// and runs the GEMMs for them). Bitwise identical to one thread: every output is
/// computed by the same code in the same order. Returns the number of pieces run in
/// parallel.
///
/// # Errors
/// As [`forward`]; nothing is written on a length error.
#[cfg(feature = "rayon")]
pub fn forward_par(
    plan: &FourierPlan,
    kernel: Kernel,
    input: &[f32],
    packed_weights: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<usize, Error> {
    use rayon::prelude::*;
    let geo = plan.geometry();
    let images = geo.batch();
    let threads = rayon::current_num_threads();
    let out_rows = geo.out_height();
    if threads <= 1 || images == 0 || (images == 1 && out_rows <= 1) {
        forward_thread_scratch(plan, kernel, input, packed_weights, bias, output)?;
        return Ok(1);
    }
    // Check everything the per-piece calls would, before anything is written.
    check_lengths(plan, input, packed_weights, bias, output)?;
    if !cpu_has(kernel) {
        return Err(Error::KernelNotCompiled {
            kernel: kernel.name(),
        });
    }
    let (in_len, out_len) = (geo.input_len() / images, geo.output_len() / images);
    if images >= threads {
        let one = image_plan(plan)?;
        input
            .par_chunks_exact(in_len)
            .zip(output.par_chunks_exact_mut(out_len))
            .try_for_each(|(x, y)| {
                forward_thread_scratch(&one, kernel, x, packed_weights, bias, y)
            })?;
        return Ok(threads.min(images));
    }
    // Fewer images than threads: split each image's output rows into `pieces`
    // contiguous ranges; piece `t` gets rows `ranges[t]` of every output plane.
    let pieces = threads.min(out_rows);
    let ow = geo.out_width();
    let plane_len = out_rows * ow;
    let ranges: Vec<Range<usize>> = (0..pieces)
        .map(|t| t * out_rows / pieces..(t + 1) * out_rows / pieces)
        .collect();
    let scratch_len = plan.scratch_len();
    for (image, out) in input
        .chunks_exact(in_len)
        .zip(output.chunks_exact_mut(out_len))
    {
        let mut lists: Vec<Vec<&mut [f32]>> = (0..pieces)
            .map(|_| Vec::with_capacity(out_len / plane_len))
            .collect();
        for mut plane in out.chunks_exact_mut(plane_len) {
            for (list, r) in lists.iter_mut().zip(&ranges) {
                let (head, tail) = plane.split_at_mut(r.len() * ow);
                list.push(head);
                plane = tail;
            }
        }
        ranges
            .par_iter()
            .zip(lists.into_par_iter())
            .try_for_each(|(r, mut planes)| {
                let part = ImagePart::Rows {
                    rows: r.clone(),
                    planes: &mut planes,
                };
                with_scratch(scratch_len, |scratch| {
                    forward_image(plan, kernel, image, packed_weights, bias, part, scratch)
                })
            })?;
    }
    Ok(pieces)
}

fn check_lengths(
    plan: &FourierPlan,
    input: &[f32],
    packed_weights: &[f32],
    bias: Option<&[f32]>,
    output: &[f32],
) -> Result<(), Error> {
    plan.check_batch(input, output)?;
    plan.check_operands(packed_weights, bias)
}

/// The plan of one image of `plan`'s batch.
fn image_plan(plan: &FourierPlan) -> Result<FourierPlan, Error> {
    let geo = plan.geometry();
    let shape = gconv_core::ConvShape {
        batch: 1,
        in_channels: geo.in_channels(),
        out_channels: geo.out_channels(),
        height: geo.height(),
        width: geo.width(),
        kernel: geo.kernel(),
        stride: geo.stride(),
        padding: gconv_core::Padding::Explicit {
            top: geo.padding()[0],
            bottom: geo.padding()[1],
            left: geo.padding()[2],
            right: geo.padding()[3],
        },
    };
    let one = match geo.nto() {
        8 => shape.geometry::<gconv_core::D4>(domain(geo.nti())),
        _ => shape.geometry::<gconv_core::C4>(domain(geo.nti())),
    }?;
    FourierPlan::new(&one)
}

fn domain(nti: usize) -> gconv_core::Domain {
    if nti == 1 {
        gconv_core::Domain::Z2
    } else {
        gconv_core::Domain::Group
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::available_kernels;
    use crate::{AnyConv, ConvPath, Pair, Tensor};
    use gconv_core::Padding;

    /// Every kernel the CPU has (AVX-512 and AVX2+FMA through the `unsafe` calls)
    /// agrees with the direct path, on layers small enough for Miri: bit for bit on
    /// integer data (both paths exact: the transforms add only, the scales are
    /// powers of two), and on random data within the sum of the two paths' derived
    /// bounds, `2 (T_F + 3|G| + 2) eps (S_F + |b|) + (T + 2) eps (S + |b|)`
    /// (`gconv_core::fourier`'s module docs; `S_F` is the sum over the `|G|`
    /// orientations of the direct path's `S = sum |x w|`, computed by the direct
    /// path on absolute values, within `1 + (T + |G|) eps`).
    #[test]
    fn every_available_kernel_matches_the_direct_path() {
        // Under Miri (about 10^4 times slower) the exact data only: the same
        // `unsafe` calls, checked without a tolerance; the bound runs natively.
        let kinds: &[bool] = if cfg!(miri) { &[true] } else { &[true, false] };
        for &exact in kinds {
            for pair in [Pair::C4C4, Pair::Z2D4] {
                check_kernels(pair, exact);
            }
        }
    }

    fn check_kernels(pair: Pair, exact: bool) {
        {
            let seeded = AnyConv::new(pair, 2, 2, 3, 1, Padding::Same, 9).unwrap();
            let weight = if exact {
                let w = seeded.weight();
                Tensor::from_fn(w.shape().to_vec(), |i| ((i * 29) % 7) as f32 - 3.0)
            } else {
                seeded.weight().clone()
            };
            let mut layer = AnyConv::from_weights(pair, weight, None, 1, Padding::Same).unwrap();
            let mut shape = vec![1, 2, pair.from().planes(), 5, 9];
            if pair.from().planes() == 1 {
                shape.remove(2);
            }
            let x = if exact {
                Tensor::from_fn(shape, |i| ((i * 37) % 7) as f32 - 3.0)
            } else {
                Tensor::from_fn(shape, |i| ((i * 37) % 11) as f32 / 5.0 - 1.0)
            };
            layer.set_path(ConvPath::Direct);
            let direct = layer.forward(&x).unwrap();
            let plan = layer.fourier_plan(x.shape()).unwrap();
            let mut packed = vec![0.0; plan.packed_weights_len()];
            plan.pack_weights(layer.weight().data(), &mut packed)
                .unwrap();
            let geo = plan.geometry();
            let abs = |v: f32| v.abs();
            let mut abs_layer =
                AnyConv::from_weights(pair, layer.weight().map(abs), None, 1, Padding::Same)
                    .unwrap();
            abs_layer.set_path(ConvPath::Direct);
            let sums = abs_layer.forward(&x.map(abs)).unwrap();
            let order = geo.nto();
            let eps = f32::EPSILON;
            let terms = geo.terms_per_output() as f32 + 2.0;
            let terms_f = (geo.in_channels() * plan.orbits() * 2 + 3 * order + 2) as f32;
            let slack = 1.0 + (terms + order as f32) * eps;
            let plane = geo.out_height() * geo.out_width();
            for kernel in available_kernels() {
                let mut out = vec![f32::NAN; direct.len()];
                let mut scratch = vec![f32::NAN; plan.scratch_len()];
                forward(
                    &plan,
                    kernel,
                    x.data(),
                    &packed,
                    None,
                    &mut out,
                    &mut scratch,
                )
                .unwrap();
                if exact {
                    assert!(
                        out.iter()
                            .zip(direct.data())
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{pair:?} {kernel:?}: not exact"
                    );
                }
                for (i, (a, b)) in out.iter().zip(direct.data()).enumerate() {
                    // Output `i` is an orientation of G-channel `i / plane / |G|`.
                    let first = i / plane / order * order * plane + i % plane;
                    let s_f: f32 = (0..order).map(|g| sums.data()[first + g * plane]).sum();
                    let tol = (2.0 * terms_f * s_f + terms * sums.data()[i]) * eps * slack;
                    assert!(
                        (a - b).abs() <= tol,
                        "{pair:?} {kernel:?}: {a} vs {b}, tolerance {tol:e}"
                    );
                }
                // Rows 0..2 and 2..H' of every plane (`ImagePart::Rows` through the
                // unsafe calls): the same bits.
                let (oh, ow) = (geo.out_height(), geo.out_width());
                let mut rows_out = vec![f32::NAN; out.len()];
                for rows in [0..2, 2..oh] {
                    let mut planes: Vec<&mut [f32]> = rows_out
                        .chunks_exact_mut(oh * ow)
                        .map(|p| &mut p[rows.start * ow..rows.end * ow])
                        .collect();
                    let part = ImagePart::Rows {
                        rows,
                        planes: &mut planes,
                    };
                    forward_image(&plan, kernel, x.data(), &packed, None, part, &mut scratch)
                        .unwrap();
                }
                assert!(
                    out.iter()
                        .zip(&rows_out)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
        }
    }
}

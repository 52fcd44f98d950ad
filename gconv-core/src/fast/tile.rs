//! The micro-kernels of the fast path and the driver that walks them over the output.
//!
//! A micro-kernel computes one tile: `MR` output planes times `NR` consecutive flat
//! outputs, accumulated in registers over every (input plane, tap) term:
//!
//! ```text
//! acc[m][j] = sum_{c < planes_in} sum_{k < K*K} w[c][k][m] * x[c*plane_len + tap[k] + n0 + j]
//! ```
//!
//! with `w` the tile's slice of the packed bank and `x` the packed input. The driver
//! owns everything else: blocking, the bias and the dropped columns, so the kernels
//! are one loop nest each.

use core::ops::Range;

use super::{FastPlan, MR};

/// The micro-kernels, each with its tile size `MR x NR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain Rust on `[f32; 8]` chunks, auto-vectorized for whatever the build
    /// targets (SSE2 on a default x86_64 build, NEON on aarch64). Tile 4 x 8, no FMA
    /// (`core` has no fused multiply-add without a target feature).
    Portable,
    /// x86_64 AVX2 + FMA intrinsics: tile 4 x 24, twelve 8-lane accumulators, one FMA
    /// per weight broadcast and input vector.
    Avx2Fma,
    /// x86_64 AVX-512F intrinsics: tile 4 x 48, twelve 16-lane accumulators (of 32
    /// registers). Same arithmetic as `Avx2Fma` (fused multiply-adds) with half the
    /// instructions per multiply-add, which is what lets it approach the FMA peak on
    /// CPUs that split 512-bit operations in two (AMD Zen 4).
    Avx512,
}

impl Kernel {
    /// Every kernel, in order of preference.
    pub const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2Fma, Kernel::Portable];

    /// Short name, as printed by benchmarks (`portable`, `avx2_fma`, `avx512`).
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2Fma => "avx2_fma",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Tile size `(MR, NR)`: output planes times flat outputs per tile.
    pub const fn tile(self) -> (usize, usize) {
        match self {
            Kernel::Portable => (MR, PORTABLE_NR),
            Kernel::Avx2Fma => (MR, AVX2_NR),
            Kernel::Avx512 => (MR, AVX512_NR),
        }
    }

    /// The best kernel this build can call without run-time detection: `Avx512` when
    /// compiled for x86_64 with `avx512f`, `Avx2Fma` with `avx2` and `fma` (e.g.
    /// `-C target-cpu=native`), else `Portable`.
    pub const fn compiled() -> Kernel {
        if cfg!(all(target_arch = "x86_64", target_feature = "avx512f")) {
            Kernel::Avx512
        } else if cfg!(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        )) {
            Kernel::Avx2Fma
        } else {
            Kernel::Portable
        }
    }
}

const PORTABLE_NR: usize = 8;
const AVX2_NR: usize = 24;
const AVX512_NR: usize = 48;

/// Output tiles whose accumulators are kept while the planes are walked block by block
/// (on the stack: `CO_GROUP * MR * NR` f32, 6 KiB for the AVX2 tile).
const CO_GROUP: usize = 16;

/// Consecutive flat-output tiles computed with the same weights while they are in L1.
const N_GROUP: usize = 4;

/// Input planes per block, chosen so that what one tile reads of a block,
/// `planes * (NR + (K-1)*(phase_w+1))` f32, fits in 16 KiB of L1 and is reused by
/// every tile of the output-plane group.
fn planes_per_block(plan: &FastPlan, nr: usize) -> usize {
    const L1_F32: usize = 16 * 1024 / 4;
    let reach = N_GROUP * nr + (plan.geo.kernel() - 1) * (plan.phase_w + 1);
    (L1_F32 / reach).clamp(1, plan.planes_in.max(1))
}

/// Walks output planes `tiles.start*MR .. tiles.end*MR` one flat-output tile at a
/// time. For each run of `NR` flat outputs and each group of [`CO_GROUP`] plane tiles,
/// the input planes are taken in blocks of [`planes_per_block`]: every tile of the
/// group runs over the block (`tile(weights, input_offset, n0, acc, accumulate)`)
/// before the next block, so the block's input is read from L1. Then each tile is
/// written to `out` with the bias. Lengths were checked by the caller.
#[inline(always)]
fn drive<const NR: usize>(
    plan: &FastPlan,
    packed_bank: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    tiles: Range<usize>,
    mut tile: impl FnMut(&[f32], usize, usize, &mut [[f32; NR]; MR], bool),
) {
    let terms = plan.n_taps * MR; // packed weights per input plane and tile
    let filter = plan.planes_in * terms;
    let plane = plan.geo.out_height() * plan.geo.out_width();
    let block = planes_per_block(plan, NR);
    let mut one = [[0.0f32; NR]; MR];
    let channel_shift = (plan.geo.nto() / MR).trailing_zeros();
    if block >= plan.planes_in {
        // Few input planes (lifting layers): the whole input stays in cache, so each
        // plane tile sweeps the image and writes its planes front to back.
        for (t, out_tile) in tiles.zip(out.chunks_exact_mut(MR * plane)) {
            let Some(weights) = packed_bank.get(t * filter..(t + 1) * filter) else {
                return;
            };
            let b = bias.map_or(0.0, |b| b.get(t >> channel_shift).copied().unwrap_or(0.0));
            let (mut y, mut x) = (0, 0); // flat row and column of `n0`
            for n0 in (0..plan.n_flat).step_by(NR) {
                tile(weights, n0, n0, &mut one, false);
                store_tile(plan, &one, (y, x), b, out_tile);
                x += NR;
                while x >= plan.phase_w {
                    x -= plan.phase_w;
                    y += 1;
                }
            }
        }
        return;
    }
    let mut accs = [[[[0.0f32; NR]; MR]; N_GROUP]; CO_GROUP];
    let n_tiles = plan.n_flat.div_ceil(NR);
    let mut first = 0;
    while first < n_tiles {
        // Tiles `first .. first + count` of flat outputs, and where each starts.
        let count = N_GROUP.min(n_tiles - first);
        let mut at = [(0usize, 0usize); N_GROUP];
        for (j, a) in at.iter_mut().enumerate().take(count) {
            let n0 = (first + j) * NR;
            *a = (n0 / plan.phase_w, n0 % plan.phase_w);
        }
        let mut t0 = tiles.start;
        while t0 < tiles.end {
            let t1 = (t0 + CO_GROUP).min(tiles.end);
            let mut p0 = 0;
            while p0 < plan.planes_in {
                let p1 = (p0 + block).min(plan.planes_in);
                for (t, acc_t) in (t0..t1).zip(accs.iter_mut()) {
                    let start = t * filter + p0 * terms;
                    let Some(weights) = packed_bank.get(start..start + (p1 - p0) * terms) else {
                        return;
                    };
                    for (j, acc) in acc_t.iter_mut().enumerate().take(count) {
                        let n0 = (first + j) * NR;
                        tile(weights, p0 * plan.plane_len + n0, n0, acc, p0 > 0);
                    }
                }
                p0 = p1;
            }
            for (t, acc_t) in (t0..t1).zip(accs.iter()) {
                let start = (t - tiles.start) * MR * plane;
                let Some(out_tile) = out.get_mut(start..start + MR * plane) else {
                    return;
                };
                // The tile's planes `t*MR ..` are orientations of G-channel
                // `t*MR / nto = t >> channel_shift` (`nto / MR` is 1 or 2).
                let b = bias.map_or(0.0, |b| b.get(t >> channel_shift).copied().unwrap_or(0.0));
                for (acc, &yx) in acc_t.iter().zip(&at).take(count) {
                    store_tile(plan, acc, yx, b, out_tile);
                }
            }
            t0 = t1;
        }
        first += count;
    }
}

/// Writes tile `acc` (flat outputs `n0 .. n0 + NR`, starting at flat row `y` column
/// `x`, of `MR` planes of one G-channel) to `out_tile` (those planes, `(MR, H', W')`),
/// adding `bias` and skipping the flat outputs that are not pixels (`x >= W'`, or past
/// the last row).
#[inline(always)]
fn store_tile<const NR: usize>(
    plan: &FastPlan,
    acc: &[[f32; NR]; MR],
    (mut y, mut x): (usize, usize),
    bias: f32,
    out_tile: &mut [f32],
) {
    let (oh, ow, pw) = (plan.geo.out_height(), plan.geo.out_width(), plan.phase_w);
    let plane = oh * ow;
    if x + NR <= ow && y < oh {
        // The whole tile is inside row `y`: one contiguous run per plane.
        let at = y * ow + x;
        for (acc_m, out_plane) in acc.iter().zip(out_tile.chunks_exact_mut(plane)) {
            if let Some(dst) = out_plane
                .get_mut(at..)
                .and_then(|d| d.first_chunk_mut::<NR>())
            {
                for (d, &v) in dst.iter_mut().zip(acc_m) {
                    *d = v + bias;
                }
            }
        }
        return;
    }
    let mut j = 0;
    while j < NR && y < oh {
        // A run of the tile inside flat row `y`: columns `x .. x + run`.
        let run = (NR - j).min(pw - x);
        let keep = run.min(ow.saturating_sub(x));
        for (acc_m, out_plane) in acc.iter().zip(out_tile.chunks_exact_mut(plane)) {
            let (Some(src), Some(dst)) = (
                acc_m.get(j..j + keep),
                out_plane.get_mut(y * ow + x..y * ow + x + keep),
            ) else {
                continue;
            };
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v + bias;
            }
        }
        j += run;
        y += 1;
        x = 0;
    }
}

/// The portable tile (`MR x 8`): adds (or, unless `accumulate`, writes) to `acc` the
/// terms of the input planes that `weights` covers (`(planes, taps, MR)`), reading
/// plane `i` of them at `input[start + i*plane_len + tap ..][..8]`.
#[inline(always)]
fn tile_portable(
    weights: &[f32],
    input: &[f32],
    (start, plane_len): (usize, usize),
    taps: &[usize],
    acc: &mut [[f32; PORTABLE_NR]; MR],
    accumulate: bool,
) {
    let mut c = if accumulate {
        *acc
    } else {
        [[0.0f32; PORTABLE_NR]; MR]
    };
    let (w_terms, _) = weights.as_chunks::<MR>();
    let mut base = start;
    for w_plane in w_terms.chunks_exact(taps.len()) {
        let Some(window) = input.get(base..) else {
            break;
        };
        for (w, &tap) in w_plane.iter().zip(taps) {
            let Some(x) = window
                .get(tap..)
                .and_then(|r| r.first_chunk::<PORTABLE_NR>())
            else {
                break;
            };
            for (c_m, &w_m) in c.iter_mut().zip(w) {
                for (c_mj, &x_j) in c_m.iter_mut().zip(x) {
                    *c_mj += w_m * x_j;
                }
            }
        }
        base += plane_len;
    }
    *acc = c;
}

/// Drives the portable kernel over `tiles` (lengths checked by the caller).
pub(super) fn drive_portable(
    plan: &FastPlan,
    packed_input: &[f32],
    packed_bank: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    tiles: Range<usize>,
) {
    let taps = &plan.taps[..plan.n_taps];
    drive::<PORTABLE_NR>(
        plan,
        packed_bank,
        bias,
        out,
        tiles,
        |w, start, _, acc, add| {
            tile_portable(w, packed_input, (start, plan.plane_len), taps, acc, add)
        },
    );
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps};
    use core::ops::Range;

    use super::{AVX2_NR, FastPlan, MR, drive};

    /// The AVX2+FMA tile (`4 x 24`): 12 accumulators, 3 input vectors and one
    /// broadcast weight in the 16 ymm registers. Same contract as the portable tile.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn tile_avx2_fma(
        weights: &[f32],
        input: &[f32],
        (start, plane_len): (usize, usize),
        taps: &[usize],
        acc: &mut [[f32; AVX2_NR]; MR],
        accumulate: bool,
    ) {
        let mut c: [[__m256; 3]; MR] = if accumulate {
            bytemuck::cast(*acc)
        } else {
            [[_mm256_setzero_ps(); 3]; MR]
        };
        let (w_terms, _) = weights.as_chunks::<MR>();
        let mut base = start;
        for w_plane in w_terms.chunks_exact(taps.len()) {
            let Some(window) = input.get(base..) else {
                break;
            };
            for (w, &tap) in w_plane.iter().zip(taps) {
                let Some(x) = window.get(tap..tap + AVX2_NR) else {
                    break;
                };
                // Three 8-lane loads; the chunks always exist (`x` has 24 values).
                let lanes = |i: usize| -> __m256 {
                    let chunk = x.get(i..i + 8).and_then(|v| v.first_chunk::<8>());
                    bytemuck::cast(*chunk.unwrap_or(&[0.0; 8]))
                };
                let x = [lanes(0), lanes(8), lanes(16)];
                for (c_m, &w_m) in c.iter_mut().zip(w) {
                    let w_m = _mm256_set1_ps(w_m);
                    for (c_mj, &x_j) in c_m.iter_mut().zip(&x) {
                        *c_mj = _mm256_fmadd_ps(w_m, x_j, *c_mj);
                    }
                }
            }
            base += plane_len;
        }
        *acc = bytemuck::cast(c);
    }

    /// Drives the AVX2+FMA kernel over `tiles` (lengths checked by the caller).
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::fast) fn drive_avx2_fma(
        plan: &FastPlan,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        tiles: Range<usize>,
    ) {
        let taps = &plan.taps[..plan.n_taps];
        drive::<AVX2_NR>(
            plan,
            packed_bank,
            bias,
            out,
            tiles,
            |w, start, _, acc, add| {
                tile_avx2_fma(w, packed_input, (start, plan.plane_len), taps, acc, add)
            },
        );
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx2::drive_avx2_fma;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps};
    use core::ops::Range;

    use super::{AVX512_NR, FastPlan, MR, drive};

    /// The AVX-512 tile (`4 x 48`): 12 accumulators, 3 input vectors and one broadcast
    /// weight, half of the 32 zmm registers. Same contract as the portable tile.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn tile_avx512(
        weights: &[f32],
        input: &[f32],
        (start, plane_len): (usize, usize),
        taps: &[usize],
        acc: &mut [[f32; AVX512_NR]; MR],
        accumulate: bool,
    ) {
        let mut c: [[__m512; 3]; MR] = if accumulate {
            bytemuck::cast(*acc)
        } else {
            [[_mm512_setzero_ps(); 3]; MR]
        };
        let (w_terms, _) = weights.as_chunks::<MR>();
        let mut base = start;
        for w_plane in w_terms.chunks_exact(taps.len()) {
            let Some(window) = input.get(base..) else {
                break;
            };
            for (w, &tap) in w_plane.iter().zip(taps) {
                let Some(x) = window.get(tap..tap + AVX512_NR) else {
                    break;
                };
                // Three 16-lane loads; the chunks always exist (`x` has 48 values).
                let lanes = |i: usize| -> __m512 {
                    let chunk = x.get(i..i + 16).and_then(|v| v.first_chunk::<16>());
                    bytemuck::cast(*chunk.unwrap_or(&[0.0; 16]))
                };
                let x = [lanes(0), lanes(16), lanes(32)];
                for (c_m, &w_m) in c.iter_mut().zip(w) {
                    let w_m = _mm512_set1_ps(w_m);
                    for (c_mj, &x_j) in c_m.iter_mut().zip(&x) {
                        *c_mj = _mm512_fmadd_ps(w_m, x_j, *c_mj);
                    }
                }
            }
            base += plane_len;
        }
        *acc = bytemuck::cast(c);
    }

    /// Drives the AVX-512 kernel over `tiles` (lengths checked by the caller).
    #[target_feature(enable = "avx512f")]
    pub(in crate::fast) fn drive_avx512(
        plan: &FastPlan,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        tiles: Range<usize>,
    ) {
        let taps = &plan.taps[..plan.n_taps];
        drive::<AVX512_NR>(
            plan,
            packed_bank,
            bias,
            out,
            tiles,
            |w, start, _, acc, add| {
                tile_avx512(w, packed_input, (start, plan.plane_len), taps, acc, add)
            },
        );
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx512::drive_avx512;

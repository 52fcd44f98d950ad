//! The micro-kernels of the fast path and the driver that walks them over the output.
//!
//! A micro-kernel computes one tile: `MR` output planes times `NR` outputs,
//! accumulated in registers over every (input plane, tap) term. For a flat tile
//! (`NR` consecutive flat outputs from `n0`):
//!
//! ```text
//! acc[m][j] = sum_{c < planes_in} sum_{k < K*K} w[c][k][m] * x[c*plane_len + tap[k] + n0 + j]
//! ```
//!
//! with `w` the tile's slice of the packed bank and `x` the packed input; a row tile
//! (AVX-512) is `R` such runs of `W` outputs, `phase_w` apart. The driver owns
//! everything else: blocking, the bias and the dropped columns, so the kernels are
//! one loop nest each. Each ISA has its own kernel written out (portable, AVX2+FMA,
//! AVX-512): sharing one body between them through generic helpers made LLVM keep
//! the accumulators in memory (measured: 2.5x slower), so the loops are kept plain.

use core::ops::Range;

use super::{FastPlan, MR, MR_NZ};

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

    /// Whether [`FastPlan::compute`](super::FastPlan::compute) (and the Fourier path's
    /// compile-time entry points) can call this kernel in this build, without
    /// run-time detection: `Portable` always, the others when the build enables
    /// their CPU features.
    pub const fn is_compiled(self) -> bool {
        match self {
            Kernel::Portable => true,
            Kernel::Avx2Fma => cfg!(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            )),
            Kernel::Avx512 => cfg!(all(
                target_arch = "x86_64",
                target_feature = "avx512f",
                target_feature = "avx2",
                target_feature = "fma"
            )),
        }
    }

    /// The best kernel this build can call without run-time detection: `Avx512` when
    /// compiled for x86_64 with `avx512f`, `avx2` and `fma`, `Avx2Fma` with `avx2` and `fma` (e.g.
    /// `-C target-cpu=native`), else `Portable`.
    pub const fn compiled() -> Kernel {
        if cfg!(all(
            target_arch = "x86_64",
            target_feature = "avx512f",
            target_feature = "avx2",
            target_feature = "fma"
        )) {
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
/// Outputs per row tile (`rows * width`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // AVX-512 only
const ROW_NR: usize = 64;

/// Output tiles whose accumulators are kept while the planes are walked block by block
/// (on the stack: `CO_GROUP * MR * NR` f32, 6 KiB for the AVX2 tile). A layer with
/// more than this many [plane tiles](FastPlan::plane_tiles) and more than one
/// [block of planes](FastPlan::plane_blocks) walks several groups of tiles.
pub const CO_GROUP: usize = 16;

/// Consecutive flat-output tiles computed with the same weights while they are in L1.
const N_GROUP: usize = 4;

/// Input planes per block, chosen so that what one tile reads of a block,
/// `planes * (NR + (K-1)*(phase_w+1))` f32, fits in 24 KiB of L1 and is reused by
/// every tile of the output-plane group.
///
/// 1x1 convolutions (the Fourier path's GEMMs) do one multiply-add per plane and
/// tile row where a 3x3 does nine, so L1-sized blocks would spend a large share of
/// the time saving and reloading accumulators between blocks. They take blocks of
/// `N_GROUP` tiles' columns that fit in 384 KiB of L2 instead (measured on Zen 4:
/// the D4 16->16 32x32 Fourier layer 27.4 -> 25.2 ms, C4 64->64 56x56 14.8 -> 14.1 ms).
fn planes_per_block(plan: &FastPlan, nr: usize) -> usize {
    const L1_F32: usize = 24 * 1024 / 4;
    const L2_F32: usize = 384 * 1024 / 4;
    if plan.geo.kernel() == 1 {
        return (L2_F32 / (N_GROUP * nr)).clamp(1, plan.planes_in.max(1));
    }
    let reach = N_GROUP * nr + (plan.geo.kernel() - 1) * (plan.phase_w.get() + 1);
    (L1_F32 / reach.max(1)).clamp(1, plan.planes_in.max(1))
}

/// The tile width `NR` the driver of `kernel` runs `plan` with: the kernel's flat
/// tile, or for AVX-512 the row tile `drive_avx512` picks from the output width
/// (`debug_assert`ed there, so this cannot drift from the driver).
pub(super) fn driver_nr(plan: &FastPlan, kernel: Kernel) -> usize {
    match kernel {
        Kernel::Portable => PORTABLE_NR,
        Kernel::Avx2Fma => AVX2_NR,
        Kernel::Avx512 => match plan.row_tiles {
            Some((4, 1) | (2, 2) | (1, 4)) => ROW_NR,
            Some((3, 0)) => 56,
            Some((2, 0)) => 40,
            Some((1, 0)) => 48,
            _ => AVX512_NR,
        },
    }
}

/// [`planes_per_block`] of the driver of `kernel` (see [`driver_nr`]).
pub(super) fn kernel_planes_per_block(plan: &FastPlan, kernel: Kernel) -> usize {
    planes_per_block(plan, driver_nr(plan, kernel))
}

/// How a kernel's tiles cover one output plane: where each tile starts on the flat
/// output index and how it is written back.
trait Tiling<const NR: usize> {
    /// Number of tiles per plane.
    fn count(&self) -> usize;
    /// Flat index (`y*phase_w + x`) of tile `j`'s first output.
    fn start(&self, j: usize) -> usize;
    /// Writes tile `j` (`MR` planes) to `out_tile` (those planes, `(MR, H', W')`)
    /// with `bias` added.
    fn store(&self, acc: &[[f32; NR]; MR], j: usize, bias: f32, out_tile: &mut [f32]);
}

/// Tiles of `NR` consecutive flat outputs; the flat outputs that are not pixels
/// (`x >= W'`, the `K-1` columns between rows) are computed and dropped.
struct FlatTiles<'a>(&'a FastPlan);

impl<const NR: usize> Tiling<NR> for FlatTiles<'_> {
    fn count(&self) -> usize {
        self.0.n_flat.div_ceil(NR)
    }
    fn start(&self, j: usize) -> usize {
        j * NR
    }
    #[inline(always)]
    fn store(&self, acc: &[[f32; NR]; MR], j: usize, bias: f32, out_tile: &mut [f32]) {
        let n0 = j * NR;
        let at = (n0 / self.0.phase_w, n0 % self.0.phase_w);
        store_tile(self.0, acc, at, bias, out_tile);
    }
}

/// Tiles of `rows` output rows by `width` columns, `rows * width = NR`, that never
/// cross a row end: no dropped outputs when `width` divides `W'` (rows past the last
/// one are computed and dropped).
#[cfg(target_arch = "x86_64")]
struct RowTiles<'a> {
    plan: &'a FastPlan,
    width: usize,
    rows: usize,
}

#[cfg(target_arch = "x86_64")]
impl RowTiles<'_> {
    /// Tiles per band of `rows` output rows.
    fn per_band(&self) -> usize {
        self.plan.geo.out_width() / self.width
    }
}

#[cfg(target_arch = "x86_64")]
impl<const NR: usize> Tiling<NR> for RowTiles<'_> {
    fn count(&self) -> usize {
        self.plan.geo.out_height().div_ceil(self.rows) * self.per_band()
    }
    fn start(&self, j: usize) -> usize {
        let (band, seg) = (j / self.per_band(), j % self.per_band());
        band * self.rows * self.plan.phase_w.get() + seg * self.width
    }
    #[inline(always)]
    fn store(&self, acc: &[[f32; NR]; MR], j: usize, bias: f32, out_tile: &mut [f32]) {
        let ow = self.plan.geo.out_width();
        let (band, seg) = (j / self.per_band(), j % self.per_band());
        let (y0, x0) = (band * self.rows, seg * self.width);
        let plane = self.plan.out_plane.get();
        for (acc_m, out_plane) in acc.iter().zip(out_tile.chunks_exact_mut(plane)) {
            for (r, src) in acc_m.chunks_exact(self.width).enumerate().take(self.rows) {
                let y = y0 + r;
                let Some(dst) = out_plane.get_mut(y * ow + x0..y * ow + x0 + self.width) else {
                    // Rows past the last one are computed and dropped; any other row
                    // is inside the plane.
                    debug_assert!(y >= self.plan.geo.out_height(), "row tile: row {y} cut");
                    break;
                };
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v + bias;
                }
            }
        }
    }
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
    tiling: &impl Tiling<NR>,
    packed_bank: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    tiles: Range<usize>,
    mut tile: impl FnMut(&[f32], usize, usize, &mut [[f32; NR]; MR], bool),
) {
    let terms = plan.n_taps * MR; // packed weights per input plane and tile
    let filter = plan.planes_in * terms;
    let plane = plan.out_plane.get();
    let block = planes_per_block(plan, NR);
    let mut one = [[0.0f32; NR]; MR];
    let channel_shift = (plan.geo.nto() / MR).trailing_zeros();
    debug_assert!(
        tiles.end <= plan.plane_tiles() && out.len() == tiles.len() * MR * plane,
        "fast drive: tiles or output not checked by the caller"
    );
    debug_assert!(
        packed_bank.len() == plan.plane_tiles() * filter,
        "fast drive: packed bank not checked by the caller"
    );
    // The tile's planes `t*MR ..` are orientations of G-channel `t*MR / nto = t >>
    // channel_shift` (`nto / MR` is 1 or 2); `bias` has one value per G-channel.
    let bias_of = |t: usize| {
        let b = bias.map(|b| b.get(t >> channel_shift).copied());
        debug_assert!(b != Some(None), "fast drive: bias shorter than C_out");
        b.flatten().unwrap_or(0.0)
    };
    if block >= plan.planes_in {
        // Few input planes (lifting layers): the whole input stays in cache, so each
        // plane tile sweeps the image and writes its planes front to back.
        // `MR` nonzero planes, as a `NonZeroUsize`: the chunk size has no panic path.
        let Some(tile_len) = plan.out_plane.checked_mul(MR_NZ) else {
            debug_assert!(
                false,
                "fast drive: tile size overflows (the output length did not)"
            );
            return;
        };
        for (t, out_tile) in tiles.zip(out.chunks_exact_mut(tile_len.get())) {
            let Some(weights) = packed_bank.get(t * filter..(t + 1) * filter) else {
                debug_assert!(
                    false,
                    "fast drive: weights of tile {t} past the packed bank"
                );
                return;
            };
            let b = bias_of(t);
            for j in 0..tiling.count() {
                let n0 = tiling.start(j);
                tile(weights, n0, n0, &mut one, false);
                tiling.store(&one, j, b, out_tile);
            }
        }
        return;
    }
    let mut accs = [[[[0.0f32; NR]; MR]; N_GROUP]; CO_GROUP];
    let n_tiles = tiling.count();
    let mut first = 0;
    while first < n_tiles {
        // Tiles `first .. first + count`.
        let count = N_GROUP.min(n_tiles - first);
        let mut t0 = tiles.start;
        while t0 < tiles.end {
            let t1 = (t0 + CO_GROUP).min(tiles.end);
            let mut p0 = 0;
            while p0 < plan.planes_in {
                let p1 = (p0 + block).min(plan.planes_in);
                for (t, acc_t) in (t0..t1).zip(accs.iter_mut()) {
                    let start = t * filter + p0 * terms;
                    let Some(weights) = packed_bank.get(start..start + (p1 - p0) * terms) else {
                        debug_assert!(
                            false,
                            "fast drive: weights of tile {t} past the packed bank"
                        );
                        return;
                    };
                    for (j, acc) in acc_t.iter_mut().enumerate().take(count) {
                        let n0 = tiling.start(first + j);
                        tile(weights, p0 * plan.plane_len + n0, n0, acc, p0 > 0);
                    }
                }
                p0 = p1;
            }
            for (t, acc_t) in (t0..t1).zip(accs.iter()) {
                let start = (t - tiles.start) * MR * plane;
                let Some(out_tile) = out.get_mut(start..start + MR * plane) else {
                    debug_assert!(false, "fast drive: tile {t} past the output");
                    return;
                };
                let b = bias_of(t);
                for (j, acc) in acc_t.iter().enumerate().take(count) {
                    tiling.store(acc, first + j, b, out_tile);
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
    let (oh, ow) = (plan.geo.out_height(), plan.geo.out_width());
    let pw = plan.phase_w.get();
    let plane = plan.out_plane.get();
    if x + NR <= ow && y < oh {
        // The whole tile is inside row `y`: one contiguous run per plane.
        let at = y * ow + x;
        for (acc_m, out_plane) in acc.iter().zip(out_tile.chunks_exact_mut(plane)) {
            match out_plane
                .get_mut(at..)
                .and_then(|d| d.first_chunk_mut::<NR>())
            {
                Some(dst) => {
                    for (d, &v) in dst.iter_mut().zip(acc_m) {
                        *d = v + bias;
                    }
                }
                None => debug_assert!(false, "fast store: tile inside row {y} cut"),
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
                // Only an empty run (the dropped columns past the last row's end)
                // can fall outside the plane.
                debug_assert!(
                    keep == 0,
                    "fast store: run of row {y} outside the tile or plane"
                );
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
    // A plan has `K*K >= 1` taps; `max(1)` (here and in the x86 tiles) only takes the
    // panic path of a zero chunk size out of the code.
    for w_plane in w_terms.chunks_exact(taps.len().max(1)) {
        let Some(window) = input.get(base..) else {
            debug_assert!(false, "fast tile: input plane past the packed input");
            break;
        };
        for (w, &tap) in w_plane.iter().zip(taps) {
            let Some(x) = window
                .get(tap..)
                .and_then(|r| r.first_chunk::<PORTABLE_NR>())
            else {
                debug_assert!(
                    false,
                    "fast tile: tap window past the packed input (tail room)"
                );
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
    let taps = plan.tap_offsets();
    drive::<PORTABLE_NR>(
        plan,
        &FlatTiles(plan),
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

    use super::{AVX2_NR, FastPlan, FlatTiles, MR, drive};

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
        for w_plane in w_terms.chunks_exact(taps.len().max(1)) {
            let Some(window) = input.get(base..) else {
                debug_assert!(false, "fast tile: input plane past the packed input");
                break;
            };
            for (w, &tap) in w_plane.iter().zip(taps) {
                let Some(x) = window.get(tap..tap + AVX2_NR) else {
                    debug_assert!(
                        false,
                        "fast tile: tap window past the packed input (tail room)"
                    );
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
        let taps = plan.tap_offsets();
        drive::<AVX2_NR>(
            plan,
            &FlatTiles(plan),
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
    use core::arch::x86_64::{
        __m512, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm512_fmadd_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };
    use core::ops::Range;

    use super::{AVX512_NR, FastPlan, FlatTiles, Kernel, MR, ROW_NR, RowTiles, drive, driver_nr};

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
        for w_plane in w_terms.chunks_exact(taps.len().max(1)) {
            let Some(window) = input.get(base..) else {
                debug_assert!(false, "fast tile: input plane past the packed input");
                break;
            };
            for (w, &tap) in w_plane.iter().zip(taps) {
                let Some(x) = window.get(tap..tap + AVX512_NR) else {
                    debug_assert!(
                        false,
                        "fast tile: tap window past the packed input (tail room)"
                    );
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

    /// The AVX-512 row tile: `MR` planes by `R` output rows by `V` 16-lane vectors
    /// (`R*V = 4`, 16 accumulators), rows `phase_w` apart on the flat index. Same
    /// contract as the portable tile, with `acc[m]` holding the `R` rows one after
    /// the other.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn tile_avx512_rows<const V: usize, const R: usize>(
        weights: &[f32],
        input: &[f32],
        (start, plane_len, row_len): (usize, usize, usize),
        taps: &[usize],
        acc: &mut [[f32; ROW_NR]; MR],
        accumulate: bool,
    ) {
        let mut c: [[[__m512; V]; R]; MR] = if accumulate {
            bytemuck::must_cast(*acc)
        } else {
            [[[_mm512_setzero_ps(); V]; R]; MR]
        };
        let (w_terms, _) = weights.as_chunks::<MR>();
        let mut base = start;
        'planes: for w_plane in w_terms.chunks_exact(taps.len().max(1)) {
            let Some(window) = input.get(base..) else {
                debug_assert!(false, "fast tile: input plane past the packed input");
                break;
            };
            for (w, &tap) in w_plane.iter().zip(taps) {
                let mut x = [[_mm512_setzero_ps(); V]; R];
                for (r, x_r) in x.iter_mut().enumerate() {
                    let at = tap + r * row_len;
                    let Some(row) = window.get(at..at + 16 * V) else {
                        debug_assert!(
                            false,
                            "fast tile: tap window past the packed input (tail room)"
                        );
                        break 'planes;
                    };
                    for (x_rv, chunk) in x_r.iter_mut().zip(row.chunks_exact(16)) {
                        let lanes = chunk.first_chunk::<16>().unwrap_or(&[0.0; 16]);
                        *x_rv = bytemuck::cast(*lanes);
                    }
                }
                for (c_m, &w_m) in c.iter_mut().zip(w) {
                    let w_m = _mm512_set1_ps(w_m);
                    for (c_mr, x_r) in c_m.iter_mut().zip(&x) {
                        for (c_mrv, &x_rv) in c_mr.iter_mut().zip(x_r) {
                            *c_mrv = _mm512_fmadd_ps(w_m, x_rv, *c_mrv);
                        }
                    }
                }
            }
            base += plane_len;
        }
        *acc = bytemuck::must_cast(c);
    }

    /// The AVX-512 row tile for widths `16V + 8`: as [`tile_avx512_rows`] with an
    /// 8-lane (ymm) vector after the `V` 16-lane ones in every row, so that widths
    /// 24, 40 and 56 are covered with no dropped outputs (an 8-lane FMA costs half a
    /// 16-lane one on CPUs that split 512-bit operations). `acc[m]` holds the `R`
    /// rows of `16V + 8` values one after the other.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn tile_avx512_rows_y<const V: usize, const R: usize, const NR: usize>(
        weights: &[f32],
        input: &[f32],
        (start, plane_len, row_len): (usize, usize, usize),
        taps: &[usize],
        acc: &mut [[f32; NR]; MR],
        accumulate: bool,
    ) {
        let width = 16 * V + 8;
        let mut cz = [[[_mm512_setzero_ps(); V]; R]; MR];
        let mut cy = [[_mm256_setzero_ps(); R]; MR];
        if accumulate {
            for ((acc_m, cz_m), cy_m) in acc.iter().zip(&mut cz).zip(&mut cy) {
                for ((row, cz_mr), cy_mr) in acc_m.chunks_exact(width).zip(cz_m).zip(cy_m) {
                    for (c, chunk) in cz_mr.iter_mut().zip(row.chunks_exact(16)) {
                        *c = bytemuck::cast(*chunk.first_chunk::<16>().unwrap_or(&[0.0; 16]));
                    }
                    let tail = row.get(16 * V..).and_then(|t| t.first_chunk::<8>());
                    *cy_mr = bytemuck::cast(*tail.unwrap_or(&[0.0; 8]));
                }
            }
        }
        let (w_terms, _) = weights.as_chunks::<MR>();
        let mut base = start;
        'planes: for w_plane in w_terms.chunks_exact(taps.len().max(1)) {
            let Some(window) = input.get(base..) else {
                debug_assert!(false, "fast tile: input plane past the packed input");
                break;
            };
            for (w, &tap) in w_plane.iter().zip(taps) {
                let mut xz = [[_mm512_setzero_ps(); V]; R];
                let mut xy = [_mm256_setzero_ps(); R];
                for (r, (xz_r, xy_r)) in xz.iter_mut().zip(&mut xy).enumerate() {
                    let at = tap + r * row_len;
                    let Some(row) = window.get(at..at + width) else {
                        debug_assert!(
                            false,
                            "fast tile: tap window past the packed input (tail room)"
                        );
                        break 'planes;
                    };
                    for (x, chunk) in xz_r.iter_mut().zip(row.chunks_exact(16)) {
                        *x = bytemuck::cast(*chunk.first_chunk::<16>().unwrap_or(&[0.0; 16]));
                    }
                    let tail = row.get(16 * V..).and_then(|t| t.first_chunk::<8>());
                    *xy_r = bytemuck::cast(*tail.unwrap_or(&[0.0; 8]));
                }
                for ((cz_m, cy_m), &w_m) in cz.iter_mut().zip(&mut cy).zip(w) {
                    let wz = _mm512_set1_ps(w_m);
                    let wy = _mm256_set1_ps(w_m);
                    for ((cz_mr, cy_mr), (xz_r, &xy_r)) in
                        cz_m.iter_mut().zip(cy_m.iter_mut()).zip(xz.iter().zip(&xy))
                    {
                        for (c, &x) in cz_mr.iter_mut().zip(xz_r) {
                            *c = _mm512_fmadd_ps(wz, x, *c);
                        }
                        *cy_mr = _mm256_fmadd_ps(wy, xy_r, *cy_mr);
                    }
                }
            }
            base += plane_len;
        }
        for ((acc_m, cz_m), cy_m) in acc.iter_mut().zip(&cz).zip(&cy) {
            for ((row, cz_mr), &cy_mr) in acc_m.chunks_exact_mut(width).zip(cz_m).zip(cy_m) {
                for (chunk, &c) in row.chunks_exact_mut(16).zip(cz_mr) {
                    if let Some(d) = chunk.first_chunk_mut::<16>() {
                        *d = bytemuck::cast(c);
                    }
                }
                if let Some(d) = row.get_mut(16 * V..).and_then(|t| t.first_chunk_mut::<8>()) {
                    *d = bytemuck::cast(cy_mr);
                }
            }
        }
    }

    /// Drives the AVX-512 kernel over `tiles` (lengths checked by the caller): row
    /// tiles when the output width is a multiple of 16 or one of 24, 40, 56 (no
    /// dropped columns), else flat tiles.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(in crate::fast) fn drive_avx512(
        plan: &FastPlan,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        tiles: Range<usize>,
    ) {
        let taps = plan.tap_offsets();
        let at = |start| (start, plan.plane_len, plan.phase_w.get());
        macro_rules! rows {
            ($v:literal, $r:literal) => {{
                debug_assert_eq!(driver_nr(plan, Kernel::Avx512), ROW_NR);
                let tiling = RowTiles {
                    plan,
                    width: 16 * $v,
                    rows: $r,
                };
                drive::<ROW_NR>(
                    plan,
                    &tiling,
                    packed_bank,
                    bias,
                    out,
                    tiles,
                    |w, start, _, acc, add| {
                        tile_avx512_rows::<$v, $r>(w, packed_input, at(start), taps, acc, add)
                    },
                )
            }};
        }
        macro_rules! rows_y {
            ($v:literal, $r:literal, $nr:literal) => {{
                debug_assert_eq!(driver_nr(plan, Kernel::Avx512), $nr);
                let tiling = RowTiles {
                    plan,
                    width: 16 * $v + 8,
                    rows: $r,
                };
                drive::<$nr>(
                    plan,
                    &tiling,
                    packed_bank,
                    bias,
                    out,
                    tiles,
                    |w, start, _, acc, add| {
                        tile_avx512_rows_y::<$v, $r, $nr>(
                            w,
                            packed_input,
                            at(start),
                            taps,
                            acc,
                            add,
                        )
                    },
                )
            }};
        }
        match plan.row_tiles {
            Some((4, 1)) => rows!(4, 1),
            Some((2, 2)) => rows!(2, 2),
            Some((1, 4)) => rows!(1, 4),
            // Widths 56, 40 and 24: `V` 16-lane vectors and one 8-lane vector.
            Some((3, 0)) => rows_y!(3, 1, 56),
            Some((2, 0)) => rows_y!(2, 1, 40),
            Some((1, 0)) => rows_y!(1, 2, 48),
            _ => {
                debug_assert_eq!(driver_nr(plan, Kernel::Avx512), AVX512_NR);
                drive::<AVX512_NR>(
                    plan,
                    &FlatTiles(plan),
                    packed_bank,
                    bias,
                    out,
                    tiles,
                    |w, start, _, acc, add| {
                        tile_avx512(w, packed_input, (start, plan.plane_len), taps, acc, add)
                    },
                )
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx512::drive_avx512;

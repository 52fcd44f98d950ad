//! The driver every int8 micro-kernel runs under: blocking, the per-tile epilogue and
//! the stores (the f32 fast path's driver, `crate::fast::tile`, with int32
//! accumulators and an int8 output).
//!
//! A micro-kernel is two functions, given to [`drive`] as closures:
//!
//! ```text
//! tile(weights, (g0, g1), start, acc, accumulate):
//!     acc[m][j] (+)= sum_{k < K*K} sum_{g0 <= g < g1} dot(weights[k][g][m], packed[start + (g-g0)*group_len + tap[k] + j])
//! finish(acc, quant, y):
//!     y[m][j] = quant.output(acc[m][j])   (the requantization, in registers)
//! ```
//!
//! (`tile` may take up to `P` consecutive plane tiles at once, see [`drive`]) with
//! `weights` the tile's packed units `(K*K, groups, MR)`, `start` the flat output
//! `j = 0` in group `g0`, and `dot` the product of the `R` narrow lanes of two units
//! summed into an int32 (wrapping). The taps are the outer loop and the groups the
//! inner one, so that the inner loop steps through the input and the weights at
//! constant strides (no tap-table lookup per step). Everything else is here.

use core::ops::Range;

use super::{MR, QFastPlan, Run, TileQuant};
use crate::quant::Multiplier;

/// Output tiles whose accumulators are kept while the unit groups are walked block by
/// block (on the stack: `CO_GROUP * N_GROUP * MR * NR` int32, 48 KiB at `NR = 48`).
const CO_GROUP: usize = 16;

/// Consecutive flat-output tiles computed with the same weights while they are in L1.
const N_GROUP: usize = 4;

/// Unit groups per block, so that what one tile reads of a block,
/// `groups * (N_GROUP*NR + (K-1)*(phase_w+1))` units, fits in 24 KiB of L1 and is
/// reused by every tile of the output-plane group.
fn groups_per_block(plan: &QFastPlan, nr: usize) -> usize {
    const L1_UNITS: usize = 24 * 1024 / 4;
    let reach = N_GROUP * nr + (plan.geo.kernel() - 1) * (plan.phase_w.get() + 1);
    (L1_UNITS / reach.max(1)).clamp(1, plan.groups.max(1))
}

/// Walks output planes `tiles.start*MR .. tiles.end*MR` of one image one tile of `NR`
/// flat outputs at a time, as the f32 driver: layers whose unit groups fit in one
/// block sweep each plane tile over the image; others take [`N_GROUP`] flat tiles and
/// [`CO_GROUP`] plane tiles at a time and walk the groups in blocks, accumulating.
/// Each finished tile is requantized by `finish` and its pixels stored to `out`.
/// Lengths were checked by the caller.
///
/// The plane tiles are handed to `tile` up to `P` at a time (consecutive tiles, whose
/// packed weights are consecutive: `weights` holds `n * K*K * groups * MR` units and
/// `acc` `n` tiles, `1 <= n <= P`), so that a kernel can reuse each input vector it
/// loads across `P * MR` output planes.
#[inline(always)]
pub(super) fn drive<const NR: usize, const P: usize>(
    plan: &QFastPlan,
    run: &Run<'_>,
    out: &mut [i8],
    tiles: Range<usize>,
    mut tile: impl FnMut(&[i32], (usize, usize), usize, &mut [[[i32; NR]; MR]], bool),
    mut finish: impl FnMut(&[[i32; NR]; MR], Multiplier, &TileQuant, &mut [[i8; NR]; MR]),
) {
    let filter = plan.n_taps * plan.groups * MR; // packed units per tile
    let plane = plan.out_plane.get();
    let n_tiles = plan.n_flat.div_ceil(NR);
    let block = groups_per_block(plan, NR);
    let channel_shift = (plan.geo.nto() / MR).trailing_zeros();
    let mut y = [[0i8; NR]; MR];
    if block >= plan.groups {
        let mut one = [[[0i32; NR]; MR]; P];
        let mut t0 = tiles.start;
        while t0 < tiles.end {
            let n = P.min(tiles.end - t0);
            let Some(weights) = run.weights.get(t0 * filter..(t0 + n) * filter) else {
                debug_assert!(false, "int8 drive: `weights` outside its buffer");
                return;
            };
            // The epilogue of each plane tile, once for all its flat tiles. Only the
            // first `n >= 1` are used; the rest of the array repeats the last of them
            // rather than asking for a channel past the layer's.
            let quants: [(Multiplier, TileQuant); P] =
                core::array::from_fn(|i| run.tile_quant((t0 + i.min(n - 1)) >> channel_shift));
            for j in 0..n_tiles {
                tile(weights, (0, plan.groups), j * NR, &mut one[..n], false);
                for ((t, acc), (m, quant)) in (t0..t0 + n).zip(&one).zip(&quants) {
                    let start = (t - tiles.start) * MR * plane;
                    let Some(out_tile) = out.get_mut(start..start + MR * plane) else {
                        debug_assert!(false, "int8 drive: `out_tile` outside its buffer");
                        return;
                    };
                    finish(acc, *m, quant, &mut y);
                    store_tile(plan, &y, j * NR, out_tile);
                }
            }
            t0 += n;
        }
        return;
    }
    // `accs[j][t]`: flat tile `j`, plane tile `t0 + t`; consecutive plane tiles are
    // consecutive, as `tile` takes them.
    let mut accs = [[[[0i32; NR]; MR]; CO_GROUP]; N_GROUP];
    let mut first = 0;
    while first < n_tiles {
        let count = N_GROUP.min(n_tiles - first);
        let mut t0 = tiles.start;
        while t0 < tiles.end {
            let t1 = (t0 + CO_GROUP).min(tiles.end);
            let mut g0 = 0;
            while g0 < plan.groups {
                let g1 = (g0 + block).min(plan.groups);
                let mut t = t0;
                while t < t1 {
                    let n = P.min(t1 - t);
                    let Some(weights) = run.weights.get(t * filter..(t + n) * filter) else {
                        debug_assert!(false, "int8 drive: `weights` outside its buffer");
                        return;
                    };
                    for (j, acc_j) in accs.iter_mut().enumerate().take(count) {
                        let n0 = (first + j) * NR;
                        let Some(acc) = acc_j.get_mut(t - t0..t - t0 + n) else {
                            debug_assert!(false, "int8 drive: `acc` outside its buffer");
                            return;
                        };
                        tile(weights, (g0, g1), g0 * plan.group_len + n0, acc, g0 > 0);
                    }
                    t += n;
                }
                g0 = g1;
            }
            for t in t0..t1 {
                let start = (t - tiles.start) * MR * plane;
                let Some(out_tile) = out.get_mut(start..start + MR * plane) else {
                    debug_assert!(false, "int8 drive: `out_tile` outside its buffer");
                    return;
                };
                let (m, quant) = run.tile_quant(t >> channel_shift);
                for (j, acc_j) in accs.iter().enumerate().take(count) {
                    match acc_j.get(t - t0) {
                        Some(acc) => {
                            finish(acc, m, &quant, &mut y);
                            store_tile(plan, &y, (first + j) * NR, out_tile);
                        }
                        None => debug_assert!(false, "int8 drive: tile {t} of a group"),
                    }
                }
            }
            t0 = t1;
        }
        first += count;
    }
}

/// Writes the pixels of tile `y` (flat outputs `n0 .. n0 + NR` of `MR` planes) to
/// `out_tile` (those planes, `(MR, H', W')`), skipping the flat outputs that are not
/// pixels (`x >= W'`, or past the last row).
#[inline(always)]
fn store_tile<const NR: usize>(
    plan: &QFastPlan,
    y: &[[i8; NR]; MR],
    n0: usize,
    out_tile: &mut [i8],
) {
    let (oh, ow) = (plan.geo.out_height(), plan.geo.out_width());
    let pw = plan.phase_w.get();
    let plane = plan.out_plane.get();
    let (mut row, mut x) = (n0 / pw, n0 % pw);
    let mut j = 0;
    while j < NR && row < oh {
        // A run of the tile inside flat row `row`: columns `x .. x + run`.
        let run = (NR - j).min(pw - x);
        let keep = run.min(ow.saturating_sub(x));
        if keep > 0 {
            for (y_m, out_plane) in y.iter().zip(out_tile.chunks_exact_mut(plane)) {
                match (
                    y_m.get(j..j + keep),
                    out_plane.get_mut(row * ow + x..row * ow + x + keep),
                ) {
                    (Some(src), Some(dst)) => copy_run(dst, src),
                    _ => debug_assert!(false, "int8 store: run of row {row} outside the tile"),
                }
            }
        }
        j += run;
        row += 1;
        x = 0;
    }
}

/// `dst.copy_from_slice(src)` for the short runs of a tile (equal lengths, at most
/// `NR`), by fixed-size chunks that overlap at the end instead of a `memcpy` call
/// (which cost more than the requantization on the 56x56 layers).
#[inline(always)]
fn copy_run(dst: &mut [i8], src: &[i8]) {
    fn chunks<const N: usize>(dst: &mut [i8], src: &[i8]) {
        let n = dst.len().min(src.len());
        let mut at = 0;
        while at < n {
            // The last chunk ends at `n` (overlapping the one before); `n >= N`.
            let start = at.min(n - N);
            match (
                dst.get_mut(start..).and_then(|d| d.first_chunk_mut::<N>()),
                src.get(start..).and_then(|s| s.first_chunk::<N>()),
            ) {
                (Some(d), Some(s)) => *d = *s,
                _ => debug_assert!(false, "int8 copy_run: chunk at {start} of {n}"),
            }
            at += N;
        }
    }
    match dst.len().min(src.len()) {
        0 => {}
        n if n >= 16 => chunks::<16>(dst, src),
        n if n >= 8 => chunks::<8>(dst, src),
        n if n >= 4 => chunks::<4>(dst, src),
        _ => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s;
            }
        }
    }
}

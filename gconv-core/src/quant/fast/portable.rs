//! The portable int8 micro-kernel: plain Rust on int16 pairs ([`Layout::Pairs`]),
//! widened to int32, for any target (auto-vectorized for whatever the build targets).
//! Tile `MR x 8`; the epilogue is the scalar [`Requant::output`].
//!
//! [`Layout::Pairs`]: super::Layout::Pairs
//! [`Requant::output`]: crate::quant::Requant

use core::ops::Range;

use super::{MR, QFastPlan, Run, TileQuant, drive};
use crate::quant::Multiplier;

/// Flat outputs per tile.
pub(super) const NR: usize = 8;

/// Adds (or, unless `accumulate`, writes) to `acc` the terms of unit groups
/// `g0..g1` (`groups`) of the tile's packed weights `(taps, n_groups, MR)`, reading
/// group `g0 + i` at `input[start + i*group_len + tap ..][..NR]`:
/// `acc[m][j] += lo(w) * lo(x) + hi(w) * hi(x)` (int16 halves, wrapping int32 sum).
/// Taps outer, groups inner (see the driver).
#[inline(always)]
fn tile(
    weights: &[i32],
    input: &[i32],
    (start, group_len, n_groups): (usize, usize, usize),
    groups: (usize, usize),
    taps: &[usize],
    acc: &mut [[i32; NR]; MR],
    accumulate: bool,
) {
    let mut c = if accumulate { *acc } else { [[0i32; NR]; MR] };
    let (w_units, _) = weights.as_chunks::<MR>();
    let (g0, g1) = groups;
    'taps: for (k, &tap) in taps.iter().enumerate() {
        let Some(w_tap) = w_units.get(k * n_groups + g0..k * n_groups + g1) else {
            debug_assert!(false, "int8 portable tile: `w_tap` outside its buffer");
            break;
        };
        let mut at = start + tap;
        for w in w_tap {
            let Some(x) = input.get(at..at + NR).and_then(|x| x.first_chunk::<NR>()) else {
                debug_assert!(false, "int8 portable tile: `x` outside its buffer");
                break 'taps;
            };
            at += group_len;
            // Sign-extended halves: int8-range values, so every product and the sum
            // of two fit in int32 with room to spare.
            let lo = x.map(|u| i32::from(u as i16));
            let hi = x.map(|u| u >> 16);
            for (c_m, &w_m) in c.iter_mut().zip(w) {
                let (w_lo, w_hi) = (i32::from(w_m as i16), w_m >> 16);
                for ((c_mj, &l), &h) in c_m.iter_mut().zip(&lo).zip(&hi) {
                    *c_mj = c_mj.wrapping_add(l * w_lo + h * w_hi);
                }
            }
        }
    }
    *acc = c;
}

/// The scalar epilogue: `y[m][j] = clamp(M.apply(acc + offset) + zp_out, lo, hi)`.
#[inline(always)]
fn finish(acc: &[[i32; NR]; MR], m: Multiplier, quant: &TileQuant, y: &mut [[i8; NR]; MR]) {
    for (y_m, acc_m) in y.iter_mut().zip(acc) {
        for (v, &a) in y_m.iter_mut().zip(acc_m) {
            *v = quant.output(m, a);
        }
    }
}

/// Drives the portable kernel over `tiles` (lengths checked by the caller).
pub(super) fn drive(
    plan: &QFastPlan,
    run: &Run<'_>,
    packed: &[i32],
    out: &mut [i8],
    tiles: Range<usize>,
) {
    let taps = plan.tap_offsets();
    drive::drive::<NR, 1>(
        plan,
        run,
        out,
        tiles,
        |w, groups, start, acc, add| {
            if let Some(acc) = acc.first_mut() {
                tile(
                    w,
                    packed,
                    (start, plan.group_len, plan.groups),
                    groups,
                    taps,
                    acc,
                    add,
                )
            }
        },
        finish,
    );
}

//! Packing the operands of the int8 fast path: the weights once per weight change
//! (expanded straight from the raw weights with the index tables), the input once per
//! image. Plain Rust; the callers in `mod.rs` have checked every length.

use core::num::NonZeroUsize;

use super::{Layout, MR, QFastPlan, QKernel};
use crate::group::tables::entry_in_range;

/// The unit of `values` (`R` of them, `values[0]` the first plane) in `layout`:
/// int16 pairs (low half first) or bytes (lowest first), each value plus `offset`
/// (0, or 128 for the unsigned input bytes of `Quads`, which is `x ^ 0x80`).
#[inline(always)]
fn unit(layout: Layout, values: [i8; 4], offset: u8) -> i32 {
    match layout {
        Layout::Pairs => {
            let lo = i32::from(values[0]) & 0xffff;
            let hi = i32::from(values[1]) << 16;
            lo | hi
        }
        Layout::Quads => i32::from_le_bytes(values.map(|v| v.cast_unsigned() ^ offset)),
    }
}

/// Expands and packs the raw weights `(C_out, C_in, nti, K, K)` into `prepared`:
/// `(tiles, K*K, groups, MR)` units of the expanded bank, then the `C_out` sums of
/// the raw weights (see [`QFastPlan::prepare_weights`]).
pub(super) fn prepare_weights(plan: &QFastPlan, raw: &[i8], prepared: &mut [i32]) {
    let geo = &plan.geo;
    let (nti, nto, k) = (geo.nti(), geo.nto(), geo.kernel());
    let c_in = geo.in_channels();
    let layout = plan.kernel.layout();
    let per_unit = plan.per_unit.get();
    let taps = plan.n_taps;
    let (units, sums) = prepared.split_at_mut(plan.packed_weights_len());
    // Nonzero for a validated geometry; as `NonZeroUsize` the chunk sizes have no
    // panic path.
    let (Some(tile_len), Some(filter_len)) = (
        NonZeroUsize::new(plan.groups * taps * MR),
        NonZeroUsize::new(c_in * nti * taps),
    ) else {
        return;
    };
    // The AVX2 kernel walks the taps inside each group: `(groups, K*K, MR)` per tile.
    let group_major = plan.kernel == QKernel::Avx2Madd;
    for (tile, tile_units) in units.chunks_exact_mut(tile_len.get()).enumerate() {
        for tap in 0..taps {
            for g in 0..plan.groups {
                let (u, v) = (tap / k, tap % k);
                for m in 0..MR {
                    let plane_out = tile * MR + m;
                    let (o, t) = (plane_out / nto, plane_out % nto);
                    let row = raw.get(o * filter_len.get()..).unwrap_or(&[]);
                    let mut values = [0i8; 4];
                    for (lane, value) in values.iter_mut().enumerate().take(per_unit) {
                        let plane_in = g * per_unit + lane;
                        if plane_in >= plan.planes_in {
                            break;
                        }
                        let (i, s) = (plane_in / nti, plane_in % nti);
                        let (tt, su, sv) = entry_in_range(nti, k, t, s, u, v);
                        *value = row
                            .get(((i * nti + tt) * k + su) * k + sv)
                            .copied()
                            .unwrap_or(0);
                    }
                    let at = if group_major {
                        (g * taps + tap) * MR + m
                    } else {
                        (tap * plan.groups + g) * MR + m
                    };
                    if let Some(slot) = tile_units.get_mut(at) {
                        *slot = unit(layout, values, 0);
                    }
                }
            }
        }
    }
    for (sum, row) in sums.iter_mut().zip(raw.chunks_exact(filter_len.get())) {
        *sum = row
            .iter()
            .fold(0i32, |acc, &w| acc.wrapping_add(i32::from(w)));
    }
}

/// One image `(planes_in, H, W)` to its packed form: every unit of `packed` is first
/// set to the padding unit (the zero point in every lane), then each group's planes
/// are written into their stride phases. Padded sample `(i, j)` (input
/// `(i - top, j - left)`) goes to phase `(i % s, j % s)`, row `i / s`, column `j / s`.
pub(super) fn pack_input(plan: &QFastPlan, zero_point: i32, image: &[i8], packed: &mut [i32]) {
    let layout = plan.kernel.layout();
    let offset = layout.input_offset() as u8;
    let zp = zero_point.clamp(-128, 127) as i8;
    let pad = unit(layout, [zp; 4], offset);
    let geo = &plan.geo;
    let (w, s) = (geo.width(), plan.stride);
    let [top, _, left, _] = geo.padding();
    let (ph, pw) = (plan.phase_h, plan.phase_w.get());
    let phase_len = ph * pw;
    let per_unit = plan.per_unit.get();
    let (Some(hw), Some(group_len), Some(width)) = (
        NonZeroUsize::new(geo.height() * w),
        NonZeroUsize::new(plan.group_len),
        NonZeroUsize::new(w),
    ) else {
        packed.fill(pad);
        return;
    };
    if s.get() == 1 {
        pack_rows(
            plan,
            (zp, offset, pad),
            image,
            packed,
            (hw, group_len, width),
        );
        return;
    }
    packed.fill(pad);
    let mut planes = image.chunks_exact(hw.get());
    for dst in packed.chunks_exact_mut(group_len.get()).take(plan.groups) {
        // The group's planes; past the last plane, a plane of zero points (`None`).
        let mut group: [Option<&[i8]>; 4] = [None; 4];
        for slot in group.iter_mut().take(per_unit) {
            *slot = planes.next();
        }
        for y in 0..geo.height() {
            let i = y + top;
            let (a, r) = (i % s, i / s);
            if r >= ph {
                break;
            }
            let row = |l: usize| -> Option<&[i8]> {
                group
                    .get(l)
                    .copied()
                    .flatten()
                    .and_then(|p| p.get(y * width.get()..(y + 1) * width.get()))
            };
            let rows = [row(0), row(1), row(2), row(3)];
            if s.get() == 1 {
                // One phase: the padded row, `left` padding units first.
                let start = r * pw + left;
                let n = w.min(pw.saturating_sub(left));
                if let Some(d) = dst.get_mut(start..start + n) {
                    interleave_row(layout, rows, zp, offset, d);
                }
                continue;
            }
            for x in 0..w {
                let j = x + left;
                let (b, c) = (j % s, j / s);
                if c >= pw {
                    break;
                }
                let values = rows.map(|r| r.and_then(|r| r.get(x)).copied().unwrap_or(zp));
                if let Some(d) = dst.get_mut((a * s.get() + b) * phase_len + r * pw + c) {
                    *d = unit(layout, values, offset);
                }
            }
        }
    }
}

/// [`pack_input`] at stride 1 (one phase, `group_len = phase_h * phase_w`), row by
/// row: only the padding units (the border, and the tail after the last group) are
/// set to `pad`, the interior of each padded row is written once from the image.
fn pack_rows(
    plan: &QFastPlan,
    (zp, offset, pad): (i8, u8, i32),
    image: &[i8],
    packed: &mut [i32],
    (hw, group_len, width): (NonZeroUsize, NonZeroUsize, NonZeroUsize),
) {
    let layout = plan.kernel.layout();
    let h = plan.geo.height();
    let w = width.get();
    let [top, _, left, _] = plan.geo.padding();
    let pw = plan.phase_w.get();
    let per_unit = plan.per_unit.get();
    let split = (plan.groups * group_len.get()).min(packed.len());
    let (body, tail) = packed.split_at_mut(split);
    tail.fill(pad);
    let left = left.min(pw);
    let n = w.min(pw - left);
    let mut planes = image.chunks_exact(hw.get());
    for dst in body.chunks_exact_mut(group_len.get()) {
        let mut group: [Option<&[i8]>; 4] = [None; 4];
        for slot in group.iter_mut().take(per_unit) {
            *slot = planes.next();
        }
        for (r, d) in dst.chunks_exact_mut(pw).enumerate() {
            let y = r.wrapping_sub(top);
            if r < top || y >= h {
                d.fill(pad);
                continue;
            }
            let row = |l: usize| -> Option<&[i8]> {
                group
                    .get(l)
                    .copied()
                    .flatten()
                    .and_then(|p| p.get(y * w..(y + 1) * w))
            };
            let rows = [row(0), row(1), row(2), row(3)];
            let (head, rest) = d.split_at_mut(left);
            head.fill(pad);
            let (mid, end) = rest.split_at_mut(n);
            interleave_row(layout, rows, zp, offset, mid);
            end.fill(pad);
        }
        // Units of the group past its last full row (none: `group_len` is
        // `phase_h * phase_w`).
        dst.chunks_exact_mut(pw).into_remainder().fill(pad);
    }
}

/// `dst[x] = unit(rows[0][x], rows[1][x], ..)` for the `dst.len()` first pixels of
/// the rows (a missing row reads the zero point). The common case, a full group,
/// is written out per layout so that it vectorizes.
#[inline]
fn interleave_row(layout: Layout, rows: [Option<&[i8]>; 4], zp: i8, offset: u8, dst: &mut [i32]) {
    let n = dst.len();
    match (layout, rows) {
        (Layout::Pairs, [Some(r0), Some(r1), _, _]) if r0.len() >= n && r1.len() >= n => {
            for ((d, &a), &b) in dst.iter_mut().zip(&r0[..n]).zip(&r1[..n]) {
                *d = (i32::from(a) & 0xffff) | (i32::from(b) << 16);
            }
        }
        (Layout::Quads, [Some(r0), Some(r1), Some(r2), Some(r3)])
            if r0.len() >= n && r1.len() >= n && r2.len() >= n && r3.len() >= n =>
        {
            for ((d, (&a, &b)), (&c, &e)) in dst
                .iter_mut()
                .zip(r0[..n].iter().zip(&r1[..n]))
                .zip(r2[..n].iter().zip(&r3[..n]))
            {
                *d = i32::from_le_bytes([a, b, c, e].map(|v| v.cast_unsigned() ^ offset));
            }
        }
        _ => {
            for (x, d) in dst.iter_mut().enumerate() {
                let values = rows.map(|r| r.and_then(|r| r.get(x)).copied().unwrap_or(zp));
                *d = unit(layout, values, offset);
            }
        }
    }
}

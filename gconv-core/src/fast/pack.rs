//! Packing the operands of the fast path: the bank once per weight change, the input
//! once per image. Plain copies; the callers in `mod.rs` have checked every length.

use core::num::NonZeroUsize;

use super::{FastPlan, MR};

/// `bank (planes_out, planes_in, taps)` (OIHW, `taps = K*K`) to
/// `packed (planes_out/MR, planes_in, taps, MR)`.
///
/// `packed[((t*planes_in + c)*taps + k)*MR + m] = bank[((t*MR + m)*planes_in + c)*taps + k]`.
pub(super) fn pack_bank(bank: &[f32], packed: &mut [f32], planes_in: usize, taps: usize) {
    // Nonzero for a checked bank; as `NonZeroUsize` the chunk sizes have no panic path.
    let (Some(filter), Some(tile)) = (
        NonZeroUsize::new(planes_in * taps),
        NonZeroUsize::new(MR * planes_in * taps),
    ) else {
        debug_assert!(false, "pack_bank: a checked bank has planes and taps");
        return;
    };
    for (bank_tile, packed_tile) in bank
        .chunks_exact(tile.get())
        .zip(packed.chunks_exact_mut(tile.get()))
    {
        // `packed_tile` is (filter, MR): column m is output plane m of the tile.
        for (m, plane) in bank_tile.chunks_exact(filter.get()).enumerate() {
            for (row, &w) in packed_tile.chunks_exact_mut(MR).zip(plane) {
                match row.get_mut(m) {
                    Some(slot) => *slot = w,
                    None => debug_assert!(false, "pack_bank: plane {m} of a tile of {MR}"),
                }
            }
        }
    }
}

/// One image `(planes_in, H, W)` to its packed form: for every plane, the `s*s` stride
/// phases of the zero-padded plane, each `phase_h x phase_w`, then zeros up to
/// `packed.len()` (the room the last tile reads).
///
/// Padded sample `(i, j)` (input `(i - top, j - left)`, zero outside) goes to phase
/// `(i % s, j % s)`, row `i / s`, column `j / s`. Rows and columns that no output reads
/// (`i >= phase_h*s` region past the read extent) are not stored.
pub(super) fn pack_input(plan: &FastPlan, image: &[f32], packed: &mut [f32]) {
    // Both nonzero for a validated geometry; as `NonZeroUsize` the chunk sizes have
    // no panic path.
    let (Some(hw), Some(plane_len)) = (
        NonZeroUsize::new(plan.geo.height() * plan.geo.width()),
        NonZeroUsize::new(plan.plane_len),
    ) else {
        debug_assert!(false, "pack_input: zero plane in a validated geometry");
        packed.fill(0.0);
        return;
    };
    debug_assert!(
        image.len() == plan.planes_in * hw.get() && packed.len() >= plan.packed_input_len,
        "pack_input: buffers not checked by the caller"
    );
    let body = (plan.planes_in * plan.plane_len).min(packed.len());
    let (planes, tail) = packed.split_at_mut(body);
    for (plane, dst) in image
        .chunks_exact(hw.get())
        .zip(planes.chunks_exact_mut(plane_len.get()))
    {
        pack_plane(plan, plane, dst);
    }
    tail.fill(0.0);
}

/// One input plane `(H, W)` to its packed form `dst` (`plan.plane_len` values): the
/// `s*s` stride phases of the zero-padded plane. Every element of `dst` is written.
pub(super) fn pack_plane(plan: &FastPlan, plane: &[f32], dst: &mut [f32]) {
    let geo = &plan.geo;
    let (w, s) = (geo.width(), plan.stride);
    let [top, _, left, _] = geo.padding();
    let (ph, pw) = (plan.phase_h, plan.phase_w.get());
    let phase_len = ph * pw;
    dst.fill(0.0);
    if w == 0 {
        return;
    }
    for (y, row) in plane.chunks_exact(w).enumerate() {
        let i = y + top;
        let (a, r) = (i % s, i / s);
        if r >= ph {
            break;
        }
        if s.get() == 1 {
            // One phase: the padded row, `left` zeros first.
            let start = r * pw + left;
            let n = w.min(pw.saturating_sub(left));
            match dst.get_mut(start..start + n) {
                Some(d) => d.copy_from_slice(&row[..n]),
                None => debug_assert!(false, "pack_plane: row {r} outside the phase"),
            }
            continue;
        }
        for (x, &v) in row.iter().enumerate() {
            let j = x + left;
            let (b, c) = (j % s, j / s);
            if c >= pw {
                break;
            }
            match dst.get_mut((a * s.get() + b) * phase_len + r * pw + c) {
                Some(d) => *d = v,
                None => debug_assert!(false, "pack_plane: sample ({r}, {c}) outside its phase"),
            }
        }
    }
}

//! The blocked path's kernels: tiles of `MR` output planes by `NR` pixels held in
//! registers, along an output row ([`Strip`]) or down an edge column ([`Column`]),
//! and the single-pixel kernel for corners and strided layers ([`pixel`]).
//!
//! Every kernel gets the filter taps `(lo, hi)` that lie inside the input along the
//! axis it does not tile, and reads only those. Buffers have been checked by the
//! driver; every access below is a checked `get` whose failure (impossible after
//! validation) skips the term instead of panicking, except in the Arm kernel
//! (`arm.rs`), which the driver calls only after checking its whole read range.

use super::{Layout, MR};

#[cfg(all(target_arch = "arm", target_abi = "eabihf", target_feature = "fpregs"))]
mod arm;

/// Covers `from..to` with tiles of 8, then at most one each of 4, 2 and 1 pixels:
/// `$tile` runs with `$at` the tile's first index and `$nr` its width, a `const`.
macro_rules! cover_8421 {
    ($from:expr, $to:expr, |$at:ident, $nr:ident| $tile:expr) => {{
        let (mut $at, to) = ($from, $to);
        while $at + 8 <= to {
            const $nr: usize = 8;
            $tile;
            $at += 8;
        }
        cover_8421!(@one $at, to, $nr, 4, $tile);
        cover_8421!(@one $at, to, $nr, 2, $tile);
        if $at < to {
            const $nr: usize = 1;
            $tile;
        }
    }};
    (@one $at:ident, $to:ident, $nr:ident, $width:literal, $tile:expr) => {
        if $at + $width <= $to {
            const $nr: usize = $width;
            $tile;
            $at += $width;
        }
    };
}

/// Widest tile: `MR * NR_MAX` accumulators and `NR_MAX + K - 1` inputs in registers
/// (16 + 10 + 2 of the Cortex-M4F's 32 single-precision registers at `K = 3`).
const NR_MAX: usize = 8;

/// Room for the `NR + K - 1` inputs of a column tile (`NR <= 8`, `K <= 5`).
const COLUMN_WINDOW: usize = 12;

/// The block's `MR` output planes, where tiles are stored.
pub(super) struct OutBlock<'a> {
    /// The `MR` planes of `H' * W'` values, one after the other.
    pub block: &'a mut [f32],
    /// `H' * W'`.
    pub plane: usize,
    /// `W'`.
    pub width: usize,
}

impl OutBlock<'_> {
    /// Writes `acc[m][j]` to pixel `(y, x + j)` of plane `m`.
    #[inline(always)]
    pub(super) fn store_row<const NR: usize>(&mut self, y: usize, x: usize, acc: &[[f32; NR]; MR]) {
        for (m, values) in acc.iter().enumerate() {
            let start = m * self.plane + y * self.width + x;
            let dest = self.block.get_mut(start..start + NR);
            debug_assert!(dest.is_some(), "tile outside the output");
            if let Some(dest) = dest {
                dest.copy_from_slice(values);
            }
        }
    }

    /// Writes `acc[m][j]` to pixel `(y + j, x)` of plane `m`.
    #[inline(always)]
    pub(super) fn store_column<const NR: usize>(
        &mut self,
        y: usize,
        x: usize,
        acc: &[[f32; NR]; MR],
    ) {
        for (m, values) in acc.iter().enumerate() {
            let start = m * self.plane + y * self.width + x;
            let end = start + (NR - 1) * self.width + 1;
            let dest = self.block.get_mut(start..end);
            debug_assert!(dest.is_some(), "tile outside the output");
            if let Some(dest) = dest {
                for (d, &v) in dest.iter_mut().step_by(self.width.max(1)).zip(values) {
                    *d = v;
                }
            }
        }
    }
}

/// One output pixel `(y, x)` of the block's `MR` planes, over the filter rows `rows`
/// and columns `cols` inside the input (any stride), where filter row `rows.0` reads
/// input row `row0`: `[[bias + sum]; MR]`.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn pixel(
    lay: &Layout,
    x_image: &[f32],
    packed: &[f32],
    row0: usize,
    rows: (usize, usize),
    x: usize,
    cols: (usize, usize),
    bias: f32,
) -> [[f32; 1]; MR] {
    let mut acc = [bias; MR];
    if cols.0 == cols.1 {
        return acc.map(|a| [a]); // only padding left or right: the bias alone
    }
    // Input column of filter column `cols.0`.
    let col0 = x * lay.stride + cols.0 - lay.pad_left;
    for (x_plane, w_plane) in x_image
        .chunks_exact(lay.plane_chunk.get())
        .zip(packed.chunks_exact(lay.filter_chunk.get()))
    {
        for p in rows.0..rows.1 {
            let row = (row0 + p - rows.0) * lay.w + col0;
            for q in cols.0..cols.1 {
                let xv = x_plane.get(row + q - cols.0);
                let start = (p * lay.k + q) * MR;
                let wv = w_plane.get(start..start + MR);
                debug_assert!(xv.is_some() && wv.is_some(), "tap outside its buffer");
                if let (Some(&xv), Some(wv)) = (xv, wv) {
                    for (a, &w) in acc.iter_mut().zip(wv) {
                        *a += xv * w;
                    }
                }
            }
        }
    }
    acc.map(|a| [a])
}

/// The interior columns of one output row (stride 1, every filter column inside the
/// input), cut into tiles of 8, 4, 2 and 1 pixels.
pub(super) struct Strip<'a> {
    pub lay: &'a Layout,
    pub x_image: &'a [f32],
    pub packed: &'a [f32],
    /// Input row of filter row `taps.0`.
    pub row0: usize,
    /// Filter rows inside the input.
    pub taps: (usize, usize),
    pub bias: f32,
}

impl Strip<'_> {
    /// Output columns `cols.0..cols.1` of row `y` for a kernel size `K` known at
    /// compile time.
    #[inline(never)]
    pub fn run<const K: usize>(&self, y: usize, cols: (usize, usize), out: &mut OutBlock) {
        let (x, hi) = cols;
        // The Arm tiles take what they can; the portable tiles the rest.
        #[cfg(all(target_arch = "arm", target_abi = "eabihf", target_feature = "fpregs"))]
        let x = if K == 3 || K == 5 {
            arm::strip::<K>(self, y, cols, out)
        } else {
            x
        };
        cover_8421!(x, hi, |at, NR| out.store_row(
            y,
            at,
            &self.tile::<K, NR>(at)
        ));
    }

    /// Output columns `cols.0..cols.1` of row `y` for any kernel size: tiles of 8
    /// pixels with a loop over the taps, then single pixels.
    #[inline(never)]
    pub fn run_any_k(&self, y: usize, cols: (usize, usize), out: &mut OutBlock) {
        let (mut x, hi) = cols;
        while x + NR_MAX <= hi {
            out.store_row(y, x, &self.tile_any_k::<NR_MAX>(x));
            x += NR_MAX;
        }
        for x in x..hi {
            out.store_row(y, x, &self.tile_any_k::<1>(x));
        }
    }

    /// Index in an input plane of the first input tile column `x` reads.
    pub(super) fn first_input(&self, x: usize) -> usize {
        self.row0 * self.lay.w + x - self.lay.pad_left
    }

    /// `MR x NR` outputs starting at column `x`: per input plane and filter row, the
    /// `NR + K - 1` inputs are read once and each of the `K` taps' `MR` weights
    /// serves `NR` pixels. `K` and `NR` are constants, so the loops over taps and
    /// pixels unroll and the accumulators live in registers.
    #[inline(always)]
    fn tile<const K: usize, const NR: usize>(&self, x: usize) -> [[f32; NR]; MR] {
        let lay = self.lay;
        let mut acc = [[self.bias; NR]; MR];
        let first = self.first_input(x);
        let (w_first, w_rows) = (self.taps.0 * K, self.taps.1 - self.taps.0);
        for (x_plane, w_plane) in self
            .x_image
            .chunks_exact(lay.plane_chunk.get())
            .zip(self.packed.chunks_exact(lay.filter_chunk.get()))
        {
            let (w_taps, _) = w_plane.as_chunks::<MR>();
            for r in 0..w_rows {
                let start = first + r * lay.w;
                let window = x_plane.get(start..start + NR + K - 1);
                let w_row = w_taps.get(w_first + r * K..w_first + (r + 1) * K);
                debug_assert!(
                    window.is_some() && w_row.is_some(),
                    "tile outside its buffers"
                );
                let (Some(window), Some(w_row)) = (window, w_row) else {
                    continue;
                };
                for (q, w_tap) in w_row.iter().enumerate() {
                    for j in 0..NR {
                        let xv = window[j + q];
                        for m in 0..MR {
                            acc[m][j] += xv * w_tap[m];
                        }
                    }
                }
            }
        }
        acc
    }

    /// [`tile`](Self::tile) for a kernel size known at run time: each tap reads its
    /// `NR` inputs.
    #[inline(always)]
    fn tile_any_k<const NR: usize>(&self, x: usize) -> [[f32; NR]; MR] {
        let lay = self.lay;
        let k = lay.k;
        let mut acc = [[self.bias; NR]; MR];
        let first = self.first_input(x);
        let (w_first, w_rows) = (self.taps.0 * k, self.taps.1 - self.taps.0);
        for (x_plane, w_plane) in self
            .x_image
            .chunks_exact(lay.plane_chunk.get())
            .zip(self.packed.chunks_exact(lay.filter_chunk.get()))
        {
            let (w_taps, _) = w_plane.as_chunks::<MR>();
            for r in 0..w_rows {
                let start = first + r * lay.w;
                let w_row = w_taps.get(w_first + r * k..w_first + (r + 1) * k);
                debug_assert!(w_row.is_some(), "tile outside its buffers");
                let Some(w_row) = w_row else { continue };
                for (q, w_tap) in w_row.iter().enumerate() {
                    let window = x_plane.get(start + q..start + q + NR);
                    debug_assert!(window.is_some(), "tile outside its buffers");
                    let Some(window) = window else { continue };
                    for j in 0..NR {
                        for m in 0..MR {
                            acc[m][j] += window[j] * w_tap[m];
                        }
                    }
                }
            }
        }
        acc
    }
}

/// An edge column `x` (its window crosses the left or right padding) over interior
/// rows (every filter row inside the input, stride 1), cut into tiles of 8, 4, 2 and
/// 1 pixels down the column.
pub(super) struct Column<'a> {
    pub lay: &'a Layout,
    pub x_image: &'a [f32],
    pub packed: &'a [f32],
    /// The output column.
    pub x: usize,
    /// Filter columns inside the input.
    pub taps: (usize, usize),
    pub bias: f32,
}

impl Column<'_> {
    /// Output rows `rows.0..rows.1` (interior rows) for a kernel size `K` known at
    /// compile time (`K <= 5`).
    #[inline(never)]
    pub fn run<const K: usize>(&self, rows: (usize, usize), out: &mut OutBlock) {
        let (y, hi) = rows;
        #[cfg(all(target_arch = "arm", target_abi = "eabihf", target_feature = "fpregs"))]
        let y = if K == 3 {
            arm::column_k3(self, rows, out)
        } else {
            y
        };
        cover_8421!(y, hi, |at, NR| out.store_column(
            at,
            self.x,
            &self.tile::<K, NR>(at)
        ));
    }

    /// Output rows `rows.0..rows.1` (interior rows) for any kernel size, pixel by
    /// pixel.
    #[inline(never)]
    pub fn run_any_k(&self, rows: (usize, usize), out: &mut OutBlock) {
        let lay = self.lay;
        for y in rows.0..rows.1 {
            let row0 = y - lay.pad_top;
            let acc = pixel(
                lay,
                self.x_image,
                self.packed,
                row0,
                (0, lay.k),
                self.x,
                self.taps,
                self.bias,
            );
            out.store_row(y, self.x, &acc);
        }
    }

    /// `MR x NR` outputs down the column from row `y`: per input plane and filter
    /// column inside the input, the `NR + K - 1` inputs of that column are read once
    /// and each of the `K` taps' `MR` weights serves `NR` pixels.
    #[inline(always)]
    fn tile<const K: usize, const NR: usize>(&self, y: usize) -> [[f32; NR]; MR] {
        let lay = self.lay;
        let mut acc = [[self.bias; NR]; MR];
        if self.taps.0 == self.taps.1 {
            return acc; // only padding left or right
        }
        // Input (row, column) of tap (0, taps.0) of output pixel (y, x).
        let first = (y - lay.pad_top) * lay.w + self.x + self.taps.0 - lay.pad_left;
        let span = (NR + K - 2) * lay.w + 1;
        for (x_plane, w_plane) in self
            .x_image
            .chunks_exact(lay.plane_chunk.get())
            .zip(self.packed.chunks_exact(lay.filter_chunk.get()))
        {
            let (w_taps, _) = w_plane.as_chunks::<MR>();
            for q in self.taps.0..self.taps.1 {
                let start = first + q - self.taps.0;
                let column = x_plane.get(start..start + span);
                debug_assert!(column.is_some(), "tile outside the input plane");
                let Some(column) = column else { continue };
                let mut window = [0.0f32; COLUMN_WINDOW];
                for (v, &x) in window
                    .iter_mut()
                    .zip(column.iter().step_by(lay.row_step.get()))
                {
                    *v = x;
                }
                for p in 0..K {
                    let Some(w_tap) = w_taps.get(p * K + q) else {
                        debug_assert!(false, "column tile: tap ({p}, {q}) outside the weights");
                        continue;
                    };
                    for j in 0..NR {
                        let xv = window[j + p];
                        for m in 0..MR {
                            acc[m][j] += xv * w_tap[m];
                        }
                    }
                }
            }
        }
        acc
    }
}

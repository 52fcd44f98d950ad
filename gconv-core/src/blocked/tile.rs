//! The blocked path's kernels: a tile of `MR` output planes by `NR` pixels of one
//! output row held in registers, and the single-pixel kernel for edges and strides.
//!
//! Every kernel gets the filter rows `rows = (lo, hi)` that lie inside the input for
//! its output row, and the input row `row0` of filter row `lo`; filter row `p` reads
//! input row `row0 + p - lo`. Buffers have been checked by the driver; every access
//! below is a checked `get`, whose failure (impossible after validation) skips the
//! term instead of panicking.

use super::{Layout, MR};

/// Widest tile: `MR * NR_MAX` accumulators and `NR_MAX + K - 1` inputs in registers.
const NR_MAX: usize = 8;

/// One output row of every plane of a block, where tiles are stored.
pub(super) struct OutRow<'a> {
    /// The block's `MR` output planes, one after the other.
    pub block: &'a mut [f32],
    /// `H' * W'`.
    pub plane: usize,
    /// `y * W'`: the row's first pixel within a plane.
    pub offset: usize,
}

impl OutRow<'_> {
    /// Writes `acc[m][j]` to pixel `x + j` of plane `m`.
    #[inline(always)]
    pub fn store<const NR: usize>(&mut self, x: usize, acc: &[[f32; NR]; MR]) {
        for (m, values) in acc.iter().enumerate() {
            let start = m * self.plane + self.offset + x;
            let dest = self.block.get_mut(start..start + NR);
            debug_assert!(dest.is_some(), "tile outside the output");
            if let Some(dest) = dest {
                dest.copy_from_slice(values);
            }
        }
    }
}

/// One output pixel `(y, x)` of the block's `MR` planes, over the filter rows `rows`
/// and columns `cols` inside the input (any stride): `[[bias + sum]; MR]`.
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
    let taps = lay.k * lay.k;
    // Input column of filter column `cols.0`.
    let col0 = x * lay.stride + cols.0 - lay.pad_left;
    for (x_plane, w_plane) in x_image
        .chunks_exact(lay.plane_len)
        .zip(packed.chunks_exact(taps * MR))
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

/// A run of interior output columns of one output row (stride 1, every filter column
/// inside the input), cut into tiles of 8, 4, 2 and 1 pixels.
pub(super) struct Strip<'a> {
    pub lay: &'a Layout,
    pub x_image: &'a [f32],
    pub packed: &'a [f32],
    /// Input row of filter row `rows.0`.
    pub row0: usize,
    /// Filter rows inside the input.
    pub rows: (usize, usize),
    pub bias: f32,
}

impl Strip<'_> {
    /// Output columns `lo..hi` for a kernel size `K` known at compile time.
    #[inline(never)]
    pub fn run<const K: usize>(&self, lo: usize, hi: usize, out: &mut OutRow) {
        let mut x = lo;
        while x + NR_MAX <= hi {
            out.store(x, &self.tile::<K, NR_MAX>(x));
            x += NR_MAX;
        }
        if x + 4 <= hi {
            out.store(x, &self.tile::<K, 4>(x));
            x += 4;
        }
        if x + 2 <= hi {
            out.store(x, &self.tile::<K, 2>(x));
            x += 2;
        }
        if x < hi {
            out.store(x, &self.tile::<K, 1>(x));
        }
    }

    /// Output columns `lo..hi` for any kernel size: tiles of 8 pixels with a loop
    /// over the taps, then single pixels.
    #[inline(never)]
    pub fn run_any_k(&self, lo: usize, hi: usize, out: &mut OutRow) {
        let mut x = lo;
        while x + NR_MAX <= hi {
            out.store(x, &self.tile_any_k::<NR_MAX>(x));
            x += NR_MAX;
        }
        for x in x..hi {
            out.store(x, &self.tile_any_k::<1>(x));
        }
    }

    /// `MR x NR` outputs starting at column `x`: per input plane and filter row, the
    /// `NR + K - 1` inputs are read once and each of the `K` taps' `MR` weights
    /// serves `NR` pixels. `K` and `NR` are constants, so every loop below unrolls
    /// and the accumulators live in registers.
    #[inline(always)]
    fn tile<const K: usize, const NR: usize>(&self, x: usize) -> [[f32; NR]; MR] {
        let lay = self.lay;
        let mut acc = [[self.bias; NR]; MR];
        let (n_rows, first) = (
            self.rows.1 - self.rows.0,
            self.row0 * lay.w + x - lay.pad_left,
        );
        for (x_plane, w_plane) in self
            .x_image
            .chunks_exact(lay.plane_len)
            .zip(self.packed.chunks_exact(K * K * MR))
        {
            let w_rows = w_plane.chunks_exact(K * MR).skip(self.rows.0).take(n_rows);
            for (r, w_row) in w_rows.enumerate() {
                let start = first + r * lay.w;
                let window = x_plane.get(start..start + NR + K - 1);
                debug_assert!(window.is_some(), "window outside the input plane");
                let Some(window) = window else { continue };
                for (q, w_tap) in w_row.chunks_exact(MR).enumerate() {
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
        let (n_rows, first) = (
            self.rows.1 - self.rows.0,
            self.row0 * lay.w + x - lay.pad_left,
        );
        for (x_plane, w_plane) in self
            .x_image
            .chunks_exact(lay.plane_len)
            .zip(self.packed.chunks_exact(k * k * MR))
        {
            let w_rows = w_plane.chunks_exact(k * MR).skip(self.rows.0).take(n_rows);
            for (r, w_row) in w_rows.enumerate() {
                let start = first + r * lay.w;
                for (q, w_tap) in w_row.chunks_exact(MR).enumerate() {
                    let window = x_plane.get(start + q..start + q + NR);
                    debug_assert!(window.is_some(), "window outside the input plane");
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

//! The register-blocked path for targets without x86 SIMD (Cortex-M4F/M7 first):
//! the same four convolutions as [`conv`](crate::conv), from the **raw** weights,
//! with a scratch of one block of packed filters instead of the whole expanded bank.
//!
//! # How it works
//!
//! The output planes `C_out*|G|` are taken [`MR`] at a time: `MR` orientations of one
//! G-channel (`MR` divides `|G|`), which share the bias. For each block:
//!
//! 1. **Pack**: the block's filters are expanded from the raw weights
//!    `(C_out, C_in, nti, K, K)` by the index table's closed form
//!    ([`crate::group::tables::table_entry`], the `const fn` the compile-time
//!    tables are built from: per element, an affine map of the taps and a
//!    permutation of the input planes) straight into the order the loop reads
//!    them:
//!
//!    ```text
//!    packed[(c*K*K + p*K + q)*MR + m] = bank[o*nto + t0 + m][c][p][q]
//!                                     = w[o][i][T][U][V],  (T, U, V) = table[t0 + m][s][p][q]
//!    ```
//!
//!    with `c = i*nti + s`. The raw weights stay where they are (flash on a
//!    microcontroller); the scratch holds `MR * C_in*nti * K*K` values
//!    ([`scratch_len`]), `|G|/MR * C_out` times less than the bank.
//! 2. **Tiles** (`tile.rs`): an output-stationary tile of `MR` planes by `NR`
//!    consecutive pixels of one output row accumulates in registers over every input
//!    plane and tap. Per input plane and filter row, the `NR + K - 1` input values
//!    the row's `K` taps read are loaded once; per tap, the `MR` weights are loaded
//!    once and serve `NR` pixels. With `MR = 2`, `NR = 8` and `K = 3` that is 10 +
//!    3 * 2 loads for 48 multiply-adds; on a Cortex-M4F the 16 accumulators, 10
//!    inputs and 2 weights fit its 32 single-precision registers. `K` is a const
//!    generic for 1, 3 and 5 (every loop unrolled); other sizes run a loop over the
//!    taps.
//! 3. **The driver** (this file) handles the edges so that tiles stay simple: per
//!    output row it computes the filter rows that fall inside the input (top and
//!    bottom padding are skipped, never read); columns whose window crosses the left
//!    or right padding run column tiles (`MR` planes by up to 8 pixels down the
//!    column, over the filter columns inside the input); the corners, and every pixel
//!    of a strided layer, go through the single-pixel kernel, which skips the taps
//!    outside the input. On Arm the `K = 3` and `K = 5` row tiles and the `K = 3`
//!    column tile are `asm!` (`tile/arm.rs`), the same sums in the same order.
//!
//! # Rounding
//!
//! Each output is the bias plus an f32 sum of `T = C_in*nti*K*K` products (fewer at
//! the edges: the padding taps are skipped), accumulated in a fixed order (input
//! plane, filter row, filter column), each product rounded before it is added (the
//! Cortex-M4F's `VMLA`; no fused multiply-add). The error against the exact sum is at
//! most `(T + 2) * eps_f32 * (sum |x w| + |b|)`, the bound the tests check against
//! the f64 reference.
//!
//! # Cost
//!
//! The packing runs once per block per image: `MR * C_in*nti * K*K` values, against
//! `MR * C_in*nti * K*K * H'*W'` multiply-adds, so it costs about `1/(H'*W')` of the
//! work (0.4% on a 16x16 map). Measured figures, Cortex-M4F instructions per
//! multiply-add, are in the README.

mod tile;

use core::num::NonZeroUsize;

use crate::conv::check_io;
use crate::error::{Buffer, Error, check_len, scratch_prefix};
use crate::group::tables::table_entry;
use crate::group::{Group, compose_closed_form, inverse_closed_form};
use crate::shape::{ConvGeometry, ConvShape, Domain};

/// Output planes per block: orientations of one G-channel, kept in registers
/// together. Divides the order of C4 and D4.
pub const MR: usize = 2;

static_assertions::const_assert!(crate::C4::ORDER.is_multiple_of(MR));
static_assertions::const_assert!(crate::D4::ORDER.is_multiple_of(MR));

/// Scratch length (f32) of the blocked path for a validated geometry: one block of
/// packed filters, `MR * C_in*nti * K*K`.
pub const fn scratch_len_for(geo: &ConvGeometry) -> usize {
    // <= the bank length (nto >= MR), which the geometry checked for overflow.
    MR * geo.terms_per_output()
}

/// Scratch length (f32) that [`forward`] needs for a convolution from `domain` to
/// `G`: `MR * C_in*nti * K*K` (the bank needs `C_out*|G| * C_in*nti * K*K`). A
/// `const fn`, so firmware sizes its buffer at compile time.
///
/// # Errors
/// See [`ConvShape::geometry`].
pub const fn scratch_len<G: Group>(domain: Domain, shape: &ConvShape) -> Result<usize, Error> {
    match shape.geometry::<G>(domain) {
        Ok(geo) => Ok(scratch_len_for(&geo)),
        Err(e) => Err(e),
    }
}

/// Convolution from `domain` to `G` on the blocked path, from the raw weights.
///
/// Layouts as in [`conv`](crate::conv): input `(N, C_in, nti, H, W)` (`nti = 1` for
/// Z2), raw weight `(C_out, C_in, nti, K, K)`, bias `(C_out,)`, output
/// `(N, C_out, |G|, H', W')`. `scratch` needs at least [`scratch_len`] values; its
/// contents are ignored on entry and garbage on exit. Every element of `output` is
/// written.
///
/// # Errors
/// Any error of [`ConvShape::geometry`]; [`Error::BufferLength`] when `input`,
/// `weight`, `bias` or `output` does not have exactly its length or `scratch` is
/// shorter than [`scratch_len`]. Nothing is written on error.
pub fn forward<G: Group>(
    domain: Domain,
    shape: &ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), Error> {
    let geo = shape.geometry::<G>(domain)?;
    forward_geometry(&geo, input, weight, bias, output, scratch)
}

/// [`forward`] for a geometry validated beforehand (by [`ConvShape::geometry`]).
///
/// # Errors
/// [`Error::GroupOrderNotTileable`] for a group (implemented outside this crate)
/// whose order is not a multiple of [`MR`]; otherwise as [`forward`].
pub fn forward_geometry(
    geo: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), Error> {
    let blocks_per_channel = blocks_per_channel(geo)?;
    check_io(geo, input, bias, output)?;
    check_len(Buffer::Weight, weight.len(), geo.weight_len())?;
    let packed = scratch_prefix(scratch, scratch_len_for(geo))?;
    let Some(lay) = Layout::new(geo) else {
        debug_assert!(false, "blocked path: no layout for a validated geometry");
        return Ok(()); // unreachable: the geometry has no zero size
    };
    // Nonzero for a validated geometry; as `NonZeroUsize` the chunk sizes have no
    // panic path.
    let (Some(in_image), Some(out_image), Some(block_len)) = (
        NonZeroUsize::new(lay.planes_in * lay.plane_len),
        NonZeroUsize::new(lay.planes_out * lay.out_plane),
        NonZeroUsize::new(MR * lay.out_plane),
    ) else {
        debug_assert!(false, "blocked path: zero size in a validated geometry");
        return Ok(()); // unreachable: the geometry has no zero size
    };
    for (x_image, y_image) in input
        .chunks_exact(in_image.get())
        .zip(output.chunks_exact_mut(out_image.get()))
    {
        for (block, y_block) in y_image.chunks_exact_mut(block_len.get()).enumerate() {
            let channel = block / blocks_per_channel;
            let t0 = (block % blocks_per_channel.get()) * MR;
            pack_block(geo, weight, channel, t0, packed);
            let b = bias.map(|b| b.get(channel).copied());
            debug_assert!(b != Some(None), "blocked path: bias shorter than C_out");
            let b = b.flatten().unwrap_or(0.0);
            lay.run_block(x_image, packed, b, y_block);
        }
    }
    Ok(())
}

/// Blocks of [`MR`] planes per output G-channel, `|G| / MR`.
///
/// # Errors
/// [`Error::GroupOrderNotTileable`] for a group (implemented outside this crate)
/// whose order is not a nonzero multiple of [`MR`].
pub(crate) fn blocks_per_channel(geo: &ConvGeometry) -> Result<NonZeroUsize, Error> {
    match NonZeroUsize::new(geo.nto() / MR) {
        Some(blocks) if geo.nto().is_multiple_of(MR) => Ok(blocks),
        _ => Err(Error::GroupOrderNotTileable {
            order: geo.nto(),
            tile: MR,
        }),
    }
}

/// Packs the filters of output G-channel `channel`, orientations `t0..t0 + MR`, from
/// the raw weights into `packed` (`MR * C_in*nti * K*K` values) in the tiles' order
/// `packed[(c*K*K + tap)*MR + m]`. Buffers have been checked against `geo`.
pub(crate) fn pack_block(
    geo: &ConvGeometry,
    weight: &[f32],
    channel: usize,
    t0: usize,
    packed: &mut [f32],
) {
    let (nti, k) = (geo.nti(), geo.kernel());
    let taps = k * k;
    let raw_channel = geo.in_channels() * nti * taps;
    let Some(raw) = weight.get(channel * raw_channel..(channel + 1) * raw_channel) else {
        debug_assert!(false, "raw weight shorter than its geometry");
        return;
    };
    let c_in = geo.in_channels();
    for m in 0..MR {
        let t = t0 + m;
        // The spatial part of the table is an affine map of the tap for a fixed `t`
        // (a rotation or flip of the grid): `source(u, v) = base + du*u + dv*v` in
        // the filter's row-major taps. Read it off three entries instead of
        // evaluating the table for every tap.
        let Some(map) = SpatialMap::of(t, k) else {
            debug_assert!(false, "index table out of range");
            return;
        };
        for s in 0..nti {
            // Input plane `T = t^-1 s` (0 for a lifting layer).
            let plane = if nti == 1 {
                0
            } else {
                compose_closed_form(inverse_closed_form(t), s)
            };
            for i in 0..c_in {
                let (src, dst) = ((i * nti + plane) * taps, (i * nti + s) * taps);
                let (Some(src), Some(dst)) = (
                    raw.get(src..src + taps),
                    packed.get_mut(dst * MR..(dst + taps) * MR),
                ) else {
                    debug_assert!(false, "packing out of range");
                    return;
                };
                let mut dst_taps = dst.chunks_exact_mut(MR);
                for u in 0..k {
                    let mut source = map.row_start(u);
                    for _ in 0..k {
                        let w = src.get(source as usize);
                        let d = dst_taps.next().and_then(|d| d.get_mut(m));
                        debug_assert!(w.is_some() && d.is_some(), "packing out of range");
                        if let (Some(&w), Some(d)) = (w, d) {
                            *d = w;
                        }
                        source += map.dv;
                    }
                }
            }
        }
    }
}

/// The spatial action of one group element on a `k x k` filter as an affine map of
/// row-major tap indices: tap `(u, v)` reads tap `base + du*u + dv*v`.
struct SpatialMap {
    base: isize,
    du: isize,
    dv: isize,
}

impl SpatialMap {
    /// The map of element `t` from the index table's closed form ([`table_entry`]);
    /// `None` for an element or kernel size out of range.
    fn of(t: usize, k: usize) -> Option<Self> {
        let tap = |u: usize, v: usize| {
            table_entry(1, k, t, 0, u, v).map(|(_, su, sv)| (su * k + sv) as isize)
        };
        let base = tap(0, 0)?;
        // A 1x1 filter has a single tap: the steps are never taken.
        let (du, dv) = if k > 1 {
            (tap(1, 0)? - base, tap(0, 1)? - base)
        } else {
            (0, 0)
        };
        Some(SpatialMap { base, du, dv })
    }

    fn row_start(&self, u: usize) -> isize {
        self.base + self.du * u as isize
    }
}

/// The sizes the driver loops over, read once from a validated geometry.
#[derive(Clone, Copy, Debug)]
struct Layout {
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
    oh: usize,
    ow: usize,
    planes_in: usize,
    planes_out: usize,
    /// `H * W`.
    plane_len: usize,
    /// `H * W` for `chunks_exact` (nonzero, so that no panic path is compiled).
    plane_chunk: NonZeroUsize,
    /// `W` as a step down a column (nonzero, as `plane_chunk`).
    row_step: NonZeroUsize,
    /// `K * K * MR`: one input plane's packed weights of a block.
    filter_chunk: NonZeroUsize,
    /// `H' * W'`.
    out_plane: usize,
}

impl Layout {
    /// `None` for a zero plane or kernel, which a validated geometry never has.
    fn new(geo: &ConvGeometry) -> Option<Self> {
        let [pad_top, _, pad_left, _] = geo.padding();
        Some(Layout {
            h: geo.height(),
            w: geo.width(),
            k: geo.kernel(),
            stride: geo.stride(),
            pad_top,
            pad_left,
            oh: geo.out_height(),
            ow: geo.out_width(),
            planes_in: geo.in_channels() * geo.nti(),
            planes_out: geo.out_channels() * geo.nto(),
            plane_len: geo.height() * geo.width(),
            plane_chunk: NonZeroUsize::new(geo.height() * geo.width())?,
            row_step: NonZeroUsize::new(geo.width())?,
            filter_chunk: NonZeroUsize::new(geo.kernel() * geo.kernel() * MR)?,
            out_plane: geo.out_height() * geo.out_width(),
        })
    }

    /// Filter taps `lo..hi` whose input index `out * stride + tap - pad` lies in
    /// `0..size`, for output index `out`.
    fn taps_inside(&self, out: usize, pad: usize, size: usize) -> (usize, usize) {
        let first = out * self.stride; // input index of tap `pad`
        let lo = pad.saturating_sub(first).min(self.k);
        let hi = (size + pad).saturating_sub(first).min(self.k);
        (lo, hi.max(lo))
    }

    /// Output indices `lo..hi` along one axis whose whole window is inside the input
    /// (stride 1): `i - pad >= 0` and `i + K - 1 - pad <= size - 1`.
    fn interior(&self, pad: usize, size: usize, out: usize) -> (usize, usize) {
        let lo = pad.min(out);
        let hi = (size + pad + 1).saturating_sub(self.k).min(out);
        (lo, hi.max(lo))
    }

    /// Computes the `MR` output planes `y_block` (`MR * H'*W'`, planes in order) of
    /// one block from one image `x_image` (`planes_in * H*W`) and the block's packed
    /// filters.
    ///
    /// Stride 1: every output row's interior columns go through row tiles
    /// ([`tile::Strip`]); the edge columns of the interior rows through column tiles
    /// ([`tile::Column`]); the corners through the single-pixel kernel. Strided
    /// layers: every pixel through the single-pixel kernel.
    fn run_block(&self, x_image: &[f32], packed: &[f32], bias: f32, y_block: &mut [f32]) {
        let mut out = tile::OutBlock {
            block: y_block,
            plane: self.out_plane,
            width: self.ow,
        };
        let (cols, rows) = if self.stride == 1 {
            (
                self.interior(self.pad_left, self.w, self.ow),
                self.interior(self.pad_top, self.h, self.oh),
            )
        } else {
            ((0, 0), (0, 0))
        };
        for y in 0..self.oh {
            let taps = self.taps_inside(y, self.pad_top, self.h);
            if taps.0 == taps.1 {
                // Only padding above or below: the bias alone.
                for x in 0..self.ow {
                    out.store_row(y, x, &[[bias]; MR]);
                }
                continue;
            }
            // Input row of the first filter row inside the input.
            let row0 = y * self.stride + taps.0 - self.pad_top;
            // Edge columns: by column tiles below on the interior rows, here elsewhere.
            if !(rows.0..rows.1).contains(&y) {
                for x in (0..cols.0).chain(cols.1..self.ow) {
                    let col_taps = self.taps_inside(x, self.pad_left, self.w);
                    let acc = tile::pixel(self, x_image, packed, row0, taps, x, col_taps, bias);
                    out.store_row(y, x, &acc);
                }
            }
            if cols.0 < cols.1 {
                let strip = tile::Strip {
                    lay: self,
                    x_image,
                    packed,
                    row0,
                    taps,
                    bias,
                };
                match self.k {
                    1 => strip.run::<1>(y, cols, &mut out),
                    3 => strip.run::<3>(y, cols, &mut out),
                    5 => strip.run::<5>(y, cols, &mut out),
                    _ => strip.run_any_k(y, cols, &mut out),
                }
            }
        }
        if rows.0 < rows.1 {
            for x in (0..cols.0).chain(cols.1..self.ow) {
                let column = tile::Column {
                    lay: self,
                    x_image,
                    packed,
                    x,
                    taps: self.taps_inside(x, self.pad_left, self.w),
                    bias,
                };
                match self.k {
                    3 => column.run::<3>(rows, &mut out),
                    5 => column.run::<5>(rows, &mut out),
                    _ => column.run_any_k(rows, &mut out),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::expand::expand_filter_bank;
    use crate::shape::Padding;
    use crate::test_data::{fill, fill_ints, same_bits};
    use crate::{C4, D4};

    /// The packed block equals the matching rows of the expanded bank.
    #[test]
    fn packed_blocks_are_bank_rows() {
        for (domain, nti) in [(Domain::Z2, 1), (Domain::Group, 8)] {
            for k in [1, 2, 3, 4] {
                let (c_out, c_in) = (2, 3);
                let mut raw = [0.0f32; 2 * 3 * 8 * 16];
                let raw = &mut raw[..c_out * c_in * nti * k * k];
                fill(raw, 5);
                let mut bank = [0.0f32; 8 * 2 * 3 * 8 * 16];
                let bank = &mut bank[..8 * raw.len()];
                expand_filter_bank::<D4>(domain, c_out, c_in, k, raw, bank).unwrap();
                let shape = ConvShape {
                    batch: 1,
                    in_channels: c_in,
                    out_channels: c_out,
                    height: 6,
                    width: 6,
                    kernel: k,
                    stride: 1,
                    padding: Padding::Valid,
                };
                let geo = shape.geometry::<D4>(domain).unwrap();
                let (planes_in, taps) = (c_in * nti, k * k);
                let mut packed = [f32::NAN; MR * 3 * 8 * 16];
                let packed = &mut packed[..MR * planes_in * taps];
                for o in 0..c_out {
                    for t0 in (0..8).step_by(MR) {
                        pack_block(&geo, raw, o, t0, packed);
                        for m in 0..MR {
                            for c in 0..planes_in {
                                for tap in 0..taps {
                                    let b = bank[((o * 8 + t0 + m) * planes_in + c) * taps + tap];
                                    let p = packed[(c * taps + tap) * MR + m];
                                    assert_eq!(b.to_bits(), p.to_bits(), "{domain:?} k={k}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Small cases against the direct path (Miri-sized): every edge case of the
    /// driver (padding wider than the kernel, strides, tile remainders), on
    /// small-integer data (both exact: the same bits) and on random data (the
    /// rounding bound).
    #[test]
    fn matches_direct_path() {
        let cases = [
            (3, 1, Padding::Same, 11, 9),
            (5, 1, Padding::Same, 7, 13),
            (1, 1, Padding::Valid, 5, 19),
            (2, 1, Padding::symmetric(3), 6, 5),
            (
                4,
                2,
                Padding::Explicit {
                    top: 1,
                    bottom: 2,
                    left: 0,
                    right: 3,
                },
                9,
                8,
            ),
            (3, 3, Padding::Valid, 10, 10),
            (7, 1, Padding::Same, 8, 9),
        ];
        for (k, stride, padding, h, w) in cases {
            for (domain, exact) in [
                (Domain::Z2, true),
                (Domain::Group, true),
                (Domain::Z2, false),
                (Domain::Group, false),
            ] {
                let shape = ConvShape {
                    batch: 2,
                    in_channels: 2,
                    out_channels: 2,
                    height: h,
                    width: w,
                    kernel: k,
                    stride,
                    padding,
                };
                let geo = shape.geometry::<C4>(domain).unwrap();
                let mut x = [0.0f32; 2 * 2 * 4 * 19 * 13];
                let x = &mut x[..geo.input_len()];
                let mut wt = [0.0f32; 2 * 2 * 4 * 49];
                let wt = &mut wt[..geo.weight_len()];
                if exact {
                    fill_ints(x, 1);
                    fill_ints(wt, 2);
                } else {
                    fill(x, 1);
                    fill(wt, 2);
                }
                let bias = [0.25f32, -0.5];
                let mut bank = [0.0f32; 8 * 2 * 2 * 4 * 49];
                let mut want = [0.0f32; 2 * 2 * 4 * 19 * 13];
                let want = &mut want[..geo.output_len()];
                let bank = &mut bank[..geo.bank_len()];
                crate::conv::expand::expand_filter_bank::<C4>(domain, 2, 2, k, wt, bank).unwrap();
                match domain {
                    Domain::Z2 => crate::conv::lifting::lifting_conv_expanded::<C4>(
                        &shape,
                        x,
                        bank,
                        Some(&bias),
                        want,
                    ),
                    Domain::Group => crate::conv::group::group_conv_expanded::<C4>(
                        &shape,
                        x,
                        bank,
                        Some(&bias),
                        want,
                    ),
                }
                .unwrap();
                let mut got = [f32::NAN; 2 * 2 * 4 * 19 * 13];
                let got = &mut got[..geo.output_len()];
                let mut scratch = [1e30f32; MR * 2 * 4 * 49 + 3];
                forward::<C4>(domain, &shape, x, wt, Some(&bias), got, &mut scratch).unwrap();
                if exact {
                    assert!(
                        same_bits(got, want),
                        "{domain:?} k={k} s={stride}: not exact"
                    );
                    continue;
                }
                let terms = geo.terms_per_output() as f32;
                for (g, r) in got.iter().zip(want.iter()) {
                    // Both are f32 sums of at most `terms` products of values in
                    // [-1, 1) in different orders: each is within
                    // (terms + 2) eps (terms + |b|) of the exact sum.
                    let tol = 2.0 * (terms + 2.0) * f32::EPSILON * (terms + 0.5);
                    assert!(
                        (g - r).abs() <= tol,
                        "{domain:?} k={k} s={stride}: {g} vs {r}"
                    );
                }
            }
        }
    }
}

//! The group-Fourier path: the same four convolutions as [`conv`](crate::conv) and
//! [`fast`](crate::fast), with 2.7x (C4) to 5.3x (D4) fewer multiplications.
//!
//! # Why it is cheaper
//!
//! Output orientation `g` of a G-convolution uses the filter of the identity read at
//! `g^-1 . (h, p)`, an action of the group on the pairs (input plane `h`, tap `p`)
//! read off the index table (see `orbits.rs`). Split the pairs into orbits
//! `{k . q : k in G}`; for each input channel `i` and orbit `q`,
//!
//! ```text
//! y[o][g](x) = sum_{i,q} sum_k w_{o,i,q}(g^-1 k) z_{i,q}(k)(x)
//! w_{o,i,q}(m) = w[o][i][m . q] / |S_q|        z_{i,q}(k)(x) = input[i][k . q](x)
//! ```
//!
//! (`input[i][(h, p)](x)` is input plane `h` of channel `i` at tap `p` of output pixel
//! `x`; `|S_q|` the stabilizer size, 1 except for lifting layers). Each inner sum is a
//! correlation on the group, which the group Fourier transform turns into a product
//! per irreducible representation `rho`: `y^(rho) = sum_{i,q} z^_{i,q}(rho)
//! w^_{o,i,q}(rho)^T` (see `spectrum.rs`). Per irrep block that is one real matrix
//! product, a GEMM:
//!
//! ```text
//! C_rho[(o, b)][(a, x)] = sum_{(i, q, c)} A_rho[(o, b)][(i, q, c)] B_rho[(i, q, c)][(a, x)]
//! ```
//!
//! with `A` the transformed weights (`d x d` per term, `d` the irrep's dimension),
//! `B` the transformed gathered input (`rows x d` per term) and `C` the output's
//! coefficients. Multiply-adds per output G-channel, input G-channel, orbit and pixel:
//! C4: `1 + 1 + 4 = 6` (the 2-dim block is a complex product) against the direct
//! path's `|G|^2 = 16` (each of the `|G|` output planes sums the orbit's `|G|` pairs);
//! D4: `4*1 + 2*2*2 = 12` against 64. For a group
//! convolution there are `K*K` orbits, so the GEMMs run `6/16` (C4) or `12/64` (D4)
//! of the direct path's multiply-adds. Lifting layers have fewer orbits than taps
//! (C4 3x3: 3 orbits of 9 taps), `18/36` (C4) or `36/72` (D4) at `K = 3`.
//!
//! # The stages
//!
//! 1. Weights ([`FourierPlan::pack_weights`], once per weight change): the raw
//!    weights `(C_out, C_in, nti, K, K)` are transformed to `A_rho`, scaled by
//!    `d/|G|` (a power of two: exact) for the synthesis, and packed for the
//!    [`fast`](crate::fast) micro-kernels.
//! 2. Input (per image): zero-padded and phase-split as in the fast path; then, per
//!    block of [`BLOCK_PIXELS`] output pixels, every `z_{i,q}` is gathered (`|G|`
//!    contiguous reads per pixel row) and transformed with the group's add-only
//!    butterfly into the `B_rho` of that block (L2-sized).
//! 3. Products: one GEMM per block and irrep, by the fast path's micro-kernels (a
//!    GEMM is its 1x1 convolution).
//! 4. Output: the `C_rho` coefficients of each pixel are synthesised (add-only
//!    butterfly) into the `|G|` orientation planes, and the bias is added.
//!
//! **Lifting layers** (`Z2 -> G`) run a fused kernel instead of stages 2-4
//! (`lifting.rs`): with one input plane per channel and few channels, the GEMMs would
//! have only `C_in*Q*d` terms and a coefficient buffer as large as the output. Per
//! vector of 16 (AVX-512), 8 (AVX2) or 4 (portable) output pixels, the transformed
//! input is kept in a small buffer (only its *live* coefficients: an orbit with a
//! stabilizer, such as the centre tap, has coefficients that vanish for every input),
//! the `|G|` coefficients of 2-4 output channels accumulate in registers, and each
//! channel is synthesised and stored straight from them. Multiply-adds per output
//! G-channel, input channel and pixel: C4 3x3 13 (the direct path 36), C4 5x5 37
//! (100), D4 3x3 17 (72).
//!
//! [`FourierPlan::forward_image`] computes one part of one image's output
//! ([`ImagePart`]: a range of output rows of every plane, or a range of channel
//! groups), so that callers can split one image over threads; results are bitwise
//! the same however the image is split.
//!
//! # Speed
//!
//! On one core of a Zen 4 (AVX-512), C4->C4 64->64 3x3 on 56x56 takes 14.0 ms against
//! 33.2 ms on the fast path (which runs at 95% of the FMA peak) and D4->D4 16->16 3x3
//! on 32x32, batch 32, 23.7 ms against 86 ms: the GEMMs run near the peak, the
//! transforms take 10-30% of the time. The lifting kernel runs Z2->C4 3->16 3x3 on
//! 224x224 in about 1.05 ms against the fast path's 1.6 ms, and 1->16 3x3 (where
//! writing the 12.8 MB output is a large part of the time) in 0.55 against 0.6 ms.
//! See the README's table.
//!
//! # Rounding
//!
//! Different from the direct path: each output is a sum of `T_F = C_in * Q * d`
//! products of transformed values per coefficient (`Q` orbits), plus the
//! butterflies' additions. With
//! `S_F = sum_{i,q} |S_q| (sum_{(h,p) in q} |x|)(sum_{(h,p) in q} |w|)` (sums over
//! orbit members, `>=` the direct path's `sum |x w|`), the error is at most about
//! `(T_F + 3|G|) * eps_f32 * S_F * 1.5` plus `eps |b|`; the tests check every output
//! against the f64 reference with `2 * (T_F + 3|G| + 2) * eps_f32 * (S_F + |b|)`.
//!
//! # Limits
//!
//! Kernels up to [`MAX_KERNEL`](crate::fast::MAX_KERNEL) (the fast path's limit), C4
//! and D4.

mod lifting;
mod orbits;
mod spectrum;

use core::marker::PhantomData;
use core::num::NonZeroUsize;
use core::ops::Range;

use crate::error::{Buffer, Error, check_len};
use crate::fast::{FastPlan, Kernel, MR};
use crate::shape::{ConvGeometry, ConvShape, Domain, Padding};
use crate::{C4, D4};

use lifting::LiftingPlan;
use orbits::Orbits;
use spectrum::{Block, Coeff, LANES, Lanes, Spectrum};

/// Output pixels per block: the transformed input of one block (`C_in*Q*|G|` rows of
/// this many values) is meant to stay in L2 while its GEMMs run.
pub const BLOCK_PIXELS: usize = 256;

/// Output G-channels per channel group, the unit of
/// [`FourierPlan::forward_image`]'s split: every block's GEMM rows of a group start
/// at a multiple of the tile height `MR` (`d*4` rows, `d` = 1 or 2).
pub const CHANNEL_GROUP: usize = 4;

/// Most irrep blocks of a supported group (D4: five).
const MAX_BLOCKS: usize = 5;

/// Everything the Fourier path derives from a layer's geometry: the orbits, the
/// irrep blocks and the buffer sizes. Cheap to build (no allocation).
#[derive(Clone, Debug)]
pub struct FourierPlan {
    geo: ConvGeometry,
    /// The fast path's plan of the same layer: padded, phase-split input and tap
    /// offsets.
    input: FastPlan,
    orbits: Orbits,
    blocks: &'static [Block],
    /// `C_in * Q`: terms per coefficient column.
    terms: usize,
    /// `(B_rho, C_rho)` lengths of each block for a full pixel block (zero for a
    /// lifting layer, which runs the lifting kernel instead).
    lens: [(usize, usize); MAX_BLOCKS],
    /// Lifting layers: the fused kernel's plan (`lifting.rs`), used instead of the
    /// GEMMs.
    lifting: Option<LiftingPlan>,
    /// [`scratch_len`](Self::scratch_len) and
    /// [`packed_weights_len`](Self::packed_weights_len), checked for overflow.
    scratch_len: usize,
    packed_weights_len: usize,
}

impl FourierPlan {
    /// Derives the plan of a validated geometry.
    ///
    /// # Errors
    /// [`Error::KernelTooLargeForFastPath`] for `K >` [`MAX_KERNEL`](crate::fast::MAX_KERNEL);
    /// [`Error::GroupOrderNotTileable`] for a group other than C4 and D4;
    /// [`Error::SizeOverflow`] when a buffer length overflows `usize`.
    pub fn new(geo: &ConvGeometry) -> Result<Self, Error> {
        let input = FastPlan::new(geo)?;
        let blocks: &'static [Block] = match geo.nto() {
            4 => <C4 as Spectrum<4>>::BLOCKS,
            8 => <D4 as Spectrum<8>>::BLOCKS,
            order => {
                return Err(Error::GroupOrderNotTileable { order, tile: MR });
            }
        };
        let orbits = Orbits::new(geo.nto(), geo.nti(), geo.kernel());
        let terms = geo
            .in_channels()
            .checked_mul(orbits.count())
            .ok_or(Error::SizeOverflow)?;
        let mut plan = FourierPlan {
            geo: *geo,
            input,
            orbits,
            blocks,
            terms,
            lens: [(0, 0); MAX_BLOCKS],
            lifting: None,
            scratch_len: 0,
            packed_weights_len: 0,
        };
        if geo.nti() == 1 {
            plan.lifting = match geo.nto() {
                4 => LiftingPlan::new::<4, C4>(&plan.orbits),
                _ => LiftingPlan::new::<8, D4>(&plan.orbits),
            };
        }
        // Every length the plan reports is computed once, checked for overflow. A
        // lifting layer runs no GEMMs: its block lengths (a FastPlan per block to
        // build, on every call that resolves a path) stay zero.
        if plan.lifting.is_none() {
            plan.lens = plan.block_lens()?;
        }
        plan.scratch_len = plan.scratch_len_checked()?;
        plan.packed_weights_len = plan.packed_weights_len_checked()?;
        Ok(plan)
    }

    /// The geometry the plan was derived from.
    pub const fn geometry(&self) -> &ConvGeometry {
        &self.geo
    }

    /// The fast path's plan of the same layer, whose padded, phase-split input this
    /// path gathers from.
    pub const fn fast_plan(&self) -> &FastPlan {
        &self.input
    }

    /// Whether the layer runs the fused lifting kernel (a lifting layer, `Z2 -> G`)
    /// rather than the GEMMs: part of the cost model of
    /// [`fourier_pays`](crate::plan::fourier_pays).
    pub const fn lifting_kernel(&self) -> bool {
        self.lifting.is_some()
    }

    /// Number of orbits `Q` of (input plane, tap) pairs: `K*K` for a group
    /// convolution, fewer than `K*K` for a lifting one.
    pub const fn orbits(&self) -> usize {
        self.orbits.count()
    }

    /// Rows of block `b`'s weight matrix: `d*C_out` rounded up to a multiple of `MR`.
    fn block_rows(&self, b: &Block) -> usize {
        (b.dim * self.geo.out_channels()).div_ceil(MR) * MR
    }

    fn packed_weights_len_checked(&self) -> Result<usize, Error> {
        if let Some(lp) = &self.lifting {
            let group = match self.geo.nto() {
                4 => lp.group_weights::<4>(self.geo.in_channels()),
                _ => lp.group_weights::<8>(self.geo.in_channels()),
            };
            return group
                .and_then(|g| g.checked_mul(self.channel_groups()))
                .ok_or(Error::SizeOverflow);
        }
        let mut total = 0usize;
        for b in self.blocks {
            let len = self
                .block_rows(b)
                .checked_mul(b.dim * self.terms)
                .ok_or(Error::SizeOverflow)?;
            total = total.checked_add(len).ok_or(Error::SizeOverflow)?;
        }
        Ok(total)
    }

    /// f32 of the transformed, packed weights: `sum_rho M_rho * d * C_in * Q`, where
    /// `M_rho = d*C_out` rounded up to a multiple of 4.
    pub const fn packed_weights_len(&self) -> usize {
        self.packed_weights_len
    }

    /// The GEMM of block `b` over `pixels` output pixels, as the fast path's 1x1
    /// convolution: `d*C_in*Q` input planes of `rows x pixels`, `M_rho` output planes.
    fn gemm_plan(&self, b: &Block, pixels: usize) -> Result<FastPlan, Error> {
        let shape = ConvShape {
            batch: 1,
            in_channels: b.dim * self.terms,
            out_channels: self.block_rows(b) / MR,
            height: b.rows,
            width: pixels,
            kernel: 1,
            stride: 1,
            padding: Padding::Valid,
        };
        FastPlan::new(&shape.geometry::<C4>(Domain::Z2)?)
    }

    fn pixels(&self) -> usize {
        self.geo.out_height() * self.geo.out_width()
    }

    fn block_pixels(&self) -> usize {
        BLOCK_PIXELS.min(self.pixels()).max(1)
    }

    /// `(B_rho length, C_rho length)` of each block, for a full pixel block.
    fn block_lens(&self) -> Result<[(usize, usize); MAX_BLOCKS], Error> {
        let np = self.block_pixels();
        let mut lens = [(0, 0); MAX_BLOCKS];
        for (len, b) in lens.iter_mut().zip(self.blocks) {
            let gemm = self.gemm_plan(b, np)?;
            let c = self
                .block_rows(b)
                .checked_mul(b.rows * np)
                .ok_or(Error::SizeOverflow)?;
            *len = (gemm.packed_input_len(), c);
        }
        Ok(lens)
    }

    fn scratch_len_checked(&self) -> Result<usize, Error> {
        let mut total = self.input.packed_input_len();
        if let Some(lp) = &self.lifting {
            return lp
                .scratch_len(
                    self.geo.in_channels(),
                    (self.geo.out_height(), self.geo.out_width()),
                )
                .and_then(|z| z.checked_add(total))
                .ok_or(Error::SizeOverflow);
        }
        for (b, c) in self.lens {
            total = total
                .checked_add(b)
                .and_then(|t| t.checked_add(c))
                .ok_or(Error::SizeOverflow)?;
        }
        Ok(total)
    }

    /// f32 of scratch [`forward`](Self::forward) needs: the padded image (as in the
    /// fast path) plus one pixel block's transformed input and output coefficients
    /// (for a lifting layer: one block of rows' live input coefficients).
    pub const fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// Values the transforms read and write per image: the gathered input of every
    /// input channel and orbit (`C_in*Q*|G|` per pixel) and the output coefficients
    /// (`C_out*|G|` per pixel). Part of the cost model of
    /// [`fourier_pays`](crate::plan::fourier_pays).
    pub fn transform_values_per_image(&self) -> usize {
        let order = self.geo.nto();
        (self.terms + self.geo.out_channels()) * order * self.pixels()
    }

    /// Multiply-adds the GEMMs (or, for a lifting layer, the lifting kernel) run per
    /// image, padding rows of `A` (or channels up to a multiple of 4) included:
    /// compare with [`ConvGeometry::macs`] per image for the direct path's count.
    pub fn macs_per_image(&self) -> usize {
        if let Some(lp) = &self.lifting {
            let channels = self.channel_groups() * CHANNEL_GROUP;
            let terms = match self.geo.nto() {
                4 => lp.terms_per_channel::<4>(),
                _ => lp.terms_per_channel::<8>(),
            };
            return channels * self.geo.in_channels() * terms * self.pixels();
        }
        self.blocks
            .iter()
            .map(|b| self.block_rows(b) * b.dim * self.terms * b.rows * self.pixels())
            .sum()
    }

    /// Transforms raw weights `(C_out, C_in, nti, K, K)` (the layer's learnable
    /// weights, not the expanded bank) into the packed `A_rho` matrices. Run once per
    /// weight change. Every element of `packed` is written.
    ///
    /// `A_rho[(o, b)][(i, q, c)] = d/|G| * sum_m w[o][i][m . q] / |S_q| * rho(m)[b][c]`,
    /// packed as the fast path's bank `(M_rho/4, d*C_in*Q, 1, 4)`, blocks in order.
    ///
    /// # Errors
    /// [`Error::BufferLength`] when `raw` is not [`weight_len`](ConvGeometry::weight_len)
    /// long or `packed` not [`packed_weights_len`](Self::packed_weights_len);
    /// nothing is written then.
    pub fn pack_weights(&self, raw: &[f32], packed: &mut [f32]) -> Result<(), Error> {
        check_len(Buffer::Weight, raw.len(), self.geo.weight_len())?;
        check_len(Buffer::Bank, packed.len(), self.packed_weights_len)?;
        let (c_out, c_in) = (self.geo.out_channels(), self.geo.in_channels());
        if let Some(lp) = &self.lifting {
            // The same numbers in the lifting kernel's order (`lifting.rs`).
            let a = |block: usize, ob, iqc| {
                let b = self.blocks.get(block);
                debug_assert!(b.is_some(), "lifting weights: block {block}");
                b.map_or(0.0, |b| self.a_entry(raw, b, ob, iqc))
            };
            match self.geo.nto() {
                4 => lp.pack_weights::<4, C4>(c_out, c_in, packed, a),
                _ => lp.pack_weights::<8, D4>(c_out, c_in, packed, a),
            }
            return Ok(());
        }
        let q_count = self.orbits.count();
        let mut rest = packed;
        for b in self.blocks {
            let rows = self.block_rows(b);
            let cols = b.dim * self.terms;
            // `packed` holds every block (its length was checked against the sum).
            let Some((a, tail)) = rest.split_at_mut_checked(rows * cols) else {
                debug_assert!(false, "packed weights shorter than the blocks");
                break;
            };
            rest = tail;
            a.fill(0.0);
            for o in 0..c_out {
                for i in 0..c_in {
                    for q in 0..q_count {
                        for row_b in 0..b.dim {
                            for c in 0..b.dim {
                                let r = o * b.dim + row_b;
                                let col = (i * q_count + q) * b.dim + c;
                                // The fast path's bank layout: (rows/MR, cols, MR).
                                match a.get_mut((r / MR) * cols * MR + col * MR + r % MR) {
                                    Some(slot) => {
                                        *slot = self.a_entry(raw, b, (o, row_b), (i, q, c));
                                    }
                                    None => debug_assert!(false, "packed A_rho: ({r}, {col})"),
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One transformed weight, `A_rho[(o, b)][(i, q, c)] = d/|G| * sum_m w[o][i][m .
    /// q] / |S_q| * rho(m)[b][c]`, from the raw weights `(C_out, C_in, nti, K, K)`.
    fn a_entry(
        &self,
        raw: &[f32],
        block: &Block,
        (o, row_b): (usize, usize),
        (i, q, c): (usize, usize, usize),
    ) -> f32 {
        let (c_in, nti) = (self.geo.in_channels(), self.geo.nti());
        let taps = self.geo.kernel() * self.geo.kernel();
        let order = self.geo.nto();
        let mut acc = 0.0f32;
        for m in 0..order {
            let (h, p) = self.orbits.member(q, m);
            let w = raw.get(((o * c_in + i) * nti + h) * taps + p).copied();
            let rho = block.matrix(m).get(row_b).and_then(|r| r.get(c)).copied();
            debug_assert!(
                w.is_some() && rho.is_some(),
                "A_rho entry: weight or irrep index"
            );
            acc += f32::from(rho.unwrap_or(0)) * w.unwrap_or(0.0);
        }
        let scale = block.dim as f32 / order as f32;
        acc * scale / self.orbits.stabilizer(q) as f32
    }

    /// Checks a whole batch's buffers: `input` exactly
    /// [`input_len`](ConvGeometry::input_len) and `output` exactly
    /// [`output_len`](ConvGeometry::output_len) long.
    ///
    /// # Errors
    /// [`Error::BufferLength`] naming the buffer.
    pub fn check_batch(&self, input: &[f32], output: &[f32]) -> Result<(), Error> {
        self.input.check_batch(input, output)
    }

    /// Checks `packed_weights` and `bias` lengths.
    ///
    /// # Errors
    /// [`Error::BufferLength`] naming the buffer.
    pub fn check_operands(
        &self,
        packed_weights: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<(), Error> {
        check_len(Buffer::Bank, packed_weights.len(), self.packed_weights_len)?;
        if let Some(b) = bias {
            check_len(Buffer::Bias, b.len(), self.geo.bias_len())?;
        }
        Ok(())
    }

    /// Groups of [`CHANNEL_GROUP`] output G-channels (the last may be smaller): the
    /// unit [`forward_image`](Self::forward_image) splits the output by.
    pub fn channel_groups(&self) -> usize {
        self.geo.out_channels().div_ceil(CHANNEL_GROUP)
    }

    fn check_part(
        &self,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        part: &ImagePart<'_, '_>,
        scratch: &[f32],
    ) -> Result<(), Error> {
        check_len(Buffer::Input, image.len(), self.input.image_input_len())?;
        self.check_operands(packed_weights, bias)?;
        let plane = self.pixels();
        let range_error = |r: &Range<usize>, all: usize| {
            if r.start > r.end || r.end > all {
                Err(Error::TileRange {
                    start: r.start,
                    end: r.end,
                    tiles: all,
                })
            } else {
                Ok(())
            }
        };
        match part {
            ImagePart::Channels { groups, out } => {
                range_error(groups, self.channel_groups())?;
                let c_out = self.geo.out_channels();
                let channels = (groups.end * CHANNEL_GROUP).min(c_out)
                    - (groups.start * CHANNEL_GROUP).min(c_out);
                check_len(Buffer::Output, out.len(), channels * self.geo.nto() * plane)?;
            }
            ImagePart::Rows { rows, planes } => {
                range_error(rows, self.geo.out_height())?;
                let count = self.geo.out_channels() * self.geo.nto();
                check_len(Buffer::Output, planes.len(), count)?;
                let row_len = rows.len() * self.geo.out_width();
                for p in planes.iter() {
                    check_len(Buffer::Output, p.len(), row_len)?;
                }
            }
        }
        let need = self.scratch_len;
        if scratch.len() < need {
            return Err(Error::BufferLength {
                buffer: Buffer::Scratch,
                expected: need,
                found: scratch.len(),
            });
        }
        self.check_gemms(part, packed_weights, scratch)
    }

    /// The output G-channels and rows `part` covers.
    fn part_ranges(&self, part: &ImagePart<'_, '_>) -> (Range<usize>, Range<usize>) {
        let c_out = self.geo.out_channels();
        match part {
            ImagePart::Channels { groups, .. } => (
                (groups.start * CHANNEL_GROUP).min(c_out)..(groups.end * CHANNEL_GROUP).min(c_out),
                0..self.geo.out_height(),
            ),
            ImagePart::Rows { rows, .. } => (0..c_out, rows.clone()),
        }
    }

    /// Everything the GEMMs of [`run`](Self::run) will ask of their operands, checked
    /// before the first write: for the full pixel block and the part's last (shorter)
    /// one, every block's GEMM plan builds, and its operands, cut from `scratch` and
    /// `packed_weights` exactly as `run` cuts them, pass the fast path's checks. The
    /// body then cannot fail halfway through the output.
    fn check_gemms(
        &self,
        part: &ImagePart<'_, '_>,
        packed_weights: &[f32],
        scratch: &[f32],
    ) -> Result<(), Error> {
        let (channels, rows) = self.part_ranges(part);
        let ow = self.geo.out_width();
        let pixels = rows.start * ow..rows.end * ow;
        if self.lifting.is_some() || channels.is_empty() || pixels.is_empty() {
            return Ok(());
        }
        let (b_total, c_total) = self.gemm_scratch();
        let b_buf = scratch.get(self.input.packed_input_len()..);
        let b_buf = b_buf.and_then(|r| r.get(..b_total));
        let c_buf = scratch.get(self.input.packed_input_len() + b_total..);
        let c_buf = c_buf.and_then(|r| r.get(..c_total));
        let (Some(b_buf), Some(c_buf)) = (b_buf, c_buf) else {
            return Err(Error::SizeOverflow);
        };
        // Blocks of `np_full` pixels, the last one `1 ..= np_full`.
        let np_full = self.block_pixels();
        let last = (pixels.len() - 1) % np_full + 1;
        for np in [np_full, last] {
            let layout = BlockLayout::new(self.blocks, &self.lens, np, |b| {
                self.block_rows(b) * b.dim * self.terms
            });
            for ((b, at), &(b_len, _)) in self.blocks.iter().zip(&layout.blocks).zip(&self.lens) {
                let plan = self.gemm_plan(b, np)?;
                let tiles = channels.start * b.dim / MR..(channels.end * b.dim).div_ceil(MR);
                let w_len = self.block_rows(b) * b.dim * self.terms;
                let c_len = tiles.len() * MR * b.rows * np;
                let (Some(bm), Some(am), Some(cm)) = (
                    b_buf.get(at.b_off..at.b_off + b_len),
                    packed_weights.get(at.w_off..at.w_off + w_len),
                    c_buf.get(at.c_off..at.c_off + c_len),
                ) else {
                    return Err(Error::SizeOverflow);
                };
                plan.check_compute(bm, am, None, cm, &tiles)?;
            }
        }
        Ok(())
    }

    /// Lengths of the B and C buffers of one pixel block's GEMMs (all blocks).
    fn gemm_scratch(&self) -> (usize, usize) {
        let b_total = self.lens.iter().map(|l| l.0).sum();
        let c_total = self.lens.iter().map(|l| l.1).sum();
        (b_total, c_total)
    }

    /// Runs the layer on a batch `input` `(N, C_in, nti, H, W)` into `output`
    /// `(N, C_out, |G|, H', W')`, with the GEMMs on `kernel` (portable, or one compiled
    /// into this build: [`Kernel::compiled`]). Every element of `output` is written.
    ///
    /// # Errors
    /// [`Error::BufferLength`] for `input`, `output`, `packed_weights`, `bias` of the
    /// wrong length or `scratch` shorter than [`scratch_len`](Self::scratch_len);
    /// [`Error::KernelNotCompiled`] for a kernel this build cannot call. Nothing is
    /// written to `output` on error.
    pub fn forward(
        &self,
        kernel: Kernel,
        input: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        self.input.check_batch(input, output)?;
        self.check_operands(packed_weights, bias)?;
        // Both nonzero for a validated geometry; as `NonZeroUsize` the chunk sizes
        // have no panic path (a zero batch has no images either way).
        let (Some(in_len), Some(out_len)) = (
            NonZeroUsize::new(self.input.image_input_len()),
            NonZeroUsize::new(self.input.image_output_len()),
        ) else {
            return Ok(());
        };
        if self.geo.batch() == 0 {
            return Ok(());
        }
        if !kernel.is_compiled() {
            return Err(Error::KernelNotCompiled {
                kernel: kernel.name(),
            });
        }
        // Every image has the first one's buffer lengths: checked once, before the
        // first write, so the loop below cannot fail halfway through the batch.
        if let (Some(image), Some(out)) =
            (input.get(..in_len.get()), output.get_mut(..out_len.get()))
        {
            let part = ImagePart::all(self, out);
            self.check_part(image, packed_weights, bias, &part, scratch)?;
        }
        for (image, out) in input
            .chunks_exact(in_len.get())
            .zip(output.chunks_exact_mut(out_len.get()))
        {
            let part = ImagePart::all(self, out);
            self.dispatch(kernel, image, packed_weights, bias, part, scratch);
        }
        Ok(())
    }

    /// One image `(C_in, nti, H, W)`, the part of its output that `part` names,
    /// written where `part` says ([`ImagePart`]): the unit a caller splits a single
    /// image by over threads. Each part is bitwise what [`forward`](Self::forward)
    /// computes there (every GEMM tile and every transformed pixel is computed by the
    /// same code in the same order).
    ///
    /// # Errors
    /// [`Error::BufferLength`] for a buffer of the wrong length (for
    /// [`ImagePart::Rows`], `C_out*|G|` slices of `rows.len() * W'` values) or
    /// `scratch` shorter than [`scratch_len`](Self::scratch_len); [`Error::TileRange`]
    /// for groups outside `0..channel_groups()` or rows outside `0..H'`;
    /// [`Error::KernelNotCompiled`] for a kernel this build cannot call. Nothing is
    /// written on error.
    pub fn forward_image(
        &self,
        kernel: Kernel,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        part: ImagePart<'_, '_>,
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        self.check_part(image, packed_weights, bias, &part, scratch)?;
        if !kernel.is_compiled() {
            return Err(Error::KernelNotCompiled {
                kernel: kernel.name(),
            });
        }
        self.dispatch(kernel, image, packed_weights, bias, part, scratch);
        Ok(())
    }

    /// The body of [`forward_image`](Self::forward_image) after its checks
    /// (`check_part`, `kernel.is_compiled()`): cannot fail.
    fn dispatch(
        &self,
        kernel: Kernel,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        part: ImagePart<'_, '_>,
        scratch: &mut [f32],
    ) {
        debug_assert!(kernel.is_compiled(), "Fourier path: kernel not compiled in");
        match kernel {
            // SAFETY (both arms): compiled only when the build enables these CPU
            // features for every function (`-C target-feature` / `target-cpu`), so the
            // CPU running this code has them: the one requirement of the
            // `#[target_feature]` bodies, which are otherwise safe Rust.
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx512f",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            #[allow(unsafe_code)]
            Kernel::Avx512 => unsafe {
                self.run_avx512(image, packed_weights, bias, part, scratch)
            },
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            #[allow(unsafe_code)]
            Kernel::Avx2Fma => unsafe {
                self.run_avx2_fma(image, packed_weights, bias, part, scratch)
            },
            _ => {
                let gemm = |p: &FastPlan, b: &[f32], a: &[f32], c: &mut [f32], t| {
                    p.compute(Kernel::Portable, b, a, None, c, t)
                };
                let (x, w) = (image, packed_weights);
                self.run::<4, 2, 2, 1>(x, w, bias, part, scratch, gemm, fma_portable);
            }
        }
    }

    /// [`forward_image`](Self::forward_image) with the AVX2+FMA kernel, for callers
    /// that detected the CPU features at run time.
    ///
    /// # Safety
    /// Safe inside code compiled with `avx2` and `fma`; elsewhere the caller must make
    /// sure the CPU has both (`is_x86_feature_detected!`).
    ///
    /// # Errors
    /// As [`forward_image`](Self::forward_image).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub fn forward_image_avx2_fma(
        &self,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        part: ImagePart<'_, '_>,
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        self.check_part(image, packed_weights, bias, &part, scratch)?;
        self.run_avx2_fma(image, packed_weights, bias, part, scratch);
        Ok(())
    }

    /// [`run`](Self::run) with the AVX2+FMA GEMMs and multiply-adds (buffers checked).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2_fma(
        &self,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        part: ImagePart<'_, '_>,
        scratch: &mut [f32],
    ) {
        let gemm = |p: &FastPlan, b: &[f32], a: &[f32], c: &mut [f32], t| {
            p.compute_avx2_fma(b, a, None, c, t)
        };
        let fma = |a, w, z| fma_avx2(a, w, z);
        self.run::<8, 2, 2, 1>(image, packed_weights, bias, part, scratch, gemm, fma);
    }

    /// [`forward_image`](Self::forward_image) with the AVX-512 kernel, for callers
    /// that detected the CPU features at run time.
    ///
    /// # Safety
    /// Safe inside code compiled with `avx512f`, `avx2` and `fma`; elsewhere the caller
    /// must make sure the CPU has them (`is_x86_feature_detected!`).
    ///
    /// # Errors
    /// As [`forward_image`](Self::forward_image).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub fn forward_image_avx512(
        &self,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        part: ImagePart<'_, '_>,
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        self.check_part(image, packed_weights, bias, &part, scratch)?;
        self.run_avx512(image, packed_weights, bias, part, scratch);
        Ok(())
    }

    /// [`run`](Self::run) with the AVX-512 GEMMs and multiply-adds (buffers checked).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn run_avx512(
        &self,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        part: ImagePart<'_, '_>,
        scratch: &mut [f32],
    ) {
        let gemm = |p: &FastPlan, b: &[f32], a: &[f32], c: &mut [f32], t| {
            p.compute_avx512(b, a, None, c, t)
        };
        let fma = |a, w, z| fma_avx512(a, w, z);
        self.run::<16, 4, 2, 1>(image, packed_weights, bias, part, scratch, gemm, fma);
    }

    /// One image, the part `part` of its output, every buffer and every GEMM's
    /// operands checked by `check_part`: cannot fail (what it could trip on is
    /// checked there, before the first write; here it is a debug assertion).
    /// `gemm(plan, B, A, C, tiles)` runs tiles `tiles` of one block's GEMM into `C`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run<const L: usize, const CH4: usize, const CH4_ONE: usize, const CH8: usize>(
        &self,
        image: &[f32],
        packed_weights: &[f32],
        bias: Option<&[f32]>,
        mut part: ImagePart<'_, '_>,
        scratch: &mut [f32],
        mut gemm: impl FnMut(&FastPlan, &[f32], &[f32], &mut [f32], Range<usize>) -> Result<(), Error>,
        fma: impl Fn([f32; L], f32, [f32; L]) -> [f32; L] + Copy,
    ) {
        debug_assert!(
            self.check_part(image, packed_weights, bias, &part, scratch)
                .is_ok(),
            "Fourier path run with unchecked buffers"
        );
        let (oh, ow) = (self.geo.out_height(), self.geo.out_width());
        let (channels, rows) = self.part_ranges(&part);
        let pixels = rows.start * ow..rows.end * ow;
        if channels.is_empty() || pixels.is_empty() {
            return;
        }
        // `check_part` checked `scratch` against `scratch_len`, which covers every
        // part, and the image's length: the fallbacks are never taken.
        let Some((padded, rest)) = scratch.split_at_mut_checked(self.input.packed_input_len())
        else {
            debug_assert!(false, "Fourier run: scratch shorter than the packed input");
            return;
        };
        let packed = self.input.pack_input(image, padded);
        debug_assert!(packed.is_ok(), "Fourier run: input not checked: {packed:?}");
        if let Some(lp) = &self.lifting {
            let layer = lifting::Layer {
                orbits: &self.orbits,
                c_in: self.geo.in_channels(),
                out_width: ow,
                out_plane: oh * ow,
                plane_len: self.input.packed_plane_len(),
                phase_w: self.input.phase_width(),
                taps: self.input.tap_offsets(),
            };
            let at = (channels, rows);
            let (w, b) = (packed_weights, bias);
            match self.geo.nto() {
                // One input channel: fewer output channels per pass (measured).
                4 if layer.c_in == 1 => lifting::run::<4, C4, L, CH4_ONE>(
                    lp, &layer, padded, w, b, at, &mut part, rest, fma,
                ),
                4 => lifting::run::<4, C4, L, CH4>(
                    lp, &layer, padded, w, b, at, &mut part, rest, fma,
                ),
                _ => lifting::run::<8, D4, L, CH8>(
                    lp, &layer, padded, w, b, at, &mut part, rest, fma,
                ),
            }
            return;
        }
        let lens = self.lens;
        let (b_total, c_total) = self.gemm_scratch();
        let Some((b_buf, rest)) = rest.split_at_mut_checked(b_total) else {
            debug_assert!(false, "Fourier run: scratch shorter than the GEMM inputs");
            return;
        };
        let Some(c_buf) = rest.get_mut(..c_total) else {
            debug_assert!(false, "Fourier run: scratch shorter than the GEMM outputs");
            return;
        };
        let np_full = self.block_pixels();
        let mut p0 = pixels.start;
        while p0 < pixels.end {
            let np = np_full.min(pixels.end - p0);
            let layout = BlockLayout::new(self.blocks, &lens, np, |b| {
                self.block_rows(b) * b.dim * self.terms
            });
            match self.geo.nto() {
                4 => self.analyze::<4, C4>(padded, p0, np, &layout, b_buf),
                _ => self.analyze::<8, D4>(padded, p0, np, &layout, b_buf),
            }
            for ((b, at), &(b_len, _)) in self.blocks.iter().zip(&layout.blocks).zip(&lens) {
                // `check_gemms` built this plan and checked these operands.
                let Ok(plan) = self.gemm_plan(b, np) else {
                    debug_assert!(false, "Fourier run: GEMM plan of {np} pixels not checked");
                    continue;
                };
                // Rows `o*d + b` of the channels; `channels.start*d` is a multiple of
                // MR since channel groups start at multiples of 4.
                let tiles = channels.start * b.dim / MR..(channels.end * b.dim).div_ceil(MR);
                let (b_off, c_off, w_off) = (at.b_off, at.c_off, at.w_off);
                let w_len = self.block_rows(b) * b.dim * self.terms;
                let c_len = tiles.len() * MR * b.rows * np;
                let (Some(bm), Some(am), Some(cm)) = (
                    b_buf.get(b_off..b_off + b_len),
                    packed_weights.get(w_off..w_off + w_len),
                    c_buf.get_mut(c_off..c_off + c_len),
                ) else {
                    debug_assert!(false, "Fourier run: GEMM operands not checked");
                    continue;
                };
                let done = gemm(&plan, bm, am, cm, tiles);
                debug_assert!(
                    done.is_ok(),
                    "Fourier run: GEMM refused its checked operands"
                );
            }
            let at = (p0, np, &layout);
            match self.geo.nto() {
                4 => self.synthesize::<4, C4>(c_buf, at, bias, &channels, &mut part),
                _ => self.synthesize::<8, D4>(c_buf, at, bias, &channels, &mut part),
            }
            p0 += np;
        }
    }

    /// Gathers `z_{i,q}(k)` for output pixels `p0 .. p0 + np` and writes their
    /// transforms into the blocks' `B_rho` (`layout`).
    #[inline(always)]
    fn analyze<const N: usize, S: Spectrum<N>>(
        &self,
        padded: &[f32],
        p0: usize,
        np: usize,
        layout: &BlockLayout,
        b_buf: &mut [f32],
    ) {
        // `W' >= 1` for a validated geometry; as a `NonZeroUsize` the divisions by
        // it have no panic path.
        let Some(ow) = NonZeroUsize::new(self.geo.out_width()) else {
            debug_assert!(false, "Fourier analysis: zero output width");
            return;
        };
        let (nti, q_count) = (self.geo.nti(), self.orbits.count());
        let (plane_len, phase_w) = (self.input.packed_plane_len(), self.input.phase_width());
        // Coefficient j goes to B_rho row (iq*d + c), column (a*np + t).
        let dst0: [usize; N] = core::array::from_fn(|j| {
            let Coeff { block, row, col } = S::COEFFS[j];
            let at = layout.at(block);
            at.b_off + col * at.plane + row * np
        });
        let dst_step: [usize; N] = core::array::from_fn(|j| {
            let at = layout.at(S::COEFFS[j].block);
            at.dim * at.plane
        });
        for i in 0..self.geo.in_channels() {
            for q in 0..q_count {
                let iq = i * q_count + q;
                let src: [usize; N] = core::array::from_fn(|k| {
                    let (h, p) = self.orbits.member(q, k);
                    (i * nti + h) * plane_len + self.input.tap_offset(p)
                });
                let dst: [usize; N] = core::array::from_fn(|j| dst0[j] + iq * dst_step[j]);
                let mut t = 0;
                while t < np {
                    let (y, x) = ((p0 + t) / ow, (p0 + t) % ow);
                    let run = (ow.get() - x).min(np - t);
                    let at = y * phase_w + x;
                    let from: [usize; N] = core::array::from_fn(|k| src[k] + at);
                    let to: [usize; N] = core::array::from_fn(|j| dst[j] + t);
                    let mut streams = Offsets {
                        out: &mut *b_buf,
                        to,
                    };
                    butterfly_run(
                        padded,
                        &from,
                        &mut streams,
                        run,
                        &Analysis::<S>(PhantomData),
                    );
                    t += run;
                }
            }
        }
    }

    /// Synthesises output pixels `p0 .. p0 + np` of every orientation plane from the
    /// blocks' `C_rho` and adds the bias.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn synthesize<const N: usize, S: Spectrum<N>>(
        &self,
        c_buf: &[f32],
        (p0, np, layout): (usize, usize, &BlockLayout),
        bias: Option<&[f32]>,
        channels: &Range<usize>,
        out: &mut ImagePart<'_, '_>,
    ) {
        let plane = self.pixels();
        for o in channels.clone() {
            // Coefficient j of output channel o: C_rho row ((o - o0)*d + col), column
            // row*np + t; `out` holds channels o0.. only.
            let local = o - channels.start;
            let src: [usize; N] = core::array::from_fn(|j| {
                let Coeff { block, row, col } = S::COEFFS[j];
                let at = layout.at(block);
                at.c_off + (local * at.dim + col) * at.plane + row * np
            });
            let b = bias.map(|b| b.get(o).copied());
            debug_assert!(
                b != Some(None),
                "Fourier synthesis: bias shorter than C_out"
            );
            let f = Synthesis::<S>(b.flatten().unwrap_or(0.0), PhantomData);
            match out {
                ImagePart::Channels { out, .. } => {
                    let to: [usize; N] = core::array::from_fn(|g| (local * N + g) * plane + p0);
                    let mut streams = Offsets { out, to };
                    butterfly_run(c_buf, &src, &mut streams, np, &f);
                }
                ImagePart::Rows { rows, planes } => {
                    let Some(planes) = planes.get_mut(o * N..(o + 1) * N) else {
                        debug_assert!(false, "Fourier synthesis: planes of channel {o} missing");
                        return; // ruled out by `check_part`
                    };
                    let at = p0 - rows.start * self.geo.out_width();
                    let mut streams = PlaneList { planes, at };
                    butterfly_run(c_buf, &src, &mut streams, np, &f);
                }
            }
        }
    }
}

/// `acc + w * z` on 4 lanes, rounded after the product and after the sum: the
/// portable multiply-add of the lifting kernel (`core` has no fused one without a
/// target feature). `L` and the channels per pass (`run::<L, CH4, CH8>`) are chosen
/// so that the `CH * |G|` accumulators fit the registers: 16 zmm for AVX-512, 8 ymm
/// for AVX2, 8 xmm for SSE2.
#[inline(always)]
fn fma_portable(mut acc: [f32; 4], w: f32, z: [f32; 4]) -> [f32; 4] {
    for l in 0..4 {
        acc[l] += w * z[l];
    }
    acc
}

/// `acc + w * z` with one rounding, on one 8-lane vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn fma_avx2(acc: [f32; 8], w: f32, z: [f32; 8]) -> [f32; 8] {
    use core::arch::x86_64::{_mm256_fmadd_ps, _mm256_set1_ps};
    bytemuck::cast(_mm256_fmadd_ps(
        _mm256_set1_ps(w),
        bytemuck::cast(z),
        bytemuck::cast(acc),
    ))
}

/// `acc + w * z` with one rounding, on one 16-lane vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn fma_avx512(acc: [f32; 16], w: f32, z: [f32; 16]) -> [f32; 16] {
    use core::arch::x86_64::{_mm512_fmadd_ps, _mm512_set1_ps};
    bytemuck::cast(_mm512_fmadd_ps(
        _mm512_set1_ps(w),
        bytemuck::cast(z),
        bytemuck::cast(acc),
    ))
}

/// Where one block's operands of one pixel block live in the scratch buffers and
/// the packed weights.
#[derive(Clone, Copy, Default)]
struct BlockAt {
    /// Offset of `B_rho` in the B buffer.
    b_off: usize,
    /// Offset of `C_rho` in the C buffer.
    c_off: usize,
    /// Plane length `rows * np` of `B_rho` and `C_rho`.
    plane: usize,
    /// Offset of `A_rho` in the packed weights.
    w_off: usize,
    /// The irrep's dimension `d`.
    dim: usize,
}

/// [`BlockAt`] of every block.
struct BlockLayout {
    blocks: [BlockAt; MAX_BLOCKS],
}

impl BlockLayout {
    fn new(
        blocks: &[Block],
        lens: &[(usize, usize); MAX_BLOCKS],
        np: usize,
        weights_of: impl Fn(&Block) -> usize,
    ) -> Self {
        let mut l = BlockLayout {
            blocks: [BlockAt::default(); MAX_BLOCKS],
        };
        let (mut b, mut c, mut w) = (0, 0, 0);
        for ((at, blk), &(b_len, c_len)) in l.blocks.iter_mut().zip(blocks).zip(lens) {
            *at = BlockAt {
                b_off: b,
                c_off: c,
                plane: blk.rows * np,
                w_off: w,
                dim: blk.dim,
            };
            b += b_len;
            c += c_len;
            w += weights_of(blk);
        }
        l
    }

    /// Block `k` (a block of the group's spectrum, so below [`MAX_BLOCKS`]).
    #[inline(always)]
    fn at(&self, k: usize) -> BlockAt {
        let at = self.blocks.get(k).copied();
        debug_assert!(at.is_some(), "block {k} of {MAX_BLOCKS}");
        at.unwrap_or_default()
    }
}

/// One of the transforms' butterflies, applied to `LANES` pixels at once. A trait
/// (not a closure or fn pointer) so that it inlines into the `#[target_feature]`
/// callers.
trait Butterfly<const N: usize> {
    fn apply(&self, z: &[Lanes; N]) -> [Lanes; N];
}

/// The analysis of the gathered input.
struct Analysis<S>(PhantomData<S>);

impl<const N: usize, S: Spectrum<N>> Butterfly<N> for Analysis<S> {
    #[inline(always)]
    fn apply(&self, z: &[Lanes; N]) -> [Lanes; N] {
        S::analyze(z)
    }
}

/// The synthesis of the output, plus the bias.
struct Synthesis<S>(f32, PhantomData<S>);

impl<const N: usize, S: Spectrum<N>> Butterfly<N> for Synthesis<S> {
    #[inline(always)]
    fn apply(&self, y: &[Lanes; N]) -> [Lanes; N] {
        let mut out = S::synthesize(y);
        for lanes in &mut out {
            for v in lanes {
                *v += self.0;
            }
        }
        out
    }
}

/// Where [`butterfly_run`] writes its `N` output streams.
trait Outputs<const N: usize> {
    /// Pointers to the first value of every stream, if each holds `len` values from
    /// there inside its slice; `None` otherwise.
    fn streams(&mut self, len: usize) -> Option<[*mut f32; N]>;
}

/// Streams at offsets `to[j]` of one slice.
struct Offsets<'a, const N: usize> {
    out: &'a mut [f32],
    to: [usize; N],
}

impl<const N: usize> Outputs<N> for Offsets<'_, N> {
    #[inline(always)]
    fn streams(&mut self, len: usize) -> Option<[*mut f32; N]> {
        let fits = |&at: &usize| at.checked_add(len).is_some_and(|end| end <= self.out.len());
        if !self.to.iter().all(fits) {
            return None;
        }
        // One base pointer for every stream (they are offsets into one borrow).
        let base = self.out.as_mut_ptr();
        // `wrapping_add` stays in bounds here (checked above) and needs no `unsafe`.
        Some(core::array::from_fn(|j| base.wrapping_add(self.to[j])))
    }
}

/// Stream `j` at offset `at` of slice `planes[j]`.
struct PlaneList<'a, 'b> {
    planes: &'a mut [&'b mut [f32]],
    at: usize,
}

impl<const N: usize> Outputs<N> for PlaneList<'_, '_> {
    #[inline(always)]
    fn streams(&mut self, len: usize) -> Option<[*mut f32; N]> {
        let end = self.at.checked_add(len)?;
        if self.planes.len() != N || self.planes.iter().any(|p| p.len() < end) {
            return None;
        }
        let mut ptrs = [core::ptr::null_mut(); N];
        for (ptr, plane) in ptrs.iter_mut().zip(self.planes.iter_mut()) {
            *ptr = plane.as_mut_ptr().wrapping_add(self.at);
        }
        Some(ptrs)
    }
}

/// A part of one image's output, and where [`FourierPlan::forward_image`] writes it.
/// Parts of either kind split one image over threads.
#[derive(Debug)]
pub enum ImagePart<'a, 'b> {
    /// The output G-channels of channel groups `groups` (group `g` is channels
    /// `CHANNEL_GROUP*g ..`, the last one possibly shorter), all rows, into `out`
    /// `(channels, |G|, H', W')`.
    Channels {
        /// Channel groups, inside `0..channel_groups()`.
        groups: Range<usize>,
        /// Their planes, one after the other.
        out: &'a mut [f32],
    },
    /// Output rows `rows` of every output plane: `planes[c]` holds rows `rows` of
    /// plane `c` of `(C_out*|G|, H', W')` (`rows.len() * W'` values).
    Rows {
        /// Rows, inside `0..H'`.
        rows: Range<usize>,
        /// One slice per output plane, `C_out*|G|` of them.
        planes: &'a mut [&'b mut [f32]],
    },
}

impl<'a> ImagePart<'a, '_> {
    /// The whole output of one image, `(C_out, |G|, H', W')`, in `out`.
    pub fn all(plan: &FourierPlan, out: &'a mut [f32]) -> Self {
        ImagePart::Channels {
            groups: 0..plan.channel_groups(),
            out,
        }
    }
}

/// `output stream j [u] = f(input[from[k] + u] for all k)[j]` for `u in 0..len`, on
/// `LANES` values at a time: the transforms' one loop.
///
/// The streams are checked once for the whole run ([`Outputs::streams`] and the
/// input offsets); the vectors then run without per-access checks (with them the loop
/// was several times slower: each check kept half a vector in memory). A run that is
/// not a multiple of `LANES` ends with the vector that ends at `len`, overlapping the
/// one before (the butterflies work pixel by pixel, so the overlap is recomputed
/// identically); a shorter run is copied through a zero-padded vector. A stream that
/// does not fit its slice (ruled out by the plan's lengths) leaves the run unwritten.
#[inline(always)]
fn butterfly_run<const N: usize>(
    input: &[f32],
    from: &[usize; N],
    outputs: &mut impl Outputs<N>,
    len: usize,
    f: &impl Butterfly<N>,
) {
    let fits = |&at: &usize| at.checked_add(len).is_some_and(|end| end <= input.len());
    if !from.iter().all(fits) {
        debug_assert!(false, "butterfly run: an input stream past its buffer");
        return;
    }
    let Some(dst) = outputs.streams(len) else {
        debug_assert!(false, "butterfly run: an output stream past its slice");
        return;
    };
    let src = input.as_ptr();
    if len < LANES {
        let mut z = [[0.0; LANES]; N];
        for (zk, &s) in z.iter_mut().zip(from) {
            zk[..len].copy_from_slice(&input[s..s + len]);
        }
        for (w, &d) in f.apply(&z).iter().zip(&dst) {
            for (l, &v) in w.iter().take(len).enumerate() {
                // SAFETY: `d` points at `len` writable values of its stream
                // (`Outputs::streams` checked it) and `l < len`.
                #[allow(unsafe_code)]
                unsafe {
                    d.add(l).write(v);
                }
            }
        }
        return;
    }
    let mut u = 0;
    while u < len {
        u = u.min(len - LANES);
        // SAFETY: for every stream `from[k] + u + LANES <= from[k] + len <=
        // input.len()` (checked above, and `u + LANES <= len`), so each read of
        // `LANES` values is inside `input`; unaligned reads of `[f32; LANES]` need no
        // alignment beyond `f32`'s.
        #[allow(unsafe_code)]
        let z: [Lanes; N] = core::array::from_fn(|k| unsafe {
            src.add(from[k] + u).cast::<Lanes>().read_unaligned()
        });
        let v = f.apply(&z);
        for (w, &d) in v.iter().zip(&dst) {
            // SAFETY: `d` points at `len` writable values of its stream, inside a
            // slice `outputs` borrows mutably for this call (`Outputs::streams`
            // checked it), and `u + LANES <= len`; `input` is a different borrow, so
            // no write reaches it.
            #[allow(unsafe_code)]
            unsafe {
                d.add(u).cast::<Lanes>().write_unaligned(*w);
            }
        }
        u += LANES;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{group::group_conv, lifting::lifting_conv};
    use crate::shape::{ConvShape, Domain, Padding};
    use crate::test_data::{data_kinds, fill, fill_ints, same_bits};
    use crate::{C4, D4, Group};

    /// The Fourier path with the compiled kernel against the direct path, on a layer
    /// small enough for Miri. Widths are chosen so `butterfly_run` takes each branch:
    /// runs shorter than a vector, exactly one, and an overlapping last vector.
    ///
    /// With `exact` the data are small integers: the transforms add only and the
    /// weights' scales are powers of two, so both paths are exact and must give the
    /// same bits. Otherwise values in [-1, 1) and the derived bound of the module
    /// docs, `2 (T_F + 3|G| + 2) eps (S_F + |b|)` for the Fourier path plus
    /// `(T + 2) eps (S + |b|)` for the direct one. `S_F` is the sum over the `|G|`
    /// orientations of the direct path's `S = sum |x w|` (each pair of an orbit's
    /// members meets in `|S_q|` orientations), both computed by the direct path on
    /// absolute values (within `1 + (T + |G|) eps` of exact; the bound allows it).
    fn compare<G: Group>(domain: Domain, shape: ConvShape, exact: bool) {
        let geo = shape.geometry::<G>(domain).unwrap();
        let plan = FourierPlan::new(&geo).unwrap();
        let mut buf = [0.0f32; 4 * 4096];
        let (x, rest) = buf.split_at_mut(geo.input_len());
        let (w, rest) = rest.split_at_mut(geo.weight_len());
        let (direct, rest) = rest.split_at_mut(geo.output_len());
        let (fourier, rest) = rest.split_at_mut(geo.output_len());
        let (sums, rest) = rest.split_at_mut(geo.output_len());
        let (packed, rest) = rest.split_at_mut(plan.packed_weights_len());
        let scratch = &mut rest[..plan.scratch_len()];
        scratch.fill(f32::NAN);
        fourier.fill(f32::NAN);
        if exact {
            fill_ints(x, 3);
            fill_ints(w, 4);
        } else {
            fill(x, 3);
            fill(w, 4);
        }
        let bias = [0.5f32, -0.25, 1.0, 0.75, -2.0];
        let bias = Some(&bias[..geo.bias_len()]);
        let mut bank = [0.0f32; 4096];
        let bank = &mut bank[..geo.bank_len()];
        let conv = |x: &[f32], w: &[f32], b, out: &mut [f32], bank: &mut [f32]| match domain {
            Domain::Z2 => lifting_conv::<G>(&shape, x, w, b, out, bank),
            Domain::Group => group_conv::<G>(&shape, x, w, b, out, bank),
        };
        conv(x, w, bias, direct, bank).unwrap();
        plan.pack_weights(w, packed).unwrap();
        plan.forward(Kernel::compiled(), x, packed, bias, fourier, scratch)
            .unwrap();
        if exact {
            assert!(same_bits(direct, fourier), "{shape:?}: not exact");
            return;
        }
        for v in x.iter_mut().chain(w.iter_mut()) {
            *v = v.abs();
        }
        conv(x, w, None, sums, bank).unwrap();
        let order = G::ORDER;
        let eps = f32::EPSILON;
        let terms = geo.terms_per_output() as f32 + 2.0;
        let terms_f = (geo.in_channels() * plan.orbits() * 2 + 3 * order + 2) as f32;
        let slack = 1.0 + (terms + order as f32) * eps;
        let plane = geo.out_height() * geo.out_width();
        for (i, (a, b)) in direct.iter().zip(fourier.iter()).enumerate() {
            // Output `i` is plane `i / plane` of G-channel `i / plane / |G|`.
            let channel = i / plane / order;
            let first = channel * order * plane + i % plane;
            let s_f: f32 = (0..order).map(|g| sums[first + g * plane]).sum();
            let b_abs = bias.map_or(0.0, |b| b[channel % b.len()].abs());
            let tol = (2.0 * terms_f * eps * (s_f * slack + b_abs)
                + terms * eps * (sums[i] * slack + b_abs))
                * slack;
            assert!(
                (a - b).abs() <= tol,
                "{shape:?} output {i}: direct {a} fourier {b}, tolerance {tol:e}"
            );
        }
    }

    #[test]
    fn matches_the_direct_path_on_every_pair() {
        // Under Miri the exact data only (see `data_kinds`).
        for &exact in data_kinds() {
            // Output widths 5 (< LANES), 8 (= LANES) and 11 (an overlapping last
            // vector).
            compare::<C4>(Domain::Group, shape((2, 3), (4, 5), 3, 1), exact);
            compare::<D4>(Domain::Group, shape((1, 2), (3, 11), 3, 1), exact);
            // The lifting kernel, whose vectors are 4 (portable) or 16 (AVX-512, as
            // Miri runs it) pixels: output widths 18 and 8 (whole vectors and an
            // overlapping last one, or narrower than one), 3 (narrower than any),
            // one and two passes of channels.
            compare::<C4>(Domain::Z2, shape((1, 5), (2, 18), 3, 1), exact);
            compare::<C4>(Domain::Z2, shape((2, 3), (3, 8), 3, 1), exact);
            compare::<C4>(Domain::Z2, shape((1, 3), (3, 3), 3, 1), exact);
            compare::<D4>(Domain::Z2, shape((3, 1), (5, 21), 3, 2), exact);
        }
    }

    fn shape(c: (usize, usize), hw: (usize, usize), kernel: usize, stride: usize) -> ConvShape {
        ConvShape {
            batch: 2,
            in_channels: c.0,
            out_channels: c.1,
            height: hw.0,
            width: hw.1,
            kernel,
            stride,
            padding: Padding::Same,
        }
    }

    /// A stream outside its buffer is a broken invariant: debug builds assert.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "butterfly run: an output stream past its slice")]
    fn butterfly_run_asserts_its_streams() {
        let input = [1.0f32; 40];
        let mut output = [7.0f32; 40];
        let mut out = Offsets {
            out: &mut output,
            to: [0, 10, 20, 31],
        };
        butterfly_run(
            &input,
            &[0, 8, 16, 24],
            &mut out,
            10,
            &Analysis::<C4>(PhantomData),
        );
    }

    /// Release builds (`cargo test --release`): a stream outside its buffer writes
    /// nothing. Debug builds, where the suite runs, assert instead (the test above).
    #[test]
    #[cfg(not(debug_assertions))]
    fn butterfly_run_checks_its_streams() {
        // A stream past the end of its slice leaves the output as it was.
        let input = [1.0f32; 40];
        let mut output = [7.0f32; 40];
        let f = Analysis::<C4>(PhantomData);
        let mut out = Offsets {
            out: &mut output,
            to: [0, 10, 20, 30],
        };
        butterfly_run(&input, &[0, 8, 16, 31], &mut out, 10, &f);
        assert!(output.iter().all(|&v| v == 7.0));
        let mut out = Offsets {
            out: &mut output,
            to: [0, 10, 20, 31],
        };
        butterfly_run(&input, &[0, 8, 16, 24], &mut out, 10, &f);
        assert!(output.iter().all(|&v| v == 7.0));
        // In range: the four coefficients of constant ones are 4, 0, 0, 0.
        let mut out = Offsets {
            out: &mut output,
            to: [0, 10, 20, 30],
        };
        butterfly_run(&input, &[0, 8, 16, 24], &mut out, 10, &f);
        assert!(output[..10].iter().all(|&v| v == 4.0));
        assert!(output[10..].iter().all(|&v| v == 0.0));
        // A list of planes: one too short (or too few planes) writes nothing; runs
        // shorter than a vector go through the short path.
        let (mut p0, mut p1, mut p2, mut p3) =
            ([7.0f32; 12], [7.0f32; 12], [7.0f32; 12], [7.0f32; 11]);
        let mut planes: [&mut [f32]; 4] = [&mut p0, &mut p1, &mut p2, &mut p3];
        butterfly_run(
            &input,
            &[0, 8, 16, 24],
            &mut PlaneList {
                planes: &mut planes,
                at: 2,
            },
            10,
            &f,
        );
        assert!(planes.iter().all(|p| p.iter().all(|&v| v == 7.0)));
        butterfly_run(
            &input,
            &[0, 8, 16, 24],
            &mut PlaneList {
                planes: &mut planes[..3],
                at: 1,
            },
            5,
            &f,
        );
        assert!(planes.iter().all(|p| p.iter().all(|&v| v == 7.0)));
        butterfly_run(
            &input,
            &[0, 8, 16, 24],
            &mut PlaneList {
                planes: &mut planes,
                at: 1,
            },
            5,
            &f,
        );
        assert_eq!(planes[0][..7], [7.0, 4.0, 4.0, 4.0, 4.0, 4.0, 7.0]);
        assert_eq!(planes[3][..7], [7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0]);
    }
}

//! The int8 path for microcontrollers with a DSP extension (Cortex-M4, M7, M33):
//! two multiply-adds per `SMLAD` instruction, raw int8 weights, a small scratch.
//!
//! The arithmetic is the plain int8 kernel's ([`crate::quant::conv`]): every
//! accumulator is the same exact integer, so this path equals it (and TFLite) bit for
//! bit on every target. Only the order of the work differs:
//!
//! * **Words.** Input planes are taken in pairs: channels `2i` and `2i + 1` at the same
//!   orientation `s` (a *pair-plane*; an odd last channel is paired with itself and
//!   gets zero weights). A packed input word holds the raw inputs of both at one pixel
//!   as two int16 halves, a weight word the two matching filter taps, and `SMLAD`
//!   multiplies and adds both halves. There are `P2 = ceil(C_in / 2) * nti`
//!   pair-planes. Lifting from one channel pairs input rows `y` and `y + 1` instead
//!   (filter rows `2r` and `2r + 1`), so that no half is wasted.
//! * **Zero point.** Padding words hold `zp_in`, and each output plane's bias is
//!   lowered by `zp_in` times the sum of its filter's weights: every tap then adds
//!   exactly `w * (x - zp_in)`.
//! * **Filters.** Per output plane `(o, t)` the expanded filter (the index table
//!   applied to the raw weights) is written into scratch as `K` weight words per chunk
//!   (`K * P2` chunks, in the order `[filter row p][pair-plane]`) after a word with
//!   its weight sum, once per *pass*: a pass holds the filters of `planes_per_pass`
//!   output planes.
//! * **Bands.** The input is packed into scratch one *band* at a time: the
//!   `R + K - 1` input rows that `R` output rows read, over a strip of output columns
//!   plus `K - 1`, in the order `[row][pair-plane][column]`. An output row then reads
//!   its chunks (one filter row of one pair-plane, `pitch` words apart) in one linear
//!   walk.
//! * **Blocks.** The block kernel (`kernel.rs`; `asm!` on Arm for `K = 3`) computes 2,
//!   3 or 4 adjacent output pixels of one plane, starting from the bias; the driver
//!   requantizes a row of them and writes the int8 outputs (`asm!` on Arm too).
//!
//! [`DspPlan::new`] chooses the pass size, strip width and band height that fit a
//! scratch budget with the lowest estimated instruction count (filters are made once
//! per pass and the input packed once per pass, so more filters per pass means less
//! packing but a smaller band).
//!
//! Stride 1 only ([`Error::DspStride`]); any `K`, padding, group and batch.

mod kernel;

#[cfg(all(target_arch = "arm", target_feature = "dsp"))]
mod arm;

use core::num::NonZeroUsize;

use crate::error::{Buffer, Error};
use crate::group::{compose_closed_form, inverse_closed_form, source_in_range};
use crate::quant::conv::check_io_i8;
use crate::quant::{Multiplier, Requant, activation_range};
use crate::shape::ConvGeometry;

use kernel::pack;

/// A strip of output columns and how its blocks cover it: `threes` blocks of 3, then
/// one block of `last` (0, 2 or 4) pixels; `cover >= width` pixels are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cover {
    threes: usize,
    last: usize,
}

impl Cover {
    const fn of(width: usize) -> Cover {
        match (width % 3, width) {
            (_, 1) | (_, 2) => Cover { threes: 0, last: 2 },
            (0, _) => Cover {
                threes: width / 3,
                last: 0,
            },
            (1, _) => Cover {
                threes: width / 3 - 1,
                last: 4,
            },
            _ => Cover {
                threes: width / 3,
                last: 2,
            },
        }
    }

    const fn pixels(self) -> usize {
        self.threes * 3 + self.last
    }
}

/// The widest strip, in output columns (the accumulators of one strip row live in
/// an array of this length on the stack).
const STRIP_MAX: usize = 64;

/// How a layer is cut to fit the scratch (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DspBlocking {
    /// Output planes whose filters are in scratch at a time.
    pub planes_per_pass: usize,
    /// Output columns per strip (the last strip may be narrower).
    pub strip_width: usize,
    /// Output rows per band (the last band may be lower).
    pub band_rows: usize,
}

/// A validated int8 convolution on the DSP path with its blocking.
#[derive(Clone, Copy, Debug)]
pub struct DspPlan {
    geo: ConvGeometry,
    blocking: DspBlocking,
    pair_planes: usize,
    /// One input plane (lifting from one channel): words pair two input rows of it
    /// instead of two channels (see the module docs).
    rows_paired: bool,
}

/// The cost of a blocking, in tenths of Cortex-M4 instructions: per packed input
/// word, packed row (one pair-plane of one band row), packing call (one channel
/// pair of one band row), strip of a pass, band of one plane, output row of a strip,
/// block, `SMLAD`, output and pass. Fitted by non-negative least squares to the
/// instruction counts of the five int8 layers of `examples/cortex-m4` under QEMU
/// with `-icount` on 1,941 blockings (rms error 2.4%, at most 9.8%; within the
/// firmware's 2,048-word budget it picks the measured best of each layer):
/// `examples/cortex-m4/fit_dsp_cost.py` on `examples/cortex-m4/dsp_blockings.log`
/// (`scripts/cortex-m4-dsp-fit.sh` measures again and refits).
const COST_PACKED_WORD: u64 = 22;
const COST_PACKED_ROW: u64 = 235;
const COST_PACK_CALL: u64 = 733;
const COST_STRIP: u64 = 0;
const COST_BAND: u64 = 1843;
const COST_ROW: u64 = 836;
const COST_BLOCK: u64 = 116;
const COST_SMLAD: u64 = 16;
const COST_OUTPUT: u64 = 0;
const COST_PASS: u64 = 16920;

/// The shape of a layer as the cost model sees it.
#[derive(Clone, Copy)]
struct CostShape {
    k: usize,
    /// Pair-planes per band row, and packing calls per band row.
    pair_planes: usize,
    pack_calls: usize,
    /// Output planes, and `SMLAD`s per output pixel.
    planes: usize,
    smlads: usize,
    oh: usize,
    ow: usize,
}

/// The estimated cost of one image (see the constants) with `per_pass` filters per
/// pass, strips of `width` columns and bands of `rows` rows.
fn estimate(c: &CostShape, per_pass: usize, width: usize, rows: usize) -> u64 {
    let n = |v: usize| v as u64;
    let passes = n(c.planes.div_ceil(per_pass.max(1)));
    let (width, rows) = (width.max(1), rows.max(1));
    let strips = [
        (c.ow / width, width),
        (usize::from(!c.ow.is_multiple_of(width)), c.ow % width),
    ];
    let bands = [
        (c.oh / rows, rows),
        (usize::from(!c.oh.is_multiple_of(rows)), c.oh % rows),
    ];
    let mut cost = passes.saturating_mul(COST_PASS);
    for (sc, w) in strips {
        if sc == 0 {
            continue;
        }
        let cover = Cover::of(w);
        let pixels = n(cover.pixels());
        let blocks = n(cover.threes + usize::from(cover.last > 0));
        cost = cost.saturating_add(passes.saturating_mul(n(sc)).saturating_mul(COST_STRIP));
        for (bc, r) in bands {
            let count = n(sc * bc);
            if count == 0 {
                continue;
            }
            let band_rows = n(r + c.k - 1);
            let packing = band_rows
                .saturating_mul(n(c.pair_planes))
                .saturating_mul((pixels + n(c.k) - 1) * COST_PACKED_WORD + COST_PACKED_ROW)
                .saturating_add(band_rows.saturating_mul(n(c.pack_calls)) * COST_PACK_CALL)
                .saturating_mul(passes);
            let planes = n(c.planes);
            let per_row = COST_ROW
                + blocks * COST_BLOCK
                + pixels * n(c.smlads) * COST_SMLAD
                + n(w) * COST_OUTPUT;
            let compute =
                planes.saturating_mul(COST_BAND.saturating_add(n(r).saturating_mul(per_row)));
            cost = cost.saturating_add(count.saturating_mul(packing.saturating_add(compute)));
        }
    }
    cost
}

impl DspPlan {
    /// Plans `geo` to run in at most `budget_words` 32-bit words of scratch.
    ///
    /// # Errors
    /// [`Error::DspStride`] for a stride other than 1; [`Error::ScratchBudget`] when
    /// not even one filter and one `K`-row band of a 2-pixel strip fit;
    /// [`Error::SizeOverflow`].
    pub fn new(geo: &ConvGeometry, budget_words: usize) -> Result<DspPlan, Error> {
        if geo.stride() != 1 {
            return Err(Error::DspStride {
                stride: geo.stride(),
            });
        }
        let k = geo.kernel();
        let pair_planes = geo
            .in_channels()
            .div_ceil(2)
            .checked_mul(geo.nti())
            .ok_or(Error::SizeOverflow)?;
        let rows_paired = geo.in_channels() == 1 && geo.nti() == 1 && k >= 2;
        // Words per filter: one per tap row of a chunk, chunks of K taps, and the sum.
        let chunks = if rows_paired {
            k.div_ceil(2)
        } else {
            k.checked_mul(pair_planes).ok_or(Error::SizeOverflow)?
        };
        let filter = chunks
            .checked_mul(k)
            .and_then(|f| f.checked_add(1))
            .ok_or(Error::SizeOverflow)?;
        let (oh, ow) = (geo.out_height(), geo.out_width());
        let planes = geo
            .out_channels()
            .checked_mul(geo.nto())
            .ok_or(Error::SizeOverflow)?;
        let band_len = |width: usize, rows: usize| -> Option<usize> {
            let pitch = Cover::of(width).pixels().checked_add(k - 1)?;
            rows.checked_add(k - 1)?
                .checked_mul(pair_planes)?
                .checked_mul(pitch)
        };
        let smallest = band_len(1, 1)
            .and_then(|b| b.checked_add(filter))
            .ok_or(Error::SizeOverflow)?;
        if smallest > budget_words {
            return Err(Error::ScratchBudget {
                needed: smallest,
                budget: budget_words,
            });
        }
        let shape = CostShape {
            k,
            pair_planes,
            pack_calls: if rows_paired {
                1
            } else {
                geo.in_channels().div_ceil(2)
            },
            planes,
            smlads: chunks * k,
            oh,
            ow,
        };
        // Search every pass size and strip width; the band is as high as fits.
        let mut best: Option<(u64, DspBlocking)> = None;
        for per_pass in 1..=planes {
            let Some(rest) = per_pass
                .checked_mul(filter)
                .and_then(|f| budget_words.checked_sub(f))
            else {
                break;
            };
            for width in 1..=ow.clamp(1, STRIP_MAX) {
                let row = (Cover::of(width).pixels() + k - 1) * pair_planes;
                let fit = rest / row.max(1);
                if fit < k {
                    continue;
                }
                let rows = (fit + 1 - k).min(oh).max(1);
                let cost = estimate(&shape, per_pass, width, rows);
                let blocking = DspBlocking {
                    planes_per_pass: per_pass,
                    strip_width: width,
                    band_rows: rows,
                };
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((cost, blocking));
                }
            }
        }
        let (_, blocking) = best.ok_or(Error::ScratchBudget {
            needed: smallest,
            budget: budget_words,
        })?;
        Ok(DspPlan {
            geo: *geo,
            blocking,
            pair_planes,
            rows_paired,
        })
    }

    /// Plans `geo` with a given blocking (for measurements and tests; [`DspPlan::new`]
    /// chooses one). Zero sizes are taken as 1, and sizes above the layer's as the
    /// layer's (planes, output columns, output rows).
    ///
    /// # Errors
    /// As [`DspPlan::new`] without a budget: [`Error::DspStride`],
    /// [`Error::SizeOverflow`].
    pub fn with_blocking(geo: &ConvGeometry, blocking: DspBlocking) -> Result<DspPlan, Error> {
        let any = DspPlan::new(geo, usize::MAX)?;
        let planes = geo.out_channels() * geo.nto();
        let blocking = DspBlocking {
            planes_per_pass: blocking.planes_per_pass.clamp(1, planes.max(1)),
            strip_width: blocking
                .strip_width
                .clamp(1, geo.out_width().clamp(1, STRIP_MAX)),
            band_rows: blocking.band_rows.clamp(1, geo.out_height().max(1)),
        };
        Ok(DspPlan { blocking, ..any })
    }

    /// The geometry planned.
    pub const fn geometry(&self) -> &ConvGeometry {
        &self.geo
    }

    /// The blocking chosen.
    pub const fn blocking(&self) -> DspBlocking {
        self.blocking
    }

    /// Chunks of the band walk: `K * P2`, or `ceil(K / 2)` with paired rows.
    const fn chunks(&self) -> usize {
        let k = self.geo.kernel();
        if self.rows_paired {
            k.div_ceil(2)
        } else {
            k * self.pair_planes
        }
    }

    /// Words of one output plane's packed filter, `K` per chunk, plus one for the sum
    /// of its weights.
    const fn filter_words(&self) -> usize {
        self.chunks() * self.geo.kernel() + 1
    }

    /// Words between two chunks of a band: the strip's covered width plus `K - 1`.
    const fn pitch(&self) -> usize {
        Cover::of(self.blocking.strip_width).pixels() + self.geo.kernel() - 1
    }

    /// The scratch [`DspPlan::forward`] needs, in 32-bit words: the filters of one
    /// pass and one band, `planes_per_pass * (K*K*P2 + 1) + (R + K - 1) * P2 * pitch`.
    pub const fn scratch_len(&self) -> usize {
        let b = &self.blocking;
        b.planes_per_pass * self.filter_words()
            + (b.band_rows + self.geo.kernel() - 1) * self.pair_planes * self.pitch()
    }

    /// Runs the convolution: `output` as [`crate::quant::conv::forward`] computes it,
    /// bit for bit.
    ///
    /// # Errors
    /// [`Error::ZeroPointOutOfRange`]; [`Error::BufferLength`] for an input, weight,
    /// bias, output or multiplier slice of the wrong length or a scratch shorter
    /// than [`DspPlan::scratch_len`]. Nothing is written on error.
    pub fn forward(
        &self,
        requant: &Requant<'_>,
        input: &[i8],
        weight: &[i8],
        bias: Option<&[i32]>,
        output: &mut [i8],
        scratch: &mut [i32],
    ) -> Result<(), Error> {
        let geo = &self.geo;
        check_io_i8(geo, input, weight, bias, output)?;
        requant.validate(geo.out_channels())?;
        let need = self.scratch_len();
        let found = scratch.len();
        let (filters, band) = scratch
            .get_mut(..need)
            .ok_or(Error::BufferLength {
                buffer: Buffer::Scratch,
                expected: need,
                found,
            })?
            .split_at_mut_checked(self.blocking.planes_per_pass * self.filter_words())
            .ok_or(Error::SizeOverflow)?;
        self.run(requant, input, weight, bias, output, filters, band);
        Ok(())
    }

    /// The driver; every buffer has been validated. Out of line: one call per
    /// layer, and the firmware's panic gate sees it.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        requant: &Requant<'_>,
        input: &[i8],
        weight: &[i8],
        bias: Option<&[i32]>,
        output: &mut [i8],
        filters: &mut [i32],
        band: &mut [i32],
    ) {
        let geo = &self.geo;
        let (oh, ow) = (geo.out_height(), geo.out_width());
        let Some(nto) = NonZeroUsize::new(geo.nto()) else {
            debug_assert!(false, "DSP path: group of order 0");
            return;
        };
        let planes = geo.out_channels() * nto.get();
        let in_image = geo.input_len() / geo.batch().max(1);
        let out_plane = oh * ow;
        let Some(fw) = NonZeroUsize::new(self.filter_words()) else {
            debug_assert!(false, "DSP path: zero-size filter");
            return;
        };
        let fw = fw.get();
        let mut acc = [0i32; STRIP_MAX];
        let per_pass = self.blocking.planes_per_pass;
        let range = activation_range(requant.output_zero_point, requant.relu);
        for n in 0..geo.batch() {
            let Some(x) = input.get(n * in_image..(n + 1) * in_image) else {
                debug_assert!(false, "DSP path: image {n} past the input");
                continue;
            };
            let Some(y) = output.get_mut(n * planes * out_plane..(n + 1) * planes * out_plane)
            else {
                debug_assert!(false, "DSP path: image {n} past the output");
                continue;
            };
            let mut first = 0;
            while first < planes {
                let count = per_pass.min(planes - first);
                for (i, f) in filters.chunks_exact_mut(fw).take(count).enumerate() {
                    self.pack_filter(weight, first + i, f);
                }
                let mut b0 = 0;
                while b0 < ow {
                    let width = self.blocking.strip_width.min(ow - b0);
                    self.pad_strip(requant.input_zero_point, b0, band);
                    let mut a0 = 0;
                    while a0 < oh {
                        let rows = self.blocking.band_rows.min(oh - a0);
                        self.pack_band(x, requant.input_zero_point, a0, rows, b0, band);
                        for (i, f) in filters.chunks_exact(fw).take(count).enumerate() {
                            let plane = first + i;
                            let o = plane / nto;
                            let Some(&m) = requant.multipliers.get(o) else {
                                debug_assert!(false, "multipliers validated");
                                continue;
                            };
                            // The filter's weight sum times the zero point (see pack_band).
                            let sum = f.first().copied();
                            let b = bias.map(|b| b.get(o).copied());
                            debug_assert!(
                                sum.is_some() && b != Some(None),
                                "DSP path: empty filter or bias shorter than C_out"
                            );
                            let (sum, b) = (sum.unwrap_or(0), b.flatten().unwrap_or(0));
                            let b = b.wrapping_sub(sum.wrapping_mul(requant.input_zero_point));
                            let q = PlaneRequant::new(b, m, requant.output_zero_point, range);
                            let Some(y_plane) =
                                y.get_mut(plane * out_plane..(plane + 1) * out_plane)
                            else {
                                debug_assert!(false, "DSP path: plane {plane} past the image");
                                continue;
                            };
                            let f = f.get(1..).unwrap_or(&[]);
                            self.band_plane(
                                f,
                                band,
                                (a0, rows),
                                (b0, width),
                                &q,
                                y_plane,
                                &mut acc,
                            );
                        }
                        a0 += rows;
                    }
                    b0 += width;
                }
                first += count;
            }
        }
    }

    /// Writes the packed filter of output plane `plane = o * nto + t` (module docs)
    /// after one word that holds the sum of its weights (for the zero point). Out of
    /// line (once per filter and pass), so that its loop gets registers of its own.
    #[inline(never)]
    fn pack_filter(&self, weight: &[i8], plane: usize, f: &mut [i32]) {
        let geo = &self.geo;
        let (k, nti, cin) = (geo.kernel(), geo.nti(), geo.in_channels());
        let Some(nto) = NonZeroUsize::new(geo.nto()) else {
            return;
        };
        let (o, t) = (plane / nto, plane % nto);
        let taps = k * k;
        let per_out = cin * nti * taps;
        let pairs = cin.div_ceil(2);
        let (Some(raw), Some((sum, words))) = (
            weight.get(o * per_out..(o + 1) * per_out),
            f.split_first_mut(),
        ) else {
            debug_assert!(false, "filter or weights out of range");
            return;
        };
        let channel = nti * taps;
        let mut total = 0i32;
        // The index table's (U, V) for output orientation t is the source of tap
        // (p, q): a rotation or flip of the grid about its centre, so an affine map,
        // and the raw offset of tap (p, q) is `base + p * dp + q * dq`. T = t^-1 s is
        // the same for every tap. (Table entries per tap cost more than the rest.)
        let source = |p: usize, q: usize| -> isize {
            let (u, v) = source_in_range(t, k, k, p, q);
            (u * k + v) as isize
        };
        let base = source(0, 0);
        let (dp, dq) = if k > 1 {
            (source(1, 0) - base, source(0, 1) - base)
        } else {
            (0, 0)
        };
        let tap = |p: usize, q: usize| -> usize {
            let at = base + p as isize * dp + q as isize * dq;
            debug_assert_eq!(at, source(p, q), "tap ({p}, {q}) of t = {t}");
            at as usize
        };
        let weight_at = |at: usize| raw.get(at).map_or(0, |&w| i32::from(w));
        let mut out = words.iter_mut();
        if self.rows_paired {
            // One input plane: chunk r pairs filter rows 2r and 2r + 1 (0 past K).
            for c in 0..k.div_ceil(2) {
                for q in 0..k {
                    let lo = weight_at(tap(2 * c, q));
                    let hi = if 2 * c + 1 < k {
                        weight_at(tap(2 * c + 1, q))
                    } else {
                        0
                    };
                    total = total.wrapping_add(lo + hi);
                    if let Some(d) = out.next() {
                        *d = pack(lo, hi);
                    }
                }
            }
            *sum = total;
            return;
        }
        let mut plane_offset = [0usize; 8];
        for (s, d) in plane_offset.iter_mut().enumerate().take(nti) {
            if nti > 1 {
                *d = compose_closed_form(inverse_closed_form(t), s) * taps;
            }
        }
        // Words in order [p][ip][s][q].
        for p in 0..k {
            for ip in 0..pairs {
                let (lo_channel, hi_channel) = (2 * ip * channel, (2 * ip + 1) * channel);
                let paired = 2 * ip + 1 < cin;
                for &plane in plane_offset.iter().take(nti) {
                    for q in 0..k {
                        let at = plane + tap(p, q);
                        let lo = weight_at(lo_channel + at);
                        // An odd last channel has no partner: its half is 0.
                        let hi = if paired {
                            weight_at(hi_channel + at)
                        } else {
                            0
                        };
                        total = total.wrapping_add(lo + hi);
                        if let Some(d) = out.next() {
                            *d = pack(lo, hi);
                        }
                    }
                }
            }
        }
        *sum = total;
    }

    /// The band columns `lo..hi` that read input columns inside the image, for the
    /// strip starting at output column `b0`, and the first such input column.
    fn strip_columns(&self, b0: usize) -> (usize, usize, usize) {
        let (w, pitch) = (self.geo.width(), self.pitch());
        let [_, _, left, _] = self.geo.padding();
        // Band column c reads input column `b0 + c - left`.
        let lo = left.saturating_sub(b0).min(pitch);
        let hi = (w + left).saturating_sub(b0).clamp(lo, pitch);
        (lo, hi, b0 + lo - left.min(b0 + lo))
    }

    /// Writes the zero point into the band columns outside the image (`..lo` and
    /// `hi..` of every band row and pair-plane) for the strip starting at output
    /// column `b0`; [`DspPlan::pack_band`] leaves them alone, so once per strip is
    /// enough.
    fn pad_strip(&self, zp: i32, b0: usize, band: &mut [i32]) {
        let Some(pitch) = NonZeroUsize::new(self.pitch()) else {
            return;
        };
        let (lo, hi, _) = self.strip_columns(b0);
        let pad = pack(zp, zp);
        for row in band.chunks_exact_mut(pitch.get()) {
            let (head, rest) = row.split_at_mut(lo.min(row.len()));
            head.fill(pad);
            if let Some(tail) = rest.get_mut(hi - lo..) {
                tail.fill(pad);
            }
        }
    }

    /// Packs the band of output rows `a0..a0 + rows` and the strip starting at output
    /// column `b0` from image `x` (module docs): the columns inside the image (the
    /// others hold the zero point from [`DspPlan::pad_strip`]); rows outside the
    /// image become the zero point. Words hold the raw inputs; the filter's weight
    /// sum times `zp` is taken off the bias, so that every tap adds `w * (x - zp)` as
    /// specified. An odd last channel is paired with itself (its filter half is 0).
    fn pack_band(&self, x: &[i8], zp: i32, a0: usize, rows: usize, b0: usize, band: &mut [i32]) {
        let geo = &self.geo;
        let (h, w, k, nti, cin) = (
            geo.height(),
            geo.width(),
            geo.kernel(),
            geo.nti(),
            geo.in_channels(),
        );
        let [top, _, _, _] = geo.padding();
        let pitch = self.pitch();
        let plane = h * w;
        let pad = pack(zp, zp);
        let (lo, hi, x0) = self.strip_columns(b0);
        let n = hi - lo;
        let input_row = |r: usize| (a0 + r).checked_sub(top).filter(|&y| y < h);
        if self.rows_paired {
            // One input plane: band row r pairs input rows y and y + 1.
            let row_at = |r: usize| -> Option<&[i8]> {
                let y = input_row(r)?;
                x.get(y * w + x0..y * w + x0 + n)
            };
            for r in 0..rows + k - 1 {
                let Some(mid) = band.get_mut(r * pitch + lo..r * pitch + hi) else {
                    continue;
                };
                match (input_row(r), input_row(r + 1)) {
                    (Some(y0), Some(y1)) => {
                        pack_planes(x, (y0 * w + x0, y1 * w + x0), 0, 1, n, mid, pitch);
                    }
                    _ => {
                        let (l, u) = (row_at(r), row_at(r + 1));
                        let v = |row: Option<&[i8]>, c: usize| {
                            row.and_then(|row| row.get(c)).map_or(zp, |&q| i32::from(q))
                        };
                        for (c, d) in mid.iter_mut().enumerate() {
                            *d = pack(v(l, c), v(u, c));
                        }
                    }
                }
            }
            return;
        }
        let row_words = self.pair_planes * pitch;
        for r in 0..rows + k - 1 {
            let Some(dst_row) = band.get_mut(r * row_words..(r + 1) * row_words) else {
                debug_assert!(false, "band shorter than its rows");
                return;
            };
            let Some(y) = input_row(r) else {
                dst_row.fill(pad);
                continue;
            };
            let base = y * w + x0;
            for ip in 0..cin.div_ceil(2) {
                // The nti orientations of channels 2ip and 2ip + 1 (an odd last channel
                // paired with itself), `plane` bytes apart in the input and `pitch`
                // words apart in the band.
                let upper = if 2 * ip + 1 < cin { 2 * ip + 1 } else { 2 * ip };
                let rows_of = |i: usize| i * nti * plane + base;
                let Some(dst) = dst_row.get_mut(ip * nti * pitch + lo..) else {
                    debug_assert!(false, "band row out of range");
                    continue;
                };
                pack_planes(
                    x,
                    (rows_of(2 * ip), rows_of(upper)),
                    plane,
                    nti,
                    n,
                    dst,
                    pitch,
                );
            }
        }
    }

    /// Computes the band's output rows of one plane over one strip with the block
    /// kernels and writes them requantized into `y_plane` (`H' x W'`).
    #[allow(clippy::too_many_arguments)]
    fn band_plane(
        &self,
        filter: &[i32],
        band: &[i32],
        (a0, rows): (usize, usize),
        (b0, width): (usize, usize),
        q: &PlaneRequant,
        y_plane: &mut [i8],
        acc: &mut [i32; STRIP_MAX],
    ) {
        let geo = &self.geo;
        let (k, ow) = (geo.kernel(), geo.out_width());
        let pitch = self.pitch();
        let chunks = self.chunks();
        // Chunks are a pitch apart, or two with paired rows (filter rows 2r, 2r + 1).
        let step = if self.rows_paired { 2 * pitch } else { pitch };
        let cover = Cover::of(width);
        let blocks = (cover.threes, cover.last);
        for a in 0..rows {
            let x_row = band.get(a * self.pair_planes * pitch..).unwrap_or(&[]);
            let start = (a0 + a) * ow + b0;
            let Some(y_row) = y_plane.get_mut(start..start + width) else {
                debug_assert!(false, "output row {a} outside the plane");
                continue;
            };
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            let done = arm::row(x_row, step, filter, k, chunks, blocks, q.bias, acc);
            #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
            let done = false;
            if !done {
                kernel::row(x_row, step, filter, k, chunks, blocks, q.bias, acc);
            }
            q.row(acc, y_row);
        }
    }
}

/// `count` rows of `n` words, row `j` from input bytes `lo + j * plane` and
/// `hi + j * plane` into `dst[j * pitch..][..n]` (`dst` starts at the first word):
/// `dst[c] = pack(lo[c], hi[c])` per column, one `asm!` loop over all rows on Arm. Rows that do not
/// fit in `x` or `dst` are a bug of the caller (debug assertion; nothing written).
#[inline]
fn pack_planes(
    x: &[i8],
    (lo, hi): (usize, usize),
    plane: usize,
    count: usize,
    n: usize,
    dst: &mut [i32],
    pitch: usize,
) {
    let Some(last) = count.checked_sub(1) else {
        return;
    };
    let fits = lo.max(hi) + last * plane + n <= x.len() && last * pitch + n <= dst.len();
    if !fits {
        debug_assert!(false, "pack_planes out of range");
        return;
    }
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    arm::pack_planes(x, (lo, hi), plane, count, n, dst, pitch);
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    for j in 0..count {
        let (l, u) = (lo + j * plane, hi + j * plane);
        if let (Some(l), Some(u), Some(d)) = (
            x.get(l..l + n),
            x.get(u..u + n),
            dst.get_mut(j * pitch..j * pitch + n),
        ) {
            for ((d, &l), &u) in d.iter_mut().zip(l).zip(u) {
                *d = pack(i32::from(l), i32::from(u));
            }
        }
    }
}

/// The requantization of one output plane, its constants taken apart once:
/// [`Requant::output`] of [`Multiplier::apply`], bit for bit.
///
/// With `P = a * m + 2^30` (`a` the accumulator shifted left by `max(shift, 0)`),
/// gemmlowp's two roundings are `z = floor(P / 2^31)` (its `SaturatingRounding
/// DoublingHighMul`; the saturating case needs `m == i32::MIN`, which a multiplier
/// never is) and `y = floor((z + 2^(e-1) - [z < 0]) / 2^e)` (`RoundingDivideByPOT`
/// by `e = max(-shift, 0) >= 1`). Since `floor(floor(Q / 2^31) / 2^e) = floor(Q /
/// 2^(31+e))` and `z < 0` exactly when `P < 0`, both fold into one 64-bit sum,
///
/// ```text
/// y = floor((a * m + 2^30 + 2^(30+e) - [P < 0] * 2^31) / 2^(31+e))
/// ```
///
/// and `[P < 0]` may be taken as `[a < 0]`: they differ only for `-2^30 <= a * m < 0`,
/// where both give 0. So `y` is the high word of one multiply-accumulate shifted
/// right by `e - 1`. `e = 0` (effective scales of 1/2 and more) takes the two steps.
#[derive(Clone, Copy, Debug)]
struct PlaneRequant {
    bias: i32,
    left: u32,
    multiplier: i32,
    right: u32,
    /// `2^30 + 2^(30+e)` for `e >= 1`.
    nudge: i64,
    zero_point: i32,
    range: (i32, i32),
}

impl PlaneRequant {
    fn new(bias: i32, m: Multiplier, zero_point: i32, range: (i32, i32)) -> Self {
        let shift = m.shift();
        let right = shift.min(0).unsigned_abs().min(31);
        PlaneRequant {
            bias,
            left: shift.max(0).unsigned_abs(),
            multiplier: m.multiplier(),
            right,
            nudge: (1i64 << 30) + (1i64 << (30 + right)),
            zero_point,
            range,
        }
    }

    /// `clamp(M.apply(acc) + zp, range)` (the type docs).
    #[inline(always)]
    fn output(&self, acc: i32) -> i8 {
        let y = if self.right >= 1 {
            let p = i64::from(acc) * i64::from(self.multiplier) + self.nudge
                - (i64::from(acc < 0) << 31);
            ((p >> 32) as i32) >> (self.right - 1)
        } else {
            let a = acc.wrapping_shl(self.left);
            ((i64::from(a) * i64::from(self.multiplier) + (1 << 30)) >> 31) as i32
        };
        y.saturating_add(self.zero_point)
            .clamp(self.range.0, self.range.1) as i8
    }

    /// Requantizes `acc` into `y` (as many as the shorter holds).
    #[inline]
    fn row(&self, acc: &[i32], y: &mut [i8]) {
        // Two loops, so that the test of `e` is outside them.
        if self.right >= 1 {
            #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
            {
                // With a fused ReLU the lower clamp is the zero point itself.
                debug_assert!(self.range.0 == -128 || self.range.0 == self.zero_point);
                let nudge = self.nudge as u64;
                arm::requant_row(
                    acc,
                    y,
                    self.multiplier,
                    (nudge as u32, (nudge >> 32) as u32),
                    self.right - 1,
                    self.zero_point,
                    self.range.0 > -128,
                );
                return;
            }
            #[cfg_attr(
                all(target_arch = "arm", target_feature = "dsp"),
                allow(unreachable_code)
            )]
            for (d, &v) in y.iter_mut().zip(acc) {
                let p = i64::from(v) * i64::from(self.multiplier) + self.nudge
                    - (i64::from(v < 0) << 31);
                let q = ((p >> 32) as i32) >> (self.right - 1);
                *d = q
                    .saturating_add(self.zero_point)
                    .clamp(-128, 127)
                    .max(self.range.0) as i8;
            }
        } else {
            for (d, &v) in y.iter_mut().zip(acc) {
                *d = self.output(v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
